"""Secrets masked in what a token endpoint says back, in every form it may echo them.

A token endpoint that repeats the request it refused repeats it as it saw it: the form
as posted (``urlencode``: ``quote_plus``), percent-encoded in either case, JSON-escaped,
HTML-escaped. Its words go to the client's error body, ``/_proxy/ready``, the status
document, the console and the log; each of these forms is masked there, not only the
secret as it is.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"


def encoded_forms(secret: str) -> set[str]:
    """SECRET as itself and as each encoding an echo may have put it in."""
    forms = {
        secret,
        quote(secret),  # "/" kept, as quote() does by default
        quote(secret, safe=""),
        quote_plus(secret),  # what urlencode() posted
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
    }
    forms |= {form.replace("/", "\\/") for form in forms if "/" in form}  # JSON's optional \/
    return forms


def build_redactor(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for every form of every SECRET (percent escapes in either case, so
    case-insensitive), longest first so that a form is masked whole; None if none."""
    forms = {form for secret in secrets if secret for form in encoded_forms(secret)}
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(re.escape(form) for form in ordered), re.IGNORECASE)


def redact(text: str, secrets: Iterable[str]) -> str:
    """TEXT with every form of every SECRET replaced by ``***``."""
    pattern = build_redactor(secrets)
    return text if pattern is None else pattern.sub(MASK, text)
