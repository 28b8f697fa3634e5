"""The commands that get a token once, as a member of the fleet when coordination is on:
``check`` (validate and fetch, one line per profile with profiles), ``token`` (print
one, from its cache while valid) and ``authorize`` (exchange a consent code)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from proxy.cli.arguments import EXIT_FAILURE, PROG
from proxy.cli.terminal import configure_one_shot_logging, fail, load
from proxy.config.defaults import DEFAULT_PROFILE

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from proxy.config.schema import Config
    from proxy.coordination.member import Member
    from proxy.tokens.token import Grant, Token

    MakeGrant = Callable[[Member | None], Grant]  # the grant, once the fleet member is known


def check(args: argparse.Namespace) -> int:
    config = load(args)
    configure_one_shot_logging(args, config)
    if args.profile is None and not config.profiles:
        return _check_one(config)
    # With profiles: one line each, and exit 1 if any fails.
    profiles = config.all_profiles if args.profile is None else (config.profile(args.profile),)
    failed = [profile.name for profile in profiles if not _check_line(profile)]
    if failed:
        fail(
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


def token(args: argparse.Namespace) -> int:
    from proxy.cli.cached_token import find_cached_token
    from proxy.tokens.command_cache import TokenCache, default_cache_path

    cached = None if args.fresh else find_cached_token(args, os.environ)
    if cached is not None:  # the common case, answered before the config is loaded
        print(cached, flush=True)
        return 0
    config = load(args).profile(args.profile or DEFAULT_PROFILE)
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
    configure_one_shot_logging(args, config)
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
        fail(f"{failure_prefix}{exc.code}: {exc.detail}", EXIT_FAILURE)


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
                    else f"Redis {status.redis}: acted alone; {status.last_error}"
                )
            await member.aclose()


def authorize(args: argparse.Namespace) -> int:
    from proxy.config.schema import ConfigError
    from proxy.config.validation import validate_redirect_uri
    from proxy.tokens.consent import build_consent_url, parse_landing_url
    from proxy.tokens.grants import AuthorizationCodeGrant
    from proxy.tokens.store import TokenStore

    config = load(args).profile(args.profile or DEFAULT_PROFILE)
    configure_one_shot_logging(args, config)
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
