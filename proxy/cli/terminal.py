"""What the command line says, and how it stops: one line on stderr for a failure
(exit 2 for a configuration error, 1 otherwise), the lines a command prints for
people, or one JSON object per line for ``run --log-format json``; and the config a
command's flags ask for. The only module, with the commands, that prints or exits.
"""

from __future__ import annotations

import argparse
import sys
import time

from proxy.cli.arguments import FLAG_KEYS, PROG

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from typing import NoReturn, TextIO

    from proxy.config.schema import Config

LOGGER_NAME = "criteo_proxy.cli"


class _Output:
    """How the command's own lines look: for people, or (``run --log-format json``)
    one JSON object per line, like every log line, since in a container stdout and
    stderr end in the same log pipeline. (Not a dataclass: see the imports.)"""

    __slots__ = ("json",)

    def __init__(self) -> None:
        self.json = False


output = _Output()


def say(message: str, *, stream: TextIO, level: str = "info", **fields: object) -> None:
    if output.json:
        from proxy.observability.logs import build_json_line

        line = build_json_line(time.time(), level, LOGGER_NAME, message, fields)
    else:
        line = f"{PROG}: {message}"
    stream.write(line + "\n")  # one write: the log writer thread shares stderr
    stream.flush()


def fail(message: str, status: int) -> NoReturn:
    say(message, stream=sys.stderr, level="error")
    sys.exit(status)


def load(
    args: argparse.Namespace,
    environ: dict[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    from proxy.config.loader import load_config

    overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if flag in args}
    return load_config(
        getattr(args, "config", None),
        environ=environ,
        overrides=overrides,
        require_credentials=require_credentials,
    )


def configure_one_shot_logging(args: argparse.Namespace, config: Config) -> None:
    """check and token say what matters themselves; logs only when asked with --log-level."""
    from proxy.observability.logs import configure_logging

    level = config.logging.level if "log_level" in args else "error"
    configure_logging(level, config.logging.format)
