"""Flask without the per-request work a sidecar never uses.

A sidecar answers one client on a Unix socket: no cookies, no sessions, no
host names to route on, no redirects to build. Flask still opens a (null)
session and parses the ``Host`` header twice for every request, about 15 µs
of an 80 µs request on the benchmark machine (docs/performance.md). The two
hooks below are Flask's documented extension points; routing, error
handlers, request and response objects are untouched.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Request
from flask.sessions import NullSession, SessionInterface
from werkzeug.routing import MapAdapter


class NoSessions(SessionInterface):
    """Every request gets the same empty, read-only session; nothing is saved."""

    null = NullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.null

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None

    def is_null_session(self, obj: object) -> bool:
        return True


class SidecarFlask(Flask):
    """Flask with ``NoSessions`` and routing bound without looking at ``Host``."""

    session_interface = NoSessions()

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Bind the URL map to the request's path and method only.

        Flask's own version reads ``Host`` (and checks trusted hosts) to
        support host and subdomain matching; the sidecar routes on the path
        alone, and ``request.path`` is the decoded path Flask would match.
        """
        if request is None:
            return super().create_url_adapter(None)
        environ = request.environ
        return self.url_map.bind("localhost", script_name=request.root_path or "/",
                                 url_scheme="http", default_method=request.method,
                                 path_info=request.path,
                                 query_args=environ.get("QUERY_STRING", ""))
