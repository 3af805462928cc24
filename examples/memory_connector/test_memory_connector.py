"""The memory connector against the vfs-state conformance kit."""
from __future__ import annotations

import os
import unittest

from hypothesis import settings

from vfs_state.testing import ConformanceSuite, StateFSSuite

EXAMPLES = int(os.environ.get("KIT_EXAMPLES", "25"))


class TestConformance(ConformanceSuite):
    cas = True  # the backend honours If-Match / If-None-Match
    settings = settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None)


class TestFileSystem(StateFSSuite, unittest.TestCase):
    """pyfilesystem2's FSTestCases over this connector."""
