"""Criteo's JSON envelope, read with bounds: depth counted outside strings, deep or
broken bodies read as nothing, trace ids found in an ordinary envelope."""

from __future__ import annotations

import pytest

from proxy.forwarding.envelope import (
    MAX_DEPTH,
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
