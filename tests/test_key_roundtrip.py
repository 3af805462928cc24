"""Arbitrary UTF-8 keys round-trip on every connector (a property over generated keys)."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.connectors import ALL_CONNECTORS
from vfs_state import StateFS

# Printable characters from every script, plus the URL-significant ones; no
# control characters (S3's XML listings cannot carry them) and no surrogates.
segment_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/")
segments = st.one_of(
    st.text(segment_chars, min_size=1, max_size=16),
    st.sampled_from(["with space", "hash#tag", "what?", "100%", "a..b", "..x", "x..",
                     "...", "ünïcødé", "名前", "=2E", "%2F", "+plus+"]),
).filter(lambda s: s not in (".", "..") and not s.startswith(".vfs-state")
         and len(s.encode()) <= 120)
keys = st.lists(segments, min_size=1, max_size=3).map("/".join)


@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_generated_keys_round_trip(connector_pool, connector):
    fs = StateFS(connector_pool.sidecar(connector).socket_path)

    @given(key=keys, data=st.binary(max_size=32))
    def round_trip(key: str, data: bytes) -> None:
        root = f"keys-{uuid.uuid4().hex[:10]}"
        path = f"{root}/{key}"
        with fs.openbin(path, "w", create_parents=True) as f:
            f.write(data)
        assert fs.readbytes(path) == data
        assert fs.getinfo(path, namespaces=["details"]).size == len(data)
        parent, _, name = path.rpartition("/")
        assert name in fs.listdir(parent)
        fs.remove(path)
        assert not fs.exists(path)

    round_trip()
