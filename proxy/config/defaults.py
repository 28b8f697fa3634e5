"""What holds when nothing is configured, and the environment variables that configure.

Kept apart from the schema's dataclasses (``schema`` re-exports them), so that the
command line's grammar and a cached ``criteo-proxy token`` read them without loading
the config: ``dataclasses`` alone costs more than half a bare Python start.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from typing import Final

DEFAULT_PROFILE: Final = "default"  # the top level of the config (DESIGN 9)
CONFIG_ENV_VAR: Final = "CRITEO_PROXY_CONFIG"
CLIENT_ID_ENV_VAR: Final = "CRITEO_CLIENT_ID"
CLIENT_SECRET_ENV_VAR: Final = "CRITEO_CLIENT_SECRET"  # noqa: S105 - a variable name
# listen.host where neither --host nor the file sets it (the Docker image: 0.0.0.0, so that
# arguments after the image name never drop the address its published port needs).
HOST_ENV_VAR: Final = "CRITEO_PROXY_HOST"

DEFAULT_UPSTREAM_URL: Final = "https://api.criteo.com"
DEFAULT_REFRESH_MARGIN_SECONDS: Final = 60.0
