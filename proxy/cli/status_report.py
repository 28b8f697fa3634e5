"""``criteo-proxy status`` for a terminal: the status document as aligned tables."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.cli.status_client import StatusReport
from proxy.observability.logs import escape_unprintable


def render_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    # The values come from a server: no terminal escape sequence gets through.
    return escape_unprintable(str(value))


def _dicts(value: object) -> list[dict[str, object]]:
    """The objects of a list the server sent (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def render_report(report: StatusReport) -> list[str]:
    """Every string of the report is the server's: each goes through _cell, escaped."""
    status = report.status
    lines = [
        f"criteo-proxy {_cell(status.get('version'))}, up {_cell(status.get('uptime_seconds'))} s, "
        f"upstream {_cell(status.get('upstream'))}",
    ]
    for profile in _dicts(status.get("profiles")):
        token = profile.get("token")
        if not isinstance(token, dict):
            token = {}
        lines += [
            "",
            f"profile {_cell(profile.get('name'))} on {_cell(profile.get('listen') or '-')}",
        ]
        lines += render_table(
            ["token", "grant type", "client id", "expires in s", "back-off s", "last error"],
            [
                [
                    token.get("state"),
                    token.get("grant_type"),
                    token.get("client_id"),
                    token.get("expires_in_seconds"),
                    token.get("backoff_seconds") or None,
                    token.get("last_error"),
                ]
            ],
        )
        coordination = profile.get("coordination")
        if isinstance(coordination, dict) and coordination.get("state") not in (None, "off"):
            lines.append("")
            lines += render_table(
                ["coordination", "redis", "members", "last error"],
                [
                    [
                        coordination.get("state"),
                        coordination.get("redis"),
                        coordination.get("members"),
                        coordination.get("last_error"),
                    ]
                ],
            )
        windows = _dicts(profile.get("rate_limits"))
        if windows:
            lines.append("")
            lines += render_table(
                [
                    "bucket",
                    "limit",
                    "remaining",
                    "reset in s",
                    "waiting",
                    "429 seen/retried/refused",
                ],
                [
                    [
                        w.get("bucket"),
                        w.get("limit"),
                        w.get("remaining"),
                        w.get("reset_in_seconds"),
                        w.get("waiting"),
                        f"{w.get('seen_429')}/{w.get('retried_429')}/{w.get('refused')}",
                    ]
                    for w in windows
                ],
            )
        versions = _dicts(profile.get("versions"))
        if versions:
            lines.append("")
            lines += render_table(
                ["version", "requests", "deprecated", "sunset"],
                [
                    [v.get("version"), v.get("requests"), v.get("deprecated"), v.get("sunset")]
                    for v in versions
                ],
            )
    lines += ["", f"last {len(report.requests)} requests (oldest first)"]
    if report.requests:
        lines += render_table(
            [
                "time",
                "profile",
                "method",
                "path",
                "status",
                "ms",
                "retried",
                "request id",
                "error / trace id",
            ],
            [
                [
                    str(r.get("time", ""))[11:23],
                    r.get("profile"),
                    r.get("method"),
                    _short(str(r.get("path", "")), 60),
                    r.get("status"),
                    r.get("duration_ms"),
                    r.get("retried"),
                    r.get("request_id"),
                    r.get("proxy_error") or r.get("criteo_trace_id"),
                ]
                for r in report.requests
            ],
        )
    return lines


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
