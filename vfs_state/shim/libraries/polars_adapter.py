"""polars: mount paths become bytes (readers) or shim file objects (writers).

polars' readers and writers are native (Rust) and would open the path on the
local disk. Readers get the object's bytes read through the shim's ``open``
(a directory of parquet files is read as a pyarrow dataset; a list of paths,
a glob or another directory, file by file, then concatenated); writers and
``LazyFrame`` sinks get a file opened through the shim, so missing parents
fail as they would locally, ``mkdir=True`` makes them, and ``partition_by=``
writes a hive-partitioned dataset through pyarrow. A deferred sink
(``lazy=True``) would write after the file is closed, so it is refused.
"""
from __future__ import annotations

import builtins
import errno
import functools
import glob
import io
import os
import posixpath
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vfs_state.shim.errors import refused
from vfs_state.shim.router import MountTable

Saved = list[tuple[object, str, object]]
READERS = ("read_parquet", "read_csv", "read_ipc", "read_ipc_stream", "read_json",
           "read_ndjson", "read_avro", "read_parquet_schema", "read_parquet_metadata",
           "read_ipc_schema", "scan_parquet", "scan_csv", "scan_ipc", "scan_ndjson")
#: these take a file object, not bytes, whatever their hints say
NEEDS_FILE = frozenset({"read_avro", "read_ipc_schema"})
#: these also take a list of paths or a glob, read here file by file and concatenated
MANY = frozenset({"read_parquet", "read_csv", "read_ipc", "read_ndjson",
                  "scan_parquet", "scan_csv", "scan_ipc", "scan_ndjson"})
_GLOB = re.compile(r"[*?[]")
#: method -> name of its destination parameter
WRITERS = {"write_parquet": "file", "write_csv": "file", "write_ipc": "file",
           "write_ipc_stream": "file", "write_json": "file", "write_ndjson": "file",
           "write_avro": "file"}
SINKS = {"sink_parquet": "path", "sink_csv": "path", "sink_ipc": "path", "sink_ndjson": "path"}


def _target(table: MountTable, path: object) -> Any:
    if isinstance(path, str) or hasattr(path, "__fspath__"):
        return table.resolve(path)
    return None


def _reader(table: MountTable, real: Callable, name: str) -> Callable:
    @functools.wraps(real)
    def routed(source: Any, *args: Any, **kwargs: Any) -> Any:
        target = _target(table, source)
        many = _many(table, source, target, kwargs) if name in MANY else None
        if many is not None:
            if many:
                return _read_many(routed, many, args, kwargs)
            # A glob matching nothing: polars finds nothing on the local disk either
            # and fails its own way (at collect, for scans).
            return real(source, *args, **kwargs)
        if target is None:
            return real(source, *args, **kwargs)
        path = os.fspath(source)
        if name.endswith("parquet") and os.path.isdir(path):
            return _read_dataset(target, name, kwargs)
        try:
            with builtins.open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:  # as polars words it (no errno)
            raise FileNotFoundError(f"No such file or directory (os error 2): {path}") from None
        except IsADirectoryError:  # found by trying: a file costs no extra request
            if name not in MANY:
                raise
            return _read_many(routed, _directory_files(path), args, kwargs)
        return real(io.BytesIO(data) if name in NEEDS_FILE else data, *args, **kwargs)
    return routed


def _directory_files(path: str) -> list[str]:
    """Every file under a directory, in polars' order (sorted paths, hidden ones too);
    refused as polars refuses it when the files' extensions differ or there are none."""
    import polars
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                   for name in names)
    if not files:
        raise polars.exceptions.ComputeError(
            f"failed to retrieve file schemas: expanded paths were empty: {path}")
    extensions = {posixpath.splitext(file)[1] for file in files}
    if len(extensions) > 1:
        raise polars.exceptions.InvalidOperationError(
            f"directory contained paths with different file extensions: {path}; "
            "use a glob pattern to say which files to read (e.g. 'dir/**/*.csv')")
    return files


def _many(table: MountTable, source: Any, target: Any, kwargs: dict) -> list[Any] | None:
    """The files a list of paths or a glob on a mount (``target``) names: None for
    neither, ``[]`` for a glob matching nothing."""
    if isinstance(source, (list, tuple)):
        if source and any(_target(table, path) is not None for path in source):
            return list(source)
        return None
    if target is None or not kwargs.get("glob", True):
        return None
    pattern = os.fspath(source)
    if not _GLOB.search(pattern):
        return None
    return sorted(glob.glob(pattern))  # the shim's scandir, as polars' own expansion


def _read_many(read_one: Callable, paths: list[Any], args: tuple, kwargs: dict) -> Any:
    """Each file read on its own, then one frame; a row limit and a row index apply
    to the whole, as polars applies them."""
    import polars
    limit = kwargs.pop("n_rows", None)
    index, offset = kwargs.pop("row_index_name", None), kwargs.pop("row_index_offset", 0)
    frame = polars.concat([read_one(path, *args, **kwargs) for path in paths], how="vertical")
    if limit is not None:
        frame = frame.head(limit)
    return frame if index is None else frame.with_row_index(index, offset)


def _read_dataset(target: Any, name: str, kwargs: dict) -> Any:
    import polars
    import pyarrow.dataset as ds  # type: ignore[import-untyped]

    from vfs_state.shim.libraries.pyarrow_adapter import arrow_fs
    dataset = ds.dataset(target.key, filesystem=arrow_fs(target), format="parquet",
                         partitioning="hive")
    frame = polars.from_arrow(dataset.to_table(columns=kwargs.get("columns")))
    return frame.lazy() if name.startswith("scan") else frame  # type: ignore[union-attr]


def _writer(table: MountTable, real: Callable, parameter: str) -> Callable:
    @functools.wraps(real)
    def routed(self: Any, *args: Any, **kwargs: Any) -> Any:
        file = args[0] if args else kwargs.get(parameter)
        target = _target(table, file)
        if target is None:
            return real(self, *args, **kwargs)
        args, path = args[1:], os.fspath(file)  # type: ignore[arg-type]
        kwargs.pop(parameter, None)
        if kwargs.get("lazy"):
            raise refused(target, f"{real.__name__}(lazy=True)", errno.ENOTSUP,
                          "the sink would run after the file is closed; use lazy=False")
        parent = posixpath.dirname(path)
        if kwargs.pop("mkdir", False):
            os.makedirs(parent, exist_ok=True)
        elif parent and not os.path.isdir(parent):  # the shim's open would make it
            raise FileNotFoundError(f"No such file or directory (os error 2): {path}")
        partition_by = kwargs.pop("partition_by", None)
        if partition_by is not None:
            return _write_partitioned(self, target, partition_by)
        with builtins.open(path, "wb") as handle:
            return real(self, handle, *args, **kwargs)
    return routed


def _write_partitioned(frame: Any, target: Any, partition_by: Any) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    from vfs_state.shim.libraries.pyarrow_adapter import arrow_fs
    columns = [partition_by] if isinstance(partition_by, str) else list(partition_by)
    pq.write_to_dataset(frame.to_arrow(), target.key, partition_cols=columns,
                        filesystem=arrow_fs(target))


def _patch(module: ModuleType, table: MountTable) -> Saved:
    saved: Saved = []
    for name in READERS:
        real = getattr(module, name, None)
        if real is not None:
            saved.append((module, name, real))
            setattr(module, name, _reader(table, real, name))
    for class_name, methods in (("DataFrame", WRITERS), ("LazyFrame", SINKS)):
        owner = getattr(module, class_name, None)
        for name, parameter in methods.items() if owner is not None else ():
            real = vars(owner).get(name)
            if real is not None:
                saved.append((owner, name, real))
                setattr(owner, name, _writer(table, real, parameter))
    return saved


MODULES = {"polars": _patch}
