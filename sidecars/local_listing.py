"""Local listings without rescanning: a sorted snapshot per directory, pages by bisection.

Reading and sorting a large directory is slow (figures in
docs/performance.md); paging through it a thousand at a time used to pay
that per page.
A worker now keeps the sorted listing of a directory (and, for recursive
listings, of its subtree) and serves later pages from it with a binary
search on the cursor. The snapshot is reused only while every directory it
covers keeps its device, inode and mtime, and only if it was taken at
least a margin after each of those mtimes (``margin_ns``: 2 s, or 50 ms
where timestamps are fine): a change made within the same timestamp tick
as an earlier one may leave the mtime unchanged, so a snapshot of a
directory that changed just before it was taken is not kept.
"""
from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field

from sidecars.backend import ListPage, NamePage, first_merged
from sidecars.keys import RESERVED_PREFIX
from sidecars.local_paths import DIR_FLAGS, FileInPath, PathMissing, Root, os_error

#: Coarsest timestamp granularity trusted (ext4 small inodes, NFS: 1 s; FAT: 2 s).
MARGIN_NS = 2_000_000_000
#: For an mtime that is not a whole millisecond: the filesystem keeps fine
#: timestamps (ext4, xfs, btrfs, tmpfs: ns; NTFS, SMB: 100 ns), stamped from
#: the kernel's coarse clock, which lags by at most one tick (<= 10 ms).
FINE_MARGIN_NS = 50_000_000
MAX_SNAPSHOTS = 16
MAX_ITEMS = 500_000  # summed over the snapshots one worker keeps (bounds its memory)


def margin_ns(mtime_ns: int) -> int:
    """How long after ``mtime_ns`` a snapshot must be taken to be trusted.

    A whole-millisecond mtime may come from a coarse filesystem (1 s, FAT's
    2 s, exFAT's 10 ms): those get the full margin, a fine one a tick's.
    """
    return FINE_MARGIN_NS if mtime_ns % 1_000_000 else MARGIN_NS


@dataclass
class Snapshot:
    """Sorted names under one base (relative to it) and the directories seen.

    ``files`` are keys and ``dirs`` prefixes (``name/``), each sorted; a
    recursive snapshot has every key, markers included, in ``files``.
    Relative names make a page of one directory two slices, with no work
    per entry (``Listings.names``).
    """

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    seen: list[tuple[tuple[str, ...], int, int, int]] = field(default_factory=list)
    trusted: bool = True

    def size(self) -> int:
        return len(self.files) + len(self.dirs)

    def first(self, base: str, name_start: str, start_after: str | None,
              max_keys: int) -> tuple[list[str], list[str], str | None]:
        """Up to ``max_keys`` files and dirs starting ``name_start`` after the cursor.

        The third item is the relative name of the last one when more follow.
        """
        f_lo, f_hi = _span(self.files, base, name_start, start_after)
        d_lo, d_hi = _span(self.dirs, base, name_start, start_after)
        if f_hi - f_lo + d_hi - d_lo <= max_keys:
            return self.files[f_lo:f_hi], self.dirs[d_lo:d_hi], None
        files, dirs = first_merged(self.files[f_lo:f_lo + max_keys],
                                   self.dirs[d_lo:d_lo + max_keys], max_keys)
        return files, dirs, max(files[-1:] + dirs[-1:])


def _span(names: list[str], base: str, name_start: str,
          start_after: str | None) -> tuple[int, int]:
    """``names[lo:hi]`` are those starting ``name_start`` after the store key ``start_after``."""
    lo = bisect_left(names, name_start) if name_start else 0
    hi = (bisect_right(names, name_start, lo, key=lambda name: name[:len(name_start)])
          if name_start else len(names))
    if start_after is not None and start_after >= base:
        if not start_after.startswith(base):
            return hi, hi  # the cursor lies past the whole base
        lo = max(lo, bisect_right(names, start_after[len(base):], lo, hi))
    return lo, max(lo, hi)


def _drop_reserved(names: list[str]) -> None:
    """Remove the backend's own entries: in a sorted list they are one run."""
    lo = bisect_left(names, RESERVED_PREFIX)
    hi = bisect_right(names, RESERVED_PREFIX, lo,
                      key=lambda name: name[:len(RESERVED_PREFIX)])
    del names[lo:hi]


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
        files, dirs, last = self._checked(base, recursive).first(base, name_start, start_after,
                                                                 max_keys)
        return ListPage(keys=[base + name for name in files],
                        prefixes=[base + name for name in dirs],
                        next=None if last is None else base + last)

    def names(self, base: str, name_start: str, start_after: str | None,
              max_keys: int) -> NamePage:
        """One page of the directory ``base`` by name: slices of the snapshot."""
        files, dirs, last = self._checked(base, False).first(base, name_start, start_after,
                                                             max_keys)
        return NamePage(files=files, dirs=[name[:-1] for name in dirs],
                        next=None if last is None else base + last)

    def _checked(self, base: str, recursive: bool) -> Snapshot:
        try:
            return self._snapshot(base, recursive)
        except OSError as exc:
            raise os_error(exc, "cannot list the directory") from None

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
        total = sum(s.size() for s in self._cache.values())
        while self._cache and (len(self._cache) > MAX_SNAPSHOTS or total > MAX_ITEMS):
            _, dropped = self._cache.popitem(last=False)
            total -= dropped.size()

    def _still_valid(self, snap: Snapshot) -> bool:
        for parts, dev, ino, mtime in snap.seen:
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
        try:
            fd = self.root.open_dir(parts)
        except (PathMissing, FileInPath):
            snap.trusted = False
            return snap
        try:
            if recursive:
                self._scan_tree(fd, parts, "", snap)
            else:
                self._scan(fd, parts, snap)
        finally:
            os.close(fd)
        snap.files.sort()
        snap.dirs.sort()
        if not recursive:
            _drop_reserved(snap.files)
            _drop_reserved(snap.dirs)
        return snap

    def _seen(self, fd: int, parts: tuple[str, ...], snap: Snapshot) -> None:
        """Record the directory's identity and time; distrust it if it changed just now."""
        taken = time.time_ns()
        st = os.fstat(fd)
        snap.seen.append((parts, st.st_dev, st.st_ino, st.st_mtime_ns))
        snap.trusted = snap.trusted and st.st_mtime_ns + margin_ns(st.st_mtime_ns) < taken
        self.scans += 1

    def _scan(self, fd: int, parts: tuple[str, ...], snap: Snapshot) -> None:
        """One directory's files and subdirectories (``name/``); hot for big directories."""
        self._seen(fd, parts, snap)
        files, dirs = snap.files, []
        with os.scandir(fd) as entries:
            for entry in entries:  # one type check per file (from d_type: no syscall)
                if entry.is_file(follow_symlinks=False):
                    files.append(entry.name)
                elif entry.is_dir(follow_symlinks=False):  # symlinks are neither: skipped
                    dirs.append(entry.name)
        snap.dirs = [name + "/" for name in dirs]

    def _scan_tree(self, fd: int, parts: tuple[str, ...], rel: str, snap: Snapshot) -> None:
        """Every key under ``fd`` as ``rel + name``, markers (``name/``) included."""
        self._seen(fd, parts, snap)
        with os.scandir(fd) as entries:
            found = list(entries)
        for entry in found:
            name = entry.name
            if name.startswith(RESERVED_PREFIX):
                continue
            if entry.is_file(follow_symlinks=False):
                snap.files.append(rel + name)
            elif entry.is_dir(follow_symlinks=False):
                snap.files.append(rel + name + "/")
                self._scan_child(fd, name, parts, rel, snap)

    def _scan_child(self, fd: int, name: str, parts: tuple[str, ...], rel: str,
                    snap: Snapshot) -> None:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError:
            snap.trusted = False  # swapped or removed while we looked: do not keep
            return
        try:
            self._scan_tree(child, (*parts, name), rel + name + "/", snap)
        finally:
            os.close(child)
