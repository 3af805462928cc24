"""Per-layer cost of one small read: from the backend call up to ``open().read()``.

Against the same sidecar (local, and Redis for contrast), one 1 KiB GET is
timed at every layer, interleaved:

* ``backend``: the sidecar's ``Backend.read`` in this process (storage only);
* ``flask wsgi``: the Flask app called in-process with a hand-made WSGI environ;
* ``flask test_client``: the same through ``app.test_client()``;
* ``raw socket``: a hand-written HTTP/1.1 request on a kept-alive Unix socket
  (gunicorn + socket + app, nothing on the client side);
* ``raw socket /healthz``: the same on the smallest route (gunicorn + Flask floor);
* ``raw socket /healthz, gthread``: that route on gunicorn's stock gthread
  worker, which the sidecar used before ``sidecars.worker``;
* ``gunicorn parse, in process`` and ``gunicorn + flask /healthz, in
  process``: gunicorn's parser alone, then parser, WSGI environ, the app and
  the reply written, over a socket pair in this process (no other process);
* ``worker parse, in process`` and ``worker + flask /healthz, in process``:
  the same with what ``sidecars.worker`` uses instead (httptools, its own
  environ and reply writer); ``worker without the app, in process``: its
  parse, environ and a canned reply written, so the server's whole share;
* ``python echo``: a Python thread that answers each request with canned
  bytes, no parsing: the floor of any Python-to-Python round trip here;
* ``vfs_state Transport``: ``vfs_state.transport.Transport.request`` (one
  ``sendall``, reply parsed by hand: what vfs_state uses);
* ``http.client``: the previous transport on ``http.client`` (for comparison);
* ``requests-unixsocket``: a ``requests`` session over the same socket;
* ``StateFS.readbytes`` and ``shim open().read()``: the full client stacks.

Differences between neighbouring rows are the layer costs. A second table
runs a few of these calls in a tight loop and divides each process's CPU
time by the calls (this client, the sidecar's gunicorn processes, the
backend server): a request's path is serial, so its wall time is about the
sum of those, and it shows what one request costs each side.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from benchmarks.common import (
    Context,
    KiB,
    cpu_per_call,
    interleaved,
    log,
    process_tree,
    shim_installed,
    sidecar_pids,
    spread,
    stats,
    table,
)

NAME = "transport_layers"
CONNECTORS = ("local-buffered-lww", "redis-buffered-cas")
KEY = "layers/k"
LAYERS = ("backend", "flask wsgi", "flask test_client", "gunicorn parse, in process",
          "gunicorn + flask /healthz, in process", "worker parse, in process",
          "worker + flask /healthz, in process", "worker without the app, in process",
          "python echo", "raw socket /healthz",
          "raw socket /healthz, gthread", "raw socket",
          "vfs_state Transport", "http.client", "requests-unixsocket", "StateFS.readbytes",
          "shim open().read()")


class RawHttp:
    """The least a client can do: pre-built request bytes, minimal response parsing."""

    def __init__(self, socket_path: str, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path)
        self.request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()

    def get(self) -> bytes:
        self.sock.sendall(self.request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += self.sock.recv(65536)
        return body

    def close(self) -> None:
        self.sock.close()


ECHO_SERVER = """
import socket, sys, threading
reply = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
def serve(conn):
    while conn.recv(65536):
        conn.sendall(reply)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen()
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


@contextmanager
def echo_server() -> Iterator[str]:
    """A canned-reply Python server on a Unix socket: no HTTP parsing at all."""
    path = os.path.join(tempfile.mkdtemp(prefix="vfs-echo-"), "echo.sock")
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, path], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield path
    finally:
        proc.kill()
        proc.wait()


class InProcessGunicorn:
    """gunicorn's own request handling for ``GET /healthz``, in this process.

    A socket pair stands in for the client connection, so what is timed is
    gunicorn's parser, its WSGI environ, the app and gunicorn writing the
    reply, with no other process involved.
    """

    REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"

    def __init__(self, app: Any) -> None:
        from gunicorn.config import Config
        self.cfg, self.app = Config(), app
        self.client, self.server = socket.socketpair()

    def parse(self) -> Any:
        from gunicorn import http
        self.client.sendall(self.REQUEST)
        return next(http.RequestParser(self.cfg, self.server, ("", 0)))

    def serve(self) -> bytes:
        from gunicorn.http import wsgi
        resp, environ = wsgi.create(self.parse(), self.server, ("", 0), ("", 0), self.cfg)
        for chunk in self.app(environ, resp.start_response):
            resp.write(chunk)
        resp.close()
        return self.client.recv(65536)

    def close(self) -> None:
        self.client.close()
        self.server.close()


class InProcessWorker(InProcessGunicorn):
    """``InProcessGunicorn`` with the sidecar worker's parser, environ and reply writer."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        from sidecars.http_request import Limits, RequestReader
        from sidecars.wsgi_environ import connection_environ, worker_environ
        self.reader = RequestReader(_Source(self.server), Limits.from_config(self.cfg))
        self.environ = connection_environ(worker_environ(self.cfg), self.server, "")

    def parse(self) -> Any:
        self.client.sendall(self.REQUEST)
        return self.reader.next_request()

    def serve(self) -> bytes:
        from sidecars.http_response import Response
        from sidecars.wsgi_environ import request_environ
        req = self.parse()
        resp = Response(req, self.server)
        reply = self.app(request_environ(req, self.environ, "sidecar.sock"), resp.start_response)
        for chunk in reply:
            resp.write(chunk)
        resp.close()
        reply.close()
        return self.client.recv(65536)

    def serve_canned(self) -> bytes:
        """Parse, environ and a reply the size of ``/healthz``'s, without the app."""
        from sidecars.http_response import Response
        from sidecars.wsgi_environ import request_environ
        req = self.parse()
        request_environ(req, self.environ, "sidecar.sock")
        resp = Response(req, self.server)
        resp.start_response("200 OK", [("Content-Type", "application/json"),
                                       ("Content-Length", "19")])
        resp.write(b'{"status":"ready"}\n')
        resp.close()
        return self.client.recv(65536)


class _Source:
    """A socket as ``RequestReader`` reads it (the worker's ``_Connection``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.recv, self.settimeout = sock.recv, sock.settimeout


@contextmanager
def gthread_sidecar(ctx: Context, connector: str) -> Iterator[Any]:
    """The same connector on gunicorn's stock gthread worker (8 threads)."""
    from tests.harness.sidecar import Sidecar
    env = ctx.pool.env(connector, "gthread-layers")
    sidecar = Sidecar(connector, env, extra_args=("--worker-class=gthread", "--threads=8"))
    with sidecar:
        yield sidecar


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def in_process_app(sidecar: Any) -> Any:
    """The sidecar's Flask app built here, on the same backend and prefix."""
    from sidecars.connectors import get_connector
    connector = get_connector(sidecar.connector)
    module = __import__(connector.module, fromlist=["create_app"])
    with environment({**sidecar._env, "VFS_STATE_CONSISTENCY": connector.consistency}):
        return module.create_app()


def wsgi_call(app: Any, path: str) -> Callable[[], bytes]:
    """Call the WSGI app directly: the app's own cost, no server, no test client."""
    base = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "localhost", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False}

    def call() -> bytes:
        environ = dict(base, **{"wsgi.input": io.BytesIO()})
        status: list[str] = []
        body = b"".join(app.wsgi_app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), status
        return body
    return call


def layer_calls(sidecar: Any, fs: Any, mount_path: str, shim_on: bool, echo_path: str,
                gthread_path: str
                ) -> tuple[dict[str, Callable[[], object] | None], list[Callable[[], None]]]:
    import requests_unixsocket

    from benchmarks.httpclient_transport import HttpClientTransport
    from vfs_state.transport import Transport
    app = in_process_app(sidecar)
    core = app.extensions["vfs_state"]
    store_key = core.prefix + KEY

    def backend() -> bytes:
        body = core.backend.read(store_key)
        data = b"".join(body.chunks)
        if body.close is not None:
            body.close()
        return data

    client = app.test_client()
    gunicorn_here, worker_here = InProcessGunicorn(app), InProcessWorker(app)
    raw, health = RawHttp(sidecar.socket_path, "/keys/" + KEY), RawHttp(sidecar.socket_path,
                                                                         "/healthz")
    echo, gthread = RawHttp(echo_path, "/"), RawHttp(gthread_path, "/healthz")
    transport = Transport(sidecar.socket_path)
    old_transport = HttpClientTransport(sidecar.socket_path)
    session = requests_unixsocket.Session()
    url = f"http+unix://{quote(sidecar.socket_path, safe='')}/keys/{KEY}"

    def shim_read() -> bytes:
        with open(f"{mount_path}/{KEY}", "rb") as f:
            return f.read()

    calls: dict[str, Callable[[], object] | None] = {
        "backend": backend, "flask wsgi": wsgi_call(app, "/keys/" + KEY),
        "flask test_client": lambda: client.get("/keys/" + KEY).data,
        "gunicorn parse, in process": gunicorn_here.parse,
        "gunicorn + flask /healthz, in process": gunicorn_here.serve,
        "worker parse, in process": worker_here.parse,
        "worker + flask /healthz, in process": worker_here.serve,
        "worker without the app, in process": worker_here.serve_canned,
        "python echo": echo.get, "raw socket /healthz": health.get,
        "raw socket /healthz, gthread": gthread.get, "raw socket": raw.get,
        "vfs_state Transport": lambda: transport.request("GET", "/keys/" + KEY).body,
        "http.client": lambda: old_transport.request("GET", "/keys/" + KEY).body,
        "requests-unixsocket": lambda: session.get(url).content,
        "StateFS.readbytes": lambda: fs.readbytes("/" + KEY),
        "shim open().read()": shim_read if shim_on else None,
    }
    closers = [gunicorn_here.close, worker_here.close, raw.close, health.close, echo.close,
               gthread.close, transport.close, old_transport.close, session.close,
               lambda: core.backend.close()]
    return calls, closers


def measure(ctx: Context, connector: str) -> dict[str, Any]:
    from tests.connectors import write_mode
    from vfs_state import StateFS
    from vfs_state.mounts import Mount
    sidecar = ctx.pool.sidecar(connector)
    fs = StateFS(sidecar.socket_path, write_mode(connector))
    data = os.urandom(KiB)
    with fs.openbin("/" + KEY, "w", create_parents=True) as f:
        f.write(data)
    mount_path = f"/vfs-bench-layers/{connector}"
    mount = Mount(name="layers", path=mount_path, socket=sidecar.socket_path)
    with shim_installed([mount]) as shim, echo_server() as echo_path, \
            gthread_sidecar(ctx, connector) as stock:
        calls, closers = layer_calls(sidecar, fs, mount_path, shim is not None, echo_path,
                                     stock.socket_path)
        try:
            for name, call in calls.items():
                reads_the_key = not any(w in name for w in ("healthz", "echo", "in process"))
                if call is not None and reads_the_key:
                    got = call()
                    assert data in (got if isinstance(got, bytes) else b""), name
            samples = interleaved(calls, ctx.scale(400, 40), warmup=5)
            cpu = cpu_table(ctx, connector, calls, sidecar, stock)
        finally:
            for close in closers:
                close()
            fs.close()
    medians = {name: stats(s, 1e6) for name, s in samples.items()}
    return {"layers": medians, "derived_us": derive({k: v["median"] for k, v in medians.items()}),
            "cpu_us_per_call": cpu}


def cpu_table(ctx: Context, connector: str, calls: dict[str, Callable[[], object] | None],
              sidecar: Any, stock: Any) -> dict[str, dict[str, float]]:
    """Wall and per-process CPU µs per call of a few layers, each in a tight loop."""
    from benchmarks.direct import direct_client, kind_of
    backend = [] if kind_of(connector) == "local" else \
        process_tree(ctx.pool.server(kind_of(connector)).proc.pid)
    direct = direct_client(ctx.pool, connector)
    direct.write(KEY, os.urandom(KiB))
    loops = {"direct client read": (lambda: direct.read(KEY), []),
             "raw socket /healthz": (calls["raw socket /healthz"], sidecar_pids(sidecar)),
             "raw socket /healthz, gthread": (calls["raw socket /healthz, gthread"],
                                              sidecar_pids(stock)),
             "StateFS.readbytes": (calls["StateFS.readbytes"], sidecar_pids(sidecar))}
    out = {}
    n = ctx.scale(3000, 300)
    try:
        for name, (call, server) in loops.items():
            assert call is not None
            used = cpu_per_call(call, n, server, backend)
            used["backend server"] = used.pop("backend")
            out[name] = {k: round(v, 1) for k, v in used.items()}
    finally:
        direct.close()
    return out


def derive(m: dict[str, float]) -> dict[str, float | None]:
    """Layer costs as differences of neighbouring medians (µs)."""
    def diff(a: str, b: str) -> float | None:
        return None if m.get(a) is None or m.get(b) is None else round(m[a] - m[b], 1)
    return {
        "storage (backend.read)": m.get("backend"),
        "flask app around the backend": diff("flask wsgi", "backend"),
        "gunicorn + socket + worker thread (raw socket - flask wsgi)": diff("raw socket",
                                                                            "flask wsgi"),
        "HTTP parse + Flask on the smallest route (/healthz - python echo)": diff(
            "raw socket /healthz", "python echo"),
        "gunicorn's parser instead of the worker's (in process)": diff(
            "gunicorn parse, in process", "worker parse, in process"),
        "gunicorn's parser, environ, reply instead of the worker's (/healthz, in process)":
            diff("gunicorn + flask /healthz, in process", "worker + flask /healthz, in process"),
        "gthread instead of sidecars.worker (/healthz)": diff("raw socket /healthz, gthread",
                                                              "raw socket /healthz"),
        "client HTTP (Transport - raw socket)": diff("vfs_state Transport", "raw socket"),
        "StateFS, RangeReader, io, versions (readbytes - Transport)": diff(
            "StateFS.readbytes", "vfs_state Transport"),
        "shim routing + open() wrapper (shim - readbytes)": diff("shim open().read()",
                                                                 "StateFS.readbytes"),
        "http.client instead of Transport": diff("http.client", "vfs_state Transport"),
        "requests-unixsocket instead of Transport": diff("requests-unixsocket",
                                                         "vfs_state Transport"),
    }


def run(ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {"object_size": KiB, "connectors": {}}
    for connector in CONNECTORS:
        log(f"transport_layers: {connector}")
        results["connectors"][connector] = measure(ctx, connector)
    return results


def report(results: dict[str, Any]) -> None:
    names = list(results["connectors"])
    table("Transport layers: one 1 KiB GET, µs, median [p25-p75]", ["layer", *names],
          [[layer, *(spread(results["connectors"][c]["layers"].get(layer)) for c in names)]
           for layer in LAYERS])
    derived = list(results["connectors"][names[0]]["derived_us"])
    table("Per-layer cost (difference of medians), µs", ["layer", *names],
          [[d, *(results["connectors"][c]["derived_us"][d] for c in names)] for d in derived])
    rows = []
    for c in names:
        for call, cost in results["connectors"][c].get("cpu_us_per_call", {}).items():
            rows.append([c, call, cost["wall"], cost["client"], cost["sidecar"],
                         cost["backend server"]])
    if rows:
        table("CPU per call in a tight loop, µs (sidecar: the gunicorn processes serving it)",
              ["connector", "call", "wall", "client CPU", "sidecar CPU", "backend server CPU"],
              rows)
