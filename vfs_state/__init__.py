"""vfs-state: plain Python file operations on mount paths, stored by sidecars.

Handlers need no import: ``VFS_STATE_MOUNTS`` activates the shim at
interpreter start. Scripts and tests may use the pieces directly.

The public names are loaded on first use (PEP 562), so importing the package
(as the start-up hook does) costs nothing and cannot fail on a dependency:
the hook reports such a failure itself, in one line.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "StateFS": "vfs_state.statefs",
    "session": "vfs_state.versions",
    "retry_on_conflict": "vfs_state.versions",
    "install": "vfs_state.shim",
    "uninstall": "vfs_state.shim",
    "installed": "vfs_state.shim",
    "local_copy": "vfs_state.shim",
    "Mount": "vfs_state.mounts",
    "OutcomeUnknownError": "vfs_state.transport",
    "OutcomeUnknownTimeout": "vfs_state.transport",
}

if TYPE_CHECKING:
    from vfs_state.mounts import Mount
    from vfs_state.shim import install, installed, local_copy, uninstall
    from vfs_state.statefs import StateFS
    from vfs_state.transport import OutcomeUnknownError, OutcomeUnknownTimeout
    from vfs_state.versions import retry_on_conflict, session


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'vfs_state' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = ["StateFS", "session", "retry_on_conflict", "install", "uninstall", "installed",
           "local_copy", "Mount", "OutcomeUnknownError", "OutcomeUnknownTimeout",
           "__version__"]
