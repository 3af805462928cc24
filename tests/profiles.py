"""Which test profile runs: the short CI one, or the deep one for local runs.

``VFS_STATE_DEEP=1`` or ``HYPOTHESIS_PROFILE=deep`` asks for the deep one:
longer fuzzing and the sampled parametrisations in full (docs/testing.md).
"""
from __future__ import annotations

import os

DEEP = os.environ.get("VFS_STATE_DEEP") == "1" or os.environ.get("HYPOTHESIS_PROFILE") == "deep"
