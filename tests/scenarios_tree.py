"""Differential scenarios: stat, os.path, listing, directories, removal, rename, walk."""
from __future__ import annotations

import errno
import os
import stat
import time

from tests.differential import differs, ok, raises, scenario
from tests.differential import touch as _touch
from tests.differential import tree as _tree


def _walk(top: str, **options) -> list:
    return sorted((root, sorted(dirs), sorted(files))
                  for root, dirs, files in os.walk(top, **options))


@scenario
def stat_file_and_directory(base):
    _touch(f"{base}/f", b"12345")
    os.mkdir(f"{base}/d")
    f, d = os.stat(f"{base}/f"), os.stat(f"{base}/d")
    return (stat.S_ISREG(f.st_mode), f.st_size, stat.S_ISDIR(d.st_mode), stat.S_ISREG(d.st_mode),
            f.st_uid == os.getuid(), os.stat(f"{base}/f").st_ino == f.st_ino)


@scenario
def stat_missing(base):
    os.stat(f"{base}/missing")


@scenario
def lstat_matches_stat(base):
    _touch(f"{base}/f", b"xy")
    a, b = os.stat(f"{base}/f"), os.lstat(f"{base}/f")
    return a.st_size == b.st_size, a.st_mode == b.st_mode, stat.S_ISLNK(b.st_mode)


@scenario
def stat_bytes_and_pathlike(base):
    import pathlib
    _touch(f"{base}/f", b"abc")
    return os.stat(os.fsencode(f"{base}/f")).st_size, os.stat(pathlib.Path(base, "f")).st_size


@scenario
def stat_file_with_trailing_slash(base):
    _touch(f"{base}/f")
    os.stat(f"{base}/f/")


@scenario
def stat_directory_with_trailing_slash(base):
    os.mkdir(f"{base}/d")
    return stat.S_ISDIR(os.stat(f"{base}/d/").st_mode), stat.S_ISDIR(os.stat(f"{base}/d/.").st_mode)


@scenario
def path_predicates(base):
    _touch(f"{base}/f")
    os.mkdir(f"{base}/d")
    out = []
    for name in ("f", "d", "missing", "f/x"):
        path = f"{base}/{name}"
        out.append((name, os.path.exists(path), os.path.isfile(path), os.path.isdir(path),
                    os.path.islink(path), os.path.lexists(path)))
    return out


@scenario
def getsize_and_getmtime(base):
    _touch(f"{base}/f", b"x" * 1234)
    mtime = os.path.getmtime(f"{base}/f")
    return os.path.getsize(f"{base}/f"), abs(mtime - time.time()) < 300


@scenario
def getsize_missing(base):
    os.path.getsize(f"{base}/missing")


@scenario
def samefile(base):
    _touch(f"{base}/a")
    _touch(f"{base}/b")
    return (os.path.samefile(f"{base}/a", f"{base}/a"), os.path.samefile(f"{base}/a", f"{base}/b"),
            os.path.samefile(f"{base}/a", f"{base}/./a"))


@scenario
def access_modes(base):
    _touch(f"{base}/f")
    os.mkdir(f"{base}/d")
    return [(n, [os.access(f"{base}/{n}", m) for m in (os.F_OK, os.R_OK, os.W_OK, os.X_OK)])
            for n in ("f", "d", "missing")]


@scenario
def readlink_of_a_regular_file(base):
    _touch(f"{base}/f")
    os.readlink(f"{base}/f")


@scenario
def listdir_names(base):
    _tree(base)
    return sorted(os.listdir(base)), sorted(os.listdir(f"{base}/b")), os.listdir(f"{base}/b/empty")


@scenario
def listdir_bytes(base):
    _tree(base)
    return sorted(os.listdir(os.fsencode(f"{base}/b")))


@scenario
def listdir_missing(base):
    os.listdir(f"{base}/missing")


@scenario
def listdir_file(base):
    _touch(f"{base}/f")
    os.listdir(f"{base}/f")


@scenario
def scandir_entries(base):
    _tree(base)
    with os.scandir(base) as entries:
        rows = sorted((e.name, e.path, e.is_dir(), e.is_file(), e.is_symlink(),
                       e.stat().st_size if e.is_file() else None, os.fspath(e)) for e in entries)
    return rows


@scenario
def scandir_bytes_and_inode(base):
    _tree(base)
    entries = sorted(os.scandir(os.fsencode(base)), key=lambda e: e.name)
    return [(e.name, e.path, e.inode() == e.stat().st_ino) for e in entries]


@scenario
def scandir_iterator_close(base):
    _tree(base)
    iterator = os.scandir(base)
    first = next(iterator)
    iterator.close()
    return isinstance(first.name, str), list(iterator)


@scenario
def scandir_on_file(base):
    _touch(f"{base}/f")
    os.scandir(f"{base}/f")


@scenario
def mkdir_existing(base):
    os.mkdir(f"{base}/d")
    os.mkdir(f"{base}/d")


@scenario
def mkdir_over_file(base):
    _touch(f"{base}/f")
    os.mkdir(f"{base}/f")


@scenario
def mkdir_missing_parent(base):
    os.mkdir(f"{base}/missing/child")


@scenario
def mkdir_under_file(base):
    _touch(f"{base}/f")
    os.mkdir(f"{base}/f/child")


@scenario
def makedirs_and_exist_ok(base):
    os.makedirs(f"{base}/x/y/z")
    os.makedirs(f"{base}/x/y/z", exist_ok=True)
    os.makedirs(f"{base}/x/y", exist_ok=True)
    try:
        os.makedirs(f"{base}/x/y")
    except FileExistsError as exc:
        return _walk(base), exc.errno


@scenario
def makedirs_over_a_file_even_with_exist_ok(base):
    _touch(f"{base}/f")
    os.makedirs(f"{base}/f", exist_ok=True)


@scenario
def empty_directory_survives_last_file_removal(base):
    os.mkdir(f"{base}/d")
    _touch(f"{base}/d/f")
    os.remove(f"{base}/d/f")
    return os.path.isdir(f"{base}/d"), os.listdir(f"{base}/d")


@scenario
def rmdir_empty_and_nonempty(base):
    _tree(base)
    os.rmdir(f"{base}/b/empty")
    try:
        os.rmdir(f"{base}/b")
    except OSError as exc:
        return sorted(os.listdir(f"{base}/b")), type(exc).__name__, exc.errno


@scenario
def rmdir_missing(base):
    os.rmdir(f"{base}/missing")


@scenario
def rmdir_file(base):
    _touch(f"{base}/f")
    os.rmdir(f"{base}/f")


@scenario
def removedirs_prunes_empty_parents(base):
    os.makedirs(f"{base}/keep/p/q/r")
    _touch(f"{base}/keep/file")
    os.removedirs(f"{base}/keep/p/q/r")
    return _walk(base)


@scenario
def remove_and_unlink(base):
    _touch(f"{base}/a")
    _touch(f"{base}/b")
    os.remove(f"{base}/a")
    os.unlink(f"{base}/b")
    return os.listdir(base)


@scenario
def remove_missing(base):
    os.remove(f"{base}/missing")


@scenario
def remove_directory(base):
    os.mkdir(f"{base}/d")
    os.unlink(f"{base}/d")


@scenario
def remove_with_trailing_slash(base):
    _touch(f"{base}/f")
    os.remove(f"{base}/f/")


@scenario
def walk_top_down_and_bottom_up(base):
    _tree(base)
    bottom_up = [root for root, _, _ in os.walk(base, topdown=False)]
    children_first = all(bottom_up.index(os.path.dirname(r)) > i
                         for i, r in enumerate(bottom_up) if r != base)
    return _walk(base), sorted(bottom_up), children_first


@scenario
def walk_prunes_in_place(base):
    _tree(base)
    seen = []
    for root, dirs, files in os.walk(base):
        dirs[:] = [d for d in sorted(dirs) if d != "d"]
        seen.append((root, sorted(files)))
    return sorted(seen)


@scenario
def walk_missing_reports_through_onerror(base):
    errors = []
    listed = list(os.walk(f"{base}/missing", onerror=errors.append))
    return listed, [type(e).__name__ for e in errors]


@scenario
def rename_file(base):
    _touch(f"{base}/a", b"content")
    os.rename(f"{base}/a", f"{base}/b")
    with open(f"{base}/b", "rb") as handle:
        return os.listdir(base), handle.read()


@scenario
def rename_overwrites_existing_file(base):
    _touch(f"{base}/a", b"new")
    _touch(f"{base}/b", b"old")
    os.rename(f"{base}/a", f"{base}/b")
    with open(f"{base}/b", "rb") as handle:
        return sorted(os.listdir(base)), handle.read()


@scenario
def replace_file_into_subdirectory(base):
    _touch(f"{base}/a", b"x" * 100_000)
    os.mkdir(f"{base}/d")
    os.replace(f"{base}/a", f"{base}/d/a")
    return _walk(base), os.path.getsize(f"{base}/d/a")


@scenario
def rename_missing_source(base):
    os.rename(f"{base}/missing", f"{base}/b")


@scenario
def rename_onto_itself(base):
    _touch(f"{base}/a", b"same")
    os.rename(f"{base}/a", f"{base}/a")
    return os.listdir(base)


@scenario
def rename_file_onto_directory(base):
    _touch(f"{base}/a")
    os.mkdir(f"{base}/d")
    os.rename(f"{base}/a", f"{base}/d")


@scenario
def rename_directory_onto_file(base):
    os.mkdir(f"{base}/d")
    _touch(f"{base}/f")
    os.rename(f"{base}/d", f"{base}/f")


@scenario
def rename_directory_tree(base):
    _tree(base)
    os.rename(f"{base}/b", f"{base}/moved")
    return _walk(base)


@scenario
def rename_directory_into_itself(base):
    _tree(base)
    os.rename(f"{base}/b", f"{base}/b/d/inner")


@scenario
def rename_directory_onto_nonempty_directory(base):
    _tree(base)
    os.mkdir(f"{base}/other")
    _touch(f"{base}/other/x")
    os.rename(f"{base}/b", f"{base}/other")


@scenario
def rename_directory_onto_empty_directory(base):
    _tree(base)
    os.mkdir(f"{base}/other")
    os.replace(f"{base}/b", f"{base}/other")
    return _walk(base)


@scenario
def renames_creates_and_prunes(base):
    os.makedirs(f"{base}/old/deep")
    _touch(f"{base}/old/deep/f", b"r")
    os.renames(f"{base}/old/deep/f", f"{base}/new/deeper/f")
    return _walk(base)


@differs("a rename destination's parents are created implicitly, as for writes",
         real=raises(FileNotFoundError, errno.ENOENT), mount=ok(["f"]))
def rename_into_missing_directory(base):
    _touch(f"{base}/a")
    os.rename(f"{base}/a", f"{base}/no/such/f")
    return os.listdir(f"{base}/no/such")


@differs("a path below a file reads as missing (one HEAD, no parent walk)",
         real=raises(NotADirectoryError, errno.ENOTDIR),
         mount=raises(FileNotFoundError, errno.ENOENT))
def stat_below_a_file(base):
    _touch(f"{base}/f")
    os.stat(f"{base}/f/child")


@differs("modes are not stored: chmod on a mount is refused (ENOTSUP)",
         real=ok(0o600), mount=raises(OSError, errno.ENOTSUP))
def chmod_is_refused(base):
    _touch(f"{base}/f")
    os.chmod(f"{base}/f", 0o600)
    return stat.S_IMODE(os.stat(f"{base}/f").st_mode)


@differs("times are set by the backend: utime on a mount is refused (ENOTSUP)",
         real=ok(1_000_000_000), mount=raises(OSError, errno.ENOTSUP))
def utime_is_refused(base):
    _touch(f"{base}/f")
    os.utime(f"{base}/f", (1_000_000_000, 1_000_000_000))
    return int(os.stat(f"{base}/f").st_mtime)



# -- files and directories never share a name --------------------------------------

def _write_state(base: str, name: str, mode: str) -> tuple:
    try:
        with open(f"{base}/{name}", mode) as f:
            f.write(b"clobber" if "b" in mode else "clobber")
        outcome = "written"
    except OSError as exc:
        outcome = (type(exc).__name__, exc.errno)
    return (outcome, os.path.isdir(f"{base}/{name}"), os.path.isfile(f"{base}/{name}"),
            sorted(os.listdir(base)))


@scenario
def write_file_over_directory_with_files(base):
    os.makedirs(f"{base}/d/sub")
    _touch(f"{base}/d/x", b"1")
    _touch(f"{base}/d/sub/y", b"2")
    return [_write_state(base, "d", mode) for mode in ("w", "wb", "a", "x")], _walk(base)


@scenario
def write_file_over_empty_directory(base):
    os.mkdir(f"{base}/e")
    return [_write_state(base, "e", mode) for mode in ("w", "wb", "xb")], _walk(base)


@scenario
def mkdir_and_makedirs_over_a_file_keep_it(base):
    _touch(f"{base}/f", b"data")
    errors = []
    for make in (os.mkdir, os.makedirs):
        try:
            make(f"{base}/f")
        except OSError as exc:
            errors.append((type(exc).__name__, exc.errno))
    with open(f"{base}/f", "rb") as f:
        return errors, f.read(), os.path.isfile(f"{base}/f"), os.path.isdir(f"{base}/f")
