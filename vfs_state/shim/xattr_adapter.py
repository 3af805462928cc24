"""Extended attributes on mounts: ``user.vfs.<attr>`` is ``StateFS``'s ``vfs`` namespace.

``StateFS.getinfo/probe(path, ["vfs"])`` lists a file's backend attributes
and ``setinfo(path, {"vfs": {"attributes": ...}})`` sets them; this module
adds the xattr rules around that.
``os.getxattr/listxattr/setxattr`` map ``user.vfs.NAME`` (and, for the asya
state proxy's handlers, ``user.asya.NAME``) to backend attributes such as a
Redis ``ttl`` or an object's ``version``. A missing attribute is
``OSError(ENODATA)`` as on a local filesystem; names outside those
namespaces hold nothing (``ENODATA``) and cannot be set (``ENOTSUP``); the
protocol cannot delete an attribute, so ``removexattr`` of one that exists
is refused with ``ENOTSUP``.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from vfs_state.protocol import ATTR_PREFIXES, LISTED_ATTR_PREFIX
from vfs_state.shim.errors import converted, oserror, refused
from vfs_state.shim.router import MountTable, Target, routed, routed_default

PREFIXES = ATTR_PREFIXES
LISTED_PREFIX = LISTED_ATTR_PREFIX


def backend_name(attribute: str | bytes) -> str | None:
    """``user.vfs.ttl`` -> ``ttl``; None for other namespaces."""
    name = os.fsdecode(attribute)
    for prefix in PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):]
    return None


def _attributes(target: Target) -> dict[str, str]:
    """All backend attributes (the ``vfs`` info namespace); a directory has none."""
    if not target.key:
        return {}
    try:
        with converted(target):
            info = target.fs.probe(target.fs_path, ["vfs"])
    except ValueError as exc:
        raise oserror(errno.EINVAL, target.filename, message=str(exc)) from None
    if info is None:
        raise oserror(errno.ENOENT, target.filename)
    return dict(info.get("vfs", "attributes") or {})


def getxattr(target: Target, attribute: str | bytes, *, follow_symlinks: bool = True) -> bytes:
    name = backend_name(attribute)
    attributes = _attributes(target)  # ENOENT for a missing path
    if name is None or name not in attributes:
        raise oserror(errno.ENODATA, target.filename)
    return attributes[name].encode("utf-8")


def listxattr(target: Target, *, follow_symlinks: bool = True) -> list[str]:
    return [LISTED_PREFIX + name for name in sorted(_attributes(target))]


def setxattr(target: Target, attribute: str | bytes, value: bytes, flags: int = 0, *,
             follow_symlinks: bool = True) -> None:
    name = backend_name(attribute)
    if name is None:
        raise refused(target, f"setxattr({os.fsdecode(attribute)!r})", errno.ENOTSUP,
                      f"only {' and '.join(p + '*' for p in PREFIXES)} attributes are stored")
    if flags:
        exists = name in _attributes(target)
        if flags & os.XATTR_CREATE and exists:
            raise oserror(errno.EEXIST, target.filename)
        if flags & os.XATTR_REPLACE and not exists:
            raise oserror(errno.ENODATA, target.filename)
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise oserror(errno.EINVAL, target.filename,
                      message="attribute values on a mount must be UTF-8") from None
    try:
        with converted(target):
            target.fs.setinfo(target.fs_path, {"vfs": {"attributes": {name: text}}})
    except ValueError as exc:
        raise oserror(errno.EINVAL, target.filename, message=str(exc)) from None


def removexattr(target: Target, attribute: str | bytes, *,
                follow_symlinks: bool = True) -> None:
    name = backend_name(attribute)
    if name is None or name not in _attributes(target):
        raise oserror(errno.ENODATA, target.filename)
    raise refused(target, "removexattr()", errno.ENOTSUP,
                  "the sidecar protocol cannot delete an attribute")


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    if not hasattr(os, "getxattr"):  # pragma: no cover - not Linux
        return {}
    return {
        ("os", "getxattr"): routed(table, os.getxattr, getxattr),
        ("os", "setxattr"): routed(table, os.setxattr, setxattr),
        ("os", "removexattr"): routed(table, os.removexattr, removexattr),
        ("os", "listxattr"): routed_default(table, os.listxattr, listxattr, "."),
    }
