"""``vfs-state`` operator verbs: ``ls``, ``cat``, ``cp``, ``rm``, ``stat``, ``xattr``, ``health``.

``register(parser, verbs)`` adds them to the ``vfs-state`` parser built in
``vfs_state.cli``; ``dispatch(args)`` runs the chosen one and turns every
failure into one ``vfs-state: ...`` line and a Unix exit code (0 ok,
1 the operation failed, 2 bad usage). Storage is reached through
``StateFS``, one per sidecar socket. See docs/cli.md.
"""
from __future__ import annotations

import argparse

from vfs_state.tools.parser import dispatch, register

__all__ = ["register", "dispatch"]


def is_tool(args: argparse.Namespace) -> bool:
    """True when ``args`` chose one of these verbs (not ``run``)."""
    return getattr(args, "tool", None) is not None
