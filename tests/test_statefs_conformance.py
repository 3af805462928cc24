"""pyfilesystem2's own conformance suite, run against StateFS over real sidecars."""
from __future__ import annotations

import unittest
import uuid

import pytest

from vfs_state import StateFS
from vfs_state._pyfs import errors  # noqa: F401  (keeps fs behind one import)

with __import__("warnings").catch_warnings():
    __import__("warnings").simplefilter("ignore")
    from fs.test import FSTestCases


@pytest.fixture(scope="class")
def _sidecar(request, local_sidecar):
    request.cls.socket_path = local_sidecar.socket_path


@pytest.mark.usefixtures("_sidecar")
class TestStateFSLocal(FSTestCases, unittest.TestCase):
    socket_path: str

    def make_fs(self):
        fs = StateFS(self.socket_path)
        return fs.makedir(f"run-{uuid.uuid4().hex}")
