"""``local_copy``: a real file (or directory) for code that does its own C-level I/O.

``sqlite3``, ``h5py``, ``duckdb`` and other C extensions open paths with
``open(2)`` themselves, which no Python-level patch can reach. For those,
materialise the key as a temporary local file, hand over its path, and
write it back on exit if it changed, conditional on the version that was
read (a concurrent writer makes the write-back fail with
``FileExistsError`` and the stored object stays as that writer left it).
Mode ``"w"`` yields a path that does not exist yet (``duckdb`` and ``dbm``
refuse an empty placeholder). A directory is copied as a tree and synced
back (``local_tree``); so is whatever a ``"w"`` copy left as a directory.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vfs_state.reader import MIN_BLOCK, RangeReader
from vfs_state.shim.errors import oserror
from vfs_state.shim.local_tree import Snapshot, digest, download_tree, file_keys, sync_tree
from vfs_state.shim.probe import kind
from vfs_state.shim.router import MountTable, Target
from vfs_state.versions import precondition_headers

MODES = ("r", "r+", "w")
_CHUNK = 1 << 20


def _download(target: Target, destination: str) -> str | None:
    """Fetch the key into ``destination``; the version read (observed, for CAS)."""
    client = target.fs.client
    try:
        stat, head = client.read_head(target.key, MIN_BLOCK)
    except FileNotFoundError:
        if kind(target) == "dir":
            raise oserror(errno.EISDIR, target.filename) from None
        raise oserror(errno.ENOENT, target.filename) from None
    with RangeReader(client, target.key, stat, head) as reader, \
            open(destination, "wb") as out:
        shutil.copyfileobj(reader, out, _CHUNK)
    return stat.version


def _upload(target: Target, source: str, conditions: dict[str, str]) -> None:
    size = os.path.getsize(source)
    with open(source, "rb") as handle:
        target.fs.client.write(target.key, handle, size, conditions)


@contextmanager
def copy_of(target: Target, mode: str) -> Iterator[str]:
    """The temp-file round trip for one key or one directory (see ``local_copy``)."""
    found = kind(target)
    directory = tempfile.mkdtemp(prefix="vfs-local-copy-")
    path = os.path.join(directory, os.path.basename(target.key) or "root")
    try:
        if found == "dir":
            snapshot = _enter_tree(target, path, mode)
            yield path
            if mode != "r":
                sync_tree(target, path, snapshot)
            return
        if mode == "w":  # nothing is created: the library makes the file (or a directory)
            conditions = target.fs.client.preconditions(target.key)
            before = None
        else:
            conditions = precondition_headers(_download(target, path))
            before = digest(path)
        yield path
        if mode != "r" and os.path.isdir(path):
            sync_tree(target, path, Snapshot())
        elif mode != "r" and os.path.exists(path) and (before is None or digest(path) != before):
            _upload(target, path, conditions)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _enter_tree(target: Target, path: str, mode: str) -> Snapshot:
    """A directory: downloaded ("r", "r+"), or only its versions noted ("w": replaced)."""
    if mode != "w":
        os.mkdir(path)
        return download_tree(target, path, _download)
    snapshot = Snapshot()
    for name in _names(target):
        stat = target.fs.client.stat(target.child(name).key, observe=False)
        if stat is not None and stat.is_file:
            snapshot.seen[name] = (stat.version, "")
    return snapshot


def _names(target: Target) -> list[str]:
    size = len(target.key) + 1 if target.key else 0
    return [key[size:] for key in file_keys(target)]


def local_copy_from(table: MountTable, path: Any, mode: str = "r") -> Any:
    """``local_copy`` against a given mount table (the shim's, normally)."""
    if mode not in MODES:
        raise ValueError(f"local_copy mode must be one of {MODES}, not {mode!r}")
    target = table.resolve(path)
    if target is None:
        return _local(os.fspath(path))
    return copy_of(target, mode)


@contextmanager
def _local(path: str | bytes) -> Iterator[str | bytes]:
    yield path
