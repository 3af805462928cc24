"""``os`` path functions on mounts: stat, listing, creating and removing.

``os.path.exists/isfile/isdir/getsize/getmtime/lexists/islink``,
``os.walk``, ``os.makedirs``, ``os.removedirs``, ``pathlib`` and ``glob``
all call these through the ``os`` module, so replacing them here covers
those too (checked in tests).
"""
from __future__ import annotations

import errno
import os
import stat as stat_module
from collections.abc import Callable
from typing import Any

from vfs_state.shim import fd_files
from vfs_state.shim.direntry import MountScandirIterator, scan
from vfs_state.shim.errors import converted, oserror, refused, translated
from vfs_state.shim.open_adapter import open_target
from vfs_state.shim.probe import kind
from vfs_state.shim.router import MountTable, Target, routed, routed_default
from vfs_state.shim.stats import make_stat, stat_from_info


def no_dir_fd(target: Target, dir_fd: int | None, operation: str) -> None:
    """``dir_fd`` names a local directory by descriptor: meaningless for a mount path."""
    if dir_fd is not None:
        raise refused(target, f"os.{operation}(dir_fd=...)")


def stat(target: Target, *, dir_fd: int | None = None,
         follow_symlinks: bool = True) -> os.stat_result:
    """``os.stat``/``os.lstat``: one HEAD (recorded as observed, for CAS)."""
    if dir_fd is not None:
        no_dir_fd(target, dir_fd, "stat")
    if not target.key:
        return make_stat(target.mount, "", True)
    try:
        info = target.fs.getinfo(target.fs_path)
    except Exception as exc:
        error = translated(exc, target)
        if error is exc:
            raise
        raise error from None
    if target.dir_only and not info.is_dir:
        raise oserror(errno.ENOTDIR, target.filename)
    return stat_from_info(target.mount, target.key, info.raw)


def listdir(target: Target) -> list[str] | list[bytes]:
    with converted(target):
        names = target.fs.listdir(target.fs_path)
    return [os.fsencode(n) for n in names] if target.is_bytes else names


def scandir(target: Target) -> MountScandirIterator:
    return scan(target)


def remove(target: Target, *, dir_fd: int | None = None) -> None:
    no_dir_fd(target, dir_fd, "remove")
    if target.dir_only:
        found = kind(target)
        number = errno.ENOENT if found is None else (
            errno.ENOTDIR if found == "file" else errno.EISDIR)
        raise oserror(number, target.filename)
    with converted(target):
        target.fs.remove(target.fs_path)
    if fd_files.REGISTRY:
        fd_files.unlinked(target)


def mkdir(target: Target, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
    """Creates a directory marker; the parent must exist, as locally."""
    no_dir_fd(target, dir_fd, "mkdir")
    with converted(target):
        target.fs.makedir(target.fs_path)


def rmdir(target: Target, *, dir_fd: int | None = None) -> None:
    no_dir_fd(target, dir_fd, "rmdir")
    with converted(target):
        target.fs.removedir(target.fs_path)


def access(target: Target, mode: int, *, dir_fd: int | None = None,
           effective_ids: bool = False, follow_symlinks: bool = True) -> bool:
    """Consistent with ``stat``: files are rw-, directories rwx, for the caller."""
    no_dir_fd(target, dir_fd, "access")
    try:
        result = stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return not (mode & os.X_OK) or stat_module.S_ISDIR(result.st_mode)


def truncate(target: Target, length: int) -> None:
    """Emulated: read, cut or pad, write back (one GET, one PUT)."""
    with open_target(target, "r+b", buffering=0) as handle:
        handle.truncate(length)


def readlink(target: Target, *, dir_fd: int | None = None) -> str | bytes:
    """Nothing on a mount is a link: ``EINVAL`` when it exists, as for a regular file."""
    no_dir_fd(target, dir_fd, "readlink")
    stat(target)
    raise oserror(errno.EINVAL, target.filename)


_ROUTED: dict[str, Callable[..., Any]] = {
    "stat": stat, "lstat": stat, "remove": remove, "unlink": remove, "mkdir": mkdir,
    "rmdir": rmdir, "access": access, "truncate": truncate, "readlink": readlink,
}
_DEFAULT_PATH: dict[str, Callable[..., Any]] = {"listdir": listdir, "scandir": scandir}


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    """``{("os", name): replacement}`` for every function above."""
    result: dict[tuple[str, str], Callable[..., Any]] = {}
    for name, on_mount in _ROUTED.items():
        if hasattr(os, name):
            result[("os", name)] = routed(table, getattr(os, name), on_mount)
    for name, on_mount in _DEFAULT_PATH.items():
        result[("os", name)] = routed_default(table, getattr(os, name), on_mount, ".")
    result.update(fd_files.patches(table))  # os.open/close/fsync/fstat
    return result
