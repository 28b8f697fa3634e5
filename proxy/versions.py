"""The API versions in the paths the proxy forwards, and the ones Criteo is retiring.

A response carrying ``Deprecation`` or ``Sunset`` is counted every time and
logged once per version at WARNING: the owner of a tool with a hard-coded
version learns it before Criteo answers 410.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from multidict import CIMultiDictProxy

from .metrics import Metrics

log = logging.getLogger("criteo_proxy.forward")

_API_VERSION: Final = re.compile(r"\d{4}-\d{2}|preview|legacy|experimental")


class ApiVersions:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._deprecated_seen: set[str] = set()

    def note(self, headers: CIMultiDictProxy[str], path_and_query: str) -> None:
        """Deprecation / Sunset: counted every time, logged once per API version."""
        if "Deprecation" not in headers and "Sunset" not in headers:
            return
        version = path_and_query.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        if not _API_VERSION.fullmatch(version):
            version = "other"  # bounded labels, whatever the paths
        self._metrics.deprecations.labels(version).inc()
        if version in self._deprecated_seen:
            return
        self._deprecated_seen.add(version)
        sunset = headers.get("Sunset")
        log.warning(
            "Criteo API version %s is deprecated%s: update the tools that call /%s/... "
            "before Criteo answers 410",
            version,
            f" (sunset {sunset})" if sunset else "",
            version,
        )
