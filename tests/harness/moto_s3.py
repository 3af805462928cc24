"""moto's S3 server as a real HTTP endpoint for sidecars and boto3 alike."""
from __future__ import annotations

import http.client
import sys
from typing import Any

import boto3
from botocore.config import Config

from tests.harness.base import ServerProcess

REGION = "us-east-1"
ACCESS_KEY = "testing"   # moto accepts any credentials; real ones must never be needed
SECRET_KEY = "testing"


class MotoS3Server(ServerProcess):
    """``python -m moto.server`` on a free loopback port.

    moto keeps every bucket and object in memory only: ``restart()`` keeps the
    port (so running sidecars reconnect) but comes back empty, with no
    buckets. Fault tests that restart it must recreate their bucket.
    """

    name = "moto-s3"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION=REGION)
        return env

    def ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/moto-api/")
            return conn.getresponse().status < 500
        finally:
            conn.close()


def s3_client(server: MotoS3Server) -> Any:
    """A boto3 client on ``server``, for arranging and checking test state."""
    return boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"mode": "standard", "max_attempts": 2}))


def create_bucket(server: MotoS3Server, name: str) -> str:
    """Create bucket ``name`` (S3 naming rules: 3-63 chars, lowercase); return it."""
    s3_client(server).create_bucket(Bucket=name)
    return name


def sidecar_env(server: MotoS3Server, bucket: str, prefix: str = "") -> dict[str, str]:
    """The environment an S3 sidecar needs to use ``bucket`` on ``server``.

    moto ignores ``If-Match`` on CompleteMultipartUpload, so the sidecar's
    emulator workaround is turned on (docs/connectors/s3.md).
    """
    return {"STATE_BUCKET": bucket, "STATE_PREFIX": prefix,
            "AWS_ENDPOINT_URL": server.endpoint, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_EMULATOR_WORKAROUNDS": "1"}
