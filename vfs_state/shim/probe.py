"""Checks the shim makes for itself: HEADs that are not the caller's observations.

SPEC §4: only what the caller observes counts for CAS, so a check the
library makes on its own (is this a directory? does the parent exist?)
uses ``observe=False`` and never refreshes a remembered version.
"""
from __future__ import annotations

from vfs_state.shim.router import Target


def kind(target: Target) -> str | None:
    """"file", "dir" or None (absent)."""
    return key_kind(target, target.key)


def key_kind(target: Target, key: str) -> str | None:
    """Like ``kind`` for another key on the same mount."""
    if not key:
        return "dir"
    stat = target.fs.client.stat(key, observe=False)
    if stat is None:
        return None
    return "file" if stat.is_file else "dir"
