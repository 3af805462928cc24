"""Default gunicorn settings for a sidecar; ``GUNICORN_CMD_ARGS`` overrides them.

Workers are ``sidecars.worker.ConnectionThreadWorker``: a thread per client
connection (the client holds one per thread and keeps it alive), which halves
the per-request cost of gthread's poller hand-off. ``--worker-class gthread``
still works; ``threads`` only applies to it (and ignores the worker's own
``VFS_STATE_HEADER_TIMEOUT`` / ``VFS_STATE_BODY_TIMEOUT``).
"""
from __future__ import annotations

import os
import socket
import stat
from typing import Any

from sidecars import logs, settings
from sidecars.config import ConfigError

try:  # checked by the CLI already; here for gunicorn started by hand
    _server = settings.server()
    _observe = settings.observability()
    settings.require_library("httptools", "sidecar")  # the worker's HTTP parser
except ConfigError as exc:
    raise SystemExit(f"vfs-state-sidecar: {exc}") from None

_socket = os.environ.get("CONNECTOR_SOCKET", settings.DEFAULT_SOCKET)
bind = [f"unix:{_socket}"]
worker_class = "sidecars.worker.ConnectionThreadWorker"
workers = _server.workers
#: connections (so threads) one worker serves at once; more wait to be accepted
worker_connections = _server.connections
threads = _server.threads
keepalive = 75
timeout = 120
graceful_timeout = 10
accesslog = None  # the JSON access line of sidecars.metrics replaces gunicorn's
loglevel = _observe.log_level
#: gunicorn's control socket would land in $HOME (or $XDG_RUNTIME_DIR): not needed here
control_socket_disable = True
SOCKET_MODE = 0o660


def _socket_paths(server: Any) -> list[str]:  # gunicorn's Arbiter
    return [b[len("unix:"):] for b in server.cfg.bind if b.startswith("unix:")]


def on_starting(server: Any) -> None:
    """Remove a stale socket file, but never one a live sidecar is serving."""
    for path in _socket_paths(server):
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            continue
        if not stat.S_ISSOCK(os.lstat(path).st_mode):  # only a socket is ever stale
            raise SystemExit(f"vfs-state-sidecar: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: stale
        else:
            raise SystemExit(f"vfs-state-sidecar: {path} is in use by a running sidecar")
        finally:
            probe.close()
    # Set here, in the arbiter before any fork, not at import: importing this
    # module (a test, a tool) must not change the importer's environment.
    # Workers import prometheus_client after the fork, so they inherit it.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _observe.metrics_dir)
    _prepare_metrics_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    logs.configure(_observe.log_level, _observe.access_log)


def _prepare_metrics_dir(path: str) -> None:
    """Create ``path`` (mode 0700) or empty it: values of an earlier run must not count.

    Called once the socket is known not to be served (a live sidecar's files
    are never touched). A symlink, a file or somebody else's directory there
    is refused rather than emptied.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(path, mode=0o700)
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise SystemExit(f"vfs-state-sidecar: metrics directory {path} is not a directory "
                         f"of this user; remove it or set PROMETHEUS_MULTIPROC_DIR")
    _remove_values(path)


def _remove_values(path: str) -> None:
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


def on_exit(server: Any) -> None:
    """Leave no metrics files behind; remove the directory if it is our default one."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        _remove_values(path)
        if path == os.path.abspath(_socket) + ".metrics":  # not one given by the operator
            os.rmdir(path)
    except OSError:
        pass


_metrics_server: Any = None  # the arbiter's TCP /metrics server, if any


def when_ready(server: Any) -> None:
    """Open the socket to the actor's group; start the TCP metrics port if one is set."""
    global _metrics_server
    for path in _socket_paths(server):
        os.chmod(path, SOCKET_MODE)
    if _observe.metrics_port is not None:
        from prometheus_client import start_http_server

        from sidecars import metrics

        try:
            _metrics_server, _ = start_http_server(_observe.metrics_port, _observe.metrics_addr,
                                                   registry=metrics.collector_registry())
        except OSError as exc:
            raise SystemExit(f"vfs-state-sidecar: cannot serve metrics on "
                             f"{_observe.metrics_addr}:{_observe.metrics_port}: "
                             f"{exc.strerror}") from None


def post_fork(server: Any, worker: Any) -> None:
    """A worker must not hold the arbiter's metrics port open."""
    if _metrics_server is not None:
        _metrics_server.socket.close()
    logs.configure(_observe.log_level, _observe.access_log)


def child_exit(server: Any, worker: Any) -> None:
    """Drop the ended worker's in-flight gauge; its counters keep counting."""
    from sidecars import metrics

    metrics.worker_gone(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:  # gunicorn's Arbiter and Worker
    """Release the backend's clients and connections as the worker ends."""
    from sidecars.app import close_app  # the master never imports Flask

    close_app(getattr(worker, "wsgi", None))
