"""Every form a token endpoint may echo a secret in is masked whole, and nothing else."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus, urlencode

import pytest

from proxy.tokens.redaction import build_redactor, encoded_forms, redact

SECRET = 'a/b+c&d=e "f" \\ é'


@pytest.mark.parametrize(
    "echoed",
    [
        SECRET,
        quote(SECRET),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        quote_plus(SECRET).lower(),
        urlencode({"client_secret": SECRET}).split("=", 1)[1],
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        json.dumps(SECRET)[1:-1].replace("/", "\\/"),
        html.escape(SECRET),
    ],
)
def test_each_encoding_of_a_secret_is_masked_whole(echoed: str) -> None:
    assert redact(f"got [{echoed}] from you", [SECRET]) == "got [***] from you"


def test_several_secrets_and_none() -> None:
    assert redact("x-one y-two z", ["one", "two"]) == "x-*** y-*** z"
    assert redact("nothing secret", []) == "nothing secret"
    assert redact("nothing secret", [""]) == "nothing secret"
    assert build_redactor([""]) is None


def test_a_plain_secret_has_one_form() -> None:
    assert encoded_forms("s3cret-41d2") == {"s3cret-41d2"}
