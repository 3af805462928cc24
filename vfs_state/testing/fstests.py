"""pyfilesystem2's own conformance suite (``fs.test.FSTestCases``) over a sidecar.

``FSTestCases`` treats directories as real and moves files of several MiB,
so it checks what the Hypothesis suite does not: markers, ``makedir`` and
``removedir`` rules, copies, moves, uploads, text modes, errors.
"""
from __future__ import annotations

import unittest
import uuid
import warnings
from typing import Any, ClassVar

import pytest

from vfs_state.statefs import StateFS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # fs imports pkg_resources
    from fs.test import FSTestCases


class StateFSSuite(FSTestCases):
    """Mixin: all ``FSTestCases`` against ``StateFS`` on the sidecar of ``vfs_state_socket``.

    Subclass it together with ``unittest.TestCase``; pytest runs it and
    supplies the socket path from the ``vfs_state_socket`` fixture you
    define (see ``vfs_state.testing``). Each test gets a fresh directory.

    Attributes:
        skips: test name -> reason, for limits the backend documents (a
            size cap, say); the test is reported as skipped with the reason.
        write_mode: ``"buffered"`` or ``"passthrough"``.
    """

    skips: ClassVar[dict[str, str]] = {}
    write_mode: ClassVar[str] = "buffered"
    socket_path: str = ""

    @pytest.fixture(autouse=True)
    def _vfs_state_bind(self, vfs_state_socket: Any) -> None:
        self.socket_path = str(vfs_state_socket)

    def make_fs(self) -> Any:
        reason = self.skips.get(self._testMethodName)  # type: ignore[attr-defined]
        if reason:
            raise unittest.SkipTest(reason)
        root = StateFS(self.socket_path, self.write_mode)
        return root.makedir(f"run-{uuid.uuid4().hex}")
