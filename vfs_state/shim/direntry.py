"""``os.scandir`` on a mount: ``DirEntry``-like objects from one listing.

``os.DirEntry`` cannot be constructed or subclassed, so these duck-type it:
``name``, ``path``, ``is_dir/is_file/is_symlink`` answered from the listing
(no extra round trip), ``stat()`` from the sizes, times and versions the
same listing carried (a HEAD only when the sidecar sent none), ``inode()``
computed, ``os.fspath`` works. ``isinstance(entry, os.DirEntry)`` is False;
``shutil`` then falls back to path-based calls, which the shim also serves.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from types import GenericAlias, TracebackType
from typing import Any

from vfs_state.shim.errors import converted
from vfs_state.shim.router import Target
from vfs_state.shim.stats import inode, make_stat, stat_from_info


class MountDirEntry:
    """One child of a directory on a mount."""

    __slots__ = ("name", "path", "_target", "_is_dir", "_stat", "_listed")

    def __init__(self, parent: Target, name: str, is_dir: bool,
                 listed: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._target = parent.child(name)
        self._is_dir = is_dir
        self._stat: os.stat_result | None = None
        self._listed = listed  # the listing's Info.raw, when it had details
        self.name: str | bytes = os.fsencode(name) if parent.is_bytes else name
        self.path: str | bytes = self._target.filename

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._is_dir

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return not self._is_dir

    def is_symlink(self) -> bool:
        return False

    def is_junction(self) -> bool:
        return False

    def inode(self) -> int:
        return inode(self._target.mount, self._target.key)

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """Cached like ``os.DirEntry.stat``; from the listing, else one HEAD per file.

        Seeing a file's version here is an observation, as a HEAD's would be.
        """
        if self._stat is None:
            target = self._target
            raw = self._listed
            if self._is_dir:
                self._stat = make_stat(target.mount, target.key, True)
            elif raw is not None and "details" in raw:
                target.fs.observe(target.fs_path, raw.get("vfs", {}).get("version"))
                self._stat = stat_from_info(target.mount, target.key, raw)
            else:
                with converted(target):
                    info = target.fs.getinfo(target.fs_path)
                self._stat = stat_from_info(target.mount, target.key, info.raw)
        return self._stat

    def __fspath__(self) -> str | bytes:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"

    __class_getitem__: Any = classmethod(GenericAlias)


class MountScandirIterator:
    """The iterator ``os.scandir`` returns: iterable, closable, a context manager."""

    def __init__(self, entries: list[MountDirEntry]) -> None:
        self._entries: Iterator[MountDirEntry] | None = iter(entries)

    def __iter__(self) -> MountScandirIterator:
        return self

    def __next__(self) -> MountDirEntry:
        if self._entries is None:
            raise StopIteration
        return next(self._entries)

    def close(self) -> None:
        self._entries = None

    def __enter__(self) -> MountScandirIterator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def scan(target: Target) -> MountScandirIterator:
    """List ``target`` in one round trip (errors raised now, as ``os.scandir`` does)."""
    with converted(target):
        infos = list(target.fs.scandir(target.fs_path, namespaces=["details"]))
    return MountScandirIterator([MountDirEntry(target, info.name, info.is_dir, info.raw)
                                 for info in infos])
