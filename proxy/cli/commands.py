"""The ``criteo-proxy`` command: arguments, subcommands, one-line errors.

The only module that prints to the terminal or exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from proxy.cli.arguments import EXIT_CONFIG_ERROR, EXIT_FAILURE, FLAG_KEYS, PROG, build_parser
from proxy.config.defaults import CLIENT_ID_ENV_VAR, CLIENT_SECRET_ENV_VAR, DEFAULT_PROFILE

# Everything else (asyncio and aiohttp above all, the config loader, json) is
# imported by the commands that use it: `criteo-proxy token` answering from its
# cache, `--help` and `status` start at about the speed of a bare Python
# (tests/cli/test_startup_imports.py, tests/bench/startup.py).
TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from typing import NoReturn, TextIO

    from proxy.config.schema import Config
    from proxy.coordination.member import Member
    from proxy.tokens.token import Grant, Token

    MakeGrant = Callable[[Member | None], Grant]  # the grant, once the fleet member is known

LOGGER_NAME = "criteo_proxy.cli"


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
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        from proxy.config.schema import ConfigError  # loaded by then if it was raised

        if isinstance(exc, ConfigError):
            _fail(str(exc), EXIT_FAILURE if command == "check" else EXIT_CONFIG_ERROR)
        _fail(f"unexpected error: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    sys.exit(status)


class _Output:
    """How the command's own lines look: for people, or (``run --log-format json``)
    one JSON object per line, like every log line, since in a container stdout and
    stderr end in the same log pipeline. (Not a dataclass: see the imports.)"""

    __slots__ = ("json",)

    def __init__(self) -> None:
        self.json = False


_output = _Output()


def _say(message: str, *, stream: TextIO, level: str = "info", **fields: object) -> None:
    if _output.json:
        from proxy.observability.logs import build_json_line

        line = build_json_line(time.time(), level, LOGGER_NAME, message, fields)
    else:
        line = f"{PROG}: {message}"
    stream.write(line + "\n")  # one write: the log writer thread shares stderr
    stream.flush()


def _fail(message: str, status: int) -> NoReturn:
    _say(message, stream=sys.stderr, level="error")
    sys.exit(status)


def _load(
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


def _run(args: argparse.Namespace) -> int:
    from proxy.observability.logs import configure_logging
    from proxy.server.serving import run_event_loop, serve

    config = _load(args)
    _output.json = config.logging.format == "json"
    configure_logging(config.logging.level, config.logging.format, profiles=bool(config.profiles))
    run_event_loop(serve(config, announce=_announce, on_second_signal=_exit_now))
    return 0


def _announce(profile: str, urls: list[str]) -> None:
    for url in urls:
        if profile == DEFAULT_PROFILE:
            _say(f"serving on {url}", stream=sys.stdout, event="serving", url=url)
        else:
            message = f"profile {profile}: serving on {url}"
            _say(message, stream=sys.stdout, event="serving", url=url, profile=profile)


def _exit_now() -> None:
    _say("second signal, exiting now", stream=sys.stderr, level="warning")
    os._exit(EXIT_FAILURE)


def _configure_one_shot_logging(args: argparse.Namespace, config: Config) -> None:
    """check and token say what matters themselves; logs only when asked with --log-level."""
    from proxy.observability.logs import configure_logging

    level = config.logging.level if "log_level" in args else "error"
    configure_logging(level, config.logging.format)


def _check(args: argparse.Namespace) -> int:
    config = _load(args)
    _configure_one_shot_logging(args, config)
    if args.profile is None and not config.profiles:
        return _check_one(config)
    # With profiles: one line each, and exit 1 if any fails.
    profiles = config.all_profiles if args.profile is None else (config.profile(args.profile),)
    failed = [profile.name for profile in profiles if not _check_line(profile)]
    if failed:
        _fail(
            f"check failed for {len(failed)} of {len(profiles)} profiles: {', '.join(failed)}",
            EXIT_FAILURE,
        )
    return 0


def _check_one(config: Config) -> int:
    print(f"config:         {config.source or 'none (defaults and environment)'}")
    print(f"upstream:       {config.upstream.url}")
    print(f"token endpoint: {config.upstream.effective_token_url}")
    print(f"grant type:     {config.credentials.grant_type}")
    print(f"client id:      {config.credentials.client_id}")
    print("client secret:  set (not shown)", flush=True)
    coordination: list[str] = []
    token = _fetch_token_or_fail(config, failure_prefix="check failed: ", coordination=coordination)
    print(f"token:          obtained, valid for {token.expires_in_seconds:.0f} s (not shown)")
    for line in coordination:
        print(f"coordination:   {line}")
    print("OK")
    return 0


def _check_line(config: Config) -> bool:
    """One profile, one line on stdout: OK with what it found, or FAILED and why."""
    import asyncio

    from proxy.config.schema import ConfigError
    from proxy.tokens.token import TokenError

    listen = config.listen.unix_socket or f"{config.listen.host}:{config.listen.port}"
    found = f"{config.credentials.grant_type}, client id {config.credentials.client_id}, {listen}"
    coordination: list[str] = []
    try:
        token = asyncio.run(_fetch_token(config, None, coordination=coordination))
    except TokenError as exc:
        print(f"{config.name}: FAILED ({found}): {exc.code}: {exc.detail}", flush=True)
        return False
    except ConfigError as exc:  # an unusable token store
        print(f"{config.name}: FAILED ({found}): {exc}", flush=True)
        return False
    valid = f"token valid for {token.expires_in_seconds:.0f} s (not shown)"
    valid += "".join(f"; coordination: {line}" for line in coordination)
    print(f"{config.name}: OK ({found}): {valid}", flush=True)
    return True


def _token(args: argparse.Namespace) -> int:
    from proxy.cli.cached_token import find_cached_token
    from proxy.tokens.command_cache import TokenCache, default_cache_path

    cached = None if args.fresh else find_cached_token(args, os.environ)
    if cached is not None:  # the common case, answered before the config is loaded
        print(cached, flush=True)
        return 0
    config = _load(args).profile(args.profile or DEFAULT_PROFILE)
    cache = TokenCache(
        default_cache_path(config.name, os.environ),
        client_id=config.credentials.client_id,
        token_url=config.upstream.effective_token_url,
        client_secret=config.credentials.client_secret.reveal(),
    )
    cached = None if args.fresh else cache.load(margin_seconds=config.tokens.refresh_margin)
    if cached is not None:
        print(cached, flush=True)
        return 0
    _configure_one_shot_logging(args, config)
    asked_at = time.time()  # the lifetime counts from the request, as the server's does
    token = _fetch_token_or_fail(config)
    cache.save(token.access_token, expires_in=token.expires_in_seconds, now=asked_at)
    print(token.access_token, flush=True)
    return 0


def _fetch_token_or_fail(
    config: Config,
    make_grant: MakeGrant | None = None,
    *,
    failure_prefix: str = "",
    coordination: list[str] | None = None,
) -> Token:
    """One token for a one-shot command; a refusal is its one-line failure (exit 1)."""
    import asyncio

    from proxy.tokens.token import TokenError

    try:
        return asyncio.run(_fetch_token(config, make_grant, coordination=coordination))
    except TokenError as exc:
        _fail(f"{failure_prefix}{exc.code}: {exc.detail}", EXIT_FAILURE)


async def _fetch_token(
    config: Config, make_grant: MakeGrant | None, *, coordination: list[str] | None = None
) -> Token:
    """With coordination, as a member of the fleet (DESIGN 11): a valid token from Redis
    first, a refresh only under the fleet's lock. COORDINATION gets a line about Redis."""
    from proxy.forwarding.upstream import build_session
    from proxy.tokens.wiring import open_token_provider

    member = None
    if config.coordination.enabled:
        from proxy.coordination.member import Member

        member = Member.for_profile(config)
        await member.start(announce=False)
    try:
        async with build_session(config.upstream) as session:
            grant = None if make_grant is None else make_grant(member)
            provider = await open_token_provider(config, session, grant=grant, member=member)
            return await provider.get_token()
    finally:
        if member is not None:
            if coordination is not None:
                status = member.status()
                coordination.append(
                    f"Redis {status.redis} answers: shared with the fleet"
                    if status.state == "up"
                    else f"Redis {status.redis}: {status.last_error}: acted alone"
                )
            await member.aclose()


def _demo(args: argparse.Namespace) -> int:
    from proxy.cli.demo import move_off_a_taken_port
    from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from proxy.observability.logs import configure_logging
    from proxy.server.serving import run_event_loop

    # The demo never uses real credentials, even when they are in the environment.
    environ = dict(os.environ)
    environ.update({CLIENT_ID_ENV_VAR: DEMO_CLIENT_ID, CLIENT_SECRET_ENV_VAR: DEMO_CLIENT_SECRET})
    config = _load(args, environ)
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


def _authorize(args: argparse.Namespace) -> int:
    from proxy.config.schema import ConfigError
    from proxy.config.validation import validate_redirect_uri
    from proxy.tokens.consent import build_consent_url, parse_landing_url
    from proxy.tokens.grants import AuthorizationCodeGrant
    from proxy.tokens.store import TokenStore

    config = _load(args).profile(args.profile or DEFAULT_PROFILE)
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
            + _follow_up_flags(args, config.name),
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

    def make_grant(fleet: Member | None) -> Grant:
        return AuthorizationCodeGrant(
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            code=code,
            redirect_uri=redirect_uri,
            store=store,
            fleet=fleet,
        )

    _fetch_token_or_fail(config, make_grant)
    print(
        f"stored a refresh token for client {credentials.client_id} in {store.path} "
        "(mode 0600, not shown); run the proxy with credentials.grant_type: authorization_code",
        flush=True,
    )
    return 0


def _follow_up_flags(args: argparse.Namespace, profile: str) -> str:
    """The flags this authorize was given that the exchange needs too, shell-quoted."""
    import shlex

    given = [
        ("--config", getattr(args, "config", None)),
        ("--profile", profile if profile != DEFAULT_PROFILE else None),
        ("--upstream", getattr(args, "upstream", None)),
        ("--token-url", getattr(args, "token_url", None)),
        ("--state", args.state),
    ]
    return "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value)


def _status(args: argparse.Namespace) -> int:
    from proxy.cli.status_client import StatusUnavailable, build_status_target, fetch_status
    from proxy.cli.status_report import render_report

    # It asks the proxy, not Criteo: no credentials needed.
    config = _load(args, require_credentials=False).profile(args.profile or DEFAULT_PROFILE)
    _configure_one_shot_logging(args, config)
    try:
        target = build_status_target(config, args.url)
        report = fetch_status(target)
    except StatusUnavailable as exc:
        _fail(str(exc), EXIT_FAILURE)
    if args.json:
        import json

        print(json.dumps(report.status, indent=2), flush=True)
    else:
        print("\n".join(render_report(report)), flush=True)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "status": _status,
    "authorize": _authorize,
    "run": _run,
    "check": _check,
    "token": _token,
    "demo": _demo,
}
