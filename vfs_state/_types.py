"""Small shared types: what the client's streams and raw files need of each other.

``Readable`` is what a request body or an upload source must offer (a
``read``), so a ``RangeReader``, a spool or a plain file all qualify without
claiming to be ``BinaryIO``. ``FileContext`` is what whoever opens a file
tells the raw file about itself (the name and mode it reports, the mount it
names in errors, who wants to know about its descriptors), passed in at
construction rather than patched on afterwards.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol


class Readable(Protocol):
    """A binary stream that can be read from (``read(n)`` returns ``bytes``)."""

    def read(self, size: int = -1, /) -> bytes: ...


class DescriptorHooks(Protocol):
    """Told when a raw file hands out a real descriptor (``fileno()``) and drops it."""

    def shared(self, fd: int) -> None:
        """``fd`` now shows this file's content."""

    def released(self, fd: int) -> OSError | None:
        """The file is closing; an error to raise once a writer has committed, if any."""


class FileContext(NamedTuple):
    """How a raw file presents itself (made for every open: a tuple is the cheapest
    immutable record).

    Attributes:
        name: what ``.name`` reports and errors name (the caller's path).
        mode: what ``.mode`` reports (``FileIO``'s spelling, e.g. ``"rb+"``).
        label: how messages name the mount.
        hooks: told about descriptors from ``fileno()``; None for nobody.
    """

    name: str | bytes
    mode: str
    label: str
    hooks: DescriptorHooks | None = None
