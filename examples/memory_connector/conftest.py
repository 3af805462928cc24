"""The conformance kit's one hook: a fixture giving the socket of a running sidecar."""
from __future__ import annotations

import pytest

from vfs_state.testing import start_sidecar


@pytest.fixture(scope="session")
def vfs_state_socket():
    # One worker: this backend keeps its objects in the worker's memory.
    with start_sidecar("memory_connector", {"VFS_STATE_CONSISTENCY": "cas"},
                       workers=1) as sidecar:
        yield sidecar.socket_path
