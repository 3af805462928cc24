"""Shared fixtures: real backend servers and gunicorn sidecars on Unix sockets."""
from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

from tests.connectors import ConnectorPool
from tests.harness.sidecar import Sidecar
from tests.profiles import DEEP

#: pytest-timeout's limit per test in the deep profile. The 300 s of pyproject.toml
#: is the CI profile's: a deep conformance run (300 examples of 60 steps) took
#: 250-288 s on each S3 connector beside the other deep suites, and ran past 300 s
#: on GCS in one such run (docs/reliability.md).
DEEP_TIMEOUT = 1800

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
    """Drop the tests a module's ``ci_profile_keeps(nodeid)`` leaves out of the CI profile;
    in the deep profile, give each test ``DEEP_TIMEOUT`` unless ``--timeout`` or its own
    marker says otherwise."""
    kept, dropped = [], []
    for item in items:
        keeps = getattr(getattr(item, "module", None), "ci_profile_keeps", None)
        (dropped if keeps is not None and not keeps(item.nodeid) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    if DEEP and config.getoption("timeout", None) is None:
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEEP_TIMEOUT))


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
