"""The one Flask app core every sidecar shares: HTTP in, ``Backend`` calls out.

Views stay thin: they parse the request (key, range, preconditions), apply
the mount's policy (``STATE_PREFIX``, LWW drops preconditions) and hand the
work to the backend. Every failure leaves through one JSON error handler, so
bad input always gets a 4xx and the worker keeps serving.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from email.utils import formatdate
from functools import lru_cache
from typing import Any, cast

from flask import Flask, Request, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from sidecars import config, metrics, settings
from sidecars import keys as keyrules
from sidecars.backend import Backend, ObjectBody, ObjectInfo, trimmed
from sidecars.body import RequestBody
from sidecars.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
    SidecarError,
)
from sidecars.lean_flask import SidecarFlask
from sidecars.lean_response import SidecarResponse
from sidecars.streams import read_at_most
from vfs_state import __version__

log = logging.getLogger("vfs_state.sidecar")

CONSISTENCIES = ("lww", "cas")
DEFAULT_PAGE = 1000
MAX_PAGE = 10000
ATTR_VALUE_LIMIT = 64 * 1024


def app_from_env(backend: Backend, consistency: str | None, name: str) -> Flask:
    """The end of every connector's ``create_app()``: the mount policy from the environment.

    ``consistency`` is the connector's (None: ``VFS_STATE_CONSISTENCY``, else
    CAS); ``STATE_PREFIX`` and ``STATE_MAX_OBJECT_SIZE`` come from
    ``sidecars.settings`` like every other setting.
    """
    common = settings.common()
    return build_app(backend, consistency=config.consistency(consistency), prefix=common.prefix,
                     name=name, max_object_size=common.max_object_size)


def build_app(backend: Backend, *, consistency: str = "cas", prefix: str = "",
              name: str = "vfs-state-sidecar", max_object_size: int | None = None) -> Flask:
    """Wrap ``backend`` in the wire protocol described in docs/protocol.md.

    Args:
        backend: the storage adapter; the app owns it from now on.
        consistency: ``"cas"`` honours ``If-Match``/``If-None-Match``;
            ``"lww"`` ignores them on writes and deletes.
        prefix: ``STATE_PREFIX``; prepended to every key on the way in and
            stripped from listings on the way out.
        max_object_size: bodies larger than this get 413 (the backend's own
            limit applies too, whichever is smaller).
    """
    if consistency not in CONSISTENCIES:
        raise ValueError(f"consistency must be one of {CONSISTENCIES}, not {consistency!r}")
    app = SidecarFlask(name)
    app.url_map.merge_slashes = False  # "a//b" is a bad key, not a redirect
    app.url_map.strict_slashes = False
    app.url_map.converters["key"] = KeyConverter
    app.extensions["vfs_state"] = _Core(metrics.TimedBackend(backend), consistency,
                                        keyrules.normalise_prefix(prefix), max_object_size)
    # /metrics, request metrics and the access line (docs/operations.md)
    app.wsgi_app = metrics.Instrumented(  # type: ignore[method-assign]
        app.wsgi_app, os.environ.get("VFS_STATE_CONNECTOR") or name, __version__,
        settings.observability().access_log)
    core: _Core = app.extensions["vfs_state"]

    @app.errorhandler(SidecarError)
    def _sidecar_error(exc: SidecarError) -> Response:
        response = _error(exc.status, exc.code, exc.message)
        if isinstance(exc, RangeNotSatisfiable):
            response.headers["Content-Range"] = f"bytes */{exc.size}"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _error(exc.code or 400, (exc.name or "http_error").lower().replace(" ", "_"),
                      exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The details (paths, endpoints, sometimes credentials in a URL) go to
        # the server log only; the client gets a fixed message.
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal", "internal error (details in the sidecar log)")

    app.add_url_rule("/keys/<key:key>", "object", core.object_view,
                     methods=["GET", "HEAD", "PUT", "DELETE"])
    app.add_url_rule("/keys/", "listing", core.list_view, methods=["GET"])
    app.add_url_rule("/keys", "listing_bare", core.list_view, methods=["GET"])
    app.add_url_rule("/meta/<key:key>", "meta", core.meta_view, methods=["GET", "PUT"])
    app.add_url_rule("/healthz", "healthz", _ready)
    app.add_url_rule("/readyz", "readyz", core.ready_view)
    return app


def close_app(app: object) -> None:
    """Release the backend of an app made by ``build_app`` (worker exit); else nothing."""
    core = getattr(app, "extensions", {}).get("vfs_state")
    if not isinstance(core, _Core):
        return
    try:
        core.backend.close()
    except Exception:  # noqa: BLE001 - the worker is exiting anyway
        log.warning("closing the backend failed", exc_info=True)


class KeyConverter(PathConverter):
    """Like ``<path:>``, but a key may hold any character, line feeds included."""

    regex = r"[^/][\s\S]*?"


def _error(status: int, code: str, message: str) -> Response:
    """The JSON error body, and its code in ``X-Error`` too: a HEAD reply has no body."""
    response = jsonify(error=code, message=message)
    response.status_code = status
    response.headers["X-Error"] = code
    return response


def _current_request() -> Request:
    """The request itself, for views that read it often (each proxy read costs ~1 µs)."""
    return cast(Request, cast(Any, request)._get_current_object())


def _ready() -> Response:
    """``{"status": "ready"}`` as ``jsonify`` writes it, without encoding it each time."""
    return SidecarResponse.of(200, [("Content-Type", "application/json")],
                              [b'{"status":"ready"}\n'])


def _etag(version: str) -> str:
    return f'"{version}"'


def _info_headers(info: ObjectInfo, length: int, exact: bool) -> list[tuple[str, str]]:
    """A file's reply headers, in the order clients have always seen them;
    ``X-Mtime`` (the time to the backend's precision) when it is ``exact``."""
    headers = [("ETag", f'"{info.version}"'), ("X-Is-File", "true"),
               ("Accept-Ranges", "bytes")]
    if info.modified is not None:
        headers.append(("Last-Modified", _http_date(int(info.modified))))
        if exact:
            headers.append(("X-Mtime", repr(info.modified)))
    headers.append(("Content-Type", info.content_type or "application/octet-stream"))
    headers.append(("Content-Length", str(length)))
    return headers


@lru_cache(maxsize=256)
def _http_date(seconds: int) -> str:
    """``Last-Modified`` text; the same few times recur (a file read again and again)."""
    return formatdate(seconds, usegmt=True)


class _Core:
    """The views, bound to one backend and one mount policy."""

    def __init__(self, backend: Backend, consistency: str, prefix: str,
                 max_object_size: int | None) -> None:
        self.backend = backend
        self.cas = consistency == "cas"
        self.prefix = prefix
        limits = [x for x in (backend.max_object_size, max_object_size) if x is not None]
        self.max_object_size = min(limits) if limits else None

    # -- helpers ----------------------------------------------------------

    def _store_key(self, key: str) -> str:
        return self.prefix + keyrules.validate_key(key)

    def _preconditions(self, environ: dict[str, Any]) -> tuple[str | None, bool]:
        if_match = parse_if_match(environ.get("HTTP_IF_MATCH"))
        if_none_match = parse_if_none_match(environ.get("HTTP_IF_NONE_MATCH"))
        if if_match is not None and if_none_match:
            raise BadRequest("If-Match and If-None-Match together")
        if not self.cas:
            return None, False
        if if_match == NEVER_MATCHES:
            raise PreconditionFailed("If-Match is not a strong entity tag of this store")
        return if_match, if_none_match

    # -- views ------------------------------------------------------------

    def object_view(self, key: str) -> Response:
        store_key = self._store_key(key)
        req = _current_request()
        method = req.method
        if method == "HEAD":
            return self._head(store_key)
        if key.endswith("/"):
            return self._marker(store_key, method)
        if method == "GET":
            return self._get(store_key, req.environ)
        if method == "PUT":
            return self._put(store_key, req)
        return self._delete(store_key, req.environ)

    def _head(self, store_key: str) -> Response:
        info = None if store_key.endswith("/") else self.backend.stat(store_key)
        if info is not None:
            return SidecarResponse.of(200, _info_headers(info, info.size,
                                                         self.backend.exact_mtime))
        if store_key.rstrip("/") + "/" != self.prefix and not self.backend.is_dir(store_key):
            raise NotFound(f"no such key: {self._user_key(store_key)}")
        return SidecarResponse.of(200, [("X-Is-File", "false"),
                                        ("Content-Type", SidecarResponse.default_content_type),
                                        ("Content-Length", "0")])

    def _marker(self, store_key: str, method: str) -> Response:
        """Directory markers: ``PUT key/`` creates, ``DELETE key/`` removes."""
        if method == "PUT":
            body = RequestBody(request, limit=0)
            if self.backend.stat(store_key[:-1]) is not None:
                raise Conflict(f"{self._user_key(store_key[:-1])!r} is a file",
                               code="file_exists")
            info = self.backend.write(store_key, body, 0)
            return SidecarResponse.of(204, [("ETag", _etag(info.version))])
        if method == "DELETE":
            self.backend.delete(store_key)
            return SidecarResponse.of(204, [])
        raise BadRequest("a directory marker has no body to read")

    def _get(self, store_key: str, environ: dict[str, Any]) -> Response:
        ranged = environ.get("HTTP_RANGE")
        start, length = parse_range(ranged)
        if_match = parse_if_match(environ.get("HTTP_IF_MATCH"))
        if if_match == NEVER_MATCHES:
            raise PreconditionFailed("If-Match is not a strong entity tag of this store")
        if start < 0:  # suffix range: the last -start bytes
            size = self._stat_or_404(store_key).size
            start, length = max(0, size + start), None
        body = self.backend.read(store_key, start, length, if_match=if_match)
        info = body.info
        headers = _info_headers(info, body.length, self.backend.exact_mtime)
        status = 200
        if ranged is not None and info.size > 0:
            status = 206
            end = body.start + body.length - 1
            headers.append(("Content-Range", f"bytes {body.start}-{end}/{info.size}"))
        return SidecarResponse.of(status, headers, _stream(body), passthrough=True)

    def _stat_or_404(self, store_key: str) -> ObjectInfo:
        info = self.backend.stat(store_key)
        if info is None:
            raise NotFound(f"no such key: {self._user_key(store_key)}")
        return info

    def _put(self, store_key: str, req: Request) -> Response:
        if_match, if_none_match = self._preconditions(req.environ)
        if self._needs_dir_check(req.environ) and self.backend.is_dir(store_key):
            # Flat stores (S3, GCS, Redis, NATS KV) would let an object ``d`` sit
            # beside the prefix ``d/``. A pre-check: a directory created between
            # it and the write is not seen (docs/consistency.md).
            raise Conflict(f"{self._user_key(store_key)!r} is a directory",
                           code="is_a_directory")
        body = RequestBody(req, limit=self.max_object_size)
        info = self.backend.write(store_key, body, body.length, if_match=if_match,
                                  if_none_match=if_none_match)
        body.check_complete()
        return SidecarResponse.of(204, [("ETag", _etag(info.version))])

    def _needs_dir_check(self, environ: dict[str, Any]) -> bool:
        """Whether a PUT must first look for a directory of the same name.

        Not when the backend refuses the clash itself, and not when the
        writer sent ``If-Match``: it saw a file under this name, so no
        directory can have it unless one was made since. Under CAS the
        backend checks that version atomically, so the key still holds a
        file; under LWW the writer's observation stands, and a directory
        made after it is missed, as one made during the pre-check is
        (docs/consistency.md).
        """
        if self.backend.refuses_dir_clash:
            return False
        seen = parse_if_match(environ.get("HTTP_IF_MATCH"))
        return seen is None or seen == NEVER_MATCHES

    def _delete(self, store_key: str, environ: dict[str, Any]) -> Response:
        if_match, if_none_match = self._preconditions(environ)
        if if_none_match:
            raise BadRequest("If-None-Match makes no sense on DELETE")
        self.backend.delete(store_key, if_match=if_match)
        return SidecarResponse.of(204, [])

    def list_view(self) -> Response:
        args = request.args
        prefix = args.get("prefix", "")
        keyrules.validate_prefix(prefix)
        delimiter = args.get("delimiter") or None
        if delimiter not in (None, "/"):
            raise BadRequest("only '/' is supported as a delimiter")
        max_keys = _int_arg("max_keys", DEFAULT_PAGE, 1, MAX_PAGE)
        start_after = args.get("start_after") or None
        details = args.get("details", "") in ("1", "true")
        if start_after is not None:
            keyrules.validate_cursor(start_after)
        store_prefix = self.prefix + prefix
        cursor = self.prefix + start_after if start_after else None
        if args.get("names", "") in ("1", "true"):
            if delimiter is None:
                raise BadRequest("names=1 lists one directory: it needs delimiter=/")
            return self._names(store_prefix, cursor, max_keys, details)
        # One extra item: the listed directory's own marker is dropped, and a
        # page must not end on it (as a cursor it would skip the whole subtree).
        lister = self.backend.list_details if details else self.backend.list_page
        page = lister(store_prefix, delimiter, cursor, max_keys + 1)
        keys, prefixes, last = trimmed(page, store_prefix, max_keys)
        cut = len(self.prefix)
        result: dict[str, object] = {"keys": [name[cut:] for name in keys] if cut else keys,
                                     "prefixes": [name[cut:] for name in prefixes]}
        if last is not None:
            result["next"] = last[cut:]
        if details:
            exact = self.backend.exact_mtime
            result["details"] = {name[cut:]: _listed(page.infos[name], exact) for name in keys
                                 if name in page.infos}
        return jsonify(result)

    def _names(self, store_prefix: str, cursor: str | None, max_keys: int,
               details: bool) -> Response:
        """The ``names=1`` reply: a directory's files and subdirectories by name.

        Names are relative to the listed directory, so they pass from the
        backend to JSON without a step per entry (docs/protocol.md#listing).
        """
        page = self.backend.list_names(store_prefix, cursor, max_keys, details)
        result: dict[str, object] = {"files": page.files, "dirs": page.dirs}
        if page.next is not None:
            result["next"] = page.next[len(self.prefix):]
        if details:
            exact = self.backend.exact_mtime
            result["details"] = {name: _listed(info, exact) for name, info in page.infos.items()}
        return SidecarResponse.of(200, [("Content-Type", "application/json")],
                                  [json.dumps(result).encode()])

    def meta_view(self, key: str) -> Response:
        """Attributes, in the asya shape: ``{"attrs": [names]}``, ``{"value": v}``.

        ``values`` (name to value) is vfs-state's addition, so one request
        lists attributes with their values.
        """
        store_key = self._store_key(key)
        attr = request.args.get("attr")
        if request.method == "PUT":
            if not attr:
                raise BadRequest("PUT /meta needs ?attr=NAME")
            self._set_attr(store_key, keyrules.attr_name(attr), _attr_value())
            return SidecarResponse.of(204, [])
        attrs = self.backend.get_attrs(store_key)
        if not attr:
            return jsonify(attrs=sorted(attrs), values=attrs)
        name = keyrules.attr_name(attr)
        if name not in attrs:
            raise NotFound(f"no attribute {name!r} on {key}", code="no_such_attr")
        return jsonify(attr=name, value=attrs[name])

    def _set_attr(self, store_key: str, name: str, value: str) -> None:
        """403 for a read-only attribute, 400 for one this backend does not have."""
        try:
            self.backend.set_attr(store_key, name, value)
        except Forbidden:
            if name in self.backend.get_attrs(store_key):
                raise
            raise BadRequest(f"attribute {name!r} is not supported here",
                             code="unsupported_attr") from None

    def ready_view(self) -> Response:
        self.backend.ping()
        return _ready()

    def _user_key(self, store_key: str) -> str:
        return store_key[len(self.prefix):]


def _listed(info: ObjectInfo, exact: bool) -> dict[str, object]:
    """A key's details in a listing reply: what a HEAD would say.

    ``modified`` is cut to whole seconds like ``Last-Modified``, and ``mtime``
    (when the backend's times are ``exact``) is ``X-Mtime``'s value, so that a
    stat from a listing and one from a HEAD agree.
    """
    if info.modified is None:
        return {"size": info.size, "version": info.version, "modified": None}
    details = {"size": info.size, "version": info.version,
               "modified": float(int(info.modified))}
    if exact:
        details["mtime"] = info.modified
    return details


def _attr_value() -> str:
    """The value of ``PUT /meta``: JSON ``{"value": v}`` (asya) or the raw UTF-8 text."""
    raw = read_at_most(RequestBody(request, limit=ATTR_VALUE_LIMIT), ATTR_VALUE_LIMIT,
                       "attribute value")
    try:
        text = raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise BadRequest("attribute value is not valid UTF-8", code="bad_attr_value") from None
    if request.mimetype != "application/json":
        return text
    try:
        document = json.loads(text)
    except ValueError:
        raise BadRequest("attribute body is not valid JSON", code="bad_attr_value") from None
    value = document.get("value") if isinstance(document, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest('attribute body must be {"value": <text>}', code="bad_attr_value")
    return str(value)


def _stream(body: ObjectBody) -> Iterator[bytes]:
    try:
        yield from body.chunks
    finally:
        if body.close is not None:
            body.close()


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= value:
        raise BadRequest(f"{name} must be at least {low}")
    return min(value, high)


def parse_range(header: str | None) -> tuple[int, int | None]:
    """``Range`` to ``(start, length)``; a suffix range gives ``(-n, None)``.

    Only one ``bytes=`` range is supported; anything else is a 400.
    """
    if header is None:
        return 0, None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        raise BadRequest(f"unsupported Range: {header!r}")
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            raise ValueError
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable(0, "empty suffix range")
            return -suffix, None
        start = int(first)
        end = int(last) if last != "" else None
    except ValueError:
        raise BadRequest(f"malformed Range: {header!r}") from None
    if start < 0 or (end is not None and end < start):
        raise BadRequest(f"malformed Range: {header!r}")
    return start, None if end is None else end - start + 1


NEVER_MATCHES = "\x00never"  # an If-Match tag no stored version can equal


def _strip_quotes(value: str) -> str:
    """The opaque part of a strong entity tag, or ``NEVER_MATCHES``.

    A weak tag (``W/"x"``), an empty one (``""``), an unquoted or otherwise
    malformed one cannot match under the strong comparison writes need, so
    it never matches: the request fails with 412 and changes nothing.
    """
    value = value.strip()
    if len(value) < 3 or value[0] != '"' or value[-1] != '"':
        return NEVER_MATCHES
    inner = value[1:-1]
    if not all(c == "\x21" or "\x23" <= c <= "\x7e" for c in inner):
        return NEVER_MATCHES
    return inner


def parse_if_match(header: str | None) -> str | None:
    """``If-Match: "v"`` to ``v``. ``*`` is accepted and means "any version".

    Anything that is not one strong tag gives ``NEVER_MATCHES``.
    """
    if header is None or header.strip() == "*":
        return None
    return _strip_quotes(header)


def parse_if_none_match(header: str | None) -> bool:
    """Only ``If-None-Match: *`` (create-only) is meaningful for writes."""
    if header is None:
        return False
    if header.strip() != "*":
        raise BadRequest("only 'If-None-Match: *' is supported")
    return True

