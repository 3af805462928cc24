"""A gunicorn worker that gives every client connection its own thread.

Why not gthread: a vfs_state client keeps one connection per thread alive and
sends small requests back to back. gthread hands each connection back to its
poller after every response, and the next request travels poller -> pipe ->
pool thread: two thread switches and a handful of syscalls per request,
measured at a third of the sidecar's CPU (docs/performance.md). Here the
connection's own thread simply waits for the next request on its socket.

Built on gunicorn 27's worker API (``Parser.finish_body`` with a deadline).
The rest is gunicorn's: request parsing, the WSGI environ and response,
error pages, the arbiter's heartbeat and signals, ``max_requests``,
``keepalive`` (idle seconds before a connection is closed),
``worker_connections`` (connections served at once) and ``graceful_timeout``.
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

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.workers import base

#: How often idle connection threads and the accept loop look at ``alive``.
POLL_SECONDS = 1.0
#: Before accepting, a worker waits this long per connection it already
#: serves, so a less busy worker takes the newcomer (see ``_accept``).
ACCEPT_DELAY_PER_CONNECTION = 0.0005
#: A stopping worker still answers a request that arrives this soon (with
#: ``Connection: close``) instead of cutting the client off mid-send.
STOP_LINGER_SECONDS = 2.0


class ConnectionThreadWorker(base.Worker):
    """One thread per connection; the accept loop runs in the main thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = 0
        self._open_lock = threading.Lock()
        self._stopped_at: float | None = None

    # -- signals: never exit mid-request --------------------------------------
    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False

    # -- accept loop ----------------------------------------------------------
    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        while self.alive:
            self.notify()
            if not self._parent_alive():
                break
            if self._open >= self.cfg.worker_connections:
                time.sleep(0.01)  # at the cap: let a connection finish first
                continue
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
        """
        if self._open:
            time.sleep(ACCEPT_DELAY_PER_CONNECTION * min(self._open, 10))
        try:
            client, addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        client.setblocking(True)
        util.close_on_exec(client)
        with self._open_lock:
            self._open += 1
        server = listener.getsockname()
        threading.Thread(target=self._serve, args=(client, addr, server),
                         name="vfs-state-conn", daemon=True).start()

    def _drain(self) -> None:
        """Stop accepting; give open connections ``graceful_timeout`` to finish."""
        self._stopped_at = time.monotonic()
        deadline = self._stopped_at + self.cfg.graceful_timeout
        while self._open and time.monotonic() < deadline:
            self.notify()
            time.sleep(0.05)
        for listener in self.sockets:
            listener.close()

    # -- one connection -------------------------------------------------------
    def _serve(self, client: socket.socket, addr: Any, server: Any) -> None:
        req = None
        try:
            parser = http.RequestParser(self.cfg, client, addr)
            while self._wait_for_request(client, parser):
                req = next(parser)
                if not self._handle_request(req, client, addr, server):
                    break
                if not parser.finish_body(deadline=time.monotonic() + self.cfg.keepalive):
                    break
                req = None
        except (StopIteration, http.errors.NoMoreData):
            pass  # the client closed the connection, or HTTP says stop
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as exc:  # noqa: BLE001 - gunicorn turns it into a 400/500
            self.handle_error(req, client, addr, exc)
        finally:
            util.close(client)
            with self._open_lock:
                self._open -= 1

    def _wait_for_request(self, client: socket.socket, parser: http.RequestParser) -> bool:
        """True once the next request has started arriving; False on idle timeout or stop."""
        if parser.unreader.buf.getvalue():
            return True  # already read ahead with the previous request
        idle_deadline = time.monotonic() + self.cfg.keepalive
        while True:
            deadline = idle_deadline
            if not self.alive:
                deadline = min(deadline, (self._stopped_at or time.monotonic())
                               + STOP_LINGER_SECONDS)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                ready, _, _ = select.select([client], [], [], min(remaining, POLL_SECONDS))
            except (OSError, ValueError):  # the socket is gone
                return False
            if ready:
                return True

    def _handle_request(self, req: Any, client: socket.socket, addr: Any,
                        server: Any) -> bool:
        """Run the app for one request; True if the connection stays open."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = time.monotonic()
            resp, environ = wsgi.create(req, client, addr, server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
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
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - a hook must not kill the connection
                self.log.exception("Exception in post_request hook")

    def _log_access(self, resp: Any, req: Any, environ: dict[str, Any], started: float) -> None:
        elapsed = timedelta(seconds=time.monotonic() - started)
        self.log.access(resp, req, environ, elapsed)
