"""SidecarFlask and SidecarResponse answer byte for byte as Flask and werkzeug do.

The lean paths skip work Flask does for hooks, signals and checks the
sidecar has none of; these tests compare them with Flask's own code on the
same requests, check that a registered hook or receiver still runs, and
fail loudly when a Flask or werkzeug release changes what the lean code
copies (the attributes a response holds, the hooks a request walks).
"""
from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from flask import Flask, Response, after_this_request, g, jsonify, request
from flask import signals as flask_signals

from sidecars import lean_flask
from sidecars.app import build_app
from sidecars.lean_flask import SidecarFlask, SidecarJSONProvider
from sidecars.lean_response import SidecarResponse
from sidecars.local import LocalBackend

Reply = tuple[str, list[tuple[str, str]], bytes]


def environ(method: str = "GET", path: str = "/", body: bytes = b"",
            **headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "HTTP_HOST": "localhost", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "REMOTE_ADDR": ""}
    if "?" in path:
        env["PATH_INFO"], env["QUERY_STRING"] = path.split("?", 1)
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        env["HTTP_" + name.upper()] = value
    return env


def call(app: Callable[..., Any], env: dict[str, Any]) -> Reply:
    """One request as a WSGI server makes it: start, iterate, close."""
    started: list[Any] = []
    reply = app(env, lambda status, headers, exc=None: started.extend([status, headers]))
    try:
        body = b"".join(reply)
    finally:
        close = getattr(reply, "close", None)
        if close is not None:
            close()
    return started[0], list(started[1]), body


# -- SidecarResponse ------------------------------------------------------------

def test_of_builds_the_object_the_constructor_builds() -> None:
    """Every attribute werkzeug's ``__init__`` sets, and no other (a new one fails here)."""
    cases: list[tuple[int, list[tuple[str, str]], Any, bool]] = [
        (200, [("ETag", '"v"'), ("Content-Type", "application/octet-stream"),
               ("Content-Length", "3")], iter([b"abc"]), True),
        (204, [("ETag", '"v"')], None, False),
        (200, [("X-Is-File", "false"), ("Content-Length", "0")], None, False),
        (200, [("Content-Type", "application/json")], [b"{}\n"], False),
        (404, [], [b"a", b"bc"], False),
        (599, [], None, False),
    ]
    for status, headers, body, passthrough in cases:
        lean = SidecarResponse.of(status, list(headers), body, passthrough=passthrough)
        # a list body is measured as set_data measures bytes
        data = b"".join(body) if isinstance(body, list) else body
        stock = Response(data, status=status, headers=list(headers),
                         direct_passthrough=passthrough)
        assert set(vars(lean)) == set(vars(stock))
        assert lean.status == stock.status and lean.status_code == stock.status_code
        assert lean.direct_passthrough == stock.direct_passthrough
        assert lean.response is body or body is None and lean.response == []
        assert list(lean.headers) == list(stock.headers)
        assert lean._on_close == stock._on_close  # noqa: SLF001


def _bodies() -> Iterator[tuple[str, Callable[[type[Response]], Response]]]:
    yield "list", lambda cls: cls([b"ab", b"c"], 200, [("X-A", "1")])
    yield "str body", lambda cls: cls("héllo", 200)
    yield "str pieces", lambda cls: cls(["a", b"b"], 200)
    yield "set length", lambda cls: cls(b"abc", 200, [("Content-Length", "3")])
    yield "204 with length", lambda cls: cls(b"", 204, [("Content-Length", "0"), ("E", "x")])
    yield "204 empty", lambda cls: cls(status=204)
    yield "304", lambda cls: cls(b"x", 304, [("Content-Type", "text/plain"), ("ETag", "x")])
    yield "101", lambda cls: cls(status=101)
    yield "location", lambda cls: cls(b"x", 302, [("Location", "/a b")])
    yield "content-location", lambda cls: cls(b"x", 200, [("content-location", "/é")])
    yield "passthrough", lambda cls: cls(iter([b"ab", b"c"]), 200, [("Content-Length", "3")],
                                         direct_passthrough=True)
    yield "passthrough 204", lambda cls: cls(iter([b"ab"]), 204, direct_passthrough=True)
    yield "generator", lambda cls: cls((x for x in [b"a", b"b"]), 200)
    yield "no automatic length", lambda cls: _manual_length(cls)


def _manual_length(cls: type[Response]) -> Response:
    response = cls([b"abc"], 200)
    response.headers.remove("Content-Length")
    return response


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("case", list(_bodies()), ids=lambda c: c[0])
def test_a_reply_starts_and_iterates_as_werkzeugs(
        case: tuple[str, Callable[[type[Response]], Response]], method: str) -> None:
    _, make = case
    lean, stock = make(SidecarResponse), make(Response)
    assert call(lean, environ(method)) == call(stock, environ(method))


def test_close_callbacks_and_a_closing_stream_still_run() -> None:
    closed: list[str] = []

    class Stream:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"

        def close(self) -> None:
            closed.append("stream")

    head = SidecarResponse.of(200, [("Content-Length", "1")], Stream(), passthrough=True)
    call(head, environ("HEAD"))  # no body sent, but the stream is closed
    with_callback = SidecarResponse.of(200, [], [b"a"])
    with_callback.call_on_close(lambda: closed.append("callback"))
    call(with_callback, environ())
    assert closed == ["stream", "callback"]


# -- SidecarFlask ---------------------------------------------------------------

class Marked(Exception):
    """An error the test apps map to a 418 in their own handler."""


def make_app(cls: type[Flask]) -> Flask:
    app = cls("lean-test")

    @app.route("/json")
    def as_json() -> Response:
        return jsonify(method=request.method, arg=request.args.get("a"), text="é")

    @app.route("/text", methods=["GET", "PUT", "HEAD"])
    def as_text() -> tuple[str, int, dict[str, str]]:
        return f"{request.method}:{request.get_data(as_text=True)}", 201, {"X-T": "1"}

    @app.route("/dict")
    def as_dict() -> dict[str, int]:
        return {"b": 1, "a": 2}

    @app.route("/empty")
    def empty() -> Response:
        return Response(status=204)

    @app.route("/marked")
    def marked() -> Response:
        raise Marked("x")

    @app.route("/abort/<int:code>")
    def aborted(code: int) -> Response:
        flask.abort(code)

    @app.route("/after")
    def after() -> str:
        @after_this_request
        def tag(response: Response) -> Response:
            response.headers["X-After"] = "yes"
            return response
        return "after"

    @app.route("/g")
    def uses_g() -> str:
        g.seen = getattr(g, "seen", 0) + 1
        return str(g.seen)

    @app.errorhandler(Marked)
    def _marked(exc: Marked) -> tuple[str, int]:
        return "marked", 418

    return app


REQUESTS = [("GET", "/json?a=1"), ("HEAD", "/json"), ("PUT", "/text"), ("GET", "/text"),
            ("HEAD", "/text"), ("GET", "/dict"), ("GET", "/empty"), ("GET", "/marked"),
            ("GET", "/abort/403"), ("GET", "/abort/500"), ("GET", "/missing"),
            ("DELETE", "/json"), ("OPTIONS", "/json"), ("GET", "/after"), ("GET", "/g"),
            ("GET", "/g"), ("GET", "//json")]


def replies(app: Flask) -> list[Reply]:
    return [call(app, environ(method, path, b"body" if method == "PUT" else b""))
            for method, path in REQUESTS]


def test_sidecar_flask_answers_as_flask() -> None:
    lean, stock = replies(make_app(SidecarFlask)), replies(make_app(Flask))
    for (method, path), a, b in zip(REQUESTS, lean, stock, strict=True):
        assert a == b, (method, path)


def hooked(app: Flask, seen: list[str]) -> Callable[[], None]:
    """Every hook and signal a request can fire, recording; returns the disconnect."""
    app.before_request(lambda: seen.append("before") and None)
    app.teardown_request(lambda exc: seen.append("teardown"))
    app.teardown_appcontext(lambda exc: seen.append("teardown_app"))

    @app.after_request
    def _after(response: Response) -> Response:
        seen.append("after")
        response.headers["X-Hooked"] = "1"
        return response

    receivers = {
        flask_signals.request_started: lambda sender, **kw: seen.append("started"),
        flask_signals.request_finished: lambda sender, **kw: seen.append("finished"),
        flask_signals.request_tearing_down: lambda sender, **kw: seen.append("tearing"),
        flask_signals.appcontext_tearing_down: lambda sender, **kw: seen.append("app_tearing"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, app)

    def disconnect() -> None:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver, app)
    return disconnect


def test_hooks_and_signals_still_run() -> None:
    for cls in (SidecarFlask, Flask):
        seen: list[str] = []
        app = make_app(cls)
        disconnect = hooked(app, seen)
        try:
            status, headers, _ = call(app, environ("GET", "/json"))
        finally:
            disconnect()
        assert status == "200 OK" and ("X-Hooked", "1") in headers
        assert seen == ["started", "before", "after", "finished", "teardown", "tearing",
                        "teardown_app", "app_tearing"], cls


def test_the_lean_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the installed Flask a plain SidecarFlask request calls none of Flask's walks.

    If this fails after a Flask upgrade, Flask changed what a request runs:
    check that the overrides in ``sidecars.lean_flask`` still skip only what
    is empty, then update them.
    """
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the lean path called Flask's own walk")

    for name in ("preprocess_request", "process_response"):
        monkeypatch.setattr(Flask, name, forbidden)
    monkeypatch.setattr(flask.json.provider.DefaultJSONProvider, "dumps", forbidden)
    app = make_app(SidecarFlask)
    assert call(app, environ("GET", "/json"))[0] == "200 OK"
    assert lean_flask.request_ctx is flask.globals.request_ctx
    assert lean_flask._current_request is not None  # noqa: SLF001 - no proxy per request
    with app.test_request_context():
        ctx = flask.globals.request_ctx._get_current_object()
        assert ctx._after_request_functions == []  # noqa: SLF001 - what finalize_request reads


def test_json_provider_writes_flasks_bytes() -> None:
    documents = [{"b": [1, 2.5, None], "a": "é\u2028"}, [], "text", 3]
    for cls in (SidecarFlask, Flask):
        assert cls.json_provider_class is SidecarJSONProvider or cls is Flask
    lean, stock = SidecarFlask("a"), Flask("b")
    for document in documents:
        with lean.test_request_context(), stock.test_request_context():
            one, other = lean.json.response(document), stock.json.response(document)
            assert one.get_data() == other.get_data()
            assert list(one.headers) == list(other.headers)
    lean.debug = stock.debug = True  # indented: Flask's own path
    with lean.test_request_context(), stock.test_request_context():
        assert lean.json.response({"a": 1}).get_data() == stock.json.response(
            {"a": 1}).get_data()


# -- the sidecar app: its views on both paths -----------------------------------

SIDECAR_REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("PUT", "/keys/d/a.json", b'{"x": 1}', {}),
    ("GET", "/keys/d/a.json", b"", {}),
    ("HEAD", "/keys/d/a.json", b"", {}),
    ("GET", "/keys/d/a.json", b"", {"range": "bytes=2-4"}),
    ("GET", "/keys/d/a.json", b"", {"range": "bytes=-3"}),
    ("GET", "/keys/d/a.json", b"", {"range": "bytes=99-"}),
    ("GET", "/keys/d/a.json", b"", {"if_match": "W/\"x\""}),
    ("HEAD", "/keys/d", b"", {}),
    ("HEAD", "/keys/nope", b"", {}),
    ("GET", "/keys/nope", b"", {}),
    ("PUT", "/keys/d/a.json", b"y", {"if_none_match": "*"}),
    ("PUT", "/keys/d/e/", b"", {}),
    ("GET", "/keys/?prefix=d/&delimiter=/", b"", {}),
    ("GET", "/keys/?prefix=d/&delimiter=/&names=1&details=1", b"", {}),
    ("GET", "/keys/?max_keys=x", b"", {}),
    ("PUT", "/meta/d/a.json?attr=user.x", b"v", {}),
    ("GET", "/meta/d/a.json", b"", {}),
    ("POST", "/keys/d/a.json", b"", {}),
    ("GET", "/nowhere", b"", {}),
    ("GET", "/healthz", b"", {}),
    ("GET", "/readyz", b"", {}),
    ("DELETE", "/keys/d/e/", b"", {}),
    ("DELETE", "/keys/d/a.json", b"", {}),
]


def sidecar_replies(root: str, hooks: bool) -> list[Reply]:
    app = build_app(LocalBackend(root))
    disconnect = hooked(app, []) if hooks else (lambda: None)
    out = []
    try:
        for method, path, body, headers in SIDECAR_REQUESTS:
            status, head, data = call(app.wsgi_app.app,  # Flask's app, no metrics
                                      environ(method, path, body, **headers))
            # what differs between two stores: times and versions, so lengths
            timed = data.startswith(b"{") and b"vfs." in data or b"version" in data
            kept = [(k, v) for k, v in head
                    if k not in ("X-Hooked", "Last-Modified", "X-Mtime", "ETag")
                    and not (timed and k == "Content-Length")]
            out.append((status, kept, b"" if timed else data))
    finally:
        disconnect()
    return out


def test_the_sidecar_views_answer_alike_on_flasks_path(tmp_path: Any) -> None:
    """Hooks registered push every request through Flask's own code: same replies."""
    (tmp_path / "lean").mkdir()
    (tmp_path / "flask").mkdir()
    lean = sidecar_replies(str(tmp_path / "lean"), hooks=False)
    stock = sidecar_replies(str(tmp_path / "flask"), hooks=True)
    for request_, a, b in zip(SIDECAR_REQUESTS, lean, stock, strict=True):
        assert a == b, request_
    statuses = [int(status[:3]) for status, _, _ in lean]
    assert statuses[:4] == [204, 200, 200, 206] and 416 in statuses and 412 in statuses


# -- remembered matches ---------------------------------------------------------

def test_remembered_matches_answer_as_werkzeug_does(tmp_path: Any) -> None:
    """Each path twice (the second from the cache), on the sidecar's own URL map."""
    paths = ["/keys/a", "/keys/a/", "/keys//a", "/keys/", "/keys", "/keys/%2Fa", "/keys/a%0Ab",
             "/meta/a", "/meta/", "/healthz", "/healthz/", "/readyz", "/nowhere", "/keys/a b",
             "/static/x", "/keys/é"]
    lean = build_app(LocalBackend(str(tmp_path)))
    stock = Flask("stock")
    stock.url_map = lean.url_map  # the same rules, matched by werkzeug alone
    for path in paths:
        for method in ("GET", "PUT", "POST", "HEAD"):
            for _ in range(2):
                with lean.test_request_context(path, method=method) as ctx:
                    got = (ctx.request.url_rule, ctx.request.view_args,
                           type(ctx.request.routing_exception))
                with stock.test_request_context(path, method=method) as ctx:
                    want = (ctx.request.url_rule, ctx.request.view_args,
                            type(ctx.request.routing_exception))
                assert got == want, (path, method)
    # the second came from here (so werkzeug's Rule still has ``_converters``)
    assert ("/keys/a", "GET") in lean._matches  # noqa: SLF001


def test_remembered_arguments_are_copies_and_new_rules_are_seen() -> None:
    app = SidecarFlask("cache")

    @app.url_value_preprocessor
    def _consume(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values is not None:
            values.pop("name", None)  # Flask's documented way to take an argument

    app.add_url_rule("/a/<name>", "a", lambda: "a")
    assert call(app, environ("GET", "/a/x"))[2] == b"a"
    assert call(app, environ("GET", "/a/x"))[2] == b"a"  # the remembered copy still has it
    assert call(app, environ("GET", "/b"))[0].startswith("404")
    app._got_first_request = False  # a test may add a rule later; Flask forbids it in use
    app.add_url_rule("/b", "b", lambda: "b")
    assert call(app, environ("GET", "/b"))[2] == b"b"


def test_a_converter_of_its_own_is_matched_every_time() -> None:
    from werkzeug.routing import BaseConverter

    seen: list[str] = []

    class Counting(BaseConverter):
        def to_python(self, value: str) -> str:
            seen.append(value)
            return value

    app = SidecarFlask("own")
    app.url_map.converters["counting"] = Counting
    app.add_url_rule("/c/<counting:v>", "c", lambda v: v)
    for _ in range(3):
        assert call(app, environ("GET", "/c/x"))[2] == b"x"
    assert seen == ["x", "x", "x"]
