"""Flask without the per-request work a sidecar never uses.

A sidecar answers one client on a Unix socket: no cookies, no sessions, no
host names to route on, no redirects to build, no request hooks and no
signal receivers. Flask still opens a (null) session, parses ``Host``,
encodes the server name to IDNA to bind its URL map, and walks the empty
hook lists and signals of every request (docs/performance.md has the cost).
``SidecarFlask`` overrides Flask's documented extension points
(``session_interface``, ``response_class``, ``create_url_adapter``,
``ensure_sync``, ``full_dispatch_request``, ``finalize_request``,
``do_teardown_request``, ``do_teardown_appcontext``) to skip that work
while there is nothing to do; the moment an app registers a hook or a
signal receiver, each override hands over to Flask's own code. Routing,
the request and application contexts, ``flask.request``, error handlers
and the response object are Flask's.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask, Request
from flask import signals as flask_signals
from flask.globals import request_ctx
from flask.json.provider import DefaultJSONProvider
from flask.sessions import NullSession, SessionInterface
from werkzeug.routing import MapAdapter
from werkzeug.sansio.response import Response as BaseResponse
from werkzeug.utils import get_content_type

from sidecars.lean_response import SidecarResponse

_MISSING: Any = object()  # "argument not given": Flask's own default then applies
#: ensure_sync results kept, per function: views and handlers are few and fixed
_SYNC_CACHE_MAX = 256


class NoSessions(SessionInterface):
    """Every request gets the same empty, read-only session; nothing is saved."""

    null = NullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.null

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None

    def is_null_session(self, obj: object) -> bool:
        return True


class SidecarRequest(Request):
    """Flask's ``Request``; ``close`` skips its walk over uploaded files when none were parsed."""

    def close(self) -> None:
        if "files" in self.__dict__:
            super().close()


class SidecarJSONProvider(DefaultJSONProvider):
    """``jsonify`` with one reusable encoder and ``SidecarResponse.of``.

    Flask's builds a ``json.JSONEncoder`` and a checked ``Response`` per
    reply; the bytes are the same. Debug or non-compact output, a changed
    ``default`` or a response class without ``of`` take Flask's path.
    """

    _encoders: dict[tuple[bool, bool], json.JSONEncoder] = {}

    def response(self, *args: Any, **kwargs: Any) -> BaseResponse:
        app = self._app
        response_class = app.response_class
        if (self.compact is False or (self.compact is None and app.debug)
                or not issubclass(response_class, SidecarResponse)
                or self.default is not DefaultJSONProvider.default):
            return super().response(*args, **kwargs)
        key = (bool(self.ensure_ascii), bool(self.sort_keys))
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = json.JSONEncoder(
                ensure_ascii=key[0], sort_keys=key[1], separators=(",", ":"),
                default=DefaultJSONProvider.default)
        text = encoder.encode(self._prepare_response_obj(args, kwargs)) + "\n"
        return response_class.of(200, [("Content-Type", _content_type(self.mimetype))],
                                 [text.encode()])


_content_types: dict[str, str] = {}


def _content_type(mimetype: str) -> str:
    found = _content_types.get(mimetype)
    if found is None:
        found = _content_types[mimetype] = get_content_type(mimetype, "utf-8")
    return found


class SidecarFlask(Flask):
    """Flask with ``NoSessions``, host-free routing, and no walk over empty hooks."""

    session_interface = NoSessions()
    request_class = SidecarRequest
    response_class = SidecarResponse
    json_provider_class = SidecarJSONProvider

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Bind the URL map to the request's path and method only.

        Flask's own version reads ``Host`` (and checks trusted hosts) to
        support host and subdomain matching; the sidecar routes on the path
        alone, and ``request.path`` is the decoded path Flask would match.
        The adapter is what ``url_map.bind("localhost", ...)`` returns,
        made without re-encoding the constant server name each time.
        """
        if request is None or self.url_map.host_matching:
            return super().create_url_adapter(request)
        return MapAdapter(self.url_map, "localhost", request.root_path or "/",
                          self.url_map.default_subdomain, "http", request.path,
                          request.method, request.environ.get("QUERY_STRING", ""))

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer, remembered: it inspects the function on every request."""
        found = self._sync.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync) < _SYNC_CACHE_MAX:
                self._sync[func] = found
        return found

    def full_dispatch_request(self) -> Any:
        """Flask's, without the ``request_started`` signal and ``before_request`` walk
        when nothing listens."""
        if (flask_signals.request_started.receivers or self.before_request_funcs
                or self.url_value_preprocessors):
            return super().full_dispatch_request()
        self._got_first_request = True
        try:
            rv = self.dispatch_request()
        except Exception as exc:  # noqa: BLE001 - Flask's own contract: to the handlers
            rv = self.handle_user_exception(exc)
        return self.finalize_request(rv)

    def finalize_request(self, rv: Any, from_error_handler: bool = False) -> Any:
        """``make_response`` alone when no ``after_request`` function, session or
        ``request_finished`` receiver is there to run."""
        if (self.after_request_funcs or flask_signals.request_finished.receivers
                or not isinstance(self.session_interface, NoSessions)
                or getattr(request_ctx, "_after_request_functions", True)):
            return super().finalize_request(rv, from_error_handler)
        return self.make_response(rv)

    def do_teardown_request(self, exc: BaseException | None = _MISSING) -> None:
        """Nothing when no teardown function or receiver is registered."""
        if self.teardown_request_funcs or flask_signals.request_tearing_down.receivers:
            if exc is _MISSING:
                super().do_teardown_request()
            else:
                super().do_teardown_request(exc)

    def do_teardown_appcontext(self, exc: BaseException | None = _MISSING) -> None:
        """Nothing when no teardown function or receiver is registered."""
        if self.teardown_appcontext_funcs or flask_signals.appcontext_tearing_down.receivers:
            if exc is _MISSING:
                super().do_teardown_appcontext()
            else:
                super().do_teardown_appcontext(exc)
