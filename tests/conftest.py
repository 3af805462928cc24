"""Shared fixtures: real backend servers and gunicorn sidecars on Unix sockets."""
from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

from tests.connectors import ConnectorPool
from tests.harness.sidecar import Sidecar

# Hypothesis profiles: "ci" keeps the whole run short, "deep" digs for local runs.
settings.register_profile("ci", max_examples=20, stateful_step_count=15, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("dev", max_examples=25, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("deep", max_examples=300, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the tests a module's ``ci_profile_keeps(nodeid)`` leaves out of the CI profile."""
    kept, dropped = [], []
    for item in items:
        keeps = getattr(getattr(item, "module", None), "ci_profile_keeps", None)
        (dropped if keeps is not None and not keeps(item.nodeid) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def local_sidecar():
    """A ``local-buffered-cas`` sidecar on a private directory."""
    root = tempfile.mkdtemp(prefix="vfs-local-")
    sidecar = Sidecar("local-buffered-cas", {"STATE_ROOT": root})
    sidecar.root = root
    with sidecar:
        yield sidecar


@pytest.fixture(scope="session")
def connector_pool():
    """Servers and sidecars for every connector, started on first use."""
    pool = ConnectorPool()
    yield pool
    pool.close()
