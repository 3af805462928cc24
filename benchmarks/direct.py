"""The baseline: each backend's own Python client, no vfs_state in between.

One class per backend kind with the same four calls the small-object
benchmark times (``write``, ``read``, ``stat``, ``listdir``) plus ``fill``
for the listing directory. Local file calls go through the *real* builtins
captured here at import (kept in a dict, which the shim's alias rebinding
does not reach), so an installed shim never taxes the baseline.
"""
from __future__ import annotations

import asyncio
import builtins
import os
import tempfile
import uuid
from typing import Any

REAL = {"open": builtins.open, "stat": os.stat, "listdir": os.listdir,
        "makedirs": os.makedirs}


def kind_of(connector: str) -> str:
    """``s3-buffered-cas`` -> ``s3``; ``nats-kv-buffered-cas`` -> ``nats``."""
    kind = connector.split("-buffered")[0].split("-passthrough")[0]
    return "nats" if kind == "nats-kv" else kind


class DirectLocal:
    """Plain ``open``/``os`` calls on a directory of the same filesystem."""

    method = {"write": "open(wb)+write", "read": "open(rb)+read", "stat": "os.stat",
              "listdir": "os.listdir"}

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="vfs-bench-direct-")

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        REAL["makedirs"](os.path.dirname(path), exist_ok=True)
        with REAL["open"](path, "wb") as f:
            f.write(data)

    def read(self, key: str) -> bytes:
        with REAL["open"](self._path(key), "rb") as f:
            return f.read()

    def stat(self, key: str) -> Any:
        return REAL["stat"](self._path(key))

    def listdir(self, prefix: str) -> list[str]:
        return REAL["listdir"](self._path(prefix))

    def close(self) -> None:
        import shutil
        shutil.rmtree(self.root, ignore_errors=True)


class DirectRedis:
    """redis-py ``SET``/``GET``/``STRLEN``; a listing is ``SCAN MATCH prefix*``."""

    method = {"write": "SET", "read": "GET", "stat": "STRLEN", "listdir": "SCAN MATCH"}

    def __init__(self, url: str) -> None:
        import redis
        self.client = redis.Redis.from_url(url)
        self.ns = f"direct-{uuid.uuid4().hex[:6]}/"

    def write(self, key: str, data: bytes) -> None:
        self.client.set(self.ns + key, data)

    def read(self, key: str) -> bytes:
        return self.client.get(self.ns + key)

    def stat(self, key: str) -> int:
        return self.client.strlen(self.ns + key)

    def listdir(self, prefix: str) -> list[bytes]:
        return list(self.client.scan_iter(match=self.ns + prefix + "/*", count=1000))

    def close(self) -> None:
        self.client.close()


class DirectS3:
    """boto3 ``put_object``/``get_object``/``head_object``/``list_objects_v2`` on moto."""

    method = {"write": "put_object", "read": "get_object", "stat": "head_object",
              "listdir": "list_objects_v2 (paginated)"}

    def __init__(self, server: Any, bucket: str) -> None:
        from tests.harness.moto_s3 import s3_client
        self.client = s3_client(server)
        self.bucket = bucket
        self.ns = f"direct-{uuid.uuid4().hex[:6]}/"

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.ns + key, Body=data)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.ns + key)["Body"].read()

    def stat(self, key: str) -> Any:
        return self.client.head_object(Bucket=self.bucket, Key=self.ns + key)

    def listdir(self, prefix: str) -> list[str]:
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.ns + prefix + "/",
                                       Delimiter="/"):
            names += [c["Key"] for c in page.get("Contents", [])]
            names += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return names

    def close(self) -> None:
        self.client.close()


class DirectGcs:
    """google-cloud-storage blobs on fake-gcs-server."""

    method = {"write": "upload_from_string", "read": "download_as_bytes",
              "stat": "get_blob", "listdir": "list_blobs (paginated)"}

    def __init__(self, server: Any, bucket: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        self.client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                     client_options={"api_endpoint": server.url})
        self.bucket = self.client.bucket(bucket)
        self.ns = f"direct-{uuid.uuid4().hex[:6]}/"

    def write(self, key: str, data: bytes) -> None:
        self.bucket.blob(self.ns + key).upload_from_string(data)

    def read(self, key: str) -> bytes:
        return self.bucket.blob(self.ns + key).download_as_bytes()

    def stat(self, key: str) -> Any:
        return self.bucket.get_blob(self.ns + key)

    def listdir(self, prefix: str) -> list[str]:
        blobs = self.client.list_blobs(self.bucket, prefix=self.ns + prefix + "/",
                                       delimiter="/")
        names = [b.name for b in blobs]
        return names + sorted(blobs.prefixes)

    def close(self) -> None:
        self.client.close()


class DirectNats:
    """nats-py JetStream KV ``put``/``get`` driven from a private event loop."""

    method = {"write": "kv.put", "read": "kv.get", "stat": "kv.get (no metadata-only call)",
              "listdir": "kv.watch(prefix.>, meta_only)"}

    def __init__(self, url: str) -> None:
        import nats
        from nats.js.api import KeyValueConfig
        self.loop = asyncio.new_event_loop()
        self.nc = self.loop.run_until_complete(nats.connect(url))
        js = self.nc.jetstream()
        bucket = f"direct{uuid.uuid4().hex[:6]}"
        self.kv = self.loop.run_until_complete(
            js.create_key_value(KeyValueConfig(bucket=bucket, history=1)))

    @staticmethod
    def _key(key: str) -> str:
        return key.replace("/", ".")

    def write(self, key: str, data: bytes) -> None:
        self.loop.run_until_complete(self.kv.put(self._key(key), data))

    def read(self, key: str) -> bytes:
        return self.loop.run_until_complete(self.kv.get(self._key(key))).value

    def stat(self, key: str) -> Any:
        return self.loop.run_until_complete(self.kv.get(self._key(key))).revision

    def listdir(self, prefix: str) -> list[str]:
        return self.loop.run_until_complete(self._keys(self._key(prefix) + ".>"))

    async def _keys(self, subject: str) -> list[str]:
        """Server-side filtered (``kv.keys`` watches every key and filters locally)."""
        watcher = await self.kv.watch(subject, ignore_deletes=True, meta_only=True)
        keys = []
        async for entry in watcher:
            if entry is None:
                break
            keys.append(entry.key)
        await watcher.stop()
        return keys

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


def direct_client(pool: Any, connector: str) -> Any:
    """The baseline client for ``connector``'s backend (servers from ``pool``)."""
    from tests.connectors import BUCKET
    kind = kind_of(connector)
    if kind == "local":
        return DirectLocal()
    if kind == "redis":
        return DirectRedis(pool.server("redis").url)
    if kind == "s3":
        return DirectS3(pool.server("s3"), BUCKET)
    if kind == "gcs":
        return DirectGcs(pool.server("gcs"), BUCKET)
    if kind == "nats":
        return DirectNats(pool.server("nats").url)
    raise ValueError(f"no direct client for {connector!r}")
