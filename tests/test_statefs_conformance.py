"""pyfilesystem2's own conformance suite (FSTestCases), run against StateFS over real sidecars.

The binding is the kit's ``StateFSSuite`` (``vfs_state.testing``), as a
third-party connector uses it; each class names its connector. Skips are
listed here with the backend reason, and in docs/testing.md.
"""
from __future__ import annotations

import unittest

import pytest

from vfs_state.testing import StateFSSuite

NATS_SKIPS = {
    name: "NATS KV values are limited to the server's max payload (1 MiB by default); "
          "this test moves files of several MiB"
    for name in ("test_upload_0", "test_upload_1", "test_upload_2", "test_upload_4",
                 "test_download_0", "test_download_1", "test_download_2", "test_download_4")
}


@pytest.fixture(scope="class")
def vfs_state_socket(request, connector_pool):
    """The kit's hook: the socket of the sidecar for the class's ``connector``."""
    return connector_pool.sidecar(request.cls.connector).socket_path


def _bind(connector: str, skips: dict[str, str] | None = None) -> type:
    name = "TestStateFS_" + connector.replace("-", "_")
    return type(name, (StateFSSuite, unittest.TestCase),
                {"connector": connector, "skips": skips or {}})


TestStateFS_local = _bind("local-buffered-cas")
TestStateFS_s3 = _bind("s3-buffered-cas")
TestStateFS_gcs = _bind("gcs-buffered-cas")
TestStateFS_redis = _bind("redis-buffered-cas")
TestStateFS_nats = _bind("nats-kv-buffered-cas", NATS_SKIPS)
