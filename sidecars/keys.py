"""What a key may be, checked once at the edge so backends can trust keys.

Keys are ``/``-separated UTF-8 paths relative to the mount. Empty, ``.`` and
``..`` segments are refused (they would alias or escape); so is a key longer
than ``MAX_KEY_BYTES``, with its own code (``name_too_long``: clients raise
``ENAMETOOLONG``, as a file system does for a long name). A trailing ``/``
names a directory marker. Names beginning ``.vfs-state`` are reserved for the
local backend's bookkeeping.
"""
from __future__ import annotations

from sidecars.errors import BadRequest
from vfs_state.protocol import ATTR_PREFIXES

MAX_KEY_BYTES = 1024
RESERVED_PREFIX = ".vfs-state"


def validate_key(key: str) -> str:
    """Return ``key`` unchanged, or raise ``BadRequest`` saying what is wrong."""
    if not key:
        raise BadRequest("empty key", code="bad_key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadRequest(f"key longer than {MAX_KEY_BYTES} bytes", code="name_too_long")
    body = key[:-1] if key.endswith("/") else key
    for segment in body.split("/"):
        _check_segment(segment, key)
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or key-shaped (a partial last segment is fine)."""
    if prefix:
        segments = prefix.split("/")
        for segment in segments[:-1]:
            _check_segment(segment, prefix)
        if segments[-1] in (".", "..") or "\x00" in segments[-1]:
            raise BadRequest(f"bad prefix {prefix!r}", code="bad_key")
        _check_text(prefix, "prefix")
    return prefix


def validate_cursor(cursor: str) -> str:
    """A listing cursor (``start_after``): any key-shaped text, no NUL, valid UTF-8.

    Backends compare it with keys or send it to their service, which may
    refuse a NUL or an unpaired surrogate with an error of its own (a 5xx).
    """
    if "\x00" in cursor:
        raise BadRequest("bad start_after: NUL byte", code="bad_key")
    if len(cursor.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadRequest(f"start_after longer than {MAX_KEY_BYTES} bytes", code="bad_key")
    _check_text(cursor, "start_after")
    return cursor


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"bad {what}: not valid UTF-8", code="bad_key") from None


def _check_segment(segment: str, key: str) -> None:
    if segment in ("", ".", ".."):
        raise BadRequest(f"bad key {key!r}: empty, '.' or '..' segment", code="bad_key")
    if "\x00" in segment:
        raise BadRequest(f"bad key {key!r}: NUL byte", code="bad_key")
    if segment.startswith(RESERVED_PREFIX):
        raise BadRequest(f"bad key {key!r}: names starting {RESERVED_PREFIX!r} are reserved",
                         code="bad_key")
    try:
        segment.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"bad key {key!r}: not valid UTF-8", code="bad_key") from None


def normalise_prefix(prefix: str) -> str:
    """``STATE_PREFIX`` as a store prefix: no leading slash, one trailing slash."""
    prefix = prefix.strip("/")
    return prefix + "/" if prefix else ""


def attr_name(name: str) -> str:
    """Accept ``ttl``, ``user.vfs.ttl`` or ``user.asya.ttl``; return ``ttl``."""
    for known in ATTR_PREFIXES:
        if name.startswith(known):
            name = name[len(known):]
            break
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise BadRequest(f"bad attribute name {name!r}", code="bad_attr")
    return name
