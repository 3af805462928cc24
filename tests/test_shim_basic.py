"""The shim's mechanics: patching and restoring, routing, and a handler unchanged.

Installs against a real ``local-buffered-cas`` sidecar (``local_sidecar``).
"""
from __future__ import annotations

import builtins
import io
import os
import pathlib
import shutil
import sys
import types
import uuid

import pytest

import vfs_state
from tests import alias_fixture  # noqa: F401  (binds its aliases before any install)
from tests.shim_fixtures import mounted_dir
from vfs_state import shim
from vfs_state.mounts import Mount
from vfs_state.shim.router import MountTable


@pytest.fixture
def mounted(local_sidecar):
    """The shim installed with one mount on the session's local sidecar."""
    with mounted_dir(local_sidecar) as mount:
        yield mount

SPEC = "meta:/vfs-basic-mount:socket=/nonexistent/meta.sock"


def _snapshot() -> dict[tuple[str, str], object]:
    """Every callable attribute of every loaded module, plus ``pathlib.Path``'s own.

    Only callables: plain data (counters, timers) changes on its own.
    """
    seen: dict[tuple[str, str], object] = {}
    for name, module in list(sys.modules.items()):
        if isinstance(module, types.ModuleType):
            for attr, value in list(vars(module).items()):
                if callable(value):
                    seen[(name, attr)] = value
    for attr, value in vars(pathlib.Path).items():
        seen[("pathlib.Path", attr)] = value
    return seen


@pytest.fixture(autouse=True)
def _never_left_installed():
    yield
    shim.uninstall()


def test_uninstall_restores_every_original_by_identity():
    before = _snapshot()
    shim.install(SPEC)
    patched = shim.patched()
    assert patched, "nothing was patched"
    for original in patched:
        assert getattr(original.owner, original.attribute) is not original.value
    shim.uninstall()
    for original in patched:
        assert getattr(original.owner, original.attribute) is original.value, original
    after = _snapshot()
    changed = [key for key, value in before.items() if key in after and after[key] is not value]
    assert changed == []


def test_patched_names_cover_the_surfaces():
    shim.install(SPEC)
    names = {(getattr(o.owner, "__name__", o.owner), o.attribute) for o in shim.patched()}
    for expected in [("builtins", "open"), ("io", "open"), ("os", "stat"), ("os", "lstat"),
                     ("os", "listdir"), ("os", "scandir"), ("os", "remove"), ("os", "unlink"),
                     ("os", "mkdir"), ("os", "rmdir"), ("os", "rename"), ("os", "replace"),
                     ("os", "getxattr"), ("os", "open"), ("Path", "touch"),
                     ("shutil", "rmtree")]:
        assert expected in names


def test_install_twice_is_safe_and_replaces_the_table():
    first = shim.install(SPEC)
    patched = [(o.owner, o.attribute, o.value) for o in shim.patched()]
    replacement = os.stat
    assert shim.install(SPEC) == first
    assert os.stat is replacement
    assert [(o.owner, o.attribute, o.value) for o in shim.patched()] == patched
    shim.install("other:/vfs-basic-other:socket=/nonexistent/other.sock")
    assert shim.resolve("/vfs-basic-mount/a") is None
    assert shim.resolve("/vfs-basic-other/a").key == "a"
    shim.uninstall()
    for owner, attribute, value in patched:
        assert getattr(owner, attribute) is value


def test_uninstall_when_not_installed_is_a_noop():
    real_open = builtins.open
    shim.uninstall()
    shim.uninstall()
    assert builtins.open is real_open and not shim.is_installed()


def test_installed_nests_and_restores_the_outer_table():
    real_stat = os.stat
    with vfs_state.installed(SPEC):
        with vfs_state.installed("inner:/vfs-basic-inner:socket=/x.sock"):
            assert shim.resolve("/vfs-basic-inner/k") is not None
            assert shim.resolve("/vfs-basic-mount/k") is None
        assert shim.resolve("/vfs-basic-mount/k") is not None
        assert os.stat is not real_stat
    assert os.stat is real_stat and not shim.is_installed()


def test_mounts_as_string_list_or_environment(monkeypatch):
    mount = Mount("m", "/vfs-basic-list", socket="/x.sock")
    assert shim.install([mount]) == [mount]
    monkeypatch.delenv("VFS_STATE_MOUNTS", raising=False)
    monkeypatch.setenv("ASYA_STATE_PROXY_MOUNTS", "legacy:/vfs-basic-legacy:socket=/y.sock")
    assert [m.name for m in shim.install()] == ["legacy"]
    monkeypatch.setenv("VFS_STATE_MOUNTS", "new:/vfs-basic-new")
    assert [m.name for m in shim.install(None)] == ["new"]
    with pytest.raises(ValueError, match="broken"):
        shim.install("broken")
    with pytest.raises(TypeError):
        shim.install([("not", "a mount")])  # type: ignore[list-item]


def test_mount_is_a_frozen_value():
    # a plain class since the start-up work (no dataclass): same semantics as before
    import copy
    import pickle

    mount = Mount("m", "/vfs-basic-value/", socket="/x.sock")
    same = Mount("m", "/vfs-basic-value", "buffered", "/x.sock")
    assert mount == same and hash(mount) == hash(same) and mount != Mount("n", "/vfs-basic-value")
    assert repr(mount) == ("Mount(name='m', path='/vfs-basic-value', write_mode='buffered', "
                           "socket='/x.sock')")
    assert mount.label == "mount 'm' at /vfs-basic-value"
    assert pickle.loads(pickle.dumps(mount)) == mount == copy.copy(mount)
    with pytest.raises(AttributeError):
        mount.path = "/elsewhere"  # type: ignore[misc]


def test_open_option_is_parsed_checked_and_carried_to_the_mount_fs():
    from vfs_state.mounts import format_mounts, parse_mounts

    lazy, plain = parse_mounts("l:/vfs-basic-lazy:socket=/x.sock,open=lazy;"
                               "p:/vfs-basic-plain:socket=/y.sock")
    assert (lazy.open_mode, plain.open_mode) == ("lazy", "checked")
    assert parse_mounts(format_mounts([lazy, plain])) == [lazy, plain]
    assert "open" not in format_mounts([plain])  # the default string is unchanged
    assert lazy != Mount("l", "/vfs-basic-lazy", socket="/x.sock")
    with pytest.raises(ValueError, match="open must be one of"):
        parse_mounts("m:/vfs-basic-x:open=eager")
    shim.install([lazy, plain])
    assert shim.resolve("/vfs-basic-lazy/k").fs.lazy_open is True
    assert shim.resolve("/vfs-basic-plain/k").fs.lazy_open is False


def test_aliases_bound_before_install_are_rebound_and_restored():
    module = types.ModuleType("vfs_alias_probe")
    module.__file__ = "<probe>"
    module.stat = os.stat
    module.opener = builtins.open
    sys.modules[module.__name__] = module
    try:
        shim.install(SPEC)
        assert module.stat is os.stat and module.opener is builtins.open
        late = types.ModuleType("vfs_alias_late")  # imported while installed
        late.__file__ = "<late>"
        late.rmtree = shutil.rmtree
        sys.modules[late.__name__] = late
        shim.uninstall()
        assert module.stat is os.stat and module.opener is builtins.open
        assert late.rmtree is shutil.rmtree
        assert os.stat.__module__ != "vfs_state.shim.router"
    finally:
        sys.modules.pop("vfs_alias_probe", None)
        sys.modules.pop("vfs_alias_late", None)


# -- routing -------------------------------------------------------------------------------

@pytest.fixture
def table():
    table = MountTable()
    table.load([Mount("meta", "/state/meta", socket="/x.sock"),
                Mount("w", "/data/weights", socket="/y.sock")])
    return table


@pytest.mark.parametrize("arg, key", [
    ("/state/meta", ""), ("/state/meta/", ""), ("/state/meta/a.json", "a.json"),
    ("/state/meta/d/e f#?%é", "d/e f#?%é"), (b"/state/meta/b", "b"),
    (pathlib.PurePosixPath("/state/meta/p"), "p"), ("//state//meta/./x/../y", "y"),
    ("/tmp/../state/meta/z", "z"), ("/data/weights/w.bin", "w.bin"),
])
def test_resolve_mount_paths(table, arg, key):
    target = table.resolve(arg)
    assert target is not None and target.key == key
    assert target.filename == os.fspath(arg)
    assert target.is_bytes == isinstance(arg, bytes)


@pytest.mark.parametrize("arg", [
    "/state/metadata/x", "/state", "/state/met", "/tmp/state/meta/x", "relative/x", 3, None,
    1.5, b"/data/weightsx", "/state/meta/../other", object(), "",
])
def test_resolve_other_arguments(table, arg):
    assert table.resolve(arg) is None


def test_resolve_trailing_slash_and_relative(table, monkeypatch):
    assert table.resolve("/state/meta/d/").dir_only
    assert table.resolve("/state/meta/d/.").dir_only
    assert not table.resolve("/state/meta/d").dir_only
    monkeypatch.chdir("/")
    assert table.resolve("state/meta/rel").key == "rel"
    assert table.resolve("tmp") is None
    with pytest.raises(ValueError, match="null"):
        table.resolve("/state/meta/a\0b")


# -- non-mount paths are untouched ------------------------------------------------------------

def test_local_paths_behave_exactly_as_before(tmp_path):
    real = {}
    path = tmp_path / "f.txt"

    def exercise() -> dict:
        path.write_text("line one\nline two\n", encoding="utf-8")
        with open(path) as handle:
            text, handle_type, mode = handle.read(), type(handle), handle.mode
        with open(str(path), "rb", buffering=0) as raw:
            fileno_ok = raw.fileno() >= 0
        st = os.stat(path)
        result = {
            "text": text, "type": handle_type, "mode": mode, "fileno": fileno_ok,
            "stat": (st.st_mode, st.st_size, st.st_nlink), "listdir": sorted(os.listdir(tmp_path)),
            "scandir": sorted(e.name for e in os.scandir(tmp_path)),
            "exists": os.path.exists(path), "isdir": os.path.isdir(tmp_path),
        }
        for call in (lambda: os.stat(tmp_path / "missing"), lambda: open(tmp_path / "missing")):
            with pytest.raises(FileNotFoundError) as info:
                call()
            result.setdefault("errors", []).append((info.value.errno, info.value.filename))
        os.remove(path)
        return result

    real = exercise()
    shim.install(SPEC)
    assert exercise() == real


def test_relative_local_path_with_shim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shim.install(SPEC)
    with open("rel.txt", "w") as handle:
        handle.write("x")
    assert (tmp_path / "rel.txt").read_text() == "x"
    assert os.path.getsize("rel.txt") == 1


# -- a handler written for the asya state proxy -------------------------------------------------

def handler(state: str, message: dict) -> dict:
    """Plain file operations only, as handlers for the asya state proxy are written."""
    os.makedirs(f"{state}/sessions/{message['user']}", exist_ok=True)
    path = f"{state}/sessions/{message['user']}/count.txt"
    count = 0
    if os.path.exists(path):
        with open(path) as handle:
            count = int(handle.read())
    with open(path, "w") as handle:
        handle.write(str(count + 1))
    size = os.stat(path).st_size
    names = sorted(os.listdir(f"{state}/sessions"))
    if message.get("reset"):
        os.remove(path)
    return {"count": count + 1, "size": size, "users": names}


def test_handler_runs_unchanged_on_a_mount(mounted, local_sidecar):
    state = mounted.base
    assert handler(state, {"user": "ann"}) == {"count": 1, "size": 1, "users": ["ann"]}
    assert handler(state, {"user": "ann"}) == {"count": 2, "size": 1, "users": ["ann"]}
    assert handler(state, {"user": "bob", "reset": True})["users"] == ["ann", "bob"]
    assert not os.path.exists(f"{state}/sessions/bob/count.txt")
    stored = os.path.join(local_sidecar.root, os.path.basename(state), "sessions", "ann",
                          "count.txt")
    shim.uninstall()
    with open(stored) as handle:  # the sidecar's directory, read with the real open
        assert handle.read() == "2"
    assert not os.path.lexists(mounted.mount_path)


def test_file_objects_are_real_io_objects(mounted):
    path = f"{mounted.base}/obj.bin"
    cases = [("wb", io.BufferedWriter, "wb"), ("rb", io.BufferedReader, "rb"),
             ("r+b", io.BufferedRandom, "rb+"), ("ab", io.BufferedWriter, "ab"),
             ("a+b", io.BufferedRandom, "ab+"), ("w+b", io.BufferedRandom, "rb+")]
    for mode, cls, reported in cases:
        with open(path, mode) as handle:
            assert type(handle) is cls and handle.mode == reported and handle.name == path
            assert os.fstat(handle.fileno()).st_mode == 0o100644  # a local copy, shown as the key
    with open(pathlib.Path(path), "w", encoding="utf-8", buffering=1) as text:
        assert type(text) is io.TextIOWrapper and text.mode == "w" and text.line_buffering
        assert text.name == path and text.buffer.mode == "wb"
    with open(path) as text:
        assert text.encoding == io.TextIOWrapper(io.BytesIO()).encoding
        assert text.newlines is None and text.errors == "strict"
    with open(os.fsencode(path), "rb", buffering=0) as raw:
        assert isinstance(raw, io.RawIOBase) and raw.name == os.fsencode(path)


def test_errors_are_oserrors_with_errno_and_filename(mounted):
    base = mounted.base
    os.mkdir(f"{base}/d")
    with open(f"{base}/d/f", "w") as handle:
        handle.write("x")
    cases = [
        (lambda: open(f"{base}/missing"), FileNotFoundError, f"{base}/missing"),
        (lambda: os.stat(f"{base}/missing"), FileNotFoundError, f"{base}/missing"),
        (lambda: open(f"{base}/d"), IsADirectoryError, f"{base}/d"),
        (lambda: os.listdir(f"{base}/d/f"), NotADirectoryError, f"{base}/d/f"),
        (lambda: os.mkdir(f"{base}/d"), FileExistsError, f"{base}/d"),
        (lambda: os.rmdir(f"{base}/d"), OSError, f"{base}/d"),
        (lambda: os.remove(f"{base}/d"), IsADirectoryError, f"{base}/d"),
        (lambda: os.mkdir(f"{base}/nope/sub"), FileNotFoundError, f"{base}/nope/sub"),
    ]
    for call, cls, filename in cases:
        with pytest.raises(cls) as info:
            call()
        assert isinstance(info.value, OSError) and info.value.errno
        assert info.value.filename == filename


def test_refusals_name_the_mount_and_never_touch_local_disk(mounted):
    path = f"{mounted.base}/r.txt"
    with open(path, "w") as handle:
        handle.write("x")
    for call in (lambda: os.open(mounted.base, os.O_RDONLY), lambda: os.chmod(path, 0o600),
                 lambda: os.utime(path), lambda: os.chdir(mounted.base),
                 lambda: os.symlink("/etc/hostname", f"{mounted.base}/link"),
                 lambda: os.link(path, f"{mounted.base}/hard")):
        with pytest.raises(OSError, match="mount 'meta'"):
            call()
    assert not os.path.lexists(mounted.mount_path + "-never")
    shim.uninstall()
    assert not os.path.lexists(mounted.mount_path)


def test_write_creates_parents_implicitly(mounted):
    path = f"{mounted.base}/{uuid.uuid4().hex}/deep/er/f.txt"
    with open(path, "w") as handle:
        handle.write("data")
    assert os.path.isdir(os.path.dirname(path))
    with open(path) as handle:
        assert handle.read() == "data"


# -- names bound before install ----------------------------------------------------------------

def test_alias_fixture_every_alias_reached_and_restored(mounted):
    from tests import alias_fixture as fixture  # imported at collection, before install

    path = f"{mounted.base}/alias.txt"
    with fixture.builtin_open(path, "w") as handle:
        handle.write("via alias")
    for name in ("io_open", "open_alias", "io_open_alias"):
        with getattr(fixture, name)(path) as handle:
            assert handle.read() == "via alias"
    for name in ("stat", "stat_alias", "lstat"):
        assert getattr(fixture, name)(path).st_size == 9
    assert fixture.listdir(mounted.base) == ["alias.txt"]
    assert [e.name for e in fixture.scandir(mounted.base)] == ["alias.txt"]
    assert fixture.exists(path) and fixture.isfile(path) and fixture.getsize(path) == 9
    fixture.mkdir(f"{mounted.base}/d")
    fixture.rename(path, f"{mounted.base}/d/a2.txt")
    fixture.copy2(f"{mounted.base}/d/a2.txt", f"{mounted.base}/d/a3.txt")
    assert sorted(fixture.listdir(f"{mounted.base}/d")) == ["a2.txt", "a3.txt"]
    fixture.touch(fixture.Path(mounted.base) / "t")
    with pytest.raises(OSError, match="mount 'meta'"):
        fixture.os_open(mounted.base, os.O_RDONLY)  # a directory has no descriptor
    fixture.rmtree_alias(f"{mounted.base}/d")
    assert not fixture.isdir(f"{mounted.base}/d")
    # not reached: these still call the real os.stat, which meets the mount guard file
    for function in fixture.NOT_REACHED.values():
        with pytest.raises(NotADirectoryError):
            function(f"{mounted.base}/t")
    shim.uninstall()
    for name, original in fixture.REACHED.items():
        assert getattr(fixture, name) is original, name


def test_patched_functions_pickle_by_reference():
    """``multiprocessing`` pickles functions by name (``pool.map(os.remove, paths)``)."""
    import pickle

    shim.install(SPEC)
    for function in (os.remove, os.stat, builtins.open, shutil.rmtree, os.path.exists,
                     pathlib.Path.touch):
        assert pickle.loads(pickle.dumps(function)) is function


def test_mount_objects_are_validated_like_the_string_form():
    with pytest.raises(ValueError, match="nested"):
        shim.install([Mount("a", "/vfs-x", socket="/nonexistent/a.sock"),
                      Mount("b", "/vfs-x/y", socket="/nonexistent/b.sock")])
    assert not shim.is_installed()
