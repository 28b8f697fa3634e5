"""The event loop a serving process runs on (issue 20, item 13)."""

from __future__ import annotations

import sys

import pytest

from proxy.server.serving import run_event_loop


class Boom(Exception):
    pass


async def _fail() -> None:
    raise Boom("from inside the loop")


def test_a_failure_without_uvloop_carries_no_importerror_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on a machine without [speed]
    with pytest.raises(Boom) as caught:
        run_event_loop(_fail())
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
