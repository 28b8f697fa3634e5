"""The ``criteo-proxy`` command line: its grammar (``arguments``), the subcommands
(``commands``: run, demo, status; ``token_commands``: check, token, authorize), and
what ``status``, ``demo`` and a cached ``token`` need of their own.

``terminal`` is how it speaks and stops. The only part that prints to the terminal or
exits, and nothing imports it but ``proxy.__main__``. May import every other part; it
imports the heavy ones lazily, so that a command that needs no server does not load one.
"""

from proxy.cli.commands import main

__all__ = ["main"]
