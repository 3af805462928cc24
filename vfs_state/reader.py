"""Lazy, ranged reads: only the bytes asked for cross the socket.

Opening fetches the first block together with size and version (one GET).
Later reads fetch ``Range`` blocks; the block grows while reading stays
sequential (64 KiB doubling to 16 MiB) and resets after a seek, so a 4 KiB
read at an offset moves about 64 KiB while streaming a large object takes
few round trips. Every block is pinned to the version opened (``If-Match``):
an object replaced mid-read fails loudly instead of mixing two versions.
"""
from __future__ import annotations

import errno
import io

from vfs_state.client import SidecarClient, Stat

MIN_BLOCK = 64 * 1024
MAX_BLOCK = 16 * 1024 * 1024


class RangeReader(io.RawIOBase):
    """A read-only, seekable raw file over one version of one key."""

    def __init__(self, client: SidecarClient, key: str, stat: Stat, head: bytes,
                 name: str = "") -> None:
        super().__init__()
        self._client = client
        self._key = key
        self._size = stat.size
        self._version = stat.version
        self._pos = 0
        self._block_start = 0
        self._block = head
        self._readahead = MIN_BLOCK
        self.name = name or key
        self.mode = "rb"

    @property
    def size(self) -> int:
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
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise OSError(errno.EINVAL, "negative seek position", self.name)
        self._pos = target
        return target

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._pos)
        if wanted <= 0:
            return 0
        offset = self._pos - self._block_start
        if not 0 <= offset < len(self._block):
            self._fetch(wanted)
            offset = 0
        count = min(wanted, len(self._block) - offset)
        view[:count] = self._block[offset:offset + count]
        self._pos += count
        return count

    def readall(self) -> bytes:
        """The rest of the object in one request (plus what is cached)."""
        self._checkClosed()
        if self._pos >= self._size:
            return b""
        parts = []
        offset = self._pos - self._block_start
        if 0 <= offset < len(self._block):
            parts.append(self._block[offset:])
            self._pos += len(self._block) - offset
        if self._pos < self._size:
            parts.append(self._get(self._pos, self._size - self._pos))
        self._pos = self._size
        return b"".join(parts)

    def _fetch(self, wanted: int) -> None:
        sequential = self._pos == self._block_start + len(self._block)
        self._readahead = min(self._readahead * 2, MAX_BLOCK) if sequential else MIN_BLOCK
        length = min(max(wanted, self._readahead), self._size - self._pos)
        self._block = self._get(self._pos, length)
        self._block_start = self._pos

    def _get(self, start: int, length: int) -> bytes:
        try:
            data = self._client.read_range(self._key, start, length, self._version)
        except FileExistsError:
            raise OSError(errno.ESTALE, "object changed while it was being read",
                          self.name) from None
        except FileNotFoundError:
            raise OSError(errno.ESTALE, "object deleted while it was being read",
                          self.name) from None
        if len(data) != length:
            raise OSError(errno.EIO, f"short read: {len(data)} of {length} bytes", self.name)
        return data

    def close(self) -> None:
        self._block = b""
        super().close()
