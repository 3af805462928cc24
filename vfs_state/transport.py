"""HTTP/1.1 over a Unix socket, one keep-alive connection per thread.

Built on ``http.client`` rather than ``requests``: a small GET through
``requests-unixsocket`` costs about 0.45 ms more per call on this class of
machine (see docs/performance.md), which is most of the budget a state access
has. Connections are pooled per thread and dropped after ``fork`` so a
child never shares a socket with its parent.
"""
from __future__ import annotations

import http.client
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import quote

from vfs_state.errors import error_for_status, unreachable

_RETRYABLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
              http.client.CannotSendRequest, http.client.BadStatusLine)


def key_path(route: str, key: str) -> str:
    """``/keys/`` + the URL-encoded key (``/`` kept, everything else escaped)."""
    return route + quote(key, safe="/")


class UnixHTTPConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose transport is a Unix stream socket."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Reply:
    """A finished response: status, headers (lower-cased names) and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def etag(self) -> str | None:
        raw = self.headers.get("etag")
        if raw is None:
            return None
        raw = raw[2:] if raw.startswith("W/") else raw
        return raw.strip('"')


class Transport:
    """Requests to one sidecar; safe to share between threads and forks."""

    def __init__(self, socket_path: str, timeout: float = 60.0, where: str | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.where = where or socket_path
        self._pid = os.getpid()
        self._local = threading.local()
        #: Response body bytes received (for tests and benchmarks of ranged reads).
        self.bytes_received = 0

    def _idle(self) -> list[UnixHTTPConnection]:
        if os.getpid() != self._pid:  # forked: forget the parent's sockets
            self._pid = os.getpid()
            self._local = threading.local()
        idle = getattr(self._local, "idle", None)
        if idle is None:
            idle = self._local.idle = []
        return idle

    @contextmanager
    def connection(self) -> Iterator[UnixHTTPConnection]:
        """Borrow this thread's idle connection (or a new one) for one exchange.

        A connection that raised is closed, not returned: its state is unknown.
        """
        idle = self._idle()
        conn = idle.pop() if idle else UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.sock is not None:
            idle.append(conn)

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, key: str = "", ok: tuple[int, ...] = ()) -> Reply:
        """Send one request and read the whole reply; errors become exceptions.

        A reply with status >= 400 raises unless listed in ``ok``. A reused
        keep-alive connection that the sidecar closed meanwhile is retried
        once on a fresh connection.
        """
        for attempt in (0, 1):
            with self.connection() as conn:
                reused = conn.sock is not None
                try:
                    try:
                        conn.request(method, path, body=body, headers=dict(headers or {}))
                    except (BrokenPipeError, ConnectionResetError):
                        if body is None or conn.sock is None:
                            raise
                        # the sidecar may have refused the body early (413): read why
                    response = conn.getresponse()
                    data = response.read()
                except _RETRYABLE as exc:
                    conn.close()
                    if reused and attempt == 0:
                        continue
                    raise unreachable(self.where, exc) from exc
                except TimeoutError as exc:
                    conn.close()
                    raise TimeoutError(f"sidecar timed out [{self.where}]") from exc
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    conn.close()
                    raise unreachable(self.where, exc) from exc
                if response.will_close:
                    conn.close()
            self.bytes_received += len(data)
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            if reply.status >= 400 and reply.status not in ok:
                raise error_for_status(reply.status, data, key, self.where)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for conn in self._idle():
            conn.close()
        self._local = threading.local()
