"""The shim's one import hook: "when module X is imported, run adapter Y".

Every library the shim adapts without importing it registers here: the
native refusals (``shim.native``: sqlite3, duckdb, joblib), the library
adapters (pyarrow, pandas, polars, numpy) and, passed in by the shim, the
patcher's late patches (``tempfile``, ``mmap``, ``fcntl``). A finder in
``sys.meta_path`` wraps the loader of each watched module so its adapter
runs right after the module body; a module already imported is adapted at
install. Nothing is imported by the shim itself (start-up budget; for the
same reason the finder and loader are duck-typed, not ``importlib.abc``
subclasses: that module imports ``importlib.resources``). ``uninstall``
removes the finder and restores every binding, in reverse order.
"""
from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from vfs_state.shim.router import MountTable

#: (owner, attribute, original) for every binding changed.
Saved = list[tuple[object, str, object]]
Adapter = Callable[[ModuleType, MountTable], Saved]

_lock = threading.RLock()
_saved: Saved = []
_finder: _Finder | None = None


def _adapters() -> dict[str, Adapter]:
    """The registry: module name -> adapter."""
    from vfs_state.shim import native
    from vfs_state.shim.libraries import (
        numpy_adapter,
        pandas_adapter,
        polars_adapter,
        pyarrow_adapter,
    )
    registry: dict[str, Adapter] = {}
    for modules in (native.MODULES, pyarrow_adapter.MODULES, pandas_adapter.MODULES,
                    polars_adapter.MODULES, numpy_adapter.MODULES):
        registry.update(modules)
    return registry


class _Loader:
    """The watched module's own loader, with its adapter run after the module body."""

    def __init__(self, inner: Any, apply: Callable[[ModuleType], None]) -> None:
        self._inner = inner
        self._apply = apply

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... of the real loader
        return getattr(self._inner, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        self._apply(module)


class _Finder:
    """A ``sys.meta_path`` finder (``find_spec`` is all the import system asks of one)."""

    def __init__(self, watched: dict[str, Adapter], table: MountTable) -> None:
        self.watched = watched
        self.table = table
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.watched or getattr(self._busy, "name", None) == fullname:
            return None
        self._busy.name = fullname
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.name = None
        if spec is None or spec.loader is None:
            return None
        wrapped = _Loader(spec.loader, lambda module: _apply(fullname, module))
        spec.loader = wrapped  # type: ignore[assignment]  # a Loader by duck typing
        return spec


def _apply(name: str, module: ModuleType) -> None:
    with _lock:
        if _finder is not None:
            _saved.extend(_finder.watched[name](module, _finder.table))


def install(table: MountTable, more: Mapping[str, Adapter] | None = None) -> None:
    """Watch the libraries (and the modules of ``more``); patch the ones already imported."""
    global _finder
    with _lock:
        if _finder is not None:
            return
        _finder = _Finder({**_adapters(), **(more or {})}, table)
        sys.meta_path.insert(0, _finder)
        for name in _finder.watched:
            module = sys.modules.get(name)
            if module is not None:
                _apply(name, module)


def uninstall() -> None:
    """Stop watching and restore every patched binding."""
    global _finder
    with _lock:
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = None
        while _saved:
            owner, attribute, original = _saved.pop()
            if isinstance(owner, dict):
                owner[attribute] = original
            else:
                setattr(owner, attribute, original)
