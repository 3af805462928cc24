"""Uploads in flight in this worker, so a stopping worker can abort them.

A multipart (S3) or resumable (GCS) upload is aborted by the request that
started it when anything goes wrong (``try/except BaseException``). One case
escapes that: a worker whose ``graceful_timeout`` runs out exits with the
request's thread still inside the upload, and the thread never reaches its
``except``. The worker calls ``abort_all()`` just before it exits. A SIGKILL
leaves the upload behind for the bucket's lifecycle rule
(docs/connectors/s3.md, gcs.md).
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("vfs_state.sidecar.uploads")

_lock = threading.Lock()
_live: dict[int, Callable[[], None]] = {}
_tokens = itertools.count()


@contextmanager
def tracked(abort: Callable[[], None]) -> Iterator[None]:
    """Register ``abort`` for the duration of an upload (the upload aborts itself on error)."""
    token = next(_tokens)
    with _lock:
        _live[token] = abort
    try:
        yield
    except BaseException:
        with _lock:  # not if abort_all() took (and counted) it already
            mine = _live.pop(token, None) is not None
        if mine:
            _count_aborted(1)  # the upload aborts itself on the way out
        raise
    finally:
        with _lock:
            _live.pop(token, None)


def in_flight() -> int:
    with _lock:
        return len(_live)


def abort_all() -> int:
    """Abort every upload still registered; returns how many were tried."""
    with _lock:
        aborts = list(_live.values())
        _live.clear()
    for abort in aborts:
        try:
            abort()
        except Exception:  # noqa: BLE001 - one failed abort must not stop the others
            log.exception("could not abort an upload in flight")
    if aborts:
        _count_aborted(len(aborts))
        log.warning("aborted %d upload(s) still in flight at worker exit", len(aborts))
    return len(aborts)


def _count_aborted(count: int) -> None:
    from sidecars import metrics  # imported by workers only, once the metrics directory exists

    metrics.upload_aborted(count)
