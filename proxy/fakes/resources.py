"""What the fake's API answers: the resources the README's examples and Criteo's SDKs
read (``CANNED_ANSWERS``), and ``POST /{version}/statistics/report``.

Criteo's answer to a report request is the report itself (synchronous, up to 100,000
rows): CSV, JSON, Excel or XML as the body's ``format`` says. The fake makes CSV and
JSON, one row per day from ``startDate`` to ``endDate`` (at most a year) for the
``advertiserIds`` asked, with the ``dimensions`` and ``metrics`` asked and made-up,
repeatable numbers. Its JSON shape (``Rows`` and ``Total``) is Criteo's as its users describe
it; unverified.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import zlib
from typing import Final

_MAX_DAYS: Final = 366
_DEFAULT_DIMENSIONS: Final = ("AdvertiserId", "Day")
_DEFAULT_METRICS: Final = ("Displays", "Clicks")
_FORMATS: Final = {"csv": "text/csv", "json": "application/json"}

_ADVERTISERS: Final = {
    "data": [
        {"id": "12345", "type": "advertiser", "attributes": {"advertiserName": "Demo advertiser"}}
    ],
    "errors": [],
    "warnings": [],
}
# As the Retail Media SDK reads it (JsonApiPageResponseOfAccount).
_RETAIL_ACCOUNTS: Final = {
    "metadata": {
        "currentPageIndex": 0,
        "currentPageSize": 25,
        "totalItemsAcrossAllPages": 1,
        "totalPages": 1,
    },
    "data": [
        {
            "id": "54321",
            "type": "RetailMediaAccount",
            "attributes": {
                "name": "Demo retail account",
                "type": "demand",
                "subtype": "brand",
                "countries": ["FR"],
                "currency": "EUR",
                "parentAccountLabel": "Demo",
                "timeZone": "Europe/Paris",
            },
        }
    ],
    "errors": [],
    "warnings": [],
}
CANNED_ANSWERS: Final = {
    ("GET", "advertisers/me"): _ADVERTISERS,
    ("GET", "marketing-solutions/me"): _ADVERTISERS,
    ("GET", "retail-media/accounts"): _RETAIL_ACCOUNTS,
}


class ReportRequestError(ValueError):
    """What Criteo would answer 400 to (its validation title)."""


def build_report(body: bytes) -> tuple[str, bytes]:
    """The report BODY asks for: (content type, bytes); ReportRequestError if it is wrong."""
    try:
        asked = json.loads(body)
    except ValueError:
        raise ReportRequestError("The request body is not valid JSON") from None
    if not isinstance(asked, dict):
        raise ReportRequestError("The request body must be a JSON object")
    advertisers = [a.strip() for a in str(asked.get("advertiserIds") or "").split(",")]
    advertisers = [a for a in advertisers if a]
    if not advertisers:
        raise ReportRequestError("At least one advertiser id must be provided")
    report_format = str(asked.get("format") or "").lower()
    if report_format not in _FORMATS:
        raise ReportRequestError(
            f"format {asked.get('format')!r}: the fake makes csv and json reports"
        )
    days = _days(asked.get("startDate"), asked.get("endDate"))
    dimensions = _names(asked.get("dimensions"), _DEFAULT_DIMENSIONS)
    metrics = _names(asked.get("metrics"), _DEFAULT_METRICS)
    rows = [
        {
            **{name: _dimension(name, advertiser, day) for name in dimensions},
            **{name: _metric(name, advertiser, day) for name in metrics},
        }
        for advertiser in advertisers
        for day in days
    ]
    if report_format == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=[*dimensions, *metrics], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return _FORMATS["csv"], text.getvalue().encode()
    total = {name: sum(int(row[name]) for row in rows) for name in metrics}
    return _FORMATS["json"], json.dumps({"Rows": rows, "Total": total}).encode()


def _days(start: object, end: object) -> list[datetime.date]:
    try:
        first = datetime.date.fromisoformat(str(start)[:10])
        last = datetime.date.fromisoformat(str(end)[:10])
    except ValueError:
        raise ReportRequestError("startDate and endDate must be dates (YYYY-MM-DD)") from None
    count = (last - first).days + 1
    if not 1 <= count <= _MAX_DAYS:
        raise ReportRequestError(f"endDate must be on or after startDate, {_MAX_DAYS} days at most")
    return [first + datetime.timedelta(days=n) for n in range(count)]


def _names(value: object, default: tuple[str, ...]) -> list[str]:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    return list(default)


def _dimension(name: str, advertiser: str, day: datetime.date) -> str:
    if name == "AdvertiserId":
        return advertiser
    if name == "Day":
        return day.isoformat()
    return f"{name} of {advertiser}"


def _metric(name: str, advertiser: str, day: datetime.date) -> str:
    """A made-up count, the same every time it is asked for."""
    return str(zlib.crc32(f"{name}/{advertiser}/{day}".encode()) % 1000)
