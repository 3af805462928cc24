"""What a mount cannot do, refused loudly instead of reaching the local disk.

Each refusal is an ``OSError`` with a fitting errno whose message names the
mount and says why: modes, owners and times
(not stored by any backend), links and special files, changing into a
mount. Paths outside mounts reach the real functions untouched.
"""
from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any

from vfs_state.shim.errors import refused
from vfs_state.shim.router import MountTable, Target, routed

_MODES = "modes are not stored (files read 0o644, directories 0o755)"
_OWNERS = "owners are not stored"
_TIMES = "modification times are set by the backend when an object is written"
_SPECIAL = "only regular files and directories can be stored"
_CWD = "a mount is not a local directory; use absolute paths"
_CAPACITY = "a mount reports no capacity or limits"
_LINKS = "links cannot be stored"

#: os function -> (errno, reason); functions the platform lacks are skipped.
SINGLE_PATH: dict[str, tuple[int, str]] = {
    "chmod": (errno.ENOTSUP, _MODES),
    "lchmod": (errno.ENOTSUP, _MODES),
    "chflags": (errno.ENOTSUP, _MODES),
    "lchflags": (errno.ENOTSUP, _MODES),
    "chown": (errno.EPERM, _OWNERS),
    "lchown": (errno.EPERM, _OWNERS),
    "utime": (errno.ENOTSUP, _TIMES),
    "mkfifo": (errno.ENOTSUP, _SPECIAL),
    "mknod": (errno.ENOTSUP, _SPECIAL),
    "chdir": (errno.ENOTSUP, _CWD),
    "chroot": (errno.ENOTSUP, _CWD),
    "statvfs": (errno.ENOTSUP, _CAPACITY),
    "pathconf": (errno.ENOTSUP, _CAPACITY),
}


def _refuser(name: str, number: int, reason: str) -> Callable[..., Any]:
    def on_mount(target: Target, *args: Any, **kwargs: Any) -> Any:
        raise refused(target, f"os.{name}()", number, reason)
    return on_mount


def _make_link(table: MountTable, real: Callable[..., None], name: str,
               check_source: bool) -> Callable[..., None]:
    """``os.link`` (either end on a mount) and ``os.symlink`` (the new link on one)."""
    resolve = table.resolve

    @functools.wraps(real)
    def replacement(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        target = resolve(dst) or (resolve(src) if check_source else None)
        if target is None:
            return real(src, dst, *args, **kwargs)
        raise refused(target, f"os.{name}()", errno.EPERM, _LINKS)

    return replacement


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    result: dict[tuple[str, str], Callable[..., Any]] = {}
    for name, (number, reason) in SINGLE_PATH.items():
        if hasattr(os, name):
            result[("os", name)] = routed(table, getattr(os, name),
                                          _refuser(name, number, reason))
    result[("os", "link")] = _make_link(table, os.link, "link", check_source=True)
    result[("os", "symlink")] = _make_link(table, os.symlink, "symlink", check_source=False)
    return result
