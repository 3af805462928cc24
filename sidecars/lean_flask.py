"""Flask without the per-request work a sidecar never uses.

A sidecar answers one client on a Unix socket: no cookies, no sessions, no
host names to route on, no redirects to build, no request hooks and no
signal receivers. Flask still opens a (null) session, parses ``Host``,
encodes the server name to IDNA to bind its URL map, and walks the empty
hook lists and signals of every request (docs/performance.md has the cost).
``SidecarFlask`` overrides Flask's documented extension points
(``session_interface``, ``request_class``, ``response_class``,
``json_provider_class``, ``create_url_adapter``, ``ensure_sync``,
``full_dispatch_request``, ``finalize_request``, ``do_teardown_request``,
``do_teardown_appcontext``) to skip that work while there is nothing to
do; the moment an app registers a hook or a signal receiver, each override
hands over to Flask's own code. URL matches are remembered
(``CachedMatchAdapter``). The request and application contexts,
``flask.request``, routing rules and error handlers are Flask's.

Three of Flask's and werkzeug's private names are read: the request
context variable (``flask.globals._cv_request``) and its
``_after_request_functions``, and a rule's ``_converters``; each has a
fallback to the public path, and tests/test_lean_flask.py fails if a
release drops them.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from flask import Flask, Request
from flask import signals as flask_signals
from flask.globals import request_ctx
from flask.json.provider import DefaultJSONProvider
from flask.sessions import NullSession, SessionInterface
from werkzeug.routing import BaseConverter, MapAdapter, Rule
from werkzeug.sansio.response import Response as BaseResponse
from werkzeug.utils import get_content_type

from sidecars.lean_response import SidecarResponse

_current_request: ContextVar[Any] | None
try:  # the current request context without a proxy (Flask 2.2-3.1); else the proxy
    from flask.globals import _cv_request as _current_request
except ImportError:  # pragma: no cover - a Flask without it takes the proxy
    _current_request = None

_MISSING: Any = object()  # "argument not given": Flask's own default then applies
#: matches remembered per app, and the longest path remembered (memory stays small)
MATCH_CACHE_SIZE = 512
MATCH_CACHE_PATH = 1024
Matches = dict[tuple[str, str], tuple[Rule, dict[str, Any]]]
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


class CachedMatchAdapter(MapAdapter):
    """A ``MapAdapter`` whose request match is remembered by path and method.

    Matching is a function of the URL map, the path and the method, and
    werkzeug's state machine spends 6-10 µs on a ``/keys/...`` path on the
    benchmark machine; a handler reads, stats and writes the same few keys
    again and again. Only what Flask asks of a request's adapter is
    remembered: a match that succeeded (errors and redirects are worked
    out anew each time), with a copy of its arguments handed out, and only
    for maps whose converters turn text into values the same way every
    time (werkzeug's own, and those that do not change ``to_python``).
    """

    matches: Matches

    def match(self, path_info: str | None = None, method: str | None = None,
              return_rule: bool = False, query_args: Any = None,
              websocket: bool | None = None) -> tuple[Any, Any]:
        if (not return_rule or path_info is not None or method is not None
                or query_args is not None or websocket is not None):
            return super().match(  # type: ignore[call-overload]
                path_info, method, return_rule, query_args, websocket)
        key = (self.path_info, self.default_method)
        found = self.matches.get(key)
        if found is not None:
            return found[0], dict(found[1])
        rule, arguments = super().match(return_rule=True)
        if len(key[0]) <= MATCH_CACHE_PATH and _same_every_time(rule):
            if len(self.matches) >= MATCH_CACHE_SIZE:
                self.matches.clear()
            self.matches[key] = (rule, dict(arguments))
        return rule, arguments


_verdicts: dict[int, tuple[Rule, bool]] = {}  # by id(rule); a Rule is not hashable


def _same_every_time(rule: Rule) -> bool:
    """Whether the rule's converters are werkzeug's own or keep its ``to_python``.

    (A function of the text alone; ``_converters`` is werkzeug's name for
    a rule's converters, and a rule without it is not remembered.)
    """
    known = _verdicts.get(id(rule))
    if known is not None and known[0] is rule:
        return known[1]
    converters = getattr(rule, "_converters", None)
    verdict = isinstance(converters, dict) and all(
        type(c).__module__ == BaseConverter.__module__
        or type(c).to_python is BaseConverter.to_python for c in converters.values())
    if len(_verdicts) < MATCH_CACHE_SIZE:
        _verdicts[id(rule)] = (rule, verdict)
    return verdict


class SidecarFlask(Flask):
    """Flask with ``NoSessions``, host-free routing, and no walk over empty hooks."""

    session_interface = NoSessions()
    request_class = SidecarRequest
    response_class = SidecarResponse
    json_provider_class = SidecarJSONProvider

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._matches: Matches = {}
        super().__init__(*args, **kwargs)

    def add_url_rule(self, *args: Any, **kwargs: Any) -> None:
        """Flask's; the remembered matches are forgotten (a new rule may change them)."""
        super().add_url_rule(*args, **kwargs)
        self._matches.clear()

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Bind the URL map to the request's path and method only.

        Flask's own version reads ``Host`` (and checks trusted hosts) to
        support host and subdomain matching; the sidecar routes on the path
        alone, and ``request.path`` is the decoded path Flask would match.
        The adapter is what ``url_map.bind("localhost", ...)`` returns,
        made without re-encoding the constant server name each time, and
        remembering its matches (``CachedMatchAdapter``).
        """
        url_map = self.url_map
        if request is None or url_map.host_matching:
            return super().create_url_adapter(request)
        adapter = CachedMatchAdapter(
            url_map, "localhost", request.root_path or "/", url_map.default_subdomain, "http",
            request.path, request.method, request.environ.get("QUERY_STRING", ""))
        adapter.matches = self._matches
        return adapter

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
                or getattr(_current_request.get() if _current_request is not None
                           else request_ctx, "_after_request_functions", True)):
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
