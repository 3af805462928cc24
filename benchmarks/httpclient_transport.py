"""The client transport as it was before commit f061504: ``http.client`` underneath.

``vfs_state.transport.Transport`` now writes each request with one
``sendall`` and parses replies by hand (the change the transport experiment
measured first from the outside). This subclass keeps the ``http.client``
version, same contract, so the benchmarks can keep measuring the gain.
"""
from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import BinaryIO

from vfs_state.errors import error_for_status, unreachable
from vfs_state.transport import Reply, Transport, UnixHTTPConnection

_RETRYABLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
              http.client.CannotSendRequest, http.client.BadStatusLine)


class HttpClientTransport(Transport):
    """``Transport`` with the previous ``http.client`` request path."""

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | BinaryIO | None = None, key: str = "",
                ok: tuple[int, ...] = ()) -> Reply:
        for attempt in (0, 1):
            idle = self._http_idle()
            conn = idle.pop() if idle else UnixHTTPConnection(self.socket_path, self.timeout)
            reused = conn.sock is not None
            try:
                try:
                    conn.request(method, path, body=body, headers=dict(headers or {}))
                except (BrokenPipeError, ConnectionResetError):
                    if body is None or conn.sock is None:
                        raise
                response = conn.getresponse()
                data = response.read()
            except _RETRYABLE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise unreachable(self.where, exc) from exc
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                conn.close()
                raise unreachable(self.where, exc) from exc
            if response.will_close:
                conn.close()
            else:
                idle.append(conn)
            self.bytes_received += len(data)
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                          data)
            if reply.status >= 400 and reply.status not in ok:
                raise error_for_status(reply.status, data, key, self.where)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _http_idle(self) -> list[UnixHTTPConnection]:
        idle = self._idle()  # resets after fork
        pool = getattr(self._local, "http_idle", None)
        if pool is None:
            pool = self._local.http_idle = []
        del idle
        return pool

    def close(self) -> None:
        for conn in getattr(self._local, "http_idle", []):
            conn.close()
        super().close()
