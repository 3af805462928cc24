"""Where HTTP statuses become the exceptions a handler expects.

Every exception raised from a sidecar reply is a built-in ``OSError``
subclass with ``errno`` and the key as ``filename``, so ``except
FileNotFoundError`` in handler code works without importing anything.
The reply is decoded here, once, into the exception's class: a refused
precondition is a ``VersionConflict`` and a clash with the store's
directory structure a ``PathConflict`` (both ``FileExistsError``s), so no
caller needs the HTTP status later. Statuses and codes: docs/protocol.md.
"""
from __future__ import annotations

import errno
import json
import os


class VersionConflict(FileExistsError):
    """A compare-and-set write or delete refused: the object moved on (HTTP 412)."""


class PathConflict(FileExistsError):
    """The store refused the path itself (HTTP 409): a parent is a file, or the
    key is a directory. ``StateFS`` tells the two apart when it reports it."""


# status -> (exception class, errno)
_STATUS: dict[int, tuple[type[Exception], int]] = {
    400: (ValueError, errno.EINVAL),
    403: (PermissionError, errno.EACCES),
    404: (FileNotFoundError, errno.ENOENT),
    409: (FileExistsError, errno.EEXIST),
    412: (VersionConflict, errno.EEXIST),
    413: (OSError, errno.EFBIG),
    416: (OSError, errno.EINVAL),
    500: (OSError, errno.EIO),
    503: (ConnectionError, errno.ECONNREFUSED),
    504: (TimeoutError, errno.ETIMEDOUT),
}

# sidecar error codes that carry a more precise errno than their status
_CODES: dict[str, tuple[type[OSError], int]] = {
    "conflict": (PathConflict, errno.EEXIST),
    "directory_not_empty": (OSError, errno.ENOTEMPTY),
    "is_a_directory": (IsADirectoryError, errno.EISDIR),
    "name_too_long": (OSError, errno.ENAMETOOLONG),
    "no_such_attr": (OSError, errno.ENODATA),
    "unsupported_attr": (OSError, errno.ENOTSUP),
}


def error_for_status(status: int, body: bytes, key: str, where: str,
                     header_code: str = "") -> Exception:
    """The exception for a failed reply; ``where`` names the mount in messages.

    The error code is the JSON body's, else the ``X-Error`` header's
    (``header_code``), which is all a reply to HEAD carries.
    """
    code, message = _parse_error(body)
    code = code or header_code
    cls: type[Exception]
    if code in _CODES:
        cls, number = _CODES[code]
    elif status in _STATUS:
        cls, number = _STATUS[status]
    elif 400 <= status < 500:
        cls, number = ValueError, errno.EINVAL
    else:
        cls, number = OSError, errno.EIO
    text = f"{message or os.strerror(number)} [{where}, HTTP {status}]"
    if not issubclass(cls, OSError):
        return ValueError(f"{key!r}: {text}")
    return cls(number, text, key)


def _parse_error(body: bytes) -> tuple[str, str]:
    try:
        data = json.loads(body or b"{}")
        return str(data.get("error", "")), str(data.get("message", ""))
    except (ValueError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")


def unreachable(where: str, exc: BaseException) -> ConnectionError:
    """The sidecar's socket could not be reached at all."""
    return ConnectionError(errno.ECONNREFUSED, f"sidecar unreachable [{where}]: {exc}")
