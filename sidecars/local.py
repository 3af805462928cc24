"""Local-directory backend (``local-buffered-lww``, ``local-buffered-cas``).

Keys map to files under ``STATE_ROOT``, so the state stays browsable with
ordinary tools. Every lookup is relative to a directory descriptor and
follows no symbolic link (``sidecars.local_paths``), so no race can lead a
request out of the root. Writes stream into a locked temp file beside the
target and are renamed into place (readers never see half a file); the CAS
check and the rename run under an ``flock`` on ``STATE_ROOT/.vfs-state.lock``
(``sidecars.local_tmp``), so the check holds across threads and gunicorn
workers. Versions are unique tokens stored with each file
(``sidecars.local_files``); listings page from a per-worker snapshot
(``sidecars.local_listing``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from flask import Flask

from sidecars import settings
from sidecars.app import app_from_env
from sidecars.backend import Backend, ListPage, NamePage, ObjectBody, ObjectInfo, served_length
from sidecars.errors import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
)
from sidecars.local_files import Versions, check_servable, open_regular
from sidecars.local_listing import Listings
from sidecars.local_paths import FileInPath, PathMissing, Root, is_link, os_error, segments
from sidecars.local_tmp import TempFiles
from sidecars.streams import Readable, iter_stream

CHUNK = 1 << 20


class LocalBackend(Backend):
    """Objects as files under one root directory."""

    def __init__(self, root: str, fsync: bool = False) -> None:
        self.root = Root(root)
        self.fsync = fsync
        self.versions = Versions()
        self.temps = TempFiles(self.root)
        self.listings = Listings(self.root)

    # -- helpers ------------------------------------------------------------

    def _current(self, dir_fd: int, name: str) -> str | None:
        """Version of the file ``name`` in ``dir_fd``; None when absent or not a file."""
        opened = open_regular(dir_fd, name)
        if opened is None:
            return None
        fd, st = opened
        try:
            return self.versions.version(fd, st)
        finally:
            os.close(fd)

    @staticmethod
    def _check(current: str | None, if_match: str | None, if_none_match: bool) -> None:
        if if_none_match and current is not None:
            raise PreconditionFailed("key exists (If-None-Match: *)")
        if if_match is not None and current != if_match:
            raise PreconditionFailed("stored version differs from If-Match")

    def _open_served(self, key: str) -> tuple[int, os.stat_result] | None:
        """``(fd, fstat)`` of the file at ``key`` that may be served; None if absent."""
        parts = segments(key)
        try:
            parent = self.root.open_dir(parts[:-1])
        except (PathMissing, FileInPath):
            return None
        try:
            opened = open_regular(parent, parts[-1])
        finally:
            os.close(parent)
        if opened is not None:
            try:
                check_servable(opened[1])
            except BaseException:
                os.close(opened[0])
                raise
        return opened

    # -- Backend ------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        opened = self._open_served(key)
        if opened is None:
            return None
        fd, st = opened
        try:
            return self.versions.info(fd, st)
        finally:
            os.close(fd)

    refuses_dir_clash = True  # the write finds the directory in its place itself
    exact_mtime = True  # the file's st_mtime on every path

    def is_dir(self, key: str) -> bool:
        try:
            os.close(self.root.open_dir(segments(key)))
        except (PathMissing, FileInPath):
            return False
        return True

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        opened = self._open_served(key)
        if opened is None:
            raise NotFound(f"no such key: {key}")
        fd, st = opened
        handle = open(fd, "rb", closefd=True)  # noqa: SIM115 - closed by the response
        try:
            info = self.versions.info(fd, st)  # the version of the bytes we serve
            length = served_length(info, start, length, if_match)
            handle.seek(start)
        except BaseException:
            handle.close()
            raise
        return ObjectBody(info, start, length, _read_exactly(handle, length), handle.close)

    def write(self, key: str, body: Readable, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        parts = segments(key)
        if key.endswith("/"):
            return self._make_marker(parts)
        try:
            parent = self.root.open_dir(parts[:-1], create=True)
        except FileInPath:
            raise Conflict(f"a parent of {key!r} is a file") from None
        try:
            return self._write_in(parent, parts[-1], key, body, if_match, if_none_match)
        finally:
            os.close(parent)

    def _write_in(self, parent: int, name: str, key: str, body: Readable,
                  if_match: str | None, if_none_match: bool) -> ObjectInfo:
        try:
            fd, tmp, ticket = self.temps.create(parent)
        except OSError as exc:
            raise os_error(exc, "cannot create a temp file") from None
        renamed = False
        try:
            with open(fd, "wb", closefd=False) as out:
                for chunk in iter_stream(body, CHUNK):
                    out.write(chunk)
            if self.fsync:
                os.fsync(fd)
            self.versions.stamp(fd)
            info = self.versions.info(fd, os.fstat(fd))
            with self.temps.lock(fcntl.LOCK_EX):
                self._check_target(parent, name, key)
                self._check(self._current(parent, name), if_match, if_none_match)
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                renamed = True
            return info
        except OSError as exc:
            raise os_error(exc, "cannot write the key") from None
        finally:
            os.close(fd)
            self.temps.done(ticket, parent, tmp, renamed)

    @staticmethod
    def _check_target(parent: int, name: str, key: str) -> None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise Conflict(f"{key!r} is a directory", code="is_a_directory")
        if stat.S_ISLNK(st.st_mode):
            raise Forbidden(f"key {key!r} is a symbolic link; links are not followed",
                            code="symlink")

    def _make_marker(self, parts: list[str]) -> ObjectInfo:
        try:
            fd = self.root.open_dir(parts, create=True)
        except FileInPath:
            raise Conflict(f"{'/'.join(parts)!r} or a parent is a file") from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return ObjectInfo(size=0, version=f"d{st.st_ino:x}-{st.st_mtime_ns:x}")

    def delete(self, key: str, if_match: str | None = None) -> None:
        parts = segments(key)
        try:
            parent = self.root.open_dir(parts[:-1])
        except (PathMissing, FileInPath):
            raise NotFound(f"no such key: {key}") from None
        try:
            if is_link(parent, parts[-1]):
                raise Forbidden(f"key {key!r} is a symbolic link; links are not followed",
                                code="symlink")
            if key.endswith("/"):
                self._remove_dir(parent, parts[-1], key)
            else:
                self._remove_file(parent, parts[-1], key, if_match)
        finally:
            os.close(parent)

    @staticmethod
    def _remove_dir(parent: int, name: str, key: str) -> None:
        try:
            os.rmdir(name, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such directory marker: {key}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise Conflict(f"directory {key!r} is not empty",
                               code="directory_not_empty") from None
            raise os_error(exc, "cannot remove the directory") from None

    def _remove_file(self, parent: int, name: str, key: str, if_match: str | None) -> None:
        with self.temps.lock(fcntl.LOCK_EX):
            current = self._current(parent, name)
            if current is None:
                raise NotFound(f"no such key: {key}")
            self._check(current, if_match, False)
            try:
                os.unlink(name, dir_fd=parent)
            except OSError as exc:
                raise os_error(exc, "cannot delete the key") from None

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        directory, _, name_start = prefix.rpartition("/")
        base = directory + "/" if directory else ""
        if base:
            segments(base)  # overlong segments: 400
        return self.listings.page(base, name_start, delimiter is None, start_after, max_keys)

    def list_names(self, prefix: str, start_after: str | None, max_keys: int,
                   details: bool = False) -> NamePage:
        """Slices of the directory's snapshot; with details, the stats as ``list_details``."""
        if details:
            return super().list_names(prefix, start_after, max_keys, details)
        directory, _, name_start = prefix.rpartition("/")
        base = directory + "/" if directory else ""
        if base:
            segments(base)  # overlong segments: 400
        return self.listings.names(base, name_start, start_after, max_keys)

    def list_details(self, prefix: str, delimiter: str | None, start_after: str | None,
                     max_keys: int) -> ListPage:
        """The page, then each file's info read relative to its directory's descriptor.

        Not cached with the listing snapshot: another tool may rewrite a file
        in place without touching its directory.
        """
        page = self.list_page(prefix, delimiter, start_after, max_keys)
        by_dir: dict[str, list[str]] = {}
        for key in page.keys:
            if not key.endswith("/"):
                directory, _, name = key.rpartition("/")
                by_dir.setdefault(directory, []).append(name)
        for directory, names in by_dir.items():
            try:
                fd = self.root.open_dir(tuple(directory.split("/")) if directory else ())
            except (PathMissing, FileInPath):
                continue
            try:
                for name in names:
                    info = self._info_in(fd, name)
                    if info is not None:
                        page.infos[f"{directory}/{name}" if directory else name] = info
            finally:
                os.close(fd)
        return page

    def _info_in(self, dir_fd: int, name: str) -> ObjectInfo | None:
        opened = open_regular(dir_fd, name)
        if opened is None:
            return None
        fd, st = opened
        try:
            return None if st.st_nlink > 1 else self.versions.info(fd, st)  # not served
        finally:
            os.close(fd)

    def get_attrs(self, key: str) -> dict[str, str]:
        info = self.stat(key)
        if info is None:
            raise NotFound(f"no such key: {key}")
        return {"version": info.version, "size": str(info.size),
                "mtime": repr(info.modified)}

    def ping(self) -> None:
        if not os.access(".", os.W_OK, dir_fd=self.root.fd):
            raise BackendUnavailable("STATE_ROOT is not writable")

    def close(self) -> None:
        self.root.close()


def _read_exactly(handle: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'sidecars.local:create_app()'``.

    Each worker sweeps stale temp files (left by killed workers) in the
    background as it starts; live writes of other workers are left alone.
    """
    local = settings.local()
    backend = LocalBackend(local.root, fsync=local.fsync)
    backend.temps.sweep_in_background()
    return app_from_env(backend, consistency, "vfs-state-local")
