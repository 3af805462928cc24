"""File descriptors on mounts beyond the differential oracle: CAS at close, fsync,
clean-up, untouched local paths, refusals of native libraries, directory times.
"""
from __future__ import annotations

import errno
import io
import mmap
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile

import pytest

import vfs_state
from tests.shim_fixtures import fresh_mount_path, mount_spec, mounted_dir
from vfs_state import StateFS
from vfs_state.shim import fd_files


@pytest.fixture
def mounted(local_sidecar):
    with mounted_dir(local_sidecar) as mount:
        yield mount


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def _other_writer(mounted, relative: str, data: bytes) -> None:
    """Another client (its own version memory) replaces a key behind our back."""
    with vfs_state.session():
        fs = StateFS(mounted.socket_path)
        key = f"{mounted.base[len(mounted.mount_path):]}/{relative}".strip("/")
        fs.client.write(key, data, len(data), {})
        fs.close()


def _stored(mounted, relative: str) -> bytes:
    with vfs_state.session():
        fs = StateFS(mounted.socket_path)
        key = f"{mounted.base[len(mounted.mount_path):]}/{relative}"
        try:
            return fs.readbytes(key)
        finally:
            fs.close()


def _leftovers() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("vfs-state-fd-")}


def test_close_is_a_conditional_write(mounted):
    path = f"{mounted.base}/doc"
    _write(path, b"original")
    fd = os.open(path, os.O_RDWR)
    _other_writer(mounted, "doc", b"theirs")
    os.write(fd, b"MINE")
    with pytest.raises(FileExistsError) as info:
        os.close(fd)
    assert info.value.filename == path
    assert _read(path) == b"theirs"
    assert fd not in fd_files.REGISTRY
    with pytest.raises(OSError) as closed:
        os.close(fd)  # closed although the commit failed
    assert closed.value.errno == errno.EBADF


def test_exclusive_create_is_atomic_in_the_store(mounted):
    path = f"{mounted.base}/lock"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert _stored(mounted, "lock") == b""  # created at open, as locally
    with pytest.raises(FileExistsError):
        os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)


def test_fsync_commits_and_close_commits_the_rest(mounted):
    fd = os.open(f"{mounted.base}/log", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"one;")
    os.fsync(fd)
    assert _stored(mounted, "log") == b"one;"
    os.write(fd, b"two;")
    os.fdatasync(fd)
    os.write(fd, b"three")
    assert _stored(mounted, "log") == b"one;two;"
    os.close(fd)
    assert _stored(mounted, "log") == b"one;two;three"


def test_temporary_copies_are_removed(mounted):
    before = _leftovers()
    for flags in (os.O_CREAT | os.O_WRONLY, os.O_RDONLY, os.O_RDWR | os.O_TRUNC):
        os.close(os.open(f"{mounted.base}/f", flags))
    with pytest.raises(FileNotFoundError):
        os.open(f"{mounted.base}/missing", os.O_RDONLY)
    assert _leftovers() == before and not fd_files.REGISTRY


def test_local_paths_reach_the_real_functions(mounted, tmp_path):
    path = str(tmp_path / "local.bin")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        assert fd not in fd_files.REGISTRY
        os.write(fd, b"local")
        os.fsync(fd)
        st = os.fstat(fd)
        assert (st.st_size, st.st_ino) == (5, os.stat(path).st_ino)
        with os.fdopen(os.dup(fd), "rb") as handle:
            assert type(handle.raw) is io.FileIO
    finally:
        os.close(fd)
    with open(path, "rb") as handle:
        assert type(handle.raw) is io.FileIO and os.fstat(handle.fileno()).st_size == 5
    assert not fd_files.REGISTRY


def test_fileno_views_are_forgotten_at_close(mounted):
    _write(f"{mounted.base}/f", b"data")
    with open(f"{mounted.base}/f", "rb") as handle:
        fd = handle.fileno()
        assert fd in fd_files.REGISTRY and handle.fileno() == fd
    assert fd not in fd_files.REGISTRY
    with pytest.raises(ValueError):
        handle.fileno()


def test_passthrough_writer_has_no_descriptor(local_sidecar):
    root = fresh_mount_path()
    with vfs_state.installed(mount_spec("stream", root, local_sidecar.socket_path,
                                        write="passthrough")):
        with open(f"{root}/{uuid.uuid4().hex}/f", "wb") as handle:
            with pytest.raises(io.UnsupportedOperation, match="mount 'stream'.*local_copy"):
                handle.fileno()


def test_directory_times_are_real(mounted):
    """Directories reported mtime 0 before: zip refused them (before 1980)."""
    os.makedirs(f"{mounted.base}/d/e")
    for path in (mounted.mount_path, mounted.base, f"{mounted.base}/d"):
        assert abs(os.stat(path).st_mtime - time.time()) < 3600
    assert [e.stat().st_mtime > 315532800 for e in os.scandir(mounted.base)] == [True]
    with zipfile.ZipFile(f"{mounted.base}/z.zip", "w") as archive:
        archive.write(f"{mounted.base}/d", "d")
    assert zipfile.ZipFile(f"{mounted.base}/z.zip").namelist() == ["d/"]


def test_uninstall_restores_tempfile_and_os(local_sidecar):
    originals = (os.open, os.close, os.fsync, os.fstat, mmap.mmap,
                 vars(tempfile._TemporaryFileCloser).get("close"),
                 vars(tempfile._TemporaryFileCloser).get("cleanup"))
    with vfs_state.installed(mount_spec("m", fresh_mount_path(), local_sidecar.socket_path)):
        assert os.open is not originals[0]
        # the private tempfile shape this relies on (checked against 3.11-3.13)
        assert mmap.mmap is not originals[4] and issubclass(mmap.mmap, originals[4])
        patched = [vars(tempfile._TemporaryFileCloser).get(n) for n in ("close", "cleanup")]
        pairs = zip(patched, originals[5:], strict=True)
        assert any(p is not None and p is not o for p, o in pairs)
    assert (os.open, os.close, os.fsync, os.fstat, mmap.mmap,
            vars(tempfile._TemporaryFileCloser).get("close"),
            vars(tempfile._TemporaryFileCloser).get("cleanup")) == originals


def test_joblib_writable_mmap_is_refused(mounted):
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    joblib.dump(np.arange(4), f"{mounted.base}/a.pkl")
    with pytest.raises(OSError, match="mount 'meta'.*local_copy"):
        joblib.load(f"{mounted.base}/a.pkl", mmap_mode="r+")


_SQLITE_CHILD = """
import sys, vfs_state
vfs_state.install(sys.argv[1])
import sqlite3
try:
    sqlite3.connect(sys.argv[2] + "/db.sqlite")
except OSError as exc:
    print("refused:", exc)
sqlite3.connect(":memory:").close()
vfs_state.uninstall()
print("after uninstall:", type(sqlite3.connect(":memory:")).__name__)
"""


def test_sqlite3_imported_after_install_is_refused(tmp_path):
    """Before: 'unable to open database file' (sqlite3.OperationalError), no mount named."""
    root = fresh_mount_path()
    spec = mount_spec("meta", root, str(tmp_path / "never.sock"))
    result = subprocess.run([sys.executable, "-c", _SQLITE_CHILD, spec, root],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "VFS_STATE_MOUNTS": ""})
    assert result.returncode == 0, result.stderr
    assert "refused: [Errno 95] sqlite3.connect() is not supported on mount 'meta'" in result.stdout
    assert "vfs_state.local_copy" in result.stdout
    assert "after uninstall: Connection" in result.stdout
    assert not os.path.lexists(root)


def test_sqlite3_loaded_before_install_is_refused(mounted):
    import sqlite3

    for call in (lambda: sqlite3.connect(f"{mounted.base}/x.db"),
                 lambda: sqlite3.connect(database=f"{mounted.base}/x.db", timeout=1)):
        with pytest.raises(OSError, match="mount 'meta'.*local_copy") as info:
            call()
        assert info.value.errno == errno.ENOTSUP
    sqlite3.connect(":memory:").close()
    sqlite3.connect(database=":memory:").close()  # the keyword form still reaches sqlite3
    assert not os.listdir(mounted.base)


def test_duckdb_is_refused_and_works_through_local_copy(mounted):
    duckdb = pytest.importorskip("duckdb")
    path = f"{mounted.base}/d.duckdb"
    with pytest.raises(OSError, match="duckdb.connect.*mount 'meta'.*local_copy"):
        duckdb.connect(path)
    duckdb.connect().close()  # no path: in memory, untouched
    with vfs_state.local_copy(path, "w") as local:
        with duckdb.connect(local) as connection:
            connection.execute("create table t as select 42 as x")
    with vfs_state.local_copy(path) as local, duckdb.connect(local, read_only=True) as con:
        assert con.execute("select x from t").fetchall() == [(42,)]


def test_a_writable_map_outliving_its_file_fails_loudly(mounted):
    """numpy.memmap(mode="r+") closes its file at once: later writes could not be stored."""
    np = pytest.importorskip("numpy")
    path = f"{mounted.base}/a.bin"
    np.arange(8, dtype="<i4").tofile(path)
    with pytest.raises(OSError, match="memory map.*still open") as info:
        np.memmap(path, dtype="<i4", mode="r+")
    assert info.value.errno == errno.EBUSY and info.value.filename == path
    fd = os.open(path, os.O_RDWR)
    mapped = mmap.mmap(fd, 0)
    mapped[0:4] = b"\x07\x00\x00\x00"
    with pytest.raises(OSError, match="memory map"):
        os.close(fd)  # committed, then reported
    mapped.close()
    assert np.fromfile(path, dtype="<i4").tolist() == [7, 1, 2, 3, 4, 5, 6, 7]
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as inside:
        inside[0:4] = b"\x09\x00\x00\x00"  # closed before the file: fine
    assert np.memmap(path, dtype="<i4", mode="r")[0] == 9
    assert not fd_files.MAPS


_LEAKED_FD_CHILD = """
import os, sys, vfs_state
vfs_state.install(sys.argv[1])
fd = os.open(sys.argv[2], os.O_CREAT | os.O_WRONLY)
os.write(fd, b"never closed")
"""


def test_a_descriptor_left_open_is_committed_at_exit(mounted):
    """As the kernel keeps a local file's writes when a process exits with it open."""
    path = f"{mounted.base}/leaked"
    result = subprocess.run([sys.executable, "-c", _LEAKED_FD_CHILD, mounted.spec, path],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "VFS_STATE_MOUNTS": ""})
    assert result.returncode == 0, result.stderr
    assert _read(path) == b"never closed"


def test_locks_on_mount_descriptors_are_refused(mounted, tmp_path):
    """A lock on the local copy would not exclude another process: refused, not faked."""
    import fcntl

    fd = os.open(f"{mounted.base}/lock", os.O_CREAT | os.O_RDWR)
    try:
        for call in (lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                     lambda: fcntl.lockf(fd, fcntl.LOCK_EX),
                     lambda: fcntl.fcntl(fd, fcntl.F_SETLK, bytes(32))):
            with pytest.raises(OSError, match="mount 'meta'.*retry_on_conflict") as info:
                call()
            assert info.value.errno == errno.ENOSYS
        fcntl.flock(fd, fcntl.LOCK_UN)  # unlocking what was never locked: harmless
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_RDWR
    finally:
        os.close(fd)
    with open(f"{mounted.base}/other", "wb") as handle:
        with pytest.raises(OSError, match="mount 'meta'"):
            fcntl.flock(handle, fcntl.LOCK_EX)
    with open(tmp_path / "local", "wb") as handle:  # local files lock as always
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)
