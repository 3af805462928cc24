"""``http.client`` over a Unix socket, for the passthrough upload and simple probes.

Kept apart from ``transport`` so that importing the client does not import
``http.client`` (and ``email.parser`` with it) at interpreter start;
``vfs_state.transport.UnixHTTPConnection`` loads it on first use.
"""
from __future__ import annotations

import http.client

from vfs_state.transport import SEND_BLOCK, _connect


class UnixHTTPConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose transport is a Unix stream socket."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=SEND_BLOCK)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = _connect(self.socket_path, 60.0 if self.timeout is None else self.timeout)
