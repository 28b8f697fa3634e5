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


# --- what Windows lacks (issue 22, item 1: the README's PowerShell lines) -----------------


async def test_without_loop_signal_handlers_the_stop_signals_are_left_to_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows' event loops have no add_signal_handler: Ctrl-C then cancels the serving
    task (asyncio.run's own handling), and serve's cleanup runs; no error at start."""
    import asyncio

    from proxy.server.serving import catch_stop_signals

    def unsupported(*_: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.get_running_loop(), "add_signal_handler", unsupported)
    stop = catch_stop_signals(lambda: None)
    assert not stop.is_set()


def test_the_server_side_imports_without_fcntl() -> None:
    """fcntl (the token store's lock, authorization-code apps only) is POSIX-only: the
    demo and a client-credentials proxy must still start on Windows."""
    import subprocess

    code = "import sys; sys.modules['fcntl'] = None; import proxy.cli.commands, proxy.server.app"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
