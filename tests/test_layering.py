"""The shim and the command-line tools reach storage only through ``StateFS``.

docs/architecture.md draws one door: shim -> StateFS -> client -> transport.
A module under ``vfs_state/shim`` or ``vfs_state/tools`` that imports the
client layers or reaches through ``StateFS.client`` bypasses the rules
``StateFS`` keeps (CAS observations, error translation, moves), so it fails here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vfs_state"
BELOW_THE_DOOR = {"vfs_state.client", "vfs_state.reader", "vfs_state.versions",
                  "vfs_state.transport", "vfs_state.connection", "vfs_state.writers"}
#: ``vfs-state health`` asks the sidecar itself (``/healthz``, ``/readyz``), not storage.
NOT_STORAGE = {PACKAGE / "tools" / "probe.py"}
ABOVE_THE_DOOR = sorted(p for d in ("shim", "tools") for p in (PACKAGE / d).rglob("*.py")
                        if p not in NOT_STORAGE)


def _violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            found += [f"line {node.lineno}: imports {n}" for n in names & BELOW_THE_DOOR]
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names
                      if a.name in BELOW_THE_DOOR]
        elif isinstance(node, ast.Attribute) and node.attr == "client":
            found.append(f"line {node.lineno}: reaches through .client")
    return found


@pytest.mark.parametrize("module", ABOVE_THE_DOOR, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_statefs_is_the_door(module):
    assert _violations(module.read_text()) == []


def test_the_check_sees_a_bypass():
    bypass = ("from vfs_state.versions import current_store\n"
              "from vfs_state import client\n"
              "def f(target):\n    return target.fs.client.stat(target.key)\n")
    assert len(_violations(bypass)) == 3
