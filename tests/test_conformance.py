"""Run the conformance suite (``vfs_state.testing``) against every connector, and check
the suite can fail."""
from __future__ import annotations

import multiprocessing
import uuid

import pytest
from hypothesis import settings

from tests.connectors import ALL_CONNECTORS, is_cas, write_mode
from vfs_state import StateFS, retry_on_conflict
from vfs_state.testing import run_conformance


@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_conformance(connector_pool, connector):
    sidecar = connector_pool.sidecar(connector)
    run_conformance(sidecar.socket_path, cas=is_cas(connector),
                    write_mode=write_mode(connector),
                    real_directories=connector.startswith("local-"),
                    content_versions=connector.startswith("s3-"))


def test_suite_catches_a_broken_cas(connector_pool):
    """An LWW sidecar posing as CAS skips the version check: the suite must notice."""
    sidecar = connector_pool.sidecar("local-buffered-lww")
    # Enough room to find the bug whatever the profile; the run stops at the first failure.
    search = settings(max_examples=1000, stateful_step_count=40, deadline=None,
                      report_multiple_bugs=False)
    with pytest.raises(AssertionError, match="CAS not enforced"):
        run_conformance(sidecar.socket_path, cas=True, real_directories=True, settings=search)


def _increment(socket_path: str, key: str, count: int) -> int:
    fs = StateFS(socket_path)
    conflicts = 0

    def once() -> None:
        nonlocal conflicts
        value = int(fs.readtext(key))
        try:
            fs.writetext(key, str(value + 1))
        except FileExistsError:
            conflicts += 1
            raise

    for _ in range(count):
        retry_on_conflict(once, attempts=200, backoff=0.002, max_backoff=0.05)
    return conflicts


@pytest.mark.parametrize("connector", [c for c in ALL_CONNECTORS if is_cas(c)])
def test_concurrent_increments_lose_no_update(connector_pool, connector):
    """N processes doing retry_on_conflict increments of one key: every one lands."""
    socket_path = connector_pool.sidecar(connector).socket_path
    key = f"counter-{uuid.uuid4().hex}"
    StateFS(socket_path).writetext(key, "0")
    processes, each = 4, 10
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.starmap(_increment, [(socket_path, key, each)] * processes)
    assert StateFS(socket_path).readtext(key) == str(processes * each)
