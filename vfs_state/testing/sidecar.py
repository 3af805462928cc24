"""Start a connector's sidecar for tests: gunicorn on a fresh Unix socket.

The same server and worker the ``vfs-state-sidecar`` command runs
(``sidecars.gunicorn_conf``), over any module exposing ``create_app()``,
so a third-party connector is tested exactly as it will be deployed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from vfs_state.transport import UnixHTTPConnection


@dataclass
class RunningSidecar:
    """A sidecar started by ``start_sidecar``; clients connect to ``socket_path``."""

    socket_path: str
    process: subprocess.Popen
    log_path: str

    def log(self) -> str:
        """What gunicorn and the app wrote so far (for failure messages)."""
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


def healthy(socket_path: str) -> bool:
    """True when a sidecar answers ``GET /healthz`` with 200 on ``socket_path``."""
    conn = UnixHTTPConnection(socket_path, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _environment(env: Mapping[str, str] | None, socket_path: str) -> dict[str, str]:
    """This process's environment, ``env`` on top, and our ``sys.path`` for imports.

    Passing ``sys.path`` on lets the sidecar import the connector module
    from wherever the test process found it (a project checked out, not
    installed).
    """
    result = dict(os.environ)
    result.update(env or {})
    result["CONNECTOR_SOCKET"] = socket_path
    paths = [p for p in sys.path if p] + [result.get("PYTHONPATH", "")]
    result["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return result


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)


def _wait_ready(sidecar: RunningSidecar, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sidecar.process.poll() is not None:
            raise RuntimeError(f"the sidecar exited with status {sidecar.process.returncode}:\n"
                               + sidecar.log()[-4000:])
        if os.path.exists(sidecar.socket_path) and healthy(sidecar.socket_path):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the sidecar did not answer /healthz within {timeout}s:\n"
                       + sidecar.log()[-4000:])


@contextmanager
def start_sidecar(module: str, env: Mapping[str, str] | None = None, *, workers: int = 1,
                  factory: str = "create_app()",
                  timeout: float = 30.0) -> Iterator[RunningSidecar]:
    """Run ``module``'s app under gunicorn on a fresh socket until the block ends.

    Args:
        module: the connector module, importable by this process
            (``"my_connector"``); it exposes ``create_app()`` returning the
            Flask app (``sidecars.app.build_app`` over your ``Backend``).
        env: settings the connector reads (``STATE_BUCKET``, ...), on top of
            this process's environment. ``CONNECTOR_SOCKET`` is set for you;
            ``VFS_STATE_CONSISTENCY`` (``cas`` or ``lww``) if your
            ``create_app`` reads it through ``sidecars.config``.
        workers: gunicorn workers. Keep 1 for a backend that holds its data
            in the process (each worker would have its own copy); use 2 for
            a real store, to test that nothing depends on one worker.
        factory: the WSGI factory call gunicorn makes in ``module``.
        timeout: seconds to wait for ``/healthz``; the log is in the error.
    """
    directory = tempfile.mkdtemp(prefix="vfs-kit-")
    socket_path = os.path.join(directory, "sidecar.sock")
    log_path = os.path.join(directory, "sidecar.log")
    command = [sys.executable, "-m", "gunicorn", "-c", "python:sidecars.gunicorn_conf",
               f"--workers={workers}", f"{module}:{factory}"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=_environment(env, socket_path), cwd=directory,
                                   start_new_session=True)
    sidecar = RunningSidecar(socket_path, process, log_path)
    try:
        _wait_ready(sidecar, timeout)
        yield sidecar
    finally:
        _stop(process)
        shutil.rmtree(directory, ignore_errors=True)
