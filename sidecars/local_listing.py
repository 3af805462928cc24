"""Local listings without rescanning: a sorted snapshot per directory, pages by bisection.

Reading and sorting a large directory is slow (figures in
docs/performance.md); paging through it a thousand at a time used to pay
that per page.
A worker now keeps the sorted listing of a directory (and, for recursive
listings, of its subtree) and serves later pages from it with a binary
search on the cursor. The snapshot is reused only while every directory it
covers keeps its device, inode and mtime, and only if it was taken at
least ``MARGIN_NS`` after each of those mtimes: a change made within the
same timestamp tick as an earlier one may leave the mtime unchanged, so a
snapshot of a directory that changed just before it was taken is not kept.
"""
from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field

from sidecars.backend import ListPage
from sidecars.keys import RESERVED_PREFIX
from sidecars.local_paths import DIR_FLAGS, FileInPath, PathMissing, Root, os_error

#: Coarsest timestamp granularity trusted (ext4 small inodes, NFS: 1 s; FAT: 2 s).
MARGIN_NS = 2_000_000_000
MAX_SNAPSHOTS = 16
MAX_ITEMS = 500_000  # summed over the snapshots one worker keeps (bounds its memory)


@dataclass
class Snapshot:
    """Sorted keys under one base, which are prefixes, and the directories seen."""

    names: list[str] = field(default_factory=list)
    is_prefix: list[bool] = field(default_factory=list)
    dirs: list[tuple[tuple[str, ...], int, int, int]] = field(default_factory=list)
    trusted: bool = True


class Listings:
    """Per-worker listing cache; ``scans`` counts directories read (for tests)."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.scans = 0
        self._cache: OrderedDict[tuple[str, bool], Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def page(self, base: str, name_start: str, recursive: bool, start_after: str | None,
             max_keys: int) -> ListPage:
        """One page of keys under ``base`` (``""`` or ending ``/``) starting ``name_start``."""
        try:
            snap = self._snapshot(base, recursive)
        except OSError as exc:
            raise os_error(exc, "cannot list the directory") from None
        names = snap.names
        wanted = base + name_start
        index = bisect_left(names, wanted)
        if start_after is not None:
            index = max(index, bisect_right(names, start_after))
        page = ListPage()
        last = None
        while index < len(names) and names[index].startswith(wanted):
            if len(page.keys) + len(page.prefixes) == max_keys:
                page.next = last
                break
            last = names[index]
            (page.prefixes if snap.is_prefix[index] else page.keys).append(last)
            index += 1
        return page

    def _snapshot(self, base: str, recursive: bool) -> Snapshot:
        key = (base, recursive)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self._still_valid(cached):
            with self._lock:
                self._cache.move_to_end(key)
            return cached
        snap = self._take(base, recursive)
        with self._lock:
            self._cache.pop(key, None)
            if snap.trusted:
                self._cache[key] = snap
                self._trim()
        return snap

    def _trim(self) -> None:
        total = sum(len(s.names) for s in self._cache.values())
        while self._cache and (len(self._cache) > MAX_SNAPSHOTS or total > MAX_ITEMS):
            _, dropped = self._cache.popitem(last=False)
            total -= len(dropped.names)

    def _still_valid(self, snap: Snapshot) -> bool:
        for parts, dev, ino, mtime in snap.dirs:
            try:
                with self.root.directory(parts) as fd:
                    st = os.fstat(fd)
            except (PathMissing, FileInPath):
                return False
            if (st.st_dev, st.st_ino, st.st_mtime_ns) != (dev, ino, mtime):
                return False
        return True

    def _take(self, base: str, recursive: bool) -> Snapshot:
        parts = tuple(base.rstrip("/").split("/")) if base else ()
        snap = Snapshot()
        items: list[tuple[str, bool]] = []
        try:
            fd = self.root.open_dir(parts)
        except (PathMissing, FileInPath):
            snap.trusted = False
            return snap
        try:
            self._scan(fd, parts, base, recursive, items, snap)
        finally:
            os.close(fd)
        items.sort()
        snap.names = [name for name, _ in items]
        snap.is_prefix = [flag for _, flag in items]
        return snap

    def _scan(self, fd: int, parts: tuple[str, ...], base: str, recursive: bool,
              items: list[tuple[str, bool]], snap: Snapshot) -> None:
        taken = time.time_ns()
        st = os.fstat(fd)
        snap.dirs.append((parts, st.st_dev, st.st_ino, st.st_mtime_ns))
        snap.trusted = snap.trusted and st.st_mtime_ns + MARGIN_NS < taken
        self.scans += 1
        with os.scandir(fd) as entries:
            found = list(entries)
        for entry in found:  # hot for big directories: one type check per file
            name = entry.name
            if name.startswith(RESERVED_PREFIX):
                continue
            if entry.is_file(follow_symlinks=False):
                items.append((base + name, False))
            elif entry.is_dir(follow_symlinks=False):  # symlinks are neither: skipped
                items.append((base + name + "/", not recursive))
                if recursive:
                    self._scan_child(fd, name, parts, base, items, snap)

    def _scan_child(self, fd: int, name: str, parts: tuple[str, ...], base: str,
                    items: list[tuple[str, bool]], snap: Snapshot) -> None:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError:
            snap.trusted = False  # swapped or removed while we looked: do not keep
            return
        try:
            self._scan(child, (*parts, name), base + name + "/", True, items, snap)
        finally:
            os.close(child)
