"""Activated from ``vfs_state_autoinstall.pth`` when a mount variable is set.

The ``.pth`` line checks the environment itself, so interpreters without
``VFS_STATE_MOUNTS`` never import this package. Activation fails closed: when
the mounts are set but cannot be activated (malformed entry, unknown option,
import error), the interpreter exits at start with status 78 and one line on
stderr, because running on with the shim off would put state on the local
disk. ``VFS_STATE_ON_ERROR=warn`` opts into warn-and-continue (for example for
pip or nox running in an environment where the mounts are set).
"""
from __future__ import annotations

import os
import sys

ON_ERROR_ENV = "VFS_STATE_ON_ERROR"
EXIT_STATUS = 78  # EX_CONFIG from sysexits.h


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, ImportError) else text


def _report_activation() -> None:
    """The handshake ``vfs-state run`` checks: append our pid to the named file."""
    from vfs_state.mounts import ACTIVATION_FILE_ENV
    marker = os.environ.get(ACTIVATION_FILE_ENV)
    if marker:
        with open(marker, "a", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")


def activate() -> None:
    """Install the shim from the environment; exit (or warn) if that fails."""
    try:
        from vfs_state._fsimport import import_fs
        from vfs_state.shim import install
        import_fs()  # a dependency that cannot be imported stops us here, not at first use
        install()
        _report_activation()
    except Exception as exc:  # noqa: BLE001 - any failure must be reported, never ignored
        message = _one_line(exc)
        if os.environ.get(ON_ERROR_ENV, "").strip().lower() == "warn":
            sys.stderr.write(f"vfs-state: mounts NOT active ({ON_ERROR_ENV}=warn): {message}\n")
            return
        sys.stderr.write(f"vfs-state: cannot activate mounts, stopping: {message} "
                         f"(set {ON_ERROR_ENV}=warn to continue without them)\n")
        sys.stderr.flush()
        os._exit(EXIT_STATUS)


activate()
