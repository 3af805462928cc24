"""pyarrow: mount paths go to a ``PyFileSystem`` over the ``vfsstate`` fsspec filesystem.

Functions with a ``filesystem=`` parameter get the key (mount-relative) and
that filesystem; feather and csv, which take file objects, get a stream
opened on it. Either way native code never sees the mount path, so nothing
lands on the local disk. pandas' parquet/feather calls reach these too.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vfs_state.shim.router import MountTable, Target

Saved = list[tuple[object, str, object]]


def arrow_fs(target: Target) -> Any:
    """A pyarrow filesystem whose paths are keys of ``target``'s mount."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem  # type: ignore[import-untyped]

    from vfs_state.fsspec_fs import VfsStateFileSystem
    spec = VfsStateFileSystem(socket=target.mount.socket, write_mode=target.mount.write_mode,
                              skip_instance_cache=True)
    return PyFileSystem(FSSpecHandler(spec))


def _with_filesystem(table: MountTable, real: Callable, position: int, name: str) -> Callable:
    @functools.wraps(real)
    def routed(*args: Any, **kwargs: Any) -> Any:
        call = list(args)
        inline = len(call) > position
        path = call[position] if inline else kwargs.get(name)
        target = None if kwargs.get("filesystem") is not None else _resolve(table, path)
        if target is None:
            return real(*call, **kwargs)
        if inline:
            call[position] = target.key
        else:
            kwargs[name] = target.key
        kwargs["filesystem"] = arrow_fs(target)
        return real(*call, **kwargs)
    return routed


def _with_stream(table: MountTable, real: Callable, position: int, writing: bool) -> Callable:
    @functools.wraps(real)
    def routed(*args: Any, **kwargs: Any) -> Any:
        target = _resolve(table, args[position]) if len(args) > position else None
        if target is None:
            return real(*args, **kwargs)
        fs = arrow_fs(target)
        stream = fs.open_output_stream(target.key) if writing else fs.open_input_file(target.key)
        with stream:
            call = list(args)
            call[position] = stream
            return real(*call, **kwargs)
    return routed


def _resolve(table: MountTable, path: object) -> Target | None:
    if not isinstance(path, str) and not hasattr(path, "__fspath__"):
        return None
    return table.resolve(path)


def _patcher(plan: dict[str, tuple[str, int, Any]]) -> Callable[[ModuleType, MountTable], Saved]:
    def patch(module: ModuleType, table: MountTable) -> Saved:
        saved: Saved = []
        for attribute, (kind, position, extra) in plan.items():
            real = getattr(module, attribute, None)
            if real is None:
                continue
            replacement: Any
            if kind == "class":  # a subclass keeps isinstance() and subclassing working
                init = _with_filesystem(table, real.__init__, position + 1, extra)
                replacement = type(real.__name__, (real,), {"__init__": init,
                                                            "__module__": real.__module__})
            elif kind == "fs":
                replacement = _with_filesystem(table, real, position, extra)
            else:
                replacement = _with_stream(table, real, position, extra)
            saved.append((module, attribute, real))
            setattr(module, attribute, replacement)
        return saved
    return patch


MODULES = {
    "pyarrow.parquet": _patcher({
        "read_table": ("fs", 0, "source"),
        "write_table": ("fs", 1, "where"),
        "write_to_dataset": ("fs", 1, "root_path"),
        "read_metadata": ("fs", 0, "where"),
        "read_schema": ("fs", 0, "where"),
        "ParquetFile": ("class", 0, "source"),
        "ParquetWriter": ("class", 0, "where"),
        "ParquetDataset": ("class", 0, "path_or_paths"),
    }),
    "pyarrow.dataset": _patcher({
        "dataset": ("fs", 0, "source"),
        "write_dataset": ("fs", 1, "base_dir"),
    }),
    "pyarrow.feather": _patcher({
        "read_table": ("stream", 0, False),
        "read_feather": ("stream", 0, False),
        "write_feather": ("stream", 1, True),
    }),
    "pyarrow.csv": _patcher({
        "read_csv": ("stream", 0, False),
        "write_csv": ("stream", 1, True),
    }),
}
