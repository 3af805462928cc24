"""Local-directory backend (``local-buffered-lww``, ``local-buffered-cas``).

Keys map to files under ``STATE_ROOT``, so the state stays browsable with
ordinary tools. Writes go to a temp file in the target directory and are
renamed into place (readers never see half a file). The CAS check and the
rename happen under an ``flock`` on ``STATE_ROOT/.vfs-state.lock``, opened
afresh per operation, so the check holds across threads and gunicorn worker
processes. A version is ``mtime_ns-inode-size``: a rename always brings a new
inode (the temp file exists beside the old one), so every write changes it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from flask import Flask

from sidecars import config
from sidecars.app import build_app
from sidecars.backend import Backend, ListPage, ObjectBody, ObjectInfo, iter_stream, page_of
from sidecars.errors import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
)
from sidecars.keys import RESERVED_PREFIX

CHUNK = 1 << 20


def _version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_ino:x}-{st.st_size:x}"


def _info(st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(size=st.st_size, version=_version(st), modified=st.st_mtime)


class LocalBackend(Backend):
    """Objects as files under one root directory."""

    def __init__(self, root: str, fsync: bool = False) -> None:
        os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)
        self.fsync = fsync
        self._lock_path = os.path.join(self.root, RESERVED_PREFIX + ".lock")

    # -- paths --------------------------------------------------------------

    def _path(self, key: str) -> str:
        """Filesystem path of ``key``, refusing anything that leaves the root."""
        path = os.path.join(self.root, *key.rstrip("/").split("/"))
        parent = os.path.realpath(os.path.dirname(path))
        if parent != self.root and not parent.startswith(self.root + os.sep):
            raise Forbidden(f"key {key!r} resolves outside STATE_ROOT")
        if os.path.islink(path):
            raise Forbidden(f"key {key!r} is a symbolic link; links are not followed")
        return path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the description releases the flock

    @staticmethod
    def _check(current: os.stat_result | None, if_match: str | None,
               if_none_match: bool) -> None:
        if if_none_match and current is not None:
            raise PreconditionFailed("key exists (If-None-Match: *)")
        if if_match is not None and (current is None or _version(current) != if_match):
            raise PreconditionFailed("stored version differs from If-Match")

    @staticmethod
    def _stat_file(path: str) -> os.stat_result | None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    # -- Backend ------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        st = self._stat_file(self._path(key))
        return None if st is None else _info(st)

    def is_dir(self, key: str) -> bool:
        return os.path.isdir(self._path(key))

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        path = self._path(key)
        try:
            handle = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"no such key: {key}") from None
        try:
            st = os.fstat(handle.fileno())  # the version of the bytes we serve
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"no such key: {key}")
            if if_match is not None and _version(st) != if_match:
                raise PreconditionFailed("object changed since it was observed")
            if start and start >= st.st_size:
                raise RangeNotSatisfiable(st.st_size)
            available = st.st_size - start
            length = available if length is None else min(length, available)
            handle.seek(start)
        except BaseException:
            handle.close()
            raise
        return ObjectBody(_info(st), start, length, _read_exactly(handle, length), handle.close)

    def write(self, key: str, body: BinaryIO, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        path = self._path(key)
        if key.endswith("/"):
            return self._make_marker(key, path)
        parent = os.path.dirname(path)
        self._makedirs(parent, key)
        tmp = os.path.join(parent, f"{RESERVED_PREFIX}-tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as out:
                for chunk in iter_stream(body, CHUNK):
                    out.write(chunk)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            with self._locked():
                if os.path.isdir(path):
                    raise Conflict(f"{key!r} is a directory")
                self._check(self._stat_file(path), if_match, if_none_match)
                os.replace(tmp, path)
                return _info(os.stat(path))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _makedirs(self, directory: str, key: str) -> None:
        try:
            os.makedirs(directory, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"a parent of {key!r} is a file") from None

    def _make_marker(self, key: str, path: str) -> ObjectInfo:
        if os.path.isfile(path):
            raise Conflict(f"{key.rstrip('/')!r} is a file")
        self._makedirs(path, key)
        return ObjectInfo(size=0, version=_version(os.stat(path)))

    def delete(self, key: str, if_match: str | None = None) -> None:
        path = self._path(key)
        if key.endswith("/"):
            try:
                os.rmdir(path)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"no such directory marker: {key}") from None
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise Conflict(f"directory {key!r} is not empty",
                                   code="directory_not_empty") from None
                raise
            return
        with self._locked():
            current = self._stat_file(path)
            if current is None:
                raise NotFound(f"no such key: {key}")
            self._check(current, if_match, False)
            os.unlink(path)

    def list(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        directory, _, name_start = prefix.rpartition("/")
        base = directory + "/" if directory else ""
        items = self._entries(base, name_start, recursive=delimiter is None)
        return page_of(items, start_after, max_keys)

    def _entries(self, base: str, name_start: str, recursive: bool) -> list[tuple[str, bool]]:
        """Sorted ``(key, is_prefix)`` under ``base`` whose names start ``name_start``."""
        try:
            path = self._path(base) if base else self.root
            scanned = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        items: list[tuple[str, bool]] = []
        for entry in scanned:  # hot for big directories: one type check per file
            name = entry.name
            if name.startswith(RESERVED_PREFIX) or (name_start and not name.startswith(name_start)):
                continue
            if entry.is_file(follow_symlinks=False):
                items.append((base + name, False))
            elif entry.is_dir(follow_symlinks=False):  # symlinks are neither: skipped
                items.append((base + name + "/", not recursive))
                if recursive:
                    items.extend(self._entries(base + name + "/", "", True))
        items.sort()
        return items

    def get_attrs(self, key: str) -> dict[str, str]:
        st = self._stat_file(self._path(key))
        if st is None:
            raise NotFound(f"no such key: {key}")
        return {"version": _version(st), "size": str(st.st_size),
                "mtime": repr(st.st_mtime), "path": self._path(key)}

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise BackendUnavailable(f"STATE_ROOT {self.root} is not writable")


def _read_exactly(handle: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'sidecars.local:create_app()'``."""
    root = config.require("STATE_ROOT")
    backend = LocalBackend(root, fsync=config.flag("STATE_FSYNC"))
    return build_app(backend, consistency=config.consistency(consistency),
                     prefix=config.optional("STATE_PREFIX", ""), name="vfs-state-local")
