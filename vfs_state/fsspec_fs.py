"""fsspec filesystem for the ``vfsstate`` protocol (docs/fsspec.md).

``vfsstate://NAME/key`` reaches the sidecar of the mount named ``NAME`` in
``VFS_STATE_MOUNTS``; ``fsspec.filesystem("vfsstate", socket=PATH)`` talks
to one explicit sidecar (then a URL path is the key itself). Files are opened
through ``StateFS``, so reads are lazy and ranged (``RangeReader``), writes
are buffered or streamed per the mount's write mode, and every write is
conditional on the versions this process observed (CAS), as with the shim.
"""
from __future__ import annotations

import datetime
from typing import Any

from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]

from vfs_state._pyfs import errors as fs_errors
from vfs_state._pyfs import to_oserror
from vfs_state.mounts import mounts_from_env
from vfs_state.statefs import StateFS


class VfsStateFileSystem(AbstractFileSystem):
    """An fsspec view of one or more sidecars.

    Args:
        socket: an explicit sidecar socket; paths are then plain keys.
        write_mode: ``"buffered"`` or ``"passthrough"`` for the explicit socket.
    """

    protocol = "vfsstate"
    root_marker = ""

    def __init__(self, socket: str | None = None, write_mode: str = "buffered",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.socket = socket
        self.write_mode = write_mode
        self._fs: dict[str, StateFS] = {}

    # -- routing ---------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("vfsstate://"):
            path = path[len("vfsstate://"):]
        return path.strip("/")

    def _route(self, path: str) -> tuple[StateFS, str, str]:
        """``(statefs, key, name prefix)`` for a stripped path."""
        path = self._strip_protocol(path)
        if self.socket:
            return self._statefs(self.socket, self.write_mode, None), path, ""
        name, _, key = path.partition("/")
        if not name:
            raise ValueError("vfsstate URL needs a mount name: vfsstate://NAME/key")
        mount = next((m for m in mounts_from_env() if m.name == name), None)
        if mount is None:
            raise FileNotFoundError(2, f"no mount named {name!r} in VFS_STATE_MOUNTS", path)
        return self._statefs(mount.socket, mount.write_mode, name), key, name + "/"

    def _statefs(self, socket: str, write_mode: str, name: str | None) -> StateFS:
        fs = self._fs.get(socket)
        if fs is None:
            fs = self._fs[socket] = StateFS(socket, write_mode, name=name)
        return fs

    def _call(self, path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        fs, key, _ = self._route(path)
        try:
            return getattr(fs, method)("/" + key, *args, **kwargs)
        except fs_errors.FSError as exc:
            raise to_oserror(exc, path) from exc

    # -- metadata ----------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        fs, key, prefix = self._route(path)
        base = (prefix + key).strip("/")
        try:
            entries = list(fs.scandir("/" + key, namespaces=["details"]))
        except fs_errors.DirectoryExpected:
            entries = None
        except fs_errors.FSError as exc:
            raise to_oserror(exc, path) from exc
        if entries is None:  # a file: fsspec lists it as itself
            info = self.info(path)
            return [info] if detail else [info["name"]]
        out = [self._entry(f"{base}/{e.name}" if base else e.name, e) for e in entries]
        return out if detail else [o["name"] for o in out]

    @staticmethod
    def _entry(name: str, info: Any) -> dict[str, Any]:
        if info.is_dir:
            return {"name": name, "size": 0, "type": "directory"}
        raw = info.raw
        return {"name": name, "size": raw.get("details", {}).get("size", 0), "type": "file",
                "version": raw.get("vfs", {}).get("version"),
                "mtime": raw.get("details", {}).get("modified")}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        fs, key, prefix = self._route(path)
        name = (prefix + key).strip("/")
        if not key:
            return {"name": name, "size": 0, "type": "directory"}
        try:
            return self._entry(name, fs.getinfo("/" + key, namespaces=["details"]))
        except fs_errors.FSError as exc:
            raise to_oserror(exc, path) from exc

    def modified(self, path: str) -> datetime.datetime:
        """The object's last-modified time (duckdb asks before reading)."""
        info = self.info(path)
        if info["type"] != "file" or info.get("mtime") is None:
            raise IsADirectoryError(21, "no modification time for a directory", path)
        return datetime.datetime.fromtimestamp(info["mtime"], tz=datetime.UTC)

    # -- changes ---------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        if create_parents:
            self.makedirs(path, exist_ok=True)
        else:
            self._call(path, "makedir")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        fs, key, _ = self._route(path)
        if not key:
            return
        try:
            fs.makedirs("/" + key, recreate=exist_ok)
        except fs_errors.FSError as exc:
            raise to_oserror(exc, path) from exc

    def rmdir(self, path: str) -> None:
        self._call(path, "removedir")

    def _rm(self, path: str) -> None:
        if self.isdir(path):
            try:
                self._call(path, "removedir")
            except FileNotFoundError:
                pass  # a virtual directory vanishes with its last key
        else:
            self._call(path, "remove")

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Deepest first, like fsspec's; a path gone by its turn is not an error.

        On a store without directory markers (S3, Redis) a directory exists
        only while keys lie under it: deleting its last key removes it, so
        the listing taken at the start names a directory that is no longer
        there when its turn comes.
        """
        for item in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            try:
                self._rm(item)
            except FileNotFoundError:
                continue
        self.invalidate_cache()

    def rm_file(self, path: str) -> None:
        """fsspec's ``rm`` calls this for directories too (deepest first)."""
        self._rm(path)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy one file by streaming it; a directory source makes the directory."""
        if self.isdir(path1):
            self.makedirs(path2, exist_ok=True)
            return
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None,
              autocommit: bool = True, cache_options: Any = None, **kwargs: Any) -> Any:
        fs, key, _ = self._route(path)
        if not key:
            raise IsADirectoryError(21, "Is a directory", path)
        try:
            if "r" in mode:
                return fs.openbin("/" + key, "rb")
            return fs.openbin("/" + key, mode.replace("t", ""), create_parents=True)
        except fs_errors.FSError as exc:
            raise to_oserror(exc, path) from exc
