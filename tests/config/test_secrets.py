"""Secrets never show: not in a Config's repr or str, not in a Secret's, not in an error."""

from __future__ import annotations

from pathlib import Path

from proxy.config.loader import load_config, parse_config
from proxy.config.schema import Secret
from tests.config.conftest import API_KEY, ENV, SECRET, config_error, with_credentials

# --- secrets never show ------------------------------------------------------------------------


def test_repr_and_str_of_a_config_never_show_the_secret_or_api_keys(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-s3cret\n", encoding="utf-8")
    configs = [
        parse_config(with_credentials(security={"api_keys": [API_KEY]}), environ={}),
        parse_config(
            {"credentials": {"client_id": "cid", "client_secret_file": str(secret_file)}},
            environ={},
        ),
        load_config(None, environ=ENV),
    ]
    for config in configs:
        for text in (repr(config), str(config), repr(config.credentials), str(config.security)):
            for secret in (SECRET, API_KEY, "from-a-file-s3cret", ENV["CRITEO_CLIENT_SECRET"]):
                assert secret not in text
    assert "***" in repr(configs[0].credentials)


def test_secret_is_redacted_everywhere_but_reveal() -> None:
    secret = Secret(SECRET)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % secret,  # noqa: UP031 - the old formatting path, as logging uses
        "%r" % secret,  # noqa: UP031
        format(secret, ""),
        repr([secret]),
        repr({"k": secret}),
    ]
    for text in shown:
        assert SECRET not in text
        assert "***" in text
    assert repr(secret) == "Secret('***')"
    assert secret.reveal() == SECRET
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    assert secret != SECRET  # never equal to the bare string, so no accidental comparisons
    assert secret
    assert not Secret("")


def test_a_url_with_user_info_is_refused_without_showing_it() -> None:
    """A password in upstream.url would otherwise break every request (and leak in errors)."""
    raw = with_credentials(upstream={"url": "https://user:hunter2-pw@api.criteo.com"})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("upstream.url:")
    assert "hunter2-pw" not in message
