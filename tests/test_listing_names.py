"""``GET /keys/?names=1``: a directory's entries by name, against the full-key listing.

Every connector must give the same entries, order and paging in both
formats (local and Redis have their own fast paths, the others the core's
default). A client that meets a sidecar predating ``names`` still lists.
"""
from __future__ import annotations

import json
import os
import uuid
from urllib.parse import urlencode

import pytest

from sidecars.backend import ListPage, first_merged, trimmed
from tests.connectors import ALL_CONNECTORS
from tests.rawhttp import RawClient, key_url
from tests.test_transport_scripted import ScriptedServer, reply
from vfs_state import StateFS


@pytest.fixture
def request_id() -> str:
    return uuid.uuid4().hex[:8]


def names_page(client: RawClient, prefix: str, **params: object) -> tuple[int, dict]:
    query = urlencode({"prefix": prefix, "delimiter": "/", "names": "1", **params})
    status, _, body = client.request("GET", "/keys/?" + query)
    return status, json.loads(body)


def all_names(client: RawClient, prefix: str, max_keys: int,
              details: bool = False) -> tuple[list[str], list[str], dict, int]:
    """Follow the cursors of ``names=1`` pages; ``(files, dirs, details, pages)``."""
    files: list[str] = []
    dirs: list[str] = []
    stats: dict = {}
    cursor, pages = None, 0
    while True:
        params: dict[str, object] = {"max_keys": max_keys}
        if cursor:
            params["start_after"] = cursor
        if details:
            params["details"] = 1
        status, page = names_page(client, prefix, **params)
        assert status == 200, page
        assert len(page["files"]) + len(page["dirs"]) <= max_keys
        assert page["files"] == sorted(page["files"]) and page["dirs"] == sorted(page["dirs"])
        files += page["files"]
        dirs += page["dirs"]
        stats.update(page.get("details", {}))
        pages += 1
        cursor = page.get("next")
        if not cursor:
            return files, dirs, stats, pages


@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_names_pages_agree_with_the_full_key_listing(connector_pool, connector, request_id):
    client = RawClient(connector_pool.sidecar(connector).socket_path)
    base = f"names-{request_id}"
    files = ["a", "a-b", "b.json", "sub0", "zz", "ü"]
    for name in files:
        assert client.put(f"{base}/{name}", name.encode())[0] == 204
    assert client.put(f"{base}/sub/deep/x", b"x")[0] == 204  # a directory without marker
    assert client.request("PUT", key_url(f"{base}/marked/"), b"")[0] == 204
    assert client.request("PUT", key_url(f"{base}/"), b"")[0] in (204, 409)  # own marker
    keys, prefixes, _ = client.list_all(base + "/", max_keys=1000)
    assert [k[len(base) + 1:] for k in keys] == files
    assert prefixes == [f"{base}/marked/", f"{base}/sub/"]
    for max_keys in (1, 2, 3, 1000):
        got_files, got_dirs, _, pages = all_names(client, base + "/", max_keys)
        assert (got_files, got_dirs) == (files, ["marked", "sub"]), max_keys
        assert pages - -(-8 // max_keys) in (0, 1), max_keys  # an empty last page at most
    _, page = names_page(client, f"{base}/su")  # a partial last segment: names stay relative
    assert (page["files"], page["dirs"]) == (["sub0"], ["sub"])
    _, page = names_page(client, f"{base}/sub/")
    assert (page["files"], page["dirs"]) == ([], ["deep"])
    _, page = names_page(client, f"{base}/", start_after=f"{base}/sub/")  # past a directory
    assert (page["files"], page["dirs"]) == (["sub0", "zz", "ü"], [])
    got_files, _, stats, _ = all_names(client, base + "/", 2, details=True)
    assert got_files == files
    assert sorted(stats) == files and all(stats[n]["size"] == len(n.encode()) for n in files)


@pytest.mark.parametrize("connector", ["local-buffered-lww", "redis-buffered-cas"])
def test_names_needs_the_delimiter(connector_pool, connector):
    client = RawClient(connector_pool.sidecar(connector).socket_path)
    status, _, body = client.request("GET", "/keys/?prefix=x/&names=1")
    assert status == 400 and json.loads(body)["error"] == "bad_request"


def test_local_names_skip_reserved_entries_and_symlinks(connector_pool, request_id):
    sidecar = connector_pool.sidecar("local-buffered-lww")
    client = RawClient(sidecar.socket_path)
    base = f"reserved-{request_id}"
    for name in (".a", "-x", "z"):
        assert client.put(f"{base}/{name}", b"v")[0] == 204
    root = os.path.join(sidecar._env["STATE_ROOT"], sidecar._env["STATE_PREFIX"], base)
    for name in (".vfs-state-tmp-1", ".vfs-stateful", ".vfs-state"):
        with open(os.path.join(root, name), "wb"):
            pass
    os.mkdir(os.path.join(root, ".vfs-state-dir"))
    os.mkdir(os.path.join(root, ".vfs-statf"))
    os.symlink(os.path.join(root, "z"), os.path.join(root, "link"))
    files, dirs, _, _ = all_names(client, base + "/", 2)
    assert (files, dirs) == (["-x", ".a", "z"], [".vfs-statf"])
    keys, prefixes, _ = client.list_all(base + "/")
    assert keys == [f"{base}/-x", f"{base}/.a", f"{base}/z"]
    assert prefixes == [f"{base}/.vfs-statf/"]


def test_client_lists_through_a_sidecar_without_names():
    """An old sidecar ignores ``names=1`` and answers full keys, page by page."""
    stat = {"size": 3, "version": "7", "modified": 60.0}
    pages = [{"keys": ["d/", "d/a", "d/c"], "prefixes": ["d/b/"], "next": "d/c",
              "details": {"d/a": stat, "d/c": stat}},
             {"keys": ["d/e"], "prefixes": ["d/f/"], "details": {"d/e": stat}}]
    server = ScriptedServer([("reply", reply(200, json.dumps(page).encode())) for page in pages])
    fs = StateFS(server.path)
    try:
        infos = list(fs.scandir("/d", namespaces=["details"]))
    finally:
        fs.close()
        server.close()
    assert [(i.name, i.is_dir) for i in infos] == [("a", False), ("b", True), ("c", False),
                                                    ("e", False), ("f", True)]
    assert [i.size for i in infos if not i.is_dir] == [3, 3, 3]
    paths = [path for _, _, path in server.arrivals]
    assert all("names=1" in path for path in paths) and "start_after=d%2Fc" in paths[1]


def test_pages_cut_in_merged_order_a_key_before_an_equal_prefix():
    assert first_merged(["a/", "b"], ["a/"], 1) == (["a/"], [])
    assert first_merged(["a/", "b"], ["a/"], 2) == (["a/"], ["a/"])
    assert first_merged(["a", "c"], ["b/", "d/"], 3) == (["a", "c"], ["b/"])
    page = ListPage(keys=["d/", "d/a", "d/c"], prefixes=["d/b/"], next="d/c")
    assert trimmed(page, "d/", 3) == (["d/a", "d/c"], ["d/b/"], "d/c")  # own marker dropped
    assert trimmed(page, "d/", 2) == (["d/a"], ["d/b/"], "d/b/")
    assert trimmed(ListPage(keys=["d/a"]), "d/", 5) == (["d/a"], [], None)


def test_the_client_follows_the_cursor_across_small_pages(local_sidecar):
    """``list_names`` and ``list_details`` walk every page: each entry once, in order."""
    from vfs_state.client import SidecarClient

    client = SidecarClient(local_sidecar.socket_path)
    base = f"paged-{uuid.uuid4().hex[:8]}/"
    for i in range(25):
        client.write(f"{base}f{i:02d}", b"x", 1, conditions={})
    client.make_marker(f"{base}sub/")
    pages = list(client.list_names(base, page_size=7))
    assert len(pages) == 4
    assert [f for page in pages for f in page[0]] == [f"f{i:02d}" for i in range(25)]
    assert [d for page in pages for d in page[1]] == ["sub"]
    keys = [k for page in client.list_details(base, "/", page_size=7) for k in page[0]]
    assert keys == [f"{base}f{i:02d}" for i in range(25)]
