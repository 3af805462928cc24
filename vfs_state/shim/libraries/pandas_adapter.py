"""pandas: parquet paths on a mount go to pyarrow with the mount's filesystem.

``pandas.io.parquet`` opens local write targets with ``pa.OSFile`` (native)
and hands read paths to pyarrow; both would touch the local disk. For a
mount path, ``_get_path_or_handle`` now answers the key and a pyarrow
filesystem for the mount instead (parent directory checked first, as pandas
does locally), and an error of ``PyArrowImpl.read`` that names the key names
the caller's path. csv/json/pickle/feather already go through the shim's
``open``.
"""
from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

from vfs_state.shim.router import MountTable

Saved = list[tuple[object, str, object]]


def _patch(module: ModuleType, table: MountTable) -> Saved:
    real = getattr(module, "_get_path_or_handle", None)
    if real is None:
        return []

    @functools.wraps(real)
    def routed(path: Any, fs: Any, storage_options: Any = None, mode: str = "rb",
               is_dir: bool = False) -> Any:
        target = None
        if fs is None and (isinstance(path, str) or hasattr(path, "__fspath__")):
            target = table.resolve(path)
        if target is None:
            return real(path, fs, storage_options, mode, is_dir)
        from vfs_state.shim.libraries.pyarrow_adapter import arrow_fs
        if "r" not in mode and not is_dir:
            from pandas.io.common import check_parent_directory  # type: ignore[import-untyped]
            check_parent_directory(os.fspath(path))
        return target.key, None, arrow_fs(target)

    setattr(module, "_get_path_or_handle", routed)  # noqa: B010 (mypy: not in the stubs)
    saved: Saved = [(module, "_get_path_or_handle", real)]
    impl = getattr(module, "PyArrowImpl", None)
    if impl is not None:
        saved.append((impl, "read", impl.read))
        impl.read = _naming_errors(table, impl.read)
    return saved


def _naming_errors(table: MountTable, real: Any) -> Any:
    @functools.wraps(real)
    def read(self: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        target = None
        if isinstance(path, str) or hasattr(path, "__fspath__"):
            target = table.resolve(path)
        if target is None:
            return real(self, path, *args, **kwargs)
        from vfs_state.shim.libraries.pyarrow_adapter import naming
        return naming({target.key: target}, real, self, path, *args, **kwargs)
    return read


MODULES = {"pandas.io.parquet": _patch}
