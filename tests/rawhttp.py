"""Raw HTTP over a Unix socket, for tests that must send what clients never would."""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import quote, urlencode

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


def key_url(key: str) -> str:
    return "/keys/" + quote(key, safe="/")


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


def header_names(headers: dict[str, str]) -> dict[str, str]:
    """``If_Match="..."`` keyword arguments as HTTP header names."""
    return {name.replace("_", "-"): value for name, value in headers.items()}


class RawClient:
    """Raw HTTP to one sidecar socket, a fresh connection per request.

    Replies are ``(status, headers, body)``; headers look up case-insensitively.
    """

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def request(self, method: str, path: str, body: object = None,
                headers: dict[str, str] | None = None,
                chunked: bool = False) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = UnixHTTPConnection(self.socket_path)
        try:
            try:
                conn.request(method, path, body=body, headers=headers or {},
                             encode_chunked=chunked)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered early (413) and closed: the answer is still readable
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def put(self, key: str, data: bytes, **headers: str):  # noqa: ANN201
        return self.request("PUT", key_url(key), data, header_names(headers))

    def get(self, key: str, **headers: str):  # noqa: ANN201
        return self.request("GET", key_url(key), None, header_names(headers))

    def head(self, key: str):  # noqa: ANN201
        return self.request("HEAD", key_url(key))

    def delete(self, key: str, **headers: str):  # noqa: ANN201
        return self.request("DELETE", key_url(key), None, header_names(headers))

    def list(self, prefix: str, delimiter: str | None = "/", **params: object) -> dict:
        query = {"prefix": prefix, **params}
        if delimiter:
            query["delimiter"] = delimiter
        status, _, body = self.request("GET", "/keys/?" + urlencode(query))
        assert status == 200, body
        return json.loads(body)

    def list_all(self, prefix: str, delimiter: str | None = "/",
                 max_keys: int = 1000) -> tuple[list[str], list[str], int]:
        """Follow ``next`` cursors; returns ``(keys, prefixes, pages)``."""
        keys: list[str] = []
        prefixes: list[str] = []
        cursor, pages = None, 0
        while True:
            params: dict[str, object] = {"max_keys": max_keys}
            if cursor:
                params["start_after"] = cursor
            page = self.list(prefix, delimiter, **params)
            assert len(page["keys"]) + len(page["prefixes"]) <= max_keys
            keys += page["keys"]
            prefixes += page["prefixes"]
            pages += 1
            cursor = page.get("next")
            if not cursor:
                return keys, prefixes, pages


__all__ = ["request", "key_url", "send_raw", "status_of", "error_code", "RawClient",
           "header_names"]
