"""Every sidecar setting is checked before gunicorn starts (docs/sidecars.md).

Each case runs ``vfs-state-sidecar`` as a subprocess with one bad value and
expects what docs/connectors promise: exit status 2 and one line on stderr
naming the setting, no traceback, and no gunicorn started. The servers the
settings point at are never reached, so none is started here.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sidecars import settings
from sidecars.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A valid environment per connector; each case spoils one setting of it.
VALID = {
    "local-buffered-cas": {"STATE_ROOT": "{tmp}/root"},
    "s3-buffered-cas": {"STATE_BUCKET": "b", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    "gcs-buffered-cas": {"STATE_BUCKET": "b", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"},
    "redis-buffered-cas": {"REDIS_URL": "redis://127.0.0.1:9/0"},
    "nats-kv-buffered-cas": {"NATS_URL": "nats://127.0.0.1:9", "NATS_KV_BUCKET": "state"},
}

CASES = [  # (connector, setting, bad value; None removes it)
    ("local-buffered-cas", "STATE_ROOT", None),
    ("local-buffered-cas", "STATE_ROOT", "{tmp}/a-file"),
    ("local-buffered-cas", "STATE_FSYNC", "sometimes"),
    ("local-buffered-cas", "STATE_MAX_OBJECT_SIZE", "-1"),
    ("local-buffered-cas", "STATE_MAX_OBJECT_SIZE", "1MB"),
    ("local-buffered-cas", "STATE_PREFIX", "a/../b"),
    ("local-buffered-cas", "CONNECTOR_SOCKET", None),
    ("local-buffered-cas", "CONNECTOR_SOCKET", "{tmp}/a-file/s.sock"),
    ("local-buffered-cas", "VFS_STATE_HEADER_TIMEOUT", "0"),
    ("local-buffered-cas", "VFS_STATE_BODY_TIMEOUT", "-5"),
    ("local-buffered-cas", "VFS_STATE_SIDECAR_WORKERS", "two"),
    ("local-buffered-cas", "VFS_STATE_SIDECAR_CONNECTIONS", "0"),
    ("local-buffered-cas", "VFS_STATE_SIDECAR_THREADS", "-1"),
    ("local-buffered-cas", "VFS_STATE_METRICS_PORT", "http"),
    ("local-buffered-cas", "VFS_STATE_METRICS_PORT", "70000"),
    ("local-buffered-cas", "VFS_STATE_METRICS_ADDR", "metrics.example"),
    ("local-buffered-cas", "VFS_STATE_ACCESS_LOG", "json"),
    ("local-buffered-cas", "VFS_STATE_LOG_LEVEL", "loud"),
    ("s3-buffered-cas", "STATE_BUCKET", None),
    ("s3-buffered-cas", "S3_REQUEST_CHECKSUMS", "always"),
    ("s3-buffered-cas", "AWS_ENDPOINT_URL", "minio:9000"),
    ("s3-buffered-cas", "S3_EMULATOR_WORKAROUNDS", "maybe"),
    ("gcs-buffered-cas", "STATE_BUCKET", None),
    ("gcs-buffered-cas", "GCS_TIMEOUT", "-1"),
    ("gcs-buffered-cas", "GCS_RETRY_DEADLINE", "soon"),
    ("gcs-buffered-cas", "GCS_EMULATOR_WORKAROUNDS", "2"),
    ("redis-buffered-cas", "REDIS_URL", None),
    ("redis-buffered-cas", "REDIS_URL", "http://127.0.0.1:6379"),
    ("redis-buffered-cas", "REDIS_TIMEOUT", "0"),
    ("redis-buffered-cas", "REDIS_MAX_OBJECT_SIZE", "0"),
    ("redis-buffered-cas", "STATE_PREFIX", ".vfs-state:x"),
    ("nats-kv-buffered-cas", "NATS_URL", None),
    ("nats-kv-buffered-cas", "NATS_URL", "nats://a:4222,,nats://b:4222"),
    ("nats-kv-buffered-cas", "NATS_KV_BUCKET", "a.b"),
    ("nats-kv-buffered-cas", "NATS_KV_HISTORY", "65"),
    ("nats-kv-buffered-cas", "NATS_KV_MAX_VALUE_SIZE", "-3"),
    ("nats-kv-buffered-cas", "NATS_TIMEOUT", "nan"),
]


def _environment(tmp_path, connector: str, name: str, value: str | None) -> dict[str, str]:
    (tmp_path / "a-file").write_text("x")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STATE_", "VFS_STATE_", "S3_", "GCS_", "REDIS_", "NATS_",
                                "AWS_", "STORAGE_", "GUNICORN_"))}
    env["PYTHONPATH"] = ROOT
    env["CONNECTOR_SOCKET"] = str(tmp_path / "s.sock")
    env.update({k: v.format(tmp=tmp_path) for k, v in VALID[connector].items()})
    if value is None:
        env.pop(name, None)
    else:
        env[name] = value.format(tmp=tmp_path)
    return env


@pytest.mark.parametrize(("connector", "name", "value"), CASES,
                         ids=[f"{c}-{n}={v}" for c, n, v in CASES])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, connector: str, name: str,
                                              value: str | None) -> None:
    env = _environment(tmp_path, connector, name, value)
    done = subprocess.run([sys.executable, "-m", "sidecars.cli", connector], env=env,
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("vfs-state-sidecar: "), done.stderr
    assert name in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "s.sock").exists()  # gunicorn never started


@pytest.mark.parametrize("connector", sorted(VALID))
def test_the_valid_settings_pass_the_check(tmp_path, monkeypatch, connector: str) -> None:
    """The baseline of the cases above is accepted, so each case fails for its one value."""
    from sidecars.cli import check_environment

    for name, value in _environment(tmp_path, connector, "-", "").items():
        monkeypatch.setenv(name, value)
    assert check_environment(connector)["VFS_STATE_CONSISTENCY"] == "cas"


def test_the_settings_a_worker_reads_are_the_checked_ones(monkeypatch) -> None:
    monkeypatch.setenv("VFS_STATE_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("VFS_STATE_SIDECAR_CONNECTIONS", "7")
    server = settings.server()
    assert (server.header_timeout, server.connections, server.body_timeout) == (2.5, 7, 30.0)
    monkeypatch.setenv("VFS_STATE_BODY_TIMEOUT", "inf")
    with pytest.raises(ConfigError, match="VFS_STATE_BODY_TIMEOUT"):
        settings.server()
