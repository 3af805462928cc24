"""A guard file at each mount path, so native code cannot write there on the local disk.

Python-level calls on a mount path are routed by the shim and never see the
guard. Native code (C/C++/Rust writers in pyarrow, polars, ...) calls the OS
directly: without a guard, ``mkdir -p /state/meta/part=1`` would create the
mount path on the real disk and the data would silently stay there. With a
regular file at ``/state/meta``, any native create beneath it fails with
``ENOTDIR`` (even as root), and a native open of the mount path itself finds
a file that is not the data.

* A missing mount path gets the guard (and any missing parent directories,
  removed again on uninstall if still empty).
* An empty directory there is replaced by the guard and recreated on uninstall.
* An existing guard (another process's) is used and left in place.
* Where this process may not create the path (not root, read-only disk),
  no guard is needed: native code cannot create it either.
* Anything else (a non-empty directory, some other file) is an activation
  error: data already on the local disk means an earlier run went unshimmed.

Guards are removed by ``uninstall()`` or at interpreter exit. Limit: a
guard is removed by the process that placed it, even if another
process that found it still runs (that process then runs without a guard).
"""
from __future__ import annotations

import atexit
import errno
import os
import posix  # the C functions: the shim patches ``os.*``, and must not route these calls
import stat

GUARD_TEXT = b"vfs-state mount guard: this path is served by a sidecar, not the local disk\n"


class _Placed:
    def __init__(self, path: str, was_dir: bool, parents: list[str]) -> None:
        self.path, self.was_dir, self.parents = path, was_dir, parents
        self.pid = os.getpid()  # a forked child must not remove its parent's guard


_placed: dict[str, _Placed] = {}


def _at_exit() -> None:
    """Remove this process's guards when it exits without ``uninstall()``."""
    for path in [p for p, placed in _placed.items() if placed.pid == os.getpid()]:
        remove(path)


atexit.register(_at_exit)


def _is_guard(path: str) -> bool:
    try:
        fd = posix.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return posix.read(fd, len(GUARD_TEXT) + 1) == GUARD_TEXT
    finally:
        posix.close(fd)


def _isdir(path: str) -> bool:
    try:
        return stat.S_ISDIR(posix.stat(path).st_mode)
    except OSError:
        return False


def _make_parents(directory: str) -> list[str]:
    created: list[str] = []
    while not _isdir(directory):
        created.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(created):
        posix.mkdir(path)
    return created


def place(path: str) -> None:
    """Put a guard at ``path``; raises ``ValueError`` when local data is in the way."""
    if path in _placed:
        return
    was_dir = False
    try:
        mode = posix.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if stat.S_ISREG(mode) and _is_guard(path):
            return  # another process's guard: use it, leave it
        if stat.S_ISDIR(mode) and not posix.listdir(path):
            posix.rmdir(path)
            was_dir = True
        else:
            what = "is a directory that is not empty" if stat.S_ISDIR(mode) else "is in the way"
            raise ValueError(f"mount path {path} already exists on the local disk and {what};"
                             " move that data away (it never reached the store)")
    try:
        parents = _make_parents(os.path.dirname(path))
        fd = posix.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return  # we may not create it, so native code may not either: already safe
        raise
    try:
        posix.write(fd, GUARD_TEXT)
    finally:
        posix.close(fd)
    _placed[path] = _Placed(path, was_dir, parents)


def remove(path: str) -> None:
    """Remove the guard at ``path`` if this process placed it; restore what was there."""
    placed = _placed.pop(path, None)
    if placed is None or placed.pid != os.getpid():
        return
    try:
        if _is_guard(path):
            posix.unlink(path)
        if placed.was_dir:
            posix.mkdir(path)
        for parent in placed.parents:
            posix.rmdir(parent)
    except OSError:
        pass  # someone else now uses the path or a parent: leave it


def sync(paths: list[str]) -> None:
    """Guards exactly at ``paths``: new ones placed, dropped ones removed."""
    for path in [p for p in _placed if p not in paths]:
        remove(path)
    for path in paths:
        place(path)


def placed() -> list[str]:
    """The guards this process placed (for checks and tests)."""
    return list(_placed)
