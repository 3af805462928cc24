"""The differential oracle: one scenario, a real directory and a mount, same outcome.

A scenario is ``def scenario(base: str)`` using plain file APIs under
``base``. It runs once on a real temporary directory and once on a fresh
directory inside a mount; the outcomes (return value with ``base``
replaced by ``<base>``, or exception class and errno) must be equal. A
scenario registered with ``differs(...)`` documents a deliberate
difference: each side must match its stated outcome instead.
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Scenario = Callable[[str], Any]


@dataclass(frozen=True)
class Case:
    function: Scenario
    real: tuple | None = None    # expected outcomes when the behaviour differs on purpose
    mount: tuple | None = None
    reason: str = ""


SCENARIOS: dict[str, Case] = {}


def scenario(function: Scenario) -> Scenario:
    """Register a scenario whose outcome must be identical on both sides."""
    _register(function, Case(function))
    return function


def differs(reason: str, *, real: tuple, mount: tuple) -> Callable[[Scenario], Scenario]:
    """Register a documented difference (docs/coverage.md): each side's outcome."""
    def register(function: Scenario) -> Scenario:
        _register(function, Case(function, real, mount, reason))
        return function
    return register


def _register(function: Scenario, case: Case) -> None:
    name = function.__name__
    assert name not in SCENARIOS, f"duplicate scenario {name}"
    SCENARIOS[name] = case


def ok(value: Any) -> tuple:
    return ("ok", value)


def raises(cls: type[BaseException], number: int | None = None) -> tuple:
    return ("raise", cls.__name__, number)


def normalise(value: Any, base: str) -> Any:
    """Make a result comparable across the two bases."""
    if isinstance(value, pathlib.PurePath):
        value = str(value)
    if isinstance(value, str):
        return value.replace(base, "<base>")
    if isinstance(value, bytes):
        return value.replace(os.fsencode(base), b"<base>")
    if isinstance(value, (list, tuple)):
        return type(value)(normalise(v, base) for v in value)
    if isinstance(value, (set, frozenset)):
        return sorted(normalise(v, base) for v in value)
    if isinstance(value, dict):
        return {normalise(k, base): normalise(v, base) for k, v in value.items()}
    return value


def outcome(function: Scenario, base: str) -> tuple:
    """``("ok", value)`` or ``("raise", class name, errno)``."""
    try:
        value = function(base)
    except Exception as exc:  # noqa: BLE001 - the exception *is* the outcome
        return ("raise", type(exc).__name__, getattr(exc, "errno", None))
    return ("ok", normalise(value, base))


# -- helpers shared by the scenario modules ---------------------------------------

def touch(path: str, data: bytes = b"") -> None:
    """Write ``data`` to ``path`` with plain ``open`` (shimmed on a mount)."""
    with open(path, "wb") as handle:
        handle.write(data)


def tree(base: str) -> None:
    """a.txt, b/c.txt, b/d/e.txt, b/empty/"""
    touch(f"{base}/a.txt", b"A")
    os.makedirs(f"{base}/b/d")
    os.mkdir(f"{base}/b/empty")
    touch(f"{base}/b/c.txt", b"CC")
    touch(f"{base}/b/d/e.txt", b"EEE")
