"""``vfs-state-sidecar CONNECTOR``: run one connector under gunicorn.

The connector name picks the backend module and the consistency; the socket
comes from ``CONNECTOR_SOCKET``. Our defaults live in
``sidecars.gunicorn_conf``, so ``GUNICORN_CMD_ARGS`` (``--workers 3``) and
extra command-line arguments override them as usual.
"""
from __future__ import annotations

import argparse
import os
import sys

from sidecars import logs, settings
from sidecars.config import ConfigError
from sidecars.connectors import CONNECTORS, get_connector
from vfs_state import __version__


def gunicorn_argv(connector_name: str, extra: list[str]) -> list[str]:
    """The gunicorn command line for ``connector_name`` (config already checked)."""
    connector = get_connector(connector_name)
    return [sys.executable, "-m", "gunicorn", "-c", "python:sidecars.gunicorn_conf",
            *extra, f"{connector.module}:create_app()"]


#: Backend module -> (the libraries it imports, the extra that installs them).
LIBRARIES = {
    "sidecars.s3": (("boto3",), "s3"),
    "sidecars.gcs": (("google.cloud.storage",), "gcs"),
    "sidecars.redis": (("redis",), "redis"),
    "sidecars.nats_kv": (("nats",), "nats"),
    "sidecars.local": ((), "local"),
}


def check_libraries(connector_name: str) -> None:
    """Raise ``ConfigError`` naming the extra when a backend library is not installed."""
    connector = get_connector(connector_name)
    libraries, extra = LIBRARIES.get(connector.module, ((), "all"))
    for module in ("flask", "gunicorn", "httptools", "prometheus_client", *libraries):
        settings.require_library(module, extra, connector_name)


def check_environment(connector_name: str) -> dict[str, str]:
    """The environment gunicorn runs with; raises ``ConfigError`` naming a bad setting.

    Every setting the connector, the app core, gunicorn and the worker read
    is checked here, so nothing fails later inside a worker.
    """
    connector = get_connector(connector_name)
    check_libraries(connector_name)
    settings.check(connector.module)
    env = dict(os.environ)
    env["VFS_STATE_CONSISTENCY"] = connector.consistency
    env["VFS_STATE_CONNECTOR"] = connector_name  # the metrics' connector label
    # before any worker imports prometheus_client (gunicorn_conf empties it)
    env["PROMETHEUS_MULTIPROC_DIR"] = settings.observability().metrics_dir
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vfs-state-sidecar",
        description="Serve one storage connector over HTTP on $CONNECTOR_SOCKET.")
    parser.add_argument("connector", choices=sorted(CONNECTORS), metavar="CONNECTOR",
                        help="one of: " + ", ".join(sorted(CONNECTORS)))
    parser.add_argument("gunicorn_args", nargs=argparse.REMAINDER,
                        help="extra gunicorn arguments (after --)")
    args = parser.parse_args(argv)
    extra = [a for a in args.gunicorn_args if a != "--"]
    try:
        env = check_environment(args.connector)
    except ConfigError as exc:
        print(f"vfs-state-sidecar: {exc}", file=sys.stderr)
        return 2
    if settings.observability().log_level not in ("error", "critical"):
        print(logs.startup_line(args.connector, get_connector(args.connector).module, extra,
                                env.get("GUNICORN_CMD_ARGS", ""), __version__),
              file=sys.stderr, flush=True)
    command = gunicorn_argv(args.connector, extra)
    os.execvpe(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
