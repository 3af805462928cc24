"""No credential and no server path in any error body or sidecar log line.

A sidecar's log ends up in a cluster's log store, readable by more people
than the bucket. Each sidecar here gets a secret it must never repeat, is
fed bad and failing requests (bad keys, bad bodies, missing keys, CAS
conflicts, a backend that is down), and then its whole log and every reply
body are searched for the secret and for the server-side data path. The
start-up line is checked the same way, and gunicorn must leave nothing
(its control socket) in ``$HOME``.
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid

from tests.harness import moto_s3
from tests.harness.base import free_port
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


def _assert_clean(sidecar: Sidecar, bodies: list[bytes], secrets: list[str],
                  startup_may_name: bool = False) -> None:
    """No secret in the log or a reply; ``startup_may_name``: but in the start-up line."""
    with open(sidecar.log_path, "rb") as handle:
        log = handle.read()
    if startup_may_name:  # the operator's own setting, said once (a root, not a credential)
        log = b"\n".join(line for line in log.split(b"\n")
                         if not line.startswith(b"vfs-state-sidecar: starting "))
    for secret in secrets:
        needle = secret.encode()
        assert needle not in log, f"the sidecar log repeats {secret!r}"
        for body in bodies:
            assert needle not in body, f"a reply body repeats {secret!r}: {body[:200]!r}"


def test_local_sidecar_never_repeats_its_root(tmp_path):
    root = tempfile.mkdtemp(prefix="vfs-hygiene-root-")
    with Sidecar("local-buffered-cas", {"STATE_ROOT": root}, workers=1) as sidecar:
        bodies = _provoke(sidecar.socket_path)
        _assert_clean(sidecar, bodies, [root], startup_may_name=True)


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


def test_the_start_up_line_names_the_sidecar_and_no_secret(tmp_path):
    """Connector, socket, where the data goes and the workers; no password, no key."""
    port = free_port()  # nothing listens: requests fail, and their log lines are searched too
    url = f"redis://admin:pw-{uuid.uuid4().hex}@127.0.0.1:{port}/0?password=q-{uuid.uuid4().hex}"
    env = {"REDIS_URL": url, "REDIS_TIMEOUT": "1", "STATE_PREFIX": "team-a",
           "AWS_SECRET_ACCESS_KEY": "topsecret-" + uuid.uuid4().hex}
    with Sidecar("redis-buffered-cas", env, workers=2) as sidecar:
        bodies = _provoke(sidecar.socket_path)
        with open(sidecar.log_path, encoding="utf-8") as handle:
            starts = [line for line in handle if line.startswith("vfs-state-sidecar: starting")]
        secrets = [url.split("@")[0].split(":")[-1], url.split("password=")[1],
                   env["AWS_SECRET_ACCESS_KEY"]]
        _assert_clean(sidecar, bodies, secrets)
    assert len(starts) == 1, starts
    for part in ("connector=redis-buffered-cas", f"socket={sidecar.socket_path}", "workers=2",
                 f"url=redis://127.0.0.1:{port}/0", "prefix=team-a", "version="):
        assert part in starts[0], (part, starts[0])
    assert "admin" not in starts[0]


def test_gunicorn_puts_no_control_socket_in_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    sidecar = Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path / "root"),
                                             "HOME": str(home), "XDG_RUNTIME_DIR": ""},
                      workers=1)
    with sidecar:
        request(sidecar.socket_path, "GET", "/healthz")
        time.sleep(0.5)  # gunicorn starts its control server after the workers
        made = [os.path.join(d, f) for d, dirs, files in os.walk(home) for f in dirs + files]
    assert made == [], made
