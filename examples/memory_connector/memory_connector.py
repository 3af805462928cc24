"""A connector that keeps objects in the sidecar's memory: the smallest complete one.

It shows what a storage adapter implements (``sidecars.backend.Backend``)
and how it proves itself with the conformance kit (``conftest.py`` and
``test_memory_connector.py`` next to it; docs/sidecars.md). Data lives in
one process, so run it with one gunicorn worker; a real connector keeps it
in a store all workers share.
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import BinaryIO

from flask import Flask

from sidecars import config
from sidecars.app import build_app
from sidecars.backend import Backend, ListPage, ObjectBody, ObjectInfo, page_of
from sidecars.errors import NotFound, PreconditionFailed, RangeNotSatisfiable


class MemoryBackend(Backend):
    """Objects in a dict; versions from a counter, so a rewrite always changes them."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._lock = threading.Lock()  # one thread per client connection
        self._counter = itertools.count(1)

    def stat(self, key: str) -> ObjectInfo | None:
        entry = self._objects.get(key)
        return None if entry is None else entry[1]

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        with self._lock:
            data, info = self._get(key, if_match)
        if start and start >= len(data):
            raise RangeNotSatisfiable(len(data))
        end = len(data) if length is None else min(len(data), start + length)
        return ObjectBody(info, start, end - start, [data[start:end]])

    def write(self, key: str, body: BinaryIO, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        data = body.read() if length is None else body.read(length)
        with self._lock:
            if if_none_match and key in self._objects:
                raise PreconditionFailed(f"{key} exists")
            if if_match is not None:
                self._get(key, if_match)
            info = ObjectInfo(len(data), str(next(self._counter)), time.time())
            self._objects[key] = (data, info)
            return info

    def delete(self, key: str, if_match: str | None = None) -> None:
        with self._lock:
            self._get(key, if_match)
            del self._objects[key]

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
                  max_keys: int) -> ListPage:
        items: dict[str, bool] = {}
        with self._lock:
            keys = [k for k in self._objects if k.startswith(prefix)]
        for key in keys:
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                items[key[:cut + 1]] = True
            else:
                items.setdefault(key, False)
        return page_of(sorted(items.items()), start_after, max_keys)

    def _get(self, key: str, if_match: str | None) -> tuple[bytes, ObjectInfo]:
        """The entry at ``key`` (lock held); checks ``if_match`` against its version."""
        entry = self._objects.get(key)
        if entry is None:
            if if_match is not None:
                raise PreconditionFailed(f"{key} is absent")
            raise NotFound(f"no such key: {key}")
        if if_match is not None and entry[1].version != if_match:
            raise PreconditionFailed(f"{key} has another version")
        return entry


def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'memory_connector:create_app()' --workers 1``."""
    return build_app(MemoryBackend(), consistency=config.consistency(consistency),
                     prefix=config.optional("STATE_PREFIX", ""), name="memory-connector")
