"""Lazy, ranged reads: only the bytes asked for cross the socket.

Opening fetches the first block together with size and version (one GET).
A read elsewhere fetches one ``Range`` block (64 KiB, or the size asked), so
a 4 KiB read at an offset moves about 64 KiB. A read that continues where
the last one ended is sequential: it opens one streaming GET from there to
the end and reads the body as the caller goes, straight into the caller's
buffer, which is as fast as the sidecar can stream; seeking away drops that
stream. Every request is pinned to the version opened (``If-Match``): an
object replaced mid-read fails loudly instead of mixing two versions.
``fileno()`` hands out a real descriptor on a local copy of that version
(one full read), for ``mmap`` and C code, when the opener asked for it.

A *lazy* open (``StateFS(lazy_open=True)``, mount option ``open=lazy``)
makes no request at all: the first read fetches the block where it starts,
or, reading on from 0 more than a block, the whole object as one stream,
and either brings the size and version. A missing file then raises
``FileNotFoundError`` at that first read, not at ``open``.

Most files are small: the first block is the whole object, and no request
can follow. ``WholeFile`` serves those from memory (``BytesIO``, in C), with
the same read-only, local-file behaviour and none of the ranged machinery.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import TypeVar

from vfs_state._types import FileContext
from vfs_state.client import SidecarClient, Stat
from vfs_state.transport import BodyStream

MIN_BLOCK = 64 * 1024
T = TypeVar("T")
_close = os.close  # the real one: the shim patches os.close to commit its own descriptors


class RangeReader(io.RawIOBase):
    """A read-only, seekable raw file over one version of one key."""

    # where a file starts: class defaults, so opening sets only what varies
    _pos = 0
    _size = -1  # unknown until a lazy open's first request
    _version: str | None = None
    _block = b""
    _block_start = 0
    _stream: BodyStream | None = None
    _stream_pos = 0
    _fd: int | None = None

    def __init__(self, client: SidecarClient, key: str, stat: Stat | None, head: bytes,
                 context: FileContext | None = None) -> None:
        """``stat`` and ``head`` as the open's GET gave them; ``None`` and ``b""``
        for a lazy open, which leaves the first request to the first read."""
        # (io.RawIOBase.__init__ does nothing: not called)
        self._client = client
        self._key = key
        if stat is not None:
            self._size = stat.size
            self._version = stat.version
            self._block = head
        self._context = context
        self.name = key if context is None else context.name
        self.mode = "rb" if context is None else context.mode

    @property
    def size(self) -> int:
        if self._size < 0:
            self._learn_size()
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_END and self._size < 0:
            self._learn_size()
        self._pos = _seek_target(self._pos, self._size, offset, whence, self.name)
        return self._pos

    def fileno(self) -> int:
        """A descriptor on a local copy of the version opened (made once, on first use).

        Its offset is this file's position, as for a ``FileIO``. Only for a
        file opened with ``DescriptorHooks`` (the shim's): anyone else gets
        ``io.UnsupportedOperation`` rather than a full download by surprise.
        """
        self._checkClosed()
        if self._fd is None:
            self._fd = _local_copy(self, self._context, self._pos)
        return self._fd

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        if self._size < 0:
            return self._first_read(view) if len(view) else 0
        wanted = min(len(view), self._size - self._pos)
        if wanted <= 0:
            return 0
        offset = self._pos - self._block_start
        if 0 <= offset < len(self._block):
            count = min(wanted, len(self._block) - offset)
            view[:count] = memoryview(self._block)[offset:offset + count]  # one copy, not two
        elif self._pos == self._block_start + len(self._block) or self._streaming_here():
            count = self._from_stream(view[:wanted])
        else:
            self._drop_stream()
            self._block = self._get(self._pos, max(wanted, MIN_BLOCK))
            self._block_start = self._pos
            count = min(wanted, len(self._block))
            view[:count] = self._block[:count]
        self._pos += count
        return count

    def _first_read(self, view: memoryview) -> int:
        """A lazy open's first request, then the read from what it brought."""
        try:
            if self._pos == 0 and len(view) > MIN_BLOCK:  # likely reading on: one GET
                stat, self._stream = self._client.stream_whole(self._key)
                self._stream_pos = 0
                self._block_start = 0
            else:
                found = self._client.read_from(self._key, self._pos, max(len(view), MIN_BLOCK))
                if found is None:  # starts past the end: only the size is needed
                    self._learn_size()
                    return 0
                stat, self._block = found
                self._block_start = self._pos
        except FileNotFoundError:
            raise self._missing() from None
        self._size, self._version = stat.size, stat.version
        return self.readinto(view)

    def _learn_size(self) -> None:
        """A lazy open's size and version without data (``seek`` from the end, ``size``)."""
        stat = self._client.stat(self._key)
        if stat is None or not stat.is_file:
            raise self._missing(stat)
        self._size, self._version = stat.size, stat.version

    def _missing(self, stat: Stat | None = None) -> OSError:
        """What a lazy open would have raised at ``open``: no such file, or a directory."""
        if stat is None:
            stat = self._client.stat(self._key, observe=False)
        if stat is not None and not stat.is_file:
            return IsADirectoryError(errno.EISDIR, "Is a directory", self.name)
        return FileNotFoundError(errno.ENOENT, "No such file or directory", self.name)

    def _streaming_here(self) -> bool:
        return self._stream is not None and self._stream_pos == self._pos

    def _from_stream(self, view: memoryview) -> int:
        if not self._streaming_here():
            self._drop_stream()
            self._stream = self._pinned(lambda: self._client.stream_from(
                self._key, self._pos, self._version))
            self._stream_pos = self._pos
            self._block, self._block_start = b"", self._pos
        assert self._stream is not None
        count = self._pinned(lambda: self._stream.readinto(view))  # type: ignore[union-attr]
        self._stream_pos += count
        self._block_start = self._stream_pos  # keeps later reads "sequential"
        return count

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def readall(self) -> bytes:
        """The rest of the object: cached bytes, then one request for the remainder.

        The remainder arrives as one ``bytes`` (no second copy when nothing
        was cached), since ``readall`` must return ``bytes``.
        """
        self._checkClosed()
        if self._size < 0:  # a lazy open read whole: one GET from here
            try:
                found = self._client.read_from(self._key, self._pos, None)
            except FileNotFoundError:
                raise self._missing() from None
            if found is None:
                self._learn_size()
                return b""
            stat, rest = found
            self._size, self._version = stat.size, stat.version
            self._pos += len(rest)
            return rest
        block = self._block
        if self._pos == self._block_start and len(block) == self._size - self._pos \
                and self._stream is None:  # the usual small file: all came with the open
            self._pos = self._size
            return block
        if self._pos >= self._size:
            return b""
        cached = b""
        offset = self._pos - self._block_start
        if 0 <= offset < len(self._block):
            cached = self._block[offset:]
            self._pos += len(cached)
        self._drop_stream()
        rest = self._get(self._pos, self._size - self._pos) if self._pos < self._size else b""
        self._pos = self._size
        return rest if not cached else cached + rest

    def _get(self, start: int, length: int) -> bytes:
        length = min(length, self._size - start)
        data = self._pinned(lambda: self._client.read_range(self._key, start, length,
                                                            self._version))
        if len(data) != length:
            raise OSError(errno.EIO, f"short read: {len(data)} of {length} bytes", self.name)
        return data

    def _pinned(self, call: Callable[[], T]) -> T:
        """Run a request; a changed or vanished object becomes ``ESTALE``."""
        try:
            return call()
        except FileExistsError:
            raise OSError(errno.ESTALE, "object changed while it was being read",
                          self.name) from None
        except FileNotFoundError:
            raise OSError(errno.ESTALE, "object deleted while it was being read",
                          self.name) from None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _release(self._context, fd)
        self._drop_stream()
        self._block = b""
        super().close()


class WholeFile(io.BytesIO):
    """One version read whole with the open: read from memory, never a request.

    Read-only and seekable with a local file's errors (as ``RangeReader``);
    ``fileno()`` gives a descriptor on a local copy under the same rule.
    Built by ``whole_file`` (the ``BytesIO`` shares ``data``, no copy).
    """

    _context: FileContext | None = None
    _fd: int | None = None
    name: str | bytes
    mode: str

    def writable(self) -> bool:
        return False

    def write(self, data: object) -> int:
        raise io.UnsupportedOperation("write")

    def writelines(self, lines: object) -> None:
        raise io.UnsupportedOperation("write")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("truncate")

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        target = _seek_target(self.tell(), len(self.getvalue()), offset, whence, self.name)
        return super().seek(target)

    def fileno(self) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        if self._fd is None:
            self._fd = _local_copy(self, self._context, self.tell())
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _release(self._context, fd)
        super().close()


def whole_file(data: bytes, key: str, context: FileContext | None) -> WholeFile:
    """A ``WholeFile`` over ``data``, named as a ``RangeReader`` would be."""
    file = WholeFile(data)
    if context is None:
        file.name, file.mode = key, "rb"
    else:
        file.name, file.mode, file._context = context.name, context.mode, context
    return file


def _seek_target(position: int, size: int, offset: int, whence: int,
                 name: str | bytes) -> int:
    """Where ``seek(offset, whence)`` lands, with ``FileIO``'s errors."""
    if whence == io.SEEK_SET:
        target = offset
    elif whence == io.SEEK_CUR:
        target = position + offset
    elif whence == io.SEEK_END:
        target = size + offset
    else:
        raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
    if target < 0:
        raise OSError(errno.EINVAL, "negative seek position", name)
    return target


def _local_copy(source: io.IOBase, context: FileContext | None, position: int) -> int:
    """A descriptor on a temporary copy of ``source``, at ``position`` (for ``fileno``).

    Only for a file opened with ``DescriptorHooks`` (the shim's): anyone else
    gets ``io.UnsupportedOperation`` rather than a full download by surprise.
    """
    hooks = None if context is None else context.hooks
    if hooks is None:
        raise io.UnsupportedOperation("fileno: a ranged reader has no descriptor")
    with tempfile.TemporaryFile(prefix="vfs-state-fileno-") as copy:
        source.seek(0)
        shutil.copyfileobj(source, copy, 1 << 20)  # type: ignore[misc]
        source.seek(position)
        copy.flush()
        copy.seek(position)
        fd = os.dup(copy.fileno())
    hooks.shared(fd)
    return fd


def _release(context: FileContext | None, fd: int) -> None:
    """Close a ``fileno()`` copy; its hooks are told (a read-only copy: nothing to lose)."""
    if context is not None and context.hooks is not None:
        context.hooks.released(fd)
    _close(fd)
