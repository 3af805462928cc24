"""Backend clients built lazily, once per worker process: never shared across a fork.

gunicorn forks its workers from the master. A client made before the fork
(with ``--preload``, or by a test) would share its sockets, locks and event
loop threads with every child, so each backend keeps its client here: the
first call in a process builds it, and a process that finds one built by its
parent builds its own.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_pid = os.getpid()  # this process's; kept by the fork hook below, not asked per call


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


class PerProcess(Generic[T]):
    """One ``factory()`` result per process (or per thread of a process).

    ``per_thread`` gives each thread its own, for clients that are not
    thread-safe. A value is stored with the pid and the generation it was
    made for, as one tuple, so a reader never pairs one process's pid with
    another's value, and ``pop_all`` retires every thread's value at once.
    """

    def __init__(self, factory: Callable[[], T], *, per_thread: bool = False) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._slot: Any = threading.local() if per_thread else _Slot()
        self._generation = 0
        self._built: list[tuple[int, T]] = []  # (pid, value) of the current generation

    def get(self) -> T:
        key = (_pid, self._generation)  # a getpid() system call saved on every request
        entry = getattr(self._slot, "entry", None)
        if entry is not None and entry[0] == key:
            return entry[1]
        with self._lock:
            entry = getattr(self._slot, "entry", None)
            key = (_pid, self._generation)
            if entry is None or entry[0] != key:
                entry = (key, self._factory())
                self._slot.entry = entry
                self._built.append((key[0], entry[1]))
            return entry[1]

    def pop_all(self) -> list[T]:
        """Every value this process built, forgotten, for the caller to close.

        Values inherited from a parent process are forgotten but not
        returned: they belong to the parent, which closes them. The next
        ``get`` builds a new value.
        """
        pid = os.getpid()
        with self._lock:
            self._generation += 1
            built, self._built = self._built, []
        return [value for owner, value in built if owner == pid]


class _Slot:
    entry: tuple[tuple[int, int], Any] | None = None
