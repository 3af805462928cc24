"""The one conformance suite every connector must pass.

A Hypothesis ``RuleBasedStateMachine`` drives several independent clients
(each a ``StateFS`` with its own remembered versions) against a real
sidecar, and keeps a model of the store: content and a version counter per
key, plus what each client last observed. From the model it predicts which
writes and deletes must fail under compare-and-set and what every read, stat
and listing returns; under last-writer-wins every write must win.

``machine_for`` binds the machine to one sidecar; ``run_conformance`` runs
it (the project's connectors and third-party ones alike, see
docs/sidecars.md).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from vfs_state._pyfs import errors
from vfs_state.statefs import StateFS
from vfs_state.testing.rawhttp import RawClient
from vfs_state.versions import VersionStore, session

DIRS = ("", "d1/", "d1/d2/", "e f/")
NAMES = ("a", "b.txt", "c d.json", "é#?%", "x..y")
KEYS = tuple(d + n for d in DIRS for n in NAMES)
UNSEEN = object()
ABSENT = None
CLIENTS = 3

keys = st.sampled_from(KEYS)
clients = st.integers(min_value=0, max_value=CLIENTS - 1)
payloads = st.binary(max_size=64)
directories = st.sampled_from(DIRS)
# If-Match values no stored version can equal (RFC 9110 strong comparison):
# empty, weak, unquoted, malformed, and versions in another connector's format.
NEVER_MATCHING = ('""', 'W/""', 'W/"1"', "garbage", '"a"b"', '"x", "y"',
                  '"0123456789abcdef0123456789abcdef"', '"1700000000000000"', '"0"')
never_matching = st.sampled_from(NEVER_MATCHING)


@dataclass
class Client:
    """One independent writer: a StateFS plus its own version memory.

    ``lazy`` is the same sidecar opened with ``lazy_open``: what it reads
    guards the client's writes as ``fs``'s reads do (one store per socket).
    """

    fs: StateFS
    lazy: StateFS
    store: VersionStore = field(default_factory=VersionStore)
    seen: dict[str, object] = field(default_factory=dict)  # key -> model version / ABSENT


class StoreMachine(RuleBasedStateMachine):
    """Subclassed per connector with ``socket_path``, ``cas`` and ``write_mode``."""

    socket_path: str = ""
    cas: bool = True
    write_mode: str = "buffered"
    real_directories: bool = False  # local keeps empty directories
    content_versions: bool = False  # S3 ETags hash the content: equal bytes, equal version

    def __init__(self) -> None:
        super().__init__()
        self.root = f"conf-{uuid.uuid4().hex[:12]}/"
        self.model: dict[str, tuple[bytes, int]] = {}  # key -> (content, version)
        self.clock = 0
        self.clients = [Client(StateFS(self.socket_path, self.write_mode),
                               StateFS(self.socket_path, self.write_mode, lazy_open=True))
                        for _ in range(CLIENTS)]
        self.raw = RawClient(self.socket_path)

    # -- helpers ---------------------------------------------------------------

    def _path(self, key: str) -> str:
        return self.root + key

    def _observe(self, client: Client, key: str) -> None:
        client.seen[key] = self.model[key][1] if key in self.model else ABSENT

    def _write_allowed(self, client: Client, key: str) -> bool:
        if not self.cas:
            return True
        seen = client.seen.get(key, UNSEEN)
        if seen is UNSEEN:
            return True
        if seen is ABSENT:
            return key not in self.model
        return key in self.model and self.model[key][1] == seen

    def _commit(self, client: Client, key: str, data: bytes) -> None:
        self.clock += 1
        version = hash(data) if self.content_versions else self.clock
        self.model[key] = (data, version)
        client.seen[key] = version

    def _commit_raw(self, key: str, data: bytes) -> None:
        """A write made outside every client (raw HTTP): clients' views go stale."""
        self.clock += 1
        self.model[key] = (data, hash(data) if self.content_versions else self.clock)

    def _expect_value(self, key: str) -> None:
        status, _, body = self.raw.get(self._path(key))
        if key in self.model:
            assert (status, body) == (200, self.model[key][0]), f"{key!r}: {status} {body!r}"
        else:
            assert status == 404, f"{key!r} should be absent, GET gave {status}"

    # -- rules -----------------------------------------------------------------

    @rule(key=keys, tag=never_matching, delete=st.booleans(), data=payloads)
    def never_matching_if_match(self, key: str, tag: str, delete: bool, data: bytes) -> None:
        """Raw PUT/DELETE with an If-Match no version can equal: 412 under CAS."""
        if delete:
            status = self.raw.delete(self._path(key), If_Match=tag)[0]
        else:
            status = self.raw.put(self._path(key), data, If_Match=tag)[0]
        if self.cas:
            assert status >= 300, f"If-Match {tag} on {key!r} succeeded (CAS not enforced)"
            allowed = (404, 412) if delete and key not in self.model else (412,)
            assert status in allowed, f"If-Match {tag} on {key!r}: {status}, not {allowed}"
        elif delete:  # LWW ignores preconditions
            assert status == (204 if key in self.model else 404), f"LWW delete: {status}"
            self.model.pop(key, None)
        else:
            assert status == 204, f"LWW put with If-Match {tag}: {status}"
            self._commit_raw(key, data)
        self._expect_value(key)

    @rule(key=keys, data=payloads)
    def delete_then_reuse_old_tag(self, key: str, data: bytes) -> None:
        """After a delete the old tag matches nothing; create-only succeeds."""
        status, headers, _ = self.raw.get(self._path(key))
        if status != 200:
            return
        etag = headers["ETag"]
        assert self.raw.delete(self._path(key), If_Match=etag)[0] == 204
        del self.model[key]
        status = self.raw.put(self._path(key), data, If_Match=etag)[0]
        if self.cas:
            assert status >= 300, f"PUT If-Match <deleted tag> of {key!r} succeeded " \
                "(CAS not enforced)"
            assert status == 412, f"PUT If-Match <deleted tag> of {key!r}: {status}"
            self._expect_value(key)
            status = self.raw.put(self._path(key), data, If_None_Match="*")[0]
            assert status == 204, f"create-only after delete of {key!r}: {status}"
        else:
            assert status == 204, f"LWW put: {status}"
        self._commit_raw(key, data)
        self._expect_value(key)

    @rule(c=clients, key=keys, data=payloads)
    def write(self, c: int, key: str, data: bytes) -> None:
        client = self.clients[c]
        expect_ok = self._write_allowed(client, key)
        with session(client.store):
            try:
                with client.fs.openbin(self._path(key), "w", create_parents=True) as f:
                    f.write(data)
            except FileExistsError:
                assert not expect_ok, f"write of {key!r} refused but the model allows it"
                return
        assert expect_ok, f"stale write of {key!r} succeeded (CAS not enforced)"
        self._commit(client, key, data)

    @rule(c=clients, key=keys, data=payloads)
    def create_only(self, c: int, key: str, data: bytes) -> None:
        client = self.clients[c]
        existed = key in self.model
        with session(client.store):
            try:
                with client.fs.openbin(self._path(key), "x", create_parents=True) as f:
                    f.write(data)
            except (FileExistsError, errors.FileExists):
                assert existed, f"create-only of absent {key!r} refused"
                return
        assert not existed, f"create-only of existing {key!r} succeeded"
        self._commit(client, key, data)

    @rule(c=clients, key=keys)
    def read(self, c: int, key: str) -> None:
        client = self.clients[c]
        with session(client.store):
            try:
                data = client.fs.readbytes(self._path(key))
            except errors.ResourceNotFound:
                data = None
        expected = self.model[key][0] if key in self.model else None
        assert data == expected, f"read {key!r}: got {data!r}, model has {expected!r}"
        self._observe(client, key)

    @rule(c=clients, key=keys, lazy=st.booleans(), offset=st.integers(0, 80),
          size=st.none() | st.integers(0, 80))
    def read_opened(self, c: int, key: str, lazy: bool, offset: int, size: int | None) -> None:
        """``open``, ``seek``, ``read``; a lazy open reports a missing file at the read."""
        client = self.clients[c]
        fs = client.lazy if lazy else client.fs
        with session(client.store):
            try:
                with fs.openbin(self._path(key), "rb") as f:
                    f.seek(offset)
                    data = f.read() if size is None else f.read(size)
            except (errors.ResourceNotFound, FileNotFoundError):
                data = None
        if lazy and size == 0:  # a read of nothing sends nothing, and so observes nothing
            assert data == b""
            return
        expected = self.model[key][0] if key in self.model else None
        if expected is not None:
            expected = expected[offset:] if size is None else expected[offset:offset + size]
        assert data == expected, f"read {key!r} at {offset}: got {data!r}, model {expected!r}"
        self._observe(client, key)

    @rule(c=clients, key=keys)
    def stat(self, c: int, key: str) -> None:
        client = self.clients[c]
        with session(client.store):
            try:
                info = client.fs.getinfo(self._path(key), namespaces=["details"])
            except errors.ResourceNotFound:
                info = None
        if key in self.model:
            assert info is not None and not info.is_dir, f"stat {key!r}: missing"
            assert info.size == len(self.model[key][0])
        else:
            assert info is None, f"stat {key!r}: exists but the model has no such key"
        self._observe(client, key)

    @rule(c=clients, key=keys)
    def delete(self, c: int, key: str) -> None:
        client = self.clients[c]
        seen = client.seen.get(key, UNSEEN)
        stale = self.cas and seen not in (UNSEEN, ABSENT) and (
            key not in self.model or self.model[key][1] != seen)
        with session(client.store):
            try:
                client.fs.remove(self._path(key))
            except errors.ResourceNotFound:
                assert key not in self.model, f"delete {key!r}: not found but present"
                client.seen[key] = ABSENT
                return
            except FileExistsError:
                assert stale, f"delete {key!r} refused but the observed version is current"
                return
        assert key in self.model, f"delete {key!r} succeeded but nothing was there"
        assert not stale, f"stale delete of {key!r} succeeded (CAS not enforced)"
        del self.model[key]
        client.seen[key] = ABSENT

    @rule(c=clients, directory=directories)
    def listdir(self, c: int, directory: str) -> None:
        client = self.clients[c]
        files = {k[len(directory):] for k in self.model
                 if k.startswith(directory) and "/" not in k[len(directory):]}
        subdirs = {k[len(directory):].split("/")[0] for k in self.model
                   if k.startswith(directory) and "/" in k[len(directory):]}
        try:
            entries = list(client.fs.scandir(self._path(directory) or "/"))
        except errors.ResourceNotFound:
            assert not files and not subdirs, f"listdir {directory!r}: missing"
            return
        got_files = {e.name for e in entries if not e.is_dir}
        got_dirs = {e.name for e in entries if e.is_dir}
        assert got_files == files, f"listdir {directory!r}: files {got_files} != {files}"
        if self.real_directories:
            assert subdirs <= got_dirs
        else:
            assert got_dirs == subdirs, f"listdir {directory!r}: dirs {got_dirs} != {subdirs}"

    @precondition(lambda self: self.cas)
    @rule(c=clients, key=keys, data=payloads)
    def read_modify_write(self, c: int, key: str, data: bytes) -> None:
        """The handler pattern: read, then write back in the same session."""
        self.read(c, key)
        self.write(c, key, data)

    @invariant()
    def versions_are_per_client(self) -> None:
        for client in self.clients:
            assert len(client.store) <= len(KEYS)

    def teardown(self) -> None:
        for client in self.clients:
            client.fs.close()
            client.lazy.close()


def machine_for(socket_path: str, cas: bool, write_mode: str = "buffered",
                real_directories: bool = False,
                content_versions: bool = False) -> type[StoreMachine]:
    """A ``StoreMachine`` bound to one sidecar and its consistency rules."""
    return type("StoreMachineFor", (StoreMachine,), {
        "socket_path": socket_path, "cas": cas, "write_mode": write_mode,
        "real_directories": real_directories, "content_versions": content_versions,
    })


def run_conformance(socket_path: str, *, cas: bool = True, write_mode: str = "buffered",
                    real_directories: bool = False, content_versions: bool = False,
                    settings: Settings | None = None) -> None:
    """Run the suite against the sidecar on ``socket_path``; raises on the first mismatch.

    Args:
        cas: the connector honours ``If-Match``/``If-None-Match`` (compare-and-set);
            False checks last-writer-wins instead.
        write_mode: ``"buffered"`` or ``"passthrough"``, as the clients write.
        real_directories: empty directories survive (a store with real
            directories, like the local connector); listings may show more
            directories than the keys imply.
        content_versions: equal bytes give equal versions (S3 ETags).
        settings: Hypothesis settings (examples, steps); None uses the
            loaded profile.
    """
    machine = machine_for(socket_path, cas, write_mode, real_directories, content_versions)
    run_state_machine_as_test(machine, settings=settings)
