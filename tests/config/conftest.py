"""Shared by the config tests: the secrets they plant, a file writer, the error-message check."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from proxy.config.schema import ConfigError

SECRET = "file-s3cret-e9b1c7"
API_KEY = "inbound-key-5d0a88"
ENV = {"CRITEO_CLIENT_ID": "env-id", "CRITEO_CLIENT_SECRET": "env-s3cret-0c4f"}


def with_credentials(**sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"credentials": {"client_id": "cid", "client_secret": SECRET}}
    for name, section in sections.items():
        if name == "credentials" and isinstance(section, dict):
            raw["credentials"] = {**raw["credentials"], **section}
        else:
            raw[name] = section
    return raw


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def config_error(call: Any, *args: Any, **kwargs: Any) -> str:
    """The ConfigError's message, checked for the house rules: one line, no secret."""
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message
    assert message.strip() == message
    for secret in (SECRET, API_KEY, ENV["CRITEO_CLIENT_SECRET"]):
        assert secret not in message
    return message
