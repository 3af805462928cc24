"""Activated from ``vfs_state_autoinstall.pth`` when a mount variable is set.

The ``.pth`` line checks the environment itself, so interpreters without
``VFS_STATE_MOUNTS`` never import this package. A broken mount list is
reported on stderr rather than aborting the interpreter (a ``.pth`` cannot
stop start-up cleanly, and tools like pip run in the same environment).
"""
from __future__ import annotations

import sys


def activate() -> None:
    try:
        from vfs_state.shim import install
        install()
    except Exception as exc:  # noqa: BLE001 - must never break interpreter start
        sys.stderr.write(f"vfs-state: mounts NOT active: {exc}\n")


activate()
