"""Names the client and the sidecars share, defined once (docs/protocol.md).

This module imports nothing, so the sidecars (``sidecars.keys``) take it
without loading the client, and the client takes it without Flask.
"""
from __future__ import annotations

#: How a client sends writes: one framed PUT on close, or a chunked PUT as it writes.
WRITE_MODES = ("buffered", "passthrough")
#: Extended-attribute namespaces mapped to a key's backend attributes (``/meta``).
ATTR_PREFIXES = ("user.vfs.", "user.asya.")
#: The namespace attributes are listed under.
LISTED_ATTR_PREFIX = ATTR_PREFIXES[0]
