"""Differential scenarios: ``open`` in every mode, text layers, reading and seeking."""
from __future__ import annotations

import errno
import io
import os

from tests.differential import differs, ok, raises, scenario
from tests.shim_fixtures import read_bytes as _read
from tests.shim_fixtures import write_bytes as _write

UNICODE = "héllo wörld ✓ 日本語 😀\nzweite Zeile ß\n"


@scenario
def write_then_read_text(base):
    with open(f"{base}/t.txt", "w") as handle:
        written = handle.write("hello\nworld\n")
    with open(f"{base}/t.txt") as handle:
        return written, handle.read(), handle.closed


@scenario
def write_then_read_bytes(base):
    _write(f"{base}/b.bin", bytes(range(256)))
    return _read(f"{base}/b.bin") == bytes(range(256))


@scenario
def multibyte_utf8_read_one_char_at_a_time(base):
    with open(f"{base}/u.txt", "w", encoding="utf-8") as handle:
        handle.write(UNICODE)
    chars = []
    with open(f"{base}/u.txt", encoding="utf-8") as handle:
        while char := handle.read(1):
            chars.append(char)
    return "".join(chars) == UNICODE, len(chars)


@scenario
def multibyte_utf8_small_binary_pieces(base):
    _write(f"{base}/u.txt", UNICODE.encode("utf-8"))
    pieces = []
    with open(f"{base}/u.txt", "rb") as handle:
        while piece := handle.read(3):
            pieces.append(piece)
    return b"".join(pieces).decode("utf-8") == UNICODE, len(pieces)


@scenario
def multibyte_utf8_readline_and_tell(base):
    _write(f"{base}/u.txt", UNICODE.encode("utf-8"))
    with open(f"{base}/u.txt", encoding="utf-8") as handle:
        first = handle.readline()
        position = handle.tell()
        rest = handle.read()
        handle.seek(position)
        return first, rest, handle.read(5)


@scenario
def newline_translation_on_read(base):
    _write(f"{base}/n.txt", b"a\r\nb\rc\nd")
    with open(f"{base}/n.txt") as handle:
        text = handle.read()
        return text, sorted(handle.newlines)


@scenario
def newline_empty_keeps_endings(base):
    _write(f"{base}/n.txt", b"a\r\nb\rc\nd")
    with open(f"{base}/n.txt", newline="") as handle:
        return handle.readlines()


@scenario
def newline_crlf_on_write(base):
    with open(f"{base}/n.txt", "w", newline="\r\n") as handle:
        handle.write("a\nb\n")
    with open(f"{base}/n2.txt", "w", newline="\r") as handle:
        handle.write("c\nd")
    return _read(f"{base}/n.txt"), _read(f"{base}/n2.txt")


@scenario
def newline_default_write_is_os_linesep(base):
    with open(f"{base}/n.txt", "w") as handle:
        handle.write("x\ny\n")
    return _read(f"{base}/n.txt") == ("x\ny\n".replace("\n", os.linesep)).encode()


@scenario
def readline_iteration_and_readlines(base):
    _write(f"{base}/l.txt", b"one\ntwo\nthree")
    with open(f"{base}/l.txt") as handle:
        looped = [line for line in handle]
    with open(f"{base}/l.txt") as handle:
        sized = handle.readline(2), handle.readline(), handle.readlines()
    with open(f"{base}/l.txt", "rb") as handle:
        binary = list(handle)
    return looped, sized, binary


@scenario
def readinto_bytearray(base):
    _write(f"{base}/r.bin", b"0123456789")
    buffer = bytearray(4)
    with open(f"{base}/r.bin", "rb") as handle:
        counts = [handle.readinto(buffer), bytes(buffer), handle.readinto(buffer)]
        handle.seek(8)
        counts += [handle.readinto(buffer), bytes(buffer), handle.readinto(buffer)]
    return counts


@scenario
def seek_and_tell_binary(base):
    _write(f"{base}/s.bin", b"abcdefghij")
    with open(f"{base}/s.bin", "rb") as handle:
        out = [handle.seek(2), handle.read(3), handle.tell(), handle.seek(-2, io.SEEK_END),
               handle.read(), handle.seek(-4, io.SEEK_CUR), handle.read(1), handle.seek(20),
               handle.read(), handle.tell()]
    return out


@scenario
def negative_seek_is_an_error(base):
    _write(f"{base}/s.bin", b"abc")
    with open(f"{base}/s.bin", "rb") as handle:
        handle.seek(-1)


@scenario
def append_mode_appends(base):
    path = f"{base}/a.txt"
    for part in ("a", "b", "c"):
        with open(path, "a") as handle:
            handle.write(part)
    with open(path) as handle:
        return handle.read()


@scenario
def append_tell_starts_at_end_and_seek_ignored(base):
    _write(f"{base}/a.bin", b"12345")
    with open(f"{base}/a.bin", "ab") as handle:
        start = handle.tell()
        handle.seek(0)
        handle.write(b"6")
        end = handle.tell()
    return start, end, _read(f"{base}/a.bin")


@scenario
def append_plus_reads_back(base):
    _write(f"{base}/a.bin", b"head-")
    with open(f"{base}/a.bin", "a+b") as handle:
        handle.write(b"tail")
        handle.seek(0)
        return handle.read()


@scenario
def r_plus_overwrites_in_place(base):
    _write(f"{base}/r.bin", b"abcdefgh")
    with open(f"{base}/r.bin", "r+b") as handle:
        handle.seek(2)
        handle.write(b"XY")
        handle.seek(0)
        first = handle.read(3)
    return first, _read(f"{base}/r.bin")


@scenario
def r_plus_text_mode(base):
    _write(f"{base}/r.txt", b"line1\nline2\n")
    with open(f"{base}/r.txt", "r+") as handle:
        first = handle.readline()
        handle.seek(0, io.SEEK_END)
        handle.write("line3\n")
    return first, _read(f"{base}/r.txt")


@scenario
def r_plus_missing_file(base):
    open(f"{base}/missing", "r+")


@scenario
def w_plus_truncates_and_reads_back(base):
    _write(f"{base}/w.bin", b"old content")
    with open(f"{base}/w.bin", "w+b") as handle:
        before = handle.read()
        handle.write(b"new")
        handle.seek(0)
        return before, handle.read()


@scenario
def exclusive_create(base):
    with open(f"{base}/x.txt", "x") as handle:
        handle.write("first")
    with open(f"{base}/x.txt") as handle:
        return handle.read()


@scenario
def exclusive_create_existing_file(base):
    _write(f"{base}/x.txt", b"")
    open(f"{base}/x.txt", "x")


@scenario
def exclusive_create_over_directory(base):
    os.mkdir(f"{base}/d")
    open(f"{base}/d", "xb")


@scenario
def open_missing_for_reading(base):
    open(f"{base}/nope.txt")


@scenario
def open_directory_for_reading(base):
    os.mkdir(f"{base}/d")
    open(f"{base}/d", "rb")


@scenario
def open_file_with_trailing_slash(base):
    _write(f"{base}/f", b"x")
    open(f"{base}/f/")


@scenario
def open_for_writing_with_trailing_slash(base):
    open(f"{base}/new/", "w")


@scenario
def truncate_shrinks_and_pads(base):
    _write(f"{base}/t.bin", b"abcdef")
    with open(f"{base}/t.bin", "r+b") as handle:
        shrunk = handle.truncate(3)
    first = _read(f"{base}/t.bin")
    with open(f"{base}/t.bin", "r+b") as handle:
        grown = handle.truncate(6)
    return shrunk, first, grown, _read(f"{base}/t.bin")


@scenario
def os_truncate(base):
    _write(f"{base}/t.bin", b"abcdef")
    os.truncate(f"{base}/t.bin", 2)
    return _read(f"{base}/t.bin")


@scenario
def unbuffered_binary(base):
    with open(f"{base}/u.bin", "wb", buffering=0) as handle:
        raw = isinstance(handle, io.RawIOBase)
        handle.write(b"raw bytes")
    with open(f"{base}/u.bin", "rb", buffering=0) as handle:
        return raw, isinstance(handle, io.RawIOBase), handle.read(3), handle.readall()


@scenario
def unbuffered_text_is_refused(base):
    open(f"{base}/u.txt", "w", buffering=0)


@scenario
def line_buffering_in_text_mode(base):
    with open(f"{base}/l.txt", "w", buffering=1) as handle:
        handle.write("line\n")
        flags = handle.line_buffering, handle.write_through
    return flags


@scenario
def small_buffer_size(base):
    with open(f"{base}/b.bin", "wb", buffering=16) as handle:
        for _ in range(10):
            handle.write(b"0123456789")
    with open(f"{base}/b.bin", "rb", buffering=7) as handle:
        return len(handle.read()), handle.read()


@scenario
def binary_mode_refuses_encoding(base):
    open(f"{base}/b.bin", "wb", encoding="utf-8")


@scenario
def invalid_mode_string(base):
    open(f"{base}/b.bin", "rw")


@scenario
def text_and_binary_together(base):
    open(f"{base}/b.bin", "rbt")


@scenario
def illegal_newline_value(base):
    open(f"{base}/b.txt", "w", newline="x")


@scenario
def decode_errors_replace_and_strict(base):
    _write(f"{base}/bad.txt", b"ok \xff\xfe end")
    with open(f"{base}/bad.txt", encoding="utf-8", errors="replace") as handle:
        replaced = handle.read()
    with open(f"{base}/bad.txt", encoding="utf-8") as handle:
        try:
            handle.read()
        except UnicodeDecodeError as exc:
            return replaced, exc.reason


@scenario
def encode_errors_on_write(base):
    with open(f"{base}/e.txt", "w", encoding="ascii", errors="xmlcharrefreplace") as handle:
        handle.write("café ✓")
    return _read(f"{base}/e.txt")


@scenario
def latin1_and_utf16_and_utf8_sig(base):
    results = []
    for encoding in ("latin-1", "utf-16", "utf-8-sig"):
        with open(f"{base}/{encoding}.txt", "w", encoding=encoding) as handle:
            handle.write("Grüße\n")
        with open(f"{base}/{encoding}.txt", encoding=encoding) as handle:
            results.append((handle.read(), _read(f"{base}/{encoding}.txt")))
    return results


@scenario
def unknown_encoding(base):
    open(f"{base}/e.txt", "w", encoding="no-such-codec")


@scenario
def large_file_ranged_reads(base):
    data = bytes((i * 7919) % 251 for i in range(300_000))
    _write(f"{base}/big.bin", data)
    with open(f"{base}/big.bin", "rb") as handle:
        handle.seek(200_000)
        middle = handle.read(4096)
        handle.seek(-10, io.SEEK_END)
        tail = handle.read()
        handle.seek(0)
        whole = handle.read()
    return middle == data[200_000:204_096], tail == data[-10:], whole == data


@scenario
def empty_file(base):
    open(f"{base}/empty", "w").close()
    with open(f"{base}/empty", "rb") as handle:
        return handle.read(), handle.read(10), os.path.getsize(f"{base}/empty")


@scenario
def handle_attributes_per_mode(base):
    _write(f"{base}/m.bin", b"x")
    seen = []
    for mode in ("r", "rb", "r+", "r+b", "w", "wb", "w+", "a", "ab", "a+", "a+b"):
        with open(f"{base}/m.bin", mode) as handle:
            seen.append((mode, type(handle).__name__, handle.mode, handle.name,
                         handle.readable(), handle.writable(), handle.seekable()))
    return seen


@scenario
def closed_handle_raises_value_error(base):
    handle = open(f"{base}/c.txt", "w")
    handle.close()
    handle.write("late")


@scenario
def write_lines_and_print(base):
    with open(f"{base}/p.txt", "w") as handle:
        handle.writelines(["a\n", "b\n"])
        print("printed", 42, file=handle)
    with open(f"{base}/p.txt") as handle:
        return handle.read()


@differs("buffered writes reach the store on close(), not on flush()",
         real=ok(b"flushed"), mount=raises(FileNotFoundError, errno.ENOENT))
def flush_is_not_visible_before_close(base):
    handle = open(f"{base}/f.bin", "wb")
    try:
        handle.write(b"flushed")
        handle.flush()
        return _read(f"{base}/f.bin")
    finally:
        handle.close()


@differs("writes create missing parent directories (flat-store semantics)",
         real=raises(FileNotFoundError, errno.ENOENT), mount=ok(b"deep"))
def write_creates_missing_parents(base):
    _write(f"{base}/no/such/dir/f.bin", b"deep")
    return _read(f"{base}/no/such/dir/f.bin")


@scenario
def long_names_are_refused_as_the_file_system_does(base):
    long = f"{base}/{'n' * 1100}"  # past a local name's 255 bytes and a key's 1024
    calls = (lambda: _write(long, b"x"), lambda: _read(long), lambda: os.stat(long),
             lambda: os.mkdir(long), lambda: os.makedirs(f"{long}/sub"),
             lambda: os.remove(long), lambda: os.listdir(long), lambda: os.path.exists(long))
    outcomes = []
    for call in calls:
        try:
            outcomes.append(("returned", call()))
        except OSError as exc:  # not ValueError: handlers catch OSError for bad paths
            outcomes.append((type(exc).__name__, exc.errno))
    return outcomes, os.listdir(base)
