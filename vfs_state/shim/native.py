"""Native libraries that open mount paths themselves: refused at once, pointing at a way.

``sqlite3.connect`` opens its file in C, so the shim cannot route it; on a
mount path it would fail later with "unable to open database file" (or,
worse, create a local file). Its replacement raises an ``OSError`` naming
the mount and ``vfs_state.local_copy`` instead. ``sqlite3`` costs ~8 ms to
import, so it is not imported for this: when it is already loaded at
install time the patcher replaces ``connect`` (restored on uninstall);
otherwise a one-shot import hook wraps it when it is first imported. A
wrapper left in place after ``uninstall()`` routes nothing (the mount
table is empty) and calls the real function.
"""
from __future__ import annotations

import errno
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vfs_state.shim.errors import refused
from vfs_state.shim.router import MountTable, Target, routed

#: module -> the attributes whose first argument is a path the library opens in C.
NATIVE: dict[str, tuple[str, ...]] = {"sqlite3": ("connect",), "sqlite3.dbapi2": ("connect",)}
_WAY = ("it opens the file in C, which a mount cannot serve; use "
        "`with vfs_state.local_copy(path, 'r+') as real: ...` (see docs/troubleshooting.md)")


def _refuser(name: str) -> Callable[..., Any]:
    shown = f"{name.split('.')[0]}.{name.rsplit('.', 1)[1]}()"  # sqlite3.connect()

    def on_mount(target: Target, *args: Any, **kwargs: Any) -> Any:
        raise refused(target, shown, errno.ENOTSUP, _WAY)
    return on_mount


def _wrap(table: MountTable, module: ModuleType) -> None:
    for attribute in NATIVE.get(module.__name__, ()):
        real = getattr(module, attribute, None)
        if real is not None and not getattr(real, "_vfs_native", False):
            replacement = routed(table, real, _refuser(f"{module.__name__}.{attribute}"))
            replacement._vfs_native = True  # type: ignore[attr-defined]
            setattr(module, attribute, replacement)


class _OnImport:
    """A meta-path finder that wraps ``NATIVE`` functions once their module has run."""

    def __init__(self, table: MountTable) -> None:
        self.table = table

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in NATIVE or name in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        run = loader.exec_module
        table = self.table

        def exec_module(module: ModuleType) -> None:
            run(module)
            _wrap(table, module)

        loader.exec_module = exec_module
        return spec


_hook: list[_OnImport] = []


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    """Loaded modules: patcher entries. Not loaded yet: arm the import hook (once)."""
    result: dict[tuple[str, str], Callable[..., Any]] = {}
    for name, attributes in NATIVE.items():
        module = sys.modules.get(name)
        if module is None:
            continue
        for attribute in attributes:
            real = getattr(module, attribute, None)
            if real is not None and not getattr(real, "_vfs_native", False):
                result[(name, attribute)] = routed(table, real, _refuser(f"{name}.{attribute}"))
    if not _hook:
        _hook.append(_OnImport(table))
        sys.meta_path.insert(0, _hook[0])
    _hook[0].table = table
    return result
