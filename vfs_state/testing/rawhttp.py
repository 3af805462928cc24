"""Raw HTTP to a sidecar, for checks that must send what clients never would.

The conformance suite writes behind every client's back with it (an outside
writer) and sends ``If-Match`` values no client would produce.
"""
from __future__ import annotations

import builtins
import http.client
import json
from urllib.parse import quote, urlencode

from vfs_state.transport import UnixHTTPConnection


def key_url(key: str) -> str:
    """The protocol path of ``key`` (``/keys/...``, percent-encoded)."""
    return "/keys/" + quote(key, safe="/")


def header_names(headers: dict[str, str]) -> dict[str, str]:
    """``If_Match="..."`` keyword arguments as HTTP header names."""
    return {name.replace("_", "-"): value for name, value in headers.items()}


Reply = tuple[int, http.client.HTTPMessage, bytes]


class RawClient:
    """Raw HTTP to one sidecar socket, a fresh connection per request.

    Replies are ``(status, headers, body)``; headers look up case-insensitively.
    """

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def request(self, method: str, path: str, body: object = None,
                headers: dict[str, str] | None = None, chunked: bool = False) -> Reply:
        conn = UnixHTTPConnection(self.socket_path)
        try:
            try:
                conn.request(method, path, body=body, headers=headers or {},  # type: ignore[arg-type]
                             encode_chunked=chunked)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered early (413) and closed: the answer is still readable
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def put(self, key: str, data: bytes, **headers: str) -> Reply:
        return self.request("PUT", key_url(key), data, header_names(headers))

    def get(self, key: str, **headers: str) -> Reply:
        return self.request("GET", key_url(key), None, header_names(headers))

    def head(self, key: str) -> Reply:
        return self.request("HEAD", key_url(key))

    def delete(self, key: str, **headers: str) -> Reply:
        return self.request("DELETE", key_url(key), None, header_names(headers))

    def list(self, prefix: str, delimiter: str | None = "/", **params: object) -> dict:
        query = {"prefix": prefix, **params}
        if delimiter:
            query["delimiter"] = delimiter
        status, _, body = self.request("GET", "/keys/?" + urlencode(query))
        assert status == 200, body
        return json.loads(body)

    def list_all(self, prefix: str, delimiter: str | None = "/",
                 max_keys: int = 1000) -> tuple[builtins.list[str], builtins.list[str], int]:
        """Follow ``next`` cursors; returns ``(keys, prefixes, pages)``."""
        keys: builtins.list[str] = []
        prefixes: builtins.list[str] = []
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
