"""The ``criteo-proxy`` command: arguments, subcommands, one-line errors.

The only module that prints to the terminal or exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from . import __version__
from .config import load_config
from .consent import build_consent_url, parse_landing_url
from .demo import build_demo_config, running_fake_criteo
from .fake_criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from .grants import AuthorizationCodeGrant
from .observability import build_json_line, configure_logging
from .schema import (
    CLIENT_ID_ENV_VAR,
    CLIENT_SECRET_ENV_VAR,
    Config,
    ConfigError,
)
from .serving import run_event_loop, serve
from .token_store import TokenStore
from .tokens import Grant, Token, TokenError
from .upstream import build_session, build_token_provider
from .validation import validate_redirect_uri

log = logging.getLogger("criteo_proxy.cli")

PROG = "criteo-proxy"
EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2

# flag -> the config key it overrides
_FLAG_KEYS = {
    "host": "listen.host",
    "port": "listen.port",
    "upstream": "upstream.url",
    "token_url": "upstream.token_url",
    "log_level": "logging.level",
    "log_format": "logging.format",
}


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error of ours."""

    def __init__(self, *args: Any, error_status: int = EXIT_CONFIG_ERROR, **kwargs: Any) -> None:
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", parents=[common], help="serve (the default)")
    commands.add_parser(
        "check",
        parents=[common],
        error_status=EXIT_FAILURE,
        help="validate the config and fetch one token; exit 0 if all is well",
    )
    commands.add_parser(
        "token", parents=[common], help="print a fresh access token on stdout, for one-off use"
    )
    commands.add_parser(
        "demo",
        parents=[common],
        help="run against an embedded fake Criteo: no credentials, no network",
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command: str = args.command or "run"
    if unknown:  # reported by us, so that check keeps its "1 on any failure"
        status = EXIT_FAILURE if command == "check" else EXIT_CONFIG_ERROR
        _fail(f"unrecognized arguments: {' '.join(unknown)} (see {PROG} --help)", status)
    runner: Callable[[argparse.Namespace], int] = _COMMANDS[command]
    try:
        status = runner(args)
    except ConfigError as exc:
        _fail(str(exc), EXIT_FAILURE if command == "check" else EXIT_CONFIG_ERROR)
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        _fail(f"unexpected error: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    sys.exit(status)


@dataclass(slots=True)
class _Output:
    """How the command's own lines look: for people, or (``run --log-format json``)
    one JSON object per line, like every log line, since in a container stdout and
    stderr end in the same log pipeline."""

    json: bool = False


_output = _Output()


def _say(message: str, *, stream: TextIO, level: str = "info", **fields: object) -> None:
    if _output.json:
        line = build_json_line(time.time(), level, log.name, message, fields)
    else:
        line = f"{PROG}: {message}"
    stream.write(line + "\n")  # one write: the log writer thread shares stderr
    stream.flush()


def _fail(message: str, status: int) -> NoReturn:
    _say(message, stream=sys.stderr, level="error")
    sys.exit(status)


def _load(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Config:
    overrides = {key: getattr(args, flag) for flag, key in _FLAG_KEYS.items() if flag in args}
    return load_config(getattr(args, "config", None), environ=environ, overrides=overrides)


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    _output.json = config.logging.format == "json"
    configure_logging(config.logging.level, config.logging.format)
    run_event_loop(serve(config, announce=_announce, on_second_signal=_exit_now))
    return 0


def _announce(urls: list[str]) -> None:
    for url in urls:
        _say(f"serving on {url}", stream=sys.stdout, event="serving", url=url)


def _exit_now() -> None:
    _say("second signal, exiting now", stream=sys.stderr, level="warning")
    os._exit(EXIT_FAILURE)


def _configure_one_shot_logging(args: argparse.Namespace, config: Config) -> None:
    """check and token say what matters themselves; logs only when asked with --log-level."""
    level = config.logging.level if "log_level" in args else "error"
    configure_logging(level, config.logging.format)


def _check(args: argparse.Namespace) -> int:
    config = _load(args)
    _configure_one_shot_logging(args, config)
    print(f"config:         {config.source or 'none (defaults and environment)'}")
    print(f"upstream:       {config.upstream.url}")
    print(f"token endpoint: {config.upstream.effective_token_url}")
    print(f"grant type:     {config.credentials.grant_type}")
    print(f"client id:      {config.credentials.client_id}")
    print("client secret:  set (not shown)", flush=True)
    token = _fetch_token_or_fail(config, failure_prefix="check failed: ")
    print(f"token:          obtained, valid for {token.expires_in_seconds:.0f} s (not shown)")
    print("OK")
    return 0


def _token(args: argparse.Namespace) -> int:
    config = _load(args)
    _configure_one_shot_logging(args, config)
    token = _fetch_token_or_fail(config)
    print(token.access_token, flush=True)
    return 0


def _fetch_token_or_fail(
    config: Config, grant: Grant | None = None, *, failure_prefix: str = ""
) -> Token:
    """One token for a one-shot command; a refusal is its one-line failure (exit 1)."""
    try:
        return asyncio.run(_fetch_token(config, grant))
    except TokenError as exc:
        _fail(f"{failure_prefix}{exc.code}: {exc.detail}", EXIT_FAILURE)


async def _fetch_token(config: Config, grant: Grant | None) -> Token:
    async with build_session(config.upstream) as session:
        return await build_token_provider(config, session, grant=grant).get_token()


def _demo(args: argparse.Namespace) -> int:
    # The demo never uses real credentials, even when they are in the environment.
    environ = dict(os.environ)
    environ.update({CLIENT_ID_ENV_VAR: DEMO_CLIENT_ID, CLIENT_SECRET_ENV_VAR: DEMO_CLIENT_SECRET})
    config = _load(args, environ)
    configure_logging(config.logging.level, config.logging.format)
    run_event_loop(_serve_demo(config))
    return 0


async def _serve_demo(config: Config) -> None:
    async with running_fake_criteo() as fake_url:

        def announce(urls: list[str]) -> None:
            _announce(urls)
            print(f"{PROG} demo: a fake Criteo API answers on {fake_url}", flush=True)
            print("Try it (Ctrl-C stops the demo):", flush=True)
            print(f"  curl {urls[0]}/2025-10/advertisers/me", flush=True)

        await serve(
            build_demo_config(config, fake_url), announce=announce, on_second_signal=_exit_now
        )


def _authorize(args: argparse.Namespace) -> int:
    config = _load(args)
    _configure_one_shot_logging(args, config)
    credentials = config.credentials
    if args.redirect_uri is not None:
        validate_redirect_uri("--redirect-uri", args.redirect_uri)
    redirect_uri: str | None = args.redirect_uri or credentials.redirect_uri
    if args.print_url:
        if not redirect_uri:
            raise ConfigError(
                "--redirect-uri: required (or credentials.redirect_uri): the HTTPS address "
                "declared in your Criteo app"
            )
        print(build_consent_url(credentials.client_id, redirect_uri, args.state), flush=True)
        print(
            "Open it in a browser, consent, then run: "
            f"{PROG} authorize --from-url '<the address you land on>'"
            + (f" --state {args.state}" if args.state else ""),
            file=sys.stderr,
        )
        return 0
    if args.from_url:
        landing = parse_landing_url(args.from_url, expected_state=args.state)
        code, redirect_uri = landing.code, redirect_uri or landing.redirect_uri
    else:
        code = args.code
        if not redirect_uri:
            raise ConfigError("--redirect-uri: required with --code (or credentials.redirect_uri)")
    store = TokenStore(credentials.token_store)
    grant = AuthorizationCodeGrant(
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        code=code,
        redirect_uri=redirect_uri,
        store=store,
    )
    _fetch_token_or_fail(config, grant)
    print(
        f"stored a refresh token for client {credentials.client_id} in {store.path} "
        "(mode 0600, not shown); run the proxy with credentials.grant_type: authorization_code",
        flush=True,
    )
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "authorize": _authorize,
    "run": _run,
    "check": _check,
    "token": _token,
    "demo": _demo,
}
