"""``pathlib.Path.touch`` on mounts (the rest of ``Path`` calls ``os`` and ``io``).

``Path.touch`` uses ``os.utime`` then ``os.open``, neither of which a mount
can serve, so it is replaced: an existing file or directory is left as it
is (its time cannot be bumped: backends set it on write), a missing file is
created empty with ``If-None-Match: *``. ``exist_ok=False`` on an existing
path raises ``FileExistsError`` as locally. ``mode`` is not stored.
"""
from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

from vfs_state.shim import os_adapter
from vfs_state.shim.open_adapter import open_target
from vfs_state.shim.router import MountTable, Target, routed


def touch(target: Target, mode: int = 0o666, exist_ok: bool = True) -> None:
    if exist_ok:
        try:
            os_adapter.stat(target)
            return
        except FileNotFoundError:
            pass
    try:
        open_target(target, "xb", buffering=0).close()
    except FileExistsError:
        if not exist_ok:
            raise  # someone else created it meanwhile: fine for touch


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    return {("pathlib", "Path.touch"): routed(table, pathlib.Path.touch, touch)}
