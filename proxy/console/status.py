"""The document behind ``GET /_proxy/status`` and ``criteo-proxy status``.

Everything the console shows but the request list, for every profile; never a
token, a secret or a key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from proxy import __version__
from proxy.console.history import format_utc
from proxy.coordination.outcomes import OFF
from proxy.tokens.refresh_grant import RefreshTokenGrant

if TYPE_CHECKING:  # handed in by the server: the console never imports it
    from proxy.server.state import ProcessState, ProfileState


def build_status(process: ProcessState, *, fallback_listen: str = "") -> dict[str, object]:
    now = time.time()
    return {
        "version": __version__,
        "uptime_seconds": round(now - process.started_at, 1),
        "upstream": process.config.upstream.url,
        "console": {
            "history": process.history.max_records,
            "error_bodies": process.config.console.error_bodies,
            "last_seq": process.history.last_seq,
        },
        "profiles": [
            _profile_status(profile, now, fallback_listen) for profile in process.profiles.values()
        ],
    }


def _profile_status(profile: ProfileState, now: float, fallback_listen: str) -> dict[str, object]:
    return {
        "name": profile.name,
        "listen": profile.listen_urls[0] if profile.listen_urls else fallback_listen,
        "token": _token_status(profile),
        "rate_limits": [
            {
                "bucket": window.bucket,
                "metered": window.metered,
                "limit": window.limit,
                "remaining": window.remaining,
                "reset_in_seconds": None
                if window.reset_at is None
                else round(max(0.0, window.reset_at - now), 1),
                "reset_at": None if window.reset_at is None else format_utc(window.reset_at),
                "waiting": window.waiting,
                "seen_429": window.throttled["seen"],
                "retried_429": window.throttled["retried"],
                "refused": window.throttled["refused"],
            }
            for window in profile.pacer.snapshots()
        ],
        "versions": [
            {
                "version": seen.version,
                "requests": seen.requests,
                "deprecated": seen.deprecated,
                "sunset": seen.sunset,
                "retired": seen.retired,
            }
            for seen in profile.versions.seen()
        ],
        "coordination": _coordination_status(profile),
    }


def _coordination_status(profile: ProfileState) -> dict[str, object]:
    """DESIGN 11: off, or whether this member shares with the fleet; never the password."""
    member = profile.member
    status = OFF if member is None else member.status()
    return {
        "state": status.state,
        "redis": status.redis,
        "members": status.members,
        "last_error": status.last_error,
    }


def _token_status(profile: ProfileState) -> dict[str, object]:
    credentials = profile.config.credentials
    document: dict[str, object] = {
        "grant_type": credentials.grant_type,
        "client_id": credentials.client_id,
        "state": "none",
        "expires_in_seconds": None,
        "last_error": None,
        "recent_errors": [],
        "backoff_seconds": 0.0,
        "fetched_at": None,
        "token_store": None,
        "refresh_token_stored_at": None,
    }
    tokens = profile.tokens
    if tokens is None:  # not started yet
        return document
    status = tokens.status()
    document.update(
        state=status.state,
        expires_in_seconds=None
        if status.expires_in_seconds is None
        else round(status.expires_in_seconds),
        last_error=status.last_error,
        recent_errors=[
            {"time": format_utc(recent.time), "error": recent.error}
            for recent in status.recent_errors
        ],
        backoff_seconds=round(status.backoff_seconds, 1),
        fetched_at=None if status.fetched_at is None else format_utc(status.fetched_at),
    )
    grant = tokens.grant
    if isinstance(grant, RefreshTokenGrant):
        document["token_store"] = grant.store_path
        document["refresh_token_stored_at"] = (
            None if grant.stored_at is None else format_utc(grant.stored_at)
        )
    return document
