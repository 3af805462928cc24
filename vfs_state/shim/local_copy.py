"""``local_copy``: a real file for code that does its own C-level I/O.

``sqlite3``, ``h5py``, ``mmap`` and other C extensions open paths with
``open(2)`` themselves, which no Python-level patch can reach. For those,
materialise the key as a temporary local file, hand over its path, and
write it back on exit if it changed, conditional on the version that was
read (a concurrent writer makes the write-back fail with
``FileExistsError`` and the stored object stays as that writer left it).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vfs_state.reader import MIN_BLOCK, RangeReader
from vfs_state.shim.errors import oserror, refused
from vfs_state.shim.probe import kind
from vfs_state.shim.router import MountTable, Target
from vfs_state.versions import precondition_headers

MODES = ("r", "r+", "w")
_CHUNK = 1 << 20


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
    """The temp-file round trip for one key (see ``local_copy``)."""
    if not target.key:
        raise refused(target, "local_copy() of the mount root", errno.EISDIR)
    directory = tempfile.mkdtemp(prefix="vfs-local-copy-")
    path = os.path.join(directory, os.path.basename(target.key))
    try:
        if mode == "w":
            open(path, "wb").close()
            conditions = target.fs.client.preconditions(target.key)
            before = None
        else:
            conditions = precondition_headers(_download(target, path))
            before = _digest(path)
        yield path
        if mode != "r" and os.path.exists(path) and (before is None or _digest(path) != before):
            _upload(target, path, conditions)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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
