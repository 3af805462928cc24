"""Native libraries that open mount paths themselves: refused at once, pointing at a way.

``sqlite3.connect``, ``duckdb.connect``, ``h5py.File``, ``lmdb.open`` and
safetensors' file functions open their file in C or Rust, so the shim
cannot route them; on a mount path they would fail with "unable to open
database file", ``ENOTDIR`` or ``FileNotFoundError`` (or, worse, create a
local file). Their replacements raise an ``OSError`` naming the mount and
``vfs_state.local_copy`` instead. ``joblib.load(mmap_mode=...)`` maps only
an ``io.FileIO``: on a mount path its read-only modes map a local copy.

None of these is imported for this (``sqlite3`` alone costs milliseconds;
figures in docs/performance.md): the shim's one import hook
(``libraries.hook``) wraps a module when it is imported, or at install when
it already is, and ``uninstall()`` restores every original.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vfs_state.shim.errors import refused
from vfs_state.shim.router import MountTable, Target, routed_path

_WAY = ("it opens the file in native code, which a mount cannot serve; use "
        "`with vfs_state.local_copy(path, 'r+') as real: ...` (see docs/troubleshooting.md)")
_MAPPED = ("writes through a memory map cannot reach the store; use "
           "`with vfs_state.local_copy(path, 'r+') as real: ...`")

OnMount = Callable[..., Any]
Factory = Callable[[str, Callable[..., Any]], OnMount]


def _refuser(shown: str, real: Callable[..., Any]) -> OnMount:
    def on_mount(target: Target, *args: Any, **kwargs: Any) -> Any:
        raise refused(target, shown, errno.ENOTSUP, _WAY)
    return on_mount


def _refusing_as(shown: str) -> Factory:
    """A refuser naming the call as users write it (``h5py.File()``), for an inner
    function (``h5py._hl.files.make_fid``) or a submodule's (``safetensors.numpy``)."""
    def factory(_inner: str, real: Callable[..., Any]) -> OnMount:
        return _refuser(shown, real)
    return factory


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


#: module -> {attribute: (the path parameter's name, factory(shown, real) -> on_mount,
#: optionally the path's position when it is not the first argument)}.
NATIVE: dict[str, dict[str, tuple[Any, ...]]] = {
    "sqlite3": {"connect": ("database", _refuser)},
    "sqlite3.dbapi2": {"connect": ("database", _refuser)},
    "duckdb": {"connect": ("database", _refuser)},
    "joblib": {"load": ("filename", _joblib_load)},
    "joblib.numpy_pickle": {"load": ("filename", _joblib_load)},
    # h5py.File(path) opens through make_fid (a file object does not: it works).
    "h5py._hl.files": {"make_fid": ("name", _refusing_as("h5py.File()"))},
    "h5py._hl.base": {"is_hdf5": ("fname", _refusing_as("h5py.is_hdf5()"))},
    "h5py": {"is_hdf5": ("fname", _refusing_as("h5py.is_hdf5()"))},
    "lmdb": {"open": ("path", _refuser)},  # lmdb.Environment is the same class, not wrapped
    "safetensors": {"safe_open": ("filename", _refuser),
                    "serialize_file": ("filename", _refuser, 1)},
    **{f"safetensors.{framework}": {
        "load_file": ("filename", _refusing_as(f"safetensors.{framework}.load_file()")),
        "save_file": ("filename", _refusing_as(f"safetensors.{framework}.save_file()"), 1)}
       for framework in ("numpy", "torch", "flax", "tensorflow", "paddle", "mlx")},
}


Saved = list[tuple[object, str, object]]


def _adapter(module: ModuleType, table: MountTable) -> Saved:
    """Wrap ``module``'s native functions (run by the shim's one import hook)."""
    saved: Saved = []
    top = module.__name__.split(".")[0]
    for attribute, (keyword, factory, *position) in NATIVE.get(module.__name__, {}).items():
        real = getattr(module, attribute, None)
        if real is None or getattr(real, "_vfs_native", False):
            continue
        on_mount = factory(f"{top}.{attribute}()", real)
        replacement = routed_path(table, real, keyword, on_mount, *position)
        replacement._vfs_native = True  # type: ignore[attr-defined]
        setattr(module, attribute, replacement)
        saved.append((module, attribute, real))
    return saved


#: module name -> adapter, for ``libraries.hook`` (applied on import, undone on uninstall).
MODULES = {name: _adapter for name in NATIVE}
