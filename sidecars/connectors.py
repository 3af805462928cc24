"""The connector names (docs/sidecars.md) and what each one runs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Connector:
    name: str
    module: str          # sidecars.<module> exposing create_app()
    consistency: str     # "lww" or "cas"
    #: settings without a default (all settings are checked in ``sidecars.settings``)
    required_env: tuple[str, ...]


CONNECTORS: dict[str, Connector] = {c.name: c for c in (
    Connector("s3-buffered-lww", "sidecars.s3", "lww", ("STATE_BUCKET",)),
    Connector("s3-buffered-cas", "sidecars.s3", "cas", ("STATE_BUCKET",)),
    Connector("s3-passthrough", "sidecars.s3", "lww", ("STATE_BUCKET",)),
    Connector("gcs-buffered-lww", "sidecars.gcs", "lww", ("STATE_BUCKET",)),
    Connector("gcs-buffered-cas", "sidecars.gcs", "cas", ("STATE_BUCKET",)),
    Connector("redis-buffered-cas", "sidecars.redis", "cas", ("REDIS_URL",)),
    Connector("nats-kv-buffered-cas", "sidecars.nats_kv", "cas", ("NATS_URL", "NATS_KV_BUCKET")),
    Connector("local-buffered-lww", "sidecars.local", "lww", ("STATE_ROOT",)),
    Connector("local-buffered-cas", "sidecars.local", "cas", ("STATE_ROOT",)),
)}


def get_connector(name: str) -> Connector:
    try:
        return CONNECTORS[name]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS))
        raise ValueError(f"unknown connector {name!r}; known: {known}") from None
