"""What one process shares among its profiles, and what each profile holds.

Every profile (DESIGN 9; without profiles, the one named ``default``) has its
own token provider, rate-limit windows and version table; the process has one
upstream session, one set of metrics and one console history, and the console
on any port shows every profile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from proxy.config.schema import Config
from proxy.console.history import History
from proxy.forwarding.versions import ApiVersions
from proxy.observability.metrics import Metrics, ProfileMetrics
from proxy.ratelimit.pacer import Pacer
from proxy.tokens.provider import TokenProvider
from proxy.tokens.token import Clock

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member


@dataclass(slots=True, eq=False)
class ProfileState:
    name: str
    config: Config  # this profile's resolved settings
    pacer: Pacer
    versions: ApiVersions
    metrics: ProfileMetrics
    listen_urls: list[str] = field(default_factory=list)  # known once it listens
    tokens: TokenProvider | None = None  # made with the upstream session, at start-up
    member: Member | None = None  # in a fleet (DESIGN 11): this profile's membership


@dataclass(slots=True, eq=False)
class ProcessState:
    config: Config  # the shared sections (upstream, logging, console) are read here
    metrics: Metrics
    history: History
    clock: Clock  # monotonic, for token lifetimes
    profiles: dict[str, ProfileState] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)  # epoch seconds
    session: aiohttp.ClientSession | None = None  # shared by every profile's app
    # The tasks of the requests being served, on every profile's port: for a bounded shutdown.
    handlers: set[asyncio.Task[object]] = field(default_factory=set)
    # Set once every profile listens: the token warm-ups wait for it, so that a start that
    # fails (a port in use) says so in one line, after no other.
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    # Set on the stop signal (the loop's time): until then, a refresh token being rotated
    # may still be stored (listen.shutdown_grace).
    shutdown_deadline: float | None = None
    # Client ids other than a profile's that asked the local token endpoint: each is
    # logged once per process.
    local_token_client_ids: set[str] = field(default_factory=set)


def build_process_state(config: Config, *, clock: Clock) -> ProcessState:
    """The shared state of one process, its gauges reading every profile."""
    process = ProcessState(
        config=config,
        metrics=Metrics(by_profile=bool(config.profiles)),
        history=History(config.console.history if config.console.enabled else 0),
        clock=clock,
    )
    process.metrics.in_flight.set_function(lambda: len(process.handlers))
    return process


def build_profile_state(name: str, config: Config, metrics: Metrics) -> ProfileState:
    profile_metrics = metrics.for_profile(name)
    pacer = Pacer(enabled=config.rate_limit.enabled, max_wait_seconds=config.rate_limit.max_wait)
    profile_metrics.rate_limit_waiting.set_function(lambda: pacer.waiting)
    return ProfileState(
        name=name,
        config=config,
        pacer=pacer,
        versions=ApiVersions(profile_metrics),
        metrics=profile_metrics,
    )
