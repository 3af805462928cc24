"""numpy: ``_datasource`` keeps ``open`` in a dict built at import time.

``loadtxt``/``savetxt``/``genfromtxt`` open through that dict, so numpy
imported before ``install()`` would keep the real ``open``. The entry is
replaced by a function that calls whatever ``builtins.open`` is now.
"""
from __future__ import annotations

import builtins
from types import ModuleType
from typing import Any

from vfs_state.shim.router import MountTable


def _current_open(*args: Any, **kwargs: Any) -> Any:
    return builtins.open(*args, **kwargs)


def _patch(module: ModuleType, table: MountTable) -> list[tuple[object, str, object]]:
    openers = getattr(getattr(module, "_file_openers", None), "_file_openers", None)
    if not isinstance(openers, dict) or None not in openers:
        return []
    original = openers[None]
    openers[None] = _current_open
    return [(openers, None, original)]  # type: ignore[list-item]


MODULES = {"numpy.lib._datasource": _patch}
