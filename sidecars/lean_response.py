"""Flask's ``Response``, made and sent with less work for the sidecar's small replies.

A werkzeug ``Response`` validates every header as it is added, copies the
headers again to send them, and wraps even a one-piece body in a
``ClosingIterator``: 25-35 µs of a request on the benchmark machine
(docs/performance.md). ``SidecarResponse.of`` builds a reply from headers
the caller vouches for, and ``__call__`` sends the usual reply (no
``Location``, nothing to run on close, a list body or a passed-through
stream) without the copies; anything else goes through werkzeug's own code.
The worker checks every header again before it goes out
(``sidecars.http_response``), so a bad value is still a 500, never sent.

It builds the object without calling ``Response.__init__``, so it depends on
werkzeug's attribute names; ``tests/test_lean_flask.py`` compares the two
ways field by field and fails if a werkzeug release adds or renames one.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from flask import Response
from werkzeug.datastructures import Headers
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.utils import get_content_type

_STATUS: dict[int, str] = {code: f"{code} {reason.upper()}"
                           for code, reason in HTTP_STATUS_CODES.items()}
#: The headers werkzeug rewrites on the way out (``get_wsgi_headers``).
_REWRITTEN = frozenset(("location", "content-location"))


class SidecarResponse(Response):
    """A Flask ``Response`` with a cheap constructor and a cheap usual send."""

    #: what werkzeug adds when a reply names no type (kept, so the bytes match)
    default_content_type = get_content_type(Response.default_mimetype or "text/plain", "utf-8")

    @classmethod
    def of(cls, status: int, headers: list[tuple[str, str]],
           body: Iterable[bytes] | None = None, *,
           passthrough: bool = False) -> SidecarResponse:
        """The same object as ``cls(body, status, headers, direct_passthrough=...)``.

        ``headers`` must be strings without line breaks, ``Content-Type``
        included if the reply has one (else werkzeug's default is added);
        the list becomes the reply's, so the caller must not reuse it. A
        list ``body`` gets its ``Content-Length`` here, as ``set_data``
        gives one to bytes.
        """
        self = cls.__new__(cls)
        for name, _value in headers:
            if name == "Content-Type":
                break
        else:
            headers.append(("Content-Type", cls.default_content_type))
        if isinstance(body, list) and cls.automatically_set_content_length:
            headers.append(("Content-Length", str(sum(map(len, body)))))
        self.headers = Headers()
        self.headers._list = headers  # what Headers(headers) holds, minus the checks
        self._status = _STATUS.get(status) or f"{status} UNKNOWN"
        self._status_code = status
        self.direct_passthrough = passthrough
        self._on_close = []
        self.response = [] if body is None else body
        return self

    def __call__(self, environ: dict[str, Any],
                 start_response: Any) -> Iterable[bytes]:
        """Start the reply; the usual case without werkzeug's copies and wrappers."""
        body = self.response
        status = self._status_code
        listed = type(body) is list
        if (self._on_close or status < 200 or status == 304
                or (listed and not all(type(x) is bytes for x in body))
                or not (listed or (self.direct_passthrough and status != 204
                                   and environ.get("REQUEST_METHOD") != "HEAD"))):
            return super().__call__(environ, start_response)
        headers = list(self.headers)
        length = False
        for name, _value in headers:
            lower = name.lower()
            if lower in _REWRITTEN:
                return super().__call__(environ, start_response)
            if lower == "content-length":
                length = True
        if status == 204:
            if length:
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            body = []
        elif listed:
            if not length and self.automatically_set_content_length:
                headers.append(("Content-Length", str(sum(map(len, body)))))
            if environ.get("REQUEST_METHOD") == "HEAD":
                body = []
        start_response(self._status, headers)
        return cast(Iterable[bytes], body)
