"""One member of an app's fleet: one profile of one process, and what it shares.

Built from the shared ``coordination`` section and the profile's credentials; it
says whether sharing is on (``active``: Redis answers and members agree on the key)
and what the console shows of it.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable

from proxy.config.schema import Config, CoordinationConfig, Secret
from proxy.coordination.access_token import SharedAccessToken
from proxy.coordination.keys import AppKeys, app_id
from proxy.coordination.link import Link, Operation, is_loopback_redis
from proxy.coordination.members import Members
from proxy.coordination.outcomes import CoordinationStatus
from proxy.coordination.refresh_token import FleetRefreshToken
from proxy.coordination.sealing import Sealer
from proxy.coordination.windows import FleetWindows

log = logging.getLogger("criteo_proxy.coordination")

_DISAGREE = "members disagree on coordination.encryption_key: acting alone for this app"


class Member:
    def __init__(
        self,
        config: CoordinationConfig,
        *,
        token_url: str,
        client_id: str,
        grant_type: str,
        client_secret: str,
        in_flight_seconds: float = 130.0,
        on_error: Callable[[Operation], None] = lambda operation: None,
        on_state: Callable[[bool], None] = lambda up: None,
    ) -> None:
        assert config.redis_url is not None  # noqa: S101 - built only with coordination on
        url = config.redis_url.reveal()
        self.link = Link(
            url,
            timeout_seconds=config.timeout,
            ca_file=config.ca_file,
            on_error=on_error,
            on_state=on_state,
        )
        if url.startswith("redis://") and not is_loopback_redis(url):
            log.warning(
                "coordination: Redis %s is reached without TLS: tokens travel encrypted, but "
                "use rediss:// (and a password) off this machine",
                self.link.shown_url,
            )
        keys = AppKeys(config.key_prefix, app_id(token_url, client_id, grant_type))
        sealer = Sealer(
            _key_material(config.encryption_key) or client_secret.encode(),
            _key_material(config.previous_encryption_key),
        )
        member_id = secrets.token_hex(8)
        self.access_token = SharedAccessToken(self.link, keys, sealer, owner=member_id)
        self.refresh_token = FleetRefreshToken(self.link, keys, sealer)
        self.windows = FleetWindows(self.link, keys, in_flight_seconds=in_flight_seconds)
        self.members = Members(self.link, keys, member_id=member_id)
        self._disagrees = False

    @classmethod
    def for_profile(
        cls,
        config: Config,
        *,
        on_error: Callable[[Operation], None] = lambda operation: None,
        on_state: Callable[[bool], None] = lambda up: None,
    ) -> Member:
        """The member that one profile's app makes of this process."""
        credentials = config.credentials
        return cls(
            config.coordination,
            token_url=config.upstream.effective_token_url,
            client_id=credentials.client_id,
            grant_type=credentials.grant_type,
            client_secret=credentials.client_secret.reveal(),
            # the longest a send can go unanswered before its failure is known
            in_flight_seconds=config.upstream.connect_timeout + config.upstream.response_timeout,
            on_error=on_error,
            on_state=on_state,
        )

    @property
    def active(self) -> bool:
        """Whether to share now: Redis answers and no value there is beyond our keys."""
        return self.link.is_up and not self._disagrees

    def disagree(self) -> None:
        """A value in Redis that no key of ours opens: never overwrite it, act alone."""
        if not self._disagrees:
            self._disagrees = True
            log.warning("coordination: %s", _DISAGREE)

    async def start(self, *, announce: bool = True) -> None:
        await self.link.start()
        if announce:
            self.link.on_rejoin(self.members.announce)
            if self.link.is_up:
                await self.members.announce()
            self.members.start()

    async def aclose(self) -> None:
        await self.members.aclose()
        await self.link.aclose()

    def status(self) -> CoordinationStatus:
        active = self.active
        return CoordinationStatus(
            state="up" if active else "down",
            redis=self.link.shown_url,
            members=self.members.count if active else None,
            last_error=_DISAGREE if self._disagrees else self.link.last_error,
        )


def _key_material(key: Secret | None) -> bytes | None:
    """The configured key's bytes (validated as base64 when the config was loaded)."""
    return None if key is None else base64.b64decode(key.reveal().strip())
