"""The shim, tested differentially: each scenario on a real directory and on a mount.

Scenarios live in ``tests/scenarios_*.py`` (``def scenario(base: str)``);
``tests/differential.py`` holds the oracle. Every scenario runs against
the local connector and against S3 (moto), each through a real gunicorn
sidecar. The shim stays installed for the module: the real side runs under
a temporary directory outside every mount, so it also proves those paths
are untouched.
"""
from __future__ import annotations

import inspect
import os
import re
import uuid

import pytest

import tests.scenarios_dataframes  # noqa: F401 (registers; pandas, pyarrow, polars, numpy)
import vfs_state
from tests import (  # noqa: F401 (registers)
    scenarios_fds,
    scenarios_files,
    scenarios_libs,
    scenarios_native,
    scenarios_tree,
)
from tests.differential import SCENARIOS, outcome
from tests.shim_fixtures import fresh_mount_path, mount_spec

#: every backend, each once (the write modes are the conformance suite's concern)
CONNECTORS = ("local-buffered-cas", "s3-buffered-cas", "gcs-buffered-cas",
              "redis-buffered-cas", "nats-kv-buffered-cas")


def _sidecar(request, connector: str):
    if connector.startswith("local"):
        return request.getfixturevalue("local_sidecar")
    return request.getfixturevalue("connector_pool").sidecar(connector)


@pytest.fixture(scope="module", params=CONNECTORS)
def mount_root(request):
    """A mount on ``request.param``'s sidecar; the shim installed for the module."""
    sidecar = _sidecar(request, request.param)
    path = fresh_mount_path()
    with vfs_state.installed(mount_spec("diff", path, sidecar.socket_path)):
        yield path
    assert not os.path.lexists(path), "something reached the local disk instead of the mount"


@pytest.fixture
def bases(mount_root, tmp_path):
    real = str(tmp_path / "base")
    os.mkdir(real)
    mounted = f"{mount_root}/{uuid.uuid4().hex[:12]}"
    assert vfs_state.shim.resolve(mounted) is not None and vfs_state.shim.resolve(real) is None
    os.mkdir(mounted)
    return real, mounted


#: Names whose use in a scenario's source makes it a real-library scenario.
LIBRARIES = re.compile(r"\b(pandas|pd|pyarrow|pa|pq|polars|pl|numpy|np|PIL|Image|joblib|zipfile"
                       r"|tarfile|make_archive|logging|tempfile|sqlite3|duckdb|h5py|safetensors"
                       r"|lmdb|gzip|json|csv|pickle|shelve|mmap)\b")


def real_library_scenarios() -> list[str]:
    return [name for name, case in SCENARIOS.items()
            if LIBRARIES.search(inspect.getsource(case.function))]


def test_enough_scenarios():
    assert len(SCENARIOS) >= 240
    assert len(real_library_scenarios()) >= 90  # docs/testing.md states the count


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name, bases):
    case = SCENARIOS[name]
    real_base, mount_base = bases
    real = outcome(case.function, real_base)
    mounted = outcome(case.function, mount_base)
    if case.real is None:
        assert mounted == real
    else:
        assert (real, mounted) == (case.real, case.mount), case.reason
