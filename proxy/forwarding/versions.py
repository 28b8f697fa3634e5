"""The API versions in the paths the proxy forwards, and the ones Criteo is retiring.

Every forwarded answer is counted under its version (the first path segment,
``2026-07``, ``preview``...), for the console. One carrying ``Deprecation`` or
``Sunset``, or a warning of type ``deprecation`` in its JSON envelope (CRITEO.md: Criteo
may say it only there), is counted in the metrics and logged once per version at
WARNING: the owner of a tool with a hard-coded version learns it before Criteo
answers 410.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from multidict import CIMultiDictProxy

from proxy.observability.metrics import ProfileMetrics

log = logging.getLogger("criteo_proxy.forward")

_API_VERSION: Final = re.compile(r"\d{4}-\d{2}|preview|legacy|experimental")
# Versions are client-chosen text: the table is bounded, whatever the paths.
MAX_VERSIONS: Final = 64
_MAX_SUNSET_CHARS: Final = 64  # an HTTP-date is 29


@dataclass(slots=True)
class VersionSeen:
    version: str
    requests: int = 0
    deprecated: bool = False
    sunset: str | None = None
    retired: bool = False  # Criteo answered 410 Gone: the version is decommissioned


class ApiVersions:
    def __init__(self, metrics: ProfileMetrics) -> None:
        self._metrics = metrics
        self._seen: dict[str, VersionSeen] = {}
        self._logged: set[str] = set()  # bounded like the metric labels

    def seen(self) -> list[VersionSeen]:
        return sorted(self._seen.values(), key=lambda v: v.version)

    def note(self, status: int, headers: CIMultiDictProxy[str], path_and_query: str) -> bool:
        """Count one answer under its version; Deprecation / Sunset logged once per version.

        True if its headers said the version is deprecated (so that a warning in its
        body, read later, does not count the same answer twice)."""
        version = _version_of(path_and_query)
        seen = self._seen_for(version)
        if seen is not None:
            seen.requests += 1
            if status == 410:
                seen.retired = True
        if "Deprecation" not in headers and "Sunset" not in headers:
            return False
        sunset = headers.get("Sunset")
        if sunset is not None and not (sunset.isprintable() and len(sunset) <= _MAX_SUNSET_CHARS):
            sunset = None  # the upstream's text, shown and logged: only if it can be a date
        if seen is not None:
            seen.sunset = sunset or seen.sunset
        self._deprecated(version, seen, f" (sunset {sunset})" if sunset else "")
        return True

    def note_warnings(self, path_and_query: str, said: list[str]) -> None:
        """An answer whose envelope's warnings said the version is deprecated: SAID."""
        if said:
            version = _version_of(path_and_query)
            self._deprecated(version, self._seen_for(version), f' (Criteo says: "{said[0]}")')

    def _seen_for(self, version: str) -> VersionSeen | None:
        seen = self._seen.get(version)
        if seen is None and version != "other" and len(self._seen) < MAX_VERSIONS:
            seen = self._seen[version] = VersionSeen(version)
        return seen

    def _deprecated(self, version: str, seen: VersionSeen | None, why: str) -> None:
        self._metrics.deprecations.labels(version).inc()
        if seen is not None:
            seen.deprecated = True
        if version in self._logged or len(self._logged) >= MAX_VERSIONS:
            return
        self._logged.add(version)
        log.warning(
            "Criteo API version %s is deprecated%s: update the tools that call /%s/... "
            "before Criteo answers 410",
            version,
            why,
            version,
        )


def _version_of(path_and_query: str) -> str:
    """The first path segment if it names a version, else "other" (bounded labels)."""
    version = path_and_query.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return version if _API_VERSION.fullmatch(version) else "other"
