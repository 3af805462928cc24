"""Sidecar metrics and access log (docs/operations.md), against real gunicorn sidecars.

Each test starts ``vfs-state-sidecar`` with two workers and reads ``/metrics``
the way Prometheus would: the values must count what was sent, whichever
worker served it, and survive a worker that dies.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

import psutil
from prometheus_client.parser import text_string_to_metric_families

import vfs_state
from sidecars.logs import redact_url
from tests.harness import moto_s3
from tests.harness.base import free_port
from tests.harness.sidecar import Sidecar
from tests.rawhttp import key_url, request, send_raw, status_of


def _local(tmp_path, **env: str) -> Sidecar:
    return Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path), **env}, workers=2)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _scrape(sidecar: Sidecar) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = request(sidecar.socket_path, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), body[:200]
    return _samples(body.decode())


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape_when(sidecar: Sidecar, name: str, expected: float, **labels: str) -> dict:
    """A scrape once ``name{labels}`` reaches ``expected``.

    A request is recorded when its reply is closed, just after the client got
    the last byte, so a scrape right after a reply may not count it yet.
    """
    deadline = time.monotonic() + 10
    while True:
        samples = _scrape(sidecar)
        if _value(samples, name, **labels) >= expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def _workers(sidecar: Sidecar, count: int = 2) -> list[psutil.Process]:
    """The workers, once ``count`` of them have loaded the app (and set the info gauge)."""
    metrics_dir = sidecar.socket_path + ".metrics"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = psutil.Process(sidecar.proc.pid).children()
        if len(workers) == count and all(
                os.path.exists(os.path.join(metrics_dir, f"gauge_max_{w.pid}.db"))
                for w in workers):
            return workers
        time.sleep(0.05)
    raise AssertionError(f"{count} workers not seen")


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    return sock


def _put_on(sock: socket.socket, key: str, body: bytes) -> None:
    """One keep-alive PUT on ``sock``; waits for its (bodiless) 204."""
    sock.sendall(f"PUT {key_url(key)} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                 f"\r\n\r\n".encode() + body)
    reply = b""
    while b"\r\n\r\n" not in reply:
        data = sock.recv(65536)
        assert data, "connection closed"
        reply += data
    assert reply.startswith(b"HTTP/1.1 204"), reply


def test_counters_rise_and_are_summed_over_both_workers(tmp_path):
    with _local(tmp_path) as sidecar:
        workers = _workers(sidecar)
        puts = dict(route="object", method="PUT", status="204")
        clients = []
        for _ in range(8):  # connections spread over the workers (tests/test_sidecar_worker.py)
            clients.append(_connect(sidecar.socket_path))
            _put_on(clients[-1], f"first/{len(clients)}", b"abc")
            time.sleep(0.02)
        for round_ in range(2):
            for number, sock in enumerate(clients):
                _put_on(sock, f"spread/{number}/{round_}", b"12345")
        for sock in clients:
            sock.close()
        after = _scrape_when(sidecar, "vfs_state_requests_total", 24, **puts)
        assert _value(after, "vfs_state_requests_total", **puts) == 24
        assert _value(after, "vfs_state_request_bytes_total", route="object") == 8 * 3 + 16 * 5
        assert _value(after, "vfs_state_backend_call_duration_seconds_count",
                      operation="write") == 24
        assert _value(after, "vfs_state_request_duration_seconds_count",
                      route="object", method="PUT") == 24
        assert _value(after, "vfs_state_sidecar_info", connector="local-buffered-cas",
                      version=vfs_state.__version__) == 1
        metrics_dir = sidecar.socket_path + ".metrics"  # a file per worker pid
        served = [w for w in workers
                  if os.path.exists(os.path.join(metrics_dir, f"histogram_{w.pid}.db"))]
        assert len(served) == 2, "both workers should have served some of the requests"

        os.kill(served[0].pid, signal.SIGKILL)  # its counts must survive it
        served[0].wait(10)
        _workers(sidecar)
        for number in range(4):  # served by the other worker or the new one
            assert request(sidecar.socket_path, "PUT", key_url(f"late/{number}"), b"z")[0] == 204
        survived = _scrape_when(sidecar, "vfs_state_requests_total", 28, **puts)
        assert _value(survived, "vfs_state_requests_total", **puts) == 28
        assert _value(survived, "vfs_state_in_flight_requests") == 1  # the scrape itself


def test_a_412_counts_as_a_precondition_failure(tmp_path):
    with _local(tmp_path) as sidecar:
        assert request(sidecar.socket_path, "PUT", key_url("k"), b"v1")[0] == 204
        before = _scrape(sidecar)
        status = request(sidecar.socket_path, "PUT", key_url("k"), b"v2",
                         {"If-Match": '"not-the-version"'})[0]
        assert status == 412
        after = _scrape_when(sidecar, "vfs_state_precondition_failures_total",
                             _value(before, "vfs_state_precondition_failures_total",
                                    method="PUT") + 1, method="PUT")
        assert _value(after, "vfs_state_precondition_failures_total", method="PUT") \
            == _value(before, "vfs_state_precondition_failures_total", method="PUT") + 1
        assert _value(after, "vfs_state_requests_total", route="object", method="PUT",
                      status="412") == 1


def test_the_tcp_port_serves_the_same_metrics(tmp_path):
    port = free_port()
    with _local(tmp_path, VFS_STATE_METRICS_PORT=str(port)) as sidecar:
        for number in range(3):
            request(sidecar.socket_path, "PUT", key_url(f"t/{number}"), b"x")
        request(sidecar.socket_path, "GET", key_url("t/0"))
        _scrape_when(sidecar, "vfs_state_requests_total", 1, route="object", method="GET",
                     status="200")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            by_tcp = _samples(reply.read().decode())
        by_socket = _scrape(sidecar)
        for labels in (dict(route="object", method="PUT", status="204"),
                       dict(route="object", method="GET", status="200")):
            assert _value(by_tcp, "vfs_state_requests_total", **labels) \
                == _value(by_socket, "vfs_state_requests_total", **labels) > 0
        assert _value(by_tcp, "vfs_state_response_bytes_total", route="object") == 1


def test_metrics_are_answered_while_the_backend_is_down(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with Sidecar("redis-buffered-cas", {"REDIS_URL": url, "REDIS_TIMEOUT": "1"},
                 workers=2) as sidecar:
        assert request(sidecar.socket_path, "GET", "/readyz")[0] == 503
        assert request(sidecar.socket_path, "GET", key_url("k"))[0] >= 500
        samples = _scrape_when(sidecar, "vfs_state_requests_total", 1, route="readyz",
                               method="GET", status="503")
        assert _value(samples, "vfs_state_requests_total", route="readyz", method="GET",
                      status="503") == 1
        assert _value(samples, "vfs_state_backend_call_duration_seconds_count",
                      operation="ping") == 1


def _access_lines(sidecar: Sidecar) -> list[dict]:
    with open(sidecar.log_path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.startswith("{")]


def test_the_access_log_has_one_json_line_per_request(tmp_path):
    with _local(tmp_path, VFS_STATE_ACCESS_LOG="1") as sidecar:
        request(sidecar.socket_path, "PUT", key_url("dir/a b"), b"hello")
        request(sidecar.socket_path, "GET", key_url("dir/a b"))
        request(sidecar.socket_path, "GET", "/keys/?prefix=dir/")
        # Written as each reply is closed, after its last byte went out: with two
        # workers, the next request's line can come first, so lines are matched, not ordered.
        deadline = time.monotonic() + 10
        while True:
            lines = [line for line in _access_lines(sidecar) if line["path"] != "/healthz"]
            if len(lines) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert len(lines) == 3, lines
    (put,) = [line for line in lines if line["method"] == "PUT"]
    (get,) = [line for line in lines if line["method"] == "GET" and line["path"] != "/keys/"]
    (listing,) = [line for line in lines if line["path"] == "/keys/"]
    assert put == {"method": "PUT", "path": "/keys/dir/a b", "status": 204, "bytes_in": 5,
                   "bytes_out": 0, "duration_ms": put["duration_ms"], "backend_calls": 1}
    assert isinstance(put["duration_ms"], float) and put["duration_ms"] > 0
    assert (get["method"], get["status"], get["bytes_in"], get["bytes_out"]) == ("GET", 200, 0, 5)
    assert listing["path"] == "/keys/" and listing["query"] == "prefix=dir/"


def test_no_access_log_unless_enabled(tmp_path):
    with _local(tmp_path) as sidecar:
        request(sidecar.socket_path, "PUT", key_url("k"), b"hello")
        time.sleep(0.2)
        assert _access_lines(sidecar) == []


def test_urls_are_printed_without_credentials():
    assert redact_url("redis://user:pw@10.0.0.1:6379/0?password=x") == "redis://10.0.0.1:6379/0"
    assert redact_url("nats://a:b@h1:4222, nats://h2:4222") == "nats://h1:4222,nats://h2:4222"
    assert redact_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock"
    assert redact_url("localhost:4443") == "localhost:4443"
    assert redact_url("https://[::1]:9000") == "https://[::1]:9000"


def test_an_upload_cut_off_by_a_bad_body_counts_as_aborted():
    """S3: 9 MiB of good chunks start a multipart upload, then a malformed chunk."""
    with moto_s3.MotoS3Server() as server:
        bucket = moto_s3.create_bucket(server, "metrics-aborts")
        with Sidecar("s3-buffered-cas", moto_s3.sidecar_env(server, bucket),
                     workers=2) as sidecar:
            chunk = b"a" * (9 << 20)
            reply = send_raw(sidecar.socket_path,
                             b"PUT /keys/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                             b"\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk
                             + b"\r\nzz\r\n")
            assert status_of(reply) == 400, reply[:200]
            samples = _scrape_when(sidecar, "vfs_state_aborted_uploads_total", 1)
            assert _value(samples, "vfs_state_aborted_uploads_total") == 1
            assert _value(samples, "vfs_state_backend_call_duration_seconds_count",
                          operation="write") == 1


def test_backend_retries_are_counted():
    """S3: an endpoint that always answers 503; boto3 retries, the sidecar counts them."""
    import http.server
    import threading

    seen: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def _busy(self) -> None:
            seen.append(self.command)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = _busy

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"STATE_BUCKET": "busy", "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    try:
        with Sidecar("s3-buffered-cas", env, workers=2) as sidecar:
            status, _, _ = request(sidecar.socket_path, "HEAD", key_url("k"))
            assert status == 503
            samples = _scrape_when(sidecar, "vfs_state_backend_retries_total", 1,
                                   operation="HeadObject")
            # every HEAD the endpoint saw after the first was a retry of the one call
            assert seen.count("HEAD") > 1
            assert _value(samples, "vfs_state_backend_retries_total",
                          operation="HeadObject") == seen.count("HEAD") - 1
    finally:
        server.shutdown()


def test_importing_the_gunicorn_config_changes_no_environment():
    """It once set PROMETHEUS_MULTIPROC_DIR on import, and every sidecar a test
    process started afterwards inherited another sidecar's metrics directory."""
    import subprocess
    import sys

    code = ("import os; before = dict(os.environ); import sidecars.gunicorn_conf; "
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout.strip()
    assert out == "[]"


DIRECT_WRITES = r'''
import json, os, sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sidecars import metrics
from sidecars.metric_writes import Counting, Timing, write

# the sidecar's own series take the direct path in multiprocess mode
series = metrics._series("object", "GET", "200")
assert None not in (series.requests.value, series.seconds.sum, metrics._in_flight.value)

def made(prefix):
    return (Counter(prefix + "_total", "c", ["a"]), Gauge(prefix + "_g", "g", ["a"],
            multiprocess_mode="livesum"), Histogram(prefix + "_seconds", "h", ["a"],
            buckets=metrics.BUCKETS))

observations = [0.0001, 0.0005, 0.0007, 0.3, 7.0, 500.0, 0.0]
direct, public = made("direct"), made("public")
for label in ("x", "y"):
    counter, gauge, hist = (Counting(direct[0].labels(label)), Counting(direct[1].labels(label)),
                            Timing(direct[2].labels(label)))
    for seconds in observations:
        updates = []
        counter.add(updates, 2.0)
        gauge.add(updates, 1.0)
        gauge.add(updates, -0.5)
        hist.add(updates, seconds)
        write(updates)
        public[0].labels(label).inc(2.0)
        public[1].labels(label).inc(1.0)
        public[1].labels(label).dec(0.5)
        public[2].labels(label).observe(seconds)
if os.fork() == 0:  # a forked child writes its own file, as a gunicorn worker does
    updates = []
    Counting(direct[0].labels("x")).add(updates, 1.0)
    write(updates)
    public[0].labels("x").inc(1.0)
    os._exit(0)
os.wait()
registry = CollectorRegistry()
MultiProcessCollector(registry)
text = generate_latest(registry).decode()
print(json.dumps(text))
'''


def test_direct_metric_writes_read_back_as_the_librarys_own(tmp_path):
    """``sidecars.metric_writes`` writes what ``inc``/``observe`` write, in a forked child too."""
    import subprocess
    import sys
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", DIRECT_WRITES], env=env, check=True,
                         capture_output=True, text=True).stdout
    samples = _samples(json.loads(out))
    direct = {(name.replace("direct", "", 1), labels): value
              for (name, labels), value in samples.items() if name.startswith("direct")}
    public = {(name.replace("public", "", 1), labels): value
              for (name, labels), value in samples.items() if name.startswith("public")}
    assert direct == public and len(direct) > 30
    assert direct[("_total", (("a", "x"),))] == 15.0  # 7 x 2, and 1 from the child
