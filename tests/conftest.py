"""Shared fixtures: real sidecars under gunicorn on Unix sockets."""
from __future__ import annotations

import tempfile

import pytest

from tests.harness.sidecar import Sidecar


@pytest.fixture(scope="session")
def local_sidecar():
    """A ``local-buffered-cas`` sidecar on a private directory."""
    root = tempfile.mkdtemp(prefix="vfs-local-")
    sidecar = Sidecar("local-buffered-cas", {"STATE_ROOT": root})
    sidecar.root = root
    with sidecar:
        yield sidecar
