"""The command line's grammar: subcommands, the flags every one of them takes, and
usage errors in one line. Part of the command-line layer with ``cli``."""

from __future__ import annotations

import argparse
import os
import sys

from proxy import __version__
from proxy.config.defaults import CLIENT_ID_ENV_VAR, CLIENT_SECRET_ENV_VAR

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from typing import Any, NoReturn

PROG = "criteo-proxy"
EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2

# flag -> the config key it overrides
FLAG_KEYS = {
    "host": "listen.host",
    "port": "listen.port",
    "upstream": "upstream.url",
    "token_url": "upstream.token_url",
    "log_level": "logging.level",
    "log_format": "logging.format",
}


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, as wide as the terminal, found without importing shutil: argparse
    makes one per add_argument, so every command, a cached token included, paid for it."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2  # as argparse does
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error of ours."""

    def __init__(self, *args: Any, error_status: int = EXIT_CONFIG_ERROR, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self._error_status = error_status

    def error(self, message: str) -> NoReturn:
        self.exit(self._error_status, f"{PROG}: {message} (see {PROG} --help)\n")


def _port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected 0-65535, got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    common = _OneLineParser(add_help=False)
    s = argparse.SUPPRESS  # so that a subcommand's defaults never hide the main parser's
    common.add_argument(
        "--config",
        metavar="FILE",
        default=s,
        help="YAML config file (default: $CRITEO_PROXY_CONFIG, else none)",
    )
    common.add_argument("--host", default=s, help="address to listen on (127.0.0.1)")
    common.add_argument(
        "--port", type=_port_number, default=s, help="port to listen on (8080; 0 = any free port)"
    )
    common.add_argument(
        "--upstream", metavar="URL", default=s, help="Criteo API base URL (https://api.criteo.com)"
    )
    common.add_argument(
        "--token-url",
        metavar="URL",
        default=s,
        help="token endpoint (default: UPSTREAM/oauth2/token)",
    )
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=s)
    common.add_argument("--log-format", choices=["text", "json"], default=s)

    parser = _OneLineParser(
        prog=PROG,
        parents=[common],
        description="Local authenticating proxy for the Criteo API.",
        epilog=f"Credentials come from {CLIENT_ID_ENV_VAR} and {CLIENT_SECRET_ENV_VAR}.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # prog given: argparse would otherwise format one, importing shutil for the terminal size.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog=PROG)
    commands.add_parser("run", parents=[common], help="serve (the default)")
    check = commands.add_parser(
        "check",
        parents=[common],
        error_status=EXIT_FAILURE,
        help="validate the config and fetch one token (per profile); exit 0 if all is well",
    )
    token = commands.add_parser(
        "token",
        parents=[common],
        help="print an access token on stdout, for one-off use (reused while it is valid)",
    )
    token.add_argument(
        "--fresh", action="store_true", help="fetch a new token even if the cached one is valid"
    )
    commands.add_parser(
        "demo",
        parents=[common],
        help="run against an embedded fake Criteo: no credentials, no network",
    )
    status = commands.add_parser(
        "status",
        parents=[common],
        help="show a running proxy's token, rate-limit windows and last requests",
    )
    status.add_argument(
        "--url",
        metavar="URL",
        help="where it runs (http://host:port or unix:PATH); default: "
        "the address run would listen on",
    )
    status.add_argument("--json", action="store_true", help="print the raw /_proxy/status JSON")
    authorize = commands.add_parser(
        "authorize",
        parents=[common],
        help="authorization-code apps: print the consent URL, or store the refresh token",
    )
    step = authorize.add_mutually_exclusive_group(required=True)
    step.add_argument("--print-url", action="store_true", help="print the consent URL")
    step.add_argument(
        "--code",
        metavar="CODE",
        help="exchange this one-time code (--code=CODE if it starts with -)",
    )
    step.add_argument(
        "--from-url", metavar="URL", help="exchange the code in the address the browser landed on"
    )
    authorize.add_argument("--state", metavar="S", help="state to put in / expect back")
    authorize.add_argument(
        "--redirect-uri", metavar="URI", help="default: credentials.redirect_uri"
    )
    for command in (check, token, status, authorize):
        command.add_argument(
            "--profile",
            metavar="NAME",
            help="the profile to use (default: default"
            + ("; check: every profile)" if command is check else ")"),
        )
    return parser
