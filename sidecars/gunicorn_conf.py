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

from sidecars import settings
from sidecars.config import ConfigError

try:  # checked by the CLI already; here for gunicorn started by hand
    _server = settings.server()
except ConfigError as exc:
    raise SystemExit(f"vfs-state-sidecar: {exc}") from None

bind = [f"unix:{os.environ.get('CONNECTOR_SOCKET', '/var/run/asya/state/sidecar.sock')}"]
worker_class = "sidecars.worker.ConnectionThreadWorker"
workers = _server.workers
#: connections (so threads) one worker serves at once; more wait to be accepted
worker_connections = _server.connections
threads = _server.threads
keepalive = 75
timeout = 120
graceful_timeout = 10
accesslog = None
loglevel = "warning"
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


def when_ready(server: Any) -> None:
    for path in _socket_paths(server):
        os.chmod(path, SOCKET_MODE)


def worker_exit(server: Any, worker: Any) -> None:  # gunicorn's Arbiter and Worker
    """Release the backend's clients and connections as the worker ends."""
    from sidecars.app import close_app  # the master never imports Flask

    close_app(getattr(worker, "wsgi", None))
