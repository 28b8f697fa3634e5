"""The consent step of an authorization-code app: the URL to send the advertiser
to, and the code in the address the browser lands on afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_plus

from yarl import URL

from proxy.config.addresses import parse_url
from proxy.config.schema import ConfigError

CONSENT_URL: Final = "https://consent.criteo.com/request"


@dataclass(frozen=True, slots=True)
class Landing:
    code: str = field(repr=False)
    redirect_uri: str  # the landing address without code and state


def build_consent_url(client_id: str, redirect_uri: str, state: str | None = None) -> str:
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri}
    if state is not None:
        query["state"] = state
    return str(URL(CONSENT_URL).with_query(query))


def parse_landing_url(landed: str, *, expected_state: str | None = None) -> Landing:
    """The code from the address the browser landed on; checks ``state`` when one is given."""
    url = parse_url(landed)
    if url is None or not url.scheme or not url.raw_host:
        raise ConfigError(
            "--from-url: expected the full address the browser landed on "
            "(https://your.redirect/?code=...&state=...)"
        )
    error = url.query.get("error")
    if error:
        description = url.query.get("error_description", "")
        reason = f"{error}: {description}" if description else error
        raise ConfigError(f"--from-url: the consent was not given ({reason})")
    code = url.query.get("code")
    if not code:
        raise ConfigError("--from-url: the address carries no code= parameter")
    if expected_state is not None and url.query.get("state") != expected_state:
        raise ConfigError(
            "--from-url: the state in the address does not match --state "
            "(this address may not come from your consent request)"
        )
    return Landing(code=code, redirect_uri=strip_consent_answer(url))


def strip_consent_answer(landed: URL) -> str:
    """The redirect URI the consent was asked for: the landing address without the
    ``code`` and ``state`` Criteo appended, the rest of its query kept byte for byte
    (the exchange must send exactly the redirect URI of the consent)."""
    kept = [
        pair
        for pair in landed.raw_query_string.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) not in ("code", "state")
    ]
    base = str(landed.with_query(None).with_fragment(None))
    return f"{base}?{'&'.join(kept)}" if kept else base
