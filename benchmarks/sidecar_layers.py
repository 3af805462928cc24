"""The sidecar's CPU per request, layer by layer, inside one process (no HTTP).

Each row calls a WSGI app (or the backend) directly with a prepared
environ, in a tight loop, and divides this process's CPU time by the calls;
rows are interleaved over ``--rounds`` so load from other work hits them
alike. Layers, from nothing to a whole Redis read: a bare WSGI callable,
stock Flask with one view, the sidecar's ``SidecarFlask``, the sidecar app
with and without its metrics middleware (and a GET over many keys in turn,
so no URL match is remembered), then the Redis backend alone (read, stat,
write) and redis-py's own ``GET`` and ``SET`` for scale. What is left of a
request's sidecar CPU (``hot_path``) after these is the HTTP server:
parsing, environ, writing.

``python -m benchmarks.sidecar_layers [--calls 3000] [--rounds 3]``; part of
``python -m benchmarks`` as ``sidecar_layers``.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

from benchmarks.common import Context, KiB, Options, log, table

NAME = "sidecar_layers"
KEY = "layers/a.json"
#: the GET row of many keys: more than a sidecar remembers URL matches for
MANY_KEYS = 2048


def environ(method: str = "GET", path: str = "/healthz", body: bytes = b"") -> dict[str, Any]:
    """What a WSGI server hands the app for a request over the sidecar's socket."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "RAW_URI": path, "QUERY_STRING": "",
        "SCRIPT_NAME": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "REMOTE_ADDR": "", "HTTP_HOST": "localhost",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/octet-stream"
    return env


def _start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
    return None


def serve(app: Callable[..., Iterable[bytes]], method: str = "GET", path: str = "/healthz",
          body: bytes = b"") -> Callable[[], bytes]:
    """One request through ``app``, its reply read and closed, as a WSGI server would."""
    def call() -> bytes:
        reply = app(environ(method, path, body), _start_response)
        try:
            return b"".join(reply)
        finally:
            close = getattr(reply, "close", None)
            if close is not None:
                close()
    return call


def _apps(redis_url: str, metrics_dir: str) -> tuple[dict[str, Callable[[], object]],
                                                    Callable[[], None]]:
    from flask import Flask, jsonify

    # as under gunicorn: every metric value is written to a file of this process
    if "prometheus_client" not in sys.modules:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(REDIS_URL=redis_url, STATE_PREFIX="")
    from sidecars import redis as redis_sidecar
    try:
        from sidecars.lean_flask import SidecarFlask
    except ImportError:  # a commit before it: runs for before/after tables
        SidecarFlask = Flask  # type: ignore[misc,assignment]  # noqa: N806

    def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    stock, lean = Flask("stock"), SidecarFlask("lean")
    for flask_app in (stock, lean):
        flask_app.add_url_rule("/healthz", "healthz", lambda: jsonify(status="ready"))
    app = redis_sidecar.create_app()
    backend = app.extensions["vfs_state"].backend
    payload = os.urandom(KiB)
    serve(app, "PUT", "/keys/" + KEY, payload)()
    spread = [f"layers/many/{i}.json" for i in range(MANY_KEYS)]
    for key in spread:
        backend.write(key, io.BytesIO(payload), len(payload))
    distinct = [serve(app, "GET", "/keys/" + key) for key in spread]
    turn = iter(range(1 << 62))
    direct = __import__("redis").Redis.from_url(redis_url)
    direct.set("direct/a.json", payload)
    without_metrics = app.wsgi_app.app  # metrics.Instrumented wraps Flask's own wsgi_app
    calls: dict[str, Callable[[], object]] = {
        "bare WSGI callable": serve(bare),
        "stock Flask, jsonify view": serve(stock),
        "SidecarFlask, jsonify view": serve(lean),
        "sidecar app /healthz, no metrics": serve(without_metrics),
        "sidecar app /healthz": serve(app),
        "sidecar app GET 1 KiB, no metrics": serve(without_metrics, "GET", "/keys/" + KEY),
        "sidecar app GET 1 KiB": serve(app, "GET", "/keys/" + KEY),
        f"sidecar app GET 1 KiB, {MANY_KEYS} keys in turn":
            lambda: distinct[next(turn) % MANY_KEYS](),
        "sidecar app HEAD": serve(app, "HEAD", "/keys/" + KEY),
        "sidecar app PUT 1 KiB": serve(app, "PUT", "/keys/" + KEY, payload),
        "Redis backend read 1 KiB": lambda: b"".join(backend.read(KEY).chunks),
        "Redis backend stat": lambda: backend.stat(KEY),
        "Redis backend write 1 KiB": lambda: backend.write(KEY, io.BytesIO(payload),
                                                           len(payload)),
        "redis-py GET (for scale)": lambda: direct.get("direct/a.json"),
        "redis-py SET 1 KiB (for scale)": lambda: direct.set("direct/a.json", payload),
    }

    def close() -> None:
        direct.close()
        backend.close()
    return calls, close


def cpu_us(call: Callable[[], object], n: int) -> float:
    for _ in range(max(1, n // 10)):
        call()
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) * 1e6 / n


def run(ctx: Context | None = None, calls_per_loop: int | None = None,
        rounds: int | None = None) -> dict[str, Any]:
    from tests.harness.redis_server import RedisServer

    quick = ctx is not None and ctx.quick
    n = calls_per_loop or (500 if quick else 3000)
    rounds = rounds or (2 if quick else 3)
    samples: dict[str, list[float]] = {}
    with RedisServer() as server, tempfile.TemporaryDirectory() as metrics_dir:
        calls, close = _apps(server.url, metrics_dir)
        try:
            names = list(calls)
            for r in range(rounds):
                log(f"sidecar_layers round {r + 1}/{rounds}")
                for name in names[r % len(names):] + names[:r % len(names)]:
                    samples.setdefault(name, []).append(cpu_us(calls[name], n))
        finally:
            close()
    rows = {name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
            for name, v in samples.items()}
    return {"calls": n, "rounds": rounds, "rows": rows}


def report(result: dict[str, Any]) -> None:
    rows = [[name, f"{r['median']:.1f} [{r['min']:.1f}-{r['max']:.1f}]"]
            for name, r in result["rows"].items()]
    table(f"Sidecar layers in one process: CPU µs per call, median [min-max] of "
          f"{result['rounds']} loops of {result['calls']}", ["layer", "CPU µs"], rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    report(run(Context(Options()), args.calls, args.rounds))
