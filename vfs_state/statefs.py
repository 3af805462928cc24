"""``StateFS``: a pyfilesystem2 filesystem backed by one sidecar.

Implements the seven essential ``fs.base.FS`` methods (plus ``scandir``,
which the listing answers in one round trip), and the methods where the
store's rules differ from pyfilesystem2's generic ones: ``move``,
``movedir`` and ``copy`` are compare-and-set safe (``statefs_moves``),
``upload`` is one PUT with the caller's preconditions, and the ``vfs`` info
namespace carries versions and backend attributes (xattrs). The shim reaches
storage only through these methods, so direct users get the same semantics
(docs/architecture.md, "StateFS used directly").

Directories are virtual: a directory exists when a marker ``dir/`` or any
key lies under it. Used directly, ``StateFS`` keeps the pyfilesystem2
contract (writing under a missing parent raises ``ResourceNotFound``); the
shim passes ``create_parents=True`` for flat-store semantics and no extra
round trip.
"""
from __future__ import annotations

import errno
import io
import itertools
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

from vfs_state import statefs_moves as moves
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
from vfs_state._types import FileContext, Readable
from vfs_state.client import SidecarClient, Stat
from vfs_state.errors import PathConflict
from vfs_state.protocol import WRITE_MODES
from vfs_state.reader import MIN_BLOCK, RangeReader, whole_file
from vfs_state.versions import current_store, precondition_headers
from vfs_state.writers import SPILL_SIZE, ChunkedUpload, Commit, Explain, SpooledFile

PASSTHROUGH_BUFFER = 256 * 1024
#: "not given": a write is conditional on what the caller observed (the CAS rule)
OBSERVED: Any = object()


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
                 name: str | None = None, timeout: float = 60.0,
                 lazy_open: bool = False) -> None:
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode must be one of {WRITE_MODES}, not {write_mode!r}")
        super().__init__()
        self.socket_path = socket_path
        self.write_mode = write_mode
        #: opening for reading sends nothing; a missing file raises at the first read
        self.lazy_open = lazy_open
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
        """The key of ``path``: what ``validatepath`` gives, without the leading ``/``.

        An absolute path with nothing to normalise (no ``//``, ``.`` or ``..``
        component, no NUL) is its own normal form: answered without the
        generic checks, which cost more than the rest of a small read.
        """
        if (type(path) is str and path[:1] == "/" and "//" not in path and "/." not in path
                and "\0" not in path and not self._closed):
            return path.strip("/")
        return self.validatepath(path).strip("/")

    @contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """Client ``OSError``s on ``path`` as ``fs`` errors (CAS and outages stay)."""
        try:
            yield
        except OSError as exc:
            raise _fs_error(exc, path)  # noqa: B904 - chained (or re-raised) by _fs_error

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
        """``basic``, ``details`` and ``vfs`` (version, content type) from one HEAD.

        Asking for the ``vfs`` namespace adds ``attributes``: the backend's
        attributes of a file (``{}`` for a directory), one more request.
        Recorded as an observation of ``path`` (for CAS).
        """
        info = self._lookup(path, namespaces, observe=True)
        if info is None:
            raise errors.ResourceNotFound(path)
        return info

    def probe(self, path: str, namespaces: Collection[str] | None = None) -> Info | None:
        """``getinfo`` for a check the caller makes for itself; None when absent.

        Not recorded as an observation, so it never refreshes the version a
        later write is conditional on (docs/consistency.md).
        """
        return self._lookup(path, namespaces, observe=False)

    def _lookup(self, path: str, namespaces: Collection[str] | None,
                observe: bool) -> Info | None:
        key = self._key(path)
        try:
            stat = self.client.stat(key, observe=observe) if key else Stat(is_file=False)
            if stat is None:
                return None
            info = self._info(basename(key), stat)
            if not namespaces or "vfs" not in namespaces:
                return info
            attributes = self._attributes(key) if stat.is_file else {}
        except OSError as exc:  # as ``_errors``, inline: every stat passes here
            raise _fs_error(exc, path)  # noqa: B904 - chained (or re-raised) by _fs_error
        return Info({**info.raw, "vfs": {**info.raw["vfs"], "attributes": attributes}})

    def _attributes(self, key: str) -> dict[str, str]:
        try:
            return self.client.get_attrs(key)
        except FileNotFoundError:  # removed since the HEAD, or a directory
            return {}

    def listdir(self, path: str) -> list[str]:
        """Names straight from the listing: no ``Info`` object per entry."""
        return self._listing(self._key(path), path)[0]

    def scandir(self, path: str, namespaces: Collection[str] | None = None,
                page: tuple[int, int] | None = None) -> Iterator[Info]:
        """One listing request; with ``details`` its sizes, times and versions too."""
        key = self._key(path)
        details = bool(namespaces and "details" in namespaces)
        stats: dict[str, Stat] = {}
        names, dirs = self._listing(key, path, stats if details else None)
        iterator: Iterator[Info] = (
            self._entry_info(key, name, name in dirs, details, stats.get(name))
            for name in names)
        if page is not None:
            iterator = itertools.islice(iterator, page[0], page[1])
        return iterator

    def _listing(self, key: str, path: str,
                 stats: dict[str, Stat] | None = None) -> tuple[list[str], set[str]]:
        """Sorted names of a directory and which are directories; an empty one must exist.

        ``stats``, when given, receives each file's ``Stat`` from the listing.
        """
        with self._errors(path):
            names, dirs = self._entries(key, stats)
            if not names:
                self._require_dir(key, path)
        return names, dirs

    def _entries(self, key: str, stats: dict[str, Stat] | None = None
                 ) -> tuple[list[str], set[str]]:
        """The listing's names as they come (already sorted: re-sorting costs one pass)."""
        files: list[str] = []
        dirs: list[str] = []
        for page_files, page_dirs, listed in self.client.list_names(
                key + "/" if key else "", details=stats is not None):
            files += page_files
            dirs += page_dirs
            if stats is not None:
                stats.update(listed)
        if not dirs:
            files.sort()
            return files, set()
        subdirs = set(dirs)  # a name both file and directory (S3) is a directory
        return sorted(subdirs.union(files)), subdirs

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
        """Open a binary file.

        Options: ``create_parents=True`` skips the parent check (flat-store
        semantics); ``context``, a ``FileContext``, sets the name and mode
        the file reports and the mount its errors name (default: ``path``,
        the platform mode, this sidecar).
        """
        parsed = _BIN_MODES.get(mode) if type(mode) is str else None
        if parsed is None:
            parsed = _bin_mode(mode)
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        context = options.get("context") or FileContext(path, parsed.platform,
                                                        self.client.where)
        return self._open(key, path, parsed, buffering, context,
                          options.get("create_parents", False))

    def open_key(self, key: str, mode: str, buffering: int, context: FileContext) -> BinaryIO:
        """``openbin("/" + key, mode, buffering, create_parents=True, context=context)``
        for a caller that has already normalised ``key`` (the shim's router): the
        same file and errors, without checking the path again.
        """
        parsed = _BIN_MODES.get(mode)
        if parsed is None:
            parsed = _bin_mode(mode)
        if not key or self._closed:  # the root, or what validatepath refuses
            return self.openbin("/" + key, mode, buffering, create_parents=True,
                                context=context)
        return self._open(key, "/" + key, parsed, buffering, context, True)

    def _open(self, key: str, path: str, parsed: _BinMode, buffering: int,
              context: FileContext, create_parents: bool) -> BinaryIO:
        try:
            if parsed.create:
                raw = self._open_writer(key, path, parsed, context, create_parents)
            elif parsed.writing:  # r+
                raw = self._open_update(key, path, context)
            else:
                return self._open_reader(key, path, context, buffering)  # type: ignore[return-value]
        except OSError as exc:
            raise _fs_error(exc, path)  # noqa: B904 - chained (or re-raised) by _fs_error
        return _buffer(raw, buffering)  # type: ignore[return-value]

    def readbytes(self, path: str) -> bytes:
        """The whole file: one GET when it fits the first block, as most small files do."""
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        try:
            stat, head = self._read_first(key, path)
        except OSError as exc:
            raise _fs_error(exc, path)  # noqa: B904 - chained (or re-raised) by _fs_error
        if len(head) >= stat.size:
            return head
        with RangeReader(self.client, key, stat, head,
                         FileContext(path, "rb", self.client.where)) as reader:
            return reader.readall()

    def writebytes(self, path: str, contents: bytes) -> None:
        """``contents`` in one PUT, after the checks ``openbin(path, "w")`` makes."""
        if not isinstance(contents, bytes):
            raise TypeError("contents must be bytes")
        with self.openbin(path, "w") as file:
            file.write(contents)

    def _missing(self, key: str, path: str) -> errors.FSError:
        stat = self._stat_quietly(key)
        if stat is not None and not stat.is_file:
            return errors.FileExpected(path)
        return errors.ResourceNotFound(path)

    def _open_reader(self, key: str, path: str, context: FileContext,
                     buffering: int) -> io.IOBase:
        """A ``BufferedReader`` over the whole file in memory when the first block held
        it all (no more requests), else over a ranged reader; unbuffered: the raw file.
        A lazy open leaves every request, and the missing file's error, to the reader."""
        size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
        if self.lazy_open:
            lazy = RangeReader(self.client, key, None, b"", context)
            return lazy if buffering == 0 else io.BufferedReader(lazy, size)
        stat, head = self._read_first(key, path)
        if buffering == 0:
            return RangeReader(self.client, key, stat, head, context)
        if len(head) >= stat.size:
            return io.BufferedReader(whole_file(head, key, context), size)  # type: ignore[arg-type]
        return io.BufferedReader(RangeReader(self.client, key, stat, head, context), size)

    def _read_first(self, key: str, path: str) -> tuple[Stat, bytes]:
        """Size, version and the first block, recorded as an observation."""
        try:
            return self.client.read_head(key, MIN_BLOCK)
        except FileNotFoundError:
            raise self._missing(key, path) from None

    def _read_quietly(self, key: str, context: FileContext) -> tuple[Stat, RangeReader] | None:
        """Current content for append/update, without recording an observation."""
        try:
            stat, head = self.client.read_head(key, MIN_BLOCK, observe=False)
        except FileNotFoundError:
            return None
        return stat, RangeReader(self.client, key, stat, head, context)

    def _open_update(self, key: str, path: str, context: FileContext) -> SpooledFile:
        current = self._read_quietly(key, context)
        if current is None:
            raise self._missing(key, path)
        stat, reader = current
        with reader:
            return SpooledFile(self._committer(key, precondition_headers(stat.version), context),
                               context=context, readable=True, initial=reader, dirty=False)

    def _open_writer(self, key: str, path: str, mode: _BinMode, context: FileContext,
                     create_parents: bool) -> io.RawIOBase:
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
        if mode.appending:
            current = self._read_quietly(key, context)
            conditions = precondition_headers(None if current is None else current[0].version)
            reader = None if current is None else current[1]
            try:
                return SpooledFile(self._committer(key, conditions, context), context=context,
                                   readable=mode.reading, append=True, initial=reader)
            finally:
                if reader is not None:
                    reader.close()
        exclusive = {"If-None-Match": "*"} if mode.exclusive else None
        if self.write_mode == "passthrough" and not mode.reading:
            return ChunkedUpload(self.client, key, exclusive or self.client.preconditions(key),
                                 context=context, explain=self._explainer(key, context))
        return SpooledFile(self._committer(key, exclusive, context), context=context,
                           readable=mode.reading)

    def _committer(self, key: str, conditions: Mapping[str, str] | None,
                   context: FileContext) -> Commit:
        """``close()`` action: PUT the spool, conditional on ``conditions``.

        ``None`` means "whatever the caller has observed by the time of close".
        """
        def commit(spool: Readable | bytes, size: int) -> None:
            try:
                self.client.write(key, spool, size,
                                  None if conditions is None else dict(conditions))
            except OSError as exc:
                error = self._explainer(key, context)(exc)
                if error is exc:
                    raise
                raise error from exc
        return commit

    def _explainer(self, key: str, context: FileContext) -> Explain:
        """A refused commit as the caller should see it, naming ``context.name``.

        A path conflict is told apart here, once: the key is a directory
        (``EISDIR``) or a parent is a file (``ENOTDIR``).
        """
        def explain(exc: OSError) -> OSError:
            if isinstance(exc, PathConflict):
                stat = self._stat_quietly(key)
                number = errno.EISDIR if stat is not None and not stat.is_file else errno.ENOTDIR
                return OSError(number, os.strerror(number), context.name)
            if exc.filename == key:
                exc.filename = context.name
            return exc
        return explain

    def remove(self, path: str, *, expect: Any = OBSERVED) -> None:
        """Delete a file, conditional on the version the caller observed.

        ``expect``: the version the stored object must still have instead
        (for a caller that holds one from earlier, as ``local_copy`` does).
        """
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        with self._errors(path):
            try:
                self.client.delete(key, conditions=self._conditions(expect))
            except FileNotFoundError:
                raise self._missing(key, path) from None

    @staticmethod
    def _conditions(expect: Any) -> dict[str, str] | None:
        """Headers for ``expect``: a version, None (absent), a token from ``observed()``."""
        return None if expect is OBSERVED else precondition_headers(expect)

    def observe(self, path: str, version: str | None) -> None:
        """Record ``version`` of ``path``, seen in a listing, as an observation.

        A ``scandir(namespaces=["details"])`` entry does not count as one by
        itself (most listings are not followed by a write); a caller that
        shows it to the user as a stat (the shim's ``DirEntry.stat()``) does.
        """
        self.client.observe(self._key(path), version)

    def observed(self, path: str) -> object:
        """What the caller last observed of ``path`` (for ``expect=`` later).

        A version string, None (seen absent), or an opaque "never seen" token.
        The memory behind it is the active ``vfs_state.session()``'s.
        """
        return current_store().lookup(self.client.store_id, self._key(path))

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
        """Sets ``{"vfs": {"attributes": {name: value}}}`` on a file.

        Times and permissions are not stored by the backends: for those only
        existence is checked. A read-only attribute is ``PermissionDenied``,
        one the backend does not have ``Unsupported``.
        """
        attributes = dict(info.get("vfs", {}).get("attributes") or {})  # type: ignore[call-overload]
        if not attributes:
            self.getinfo(path)
            return
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        with self._errors(path):
            for name, value in attributes.items():
                self.client.set_attr(key, str(name), str(value))

    def walk_files(self, path: str) -> Iterator[str]:
        """Names (``/``-separated, relative to ``path``) of every file under a directory.

        One recursive listing, not a request per directory as ``fs.walk`` makes.
        """
        key = self._key(path)
        start = len(key) + 1 if key else 0
        with self._errors(path):
            files, _ = moves.tree(self.client, key)
        return (name[start:] for name in files)

    # -- moving and copying: compare-and-set safe (statefs_moves) -----------------

    def move(self, src_path: str, dst_path: str, overwrite: bool = False,
             preserve_time: bool = False, *, create_parents: bool = False) -> None:
        """Move a file: copy, then delete the source on the version copied.

        A source the caller observed at another version fails before anything
        is written; one replaced meanwhile makes the delete fail and survives
        (``VersionConflict``, a ``FileExistsError``). Not atomic.
        ``preserve_time`` is accepted and ignored (backends set times).
        ``create_parents=True``: no destination checks (the shim's rules).
        """
        self._copy(src_path, dst_path, overwrite, create_parents, delete=True)

    def copy(self, src_path: str, dst_path: str, overwrite: bool = False,
             preserve_time: bool = False, *, create_parents: bool = False) -> None:
        """Copy a file: the version the caller observed (if any), in one read and one PUT."""
        self._copy(src_path, dst_path, overwrite, create_parents, delete=False)

    def _copy(self, src_path: str, dst_path: str, overwrite: bool, create_parents: bool,
              delete: bool) -> None:
        src, dst = self._key(src_path), self._key(dst_path)
        if not src:
            raise errors.FileExpected(src_path)
        if not dst:
            raise errors.DestinationExists(dst_path)
        if not create_parents:
            with self._errors(dst_path):
                self._check_destination(dst, dst_path, overwrite)
        with self._errors(src_path):
            if src == dst:  # onto itself: nothing to do, once the source is known
                stat = self._stat_quietly(src)
                if stat is None or not stat.is_file:
                    raise self._missing(src, src_path)
                return
            try:
                version = moves.copy_object(self.client, src, dst)
            except FileNotFoundError:
                raise self._missing(src, src_path) from None
            if delete:
                moves.delete_copied(self.client, src, version)

    def _check_destination(self, key: str, path: str, overwrite: bool) -> None:
        """pyfilesystem2's rules for a file's destination: free (or ``overwrite``),
        not a directory, in a directory that exists."""
        stat = self._stat_quietly(key)
        if stat is not None and not overwrite:
            raise errors.DestinationExists(path)
        if stat is not None and not stat.is_file:
            raise errors.FileExpected(path)
        if stat is None:
            self._require_dir(dirname(key), dirname(path) or "/")

    def movedir(self, src_path: str, dst_path: str, create: bool = False,
                preserve_time: bool = False) -> None:
        """Move a directory object by object (as ``move``), then its markers.

        Every object is copied before any source is deleted.
        """
        src, dst = self._key(src_path), self._key(dst_path)
        with self._errors(src_path):
            if not create and self._stat_quietly(dst) is None:
                raise errors.ResourceNotFound(dst_path)
            self._require_dir(src, src_path)
            if not src or dst == src or dst.startswith(src + "/"):
                raise errors.ResourceInvalid(dst_path, msg="cannot move a directory into itself")
            moves.move_tree(self.client, src, dst)

    # -- transfers ------------------------------------------------------------------

    def upload(self, path: str, file: BinaryIO, chunk_size: int | None = None,
               **options: Any) -> None:
        """Store what ``file`` holds from its position on, in one PUT.

        Options: ``expect`` (a version the stored object must have, None for
        "must not exist", or a token from ``observed()``; by default what the
        caller observed) and ``create_parents=True`` (no checks: the shim's
        flat-store rules). A file that cannot seek is spooled first.
        """
        key = self._key(path)
        if not key:
            raise errors.FileExpected(path)
        with self._errors(path):
            if not options.get("create_parents", False):
                self._check_destination(key, path, overwrite=True)
            with _sized(file) as (body, size):
                self.client.write(key, body, size,
                                  self._conditions(options.get("expect", OBSERVED)))

    def download(self, path: str, file: BinaryIO, chunk_size: int | None = None,
                 **options: Any) -> None:
        """Copy a file into ``file``: one pinned version, read as a stream.

        Recorded as an observation: ``observed(path)`` then gives the version
        written to ``file``.
        """
        with self.openbin(path, "r", **options) as source:
            while chunk := source.read(chunk_size or 1 << 20):
                file.write(chunk)

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


def _fs_error(exc: OSError, path: str) -> Exception:
    """The ``fs`` error for ``exc`` on ``path``, chained to it; ``exc`` itself for
    what stays a built-in (CAS conflicts, outages: ``to_fs_error``)."""
    converted = to_fs_error(exc, path)
    if converted is None:
        return exc
    converted.__cause__ = exc
    converted.__suppress_context__ = True
    return converted


class _BinMode:
    """An ``fs`` ``Mode`` checked for ``openbin``, with what ``openbin`` asks of it."""

    __slots__ = ("create", "writing", "reading", "exclusive", "appending", "platform")

    def __init__(self, mode: Mode) -> None:
        self.create = mode.create
        self.writing = mode.writing
        self.reading = mode.reading
        self.exclusive = mode.exclusive
        self.appending = mode.appending
        self.platform = mode.to_platform_bin()


#: Modes already checked: parsing one costs more than a small read's own work.
_BIN_MODES: dict[str, _BinMode] = {}


def _bin_mode(mode: str) -> _BinMode:
    """Check ``mode`` as ``fs`` does (same errors) and remember it."""
    parsed = Mode(mode)
    parsed.validate_bin()
    checked = _BinMode(parsed)
    if type(mode) is str and len(_BIN_MODES) < 64:
        _BIN_MODES[mode] = checked
    return checked


@contextmanager
def _sized(file: BinaryIO) -> Iterator[tuple[Readable, int]]:
    """``file`` and the bytes left in it; spooled first when it cannot seek."""
    try:
        start = file.tell()
        size = file.seek(0, io.SEEK_END) - start
        file.seek(start)
    except (AttributeError, OSError, ValueError):
        with tempfile.SpooledTemporaryFile(max_size=SPILL_SIZE) as spool:
            while chunk := file.read(1 << 20):
                spool.write(chunk)
            size = spool.tell()
            spool.seek(0)
            yield spool, size
        return
    yield file, size


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
