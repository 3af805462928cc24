"""No credential and no server path in any error body or sidecar log line.

A sidecar's log ends up in a cluster's log store, readable by more people
than the bucket. Each sidecar here gets a secret it must never repeat, is
fed bad and failing requests (bad keys, bad bodies, missing keys, CAS
conflicts, a backend that is down), and then its whole log and every reply
body are searched for the secret and for the server-side data path.
"""
from __future__ import annotations

import tempfile
import uuid

from tests.harness import moto_s3
from tests.harness.sidecar import Sidecar
from tests.rawhttp import key_url, request, send_raw

BAD_REQUESTS = [
    ("GET", "/keys/" + "x" * 300), ("PUT", "/keys/a/../../etc/passwd"),
    ("GET", "/keys/missing"), ("DELETE", "/keys/missing"), ("GET", "/meta/missing?attr=ttl"),
    ("GET", "/keys/?prefix=a&start_after=%00"), ("PUT", "/meta/k?attr=content_type"),
    ("GET", "/nowhere"),
]


def _provoke(socket_path: str) -> list[bytes]:
    """Good, bad and conflicting requests; returns every reply body."""
    bodies = [request(socket_path, "PUT", key_url("k"), b"v1")[2]]
    for method, path in BAD_REQUESTS:
        bodies.append(request(socket_path, method, path, b"\xff\xfe" if method == "PUT"
                              else None)[2])
    bodies.append(request(socket_path, "PUT", key_url("k"), b"v2",
                          {"If-Match": '"not-the-version"'})[2])
    bodies.append(send_raw(socket_path, b"GET /keys/k HTTP/1.1\r\nHost: x\r\n"
                                        b"Range: bytes=z\r\n\r\n"))
    bodies.append(send_raw(socket_path, b"PUT /keys/k HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"))
    return bodies


def _assert_clean(sidecar: Sidecar, bodies: list[bytes], secrets: list[str]) -> None:
    with open(sidecar.log_path, "rb") as handle:
        log = handle.read()
    for secret in secrets:
        needle = secret.encode()
        assert needle not in log, f"the sidecar log repeats {secret!r}"
        for body in bodies:
            assert needle not in body, f"a reply body repeats {secret!r}: {body[:200]!r}"


def test_local_sidecar_never_repeats_its_root(tmp_path):
    root = tempfile.mkdtemp(prefix="vfs-hygiene-root-")
    with Sidecar("local-buffered-cas", {"STATE_ROOT": root}, workers=1) as sidecar:
        bodies = _provoke(sidecar.socket_path)
        _assert_clean(sidecar, bodies, [root])


def test_s3_sidecar_never_repeats_its_credentials_even_when_the_backend_is_down():
    with moto_s3.MotoS3Server() as server:  # private: this test stops it
        bucket = moto_s3.create_bucket(server, "hygiene-bucket")
        env = moto_s3.sidecar_env(server, bucket)
        secret = env["AWS_SECRET_ACCESS_KEY"] = "hygiene-" + uuid.uuid4().hex  # moto takes any
        env["AWS_ACCESS_KEY_ID"] = "AKIAHYGIENE" + uuid.uuid4().hex[:8].upper()
        with Sidecar("s3-buffered-cas", env, workers=1) as sidecar:
            bodies = _provoke(sidecar.socket_path)
            server.stop()
            bodies.append(request(sidecar.socket_path, "GET", key_url("k"))[2])
            bodies.append(request(sidecar.socket_path, "PUT", key_url("k"), b"v3")[2])
            _assert_clean(sidecar, bodies, [secret, env["AWS_ACCESS_KEY_ID"]])
