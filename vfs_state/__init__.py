"""vfs-state: plain Python file operations on mount paths, stored by sidecars.

Handlers need no import: ``VFS_STATE_MOUNTS`` activates the shim at
interpreter start. Scripts and tests may use the pieces directly.
"""
from __future__ import annotations

from vfs_state.mounts import Mount
from vfs_state.shim import install, installed, local_copy, uninstall
from vfs_state.statefs import StateFS
from vfs_state.transport import OutcomeUnknownError
from vfs_state.versions import retry_on_conflict, session

__all__ = ["StateFS", "session", "retry_on_conflict", "install", "uninstall", "installed",
           "local_copy", "Mount", "OutcomeUnknownError"]
