"""Names bound before install: ``from os import stat``, ``_open = open``.

A module that copied a patched function into its own namespace keeps
calling the original unless that binding is replaced too. Like pyfakefs we
scan ``sys.modules``; unlike its name matching we replace by identity: a
module attribute that *is* an original we patch is pointed at the
replacement, and restored on uninstall. Not reached: copies held in
closures, default arguments, class bodies, containers, or C extensions.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from types import ModuleType

#: Modules never rewritten: ours (they must call the real functions) and
#: importlib's bootstrap (it runs every import).
SKIP_PREFIXES = ("vfs_state.", "importlib._bootstrap")
SKIP_NAMES = frozenset({"vfs_state", "sys", "builtins"})


def _scannable() -> Iterator[tuple[ModuleType, dict]]:
    """``(module, namespace)`` of loaded Python modules worth scanning."""
    for name, module in list(sys.modules.items()):
        if name in SKIP_NAMES or name.startswith(SKIP_PREFIXES):
            continue
        if not isinstance(module, ModuleType) or getattr(module, "__file__", None) is None:
            continue  # builtin and frozen-without-file modules: the C originals live there
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            yield module, namespace


def rebind(mapping: Mapping[int, tuple[object, object]]) -> list[tuple[ModuleType, str, object]]:
    """Point every module attribute ``is`` a key of ``mapping`` at its new value.

    Args:
        mapping: ``id(old) -> (old, new)``; ``old`` is kept alive by the caller.

    Returns:
        ``(module, attribute, old)`` for each binding changed, for restoring.
    """
    changed: list[tuple[ModuleType, str, object]] = []
    for module, namespace in _scannable():
        if mapping.keys().isdisjoint(map(id, list(namespace.values()))):
            continue  # most modules (a C-level check: this runs at every start)
        hits = [(attr, value) for attr, value in list(namespace.items())
                if id(value) in mapping and mapping[id(value)][0] is value]
        for attr, value in hits:
            namespace[attr] = mapping[id(value)][1]
            changed.append((module, attr, value))
    return changed
