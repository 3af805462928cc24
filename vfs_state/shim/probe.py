"""Checks the shim makes for itself: ``StateFS.probe``, never an observation.

Only what the caller observes counts for compare-and-set
(docs/consistency.md), so a check the library makes on its own (is this a
directory? does the parent exist?) must not refresh a remembered version.
"""
from __future__ import annotations

from vfs_state.shim.errors import converted
from vfs_state.shim.router import Target


def kind(target: Target) -> str | None:
    """"file", "dir" or None (absent)."""
    return key_kind(target, target.key)


def key_kind(target: Target, key: str) -> str | None:
    """Like ``kind`` for another key on the same mount."""
    if not key:
        return "dir"
    with converted(target):
        info = target.fs.probe("/" + key)
    if info is None:
        return None
    return "dir" if info.is_dir else "file"
