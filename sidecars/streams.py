"""Request bodies as backends see them: anything with ``read(n)``, read in bounded pieces.

Backends never hold more of a body than they choose: ``read_up_to`` fills
one buffer of a fixed size (a part, a chunk), ``read_at_most`` takes a whole
body that must fit a limit, ``iter_stream`` yields it piece by piece.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from sidecars.errors import PayloadTooLarge

#: Bytes asked of the stream at once.
READ_CHUNK = 1 << 20


class Readable(Protocol):
    """What a backend needs of a body: ``read(n)`` giving ``b""`` at the end."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_up_to(body: Readable, size: int, start: bytes = b"") -> bytearray:
    """``start`` plus body bytes up to ``size`` in all; fewer only at the end of the body.

    A single ``read(n)`` may return less than asked, so a part or a short
    last chunk would be cut early; this keeps reading until it is full.
    """
    buffer = bytearray(start)
    while len(buffer) < size:
        chunk = body.read(min(READ_CHUNK, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def read_at_most(body: Readable, limit: int, what: str = "body") -> bytes:
    """The whole body; ``PayloadTooLarge`` as soon as it exceeds ``limit`` bytes."""
    data = read_up_to(body, limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} exceeds the limit of {limit} bytes")
    return bytes(data)


def iter_stream(stream: Readable, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """Yield ``stream`` in chunks until EOF."""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        yield chunk
