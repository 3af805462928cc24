"""Differential scenarios: pathlib, shutil, glob, file formats, awkward key names."""
from __future__ import annotations

import csv
import errno
import glob
import gzip
import json
import os
import pathlib
import pickle
import shutil
import tarfile
import zipfile

from tests.differential import differs, ok, raises, scenario
from tests.differential import touch as _touch
from tests.differential import tree as _tree

NAMES = ["with space.txt", "hash#tag", "question?mark", "per%25cent", "plus+and&amp",
         "ünïcödé.txt", "日本語.json", "emoji 😀.bin", "semi;colon", "quote'and\"double"]


def _walk(top: str) -> list:
    return sorted((root, sorted(dirs), sorted(files)) for root, dirs, files in os.walk(top))


def _rel(base: str, paths) -> list:
    return sorted(os.path.relpath(os.fspath(p), base) for p in paths)


# -- pathlib -------------------------------------------------------------------------------------

@scenario
def pathlib_write_and_read(base):
    path = pathlib.Path(base) / "p.txt"
    counts = path.write_text("grüß dich\n", encoding="utf-8"), path.write_bytes(b"\x00\x01")
    data = path.read_bytes()
    path.write_text("text\n")
    return counts, data, path.read_text()


@scenario
def pathlib_predicates_and_stat(base):
    root = pathlib.Path(base)
    (root / "f").write_bytes(b"four")
    (root / "d").mkdir()
    return [(p.name, p.exists(), p.is_file(), p.is_dir(), p.is_symlink())
            for p in (root / "f", root / "d", root / "missing")], (root / "f").stat().st_size


@scenario
def pathlib_iterdir_glob_rglob(base):
    _tree(base)
    root = pathlib.Path(base)
    return (_rel(base, root.iterdir()), _rel(base, root.glob("*.txt")),
            _rel(base, root.glob("b/*")), _rel(base, root.rglob("*.txt")),
            _rel(base, root.glob("**/")), _rel(base, root.rglob("e*")))


@scenario
def pathlib_mkdir_variants(base):
    root = pathlib.Path(base)
    (root / "x" / "y").mkdir(parents=True)
    (root / "x" / "y").mkdir(parents=True, exist_ok=True)
    try:
        (root / "x").mkdir()
    except FileExistsError as exc:
        first = exc.errno
    try:
        (root / "q" / "r").mkdir()
    except FileNotFoundError as exc:
        return first, exc.errno, _walk(base)


@scenario
def pathlib_unlink_and_rmdir(base):
    root = pathlib.Path(base)
    (root / "f").write_text("x")
    (root / "f").unlink()
    (root / "f").unlink(missing_ok=True)
    (root / "d").mkdir()
    (root / "d").rmdir()
    try:
        (root / "f").unlink()
    except FileNotFoundError as exc:
        return os.listdir(base), exc.errno


@scenario
def pathlib_rename_and_replace(base):
    root = pathlib.Path(base)
    (root / "a").write_text("A")
    (root / "b").write_text("B")
    renamed = (root / "a").rename(root / "c")
    replaced = (root / "b").replace(root / "c")
    return str(renamed), str(replaced), sorted(os.listdir(base)), (root / "c").read_text()


@scenario
def pathlib_touch(base):
    root = pathlib.Path(base)
    (root / "t").touch()
    (root / "t").write_text("keep")
    (root / "t").touch()
    (root / "d").mkdir()
    (root / "d").touch()
    try:
        (root / "t").touch(exist_ok=False)
    except FileExistsError as exc:
        return (root / "t").read_text(), exc.errno, sorted(os.listdir(base))


@scenario
def pathlib_open_and_resolve(base):
    root = pathlib.Path(base)
    with (root / "o.txt").open("w", encoding="utf-8") as handle:
        handle.write("opened")
    with (root / "o.txt").open() as handle:
        text = handle.read()
    return text, str((root / "sub" / ".." / "o.txt").resolve()), (root / "o.txt").samefile(
        os.path.join(base, "o.txt"))


@differs("Path.touch creates missing parents on a mount, like every write there",
         real=raises(FileNotFoundError, errno.ENOENT), mount=ok(True))
def pathlib_touch_missing_parent(base):
    path = pathlib.Path(base) / "no" / "parent"
    path.touch()
    return path.exists()


# -- shutil ---------------------------------------------------------------------------------------

@scenario
def shutil_copyfile_copy_copy2(base):
    _touch(f"{base}/src", b"payload" * 10_000)
    os.mkdir(f"{base}/d")
    results = [shutil.copyfile(f"{base}/src", f"{base}/c1"),
               shutil.copy(f"{base}/src", f"{base}/d"),
               shutil.copy2(f"{base}/src", f"{base}/c2")]
    with open(f"{base}/c2", "rb") as handle:
        same = handle.read() == b"payload" * 10_000
    return results, same, _walk(base)


@scenario
def shutil_copyfile_onto_itself(base):
    _touch(f"{base}/src", b"x")
    shutil.copyfile(f"{base}/src", f"{base}/src")


@scenario
def shutil_copyfile_missing_source(base):
    shutil.copyfile(f"{base}/missing", f"{base}/dst")


@scenario
def shutil_copyfile_into_missing_directory_from_directory(base):
    os.mkdir(f"{base}/d")
    shutil.copyfile(f"{base}/d", f"{base}/e")


@scenario
def shutil_copyfileobj(base):
    _touch(f"{base}/src", bytes(range(256)) * 300)
    with open(f"{base}/src", "rb") as src, open(f"{base}/dst", "wb") as dst:
        shutil.copyfileobj(src, dst, 1000)
    with open(f"{base}/dst", "rb") as handle:
        return handle.read() == bytes(range(256)) * 300


@scenario
def shutil_move_file_and_directory(base):
    _tree(base)
    os.mkdir(f"{base}/target")
    moved = [shutil.move(f"{base}/a.txt", f"{base}/target"),
             shutil.move(f"{base}/b", f"{base}/target/b2")]
    return moved, _walk(base)


@scenario
def shutil_move_onto_existing_name_in_directory(base):
    _touch(f"{base}/a")
    os.mkdir(f"{base}/d")
    _touch(f"{base}/d/a")
    shutil.move(f"{base}/a", f"{base}/d")


@scenario
def shutil_rmtree(base):
    _tree(base)
    shutil.rmtree(f"{base}/b")
    return _walk(base)


@scenario
def shutil_rmtree_missing(base):
    shutil.rmtree(f"{base}/missing")


@scenario
def shutil_rmtree_on_file(base):
    _touch(f"{base}/f")
    shutil.rmtree(f"{base}/f")


@scenario
def shutil_rmtree_ignore_errors_and_onerror(base):
    shutil.rmtree(f"{base}/missing", ignore_errors=True)
    calls = []
    shutil.rmtree(f"{base}/missing", onerror=lambda f, p, e: calls.append((p, e[0].__name__)))
    return calls


@scenario
def shutil_copytree_and_dirs_exist_ok(base):
    _tree(base)
    first = shutil.copytree(f"{base}/b", f"{base}/copy")
    second = shutil.copytree(f"{base}/b", f"{base}/copy", dirs_exist_ok=True)
    ignored = shutil.copytree(f"{base}/b", f"{base}/copy2",
                              ignore=shutil.ignore_patterns("e.txt"))
    return first, second, ignored, _walk(base)


@scenario
def shutil_copytree_existing_destination(base):
    _tree(base)
    os.mkdir(f"{base}/copy")
    shutil.copytree(f"{base}/b", f"{base}/copy")


# -- glob -----------------------------------------------------------------------------------------

@scenario
def glob_patterns(base):
    _tree(base)
    _touch(f"{base}/a1.txt")
    _touch(f"{base}/ab.log")
    patterns = ["*.txt", "a?.txt", "a[b1]*", "b/*", "b/**", "**/*.txt", "*", "b/d/e.txt",
                "missing/*", "b/"]
    return [(p, _rel(base, glob.glob(f"{base}/{p}", recursive=True))) for p in patterns]


@scenario
def glob_iglob_and_root_dir(base):
    _tree(base)
    return (_rel(base, glob.iglob(f"{base}/**/*.txt", recursive=True)),
            sorted(glob.glob("*.txt", root_dir=f"{base}/b")),
            sorted(glob.glob("**", root_dir=base, recursive=True)))


# -- file formats through the shim -----------------------------------------------------------------

@scenario
def zipfile_write_append_read(base):
    with zipfile.ZipFile(f"{base}/z.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("one.txt", "first")
        archive.writestr("dir/two.bin", bytes(1000))
    with zipfile.ZipFile(f"{base}/z.zip", "a") as archive:
        archive.writestr("three.txt", "appended")
    with zipfile.ZipFile(f"{base}/z.zip") as archive:
        return (archive.namelist(), archive.read("one.txt"), archive.read("three.txt"),
                archive.testzip())


@scenario
def zipfile_extractall(base):
    with zipfile.ZipFile(f"{base}/z.zip", "w") as archive:
        archive.writestr("x/y.txt", "nested")
    with zipfile.ZipFile(f"{base}/z.zip") as archive:
        archive.extractall(f"{base}/out")
    return _walk(f"{base}/out")


@scenario
def tarfile_gzip_round_trip_and_extract(base):
    _tree(base)
    with tarfile.open(f"{base}/t.tar.gz", "w:gz") as archive:
        archive.add(f"{base}/b", arcname="b")
    with tarfile.open(f"{base}/t.tar.gz") as archive:
        names = sorted(archive.getnames())
        archive.extractall(f"{base}/out")
    return names, _walk(f"{base}/out")


@scenario
def json_csv_pickle_gzip(base):
    data = {"a": [1, 2, 3], "ü": "ß", "n": None}
    with open(f"{base}/d.json", "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False)
    with open(f"{base}/d.json", encoding="utf-8") as handle:
        loaded = json.load(handle)
    with open(f"{base}/d.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["x", "y,z"], ["1", "line\nbreak"]])
    with open(f"{base}/d.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(f"{base}/d.pkl", "wb") as handle:
        pickle.dump({"set": {1, 2}, "bytes": b"\x00"}, handle)
    with open(f"{base}/d.pkl", "rb") as handle:
        unpickled = pickle.load(handle)
    with gzip.open(f"{base}/d.gz", "wt", encoding="utf-8") as handle:
        handle.write("compressed ✓")
    with gzip.open(f"{base}/d.gz", "rt", encoding="utf-8") as handle:
        unzipped = handle.read()
    return loaded, rows, unpickled, unzipped


# -- awkward names --------------------------------------------------------------------------------

@scenario
def keys_with_special_characters(base):
    for name in NAMES:
        _touch(f"{base}/{name}", name.encode("utf-8"))
    contents = []
    for name in sorted(os.listdir(base)):
        with open(os.path.join(base, name), "rb") as handle:
            contents.append((name, handle.read().decode("utf-8") == name))
    return contents


@scenario
def directories_with_special_characters(base):
    for name in NAMES[:5]:
        os.makedirs(f"{base}/{name}/inner {name}")
        _touch(f"{base}/{name}/inner {name}/f", b"x")
    shutil.rmtree(f"{base}/{NAMES[0]}")
    os.rename(f"{base}/{NAMES[1]}", f"{base}/renamed ✓")
    return _walk(base)


@scenario
def walk_a_deeper_tree(base):
    for i in range(3):
        for j in range(3):
            os.makedirs(f"{base}/l{i}/m{j}")
            _touch(f"{base}/l{i}/m{j}/f{i}{j}.txt", b"%d" % (i * j))
    total = sum(os.path.getsize(os.path.join(root, f))
                for root, _, files in os.walk(base) for f in files)
    return _walk(base), total
