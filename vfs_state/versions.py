"""What the client remembers for compare-and-set (docs/consistency.md).

For each key the client has *observed* (read, stat, write, delete) the store
keeps the version it saw, or that the key was absent. A later write sends
that back as ``If-Match`` / ``If-None-Match: *``; the sidecar refuses with
412 if the stored object moved on. The memory lives here in the client, so
CAS holds across gunicorn workers, sidecar restarts and several clients.

``session()`` scopes the memory to one message; outside a session a
per-process store is used.
"""
from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

#: Marker for "observed absent" (distinct from "never observed").
ABSENT = None
_UNSEEN = object()


class VersionStore:
    """Versions observed per ``(store, key)``; ``store`` names one sidecar."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], str | None] = {}

    def observe(self, store: str, key: str, version: str | None) -> None:
        """Remember ``version`` (``ABSENT`` for a key seen missing).

        One dict store, atomic on its own: no lock (every read and write
        records one, so it is on the hot path).
        """
        self._seen[(store, key)] = version

    def lookup(self, store: str, key: str) -> object:
        """The remembered version, ``ABSENT``, or ``UNSEEN`` when never observed."""
        return self._seen.get((store, key), _UNSEEN)

    def preconditions(self, store: str, key: str) -> dict[str, str]:
        """Headers making a write conditional on what was observed (if anything)."""
        return precondition_headers(self.lookup(store, key))

    def __len__(self) -> int:
        return len(self._seen)


UNSEEN = _UNSEEN


def precondition_headers(seen: object) -> dict[str, str]:
    """``If-Match`` for a version, ``If-None-Match: *`` for absent, nothing if unseen."""
    if seen is _UNSEEN:
        return {}
    if seen is ABSENT:
        return {"If-None-Match": "*"}
    return {"If-Match": f'"{seen}"'}


_process_store = VersionStore()
_current: contextvars.ContextVar[VersionStore | None] = contextvars.ContextVar(
    "vfs_state_versions", default=None)


def current_store() -> VersionStore:
    """The active session's store, or the per-process one."""
    store = _current.get()
    return _process_store if store is None else store


@contextmanager
def session(store: VersionStore | None = None) -> Iterator[VersionStore]:
    """Scope remembered versions to a block (one message, one attempt).

    Pass ``store`` to resume an earlier session (e.g. one message handled
    across several threads, or one simulated client in a test).
    """
    store = VersionStore() if store is None else store
    token = _current.set(store)
    try:
        yield store
    finally:
        _current.reset(token)


def _outcome_unknown(exc: BaseException) -> bool:
    """A write that may or may not have been applied (see ``vfs_state.transport``)."""
    return bool(getattr(exc, "outcome_unknown", False))


def retry_on_conflict(fn: Callable[[], T], attempts: int = 5, backoff: float = 0.05,
                      max_backoff: float = 2.0, *, idempotent: bool = False) -> T:
    """Run ``fn`` in a fresh ``session()``; on ``FileExistsError`` run it again.

    Each attempt starts with no remembered versions, so ``fn`` re-reads what
    it depends on. Waits between attempts grow exponentially with full jitter
    (a random time up to ``backoff * 2**attempt``, capped at ``max_backoff``)
    so contending writers spread out. The last conflict is re-raised.

    A conflict (412) proves ``fn``'s write was *not* applied, so running
    ``fn`` again applies it once. A write whose reply was lost
    (``OutcomeUnknownError``, or a ``TimeoutError`` with ``outcome_unknown``)
    may have been applied: running ``fn`` again could apply it twice, so that
    error propagates, unless ``idempotent=True`` says ``fn`` notices its own
    earlier effect (say an operation id stored with the data) and then does
    nothing. Rule and pattern: docs/consistency.md.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts):
        with session():
            try:
                return fn()
            except FileExistsError:
                if attempt == attempts - 1:
                    raise
            except OSError as exc:
                if not (idempotent and _outcome_unknown(exc)) or attempt == attempts - 1:
                    raise
        time.sleep(random.uniform(0, min(max_backoff, backoff * (2 ** attempt))))
    raise AssertionError("unreachable")  # pragma: no cover
