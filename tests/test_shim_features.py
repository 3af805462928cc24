"""Shim features beyond the differential oracle: xattrs, CAS through plain calls,
``local_copy``, refusals, moves across mounts, outages, passthrough mounts.
"""
from __future__ import annotations

import errno
import io
import mmap
import os
import shutil
import sqlite3
import uuid

import pytest

import vfs_state
from tests.shim_fixtures import fresh_mount_path, mount_spec, mounted_dir
from tests.shim_fixtures import read_bytes as _read
from tests.shim_fixtures import write_bytes as _write
from vfs_state import StateFS, shim
from vfs_state.shim import refusals


@pytest.fixture
def mounted(local_sidecar):
    """The shim installed with one mount on the session's local sidecar."""
    with mounted_dir(local_sidecar) as mount:
        yield mount


def _other_writer(mounted, relative: str, data: bytes) -> None:
    """Another client (its own version memory) replaces a key behind our back."""
    with vfs_state.session():
        fs = StateFS(mounted.socket_path)
        key = f"{mounted.base[len(mounted.mount_path):]}/{relative}"
        fs.client.write(key.strip("/"), data, len(data), {})
        fs.close()


# -- xattrs ----------------------------------------------------------------------------------

def test_xattrs_on_the_local_connector(mounted):
    path = f"{mounted.base}/x.txt"
    _write(path, b"12345")
    assert os.getxattr(path, "user.vfs.size") == b"5"
    assert os.getxattr(path, b"user.asya.size") == b"5"
    assert "user.vfs.version" in os.listxattr(path)
    for name in ("user.vfs.nope", "user.other", "security.selinux"):
        with pytest.raises(OSError) as info:
            os.getxattr(path, name)
        assert info.value.errno == errno.ENODATA and info.value.filename == path
    with pytest.raises(OSError) as info:  # the local backend has no ttl: not supported
        os.setxattr(path, "user.vfs.ttl", b"60")
    assert info.value.errno == errno.ENOTSUP and info.value.filename == path
    with pytest.raises(PermissionError):  # size exists but is read-only
        os.setxattr(path, "user.vfs.size", b"60")
    with pytest.raises(OSError) as info:
        os.setxattr(path, "user.other", b"x")
    assert info.value.errno == errno.ENOTSUP and "mount 'meta'" in str(info.value)
    with pytest.raises(OSError) as info:
        os.removexattr(path, "user.vfs.size")
    assert info.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as info:
        os.removexattr(path, "user.vfs.nope")
    assert info.value.errno == errno.ENODATA
    with pytest.raises(FileNotFoundError):
        os.listxattr(f"{mounted.base}/missing")
    os.mkdir(f"{mounted.base}/d")
    assert os.listxattr(f"{mounted.base}/d") == []
    with pytest.raises(OSError) as info:
        os.getxattr(f"{mounted.base}/d", "user.vfs.size")
    assert info.value.errno == errno.ENODATA


def test_xattr_set_and_get_on_s3(connector_pool):
    sidecar = connector_pool.sidecar("s3-buffered-cas")
    root = fresh_mount_path()
    with vfs_state.installed(mount_spec("s3", root, sidecar.socket_path)):
        path = f"{root}/{uuid.uuid4().hex}/obj.json"
        _write(path, b"{}")
        os.setxattr(path, "user.vfs.content_type", b"application/json")
        assert os.getxattr(path, "user.asya.content_type") == b"application/json"
        with pytest.raises(FileExistsError):
            os.setxattr(path, "user.vfs.content_type", b"text/plain", os.XATTR_CREATE)
        with pytest.raises(OSError) as info:
            os.setxattr(path, "user.vfs.ttl", b"1", os.XATTR_REPLACE)
        assert info.value.errno == errno.ENODATA
        assert _read(path) == b"{}"


# -- CAS through plain file calls ------------------------------------------------------------

def test_write_after_a_concurrent_change_fails_with_file_exists(mounted):
    path = f"{mounted.base}/counter"
    _write(path, b"1")
    with vfs_state.session():
        value = int(_read(path))
        _other_writer(mounted, "counter", b"41")
        with pytest.raises(FileExistsError):
            _write(path, b"%d" % (value + 1))
    assert _read(path) == b"41"


def test_append_is_conditional_on_the_version_read(mounted):
    path = f"{mounted.base}/log"
    _write(path, b"a")
    handle = open(path, "a")
    handle.write("b")
    _other_writer(mounted, "log", b"X")
    with pytest.raises(FileExistsError):
        handle.close()
    assert _read(path) == b"X"


def test_rename_refuses_a_source_changed_since_observed(mounted):
    src, dst = f"{mounted.base}/src", f"{mounted.base}/dst"
    _write(src, b"v1")
    with vfs_state.session():
        assert _read(src) == b"v1"
        _other_writer(mounted, "src", b"v2")
        with pytest.raises(FileExistsError):
            os.rename(src, dst)
    assert _read(src) == b"v2" and not os.path.exists(dst)


def test_rename_delete_is_conditional_and_not_atomic(mounted, monkeypatch):
    from vfs_state import statefs_moves

    src, dst = f"{mounted.base}/src", f"{mounted.base}/dst"
    _write(src, b"copied")
    real_copy = statefs_moves.copy_object

    def copy_then_interfere(*args):
        version = real_copy(*args)
        _other_writer(mounted, "src", b"newer")
        return version

    monkeypatch.setattr(statefs_moves, "copy_object", copy_then_interfere)
    with pytest.raises(FileExistsError):
        os.rename(src, dst)
    assert _read(src) == b"newer" and _read(dst) == b"copied"


def test_retry_on_conflict_with_plain_calls(mounted):
    path = f"{mounted.base}/n"
    _write(path, b"0")
    interfered = []

    def increment() -> int:
        value = int(_read(path))
        if not interfered:
            interfered.append(True)
            _other_writer(mounted, "n", b"10")
        _write(path, b"%d" % (value + 1))
        return value + 1

    assert vfs_state.retry_on_conflict(increment, attempts=3, backoff=0.001) == 11


# -- local_copy --------------------------------------------------------------------------------

def test_local_copy_with_sqlite3(mounted):
    db = f"{mounted.base}/app.sqlite"
    with vfs_state.local_copy(db, "w") as path:
        assert not path.startswith(mounted.mount_path) and not os.path.exists(path)
        with sqlite3.connect(path) as con:
            con.execute("create table t (x integer)")
            con.execute("insert into t values (1)")
        con.close()
    with vfs_state.local_copy(db, "r+") as path:
        con = sqlite3.connect(path)
        con.execute("insert into t values (2)")
        con.commit()
        con.close()
    with vfs_state.local_copy(db) as path:
        con = sqlite3.connect(path)
        assert con.execute("select x from t order by x").fetchall() == [(1,), (2,)]
        con.execute("insert into t values (3)")  # mode "r": never written back
        con.commit()
        con.close()
    assert not os.path.exists(path)
    with vfs_state.local_copy(db) as path:
        con = sqlite3.connect(path)
        assert con.execute("select count(*) from t").fetchone() == (2,)
        con.close()
    assert _read(db)[:16] == b"SQLite format 3\x00"


def test_local_copy_write_back_is_conditional(mounted):
    path = f"{mounted.base}/doc.txt"
    _write(path, b"original")
    with pytest.raises(FileExistsError):
        with vfs_state.local_copy(path, "r+") as local:
            with open(local, "ab") as handle:
                handle.write(b" + mine")
            _other_writer(mounted, "doc.txt", b"theirs")
    assert _read(path) == b"theirs"


def test_local_copy_outside_mounts_and_errors(mounted, tmp_path):
    local = tmp_path / "plain.txt"
    with vfs_state.local_copy(local, "r+") as path:
        assert path == str(local)
    with pytest.raises(FileNotFoundError):
        with vfs_state.local_copy(f"{mounted.base}/missing"):
            pass
    with pytest.raises(ValueError):
        vfs_state.local_copy(f"{mounted.base}/x", "a")


# -- refusals ------------------------------------------------------------------------------------

REFUSAL_ARGS = {"open": (os.O_RDONLY,), "chmod": (0o600,), "lchmod": (0o600,), "chflags": (0,),
                "lchflags": (0,), "chown": (0, 0), "lchown": (0, 0), "utime": (),
                "mkfifo": (), "mknod": (), "chdir": (), "chroot": (), "statvfs": (),
                "pathconf": ("PC_NAME_MAX",)}


@pytest.mark.parametrize("name", [n for n in refusals.SINGLE_PATH if hasattr(os, n)])
def test_refused_functions_name_the_mount(mounted, name):
    number, _ = refusals.SINGLE_PATH[name]
    with pytest.raises(OSError) as info:
        getattr(os, name)(f"{mounted.base}/f", *REFUSAL_ARGS[name])
    assert info.value.errno == number and "mount 'meta'" in str(info.value)
    shim.uninstall()
    assert not os.path.lexists(mounted.mount_path)


def test_mmap_works_and_dir_fd_fails_clearly(mounted):
    path = f"{mounted.base}/m.bin"
    _write(path, b"x" * 100)
    with open(path, "rb") as handle:
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            assert mapped[:3] == b"xxx"
    with pytest.raises(OSError) as info:
        os.stat(path, dir_fd=os.open("/", os.O_RDONLY))
    assert info.value.errno == errno.ENOTSUP
    handle = open(path, "rb")
    handle.close()
    with pytest.raises(ValueError):
        handle.fileno()


# -- moves across mounts and the local disk --------------------------------------------------------

def test_moves_across_mounts_and_local_disk(local_sidecar, tmp_path):
    first, second = fresh_mount_path(), fresh_mount_path()
    spec = ";".join([mount_spec("one", first, local_sidecar.socket_path),
                     mount_spec("two", second, local_sidecar.socket_path)])
    with vfs_state.installed(spec):
        # both mounts share one sidecar here: keep their keys apart
        one, two = f"{first}/{uuid.uuid4().hex}", f"{second}/{uuid.uuid4().hex}"
        _write(f"{one}/a.txt", b"travels")
        with pytest.raises(OSError) as info:
            os.rename(f"{one}/a.txt", f"{two}/a.txt")
        assert info.value.errno == errno.EXDEV
        with pytest.raises(FileNotFoundError):
            os.rename(f"{one}/missing", f"{two}/x")
        assert shutil.move(f"{one}/a.txt", f"{two}/a.txt") == f"{two}/a.txt"
        assert not os.path.exists(f"{one}/a.txt")
        local = shutil.move(f"{two}/a.txt", tmp_path / "a.txt")
        assert os.fspath(local) == str(tmp_path / "a.txt")
        assert (tmp_path / "a.txt").read_bytes() == b"travels"
        shutil.move(str(tmp_path / "a.txt"), f"{one}/back.txt")
        assert _read(f"{one}/back.txt") == b"travels"
        assert not (tmp_path / "a.txt").exists()
        shutil.copytree(one, tmp_path / "tree")
        assert os.listdir(tmp_path / "tree") == ["back.txt"]


# -- outages and write modes ----------------------------------------------------------------------

def test_unreachable_sidecar_is_an_error_not_absence(tmp_path):
    root = fresh_mount_path()
    with vfs_state.installed(mount_spec("gone", root, str(tmp_path / "no.sock"))):
        for check in (os.path.exists, os.path.isfile, os.path.isdir, os.path.lexists,
                      os.path.islink, os.stat, os.listdir):
            with pytest.raises(ConnectionError, match="mount 'gone'"):
                check(f"{root}/state.json")
        with pytest.raises(ConnectionError):
            open(f"{root}/state.json")
        assert os.path.exists(tmp_path)  # local paths unaffected


def test_passthrough_mount_streams_and_cannot_seek(local_sidecar):
    root = fresh_mount_path()
    with vfs_state.installed(mount_spec("stream", root, local_sidecar.socket_path,
                                        write="passthrough")):
        path = f"{root}/{uuid.uuid4().hex}/big.bin"
        with open(path, "wb") as handle:
            assert type(handle) is io.BufferedWriter and not handle.seekable()
            for _ in range(40):
                handle.write(b"z" * 65536)
        assert os.path.getsize(path) == 40 * 65536
        with open(path, "w") as text:
            with pytest.raises(OSError):
                text.seek(0)
            text.write("short")
        assert _read(path) == b"short"


def test_scandir_entries_cache_stat_and_compare_to_stat(mounted):
    _write(f"{mounted.base}/f", b"abc")
    entry, = list(os.scandir(mounted.base))
    assert entry.stat() is entry.stat()
    assert entry.inode() == os.stat(f"{mounted.base}/f").st_ino
    assert repr(entry) == "<DirEntry 'f'>" and os.fspath(entry) == f"{mounted.base}/f"
    assert os.path.samestat(entry.stat(), os.stat(f"{mounted.base}/f"))


def test_conflicting_writes_fail_like_local_files(mounted):
    """A write over a directory or under a file is refused when it commits (on close)."""
    os.mkdir(f"{mounted.base}/d")
    _write(f"{mounted.base}/d/inside", b"x")
    _write(f"{mounted.base}/f", b"x")
    for path, mode, cls in [(f"{mounted.base}/d", "w", IsADirectoryError),
                            (f"{mounted.base}/d", "ab", IsADirectoryError),
                            (f"{mounted.base}/f/x", "w", NotADirectoryError)]:
        with pytest.raises(cls) as info:
            with open(path, mode) as handle:
                handle.write("data")
        assert info.value.filename == path
    assert _read(f"{mounted.base}/f") == b"x"


def test_cas_conflict_names_the_callers_path(mounted):
    path = f"{mounted.base}/c"
    _write(path, b"1")
    with vfs_state.session():
        _read(path)
        _other_writer(mounted, "c", b"2")
        with pytest.raises(FileExistsError) as info:
            _write(path, b"3")
    assert info.value.filename == path


def test_mount_root_behaves_as_a_mount_point(mounted):
    root = mounted.mount_path
    assert os.path.isdir(root) and os.path.ismount(root)
    with pytest.raises(OSError) as info:
        os.rmdir(root)
    assert type(info.value) is OSError and info.value.errno == errno.EBUSY
    with pytest.raises(IsADirectoryError):
        open(root)
    assert os.path.basename(mounted.base) in os.listdir(root)


def test_unclosed_files_are_committed_when_dropped(mounted, tmp_path):
    """As with local files, CPython closes (commits) a dropped file at once: the shim's
    file objects hold no reference cycle that would defer it to the garbage collector."""
    import gc

    gc.disable()
    try:
        for base in (str(tmp_path), mounted.base):
            open(f"{base}/dropped.txt", "w").write("dropped")  # noqa: SIM115
            assert _read(f"{base}/dropped.txt") == b"dropped"
    finally:
        gc.enable()
