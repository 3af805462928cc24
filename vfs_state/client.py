"""The sidecar protocol as Python calls, and where observations are recorded.

``SidecarClient`` knows the routes of the protocol (docs/protocol.md) and
nothing of filesystems.
Each call that *observes* a key (read, stat, write, delete) records the
version in the active ``VersionStore`` unless the caller passes
``observe=False`` (checks the library makes on its own must not refresh what
the handler saw).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import urlencode

from vfs_state._types import Readable
from vfs_state.transport import BodyStream, Reply, Transport, etag_of, key_path
from vfs_state.versions import ABSENT, current_store

LIST_PAGE = 10000  # the sidecar's largest page: one request for most directories


class Stat(NamedTuple):
    """What a HEAD tells about a key (made for every read and stat: a tuple is
    the cheapest immutable record)."""

    is_file: bool
    size: int = 0
    version: str | None = None
    modified: float | None = None
    content_type: str | None = None


def _file_stat(headers: dict[str, str], size: int) -> Stat:
    """A file's ``Stat`` from the headers of a reply about it (HEAD, GET or a stream)."""
    return Stat(True, size, etag_of(headers), _modified(headers), headers.get("content-type"))


def _modified(headers: dict[str, str]) -> float | None:
    """``X-Mtime`` (a backend's precise time) if sent, else ``Last-Modified``'s seconds."""
    precise = headers.get("x-mtime")
    if precise is not None:
        try:
            return float(precise)
        except ValueError:
            pass
    raw = headers.get("last-modified")
    if not raw:
        return None
    date = _DATES.get(raw, raw)  # the parsed date, else the string itself
    return http_date(raw) if date is raw else date  # type: ignore[return-value]


_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_DATES: dict[str, float | None] = {}


def http_date(raw: str) -> float | None:
    """Seconds since the epoch of an HTTP date (``Last-Modified``); None if unreadable.

    Replies of one second carry the same string, so parsed dates are
    remembered; the sidecar's fixed format (``Sun, 06 Nov 1994 08:49:37 GMT``)
    is read directly, anything else by ``email.utils``.
    """
    try:
        return _DATES[raw]
    except KeyError:
        pass
    value = _fixdate(raw)
    if value is None:
        value = _other_date(raw)
    if len(_DATES) >= 1024:
        _DATES.clear()
    _DATES[raw] = value
    return value


def _fixdate(raw: str) -> float | None:
    """An IMF-fixdate (RFC 9110 5.6.7), or None for any other form."""
    parts = raw.split(" ")
    if len(parts) != 6 or parts[5] != "GMT" or len(parts[1]) != 2 or parts[2] not in _MONTHS:
        return None
    clock = parts[4].split(":")
    if len(clock) != 3 or not all(len(p) == 2 and p.isdigit() for p in clock) \
            or not (parts[1].isdigit() and parts[3].isdigit() and len(parts[3]) == 4):
        return None
    from datetime import UTC, datetime  # on the first date, not at start-up

    try:
        return datetime(int(parts[3]), _MONTHS[parts[2]], int(parts[1]), int(clock[0]),
                        int(clock[1]), int(clock[2]), tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _other_date(raw: str) -> float | None:
    from email.utils import parsedate_to_datetime  # ~5 ms to import: not at start-up

    try:
        return parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None


def _total_size(reply: Reply) -> int:
    """Object size from ``Content-Range: bytes a-b/N`` (206) or the length (200)."""
    content_range = reply.headers.get("content-range")
    if content_range and "/" in content_range:
        return int(content_range.rsplit("/", 1)[1])
    return len(reply.body)


ListedPage = tuple[list[str], list[str], dict[str, Stat]]  # keys, prefixes, their stats
NamedPage = tuple[list[str], list[str], dict[str, Stat]]  # files, dirs, stats: by name


def _listed(details: object) -> dict[str, Stat]:
    """The ``details`` of a listing reply as ``Stat``s (malformed entries left out)."""
    stats: dict[str, Stat] = {}
    if not isinstance(details, dict):
        return stats
    for key, fields in details.items():
        try:
            modified = fields.get("mtime", fields.get("modified"))
            stats[key] = Stat(is_file=True, size=int(fields["size"]),
                              version=str(fields["version"]),
                              modified=None if modified is None else float(modified))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return stats


def _by_name(directory: str, data: dict[str, Any]) -> NamedPage:
    """An old sidecar's listing page (full keys) as ``list_names`` yields it."""
    cut = len(directory)
    files = [key[cut:] for key in data.get("keys") or () if "/" not in key[cut:] and key[cut:]]
    dirs = [p[cut:].rstrip("/") for p in data.get("prefixes") or () if p[cut:].rstrip("/")]
    stats = {key[cut:]: stat for key, stat in _listed(data.get("details")).items()}
    return files, dirs, stats


def _pinned_range(byte_range: str, version: str | None) -> dict[str, str]:
    """``Range`` plus ``If-Match`` on the version a reader opened, if known."""
    headers = {"Range": byte_range}
    if version is not None:
        headers["If-Match"] = f'"{version}"'
    return headers


_FIRST: dict[int, dict[str, str]] = {}


def _first_bytes(length: int) -> dict[str, str]:
    """``Range`` for the first ``length`` bytes (the few lengths used are kept)."""
    headers = {"Range": f"bytes=0-{length - 1}"}
    if len(_FIRST) < 8:
        _FIRST[length] = headers
    return headers


class SidecarClient:
    """Typed calls to one sidecar; ``store_id`` scopes remembered versions."""

    def __init__(self, socket_path: str, timeout: float = 60.0, name: str | None = None) -> None:
        where = f"mount {name!r} at {socket_path}" if name else f"sidecar {socket_path}"
        self.transport = Transport(socket_path, timeout=timeout, where=where)
        self.store_id = socket_path
        self.where = where

    # -- observations ---------------------------------------------------------

    def observe(self, key: str, version: str | None) -> None:
        """Record what the caller saw of ``key`` (a version, or ``ABSENT``)."""
        current_store().observe(self.store_id, key, version)

    def preconditions(self, key: str) -> dict[str, str]:
        """Headers that make a write of ``key`` conditional on what was observed."""
        return current_store().preconditions(self.store_id, key)

    # -- objects --------------------------------------------------------------

    def stat(self, key: str, observe: bool = True) -> Stat | None:
        """HEAD ``key``; None when neither a file nor a directory is there."""
        reply = self.transport.request("HEAD", key_path("/keys/", key), key=key, ok=(404,))
        if reply.status == 404:
            if observe:
                self.observe(key, ABSENT)
            return None
        headers = reply.headers
        if headers.get("x-is-file", "true").lower() == "false":
            return Stat(False)
        stat = _file_stat(headers, int(headers.get("content-length", 0)))
        if observe:
            current_store().observe(self.store_id, key, stat.version)
        return stat

    def read_head(self, key: str, length: int, observe: bool = True) -> tuple[Stat, bytes]:
        """The first ``length`` bytes, the size and the version in one GET.

        Raises ``FileNotFoundError`` (recorded as absent when observing).
        """
        try:
            reply = self.transport.request("GET", key_path("/keys/", key),
                                           _FIRST.get(length) or _first_bytes(length), key=key)
        except FileNotFoundError:
            if observe:
                self.observe(key, ABSENT)
            raise
        stat = _file_stat(reply.headers, _total_size(reply))
        if observe:
            current_store().observe(self.store_id, key, stat.version)
        return stat, reply.body

    def read_from(self, key: str, start: int, length: int | None) -> tuple[Stat, bytes] | None:
        """A lazy reader's first request: ``length`` bytes from ``start`` (or all of
        them from there), with the size and version, recorded as an observation.

        None when ``start`` lies past the end (nothing to read, nothing
        observed); raises ``FileNotFoundError`` (recorded as absent).
        """
        end = "" if length is None else str(start + length - 1)
        headers = {"Range": f"bytes={start}-{end}"} if start or length is not None else None
        try:
            reply = self.transport.request("GET", key_path("/keys/", key), headers, key=key,
                                           ok=(416,))
        except FileNotFoundError:
            self.observe(key, ABSENT)
            raise
        if reply.status == 416:
            return None
        return self._observed(key, reply.headers, _total_size(reply)), reply.body

    def stream_whole(self, key: str) -> tuple[Stat, BodyStream]:
        """A lazy reader's first request when it reads on from 0: the whole object
        as one streamed GET, with the size and version (recorded)."""
        try:
            stream = self.transport.stream(key_path("/keys/", key), {}, key=key)
        except FileNotFoundError:
            self.observe(key, ABSENT)
            raise
        return self._observed(key, stream.headers, stream.remaining), stream

    def _observed(self, key: str, headers: dict[str, str], size: int) -> Stat:
        stat = _file_stat(headers, size)
        current_store().observe(self.store_id, key, stat.version)
        return stat

    def read_range(self, key: str, start: int, length: int, version: str | None) -> bytes:
        """Bytes ``[start, start+length)`` of the version opened (412 if it changed)."""
        headers = _pinned_range(f"bytes={start}-{start + length - 1}", version)
        return self.transport.request("GET", key_path("/keys/", key), headers, key=key).body

    def stream_from(self, key: str, start: int, version: str | None) -> BodyStream:
        """The object from ``start`` to its end, read incrementally (version-pinned)."""
        headers = _pinned_range(f"bytes={start}-", version)
        return self.transport.stream(key_path("/keys/", key), headers, key=key)

    def write(self, key: str, body: bytes | Readable, size: int,
              conditions: dict[str, str] | None = None) -> str | None:
        """PUT ``size`` bytes; returns and records the new version.

        ``conditions`` defaults to what the active store remembers for ``key``.
        """
        headers = self.preconditions(key) if conditions is None else dict(conditions)
        headers["Content-Length"] = str(size)
        reply = self.transport.request("PUT", key_path("/keys/", key), headers, body, key=key)
        version = reply.etag()
        current_store().observe(self.store_id, key, version)
        return version

    def delete(self, key: str, conditional: bool = True,
               conditions: dict[str, str] | None = None) -> None:
        """DELETE ``key``; records absent.

        Conditional on ``conditions``, or by default on the remembered version
        (unless ``conditional`` is False).
        """
        if conditions is not None:
            headers = dict(conditions)
        else:
            headers = self.preconditions(key) if conditional else {}
        headers.pop("If-None-Match", None)  # "seen absent" cannot guard a delete
        try:
            self.transport.request("DELETE", key_path("/keys/", key), headers, key=key)
        except FileNotFoundError:
            self.observe(key, ABSENT)  # seeing it gone is an observation too
            raise
        self.observe(key, ABSENT)

    # -- directories ------------------------------------------------------------

    def make_marker(self, key: str) -> None:
        """Create the directory marker ``key/``."""
        marker = key.rstrip("/") + "/"
        self.transport.request("PUT", key_path("/keys/", marker), {"Content-Length": "0"},
                               b"", key=key)

    def remove_marker(self, key: str) -> bool:
        """Delete ``key/``; False when there was no marker."""
        marker = key.rstrip("/") + "/"
        reply = self.transport.request("DELETE", key_path("/keys/", marker), key=key, ok=(404,))
        return reply.status != 404

    def list(self, prefix: str, delimiter: str | None = "/",
             page_size: int = LIST_PAGE) -> Iterator[tuple[list[str], list[str]]]:
        """Yield ``(keys, prefixes)`` pages until the listing is complete."""
        for keys, prefixes, _ in self.list_details(prefix, delimiter, page_size, details=False):
            yield keys, prefixes

    def list_details(self, prefix: str, delimiter: str | None = "/", page_size: int = LIST_PAGE,
                     details: bool = True) -> Iterator[ListedPage]:
        """Yield ``(keys, prefixes, stats)`` pages; ``stats`` maps keys to what a HEAD tells.

        A sidecar that predates listing details answers without them: the
        map is then empty and callers stat the keys they need.
        """
        query = {"prefix": prefix, "max_keys": str(page_size)}
        if delimiter:
            query["delimiter"] = delimiter
        if details:
            query["details"] = "1"
        for data in self._pages(query, prefix):
            yield data.get("keys", []), data.get("prefixes", []), _listed(data.get("details"))

    def list_names(self, directory: str, details: bool = False,
                   page_size: int = LIST_PAGE) -> Iterator[NamedPage]:
        """Yield ``(files, dirs, stats)`` pages of one directory, by name (``names=1``).

        ``directory`` is ``""`` or a key prefix ending in ``/``. The sidecar
        sends names relative to it, so no step per entry is needed on either
        side; one that predates ``names`` sends full keys, cut here.
        """
        query = {"prefix": directory, "delimiter": "/", "max_keys": str(page_size),
                 "names": "1"}
        if details:
            query["details"] = "1"
        for data in self._pages(query, directory):
            if "files" in data:
                yield data["files"], data.get("dirs", []), _listed(data.get("details"))
            else:
                yield _by_name(directory, data)

    def _pages(self, query: dict[str, str], prefix: str) -> Iterator[dict[str, Any]]:
        """Every page of one listing, each decoded, following ``next`` as the cursor."""
        while True:
            reply = self.transport.request("GET", "/keys/?" + urlencode(query), key=prefix)
            data = json.loads(reply.body)
            yield data
            cursor = data.get("next")
            if not cursor:
                return
            query = {**query, "start_after": cursor}

    # -- attributes ---------------------------------------------------------------

    def get_attrs(self, key: str) -> dict[str, str]:
        reply = self.transport.request("GET", key_path("/meta/", key), key=key)
        document = json.loads(reply.body)
        values = document.get("values", document.get("attrs", {}))  # older sidecars: attrs
        return dict(values) if isinstance(values, dict) else {}

    def set_attr(self, key: str, name: str, value: str) -> None:
        data = value.encode("utf-8")
        self.transport.request("PUT", key_path("/meta/", key) + "?" + urlencode({"attr": name}),
                               {"Content-Length": str(len(data))}, data, key=key)

    def close(self) -> None:
        self.transport.close()
