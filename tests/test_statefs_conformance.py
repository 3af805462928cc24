"""pyfilesystem2's own conformance suite (FSTestCases), run against StateFS over real sidecars.

Skips are listed here with the backend reason, and in docs/testing.md.
"""
from __future__ import annotations

import unittest
import uuid
import warnings

import pytest

from vfs_state import StateFS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # fs imports pkg_resources
    from fs.test import FSTestCases

#: connector -> {test name: reason}
SKIPS: dict[str, dict[str, str]] = {
    "nats-kv-buffered-cas": {
        name: "NATS KV values are limited to the server's max payload (1 MiB by default); "
              "this test moves files of several MiB"
        for name in ("test_upload_0", "test_upload_1", "test_upload_2", "test_upload_4",
                     "test_download_0", "test_download_1", "test_download_2", "test_download_4")
    },
}


class _StateFSCases(FSTestCases):
    connector = ""
    socket_path = ""

    def make_fs(self):
        reason = SKIPS.get(self.connector, {}).get(self._testMethodName)
        if reason:
            raise unittest.SkipTest(reason)
        return StateFS(self.socket_path).makedir(f"run-{uuid.uuid4().hex}")


@pytest.fixture(scope="class", autouse=True)
def _bind_sidecar(request, connector_pool):
    if request.cls is not None and issubclass(request.cls, _StateFSCases):
        request.cls.socket_path = connector_pool.sidecar(request.cls.connector).socket_path


def _bind(connector: str) -> type:
    name = "TestStateFS_" + connector.replace("-", "_")
    return type(name, (_StateFSCases, unittest.TestCase), {"connector": connector})


TestStateFS_local = _bind("local-buffered-cas")
TestStateFS_s3 = _bind("s3-buffered-cas")
TestStateFS_gcs = _bind("gcs-buffered-cas")
TestStateFS_redis = _bind("redis-buffered-cas")
TestStateFS_nats = _bind("nats-kv-buffered-cas")
