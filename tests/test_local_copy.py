"""``local_copy`` for formats that need a real path: new files, directories, conflicts."""
from __future__ import annotations

import dbm.dumb
import os
import shelve
import uuid

import pytest

import vfs_state
from tests.shim_fixtures import mounted_dir
from tests.shim_fixtures import read_bytes as _read
from tests.shim_fixtures import write_bytes as _write
from vfs_state import StateFS


@pytest.fixture
def mounted(local_sidecar):
    with mounted_dir(local_sidecar) as mount:
        yield mount


@pytest.fixture(params=["local", "s3-buffered-cas"])
def any_mounted(request, local_sidecar):
    """The local connector, and S3 (moto) where the harness is available."""
    if request.param == "local":
        sidecar = local_sidecar
    else:
        pytest.importorskip("sidecars.s3")
        sidecar = request.getfixturevalue("connector_pool").sidecar(request.param)
    with mounted_dir(sidecar) as mount:
        yield mount


def _files(top: str) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(root, name), top): _read(os.path.join(root, name))
            for root, _, names in os.walk(top) for name in names}


def _other_writer(mounted, relative: str, data: bytes | None) -> None:
    """Another client writes (or deletes, ``None``) a key behind our back."""
    with vfs_state.session():
        fs = StateFS(mounted.socket_path)
        key = f"{mounted.base[len(mounted.mount_path):]}/{relative}".strip("/")
        if data is None:
            fs.client.delete(key, conditional=False)
        else:
            fs.client.write(key, data, len(data), {})
        fs.close()


def test_write_mode_yields_a_path_that_does_not_exist(mounted):
    """Before: an empty placeholder, which dbm ('db type could not be determined') rejects."""
    target = f"{mounted.base}/data.db"
    with vfs_state.local_copy(target, "w") as path:
        assert not os.path.exists(path) and os.path.isdir(os.path.dirname(path))
        with dbm.open(path, "n") as db:  # whichever dbm: it must create the file itself
            db[b"k"] = b"v"
        made = sorted(os.listdir(os.path.dirname(path)))
    assert made  # dbm made one file or several
    stored = os.listdir(mounted.base)
    assert stored == ["data.db"] or all(n.startswith("data.db") for n in stored)


def test_write_mode_that_creates_nothing_stores_nothing(mounted):
    with vfs_state.local_copy(f"{mounted.base}/never", "w"):
        pass
    assert os.listdir(mounted.base) == []


def test_shelve_on_dbm_dumb_round_trips_as_a_directory(mounted):
    """Before: local_copy of a directory refused/handled one file, losing .dir/.bak."""
    with vfs_state.local_copy(f"{mounted.base}/shelf", "w") as path:
        os.mkdir(path)
        with shelve.Shelf(dbm.dumb.open(f"{path}/db", "c")) as shelf:
            shelf["n"] = 1
    assert sorted(os.listdir(f"{mounted.base}/shelf")) == ["db.bak", "db.dat", "db.dir"]
    for expected in (2, 3):
        with vfs_state.local_copy(f"{mounted.base}/shelf", "r+") as path:
            with shelve.Shelf(dbm.dumb.open(f"{path}/db", "w")) as shelf:
                shelf["n"] += 1
        with vfs_state.local_copy(f"{mounted.base}/shelf") as path:
            with shelve.Shelf(dbm.dumb.open(f"{path}/db", "r")) as shelf:
                assert shelf["n"] == expected


def test_directory_sync_adds_changes_and_deletes(any_mounted):
    base = any_mounted.base
    for name, data in (("t/a", b"A"), ("t/b", b"B"), ("t/sub/c", b"C")):
        os.makedirs(os.path.dirname(f"{base}/{name}"), exist_ok=True)
        _write(f"{base}/{name}", data)
    with vfs_state.local_copy(f"{base}/t", "r+") as path:
        assert _files(path) == {"a": b"A", "b": b"B", "sub/c": b"C"}
        os.remove(f"{path}/a")
        _write(f"{path}/b", b"B2")
        os.makedirs(f"{path}/new/deep")
        _write(f"{path}/new/deep/d", b"D")
    assert _files(f"{base}/t") == {"b": b"B2", "sub/c": b"C", "new/deep/d": b"D"}


def test_read_mode_directory_never_writes_back(mounted):
    _write(f"{mounted.base}/t/a", b"A")
    with vfs_state.local_copy(f"{mounted.base}/t") as path:
        _write(f"{path}/a", b"changed")
        _write(f"{path}/extra", b"x")
    assert _files(f"{mounted.base}/t") == {"a": b"A"}


@pytest.mark.parametrize("change", ["changed", "added", "deleted"])
def test_a_conflict_fails_the_whole_sync_and_writes_nothing(any_mounted, change):
    mounted = any_mounted
    base = mounted.base
    _write(f"{base}/t/a", b"A")
    _write(f"{base}/t/b", b"B")
    with pytest.raises(FileExistsError, match="nothing was written"):
        with vfs_state.local_copy(f"{base}/t", "r+") as path:
            _write(f"{path}/a", b"mine")         # a change
            _write(f"{path}/z", b"mine too")     # an addition
            os.remove(f"{path}/b")               # a deletion
            if change == "changed":
                _other_writer(mounted, "t/b", b"theirs")
            elif change == "added":
                _other_writer(mounted, "t/z", b"theirs")
            else:
                _other_writer(mounted, "t/a", None)
    expected = {"changed": {"a": b"A", "b": b"theirs"},
                "added": {"a": b"A", "b": b"B", "z": b"theirs"},
                "deleted": {"b": b"B"}}[change]
    assert _files(f"{base}/t") == expected


def test_write_mode_replaces_a_directory(mounted):
    _write(f"{mounted.base}/t/old", b"O")
    with vfs_state.local_copy(f"{mounted.base}/t", "w") as path:
        assert not os.path.exists(path)
        os.mkdir(path)
        _write(f"{path}/new", b"N")
    assert _files(f"{mounted.base}/t") == {"new": b"N"}


def test_sqlite3_round_trip(mounted):
    import sqlite3

    db = f"{mounted.base}/{uuid.uuid4().hex}.sqlite"
    with vfs_state.local_copy(db, "w") as path:
        connection = sqlite3.connect(path)
        connection.execute("create table t (x)")
        connection.commit()
        connection.close()
    with vfs_state.local_copy(db) as path:
        connection = sqlite3.connect(path)
        assert connection.execute("select count(*) from t").fetchone() == (0,)
        connection.close()
    assert _read(db)[:16] == b"SQLite format 3\x00"
