"""Differential scenarios: file descriptors, mmap, tempfile, archives, logging, real libraries.

On a mount these go through ``fd_files`` (a local copy behind a real
descriptor), real directory times, and ``local_copy``.
"""
from __future__ import annotations

import errno
import io
import logging
import logging.handlers
import mmap
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile

import pytest

from tests.differential import differs, ok, raises, scenario
from tests.differential import touch as _touch
from tests.differential import tree as _tree


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _walk(top: str) -> list:
    return sorted((os.path.relpath(root, top), sorted(dirs), sorted(files))
                  for root, dirs, files in os.walk(top))


def _files(top: str) -> dict:
    return {os.path.relpath(os.path.join(root, name), top): _read(os.path.join(root, name))
            for root, _, files in os.walk(top) for name in files}


# -- os.open / os.write / os.close --

@scenario
def fd_create_write_close(base):
    fd = os.open(f"{base}/f", os.O_CREAT | os.O_WRONLY, 0o644)
    visible = os.path.exists(f"{base}/f")
    written = os.write(fd, b"hello") + os.write(fd, b" fd")
    os.close(fd)
    return visible, written, _read(f"{base}/f")


@scenario
def fd_read_existing(base):
    _touch(f"{base}/f", b"0123456789")
    fd = os.open(f"{base}/f", os.O_RDONLY)
    try:
        return os.read(fd, 4), os.lseek(fd, 0, os.SEEK_END), os.pread(fd, 3, 5)
    finally:
        os.close(fd)


@scenario
def fd_rdwr_pwrite_and_lseek(base):
    _touch(f"{base}/f", b"abcdef")
    fd = os.open(f"{base}/f", os.O_RDWR)
    os.pwrite(fd, b"XY", 2)
    os.lseek(fd, 0, os.SEEK_END)
    os.write(fd, b"!")
    os.close(fd)
    return _read(f"{base}/f")


@scenario
def fd_append_and_truncate_flags(base):
    _touch(f"{base}/f", b"start")
    fd = os.open(f"{base}/f", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"+more")
    os.close(fd)
    appended = _read(f"{base}/f")
    fd = os.open(f"{base}/f", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"new")
    os.close(fd)
    return appended, _read(f"{base}/f")


@scenario
def fd_open_errors(base):
    _touch(f"{base}/f", b"x")
    os.mkdir(f"{base}/d")
    found = []
    for path, flags in ((f"{base}/missing", os.O_RDONLY),
                        (f"{base}/f", os.O_CREAT | os.O_EXCL | os.O_WRONLY),
                        (f"{base}/d", os.O_WRONLY),
                        (f"{base}/f/", os.O_RDONLY)):
        try:
            os.close(os.open(path, flags))
        except OSError as exc:
            found.append((type(exc).__name__, exc.errno))
    return found


@scenario
def fd_unchanged_copy_is_not_rewritten(base):
    _touch(f"{base}/f", b"same")
    before = os.stat(f"{base}/f").st_mtime_ns
    fd = os.open(f"{base}/f", os.O_RDWR)
    os.read(fd, 10)
    os.close(fd)
    return _read(f"{base}/f"), os.stat(f"{base}/f").st_mtime_ns == before


@scenario
def fd_fsync_publishes_before_close(base):
    fd = os.open(f"{base}/f", os.O_CREAT | os.O_RDWR)
    os.write(fd, b"synced")
    os.fsync(fd)
    seen = _read(f"{base}/f")
    os.write(fd, b"+later")
    os.close(fd)
    return seen, _read(f"{base}/f")


@scenario
def fd_dup_shares_the_file(base):
    fd = os.open(f"{base}/f", os.O_CREAT | os.O_WRONLY)
    copy = os.dup(fd)
    os.write(copy, b"via dup;")
    os.close(copy)
    os.write(fd, b"via fd")
    os.close(fd)
    return _read(f"{base}/f")


@scenario
def fd_close_twice_is_ebadf(base):
    fd = os.open(f"{base}/f", os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    try:
        os.close(fd)
    except OSError as exc:
        return exc.errno
    return None


@scenario
def fd_unlinked_while_open_stays_gone(base):
    fd = os.open(f"{base}/f", os.O_CREAT | os.O_RDWR)
    os.write(fd, b"scratch")
    os.unlink(f"{base}/f")
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 100)
    os.close(fd)
    return data, os.path.exists(f"{base}/f"), os.listdir(base)


@differs("a directory on a mount has no descriptor (os.open refuses it with ENOTSUP)",
         real=ok(True), mount=raises(OSError, errno.ENOTSUP))
def fd_open_a_directory(base):
    fd = os.open(base, os.O_RDONLY)
    os.close(fd)
    return True


# -- os.fdopen, open(fd), fileno(), fstat --

@scenario
def fdopen_text_round_trip(base):
    fd = os.open(f"{base}/t.txt", os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("grüße\nline two\n")
    with os.fdopen(os.open(f"{base}/t.txt", os.O_RDONLY), encoding="utf-8") as handle:
        return handle.readlines(), type(handle).__name__


@scenario
def open_fd_closefd_false(base):
    fd = os.open(f"{base}/f", os.O_CREAT | os.O_RDWR)
    with open(fd, "wb", closefd=False) as handle:
        handle.write(b"kept open")
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 100)
    os.close(fd)
    return data, _read(f"{base}/f")


@scenario
def fileno_and_fstat(base):
    _touch(f"{base}/f", b"12345")
    with open(f"{base}/f", "rb") as handle:
        st = os.fstat(handle.fileno())
        same = os.path.samestat(st, os.stat(f"{base}/f"))
        return st.st_size, stat.S_ISREG(st.st_mode), same, handle.read()


@scenario
def fileno_on_a_writer_then_close(base):
    with open(f"{base}/f", "wb") as handle:
        handle.write(b"python;")
        handle.flush()
        os.write(handle.fileno(), b"fd;")
        handle.seek(0, io.SEEK_END)
        handle.write(b"end")
        handle.flush()
        os.fsync(handle.fileno())
    return _read(f"{base}/f")


# -- mmap --

@scenario
def mmap_read(base):
    _touch(f"{base}/m.bin", bytes(range(256)) * 20)
    with open(f"{base}/m.bin", "rb") as handle, \
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        return len(mapped), mapped[250:260], mapped.find(b"\x10\x11")


@scenario
def mmap_write_through_a_file_object(base):
    _touch(f"{base}/m.bin", b"a" * 4096)
    with open(f"{base}/m.bin", "r+b") as handle:
        with mmap.mmap(handle.fileno(), 0) as mapped:
            mapped[0:5] = b"HELLO"
            mapped.flush()
    data = _read(f"{base}/m.bin")
    return data[:8], len(data)


@scenario
def mmap_write_through_os_open(base):
    _touch(f"{base}/m.bin", bytes(100))
    fd = os.open(f"{base}/m.bin", os.O_RDWR)
    with mmap.mmap(fd, 100) as mapped:
        mapped[10:13] = b"abc"
    os.close(fd)
    return _read(f"{base}/m.bin")[8:15]


# -- tempfile --

@scenario
def tempfile_mkstemp(base):
    fd, name = tempfile.mkstemp(dir=base, suffix=".tmp")
    exists = os.path.exists(name)
    with os.fdopen(fd, "w") as handle:
        handle.write("temporary")
    return exists, os.path.dirname(name) == base, name.endswith(".tmp"), _read(name)


@scenario
def tempfile_named_temporary_file(base):
    with tempfile.NamedTemporaryFile(dir=base, prefix="n-") as handle:
        handle.write(b"gone on close")
        handle.flush()
        inside = os.path.exists(handle.name), os.path.basename(handle.name).startswith("n-")
    return inside, os.path.exists(handle.name), os.listdir(base)


@scenario
def tempfile_named_temporary_file_kept(base):
    with tempfile.NamedTemporaryFile("w", dir=base, delete=False, suffix=".txt") as handle:
        handle.write("kept")
    return _read(handle.name), len(os.listdir(base))


@scenario
def tempfile_temporary_file(base):
    with tempfile.TemporaryFile(dir=base) as handle:
        handle.write(b"anonymous")
        handle.seek(0)
        data = handle.read()
    return data, os.listdir(base)


@scenario
def tempfile_temporary_directory(base):
    with tempfile.TemporaryDirectory(dir=base) as scratch:
        _touch(f"{scratch}/a", b"1")
        os.mkdir(f"{scratch}/sub")
        listed = sorted(os.listdir(scratch))
    return listed, os.path.exists(scratch), os.listdir(base)


# -- numpy --

@scenario
def numpy_tofile_fromfile(base):
    np = pytest.importorskip("numpy")
    np.arange(12, dtype="<i4").tofile(f"{base}/a.bin")
    with open(f"{base}/b.bin", "wb") as handle:
        np.linspace(0, 1, 5).tofile(handle)
    return (np.fromfile(f"{base}/a.bin", dtype="<i4").tolist(),
            np.fromfile(f"{base}/b.bin").tolist(), os.path.getsize(f"{base}/a.bin"))


@scenario
def numpy_load_mmap_read(base):
    np = pytest.importorskip("numpy")
    np.save(f"{base}/a.npy", np.arange(20).reshape(4, 5))
    mapped = np.load(f"{base}/a.npy", mmap_mode="r")
    return type(mapped).__name__, mapped[2].tolist(), mapped.shape, _read(f"{base}/a.npy")[:6]


# -- zipfile / tarfile / shutil archives --

@scenario
def zipfile_write_a_directory_and_files(base):
    _tree(base)
    with zipfile.ZipFile(f"{base}/z.zip", "w") as archive:
        archive.write(f"{base}/b", "b")
        archive.write(f"{base}/b/c.txt", "b/c.txt")
        archive.write(f"{base}/a.txt", "a.txt")
    with zipfile.ZipFile(f"{base}/z.zip", "a") as archive:
        archive.write(f"{base}/b/d/e.txt", "e.txt")
    with zipfile.ZipFile(f"{base}/z.zip") as archive:
        return [(i.filename, i.is_dir(), i.file_size) for i in archive.infolist()]


@scenario
def tarfile_stream_modes(base):
    _tree(base)
    with tarfile.open(f"{base}/s.tar.gz", "w|gz") as archive:
        archive.add(f"{base}/b", arcname="b")
    with tarfile.open(f"{base}/s.tar.gz", "r|gz") as archive:
        members = sorted((m.name, m.isdir(), m.size) for m in archive)
    with open(f"{base}/s.tar.gz", "rb") as handle, tarfile.open(fileobj=handle,
                                                                mode="r|*") as archive:
        archive.extractall(f"{base}/out", filter="data")
    return members, _files(f"{base}/out")


@scenario
def tarfile_append_mode(base):
    _tree(base)
    with tarfile.open(f"{base}/t.tar", "w") as archive:
        archive.add(f"{base}/a.txt", arcname="a.txt")
    with tarfile.open(f"{base}/t.tar", "a") as archive:
        archive.add(f"{base}/b/c.txt", arcname="c.txt")
    with tarfile.open(f"{base}/t.tar") as archive:
        return archive.getnames(), archive.extractfile("c.txt").read()


@scenario
def shutil_make_archive_zip_and_unpack(base):
    _tree(base)
    made = shutil.make_archive(f"{base}/arch", "zip", root_dir=f"{base}/b")
    shutil.unpack_archive(made, f"{base}/out")
    with zipfile.ZipFile(made) as archive:
        names = sorted(archive.namelist())
    return os.path.basename(made), names, _files(f"{base}/out"), _walk(f"{base}/out")


@scenario
def shutil_make_archive_gztar_and_unpack(base):
    _tree(base)
    made = shutil.make_archive(f"{base}/arch", "gztar", root_dir=base, base_dir="b")
    shutil.unpack_archive(made, f"{base}/out", filter="data")
    return os.path.basename(made), _files(f"{base}/out")


# -- logging --

def _log_to(handler: logging.Handler, count: int) -> None:
    logger = logging.getLogger(f"vfs-fds-{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    try:
        for i in range(count):
            logger.warning("record %d %s", i, "x" * 20)
    finally:
        logger.removeHandler(handler)
        handler.close()


@scenario
def logging_file_handler(base):
    _log_to(logging.FileHandler(f"{base}/app.log"), 3)
    _log_to(logging.FileHandler(f"{base}/app.log"), 1)
    return _read(f"{base}/app.log").decode().splitlines()


@scenario
def logging_rotating_file_handler(base):
    _log_to(logging.handlers.RotatingFileHandler(f"{base}/r.log", maxBytes=100,
                                                 backupCount=2), 7)
    return {name: _read(f"{base}/{name}").count(b"\n") for name in sorted(os.listdir(base))}


@scenario
def logging_watched_file_handler(base):
    _log_to(logging.handlers.WatchedFileHandler(f"{base}/w.log"), 3)
    return _read(f"{base}/w.log").decode().splitlines()


# -- Pillow, joblib --

@scenario
def pillow_save_and_open(base):
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.new("RGB", (8, 4), (10, 20, 30))
    image.putpixel((1, 1), (255, 0, 0))
    image.save(f"{base}/i.png")
    image.save(f"{base}/i.jpg", quality=90)
    with image_module.open(f"{base}/i.png") as loaded:
        png = (loaded.size, loaded.mode, loaded.getpixel((1, 1)), loaded.format)
    with image_module.open(f"{base}/i.jpg") as loaded:
        jpg = (loaded.size, loaded.format)
    return png, jpg


@scenario
def joblib_dump_and_load(base):
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    names = joblib.dump({"a": np.arange(5), "b": "text"}, f"{base}/j.pkl")
    loaded = joblib.load(f"{base}/j.pkl")
    joblib.dump([1, 2], f"{base}/j.gz", compress=3)
    return ([os.path.basename(n) for n in names], loaded["a"].tolist(), loaded["b"],
            joblib.load(f"{base}/j.gz"))


@scenario
def joblib_load_mmap_mode(base):
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    joblib.dump({"big": np.arange(100, dtype="float64")}, f"{base}/m.pkl")
    loaded = joblib.load(f"{base}/m.pkl", mmap_mode="r")
    return type(loaded["big"]).__name__, float(loaded["big"][42])


# -- native libraries through local_copy --

@scenario
def sqlite3_through_local_copy(base):
    import sqlite3

    import vfs_state

    with vfs_state.local_copy(f"{base}/db.sqlite", "w") as path:
        fresh = os.path.exists(path)
        with sqlite3.connect(path) as connection:
            connection.execute("create table t (k text, v integer)")
            connection.executemany("insert into t values (?, ?)", [("a", 1), ("b", 2)])
        connection.close()
    with vfs_state.local_copy(f"{base}/db.sqlite", "r+") as path:
        with sqlite3.connect(path) as connection:
            connection.execute("update t set v = v + 10")
        connection.close()
    with vfs_state.local_copy(f"{base}/db.sqlite") as path:
        connection = sqlite3.connect(path)
        rows = connection.execute("select k, v from t order by k").fetchall()
        connection.close()
    return fresh, rows, os.listdir(base)


@scenario
def shelve_through_local_copy(base):
    import dbm.dumb
    import shelve

    import vfs_state

    with vfs_state.local_copy(f"{base}/shelf", "w") as path:
        os.mkdir(path)
        with shelve.Shelf(dbm.dumb.open(f"{path}/db", "c")) as shelf:
            shelf["state"] = {"count": 1}
    with vfs_state.local_copy(f"{base}/shelf", "r+") as path:
        with shelve.Shelf(dbm.dumb.open(f"{path}/db", "w")) as shelf:
            shelf["state"] = {"count": shelf["state"]["count"] + 1}
            shelf["other"] = [1, 2]
    with vfs_state.local_copy(f"{base}/shelf") as path:
        with shelve.Shelf(dbm.dumb.open(f"{path}/db", "r")) as shelf:
            content = dict(shelf)
    return content, sorted(os.listdir(f"{base}/shelf"))


@scenario
def local_copy_of_a_directory_syncs_deletions(base):
    import vfs_state

    _tree(base)
    with vfs_state.local_copy(f"{base}/b", "r+") as path:
        os.remove(f"{path}/c.txt")
        with open(f"{path}/d/e.txt", "ab") as handle:
            handle.write(b"+")
        with open(f"{path}/new.txt", "wb") as handle:
            handle.write(b"N")
    return _files(f"{base}/b")


@scenario
def duckdb_through_local_copy(base):
    duckdb = pytest.importorskip("duckdb")

    import vfs_state

    with vfs_state.local_copy(f"{base}/d.duckdb", "w") as path:
        with duckdb.connect(path) as connection:
            connection.execute("create table t as select range as x from range(5)")
    with vfs_state.local_copy(f"{base}/d.duckdb", "r+") as path:
        with duckdb.connect(path) as connection:
            connection.execute("insert into t values (99)")
    with vfs_state.local_copy(f"{base}/d.duckdb") as path:
        with duckdb.connect(path, read_only=True) as connection:
            rows = connection.execute("select sum(x), count(*) from t").fetchall()
    return rows, os.listdir(base)


@differs("sqlite3.connect on a mount path is refused at once, naming local_copy",
         real=ok(1), mount=raises(OSError, errno.ENOTSUP))
def sqlite3_connect_on_the_path(base):
    import sqlite3

    connection = sqlite3.connect(f"{base}/direct.db")
    try:
        return connection.execute("select 1").fetchone()[0]
    finally:
        connection.close()


@scenario
def subprocess_output_into_a_mount_file(base):
    import subprocess
    import sys

    with open(f"{base}/out.txt", "wb") as handle:
        handle.write(b"header\n")
        handle.flush()
        subprocess.run([sys.executable, "-c", "print('from the child')"], stdout=handle,
                       check=True, env={**os.environ, "VFS_STATE_MOUNTS": ""})
    with open(f"{base}/out.txt", "rb") as handle:
        listed = subprocess.run(["cat"], stdin=handle, capture_output=True, check=True).stdout
    return _read(f"{base}/out.txt"), listed
