"""The token endpoint, as a client: one form POSTed, one token or one TokenError back.

The answer is read bounded (64 KiB) and checked field by field; the error's detail
quotes the endpoint's own words with the grant's secrets masked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from proxy.errors import ErrorCode, describe
from proxy.tokens.redaction import redact
from proxy.tokens.token import Clock, Grant, Token, TokenError

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_MAX_TOKEN_ANSWER_BYTES: Final = 64 * 1024
_MAX_EXPIRES_IN_SECONDS: Final = 366 * 24 * 3600  # rejects inf and absurd lifetimes


class TokenEndpoint:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        grant: Grant,
        *,
        token_url: str,
        margin_seconds: float,
        timeout_seconds: float,
        http_proxy: str | None,
        clock: Clock,
    ) -> None:
        self._session = session
        self._grant = grant  # whom to blame, and which values to mask
        self._token_url = token_url
        self.shown_url = str(URL(token_url).with_user(None).with_query(None))
        self._margin_seconds = margin_seconds
        self._timeout_seconds = timeout_seconds
        self._http_proxy = http_proxy
        self._clock = clock

    async def request(self, fields: Mapping[str, str]) -> Token:
        """POST FIELDS; the token, or a TokenError whose detail is safe to show."""
        form = urlencode(fields)
        sent_at = self._clock()
        try:
            async with asyncio.timeout(self._timeout_seconds):
                async with self._session.post(
                    self._token_url,
                    data=form.encode(),
                    headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"},
                    proxy=self._http_proxy,
                    allow_redirects=False,
                ) as response:
                    body = await read_bounded(response.content, _MAX_TOKEN_ANSWER_BYTES)
                    status = response.status
        except TimeoutError as exc:
            raise self._error(
                504,
                "token_endpoint_unavailable",
                f"POST {self.shown_url} did not answer within {self._timeout_seconds:g} s",
            ) from exc
        except aiohttp.ClientError as exc:
            raise self._error(
                502, "token_endpoint_unavailable", f"POST {self.shown_url} failed: {describe(exc)}"
            ) from exc
        answer = _parse_json_object(body)
        if status == 200:
            return self._parse_token(answer, sent_at)
        if 400 <= status < 500 and status != 429:
            oauth_error = str(answer.get("error") or "") if answer else ""
            description = str(answer.get("error_description") or "") if answer else ""
            reason = " ".join(part for part in (str(status), oauth_error) if part)
            detail = f"POST {self.shown_url} answered {reason}"
            if description:
                detail += f" ({description})"
            hint = self._grant.rejection_hint(oauth_error)
            error = self._error(502, "token_request_failed", f"{detail}: {hint}")
            error.oauth_error = redact(oauth_error, self._grant.secrets()) or None
            raise error
        raise self._error(
            502,
            "token_endpoint_unavailable",
            f"POST {self.shown_url} answered {status}",
            endpoint_answered=True,
        )

    def _parse_token(self, answer: dict[str, object] | None, sent_at: float) -> Token:
        if answer is None:
            raise self._malformed("the answer is not a JSON object")
        access_token = answer.get("access_token")
        expires_in = answer.get("expires_in")
        refresh_token = answer.get("refresh_token")
        token_type = answer.get("token_type", "Bearer")
        if not isinstance(access_token, str) or not access_token:
            raise self._malformed("no access_token in the answer")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            raise self._malformed("no numeric expires_in in the answer")
        if not 0 < expires_in < _MAX_EXPIRES_IN_SECONDS:
            raise self._malformed(f"expires_in is {expires_in}")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise self._malformed("token_type is not Bearer")
        if refresh_token is not None and not isinstance(refresh_token, str):
            raise self._malformed("refresh_token is neither a string nor null")
        margin = min(self._margin_seconds, expires_in / 2)
        return Token(
            access_token=access_token,
            refresh_token=refresh_token or None,
            expires_in_seconds=float(expires_in),
            obtained_at=sent_at,
            renew_at=sent_at + expires_in - margin,
        )

    def _malformed(self, why: str) -> TokenError:
        return self._error(
            502,
            "token_endpoint_unavailable",
            f"POST {self.shown_url} gave a malformed answer: {why}",
            endpoint_answered=True,
        )

    def _error(
        self, status: int, code: ErrorCode, detail: str, *, endpoint_answered: bool = False
    ) -> TokenError:
        # The endpoint's own words end up in detail: never let them echo a secret back,
        # however they encoded it.
        detail = redact(detail, self._grant.secrets())
        return TokenError(status, code, detail, endpoint_answered=endpoint_answered)


async def read_bounded(content: aiohttp.StreamReader, limit_bytes: int) -> bytes:
    """The whole body, however it is split on the wire, but never more than LIMIT_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while size < limit_bytes:
        chunk = await content.read(limit_bytes - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse_json_object(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
