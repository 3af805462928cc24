"""pyarrow: mount paths go to a ``PyFileSystem`` over the ``vfsstate`` fsspec filesystem.

Functions with a ``filesystem=`` parameter get the key (mount-relative) and
that filesystem; feather and csv, which take file objects, get a stream
opened on it; ``input_stream``/``output_stream`` and the IPC, CSV and JSON
stream readers return such a stream for the caller to close. Writer classes
(CSV, ORC, IPC file and stream) given a path write to a file opened on the
mount and close it, storing the file, when they are closed. Either way
native code never sees the mount path, so nothing lands on the local disk.
Memory maps, which would need a local file, are refused with a way round.
pandas' parquet/feather calls reach these too.
"""
from __future__ import annotations

import builtins
import errno
import functools
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vfs_state.shim.errors import refused
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
        routed_to = None if kwargs.get("filesystem") is not None else _keys(table, path)
        if routed_to is None:
            return real(*call, **kwargs)
        target, keys, names = routed_to
        if inline:
            call[position] = keys
        else:
            kwargs[name] = keys
        kwargs["filesystem"] = arrow_fs(target)
        return naming(names, real, *call, **kwargs)
    return routed


def _keys(table: MountTable, path: object) -> tuple[Target, Any, dict[str, Target]] | None:
    """A path's mount and key, or a list of paths' (all on one mount) and their keys;
    and each key's target."""
    if not isinstance(path, (list, tuple)):
        target = _resolve(table, path)
        return None if target is None else (target, target.key, {target.key: target})
    targets = [_resolve(table, item) for item in path]
    first = targets[0] if targets else None
    if first is None or any(t is None or t.mount is not first.mount for t in targets):
        return None  # empty, local, or across mounts: pyarrow's own error
    found = [t for t in targets if t is not None]
    return first, [t.key for t in found], {t.key: t for t in found}


_ERRNOS = {FileNotFoundError: errno.ENOENT, IsADirectoryError: errno.EISDIR,
           NotADirectoryError: errno.ENOTDIR, FileExistsError: errno.EEXIST,
           PermissionError: errno.EACCES}


def naming(targets: dict[str, Target], call: Callable, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; an error naming a key (pyarrow names the path it was
    given, and it was given the key) names the caller's path instead, in the same
    form: ``FileNotFoundError(path)`` as pyarrow raises it for a local path, or with
    the errno and message it came with. pyarrow's fsspec bridge says "not found" for
    a directory opened as a file: that becomes the ``OSError`` a local path gets."""
    try:
        return call(*args, **kwargs)
    except OSError as exc:
        alone = len(exc.args) == 1 and exc.filename is None
        named = exc.args[0] if alone else exc.filename
        code = _ERRNOS.get(type(exc))
        if code is None or not isinstance(named, str) or named.lstrip("/") not in targets:
            raise
        target = targets[named.lstrip("/")]
        path = target.filename
        if code == errno.ENOENT and target.key and target.fs.isdir(target.fs_path):
            raise OSError(f"Expected file path, but {path!s} is a directory") from exc
        if alone:
            raise type(exc)(path) from exc
        raise type(exc)(exc.errno or code, exc.strerror or os.strerror(code), path) from exc


def _with_stream(table: MountTable, real: Callable, position: int, writing: bool,
                 keep_open: bool = False) -> Callable:
    """The call on a stream of the mount's filesystem instead of the path: closed when
    the call returns, or (``keep_open``) left to what the call returns, which reads
    from it later (``ipc.open_file``, ``ORCFile``) and is closed by the caller."""
    @functools.wraps(real)
    def routed(*args: Any, **kwargs: Any) -> Any:
        target = _resolve(table, args[position]) if len(args) > position else None
        if target is None:
            return real(*args, **kwargs)
        fs = arrow_fs(target)
        names = {target.key: target}
        stream = naming(names, fs.open_output_stream if writing else fs.open_input_file,
                         target.key)
        call = list(args)
        call[position] = stream
        if keep_open:
            return naming(names, real, *call, **kwargs)
        with stream:
            return naming(names, real, *call, **kwargs)
    return routed


def _with_io_stream(table: MountTable, real: Callable, writing: bool) -> Callable:
    """``input_stream``/``output_stream`` on a path: a sequential stream of the mount's
    filesystem, returned for the caller to close as a local one; the compression
    ``"detect"`` would have chosen from the path's extension still applies."""
    @functools.wraps(real)
    def routed(source: Any, *args: Any, **kwargs: Any) -> Any:
        target = _resolve(table, source)
        if target is None:
            return real(source, *args, **kwargs)
        if kwargs.get("compression", args[0] if args else "detect") == "detect":
            args, kwargs = args[1:], {**kwargs, "compression": _codec(target.key)}
        fs = arrow_fs(target)
        stream = naming({target.key: target},
                         fs.open_output_stream if writing else fs.open_input_stream, target.key)
        return real(stream, *args, **kwargs)
    return routed


def _writer_class(table: MountTable, real: type, name: str) -> type:
    """``real`` (a writer class) whose sink, first argument or ``name``, may be a mount path.

    The writer gets the file the shim's ``open(path, "wb")`` opens (so, as
    there, missing parents are made and a directory in the way fails when
    the file is stored) and, when closed, closes that file: the one request
    that stores it. A writer that fails to start, or to finish its file,
    drops the file unstored.
    """
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        call = list(args)
        inline = bool(call)
        target = _resolve(table, call[0] if inline else kwargs.get(name))
        self._vfs_state_file = None
        if target is None:
            real.__init__(self, *args, **kwargs)  # type: ignore[misc]
            return
        import pyarrow as pa  # type: ignore[import-untyped]
        file: Any = builtins.open(target.filename, "wb")  # its raw file can abort()
        sink = pa.PythonFile(file, mode="w")
        if inline:
            call[0] = sink
        else:
            kwargs[name] = sink
        try:
            real.__init__(self, *call, **kwargs)  # type: ignore[misc]
        except BaseException:
            file.raw.abort()
            raise
        self._vfs_state_file = file

    def close(self: Any) -> None:
        file, self._vfs_state_file = self._vfs_state_file, None
        try:
            real.close(self)  # type: ignore[attr-defined]
        except BaseException:
            if file is not None:  # an unfinished file must not replace the stored one
                file.raw.abort()
            raise
        if file is not None:
            file.close()

    __init__.__wrapped__ = real.__init__  # type: ignore[attr-defined,misc]
    return type(real.__name__, (real,), {"__init__": __init__, "close": close,
                                         "__module__": real.__module__,
                                         "__qualname__": real.__qualname__})


def _codec(key: str) -> str | None:
    """The compression pyarrow would detect from a local path's extension."""
    import pyarrow as pa  # type: ignore[import-untyped]
    try:
        return pa.Codec.detect(key).name
    except (TypeError, ValueError):  # no codec for this extension
        return None


def _refused(table: MountTable, real: Callable, position: int, way: str) -> Callable:
    """Calls that would open the path in native code and own what they open."""
    @functools.wraps(real)
    def routed(*args: Any, **kwargs: Any) -> Any:
        target = _resolve(table, args[position]) if len(args) > position else None
        if target is not None:
            raise refused(target, f"pyarrow {real.__name__}()", errno.ENOTSUP, way)
        return real(*args, **kwargs)
    return routed


def _resolve(table: MountTable, path: object) -> Target | None:
    if not isinstance(path, str) and not hasattr(path, "__fspath__"):
        return None
    return table.resolve(path)


def _patcher(plan: dict[str, tuple[str, int, Any]],
             defined_in: str | None = None) -> Callable[[ModuleType, MountTable], Saved]:
    """Patch ``plan``'s names in the module; with ``defined_in``, in that submodule too,
    where the functions call each other (``pyarrow.parquet.read_pandas`` calls the
    ``read_table`` of ``pyarrow.parquet.core``), with the same replacement objects."""
    def patch(module: ModuleType, table: MountTable) -> Saved:
        saved: Saved = []
        home = getattr(module, defined_in, module) if defined_in else module
        for attribute, (kind, position, extra) in plan.items():
            real = getattr(home, attribute, None)
            if real is None:
                continue
            replacement: Any
            if kind in ("class", "class-file"):  # a subclass keeps isinstance() working
                init = (_with_filesystem(table, real.__init__, position + 1, extra)
                        if kind == "class" else
                        _with_stream(table, real.__init__, position + 1, False, keep_open=True))
                replacement = type(real.__name__, (real,), {"__init__": init,
                                                            "__module__": real.__module__})
            elif kind == "writer-class":
                replacement = _writer_class(table, real, extra)
            elif kind == "fs":
                replacement = _with_filesystem(table, real, position, extra)
            elif kind == "opened":  # read later through what the call returns
                replacement = _with_stream(table, real, position, False, keep_open=True)
            elif kind == "io-stream":
                replacement = _with_io_stream(table, real, extra)
            elif kind == "refused":
                replacement = _refused(table, real, position, extra)
            else:
                replacement = _with_stream(table, real, position, extra)
            for owner in dict.fromkeys((home, module)):
                if getattr(owner, attribute, None) is real:
                    saved.append((owner, attribute, real))
                    setattr(owner, attribute, replacement)
        return saved
    return patch


_NOT_MAPPED = ("a mount has no local file to map; read it with pyarrow.input_stream(path), "
               "or map a copy: `with vfs_state.local_copy(path) as real: ...`")

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
        "write_metadata": ("fs", 1, "where"),
        "read_pandas": ("fs", 0, "source"),
    }, defined_in="core"),
    "pyarrow.orc": _patcher({
        "read_table": ("fs", 0, "source"),
        "write_table": ("stream", 1, True),
        "ORCFile": ("class-file", 0, None),
        "ORCWriter": ("writer-class", 0, "where"),
    }),
    "pyarrow.json": _patcher({
        "read_json": ("stream", 0, False),
        "open_json": ("opened", 0, None),
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
    "pyarrow": _patcher({
        "input_stream": ("io-stream", 0, False),
        "output_stream": ("io-stream", 0, True),
        "memory_map": ("refused", 0, _NOT_MAPPED),
        "create_memory_map": ("refused", 0, _NOT_MAPPED),
    }),
    "pyarrow.ipc": _patcher({
        "open_file": ("opened", 0, None),
        "open_stream": ("opened", 0, None),
        "RecordBatchFileWriter": ("writer-class", 0, "sink"),
        "RecordBatchStreamWriter": ("writer-class", 0, "sink"),
    }),
    "pyarrow.csv": _patcher({
        "read_csv": ("stream", 0, False),
        "write_csv": ("stream", 1, True),
        "open_csv": ("opened", 0, None),
        "CSVWriter": ("writer-class", 0, "sink"),
    }),
}
