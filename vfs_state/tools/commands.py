"""``ls``, ``cat``, ``rm``, ``stat``, ``xattr`` and ``health``."""
from __future__ import annotations

import argparse
import errno
import os
import sys
from datetime import UTC, datetime
from typing import Any

from vfs_state._pyfs import Info
from vfs_state.protocol import ATTR_PREFIXES
from vfs_state.tools.locations import Location, Resolver, UsageError
from vfs_state.tools.session import Session, named

CHUNK = 1 << 20


def entry(location: Location, name: str, info: Info | None) -> dict[str, Any]:
    """One listed path as the JSON/long-format fields."""
    record: dict[str, Any] = {"name": name, "path": location.label}
    if info is None:
        return record
    details = info.raw.get("details", {})
    extra = info.raw.get("vfs", {})
    record["type"] = "directory" if info.is_dir else "file"
    if not info.is_dir and info.has_namespace("details"):
        record["size"] = details.get("size")
        record["modified"] = details.get("modified")
        record["version"] = extra.get("version")
        record["content_type"] = extra.get("content_type")
    return record


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _long_line(record: dict[str, Any]) -> str:
    if record.get("type") == "directory":
        return f"{'-':>12}  {'-':20}  {'-':<24}  {record['name']}/"
    version = record.get("version") or "-"
    return (f"{record.get('size', 0):>12}  {_when(record.get('modified')):20}  "
            f"{version:<24}  {record['name']}")


def _listing(session: Session, location: Location, recursive: bool,
             long: bool) -> list[dict[str, Any]]:
    filesystem = session.fs(location)
    namespaces = ["details"] if long else None
    with named(location):
        root = "/" + location.key
        info = filesystem.getinfo(root, namespaces)
        if not info.is_dir:
            return [entry(location, os.path.basename(location.key), info)]
        records = []
        pending = [""]
        while pending:
            relative = pending.pop(0)
            for child in filesystem.scandir(root.rstrip("/") + "/" + relative, namespaces):
                name = f"{relative}{child.name}"
                records.append(entry(location.child(name), name, child))
                if recursive and child.is_dir:
                    pending.append(name + "/")
    records.sort(key=lambda r: r["name"])
    return records


def ls(args: argparse.Namespace) -> int:
    with Session(args) as session:
        if not args.paths and not args.socket:
            return _list_mounts(session)
        paths = args.paths or [":"]
        results = {}
        for text in paths:
            results[text] = _listing(session, session.resolve(text, True), args.recursive,
                                     args.long)
        if args.json:
            session.emit(results[paths[0]] if len(paths) == 1 else results)
            return 0
        for number, text in enumerate(paths):
            if len(paths) > 1:
                print(("\n" if number else "") + f"{text}:")
            for record in results[text]:
                if args.long:
                    print(_long_line(record))
                else:
                    print(record["name"] + ("/" if record.get("type") == "directory" else ""))
    return 0


def _list_mounts(session: Session) -> int:
    mounts = [{"name": m.name, "path": m.path, "write": m.write_mode, "socket": m.socket,
               "open": m.open_mode} for m in session.resolver.mounts]
    if session.args.json:
        session.emit(mounts)
    elif not mounts:
        raise UsageError("no mounts: set VFS_STATE_MOUNTS, or give --socket PATH")
    for mount in mounts if not session.args.json else []:
        print(f"{mount['name']}\t{mount['path']}\t{mount['write']}\t{mount['socket']}")
    return 0


def cat(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with Session(args) as session:
        for text in args.paths:
            location = session.resolve(text, True)
            with named(location), session.fs(location).openbin(location.key) as source:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
    out.flush()
    return 0


def rm(args: argparse.Namespace) -> int:
    removed = []
    with Session(args) as session:
        for text in args.paths:
            location = session.resolve(text, True)
            filesystem = session.fs(location)
            with named(location):
                if filesystem.isdir(location.key or "/"):
                    if not args.recursive:
                        raise IsADirectoryError(errno.EISDIR, "is a directory (use rm -r)",
                                                location.label)
                    if not location.key:
                        raise UsageError(f"{text!r}: refusing to remove a mount's root")
                    filesystem.removetree(location.key)
                else:
                    filesystem.remove(location.key)
            removed.append(location.label)
        if args.json:
            session.emit({"removed": removed})
    return 0


def stat(args: argparse.Namespace) -> int:
    records = []
    with Session(args) as session:
        for text in args.paths:
            location = session.resolve(text, True)
            with named(location):
                info = session.fs(location).getinfo("/" + location.key, ["details"])
            records.append(entry(location, os.path.basename(location.key) or "/", info))
        if args.json:
            session.emit(records[0] if len(records) == 1 else records)
            return 0
    for record in records:
        fields = [("path", record["path"]), ("type", record["type"])]
        if record["type"] == "file":
            fields += [("size", record["size"]), ("modified", _when(record["modified"])),
                       ("version", record["version"] or "-"),
                       ("content-type", record["content_type"] or "-")]
        print("\n".join(f"{name + ':':<14}{value}" for name, value in fields))
    return 0


def xattr(args: argparse.Namespace) -> int:
    needed = {"list": (False, False), "get": (True, False), "set": (True, True)}[args.action]
    if needed != (args.name is not None, args.value is not None):
        usage = {"list": "xattr list PATH", "get": "xattr get PATH NAME",
                 "set": "xattr set PATH NAME VALUE"}[args.action]
        raise UsageError(f"expected: {usage}")
    with Session(args) as session:
        location = session.resolve(args.path, True)
        filesystem = session.fs(location)
        path = "/" + location.key
        with named(location):
            if not location.key:
                raise UsageError("attributes belong to files: name one")
            if args.action == "set":
                filesystem.setinfo(path, {"vfs": {"attributes": {_attr(args.name): args.value}}})
                return 0
            attrs = dict(filesystem.getinfo(path, ["vfs"]).get("vfs", "attributes") or {})
            if args.action == "list":
                if args.json:
                    session.emit({"attrs": attrs})
                for name in sorted(attrs) if not args.json else []:
                    print(f"user.vfs.{name}={attrs[name]}")
            elif _attr(args.name) not in attrs:
                raise OSError(errno.ENODATA, f"no attribute {args.name!r}", location.label)
            else:
                value = attrs[_attr(args.name)]
                session.emit({"name": args.name, "value": value}) if args.json else print(value)
    return 0


def _attr(name: str) -> str:
    """``user.vfs.ttl`` (or the asya spelling) -> ``ttl``; a bare name as it is."""
    for prefix in ATTR_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def health(args: argparse.Namespace) -> int:
    """Exit 0 only when every named sidecar answers ``/readyz`` (``--live``: ``/healthz``)."""
    from vfs_state.tools.probe import probe
    resolver = Resolver.from_env(args.socket)
    names = [n.rstrip(":") for n in args.mounts]
    if names:
        mounts = [resolver.mount(n) for n in names]
    elif args.socket:
        mounts = [resolver.socket_mount()]
    else:
        mounts = resolver.mounts
    if not mounts:
        raise UsageError("no mounts to check: set VFS_STATE_MOUNTS, or give --socket PATH")
    route = "/healthz" if args.live else "/readyz"
    timeout = args.timeout if args.timeout is not None else 5.0
    results = [probe(m.name, m.socket, route, timeout) for m in mounts]
    if args.json:
        print(__import__("json").dumps(results))
    else:
        for result in results:
            state = "ok" if result["ok"] else f"FAILED: {result['error']}"
            stream = sys.stdout if result["ok"] else sys.stderr
            print(f"{'vfs-state: health: ' if not result['ok'] else ''}{result['mount']} "
                  f"({result['socket']}) {route}: {state}", file=stream)
    return 0 if all(r["ok"] for r in results) else 1
