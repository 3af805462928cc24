"""A gunicorn worker that gives every client connection its own thread.

Why not gthread: a vfs_state client keeps one connection per thread alive and
sends small requests back to back. gthread hands each connection back to its
poller after every response, and the next request travels poller -> pipe ->
pool thread: two thread switches and a handful of syscalls per request, a
large share of the sidecar's CPU (figures in docs/performance.md). Here the
connection's own thread simply waits for the next request on its socket.

Requests are parsed by llhttp through httptools (``sidecars.http_request``)
and answered by a lean WSGI layer (``sidecars.wsgi_environ``,
``sidecars.http_response``): gunicorn's pure-Python parser, environ and
response writer were half of a small request's CPU. They keep gunicorn's
limits (``limit_request_line``, ``limit_request_fields``,
``limit_request_field_size``), its error classes and so its error pages. The
rest is gunicorn's: the arbiter's heartbeat and signals, ``max_requests``,
``keepalive`` (idle seconds before a connection is closed),
``worker_connections`` (connections served at once), ``graceful_timeout``
and the ``pre_request``/``post_request`` hooks.

Slow and idle clients (docs/sidecars.md): a request head must arrive within
``VFS_STATE_HEADER_TIMEOUT`` seconds and a body may pause at most
``VFS_STATE_BODY_TIMEOUT`` seconds, or the connection is dropped; at the
connection cap, the connection that has waited longest for a request (idle
keep-alive, or a head still arriving) is closed to admit a newcomer, so
neither stalled nor idle clients can lock new ones out.
"""
from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from gunicorn import util
from gunicorn.http.errors import NoMoreData
from gunicorn.workers import base

from sidecars import settings, uploads
from sidecars.http_request import HEAD_RECV, Limits, Request, RequestReader
from sidecars.http_response import Response
from sidecars.wsgi_environ import connection_environ, request_environ, worker_environ
from vfs_state.connection import kernel_timeouts

#: How often idle connection threads and the accept loop look at ``alive``.
POLL_SECONDS = 1.0
#: Before accepting, a worker waits this long per connection it already
#: serves, so a less busy worker takes the newcomer (see ``_accept``).
ACCEPT_DELAY_PER_CONNECTION = 0.0005
#: A stopping worker still answers a request that arrives this soon (with
#: ``Connection: close``) instead of cutting the client off mid-send.
STOP_LINGER_SECONDS = 2.0
#: Part of ``graceful_timeout`` kept back to abort uploads still in flight
#: before the arbiter's SIGKILL (at most this, at most a fifth of it).
ABORT_RESERVE_SECONDS = 2.0
#: A connection waits at least this long for a request before a newcomer may
#: evict it: time for a new client to send its head, or a served one its next.
EVICT_GRACE_SECONDS = 0.5
REQUEST_TIMEOUT_REPLY = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                         b"Content-Length: 0\r\n\r\n")


class _HeadTimeout(TimeoutError):
    """The request head did not arrive within the header timeout."""


class _Connection:
    """A client socket as the parser reads it, with the timeouts and eviction state.

    The timeouts are kept here, not in the socket: a read or write that can
    go ahead is one system call (``MSG_DONTWAIT``), and only one that would
    block waits in ``poll``. (A Python socket with a timeout polls before
    every ``recv`` and ``send``, and each ``settimeout`` is an ``ioctl``:
    four calls more per keep-alive request.) Between requests the thread
    waits in a blocking ``recv`` that the kernel ends every ``POLL_SECONDS``
    (``wait_idle``).

    ``waiting_since`` is set while the connection waits for a request (idle
    keep-alive, or a head still arriving) and ``None`` while one is handled:
    only waiting connections may be evicted.
    """

    def __init__(self, sock: socket.socket, head_deadline: float) -> None:
        kernel_timeouts(sock, POLL_SECONDS)  # blocking; an idle ``recv`` ends every tick
        self.sock = sock
        self.pending: bytes | None = None  # the first bytes of a request, taken by ``wait_idle``
        self.head_deadline: float | None = head_deadline
        self.timeout: float | None = None  # for body reads and replies, once the head is in
        self.head_bytes = 0
        self.body_timed_out = False
        self.evicted = False
        self.waiting_since: float | None = time.monotonic()

    def recv(self, size: int) -> bytes:
        pending = self.pending
        if pending is not None:
            data, rest = pending[:size], pending[size:]
            self.pending = rest or None
            if self.head_deadline is not None:
                self.head_bytes += len(data)
            return data
        if self.head_deadline is not None and time.monotonic() >= self.head_deadline:
            raise _HeadTimeout("request head timeout")
        while True:
            try:
                data = self.sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._wait(select.POLLIN)
                continue
            if self.head_deadline is not None:
                self.head_bytes += len(data)
            return data

    def sendall(self, data: bytes) -> None:
        """All of ``data``, waiting at most ``timeout`` whenever the client reads none."""
        view: bytes | memoryview = data
        while True:
            try:
                sent = self.sock.send(view, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(view):
                return
            view = memoryview(view)[sent:]
            if not sent:
                self._wait(select.POLLOUT)

    def _wait(self, event: int) -> None:
        """Until the socket is ready for ``event``; the head or body timeout if it is not."""
        reading_head = self.head_deadline is not None and event == select.POLLIN
        if reading_head:
            remaining: float | None = self.head_deadline - time.monotonic()  # type: ignore[operator]
        else:
            remaining = self.timeout
        poller = select.poll()
        poller.register(self.sock, event)
        if remaining is None:
            poller.poll()
            return
        if remaining > 0 and poller.poll(remaining * 1000):
            return
        if reading_head:
            raise _HeadTimeout("request head timeout")
        if event == select.POLLIN:
            self.body_timed_out = True
        raise TimeoutError("timed out")

    def wait_idle(self, size: int) -> bool | None:
        """Wait in ``recv`` itself for the next request, at most ``POLL_SECONDS``.

        True once bytes (or the client's close) arrived, kept for ``recv``;
        None if the kernel's ``SO_RCVTIMEO`` ended the wait first. Waiting
        in the read saves the ``select`` before it: one system call per
        kept-alive request.
        """
        try:
            self.pending = self.sock.recv(size)
        except BlockingIOError:
            return None
        return True

    def gettimeout(self) -> float | None:
        return self.timeout

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def evict(self) -> None:
        """Wake the connection's thread (blocked in select or recv) and make it close."""
        self.evicted = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ConnectionThreadWorker(base.Worker):
    """One thread per connection; the accept loop runs in the main thread."""

    alive: bool  # gunicorn's: False once a signal, max_requests or the parent says stop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = 0  # connection threads alive (evicted ones until they end)
        self._open_lock = threading.Lock()
        self._conns: set[_Connection] = set()  # connections that count against the cap
        self._stopped_at: float | None = None
        server = settings.server()  # checked before gunicorn started
        self.header_timeout, self.body_timeout = server.header_timeout, server.body_timeout
        self.limits = Limits.from_config(self.cfg)
        self._environ = worker_environ(self.cfg)
        # read per request; a gunicorn Config lookup costs about a microsecond
        self.keepalive = self.cfg.keepalive
        self._pre_request, self._post_request = self.cfg.pre_request, self.cfg.post_request

    # -- accept loop ----------------------------------------------------------
    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        while self.alive:
            self.notify()
            if not self._parent_alive():
                break
            # PIPE[0] is gunicorn's signal wake-up fd: SIGTERM ends the wait at once
            ready, _, _ = select.select([*self.sockets, self.PIPE[0]], [], [], POLL_SECONDS)
            for source in ready:
                if isinstance(source, int):  # the wake-up pipe
                    os.read(self.PIPE[0], 4096)
                else:
                    self._accept(source)
        self._drain()

    def _parent_alive(self) -> bool:
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def _accept(self, listener: socket.socket) -> None:
        """Take a waiting client, leaving it to an idler worker if there is one.

        Every worker is woken for a new connection and the first ``accept``
        wins. Left alone, the worker already serving the others tends to win
        them all and, held to one core by the GIL, serves the whole sidecar.
        Connections are kept alive for many requests, so a short head start
        for less busy workers spreads them at almost no cost.

        At the cap, the connection that has waited longest for a request is
        closed to make room; when every connection is busy with a request,
        the newcomer stays in the listen backlog.
        """
        victim = None
        if len(self._conns) >= self.cfg.worker_connections:
            victim = self._longest_waiting()
            if victim is None:
                time.sleep(0.01)  # all busy: let a request finish first
                return
        elif self._conns:
            time.sleep(ACCEPT_DELAY_PER_CONNECTION * min(len(self._conns), 10))
        try:
            client, addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        util.close_on_exec(client)
        conn = _Connection(client, time.monotonic() + self.header_timeout)
        with self._open_lock:
            if victim is not None and victim in self._conns \
                    and victim.waiting_since is not None:
                self._conns.discard(victim)
                victim.evict()
            self._conns.add(conn)
            self._open += 1
        server = listener.getsockname()
        threading.Thread(target=self._serve, args=(conn, addr, server),
                         name="vfs-state-conn", daemon=True).start()

    def _longest_waiting(self) -> _Connection | None:
        """The eviction candidate: waiting for a request, and for at least the grace."""
        cutoff = time.monotonic() - EVICT_GRACE_SECONDS
        with self._open_lock:
            waiting = [c for c in self._conns
                       if c.waiting_since is not None and c.waiting_since <= cutoff]
        return min(waiting, key=lambda c: c.waiting_since or 0.0, default=None)

    def _drain(self) -> None:
        """Stop accepting; give open connections ``graceful_timeout`` to finish.

        A little of it is kept back: requests still running then are cut off
        with the worker, so their uploads are aborted here, before the
        arbiter's SIGKILL could leave them behind.
        """
        self._stopped_at = time.monotonic()
        grace = self.cfg.graceful_timeout
        deadline = self._stopped_at + grace - min(ABORT_RESERVE_SECONDS, grace / 5)
        while self._open and time.monotonic() < deadline:
            self.notify()
            time.sleep(0.05)
        for listener in self.sockets:
            listener.close()
        if self._open:
            uploads.abort_all()

    # -- one connection -------------------------------------------------------
    def _serve(self, conn: _Connection, addr: Any, server: Any) -> None:
        client, req = conn.sock, None
        try:
            reader = RequestReader(conn, self.limits)
            conn_environ = connection_environ(self._environ, client, addr)
            while self._wait_for_request(conn, reader):
                req = reader.next_request()
                if req is None or not self._begin_request(conn):
                    break  # the client closed the connection, or it was evicted
                keep = self._handle_request(req, conn, conn_environ, server)
                if not keep or conn.body_timed_out:
                    break
                conn.waiting_since = time.monotonic()
                if not reader.finish_body(req, deadline=time.monotonic() + self.keepalive):
                    break
                req = None
        except (StopIteration, NoMoreData):
            pass  # the client closed mid-request, or the reply could not be finished
        except _HeadTimeout:
            if conn.head_bytes:  # half a request came: say why it is dropped
                self._reply_quietly(client, REQUEST_TIMEOUT_REPLY)
        except OSError as exc:
            if not conn.evicted and exc.errno not in (errno.EPIPE, errno.ECONNRESET,
                                                      errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
        except Exception as exc:  # noqa: BLE001 - gunicorn turns it into a 400/500
            if not conn.evicted:
                client.settimeout(self.body_timeout)  # gunicorn writes to the socket itself
                self.handle_error(req, client, addr, exc)
        finally:
            util.close(client)
            with self._open_lock:
                self._conns.discard(conn)
                self._open -= 1

    def _begin_request(self, conn: _Connection) -> bool:
        """The head is in: the connection is busy (not evictable) until the reply."""
        with self._open_lock:
            if conn.evicted:
                return False
            conn.waiting_since = None
        conn.head_deadline = None
        conn.timeout = self.body_timeout  # a body (or a reader) may pause this long
        return True

    @staticmethod
    def _reply_quietly(client: socket.socket, data: bytes) -> None:
        try:
            client.settimeout(1.0)
            client.sendall(data)
        except OSError:
            pass

    def _wait_for_request(self, conn: _Connection, reader: RequestReader) -> bool:
        """True once the next request has started arriving; False on idle timeout or stop.

        The first request's head is due ``header_timeout`` after accept; a
        later one's from its first byte (the wait before it is ``keepalive``).
        """
        if conn.evicted:
            return False
        first = reader.count == 0
        if reader.has_pending():
            started = True  # already read ahead with the previous request
        else:
            idle = conn.head_deadline if first else time.monotonic() + self.keepalive
            started = self._wait_readable(conn, idle or 0.0)
        if started and not first:
            with self._open_lock:
                if conn.evicted:
                    return False
                conn.waiting_since = time.monotonic()  # a request: newest in line again
            conn.head_deadline = time.monotonic() + self.header_timeout
        return started and not conn.evicted

    def _wait_readable(self, conn: _Connection, idle_deadline: float) -> bool:
        while True:
            deadline = idle_deadline
            if not self.alive:
                deadline = min(deadline, (self._stopped_at or time.monotonic())
                               + STOP_LINGER_SECONDS)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                if remaining >= POLL_SECONDS:  # the kernel's tick ends it before the deadline
                    if conn.wait_idle(HEAD_RECV):
                        return True
                    continue
                ready, _, _ = select.select([conn.sock], [], [], remaining)
            except (OSError, ValueError):  # the socket is gone
                return False
            if ready:
                return True

    def _handle_request(self, req: Request, client: _Connection,
                        conn_environ: dict[str, Any], server: Any) -> bool:
        """Run the app for one request; True if the connection stays open."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self._pre_request(self, req)
            started = time.monotonic()
            resp = Response(req, client)
            environ = request_environ(req, conn_environ, server)
            if req.expect_continue:  # as gunicorn: before the app, whatever it does
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not self.alive or not self.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self._log_access(resp, req, environ, started)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent:
                # Half a response is out: a 500 now would corrupt the stream.
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self._post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - a hook must not kill the connection
                self.log.exception("Exception in post_request hook")

    def _log_access(self, resp: Response, req: Request, environ: dict[str, Any],
                    started: float) -> None:
        """gunicorn's access log, if the operator turned it on (the sidecar's own is JSON)."""
        if getattr(self.log, "access_log_enabled", True):
            elapsed = timedelta(seconds=time.monotonic() - started)
            self.log.access(resp, req, environ, elapsed)
