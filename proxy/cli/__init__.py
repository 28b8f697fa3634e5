"""The ``criteo-proxy`` command line: its grammar (``arguments``), the subcommands
(``commands``: run, demo, status; ``token_commands``: check, token, authorize), and
what ``status``, ``demo`` and a cached ``token`` need of their own.

``terminal`` is how it speaks and stops. The only part that prints to the terminal or
exits, and nothing imports it but ``proxy.__main__``. May import every other part; it
imports the heavy ones lazily, so that a command that needs no server does not load one.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The command. A plain ``token`` found in its cache is printed before the grammar
    and the commands are imported: a shell loop of ``$(criteo-proxy token)`` pays a
    Python start per call, and little more."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["token"]:  # the cache's module (json, the hash) only then
        from proxy.cli.cached_token import quick_cached_token

        cached = quick_cached_token(words, os.environ)
        if cached is not None:
            try:
                print(cached, flush=True)
            except BrokenPipeError:  # the reader left: no traceback (Python's SIGPIPE advice)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
            sys.exit(0)
    from proxy.cli.commands import main as run_command

    run_command(argv)


__all__ = ["main"]
