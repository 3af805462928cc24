"""Native libraries that open mount paths themselves: refused at once, pointing at a way.

``sqlite3.connect`` and ``duckdb.connect`` open their file in C, so the
shim cannot route them; on a mount path they would fail later with
"unable to open database file" (or, worse, create a local file). Their
replacements raise an ``OSError`` naming the mount and
``vfs_state.local_copy`` instead. ``joblib.load(mmap_mode=...)`` maps only
an ``io.FileIO``: on a mount path its read-only modes map a local copy.

None of these is imported for this (``sqlite3`` alone costs milliseconds;
figures in docs/performance.md): the shim's one import hook
(``libraries.hook``) wraps a module when it is imported, or at install when
it already is, and ``uninstall()`` restores every original.
"""
from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vfs_state.shim.errors import refused
from vfs_state.shim.router import MountTable, Target

_WAY = ("it opens the file in C, which a mount cannot serve; use "
        "`with vfs_state.local_copy(path, 'r+') as real: ...` (see docs/troubleshooting.md)")
_MAPPED = ("writes through a memory map cannot reach the store; use "
           "`with vfs_state.local_copy(path, 'r+') as real: ...`")

OnMount = Callable[..., Any]


def _refuser(shown: str, real: Callable[..., Any]) -> OnMount:
    def on_mount(target: Target, *args: Any, **kwargs: Any) -> Any:
        raise refused(target, shown, errno.ENOTSUP, _WAY)
    return on_mount


def _joblib_load(shown: str, real: Callable[..., Any]) -> OnMount:
    """``joblib.load(mmap_mode="r"|"c")``: map a local copy (unlinked once mapped).

    joblib maps arrays only from an ``io.FileIO``; without this it would
    load them into memory with a warning.
    """
    def on_mount(target: Target, mmap_mode: str | None = None, *args: Any,
                 **kwargs: Any) -> Any:
        if mmap_mode is None:
            return real(target.filename, None, *args, **kwargs)
        if mmap_mode not in ("r", "c"):
            raise refused(target, f"{shown}(mmap_mode={mmap_mode!r})", errno.ENOTSUP, _MAPPED)
        from vfs_state.shim.local_copies import copy_of

        with copy_of(target, "r") as path:
            return real(path, mmap_mode, *args, **kwargs)
    return on_mount


Factory = Callable[[str, Callable[..., Any]], OnMount]

#: module -> {attribute: (the path parameter's name, factory(shown, real) -> on_mount)}.
NATIVE: dict[str, dict[str, tuple[str, Factory]]] = {
    "sqlite3": {"connect": ("database", _refuser)},
    "sqlite3.dbapi2": {"connect": ("database", _refuser)},
    "duckdb": {"connect": ("database", _refuser)},
    "joblib": {"load": ("filename", _joblib_load)},
    "joblib.numpy_pickle": {"load": ("filename", _joblib_load)},
}


def routed_path(table: MountTable, real: Callable[..., Any], keyword: str,
                on_mount: OnMount) -> Callable[..., Any]:
    """Like ``router.routed`` for a path that may be passed by keyword, or omitted
    (``sqlite3.connect(database=...)``, ``duckdb.connect()``)."""
    resolve = table.resolve

    @functools.wraps(real)
    def replacement(*args: Any, **kwargs: Any) -> Any:
        path = args[0] if args else kwargs.get(keyword)
        target = None if path is None else resolve(path)
        if target is None:
            return real(*args, **kwargs)
        if args:
            return on_mount(target, *args[1:], **kwargs)
        del kwargs[keyword]
        return on_mount(target, **kwargs)

    replacement._vfs_native = True  # type: ignore[attr-defined]
    return replacement


Saved = list[tuple[object, str, object]]


def _adapter(module: ModuleType, table: MountTable) -> Saved:
    """Wrap ``module``'s native functions (run by the shim's one import hook)."""
    saved: Saved = []
    top = module.__name__.split(".")[0]
    for attribute, (keyword, factory) in NATIVE.get(module.__name__, {}).items():
        real = getattr(module, attribute, None)
        if real is None or getattr(real, "_vfs_native", False):
            continue
        on_mount = factory(f"{top}.{attribute}()", real)
        setattr(module, attribute, routed_path(table, real, keyword, on_mount))
        saved.append((module, attribute, real))
    return saved


#: module name -> adapter, for ``libraries.hook`` (applied on import, undone on uninstall).
MODULES = {name: _adapter for name in NATIVE}
