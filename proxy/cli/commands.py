"""The ``criteo-proxy`` command: the dispatch to a subcommand, the last resort that
turns any failure into one line, and the subcommands that serve or ask a server (run,
demo, status); those that get a token once are in ``token_commands``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from proxy.cli import token_commands
from proxy.cli.arguments import EXIT_CONFIG_ERROR, EXIT_FAILURE, PROG, build_parser
from proxy.cli.terminal import configure_one_shot_logging, fail, load, output, say
from proxy.config.defaults import CLIENT_ID_ENV_VAR, CLIENT_SECRET_ENV_VAR, DEFAULT_PROFILE

# Everything else (asyncio and aiohttp above all, the config loader, json) is
# imported by the commands that use it: `criteo-proxy token` answering from its
# cache, `--help` and `status` start at about the speed of a bare Python
# (tests/cli/test_startup_imports.py, tests/bench/startup.py).
TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from typing import NoReturn

    from proxy.config.schema import Config


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command: str = args.command or "run"
    if unknown:  # reported by us, so that check keeps its "1 on any failure"
        status = EXIT_FAILURE if command == "check" else EXIT_CONFIG_ERROR
        fail(f"unrecognized arguments: {' '.join(unknown)} (see {PROG} --help)", status)
    runner: Callable[[argparse.Namespace], int] = _COMMANDS[command]
    try:
        status = runner(args)
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        from proxy.config.schema import ConfigError  # loaded by then if it was raised

        if isinstance(exc, ConfigError):
            fail(str(exc), EXIT_FAILURE if command == "check" else EXIT_CONFIG_ERROR)
        fail(f"unexpected error: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    sys.exit(status)


def _run(args: argparse.Namespace) -> int:
    from proxy.observability.logs import configure_logging
    from proxy.server.serving import run_event_loop, serve

    config = load(args)
    output.json = config.logging.format == "json"
    configure_logging(config.logging.level, config.logging.format, profiles=bool(config.profiles))
    run_event_loop(serve(config, announce=_announce, on_second_signal=_exit_now))
    return 0


def _announce(profile: str, urls: list[str]) -> None:
    for url in urls:
        if profile == DEFAULT_PROFILE:
            say(f"serving on {url}", stream=sys.stdout, event="serving", url=url)
        else:
            message = f"profile {profile}: serving on {url}"
            say(message, stream=sys.stdout, event="serving", url=url, profile=profile)


def _exit_now() -> None:
    say("second signal, exiting now", stream=sys.stderr, level="warning")
    os._exit(EXIT_FAILURE)


def _demo(args: argparse.Namespace) -> int:
    from proxy.cli.demo import move_off_a_taken_port
    from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from proxy.observability.logs import configure_logging
    from proxy.server.serving import run_event_loop

    # The demo never uses real credentials, even when they are in the environment.
    environ = dict(os.environ)
    environ.update({CLIENT_ID_ENV_VAR: DEMO_CLIENT_ID, CLIENT_SECRET_ENV_VAR: DEMO_CLIENT_SECRET})
    config = load(args, environ)
    # A port given with --port is meant: taken, it is the usual error.
    left_port = None
    if "port" not in args:
        config, left_port = move_off_a_taken_port(config)
    configure_logging(config.logging.level, config.logging.format)
    run_event_loop(_serve_demo(config, left_port))
    return 0


async def _serve_demo(config: Config, left_port: int | None) -> None:
    from proxy.cli.demo import build_demo_config, running_fake_criteo
    from proxy.fakes.criteo import LIVE_API_VERSION
    from proxy.server.serving import serve

    async with running_fake_criteo() as fake_url:

        def announce(profile: str, urls: list[str]) -> None:
            _announce(profile, urls)
            if profile != DEFAULT_PROFILE:
                return
            proxy_url = urls[0]
            lines = []
            if left_port is not None:
                port = proxy_url.rsplit(":", 1)[-1]
                lines.append(
                    f"{PROG} demo: port {left_port} is in use: serving on port {port} instead "
                    "(--port N picks one)"
                )
            lines += [
                f"{PROG} demo: a fake Criteo API answers on {fake_url}",
                "Try it (Ctrl-C stops the demo):",
                f"  curl {proxy_url}/{LIVE_API_VERSION}/advertisers/me",
                f"The console, in a browser: {proxy_url}/_proxy/",
            ]
            # One write: the log writer thread shares the terminal.
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()

        await serve(
            build_demo_config(config, fake_url), announce=announce, on_second_signal=_exit_now
        )


def _status(args: argparse.Namespace) -> int:
    from proxy.cli.status_client import StatusUnavailable, build_status_target, fetch_status
    from proxy.cli.status_report import render_report

    # It asks the proxy, not Criteo: no credentials needed.
    config = load(args, require_credentials=False).profile(args.profile or DEFAULT_PROFILE)
    configure_one_shot_logging(args, config)
    try:
        target = build_status_target(config, args.url)
        report = fetch_status(target)
    except StatusUnavailable as exc:
        fail(str(exc), EXIT_FAILURE)
    if args.json:
        import json

        print(json.dumps(report.status, indent=2), flush=True)
    else:
        print("\n".join(render_report(report)), flush=True)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "status": _status,
    "authorize": token_commands.authorize,
    "run": _run,
    "check": token_commands.check,
    "token": token_commands.token,
    "demo": _demo,
}
