"""The sidecar's own log lines: level, format, the access line, the start-up line.

Everything goes to stderr, where a container runtime collects it. Nothing
logged here carries a credential: URLs lose their user, password and query
before they are printed, and the access line (``sidecars.metrics``) holds no
header and no body.
"""
from __future__ import annotations

import logging
import shlex
import sys
from urllib.parse import urlsplit

from sidecars import config, settings

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def configure(level: str, access: bool) -> None:
    """``vfs_state.*`` loggers to stderr at ``level``; the access logger at INFO if ``access``."""
    root = logging.getLogger("vfs_state")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level.upper())
    access_log = logging.getLogger("vfs_state.access")
    if not access_log.handlers:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(message)s"))  # the line is JSON already
        access_log.addHandler(plain)
        access_log.propagate = False
    access_log.setLevel(logging.INFO if access else logging.CRITICAL + 1)


def redact_url(url: str) -> str:
    """``url`` without user, password, query or fragment: what may be printed.

    A comma-separated list (NATS) is redacted server by server.
    """
    if "," in url:
        return ",".join(redact_url(part.strip()) for part in url.split(","))
    try:
        parts = urlsplit(url if "://" in url else "//" + url)  # host:port alone
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(unparsable URL)"
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return f"{scheme}{host}{port}{parts.path}"


def _backend_fields(module: str) -> dict[str, str]:
    """Where the connector stores data, credentials left out."""
    if module == "sidecars.s3":
        s3 = settings.s3()
        return {"bucket": s3.bucket, "region": s3.region,
                "endpoint": redact_url(s3.endpoint_url) if s3.endpoint_url else "aws"}
    if module == "sidecars.gcs":
        gcs = settings.gcs()
        return {"bucket": gcs.bucket,
                "endpoint": redact_url(gcs.emulator_host) if gcs.emulator_host else "gcs"}
    if module == "sidecars.redis":
        return {"url": redact_url(settings.redis().url)}
    if module == "sidecars.nats_kv":
        nats = settings.nats()
        return {"url": redact_url(nats.url), "kv_bucket": nats.bucket}
    if module == "sidecars.local":
        return {"root": settings.local().root}
    return {}


def workers_from(args: list[str]) -> int | None:
    """The ``--workers``/``-w`` value among gunicorn arguments (the last one wins)."""
    found = None
    for i, arg in enumerate(args):
        value = None
        if arg in ("-w", "--workers") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--workers="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-w") and arg[2:].isdigit():
            value = arg[2:]
        if value is not None and value.isdigit():
            found = int(value)
    return found


def startup_line(connector: str, module: str, extra: list[str], cmd_args: str,
                 version: str) -> str:
    """One line naming what this sidecar serves and where (settings already checked)."""
    common = settings.common()
    try:
        args = shlex.split(cmd_args) + extra
    except ValueError:  # gunicorn will say what is wrong with GUNICORN_CMD_ARGS
        args = extra
    workers = workers_from(args) or settings.server().workers
    fields = {"connector": connector, "version": version,
              "socket": config.require("CONNECTOR_SOCKET"), "workers": str(workers),
              **_backend_fields(module)}
    if common.prefix:
        fields["prefix"] = common.prefix
    observe = settings.observability()
    if observe.metrics_port is not None:
        fields["metrics"] = f"{observe.metrics_addr}:{observe.metrics_port}"
    text = " ".join(f"{k}={shlex.quote(v)}" for k, v in fields.items())
    return f"vfs-state-sidecar: starting {text}"
