"""One keep-alive HTTP/1.1 connection to a sidecar: write a request, read its reply.

The wire half of ``vfs_state.transport`` (which pools these and decides what
may be sent again). Its cost is most of a small request's client CPU, so it
reads the socket directly into ``bytes``: one ``recv`` usually brings the
whole reply of a small read, its head is found with one ``find``, split with
one ``split``, and its header lines are looked up in a cache of lines already
seen (a sidecar repeats nearly all of them). The socket is blocking with
kernel timeouts (``SO_RCVTIMEO``), so no ``poll`` precedes each ``recv``.
A large body is received into one buffer of its size, not pieced together.
"""
from __future__ import annotations

import errno
import io
import select
import socket

from vfs_state._types import Readable

SEND_BLOCK = 1 << 20
SMALL_BODY = 64 * 1024
MAX_LINE = 65536
MAX_HEADERS = 100
#: A reply head larger than this is refused (the sidecar's are a few hundred bytes).
MAX_HEAD = MAX_LINE * 4
#: One ``recv``: a 64 KiB block with its head fits.
RECV_SIZE = 64 * 1024 + 4096
#: A body larger than this is received in place (one buffer), not in pieces joined.
JOIN_LIMIT = 1 << 20
_KEEP_ALIVE = frozenset({"keep-alive", "Keep-Alive"})
_NO_BODY = frozenset({204, 304})


class Closed(Exception):
    """The peer closed the connection before a reply began (a stale keep-alive)."""


class ProtocolError(OSError):
    """The sidecar's reply was not valid HTTP/1.1."""


def connect(socket_path: str, timeout: float) -> socket.socket:
    """A Unix stream socket connected to ``socket_path`` (Python-level timeout)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except OSError:
        sock.close()
        raise
    return sock


def kernel_timeouts(sock: socket.socket, timeout: float | None) -> None:
    """Make ``sock`` blocking, its ``timeout`` kept by the kernel (``SO_RCVTIMEO``).

    A Python socket with a timeout calls ``poll`` before every ``recv`` and
    ``send``: two or three extra system calls per request. A blocking socket
    whose timeouts the kernel keeps needs none; a timed-out call then fails
    with ``EAGAIN``, which ``Connection`` reports as the ``TimeoutError`` it is.
    """
    if not timeout or timeout <= 0 or not hasattr(socket, "SO_RCVTIMEO"):
        return  # no timeout, or a platform without them: Python's own polling
    import struct  # a C module, loaded here rather than at start-up

    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


def _timed_out(exc: BlockingIOError) -> TimeoutError:
    return TimeoutError(errno.ETIMEDOUT, f"timed out ({exc.strerror})")


class Connection:
    """One keep-alive connection: write a request, read its reply."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.sock = connect(socket_path, timeout)
        try:
            kernel_timeouts(self.sock, timeout)
        except OSError:
            self.sock.close()
            raise
        self.timeout = timeout
        #: Bytes received and not yet consumed (what followed the last reply).
        self.pending = b""
        #: True once a reply was read to the connection's end (close-delimited).
        self.at_eof = False
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)

    def dropped(self) -> bool:
        """True when this idle connection must not be reused.

        The peer closed it (EOF), reset it, or sent bytes nobody asked for
        (with the last reply or since): a request written now could be lost
        after the sidecar received it. Checked without blocking, before each
        reuse (as urllib3 does).
        """
        return bool(self.pending) or bool(self._poll.poll(0))

    # -- the socket ------------------------------------------------------------

    def _recv(self, size: int = RECV_SIZE) -> bytes:
        try:
            return self.sock.recv(size)
        except BlockingIOError as exc:  # SO_RCVTIMEO ran out
            raise _timed_out(exc) from None

    def _recv_into(self, view: memoryview) -> int:
        try:
            return self.sock.recv_into(view)
        except BlockingIOError as exc:
            raise _timed_out(exc) from None

    def send(self, head: bytes, body: bytes | memoryview | Readable | None) -> None:
        try:
            if body is None or (isinstance(body, bytes) and len(body) <= SMALL_BODY):
                self.sock.sendall(head + body if body else head)
                return
            self.sock.sendall(head)
            if isinstance(body, (bytes, bytearray, memoryview)):
                self.sock.sendall(body)
                return
            while block := body.read(SEND_BLOCK):
                self.sock.sendall(block)
        except BlockingIOError as exc:  # SO_SNDTIMEO ran out
            raise _timed_out(exc) from None

    # -- the reply ---------------------------------------------------------------

    def reply(self, head_only: bool) -> tuple[int, dict[str, str], bytes, bool]:
        """``(status, headers, body, must_close)``: the next reply, whole.

        The usual reply (CRLF lines, a final status, ``Content-Length``) is
        read here in one pass over what one ``recv`` brought; anything else
        goes through ``read_head`` and ``read_body``, from the same bytes.
        """
        data = self.pending
        if not data:
            data = self._recv_or_eof()
            if not data:
                raise Closed()
        mark = data.find(b"\n\r\n")  # the blank line, unless a bare "\n\n" comes first
        if mark >= 0 and data.find(b"\n\n", 0, mark + 2) < 0:
            lines = data[:mark].decode("latin-1").split("\n")
            status, old = _STATUS_LINES.get(lines[0]) or _status_line(lines[0])
            if status >= 200:
                headers = _fields(lines)
                connection = headers.get("connection")
                must_close = old if connection is None or connection in _KEEP_ALIVE else (
                    "close" in {token.strip().lower() for token in connection.split(",")} or old)
                start = mark + 3
                if head_only or status in _NO_BODY:
                    self.pending = data[start:]
                    return status, headers, b"", must_close
                length = headers.get("content-length")
                if (length is not None and "transfer-encoding" not in headers
                        and length.isascii() and length.isdigit()):
                    stop = start + int(length)
                    if len(data) >= stop:
                        self.pending = data[stop:]
                        return status, headers, data[start:stop], must_close
                    self.pending = data[start:]
                    body = self.read_exact(stop - start, "reply body ended early")
                    return status, headers, body, must_close
        self.pending = data  # interim replies, bare newlines, other framings
        status, headers, must_close = self.read_head()
        return status, headers, self.read_body(status, headers, head_only), must_close

    def read_head(self) -> tuple[int, dict[str, str], bool]:
        """``(status, headers, must_close)``: the final reply up to its body.

        Interim 1xx replies (100 Continue, 103 Early Hints) are skipped.
        Raises ``Closed`` only when not one byte of a reply arrived.
        """
        first = True
        while True:
            lines = self._head_lines(first)
            first = False
            status, old = _STATUS_LINES.get(lines[0]) or _status_line(lines[0])
            headers = _fields(lines)
            if status >= 200:
                break
            if status == 101:
                raise ProtocolError("the sidecar switched protocols (101)")
        connection = headers.get("connection")
        if connection is None or connection in _KEEP_ALIVE:
            return status, headers, old
        tokens = {token.strip().lower() for token in connection.split(",")}
        return status, headers, "close" in tokens or old

    def _head_lines(self, first: bool) -> list[str]:
        """The lines of one reply head (status line first), consumed up to its blank line.

        A bare ``\\n`` ends a line too; the ``\\r`` left on a line is stripped
        with its value.
        """
        data = self.pending
        if not data:
            data = self._recv_or_eof()
            if not data:
                if first:
                    raise Closed()
                raise ConnectionResetError("reply head ended early")
        end = _blank_line(data)
        while end < 0:
            if len(data) > MAX_HEAD:
                raise ProtocolError("reply head too long")
            more = self._recv_or_eof()
            if not more:
                raise ConnectionResetError("reply head ended early")
            data += more
            end = _blank_line(data)
        self.pending = data[end:]
        return data[:end].rstrip(b"\r\n").decode("latin-1").split("\n")

    def _recv_or_eof(self) -> bytes:
        """One ``recv``; a reset reads as the end (b"")."""
        try:
            return self._recv()
        except ConnectionResetError:
            return b""

    def read_body(self, status: int, headers: dict[str, str], head_only: bool) -> bytes:
        """The whole body of a reply whose head was read (empty where none is sent)."""
        if head_only or status in _NO_BODY or status < 200:
            return b""
        length = headers.get("content-length")
        encoding = headers.get("transfer-encoding")
        if encoding is not None and "chunked" in encoding.lower():
            return self._chunked()
        if length is None:  # framed by the server closing the connection
            self.at_eof = True
            return self._to_eof()
        if not (length.isascii() and length.isdigit()):
            raise ProtocolError(f"bad Content-Length {length!r}")
        return self.read_exact(int(length), "reply body ended early")

    def read_exact(self, size: int, early: str) -> bytes:
        """The next ``size`` bytes; ``ConnectionResetError(early)`` if the stream ends first."""
        data = self.pending
        have = len(data)
        if have >= size:
            if have == size:
                self.pending = b""
                return data
            self.pending = data[size:]
            return data[:size]
        self.pending = b""
        if size - have > JOIN_LIMIT:
            return self._read_in_place(data, size, early)
        parts = [data]
        while have < size:  # never past this reply: what follows stays in the socket
            chunk = self._recv(min(size - have, RECV_SIZE))
            if not chunk:
                raise ConnectionResetError(early)
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def _read_in_place(self, start: bytes, size: int, early: str) -> bytes:
        """A large body received into one buffer of its size.

        ``BytesIO.getvalue()`` hands over its buffer without a copy once no
        view is left (CPython), so the body costs its size once, not twice.
        """
        buffer = io.BytesIO()
        buffer.write(start)
        buffer.seek(size - 1)
        buffer.write(b"\0")  # grows the buffer to ``size``
        have = len(start)
        with buffer.getbuffer() as view:
            while have < size:
                count = self._recv_into(view[have:])
                if not count:
                    raise ConnectionResetError(early)
                have += count
        return buffer.getvalue()

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes of the stream into ``view``; 0 at its end."""
        data = self.pending
        if data:
            count = min(len(view), len(data))
            view[:count] = data[:count]
            self.pending = data[count:]
            return count
        try:
            return self._recv_into(view)
        except ConnectionResetError:
            return 0

    def _line(self) -> bytes:
        """One line (up to ``\\n``, at most ``MAX_LINE``) of a chunked body; b"" at the end."""
        data = self.pending
        end = data.find(b"\n")
        while end < 0 and len(data) <= MAX_LINE:
            more = self._recv_or_eof()
            if not more:
                self.pending = b""
                return data
            data += more
            end = data.find(b"\n")
        if end < 0:
            raise ProtocolError("reply line too long")
        self.pending = data[end + 1:]
        return data[:end + 1]

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.read_exact(size, "reply chunk ended early"))
            self._line()

    def _to_eof(self) -> bytes:
        parts = [self.pending]
        self.pending = b""
        while chunk := self._recv():
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self.sock.close()


#: header line -> (lower-case name, value): a sidecar repeats most of its lines
#: (``Server``, ``Connection``, a content type, a length, the same date for a
#: second, a version until the next write), and a lookup is cheaper than a parse.
_LINES: dict[str, tuple[str, str]] = {}
#: status line -> (status, HTTP/1.0?): the few a sidecar sends, each checked once
_STATUS_LINES: dict[str, tuple[int, bool]] = {}


def _status_line(line: str) -> tuple[int, bool]:
    parts = line.split(None, 2)
    if (len(parts) < 2 or not parts[0].startswith("HTTP/1.")
            or not (parts[1].isascii() and parts[1].isdigit()) or len(parts[1]) != 3):
        raise ProtocolError(f"bad status line {line[:80].encode('latin-1')!r}")
    parsed = (int(parts[1]), parts[0] == "HTTP/1.0")
    if len(_STATUS_LINES) < 256:
        _STATUS_LINES[line] = parsed
    return parsed


def _blank_line(data: bytes) -> int:
    """Index just past the first empty line (``\\r\\n`` or a bare ``\\n``), or -1."""
    crlf = data.find(b"\n\r\n")
    lf = data.find(b"\n\n", 0, None if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def _field(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon:
        raise ProtocolError(f"bad header line {line[:80].encode('latin-1')!r}")
    if len(_LINES) >= 2048:
        _LINES.clear()
    pair = _LINES[line] = (name.strip().lower(), value.strip())
    return pair


def _fields(lines: list[str]) -> dict[str, str]:
    """Header lines (after the status line; a trailing ``\\r`` is fine) as a dict
    with lower-case names. A repeated field becomes one comma-separated list
    (RFC 9110 5.3)."""
    if len(lines) > MAX_HEADERS + 1:
        raise ProtocolError("too many reply headers")
    del lines[0]
    pairs = list(map(_LINES.get, lines))
    if None in pairs:
        pairs = [pair or _field(line) for pair, line in zip(pairs, lines, strict=True)]
    headers = dict(pairs)  # type: ignore[arg-type]
    if len(headers) == len(pairs):
        return headers
    headers = {}
    for name, value in pairs:  # type: ignore[misc]
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
