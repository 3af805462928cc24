"""Errors a backend raises; each carries the HTTP status the core answers with.

Backends translate their client's exceptions into these, so the app core can
answer every failure with one JSON shape and the right status, and the client
can map the status back to the Python exception a handler expects.
"""
from __future__ import annotations


class SidecarError(Exception):
    """Base class: an HTTP status, a short machine code and a human message."""

    status = 500
    code = "internal"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        if code is not None:
            self.code = code


class BadRequest(SidecarError):
    status, code = 400, "bad_request"


class Forbidden(SidecarError):
    status, code = 403, "forbidden"


class NotFound(SidecarError):
    status, code = 404, "not_found"


class Conflict(SidecarError):
    """The key cannot be written as asked (e.g. a file where a directory is)."""

    status, code = 409, "conflict"


class PreconditionFailed(SidecarError):
    """A CAS check failed: the stored version is not the one the client saw."""

    status, code = 412, "precondition_failed"


class PayloadTooLarge(SidecarError):
    status, code = 413, "payload_too_large"


class RangeNotSatisfiable(SidecarError):
    status, code = 416, "range_not_satisfiable"

    def __init__(self, size: int, message: str = "") -> None:
        super().__init__(message or f"range not satisfiable for size {size}")
        self.size = size


class BackendUnavailable(SidecarError):
    status, code = 503, "backend_unavailable"


class BackendTimeout(SidecarError):
    status, code = 504, "backend_timeout"
