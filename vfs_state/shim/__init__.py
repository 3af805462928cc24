"""The shim: plain file operations on mount paths go to ``StateFS`` objects.

``install(mounts)`` patches ``builtins.open``/``io.open``, the ``os`` path
functions, ``pathlib.Path.touch`` and a few ``shutil`` helpers (see
``docs/coverage.md``); paths outside every mount reach the real functions
untouched. ``uninstall()`` restores every original. Installing again only
replaces the mount table.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType

from vfs_state.mounts import Mount, mounts_from_env, parse_mounts, validate_mounts
from vfs_state.shim import (
    fd_files,
    guard,
    open_adapter,
    os_adapter,
    path_adapter,
    pathlib_adapter,
    refusals,
    rename,
    shutil_adapter,
    xattr_adapter,
)
from vfs_state.shim.libraries import hook as library_hook
from vfs_state.shim.local_copies import local_copy_from
from vfs_state.shim.patcher import Original, Patcher
from vfs_state.shim.router import MountTable, Target

#: The adapters, in patch order (uninstall runs in reverse).
ADAPTERS = (open_adapter.patches, os_adapter.patches, path_adapter.patches, rename.patches,
            xattr_adapter.patches, refusals.patches, pathlib_adapter.patches,
            shutil_adapter.patches)
#: Adapters of modules start-up does not import: applied when the program imports
#: them (at install if it has already), through the library hook.
LATE_ADAPTERS = fd_files.LATE_PATCHES

_table = MountTable()
_patcher = Patcher(ADAPTERS, _table, LATE_ADAPTERS)


def _patch_late(module: ModuleType, table: MountTable) -> list[tuple[object, str, object]]:
    """The library hook's adapter for ``LATE_ADAPTERS``: the patcher keeps (and
    restores) what it changes, so the hook has nothing to restore."""
    _patcher.imported(module.__name__)
    return []

Mounts = str | Sequence[Mount] | None


def _mounts(mounts: Mounts) -> list[Mount]:
    if mounts is None:
        return mounts_from_env()
    if isinstance(mounts, str):
        return parse_mounts(mounts)
    result = list(mounts)
    for mount in result:
        if not isinstance(mount, Mount):
            raise TypeError(f"mounts must be Mount objects, not {type(mount).__name__}")
    return validate_mounts(result)


def install(mounts: Mounts = None) -> list[Mount]:
    """Patch file functions so paths under ``mounts`` go to their sidecars.

    Args:
        mounts: a string in the ``VFS_STATE_MOUNTS`` format, a list of
            ``Mount``, or None to read the environment.

    Returns:
        The mounts now active. Installing again replaces the mount table.
    """
    parsed = _mounts(mounts)
    guard.sync([m.path for m in parsed])  # native code gets ENOTDIR under a mount path
    _table.load(parsed)
    _patcher.install()
    # pyarrow/polars/numpy and LATE_ADAPTERS: patched when imported
    library_hook.install(_table, dict.fromkeys(LATE_ADAPTERS, _patch_late))
    return parsed


def uninstall() -> None:
    """Restore every original function (a no-op when not installed)."""
    library_hook.uninstall()
    _patcher.uninstall()
    _table.clear()
    guard.sync([])


def is_installed() -> bool:
    return _patcher.active


def active_mounts() -> list[Mount]:
    """The mounts the shim currently routes (empty when not installed)."""
    return _table.mounts if _patcher.active else []


def patched() -> list[Original]:
    """Every binding the shim replaced, with its original (for checks and tests)."""
    return _patcher.originals


def resolve(path: object) -> Target | None:
    """The mount target of ``path`` under the active table, or None."""
    return _table.resolve(path)


def local_copy(path: object, mode: str = "r") -> AbstractContextManager[str]:
    """A real local file for ``path`` (a context manager yielding its ``str`` path).

    For C extensions that open files themselves (``sqlite3``, ``h5py``):
    the key is downloaded to a temporary file; on exit, with ``mode`` "r+"
    or "w", it is written back if it changed, conditional on the version
    read (``FileExistsError`` if another writer got there first). "r"
    never writes back; "w" starts from an empty file. A path outside every
    mount is yielded unchanged, so the same code runs locally.
    """
    return local_copy_from(_table, path, mode)


@contextmanager
def installed(mounts: Mounts = None) -> Iterator[list[Mount]]:
    """``install`` for a block; restores the previous state (nesting is safe)."""
    previous = active_mounts() if _patcher.active else None
    active = install(mounts)
    try:
        yield active
    finally:
        if previous is None:
            uninstall()
        else:
            guard.sync([m.path for m in previous])
            _table.load(previous)


__all__ = ["install", "uninstall", "installed", "is_installed", "active_mounts", "patched",
           "resolve", "local_copy", "Mount", "ADAPTERS", "LATE_ADAPTERS"]
