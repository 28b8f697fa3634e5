"""Criteo's JSON envelope, read with bounds: depth counted outside strings, deep or
broken bodies read as nothing, trace ids found in an ordinary envelope, deprecation
warnings seen at the start or end of an answer that streams past."""

from __future__ import annotations

import gzip
import zlib

import pytest

from proxy.forwarding.envelope import (
    MAX_DEPTH,
    WATCH_BYTES,
    WarningWatch,
    find_deprecations,
    find_trace_ids,
    nesting_depth,
    parse_json_bounded,
)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ('{"a":[1,[2]]}', 3),
        ('{"a":"[[[[{{{{"}', 1),  # brackets in a string do not count
        ('{"a":"\\"[[["}', 1),  # nor after an escaped quote
        ('"cut off [[[', 0),  # a piece of text that starts or ends mid-string
        ('x"]]]', 0),
        ('"ends in a backslash \\', 0),
        ("[" * 8000, 8000),
    ],
)
def test_nesting_depth_counts_arrays_and_objects_outside_strings(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_a_body_deeper_than_the_bound_is_not_parsed() -> None:
    assert parse_json_bounded("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert parse_json_bounded("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)) is None
    assert parse_json_bounded("[" * 8000) is None
    assert parse_json_bounded("9" * 5000) is None  # more digits than int() takes
    assert parse_json_bounded("not json") is None


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        (b'{"errors":[{"traceId":"a"},{"traceIdentifier":"b"},{"traceId":"a"}]}', ["a", "b"]),
        (b'{"errors":[{"traceId":"' + b"t" * 500 + b'"}]}', ["t" * 128]),
        (b'{"errors":"none"}', []),
        (b"[" * 8000, []),
        (b"\xff\xfe{", []),
    ],
)
def test_trace_ids_are_read_from_an_envelope_and_nothing_else(body: bytes, ids: list[str]) -> None:
    assert find_trace_ids(body) == ids


WARNING = b'{"type":"deprecation","code":"version-deprecated","title":"2026-07 is deprecated"}'


def watched(body: bytes, *, chunk_bytes: int, encoding: str = "identity") -> list[str]:
    watch = WarningWatch(encoding)
    for start in range(0, len(body), chunk_bytes):
        watch.feed(body[start : start + chunk_bytes])
    return watch.deprecations()


@pytest.mark.parametrize("chunk_bytes", [1000, 7, WATCH_BYTES * 3])
def test_a_deprecation_warning_is_seen_at_the_start_or_the_end_of_a_large_answer(
    chunk_bytes: int,
) -> None:
    rows = b"[" + b",".join(b'{"id":%d}' % i for i in range(50_000)) + b"]"
    at_end = b'{"data":' + rows + b',"errors":[],"warnings":[' + WARNING + b"]}"
    at_start = b'{"warnings":[' + WARNING + b'],"data":' + rows + b"}"
    assert watched(at_end, chunk_bytes=chunk_bytes) == ["2026-07 is deprecated"]
    assert watched(at_start, chunk_bytes=chunk_bytes) == ["2026-07 is deprecated"]


def test_the_middle_of_a_large_answer_is_not_held_nor_read() -> None:
    """Bounded: a "warnings" key deep inside a large answer's data is not looked for."""
    filler = b"[" + b",".join(b'{"id":%d}' % i for i in range(50_000)) + b"]"
    body = b'{"data":[' + filler + b',{"warnings":[' + WARNING + b"]}," + filler + b"]}"
    assert watched(body, chunk_bytes=4096) == []


def test_a_compressed_answer_is_read_from_its_start_only() -> None:
    small = b'{"data":[],"warnings":[' + WARNING + b"]}"
    assert watched(gzip.compress(small), chunk_bytes=10, encoding="gzip") == [
        "2026-07 is deprecated"
    ]
    assert watched(zlib.compress(small), chunk_bytes=10, encoding="deflate") == [
        "2026-07 is deprecated"
    ]
    assert watched(small, chunk_bytes=10, encoding="br") == []  # no way to read it
    assert watched(b"not gzip at all", chunk_bytes=10, encoding="gzip") == []


def test_what_a_warning_says_is_bounded() -> None:
    long_title = b'{"warnings":[{"type":"deprecation","title":"' + b"x" * 5000 + b'"}]}'
    [said] = find_deprecations(long_title.decode())
    assert len(said) == 200
    assert find_deprecations('{"warnings":[{"type":"deprecation"}]}') == ["deprecation"]
    assert find_deprecations('{"warnings":"deprecation"}') == []
