"""Store keys to NATS KV keys and back, reversibly, and listings over them.

NATS KV keys may only use ``[-/_=.a-zA-Z0-9]`` and ``.`` separates subject
tokens. Our keys are ``/``-separated UTF-8 paths, so each path segment
becomes one token: that way a directory is a subject prefix and a listing
can ask the server for one subtree (``a.b.>``) instead of the whole bucket.

Inside a token ``[A-Za-z0-9_-]`` stay as they are; every other character
becomes ``=XX`` per UTF-8 byte (upper-case hex). That covers ``.``, ``=``,
``/``, the wildcards ``*`` and ``>`` and all non-ASCII text, and the mapping
is a bijection: decoding accepts only what encoding produces, so a foreign
key that would not round-trip is rejected instead of aliasing another one.
A directory marker (``a/b/``) gets the reserved last token ``=D``, which no
encoded segment can equal (an escape is always three characters).

A listing of ``a/b/`` reads the live keys of subject subtree ``a.b.>`` and
``paginate`` rolls them up at the delimiter and pages them in key order.
"""
from __future__ import annotations

import re
import string

from sidecars.backend import ListPage, page_of

#: The final token standing for a trailing ``/`` (a directory marker).
MARKER_TOKEN = "=D"

_PLAIN = frozenset(string.ascii_letters + string.digits + "_-")
_TOKEN_RE = re.compile(r"(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+")
_ESCAPE_RE = re.compile(r"=([0-9A-F]{2})")


def encode_segment(segment: str) -> str:
    """One non-empty path segment as one NATS token."""
    if not segment:
        raise ValueError("empty path segment")
    out = []
    for char in segment:
        if char in _PLAIN:
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_segment(token: str) -> str:
    """Inverse of ``encode_segment``; ``ValueError`` for anything it cannot produce."""
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(f"not an encoded segment: {token!r}")
    raw = bytearray()
    pos = 0
    for match in _ESCAPE_RE.finditer(token):
        raw += token[pos:match.start()].encode("ascii")
        byte = int(match.group(1), 16)
        if chr(byte) in _PLAIN:
            raise ValueError(f"needless escape in {token!r}")  # keeps decoding 1:1
        raw.append(byte)
        pos = match.end()
    raw += token[pos:].encode("ascii")
    return raw.decode("utf-8")  # UnicodeDecodeError is a ValueError


def encode_key(key: str) -> str:
    """``a/b c`` -> ``a.b=20c``; ``a/b/`` (marker) -> ``a.b.=D``."""
    marker = key.endswith("/")
    body = key[:-1] if marker else key
    tokens = [encode_segment(segment) for segment in body.split("/")]
    if marker:
        tokens.append(MARKER_TOKEN)
    return ".".join(tokens)


def decode_key(nats_key: str) -> str:
    """Inverse of ``encode_key``; ``ValueError`` for keys written in another scheme."""
    tokens = nats_key.split(".")
    marker = tokens[-1] == MARKER_TOKEN
    if marker:
        tokens.pop()
        if not tokens:
            raise ValueError("a marker token needs a directory before it")
    key = "/".join(decode_segment(token) for token in tokens)
    return key + "/" if marker else key


def subtree_filter(directory: str) -> str:
    """Subject filter (relative to the bucket) matching every key under ``directory``.

    ``directory`` is ``""`` (the whole bucket) or ends with ``/``.
    """
    if not directory:
        return ">"
    if not directory.endswith("/"):
        raise ValueError(f"not a directory: {directory!r}")
    return encode_key(directory)[: -len(MARKER_TOKEN)] + ">"


def paginate(keys: list[str], prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
    """Sorted keys/prefixes under ``prefix``, rolled up at ``delimiter``, one page of them."""
    items: dict[str, bool] = {}
    for key in keys:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        cut = rest.find(delimiter) if delimiter else -1
        if cut >= 0:
            items[prefix + rest[:cut + 1]] = True
        else:
            items.setdefault(key, False)
    return page_of(sorted(items.items()), start_after, max_keys)
