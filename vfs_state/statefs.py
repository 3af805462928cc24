"""``StateFS``: a pyfilesystem2 filesystem backed by one sidecar.

Implements the seven essential ``fs.base.FS`` methods (plus ``scandir``,
which the listing answers in one round trip). Directories are virtual: a
directory exists when a marker ``dir/`` or any key lies under it. Used
directly, ``StateFS`` keeps the pyfilesystem2 contract (writing under a
missing parent raises ``ResourceNotFound``); the shim opens with
``create_parents=True`` for flat-store semantics and no extra round trip.
"""
from __future__ import annotations

import io
import itertools
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

from vfs_state._pyfs import (
    FS,
    Info,
    Mode,
    ResourceType,
    SubFS,
    basename,
    dirname,
    errors,
    to_fs_error,
    validate_open_mode,
)
from vfs_state.client import SidecarClient, Stat
from vfs_state.reader import MIN_BLOCK, RangeReader
from vfs_state.versions import precondition_headers
from vfs_state.writers import ChunkedUpload, SpooledFile

WRITE_MODES = ("buffered", "passthrough")
PASSTHROUGH_BUFFER = 256 * 1024


class StateFS(FS):
    """A filesystem whose files live behind the sidecar at ``socket_path``.

    Args:
        socket_path: the sidecar's Unix socket.
        write_mode: ``"buffered"`` (spool, one PUT on close; seekable) or
            ``"passthrough"`` (chunked PUT streamed as you write; not seekable).
        name: the mount name, used in error messages.
        timeout: socket timeout in seconds for each exchange with the sidecar.
    """

    def __init__(self, socket_path: str, write_mode: str = "buffered", *,
                 name: str | None = None, timeout: float = 60.0) -> None:
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode must be one of {WRITE_MODES}, not {write_mode!r}")
        super().__init__()
        self.socket_path = socket_path
        self.write_mode = write_mode
        self.client = SidecarClient(socket_path, timeout=timeout, name=name)
        self._meta = {
            "case_insensitive": False,
            "invalid_path_chars": "\0",
            "max_path_length": 1024,
            "max_sys_path_length": None,
            "network": True,
            "read_only": False,
            "supports_rename": False,
            "thread_safe": True,
            "unicode_paths": True,
            "virtual": False,
        }

    def __repr__(self) -> str:
        return f"StateFS({self.socket_path!r}, write_mode={self.write_mode!r})"

    # -- helpers ---------------------------------------------------------------

    def _key(self, path: str) -> str:
        return self.validatepath(path).strip("/")

    @contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """Client ``OSError``s on ``path`` as ``fs`` errors (CAS and outages stay)."""
        try:
            yield
        except OSError as exc:
            converted = to_fs_error(exc, path)
            if converted is None:
                raise
            raise converted from exc

    @staticmethod
    def _info(name: str, stat: Stat) -> Info:
        kind = ResourceType.file if stat.is_file else ResourceType.directory
        return Info({
            "basic": {"name": name, "is_dir": not stat.is_file},
            "details": {"type": int(kind), "size": stat.size, "modified": stat.modified,
                        "accessed": None, "created": None, "metadata_changed": None},
            "vfs": {"version": stat.version, "content_type": stat.content_type},
        })

    def _stat_quietly(self, key: str) -> Stat | None:
        """A HEAD the library makes for itself: not recorded as an observation."""
        if not key:
            return Stat(is_file=False)
        return self.client.stat(key, observe=False)

    def _require_dir(self, key: str, path: str) -> None:
        stat = self._stat_quietly(key)
        if stat is None:
            raise errors.ResourceNotFound(path)
        if stat.is_file:
            raise errors.DirectoryExpected(path)

    # -- essential methods -------------------------------------------------------

    def getinfo(self, path: str, namespaces: Collection[str] | None = None) -> Info:
        key = self._key(path)
        if not key:
            return self._info("", Stat(is_file=False))
        with self._errors(path):
            stat = self.client.stat(key)
        if stat is None:
            raise errors.ResourceNotFound(path)
        return self._info(basename(key), stat)

    def listdir(self, path: str) -> list[str]:
        """Names straight from the listing: no ``Info`` object per entry."""
        return [name for name, _ in self._listing(self._key(path), path)]

    def scandir(self, path: str, namespaces: Collection[str] | None = None,
                page: tuple[int, int] | None = None) -> Iterator[Info]:
        """One listing request; with ``details`` its sizes, times and versions too."""
        key = self._key(path)
        details = bool(namespaces and "details" in namespaces)
        stats: dict[str, Stat] = {}
        entries = self._listing(key, path, stats if details else None)
        iterator = (self._entry_info(key, name, is_dir, details, stats.get(name))
                    for name, is_dir in entries)
        if page is not None:
            iterator = itertools.islice(iterator, page[0], page[1])
        return iterator

    def _listing(self, key: str, path: str,
                 stats: dict[str, Stat] | None = None) -> list[tuple[str, bool]]:
        """Sorted ``(name, is_dir)`` of a directory; an empty one must exist.

        ``stats``, when given, receives each file's ``Stat`` from the listing.
        """
        with self._errors(path):
            entries = self._entries(key, stats)
            if not entries:
                self._require_dir(key, path)
        return entries

    def _entries(self, key: str, stats: dict[str, Stat] | None = None) -> list[tuple[str, bool]]:
        prefix = key + "/" if key else ""
        entries: dict[str, bool] = {}
        for keys, prefixes, listed in self.client.list_details(prefix, details=stats is not None):
            for child in keys:
                name = child[len(prefix):]
                if name and "/" not in name:
                    entries.setdefault(name, False)
                    if stats is not None and child in listed:
                        stats[name] = listed[child]
            for child in prefixes:
                name = child[len(prefix):].rstrip("/")
                if name:
                    entries[name] = True
        return sorted(entries.items())

    def _entry_info(self, key: str, name: str, is_dir: bool, details: bool,
                    stat: Stat | None) -> Info:
        if details and not is_dir:
            if stat is None:  # a sidecar that lists no details: one HEAD
                child = f"{key}/{name}" if key else name
                stat = self.client.stat(child, observe=False)
            if stat is not None:
                return self._info(name, stat)
        return Info({"basic": {"name": name, "is_dir": is_dir}})

    def makedir(self, path: str, permissions: Any = None, recreate: bool = False) -> SubFS[FS]:
        key = self._key(path)
        with self._errors(path):
            if not key:
                if recreate:
                    return self.opendir(path)
                raise errors.DirectoryExists(path)
            stat = self._stat_quietly(key)
            if stat is not None:
                if recreate and not stat.is_file:
                    return self.opendir(path)
                raise errors.DirectoryExists(path)
            self._require_dir(dirname(key), dirname(path) or "/")
            self.client.make_marker(key)
        return self.opendir(path)

    def open(self, path: str, mode: str = "r", buffering: int = -1,  # type: ignore[override]
             encoding: str | None = None, errors: str | None = None, newline: str = "",
             **options: Any) -> IO[Any]:
        """As ``fs``'s ``open`` but with no ``RawWrapper`` layer in the ``io`` stack,
        so a file left to the garbage collector reports a failed commit (writers.py)."""
        validate_open_mode(mode)
        binary = self.openbin(path, mode.replace("t", ""), buffering, **options)
        if "b" in mode:
            return binary
        return io.TextIOWrapper(binary, encoding or "utf-8", errors, newline,  # type: ignore[arg-type]
                                line_buffering=buffering == 1)

    def openbin(self, path: str, mode: str = "r", buffering: int = -1,
                **options: Any) -> BinaryIO:
        """Open a binary file; ``create_parents=True`` skips the parent check."""
        parsed = Mode(mode)
        parsed.validate_bin()
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        with self._errors(path):
            if parsed.create:
                raw = self._open_writer(key, path, parsed, options.get("create_parents", False))
            elif parsed.writing:  # r+
                raw = self._open_update(key, path, parsed)
            else:
                raw = self._open_reader(key, path)
        return _buffer(raw, buffering)  # type: ignore[return-value]

    def _missing(self, key: str, path: str) -> errors.FSError:
        stat = self._stat_quietly(key)
        if stat is not None and not stat.is_file:
            return errors.FileExpected(path)
        return errors.ResourceNotFound(path)

    def _open_reader(self, key: str, path: str) -> RangeReader:
        try:
            stat, head = self.client.read_head(key, MIN_BLOCK)
        except FileNotFoundError:
            raise self._missing(key, path) from None
        return RangeReader(self.client, key, stat, head, name=path)

    def _read_quietly(self, key: str, path: str) -> tuple[Stat, RangeReader] | None:
        """Current content for append/update, without recording an observation."""
        try:
            stat, head = self.client.read_head(key, MIN_BLOCK, observe=False)
        except FileNotFoundError:
            return None
        return stat, RangeReader(self.client, key, stat, head, name=path)

    def _open_update(self, key: str, path: str, mode: Mode) -> SpooledFile:
        current = self._read_quietly(key, path)
        if current is None:
            raise self._missing(key, path)
        stat, reader = current
        with reader:
            return SpooledFile(self._committer(key, precondition_headers(stat.version)),
                               name=path, mode=mode.to_platform_bin(), readable=True,
                               initial=reader, dirty=False)

    def _open_writer(self, key: str, path: str, mode: Mode, create_parents: bool) -> io.RawIOBase:
        if not create_parents:
            stat = self._stat_quietly(key)
            if stat is not None and not stat.is_file:
                raise errors.FileExpected(path)
            if stat is not None and mode.exclusive:
                raise errors.FileExists(path)
            if stat is None:
                self._require_dir(dirname(key), dirname(path) or "/")
        elif mode.exclusive and self._stat_quietly(key) is not None:
            raise errors.FileExists(path)
        platform_mode = mode.to_platform_bin()
        if mode.appending:
            current = self._read_quietly(key, path)
            conditions = precondition_headers(None if current is None else current[0].version)
            reader = None if current is None else current[1]
            try:
                return SpooledFile(self._committer(key, conditions), name=path,
                                   mode=platform_mode, readable=mode.reading, append=True,
                                   initial=reader)
            finally:
                if reader is not None:
                    reader.close()
        conditions = {"If-None-Match": "*"} if mode.exclusive else None
        if self.write_mode == "passthrough" and not mode.reading:
            return ChunkedUpload(self.client, key,
                                 conditions or self.client.preconditions(key),
                                 name=path, mode=platform_mode)
        return SpooledFile(self._committer(key, conditions), name=path, mode=platform_mode,
                           readable=mode.reading)

    def _committer(self, key: str, conditions: Mapping[str, str] | None):  # noqa: ANN202
        """``close()`` action: PUT the spool, conditional on ``conditions``.

        ``None`` means "whatever the caller has observed by the time of close".
        """
        def commit(spool: BinaryIO, size: int) -> None:
            self.client.write(key, spool, size, None if conditions is None else dict(conditions))
        return commit

    def remove(self, path: str) -> None:
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        with self._errors(path):
            try:
                self.client.delete(key)
            except FileNotFoundError:
                raise self._missing(key, path) from None

    def removedir(self, path: str) -> None:
        key = self._key(path)
        if not key:
            raise errors.RemoveRootError(path)
        with self._errors(path):
            if self._entries_exist(key):
                raise errors.DirectoryNotEmpty(path)
            try:
                removed = self.client.remove_marker(key)
            except OSError as exc:
                if exc.errno == 39:  # ENOTEMPTY from a backend with real directories
                    raise errors.DirectoryNotEmpty(path) from None
                raise
            if not removed:
                self._require_dir(key, path)

    def _entries_exist(self, key: str) -> bool:
        for keys, prefixes in self.client.list(key + "/", page_size=2):
            if any(k != key + "/" for k in keys) or prefixes:
                return True
        return False

    def setinfo(self, path: str, info: Mapping[str, Mapping[str, object]]) -> None:
        """Times and permissions are not stored by the backends: check existence only."""
        self.getinfo(path)

    # -- overrides where round trips matter ----------------------------------------

    def exists(self, path: str) -> bool:
        key = self._key(path)
        if not key:
            return True
        with self._errors(path):
            return self.client.stat(key) is not None

    def close(self) -> None:
        if not self.isclosed():
            self.client.close()
        super().close()


def _buffer(raw: io.RawIOBase, buffering: int) -> io.IOBase:
    """The usual ``io`` stack on top of a raw file, as ``open()`` builds it."""
    if buffering == 0:
        return raw
    size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
    if isinstance(raw, ChunkedUpload):
        return io.BufferedWriter(raw, max(size, PASSTHROUGH_BUFFER))
    if raw.readable() and raw.writable():
        return io.BufferedRandom(raw, size)
    if raw.writable():
        return io.BufferedWriter(raw, size)
    return io.BufferedReader(raw, size)
