"""StateFS used directly: the move/copy/upload/download/xattr semantics the shim relies on.

Run against real sidecars (local, Redis, S3). The shim reaches storage only
through these methods, so what holds here holds for ``os.rename``,
``local_copy`` and ``os.setxattr`` too (docs/architecture.md).
"""
from __future__ import annotations

import io
import os
import uuid

import pytest

from vfs_state import StateFS, session, statefs_moves
from vfs_state._pyfs import errors

CONNECTORS = ["local-buffered-cas", "redis-buffered-cas", "s3-buffered-cas"]


@pytest.fixture(params=CONNECTORS)
def pair(request, connector_pool):
    """Two clients of one sidecar: ``fs`` and an ``other`` writer, and a fresh directory."""
    if request.param.startswith("s3"):
        pytest.importorskip("sidecars.s3")
    socket_path = connector_pool.sidecar(request.param).socket_path
    base = f"/api-{uuid.uuid4().hex}/"
    fs, other = StateFS(socket_path), StateFS(socket_path)
    fs.makedir(base)
    yield fs, other, request.param, base  # not a SubFS: it would hide StateFS's own options
    fs.close()
    other.close()


def _elsewhere(other, path: str, data: bytes) -> None:
    """Another writer, with its own memory of versions."""
    with session():
        other.writebytes(path, data)


# -- move ------------------------------------------------------------------------------------

def test_move_follows_the_pyfilesystem_contract(pair):
    fs, _, _, d = pair
    fs.writebytes(d + "a", b"one")
    fs.writebytes(d + "b", b"two")
    with pytest.raises(errors.DestinationExists):
        fs.move(d + "a", d + "b")
    fs.move(d + "a", d + "b", overwrite=True)
    assert fs.readbytes(d + "b") == b"one" and not fs.exists(d + "a")
    with pytest.raises(errors.ResourceNotFound):
        fs.move(d + "b", d + "missing/b")
    with pytest.raises(errors.ResourceNotFound):
        fs.move(d + "nothing", d + "c")
    fs.makedir(d + "d")
    with pytest.raises(errors.FileExpected):
        fs.move(d + "d", d + "e")
    fs.move(d + "b", d + "deep/er/b", create_parents=True)  # the shim's flat-store rule
    assert fs.readbytes(d + "deep/er/b") == b"one"
    fs.move(d + "deep/er/b", d + "deep/er/b", overwrite=True)  # onto itself: nothing lost
    assert fs.readbytes(d + "deep/er/b") == b"one"


def test_move_refuses_a_source_changed_since_it_was_observed(pair):
    fs, other, _, d = pair
    fs.writebytes(d + "src", b"v1")
    with session():
        assert fs.readbytes(d + "src") == b"v1"
        _elsewhere(other, d + "src", b"v2")
        with pytest.raises(FileExistsError):
            fs.move(d + "src", d + "dst")
    assert fs.readbytes(d + "src") == b"v2" and not fs.exists(d + "dst")


def test_move_loses_no_write_that_lands_between_copy_and_delete(pair, monkeypatch):
    """The CAS-safe move: a concurrent write makes the move fail; nothing is lost."""
    fs, other, _, d = pair
    fs.writebytes(d + "src", b"copied")
    real_copy = statefs_moves.copy_object

    def copy_then_interfere(*args):
        version = real_copy(*args)
        _elsewhere(other, d + "src", b"newer")
        return version

    monkeypatch.setattr(statefs_moves, "copy_object", copy_then_interfere)
    with pytest.raises(FileExistsError):
        fs.move(d + "src", d + "dst")
    assert fs.readbytes(d + "src") == b"newer" and fs.readbytes(d + "dst") == b"copied"


def test_movedir_moves_every_object_and_marker(pair):
    fs, _, _, d = pair
    fs.makedirs(d + "tree/empty")
    fs.writebytes(d + "tree/a", b"a")
    fs.makedirs(d + "tree/sub")
    fs.writebytes(d + "tree/sub/b", b"b" * 200_000)  # larger than one read block
    with pytest.raises(errors.ResourceNotFound):
        fs.movedir(d + "tree", d + "moved")
    with pytest.raises(errors.ResourceInvalid):
        fs.movedir(d + "tree", d + "tree/inside", create=True)
    fs.movedir(d + "tree", d + "moved", create=True)
    assert not fs.exists(d + "tree")
    assert sorted(fs.listdir(d + "moved")) == ["a", "empty", "sub"]
    assert fs.readbytes(d + "moved/sub/b") == b"b" * 200_000
    assert fs.isdir(d + "moved/empty")


# -- copy ------------------------------------------------------------------------------------

def test_copy_is_conditional_on_both_ends(pair):
    fs, other, _, d = pair
    fs.writebytes(d + "s", b"source")
    fs.copy(d + "s", d + "t")
    assert fs.readbytes(d + "t") == b"source" and fs.readbytes(d + "s") == b"source"
    with pytest.raises(errors.DestinationExists):
        fs.copy(d + "s", d + "t")
    with pytest.raises(errors.FileExpected):
        fs.makedir(d + "dir")
        fs.copy(d + "dir", d + "u")
    with session():
        fs.getinfo(d + "t")  # observed the destination
        _elsewhere(other, d + "t", b"theirs")
        with pytest.raises(FileExistsError):
            fs.copy(d + "s", d + "t", overwrite=True)
    assert fs.readbytes(d + "t") == b"theirs"


# -- upload / download -------------------------------------------------------------------------

class _Pipe(io.RawIOBase):
    """A stream that cannot seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)


def test_upload_and_download_carry_versions(pair):
    fs, other, _, d = pair
    data = os.urandom(300_000)
    fs.upload(d + "f", io.BytesIO(data))
    with pytest.raises(errors.ResourceNotFound):
        fs.upload(d + "no/parent/f", io.BytesIO(b"x"))
    fs.upload(d + "no/parent/f", _Pipe(b"piped"), create_parents=True)
    assert fs.readbytes(d + "no/parent/f") == b"piped"
    with session():
        sink = io.BytesIO()
        fs.download(d + "f", sink)
        assert sink.getvalue() == data
        version = fs.observed(d + "f")
        assert version == fs.getinfo(d + "f").get("vfs", "version")
        _elsewhere(other, d + "f", b"theirs")
        with pytest.raises(FileExistsError):
            fs.upload(d + "f", io.BytesIO(b"mine"), expect=version)
    with pytest.raises(FileExistsError):
        fs.upload(d + "f", io.BytesIO(b"new"), expect=None)  # must not exist
    fs.upload(d + "g", io.BytesIO(b"new"), expect=None)
    assert fs.readbytes(d + "g") == b"new"


def test_remove_with_an_expected_version(pair):
    fs, other, _, d = pair
    fs.writebytes(d + "r", b"one")
    version = fs.getinfo(d + "r").get("vfs", "version")
    _elsewhere(other, d + "r", b"two")
    with pytest.raises(FileExistsError):
        fs.remove(d + "r", expect=version)
    fs.remove(d + "r", expect=fs.getinfo(d + "r").get("vfs", "version"))
    assert not fs.exists(d + "r")


def test_probe_is_not_an_observation(pair):
    fs, other, _, d = pair
    fs.writebytes(d + "p", b"one")
    with session():
        info = fs.probe(d + "p")
        assert info is not None and not info.is_dir
        assert fs.probe(d + "absent") is None
        _elsewhere(other, d + "p", b"two")
        fs.writebytes(d + "p", b"three")  # nothing observed: unconditional
    with session():
        fs.getinfo(d + "p")  # observed
        _elsewhere(other, d + "p", b"four")
        with pytest.raises(FileExistsError):
            fs.writebytes(d + "p", b"five")


# -- attributes: the vfs namespace -------------------------------------------------------------

def test_vfs_namespace_lists_and_sets_attributes(pair):
    fs, _, connector, d = pair
    fs.writebytes(d + "x", b"12345")
    attributes = fs.getinfo(d + "x", ["vfs"]).get("vfs", "attributes")
    assert attributes["size"] == "5" and attributes["version"]
    assert fs.getinfo(d + "x").get("vfs", "attributes") is None  # only when asked for
    fs.makedir(d + "dir")
    assert fs.getinfo(d + "dir", ["vfs"]).get("vfs", "attributes") == {}
    with pytest.raises(errors.ResourceNotFound):
        fs.getinfo(d + "none", ["vfs"])
    with pytest.raises(errors.ResourceNotFound):
        fs.setinfo(d + "none", {"vfs": {"attributes": {"ttl": "60"}}})
    if connector.startswith("redis"):
        fs.setinfo(d + "x", {"vfs": {"attributes": {"ttl": "3600"}}})
        assert 0 < int(fs.getinfo(d + "x", ["vfs"]).get("vfs", "attributes")["ttl"]) <= 3600
    else:
        with pytest.raises(errors.Unsupported):
            fs.setinfo(d + "x", {"vfs": {"attributes": {"ttl": "60"}}})
    with pytest.raises(errors.PermissionDenied):
        fs.setinfo(d + "x", {"vfs": {"attributes": {"version": d + "forged"}}})


def test_walk_files_is_one_listing_of_files(pair):
    fs, _, _, d = pair
    fs.makedirs(d + "w/a/b")
    fs.writebytes(d + "w/1", b"")
    fs.writebytes(d + "w/a/b/2", b"")
    assert sorted(fs.walk_files(d + "w")) == ["1", "a/b/2"]


def test_a_refused_commit_names_the_path_and_says_why(pair):
    """One error route: the conflict is decoded once, and close() names the file."""
    fs, _, connector, d = pair
    fs.writebytes(d + "file", b"x")
    fs.makedirs(d + "dir/sub")
    with pytest.raises(IsADirectoryError) as raised:
        with fs.openbin(d + "dir", "w", create_parents=True) as f:
            f.write(b"y")
    assert raised.value.filename == d + "dir"
    if connector.startswith("local"):  # object stores may hold "file" and "file/..." at once
        with pytest.raises(NotADirectoryError) as raised:
            with fs.openbin(d + "file/child", "w", create_parents=True) as f:
                f.write(b"y")
        assert raised.value.filename == d + "file/child"
