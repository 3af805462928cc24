"""The connector helpers written once: per-process clients, bounded body reads, closing."""
from __future__ import annotations

import io
import os

import pytest

from sidecars.app import build_app, close_app
from sidecars.backend import Backend, ListPage, ObjectBody, ObjectInfo
from sidecars.errors import PayloadTooLarge
from sidecars.per_process import PerProcess
from sidecars.streams import read_at_most, read_up_to


class Trickle:
    """A body that returns at most ``step`` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    def read(self, size: int = -1) -> bytes:
        size = self.step if size < 0 else min(size, self.step)
        out, self.data = self.data[:size], self.data[size:]
        return out


def test_read_up_to_fills_the_buffer_across_short_reads() -> None:
    body = Trickle(b"abcdefghij")
    assert read_up_to(body, 8, b"<") == bytearray(b"<abcdefg")
    assert read_up_to(body, 8) == bytearray(b"hij")  # fewer only at the end
    assert read_up_to(body, 8) == bytearray()


def test_read_at_most_refuses_a_body_over_the_limit() -> None:
    assert read_at_most(Trickle(b"12345"), 5) == b"12345"
    with pytest.raises(PayloadTooLarge, match="value exceeds the limit of 4"):
        read_at_most(Trickle(b"12345"), 4, "value")


def test_per_process_builds_once_and_again_in_a_forked_child() -> None:
    made: list[int] = []

    def factory() -> int:
        made.append(os.getpid())
        return len(made)

    holder = PerProcess(factory)
    assert holder.get() == holder.get() == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must not reuse the parent's value, nor close it
        try:
            ok = holder.pop_all() == [] and holder.get() == 2 and holder.pop_all() == [2]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert holder.pop_all() == [1] and holder.get() == 2  # popped: the next get builds anew


def test_per_thread_values_are_all_returned_for_closing() -> None:
    import threading

    holder = PerProcess(object, per_thread=True)
    values = [holder.get()]
    thread = threading.Thread(target=lambda: values.append(holder.get()))
    thread.start()
    thread.join()
    assert values[0] is not values[1]
    assert {id(v) for v in holder.pop_all()} == {id(v) for v in values}


class Closing(Backend):
    closed = 0

    def stat(self, key: str) -> ObjectInfo | None:
        return None

    def read(self, key, start=0, length=None, if_match=None) -> ObjectBody:  # noqa: ANN001
        raise NotImplementedError

    def write(self, key, body, length, if_match=None, if_none_match=False) -> ObjectInfo:  # noqa: ANN001
        return ObjectInfo(len(body.read()), "1")

    def delete(self, key: str, if_match: str | None = None) -> None:
        pass

    def list_page(self, prefix, delimiter, start_after, max_keys) -> ListPage:  # noqa: ANN001
        return ListPage()

    def close(self) -> None:
        self.closed += 1


def test_worker_exit_closes_the_backend() -> None:
    from sidecars import gunicorn_conf

    backend = Closing()
    app = build_app(backend)

    class Worker:
        wsgi = app

    gunicorn_conf.worker_exit(None, Worker())
    assert backend.closed == 1
    close_app(None)  # a worker whose app never loaded: nothing to do
    assert backend.write("k", io.BytesIO(b"ab"), 2).size == 2


def test_state_max_object_size_is_passed_in_not_read_by_the_core(monkeypatch) -> None:
    monkeypatch.setenv("STATE_MAX_OBJECT_SIZE", "1")  # ignored: build_app takes the limit
    client = build_app(Closing(), max_object_size=4).test_client()
    assert client.put("/keys/k", data=b"1234").status_code == 204
    assert client.put("/keys/k", data=b"12345").status_code == 413
