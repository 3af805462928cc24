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

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vfs_state.shim.errors import converted
from vfs_state.shim.local_tree import Snapshot, digest, download_tree, sync_tree
from vfs_state.shim.probe import kind
from vfs_state.shim.router import MountTable, Target

MODES = ("r", "r+", "w")


def _download(target: Target, destination: str) -> str | None:
    """Fetch the key into ``destination``; the version read (observed, for CAS)."""
    with converted(target), open(destination, "wb") as out:
        target.fs.download(target.fs_path, out)
    version = target.fs.observed(target.fs_path)
    return version if isinstance(version, str) else None


def _upload(target: Target, source: str, expect: object) -> None:
    with converted(target), open(source, "rb") as handle:
        target.fs.upload(target.fs_path, handle, expect=expect, create_parents=True)


@contextmanager
def copy_of(target: Target, mode: str) -> Iterator[str]:
    """The temp-file round trip for one key or one directory (see ``local_copy``)."""
    import tempfile  # not at start-up (it imports random)

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
            expect = target.fs.observed(target.fs_path)
            before = None
        else:
            expect = _download(target, path)
            before = digest(path)
        yield path
        if mode != "r" and os.path.isdir(path):
            sync_tree(target, path, Snapshot())
        elif mode != "r" and os.path.exists(path) and (before is None or digest(path) != before):
            _upload(target, path, expect)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _enter_tree(target: Target, path: str, mode: str) -> Snapshot:
    """A directory: downloaded ("r", "r+"), or only its versions noted ("w": replaced)."""
    if mode != "w":
        os.mkdir(path)
        return download_tree(target, path, _download)
    snapshot = Snapshot()
    with converted(target):
        for name in list(target.fs.walk_files(target.fs_path)):
            info = target.fs.probe(target.child(name).fs_path)
            if info is not None and not info.is_dir:
                snapshot.seen[name] = (info.get("vfs", "version"), "")
    return snapshot


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
