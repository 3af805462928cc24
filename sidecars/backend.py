"""The interface every storage backend implements for the app core.

The core (``sidecars.app``) owns HTTP: routing, header parsing, ranges,
preconditions policy (LWW drops them, CAS passes them on), key validation,
``STATE_PREFIX`` and JSON errors. A backend only moves bytes and versions for
*store keys* (the prefix already applied) and raises ``sidecars.errors``
exceptions. Keys are ``/``-separated; a key ending in ``/`` is a directory
marker with an empty body.
"""
from __future__ import annotations

import abc
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sidecars.errors import Forbidden, NotFound, PreconditionFailed, RangeNotSatisfiable
from sidecars.streams import Readable


@dataclass(frozen=True)
class ObjectInfo:
    """What a stat observes. ``version`` is opaque, quoted into the ETag."""

    size: int
    version: str
    modified: float | None = None  # seconds since the epoch
    content_type: str | None = None


@dataclass
class ObjectBody:
    """A (possibly ranged) read: the object's info, the served slice, the bytes.

    ``chunks`` is consumed by the response; ``close`` releases the backend
    stream if the client goes away early.
    """

    info: ObjectInfo
    start: int
    length: int
    chunks: Iterable[bytes]
    close: Callable[[], None] | None = None


@dataclass
class ListPage:
    """One page of a listing. ``next`` is a cursor for ``start_after``.

    ``infos`` holds what the backend learned about some ``keys`` for free
    while listing (size, version, time); keys missing from it are stat'ed by
    whoever needs their details.
    """

    keys: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    next: str | None = None
    infos: dict[str, ObjectInfo] = field(default_factory=dict)


@dataclass
class NamePage:
    """One page of one directory, named relative to it (``GET /keys/?names=1``).

    ``files`` and ``dirs`` (no trailing ``/``) are each sorted and together
    at most the page size; ``next`` is the store key of the page's last
    entry (a directory's with its ``/``) when more follow. ``infos`` is keyed
    by file name. Relative names leave the core no per-entry work: a big
    directory's names go from the backend to JSON as one list.
    """

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    next: str | None = None
    infos: dict[str, ObjectInfo] = field(default_factory=dict)


def first_merged(keys: list[str], prefixes: list[str], count: int) -> tuple[list[str], list[str]]:
    """The first ``count`` of two sorted lists in merged order (a key before an equal prefix)."""
    if len(keys) + len(prefixes) <= count:
        return keys, prefixes
    if not prefixes or not keys:
        return keys[:count], prefixes[:count]
    last = sorted(keys[:count] + prefixes[:count])[count - 1]
    n_keys, n_prefixes = bisect_right(keys, last), bisect_right(prefixes, last)
    if n_keys + n_prefixes > count:  # ``last`` is both: the key comes first
        n_prefixes -= 1
    return keys[:n_keys], prefixes[:n_prefixes]


def trimmed(page: ListPage, marker: str, max_keys: int) -> tuple[list[str], list[str], str | None]:
    """Sorted keys and prefixes of a page asked for with one extra item.

    The listed directory's own ``marker`` is dropped and the rest cut to
    ``max_keys`` in merged order; the third item is the cursor when more
    follow: the last entry kept.
    """
    keys, prefixes = sorted(page.keys), sorted(page.prefixes)
    at = bisect_left(keys, marker)
    if at < len(keys) and keys[at] == marker:
        del keys[at]
    truncated = page.next is not None or len(keys) + len(prefixes) > max_keys
    keys, prefixes = first_merged(keys, prefixes, max_keys)
    if not truncated:
        return keys, prefixes, None
    return keys, prefixes, max(keys[-1:] + prefixes[-1:], default=page.next)


class Backend(abc.ABC):
    """Adapter from the core's calls to one storage service.

    Preconditions: ``if_match`` is a version the object must have;
    ``if_none_match`` demands the key be absent. A failed check raises
    ``PreconditionFailed`` and changes nothing.
    """

    #: Largest object accepted, in bytes (None: unlimited). Larger bodies get 413.
    max_object_size: int | None = None

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Info of the object at ``key``, or None when absent."""

    @abc.abstractmethod
    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        """Bytes ``[start, start+length)`` (to the end when ``length`` is None).

        Raises ``NotFound``; ``RangeNotSatisfiable`` when ``start`` is at or
        past the end of the object (``start == 0`` is always satisfiable, an
        empty object reads as empty); ``PreconditionFailed`` when
        ``if_match`` is given and differs from the stored version.
        """

    @abc.abstractmethod
    def write(self, key: str, body: Readable, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        """Replace the object with ``body`` (``length`` bytes, None: until EOF).

        ``body.read(n)`` streams the request; a backend keeps memory bounded
        for large bodies. If reading the body raises, nothing is stored and
        no partial upload is left behind. Returns the new object's info.
        """

    @abc.abstractmethod
    def delete(self, key: str, if_match: str | None = None) -> None:
        """Remove ``key``; ``NotFound`` if absent."""

    @abc.abstractmethod
    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        """Keys under ``prefix`` in sorted order, grouped by ``delimiter``.

        With a delimiter, keys that continue past it are rolled up into
        ``prefixes`` (each ending in the delimiter). ``start_after`` is a
        cursor: items up to and including it are skipped, and when it is a
        prefix its whole subtree is skipped.
        """

    def list_details(self, prefix: str, delimiter: str | None, start_after: str | None,
                     max_keys: int) -> ListPage:
        """``list_page`` with ``infos`` for every file key (markers have none).

        Asked for by clients that show sizes and times (``scandir``, ``ls
        -l``), so that they need no request per entry. The default stats
        the keys ``list_page`` left without info, one call each; a backend
        that can do better in one round trip overrides this.
        """
        page = self.list_page(prefix, delimiter, start_after, max_keys)
        for key in page.keys:
            if key not in page.infos and not key.endswith("/"):
                info = self.stat(key)
                if info is not None:
                    page.infos[key] = info
        return page

    def list_names(self, prefix: str, start_after: str | None, max_keys: int,
                   details: bool = False) -> NamePage:
        """The ``delimiter="/"`` page as names relative to ``prefix``'s directory.

        The default cuts what ``list_page`` (``list_details``) returns, one
        entry at a time; a backend that keeps names relative overrides it.
        """
        directory = prefix[:prefix.rfind("/") + 1]
        lister = self.list_details if details else self.list_page
        page = lister(prefix, "/", start_after, max_keys + 1)
        keys, prefixes, cursor = trimmed(page, directory, max_keys)
        cut = len(directory)
        return NamePage(files=[key[cut:] for key in keys],
                        dirs=[p[cut:-1] for p in prefixes], next=cursor,
                        infos={key[cut:]: page.infos[key] for key in keys if key in page.infos})

    #: True when every path to a key's time (read, stat, listing) reports the same
    #: sub-second value: the core then sends it (``X-Mtime``, a listing's ``mtime``)
    #: besides the whole seconds of ``Last-Modified``.
    exact_mtime: bool = False

    #: True when ``write`` itself refuses, atomically, a key that is also a
    #: directory (``Conflict`` with code ``is_a_directory``), so the core
    #: skips its own pre-check (one listing per write on flat stores).
    refuses_dir_clash: bool = False

    def is_dir(self, key: str) -> bool:
        """A directory exists when a marker or any key lies under ``key/``."""
        page = self.list_page(key.rstrip("/") + "/", None, None, 1)
        return bool(page.keys or page.prefixes)

    def get_attrs(self, key: str) -> dict[str, str]:
        """Backend attributes of ``key`` (xattrs as handlers see them)."""
        info = self.stat(key)
        if info is None:
            raise NotFound(f"no such key: {key}")
        return {"version": info.version, "size": str(info.size)}

    def set_attr(self, key: str, name: str, value: str) -> None:
        """Set a writable attribute; read-only ones raise ``Forbidden``."""
        raise Forbidden(f"attribute {name!r} is not writable on this backend")

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendUnavailable`` when the service cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections; called as a gunicorn worker exits."""


def served_length(info: ObjectInfo, start: int, length: int | None,
                  if_match: str | None = None) -> int:
    """How many bytes a read of ``info`` from ``start`` serves, after the checks
    ``Backend.read`` promises: ``PreconditionFailed`` when ``if_match`` differs
    from the version, ``RangeNotSatisfiable`` when ``start`` is past the end
    (a read from 0 always fits, so an empty object reads as empty).
    """
    if if_match is not None and info.version != if_match:
        raise PreconditionFailed("object changed since it was observed")
    if start and start >= info.size:
        raise RangeNotSatisfiable(info.size)
    available = info.size - start
    return available if length is None else min(length, available)


def page_of(items: Iterable[tuple[str, bool]], start_after: str | None,
            max_keys: int) -> ListPage:
    """One listing page from sorted ``(name, is_prefix)`` items, after the cursor.

    For backends that gather a directory themselves (local, NATS KV): skips
    items up to the cursor (and a cursor's subtree when it is a prefix), and
    sets ``next`` when more items remain.
    """
    page = ListPage()
    last = None
    for name, is_prefix in items:
        if start_after is not None and (name <= start_after or
                                        (is_prefix and start_after.startswith(name))):
            continue
        if len(page.keys) + len(page.prefixes) == max_keys:
            page.next = last
            break
        (page.prefixes if is_prefix else page.keys).append(name)
        last = name
    return page

