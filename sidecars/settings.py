"""Every sidecar setting, read and checked in one place.

``vfs-state-sidecar`` calls ``check()`` before it starts gunicorn, and each
connector's ``create_app()`` and ``sidecars.gunicorn_conf`` read the same
functions, so a bad value stops the start with one line naming it (exit
status 2) instead of a traceback in every worker. Nothing here imports a
backend library, so the check costs no time. The settings are listed in
docs/sidecars.md and docs/connectors/.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecars import config
from sidecars.errors import BadRequest
from sidecars.keys import normalise_prefix, validate_key

#: botocore's names for when uploads carry checksums (the first is the default).
CHECKSUM_MODES = ("when_supported", "when_required")
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_REDIS_MAX_OBJECT_SIZE = 512 << 20  # Redis' own string limit


@dataclass(frozen=True)
class Common:
    """Settings of the app core, the same for every connector."""

    prefix: str                   # STATE_PREFIX as given ("" for none)
    max_object_size: int | None   # STATE_MAX_OBJECT_SIZE (None: the backend's limit)


def common() -> Common:
    prefix = config.optional("STATE_PREFIX", "")
    store_prefix = normalise_prefix(prefix)
    if store_prefix:
        try:
            validate_key(store_prefix)
        except BadRequest as exc:
            raise config.ConfigError(f"STATE_PREFIX {prefix!r} is not a valid key prefix: "
                                     f"{exc.message}") from None
    return Common(prefix, config.integer("STATE_MAX_OBJECT_SIZE", None, minimum=0))


@dataclass(frozen=True)
class Server:
    """gunicorn and worker settings (``sidecars.gunicorn_conf``, ``sidecars.worker``)."""

    workers: int
    connections: int
    threads: int
    header_timeout: float
    body_timeout: float


def server() -> Server:
    def count(name: str, default: int) -> int:
        return config.integer(name, default, minimum=1, maximum=100_000) or default

    return Server(workers=count("VFS_STATE_SIDECAR_WORKERS", 2),
                  connections=count("VFS_STATE_SIDECAR_CONNECTIONS", 64),
                  threads=count("VFS_STATE_SIDECAR_THREADS", 8),
                  header_timeout=config.seconds("VFS_STATE_HEADER_TIMEOUT", 10.0),
                  body_timeout=config.seconds("VFS_STATE_BODY_TIMEOUT", 30.0))


DEFAULT_SOCKET = "/var/run/asya/state/sidecar.sock"
LOG_LEVELS = ("warning", "debug", "info", "error", "critical")


@dataclass(frozen=True)
class Observability:
    """Metrics and logs (docs/operations.md)."""

    metrics_dir: str            # PROMETHEUS_MULTIPROC_DIR, else next to the socket
    metrics_port: int | None    # VFS_STATE_METRICS_PORT: also serve /metrics on TCP
    metrics_addr: str           # VFS_STATE_METRICS_ADDR: where that port is bound
    access_log: bool            # VFS_STATE_ACCESS_LOG: one JSON line per request
    log_level: str              # VFS_STATE_LOG_LEVEL


def observability() -> Observability:
    socket_path = config.optional("CONNECTOR_SOCKET", DEFAULT_SOCKET)
    metrics_dir = (config.optional("PROMETHEUS_MULTIPROC_DIR")
                   or os.path.abspath(socket_path) + ".metrics")
    addr = config.optional("VFS_STATE_METRICS_ADDR", "127.0.0.1")
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise config.ConfigError(f"VFS_STATE_METRICS_ADDR must be an IP address, "
                                 f"not {addr!r}") from None
    level = config.optional("VFS_STATE_LOG_LEVEL", LOG_LEVELS[0]).lower()
    if level not in LOG_LEVELS:
        raise config.ConfigError(f"VFS_STATE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                                 f"not {level!r}")
    return Observability(metrics_dir=metrics_dir,
                         metrics_port=config.integer("VFS_STATE_METRICS_PORT", None,
                                                     minimum=1, maximum=65535),
                         metrics_addr=addr, access_log=config.flag("VFS_STATE_ACCESS_LOG"),
                         log_level=level)


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    region: str
    endpoint_url: str | None
    request_checksums: str
    emulator_workarounds: bool = False


def s3() -> S3Settings:
    region = config.optional("AWS_REGION") or config.optional("AWS_DEFAULT_REGION", "us-east-1")
    return S3Settings(bucket=config.require("STATE_BUCKET"), region=region,
                      endpoint_url=_http_url("AWS_ENDPOINT_URL"),
                      request_checksums=config.choice("S3_REQUEST_CHECKSUMS", CHECKSUM_MODES),
                      emulator_workarounds=config.flag("S3_EMULATOR_WORKAROUNDS"))


@dataclass(frozen=True)
class GcsSettings:
    bucket: str
    project: str | None
    emulator_host: str | None
    timeout: float
    retry_deadline: float
    emulator_workarounds: bool = False


def gcs() -> GcsSettings:
    return GcsSettings(bucket=config.require("STATE_BUCKET"),
                       project=config.optional("GCS_PROJECT") or None,
                       emulator_host=config.optional("STORAGE_EMULATOR_HOST") or None,
                       timeout=config.seconds("GCS_TIMEOUT", 10.0),
                       retry_deadline=config.seconds("GCS_RETRY_DEADLINE", 5.0),
                       emulator_workarounds=config.flag("GCS_EMULATOR_WORKAROUNDS"))


@dataclass(frozen=True)
class RedisSettings:
    url: str
    max_object_size: int | None
    timeout: float


def redis() -> RedisSettings:
    url = config.require("REDIS_URL")
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise config.ConfigError(f"REDIS_URL must start with one of "
                                 f"{', '.join(s + '://' for s in REDIS_SCHEMES)}, not {url!r}")
    return RedisSettings(url, config.integer("REDIS_MAX_OBJECT_SIZE",
                                             DEFAULT_REDIS_MAX_OBJECT_SIZE, minimum=1),
                         config.seconds("REDIS_TIMEOUT", 5.0))


@dataclass(frozen=True)
class NatsSettings:
    url: str
    bucket: str
    history: int = 1
    max_value_size: int | None = None  # None: the server's max payload
    timeout: float = 5.0


def nats() -> NatsSettings:
    url = config.require("NATS_URL")
    if any(not part.strip() for part in url.split(",")):
        raise config.ConfigError(f"NATS_URL has an empty server in {url!r}")
    bucket = config.require("NATS_KV_BUCKET")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", bucket):
        raise config.ConfigError(f"NATS_KV_BUCKET may only use letters, digits, _ and -,"
                                 f" not {bucket!r}")
    history = config.integer("NATS_KV_HISTORY", 1, minimum=1, maximum=64) or 1
    return NatsSettings(url, bucket, history,
                        config.integer("NATS_KV_MAX_VALUE_SIZE", None, minimum=1),
                        config.seconds("NATS_TIMEOUT", 5.0))


@dataclass(frozen=True)
class LocalSettings:
    root: str
    fsync: bool


def local() -> LocalSettings:
    root = config.require("STATE_ROOT")
    if os.path.exists(root) and not os.path.isdir(root):
        raise config.ConfigError(f"STATE_ROOT {root} exists and is not a directory")
    return LocalSettings(root, config.flag("STATE_FSYNC"))


def _http_url(name: str) -> str | None:
    value = config.optional(name) or None
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise config.ConfigError(f"{name} must be an http:// or https:// URL, not {value!r}")
    return value


def require_library(module: str, extra: str, who: str = "the sidecar") -> None:
    """Raise ``ConfigError`` naming the extra to install if ``module`` cannot be imported."""
    try:
        missing = importlib.util.find_spec(module) is None
    except ImportError:  # a missing parent package (google.cloud)
        missing = True
    if missing:
        raise config.ConfigError(f"{who} needs the Python package {module!r}, which is not "
                                 f"installed: pip install 'vfs-state[{extra}]'")


#: Backend module -> the function reading its own settings.
BACKENDS: dict[str, Callable[[], object]] = {
    "sidecars.s3": s3, "sidecars.gcs": gcs, "sidecars.redis": redis,
    "sidecars.nats_kv": nats, "sidecars.local": local,
}


def check(module: str) -> None:
    """Read every setting of the server and of backend ``module``; raise ``ConfigError``."""
    config.check_socket_path(config.require("CONNECTOR_SOCKET"))
    common()
    server()
    observability()
    BACKENDS[module]()
