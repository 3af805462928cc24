"""Prometheus metrics and the JSON access log of a sidecar (docs/operations.md).

gunicorn runs several worker processes; ``prometheus_client``'s multiprocess
mode lets each write its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(a private directory ``sidecars.gunicorn_conf`` empties at start) and sums them when
``/metrics`` is read, so any worker, or the arbiter's optional TCP port,
answers for the whole sidecar. That mode is chosen when ``prometheus_client``
is first imported, so the directory must be in the environment before that:
``vfs-state-sidecar`` and ``sidecars.gunicorn_conf`` set it.

Two wrappers, applied in one place by ``sidecars.app.build_app``, keep the
views and connectors free of metrics code: ``TimedBackend`` times every
``Backend`` call, and ``Instrumented`` (WSGI middleware) counts requests and
bytes, answers ``/metrics`` before Flask and the backend are involved (so it
works while the backend is down), and writes the access line.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.registry import REGISTRY

from sidecars.backend import Backend, ListPage, NamePage, ObjectBody, ObjectInfo
from sidecars.metric_writes import Counting, Timing, Updates, write
from sidecars.streams import Readable

access_log = logging.getLogger("vfs_state.access")

#: Seconds: from a local-disk stat (sub-millisecond) to a large upload.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 120.0)

REQUESTS = Counter("vfs_state_requests_total", "HTTP requests answered",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("vfs_state_request_duration_seconds",
                            "Time from the request head to the last byte of the reply",
                            ["route", "method"], buckets=BUCKETS)
BACKEND_SECONDS = Histogram("vfs_state_backend_call_duration_seconds",
                            "Time of one Backend call (a read: until its body starts)",
                            ["operation"], buckets=BUCKETS)
REQUEST_BYTES = Counter("vfs_state_request_bytes_total", "Request body bytes read", ["route"])
RESPONSE_BYTES = Counter("vfs_state_response_bytes_total", "Reply body bytes sent", ["route"])
PRECONDITION_FAILURES = Counter("vfs_state_precondition_failures_total",
                                "Requests answered 412 (a CAS conflict or stale If-Match)",
                                ["method"])
ABORTED_UPLOADS = Counter("vfs_state_aborted_uploads_total",
                          "S3 multipart and GCS resumable uploads aborted")
BACKEND_RETRIES = Counter("vfs_state_backend_retries_total",
                          "Retries the backend client made inside one call (S3 only)",
                          ["operation"])
IN_FLIGHT = Gauge("vfs_state_in_flight_requests", "Requests being handled now",
                  multiprocess_mode="livesum")
INFO = Gauge("vfs_state_sidecar_info", "Always 1; the labels name the sidecar",
             ["connector", "version"], multiprocess_mode="max")

METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PATCH"})
_calls = threading.local()  # backend calls of the request this thread serves
T = TypeVar("T")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """The text format of every metric, summed over the workers when there are several."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    return generate_latest(collector_registry())


def collector_registry() -> CollectorRegistry:
    """A registry reading the multiprocess files (fresh per scrape, as the files change)."""
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry)
    return registry


def worker_gone(pid: int) -> None:
    """A worker ended: drop its in-flight gauge (its counters still count)."""
    if multiprocess_dir() is not None:
        _multiprocess.mark_process_dead(pid)


def upload_aborted(count: int = 1) -> None:
    """Called by ``sidecars.uploads`` for each upload it sees aborted."""
    ABORTED_UPLOADS.inc(count)


def backend_retried(operation: str, attempts: int) -> None:
    """Called by a connector whose client reports its retries (boto3's ``RetryAttempts``)."""
    BACKEND_RETRIES.labels(operation).inc(attempts)


_operations: dict[str, Timing] = {}


class TimedBackend(Backend):
    """A ``Backend`` that times each call of the one it wraps, per operation."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.max_object_size = inner.max_object_size
        self.refuses_dir_clash = inner.refuses_dir_clash
        self.exact_mtime = inner.exact_mtime

    def _timed(self, operation: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        _calls.count = getattr(_calls, "count", 0) + 1
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            timing = _operations.get(operation)
            if timing is None:
                timing = _operations[operation] = Timing(BACKEND_SECONDS.labels(operation))
            updates: Updates = []
            timing.add(updates, elapsed)
            write(updates)

    def stat(self, key: str) -> ObjectInfo | None:
        return self._timed("stat", self.inner.stat, key)

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        return self._timed("read", self.inner.read, key, start, length, if_match=if_match)

    def write(self, key: str, body: Readable, length: int | None, if_match: str | None = None,
              if_none_match: bool = False) -> ObjectInfo:
        return self._timed("write", self.inner.write, key, body, length, if_match=if_match,
                           if_none_match=if_none_match)

    def delete(self, key: str, if_match: str | None = None) -> None:
        self._timed("delete", self.inner.delete, key, if_match=if_match)

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
                  max_keys: int) -> ListPage:
        return self._timed("list", self.inner.list_page, prefix, delimiter, start_after,
                           max_keys)

    def list_details(self, prefix: str, delimiter: str | None, start_after: str | None,
                     max_keys: int) -> ListPage:
        return self._timed("list_details", self.inner.list_details, prefix, delimiter,
                           start_after, max_keys)

    def list_names(self, prefix: str, start_after: str | None, max_keys: int,
                   details: bool = False) -> NamePage:
        return self._timed("list_details" if details else "list", self.inner.list_names, prefix,
                           start_after, max_keys, details)

    def is_dir(self, key: str) -> bool:
        return self._timed("is_dir", self.inner.is_dir, key)

    def get_attrs(self, key: str) -> dict[str, str]:
        return self._timed("get_attrs", self.inner.get_attrs, key)

    def set_attr(self, key: str, name: str, value: str) -> None:
        self._timed("set_attr", self.inner.set_attr, key, name, value)

    def ping(self) -> None:
        self._timed("ping", self.inner.ping)

    def close(self) -> None:
        self.inner.close()


def route_of(path: str) -> str:
    """A bounded label for a path: never the key itself."""
    if path.startswith("/keys/") and len(path) > len("/keys/"):
        return "object"
    if path in ("/keys", "/keys/"):
        return "listing"
    if path.startswith("/meta/"):
        return "meta"
    if path in ("/healthz", "/readyz", "/metrics"):
        return path[1:]
    return "other"


class _CountingInput:
    """``wsgi.input`` that counts the bytes the app reads."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self.stream.readline(size)
        self.count += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self.stream:
            self.count += len(line)
            yield line


class Instrumented:
    """WSGI middleware: ``/metrics``, request metrics and the access line."""

    def __init__(self, app: Callable[..., Iterable[bytes]], connector: str, version: str,
                 log_access: bool) -> None:
        self.app = app
        self.log_access = log_access
        INFO.labels(connector, version).set(1)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            return self._metrics(environ, start_response)
        return self.measured(environ, start_response, self.app)

    def measured(self, environ: dict[str, Any], start_response: Callable[..., Any],
                 app: Callable[..., Iterable[bytes]]) -> Iterable[bytes]:
        record = _Record(environ, self.log_access, start_response)
        try:
            reply = app(environ, record.start_response)
        except BaseException:
            record.finish()
            raise
        if type(reply) is list:  # the whole body is here: count it now, hand the list on
            record.sent = sum(map(len, reply))
            return _ListReply(reply, record)
        return _Reply(reply, record)

    def _metrics(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        def serve(_environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
            body = exposition()
            start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                             ("Content-Length", str(len(body)))])
            return [body]

        return self.measured(environ, start_response, serve)


class _Series:
    """The series one kind of request updates (``labels()`` costs a lock and a lookup)."""

    __slots__ = ("requests", "seconds", "bytes_in", "bytes_out")

    def __init__(self, route: str, method: str, status: str) -> None:
        self.requests = Counting(REQUESTS.labels(route, method, status))
        self.seconds = Timing(REQUEST_SECONDS.labels(route, method))
        self.bytes_in = Counting(REQUEST_BYTES.labels(route))
        self.bytes_out = Counting(RESPONSE_BYTES.labels(route))


_children: dict[tuple[str, str, str], _Series] = {}
_in_flight = Counting(IN_FLIGHT)


def _series(route: str, method: str, status: str) -> _Series:
    key = (route, method, status)
    found = _children.get(key)
    if found is None:
        found = _children[key] = _Series(route, method, status)
    return found


def _has_body(environ: dict[str, Any]) -> bool:
    """Whether the request's framing announces a body (else nothing can be read)."""
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ


class _Record:
    """One request's figures, recorded once when its reply is closed."""

    def __init__(self, environ: dict[str, Any], log_access: bool,
                 start_response: Callable[..., Any]) -> None:
        self.environ = environ
        self.log_access = log_access
        self.route = route_of(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "")
        self.method = method if method in METHODS else "other"  # clients choose it
        self.input: _CountingInput | None = None
        if _has_body(environ):
            self.input = environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])
        self._start_response = start_response
        self.status = "500"
        self.sent = 0
        self.started = time.perf_counter()
        self.done = False
        _calls.count = 0
        updates: Updates = []
        _in_flight.add(updates, 1.0)
        write(updates)

    def start_response(self, status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        self.status = status.split(" ", 1)[0]
        return self._start_response(status, headers, *exc)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        elapsed = time.perf_counter() - self.started
        received = self.input.count if self.input is not None else 0
        series = _series(self.route, self.method, self.status)
        updates: Updates = []
        _in_flight.add(updates, -1.0)
        series.requests.add(updates)
        series.seconds.add(updates, elapsed)
        if received:
            series.bytes_in.add(updates, received)
        if self.sent:
            series.bytes_out.add(updates, self.sent)
        write(updates)
        if self.status == "412":
            PRECONDITION_FAILURES.labels(self.method).inc()
        if self.log_access:
            self._log(elapsed, received)

    def _log(self, elapsed: float, received: int) -> None:
        """One JSON line: never a header or a body, so never a credential or content."""
        line = {"method": self.method, "path": self.environ.get("PATH_INFO", ""),
                "status": int(self.status), "bytes_in": received,
                "bytes_out": self.sent, "duration_ms": round(elapsed * 1000, 3),
                "backend_calls": getattr(_calls, "count", 0)}
        query = self.environ.get("QUERY_STRING")
        if query:
            line["query"] = query
        access_log.info(json.dumps(line, ensure_ascii=True))


class _Reply:
    """The app's reply iterable, counting bytes out; ``close()`` records the request."""

    def __init__(self, inner: Iterable[bytes], record: _Record) -> None:
        self.inner = inner
        self.record = record

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.record.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self.record.finish()


class _ListReply(list[bytes]):
    """A reply the app gave as a list: iterated as one, its bytes counted up front."""

    def __init__(self, pieces: list[bytes], record: _Record) -> None:
        super().__init__(pieces)
        self.record = record

    def close(self) -> None:
        self.record.finish()
