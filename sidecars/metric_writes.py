"""A request's metric updates written together, straight to the multiprocess files.

Each ``inc`` or ``observe`` of a ``prometheus_client`` metric in
multiprocess mode takes the library's process-wide lock, checks the pid
and finds its slot in the worker's file: 1.5-2 µs per counter and 4 per
histogram on the benchmark machine, and a request made six to eight of
them (docs/performance.md). ``write`` applies a batch of increments under
one lock with one pid check, to the same slots and with the same values the
library would write, so ``/metrics`` reads exactly what it read before. A
fork is noticed by an ``os.register_at_fork`` hook instead of a ``getpid``
system call per update.

It uses the library's value objects (``_value``, ``_file``, ``_key``; a
histogram's ``_sum``, ``_buckets``, ``_upper_bounds``) and the file's slot
positions and map (``_positions``, ``_m``; a slot is 16 bytes, two doubles). Where those are not
there (single-process mode, or a release that renamed them) ``Counting``
and ``Timing`` fall back to the public ``inc`` and ``observe``;
tests/test_metrics.py checks that the direct path is the one in use and
that both give the same exposition. Only the series made here are written
directly, and always here, so the library's own calls never update the
same value at the same time; a slot is created by the library (``labels()``
writes it before this module sees it), so the file layout is only ever
changed by the library, under its lock.
"""
from __future__ import annotations

import os
import struct
import threading
from bisect import bisect_left
from typing import Any

_lock = threading.Lock()
_forked = False  # in a child of fork() until the library has moved to its own files
Updates = list[tuple[Any, float]]
_pack = struct.Struct("dd").pack  # a slot: the value and its timestamp (0.0 for these)


def _after_fork() -> None:
    """In the child: a fresh lock (the parent's could be held), and the files to move."""
    global _lock, _forked
    _lock = threading.Lock()
    _forked = True


os.register_at_fork(after_in_child=_after_fork)  # no getpid() per request


def _direct(value: Any) -> bool:
    """Whether ``value`` is a multiprocess value this module can write itself."""
    file = getattr(value, "_file", None)
    positions = getattr(file, "_positions", None)
    return (isinstance(positions, dict) and hasattr(file, "_m")
            and getattr(value, "_key", None) in positions
            and isinstance(getattr(value, "_value", None), float) and callable(value.get))


class Counting:
    """A counter or gauge series: ``add`` queues an increment for ``write``."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        value = getattr(child, "_value", None)
        self.value = value if _direct(value) else None

    def add(self, updates: Updates, amount: float = 1.0) -> None:
        if self.value is None:
            self.child.inc(amount)
        else:
            updates.append((self.value, amount))


class Timing:
    """A histogram series: ``add`` queues an observation (its sum and its bucket)."""

    __slots__ = ("child", "sum", "buckets", "bounds")

    def __init__(self, child: Any) -> None:
        self.child = child
        total, buckets = getattr(child, "_sum", None), getattr(child, "_buckets", None)
        bounds = getattr(child, "_upper_bounds", None)
        usable = (_direct(total) and isinstance(buckets, list) and isinstance(bounds, list)
                  and len(buckets) == len(bounds) and all(map(_direct, buckets)))
        self.sum = total if usable else None
        self.buckets: list[Any] = buckets if usable else []  # type: ignore[assignment]
        self.bounds: list[float] = bounds if usable else []  # type: ignore[assignment]

    def add(self, updates: Updates, seconds: float) -> None:
        if self.sum is None:
            self.child.observe(seconds)
            return
        # the first bucket whose bound is >= the value, as observe() picks it
        updates.append((self.sum, seconds))
        updates.append((self.buckets[bisect_left(self.bounds, seconds)], 1.0))


def write(updates: Updates) -> None:
    """Add each amount to its value and its file slot, all under one lock."""
    if not updates:
        return
    if _forked:
        _move(updates[0][0])
    with _lock:
        for value, amount in updates:
            total = value._value + amount
            value._value = total
            # MmapedDict.write_value for a key it already holds, without two calls
            file = value._file
            position = file._positions[value._key]
            file._m[position:position + 16] = _pack(total, 0.0)


def _move(value: Any) -> None:
    """A new process: let the library move every value to this pid's files first."""
    global _forked
    with _lock:
        if _forked:
            value.get()  # the library's pid check: reopens the files, rereads the values
            _forked = False
