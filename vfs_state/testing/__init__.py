"""The conformance kit: prove a connector with pytest, in its own repository.

Two suites, both run against a real sidecar over its Unix socket:

* ``ConformanceSuite``: the Hypothesis state machine every connector of
  this project passes (several clients, compare-and-set or last-writer-wins
  predicted by a model; ``run_conformance`` is the same as a function);
* ``StateFSSuite``: pyfilesystem2's own ``FSTestCases`` over ``StateFS``.

The hook: define a pytest fixture ``vfs_state_socket`` returning the socket
path of a running sidecar; ``start_sidecar(module, env)`` starts one::

    @pytest.fixture(scope="session")
    def vfs_state_socket():
        with start_sidecar("my_connector", {"MY_URL": "..."}) as sidecar:
            yield sidecar.socket_path

    class TestConformance(ConformanceSuite):
        cas = True

    class TestFS(StateFSSuite, unittest.TestCase):
        pass

See docs/sidecars.md ("Writing a connector"). Needs the ``test`` extra.
"""
from __future__ import annotations

try:
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"vfs_state.testing needs the test extra ({exc.name} is missing): "
                      "pip install 'vfs-state[test]'") from exc

from vfs_state.testing.conformance import StoreMachine, machine_for, run_conformance
from vfs_state.testing.fstests import StateFSSuite
from vfs_state.testing.rawhttp import RawClient
from vfs_state.testing.sidecar import RunningSidecar, healthy, start_sidecar
from vfs_state.testing.suite import ConformanceSuite

__all__ = ["ConformanceSuite", "StateFSSuite", "start_sidecar", "RunningSidecar",
           "run_conformance", "machine_for", "StoreMachine", "RawClient", "healthy"]
