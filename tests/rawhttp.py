"""Raw HTTP over a Unix socket, for tests that must send what clients never would.

``RawClient`` lives in the conformance kit (``vfs_state.testing``); the
lower-level helpers here are for the project's own protocol tests.
"""
from __future__ import annotations

import json
import socket

from vfs_state.testing.rawhttp import RawClient, header_names, key_url
from vfs_state.transport import UnixHTTPConnection


def request(socket_path: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(socket_path, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def send_raw(socket_path: str, data: bytes, read_reply: bool = True) -> bytes:
    """Write raw bytes, then read until the server closes (or 5 s pass)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(socket_path)
    try:
        sock.sendall(data)
        if not read_reply:
            return b""
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def status_of(raw_reply: bytes) -> int:
    return int(raw_reply.split(b" ", 2)[1]) if raw_reply.startswith(b"HTTP/") else 0


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]


__all__ = ["request", "key_url", "send_raw", "status_of", "error_code", "RawClient",
           "header_names"]
