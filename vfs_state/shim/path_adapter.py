"""``os.path`` predicates on mounts: an outage is an error, not a ``False``.

``os.path.exists/isfile/isdir/lexists/islink`` call ``os.stat``/``os.lstat``
(already routed) but swallow every ``OSError`` -- including the
``ConnectionError`` of an unreachable sidecar. A handler would then take
"sidecar down" for "no state yet" and might overwrite real state with
fresh state once the sidecar is back (an unobserved key is written
unconditionally). On mount paths these predicates therefore let
``ConnectionError`` and ``TimeoutError`` through; everything else answers
as the originals do.
"""
from __future__ import annotations

import posixpath
import stat as stat_module
from collections.abc import Callable
from typing import Any

from vfs_state.shim import os_adapter
from vfs_state.shim.router import MountTable, Target, routed

_OUTAGES = (ConnectionError, TimeoutError)


def _mode(target: Target) -> int | None:
    try:
        return os_adapter.stat(target).st_mode
    except _OUTAGES:
        raise
    except (OSError, ValueError):
        return None


def exists(target: Target) -> bool:
    return _mode(target) is not None


def isfile(target: Target) -> bool:
    mode = _mode(target)
    return mode is not None and stat_module.S_ISREG(mode)


def isdir(target: Target) -> bool:
    mode = _mode(target)
    return mode is not None and stat_module.S_ISDIR(mode)


def islink(target: Target) -> bool:
    """Nothing on a mount is a link; still an error if the sidecar is unreachable."""
    _mode(target)
    return False


_PREDICATES: dict[str, Callable[[Target], bool]] = {
    "exists": exists, "lexists": exists, "isfile": isfile, "isdir": isdir, "islink": islink,
}


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    return {("posixpath", name): routed(table, getattr(posixpath, name), predicate)
            for name, predicate in _PREDICATES.items()}
