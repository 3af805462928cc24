"""Raw files that write to the sidecar: buffered (one PUT) and passthrough (chunked).

Both are ``io.RawIOBase`` so the usual ``io.BufferedWriter`` /
``io.TextIOWrapper`` stack sits on top and handlers get real ``io`` objects.

A commit that fails in an explicit ``close()`` raises. One that fails while
an unclosed file object is garbage-collected cannot raise (``io`` finalizers
swallow the error), so it prints one line on stderr naming the path and the
error: a lost write is never silent.
"""
from __future__ import annotations

import errno
import io
import sys
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

from vfs_state._types import FileContext, Readable
from vfs_state.client import SidecarClient
from vfs_state.connection import Closed
from vfs_state.errors import error_for_status, unreachable
from vfs_state.transport import OutcomeUnknownError, OutcomeUnknownTimeout, key_path

SPILL_SIZE = 4 * 1024 * 1024
SMALL_CHUNK = 64 * 1024  # a passthrough chunk up to this size goes out in one send

#: ``commit(content, size)`` sends the finished content; raises on failure.
Commit = Callable[[Readable | bytes, int], None]
#: turns a refused commit into the error the caller should see.
Explain = Callable[[OSError], OSError]


class _Finalizable(io.RawIOBase):
    """Knows when ``close()`` runs from a garbage collector's finalizer.

    ``io`` marks finalization for us: it sets ``_finalizing`` on an object it
    closes on collection, and a ``BufferedWriter``/``TextIOWrapper`` being
    collected calls ``raw._dealloc_warn()`` just before closing its raw file.
    """

    _finalizing = False

    def _dealloc_warn(self, source: object) -> None:
        self._finalizing = True

    def _report_lost(self, exc: BaseException) -> None:
        """One stderr line for a commit nobody will see fail (``close()`` from GC)."""
        if not self._finalizing:
            return
        stream = sys.stderr
        if stream is not None:
            try:
                stream.write(f"vfs-state: write to {getattr(self, 'name', '?')!r} LOST: the file"
                             f" was not closed, and committing it on garbage collection failed:"
                             f" {type(exc).__name__}: {exc}\n")
                stream.flush()
            except (OSError, ValueError):
                pass


class SpooledFile(_Finalizable):
    """Buffered write mode: the content in memory up to 4 MiB, then in a temporary file.

    Seek, tell, truncate and reading back work as on a local file. ``close()``
    commits with one PUT carrying ``Content-Length`` when anything changed
    (or always, for ``w``/``x`` modes, which create the file). ``fileno()``
    moves the content to disk and shares its descriptor. The spool is a
    ``BytesIO`` until it grows past ``SPILL_SIZE`` (what
    ``tempfile.SpooledTemporaryFile`` does, without its Python-level wrapper
    around every call: most files written are small).
    """

    def __init__(self, commit: Commit, *, context: FileContext, readable: bool,
                 append: bool = False, initial: Readable | bytes | None = None,
                 dirty: bool = True) -> None:
        self._commit = commit
        self._spool: BinaryIO = io.BytesIO()
        self._rolled = False
        if isinstance(initial, bytes):
            self._spool.write(initial)
        elif initial is not None:
            while chunk := initial.read(1 << 20):
                self._spool.write(chunk)
                self._check_size()
        if initial is not None:
            self._check_size()
            self._spool.seek(0, io.SEEK_END if append else io.SEEK_SET)
        self._readable = readable
        self._append = append
        self._dirty = dirty
        self._shared: int | None = None  # the descriptor handed out, if any
        self._context = context
        self.name = context.name
        self.mode = context.mode

    @property
    def rolled_to_disk(self) -> bool:
        """True once the content spilled past the in-memory limit."""
        return self._rolled

    def _check_size(self) -> None:
        if not self._rolled and self._spool.tell() > SPILL_SIZE:
            self._roll()

    def _roll(self) -> None:
        """Move the content to a temporary file, keeping the position."""
        memory = self._spool
        disk = tempfile.TemporaryFile(prefix="vfs-state-spool-")
        disk.write(memory.getvalue())  # type: ignore[attr-defined]
        disk.seek(memory.tell())
        self._spool, self._rolled = disk, True
        memory.close()

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        """Move the spool to disk and share its descriptor (``mmap``, C writers).

        What is written through it is committed by ``close()`` like the rest.
        """
        self._checkClosed()
        self._dirty = True
        if not self._rolled:
            self._roll()
        descriptor = self._spool.fileno()
        self._spool.flush()
        if self._shared is None:
            self._shared = descriptor
            if self._context.hooks is not None:
                self._context.hooks.shared(descriptor)
        return descriptor

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("not readable")
        return self._spool.readinto(buffer)  # type: ignore[attr-defined, no-any-return]

    def write(self, data: Any) -> int:
        self._checkClosed()
        if self._append:
            self._spool.seek(0, io.SEEK_END)
        self._dirty = True
        written = self._spool.write(data)
        if self._rolled:
            if self._shared is not None:
                self._spool.flush()
        elif self._spool.tell() > SPILL_SIZE:
            self._roll()
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        return self._spool.seek(offset, whence)

    def tell(self) -> int:
        self._checkClosed()
        return self._spool.tell()

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        self._dirty = True
        position = self._spool.tell()
        size = position if size is None else size
        end = self._spool.seek(0, io.SEEK_END)
        if size > end:  # growing pads with zeros, as on a local file (BytesIO won't)
            self._spool.write(bytes(size - end))
            self._check_size()
        else:
            self._spool.truncate(size)
        self._spool.seek(position)
        if self._shared is not None:
            self._spool.flush()
        return size

    def abort(self) -> None:
        """Drop what was written without committing; the stored file is unchanged."""
        self._dirty = False
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        late = None  # e.g. a writable map of the shared descriptor outlives the file
        hooks = self._context.hooks
        if self._shared is not None and hooks is not None:
            late = hooks.released(self._shared)
        try:
            if self._dirty:
                spool = self._spool
                if not self._rolled:  # one bytes: sent with the request head
                    content = spool.getvalue()  # type: ignore[attr-defined]
                    self._commit(content, len(content))
                else:
                    size = spool.seek(0, io.SEEK_END)
                    spool.seek(0)
                    self._commit(spool, size)
        except BaseException as exc:
            self._report_lost(exc)
            raise
        finally:
            self._spool.close()
            super().close()
        if late is not None:
            raise late


def _unknown(exc: BaseException, where: str, key: str) -> OSError:
    """The error for a finished upload whose verdict never came: maybe applied."""
    text = f"the upload was complete; it may or may not have been applied [{where}]: {exc}"
    if isinstance(exc, TimeoutError):
        return OutcomeUnknownTimeout(errno.ETIMEDOUT, f"sidecar timed out: {text}", key)
    return OutcomeUnknownError(errno.ECONNRESET, f"connection to the sidecar lost: {text}", key)


class ChunkedUpload(_Finalizable):
    """Passthrough write mode: every ``write()`` goes out as an HTTP chunk.

    Memory stays bounded by the caller's write size. ``close()`` sends the
    last chunk and waits for the sidecar's verdict; ``abort()`` (or a broken
    connection) ends the request without the last chunk, so the sidecar
    discards the upload and the old object stays. Not seekable.
    """

    def __init__(self, client: SidecarClient, key: str, conditions: dict[str, str],
                 *, context: FileContext, explain: Explain | None = None) -> None:
        super().__init__()
        self._client = client
        self._key = key
        self._context = context
        self._explain = explain
        self.name = context.name
        self.mode = context.mode
        self._transport = client.transport
        self._conn = self._transport.start_upload(key_path("/keys/", key), conditions)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        """None to give: the content is already on its way to the sidecar."""
        raise io.UnsupportedOperation(
            f"fileno: {self._context.label} streams writes (write=passthrough); "
            "use a buffered mount or vfs_state.local_copy()")

    def write(self, data: Any) -> int:
        self._checkClosed()
        view = memoryview(data).cast("B")  # bytes, whatever the buffer's item size
        size = view.nbytes
        if size:
            try:
                if size <= SMALL_CHUNK:  # one send and one copy: size line, data, CRLF
                    self._conn.send(b"".join((b"%X\r\n" % size, view, b"\r\n")), None)
                else:
                    self._conn.send(b"%X\r\n" % size, view)
                    self._conn.send(b"\r\n", None)
            except OSError:
                self._fail()
        return size

    def _fail(self) -> None:
        """The sidecar stopped reading: report its answer if it sent one."""
        self._verdict()
        raise OSError(errno.EIO, "sidecar ended the upload early", self.name)

    def _verdict(self, complete: bool = False) -> dict[str, str]:
        """Read the sidecar's reply, end the upload, raise if it refused; the reply's headers.

        ``complete``: the last chunk went out, so a lost reply leaves the
        outcome unknown (never re-sent). Before that, the sidecar discards an
        unfinished upload and the old object stays.
        """
        try:
            status, headers, body = self._transport.finish_upload(self._conn, complete)
        except (OSError, Closed) as exc:
            super().close()
            if complete:
                raise _unknown(exc, self._client.where, self._key) from exc
            raise unreachable(self._client.where, exc) from exc
        super().close()
        if status >= 400:
            error = error_for_status(status, body, self._key, self._client.where)
            if isinstance(error, OSError) and self._explain is not None:
                error = self._explain(error)
            raise error
        return headers

    def _abandon(self) -> None:
        """Close the connection without the last chunk: the sidecar discards the upload."""
        self._conn.close()
        super().close()

    def abort(self) -> None:
        """Drop the upload without committing; the stored object is unchanged."""
        if not self.closed:
            self._abandon()

    def close(self) -> None:
        if self.closed:
            return
        try:
            try:
                self._conn.send(b"0\r\n\r\n", None)
            except OSError:
                self._fail()
            etag = self._verdict(complete=True).get("etag")
        except BaseException as exc:
            self._report_lost(exc)
            raise
        self._client.observe(self._key, etag.strip('"') if etag else None)
