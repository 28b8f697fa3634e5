"""The cache of ``criteo-proxy token`` trusts only what it alone could have written
(issue 20, item 13): a private directory, a small file, the same secret."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.tokens.command_cache import TokenCache, default_cache_path
from tests.conftest import clean_env, run_cli

TOKEN_URL = "http://127.0.0.1:9/oauth2/token"  # never contacted: the cache alone is tested


def _env(secret: str = DEMO_CLIENT_SECRET) -> dict[str, str]:
    return clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=secret)


def _cache(directory: Path, secret: str = DEMO_CLIENT_SECRET) -> TokenCache:
    return TokenCache(
        directory / "token-default.json",
        client_id=DEMO_CLIENT_ID,
        token_url=TOKEN_URL,
        client_secret=secret,
    )


async def test_a_cache_directory_others_may_enter_is_tightened_before_use(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    directory = Path(default_cache_path("default", {"XDG_CACHE_HOME": str(private_cache)})).parent
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)  # as a careless umask or a shared home would leave it
    first = await run_cli("token", "--upstream", criteo_url, env=_env())
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    second = await run_cli("token", "--upstream", criteo_url, env=_env())
    assert second.stdout == first.stdout  # from the cache, now that it can be trusted
    assert len(criteo.token_requests) == 1


def test_a_token_in_a_directory_others_may_write_is_not_trusted(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    _cache(directory).save("tok-" + "a" * 40, expires_in=900)
    assert _cache(directory).load(margin_seconds=60) == "tok-" + "a" * 40
    os.chmod(directory, 0o777)  # anyone could have replaced the file meanwhile
    assert _cache(directory).load(margin_seconds=60) is None


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the directory to another user")
def test_a_cache_directory_of_another_user_is_neither_read_nor_written(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    _cache(directory).save("tok-" + "b" * 40, expires_in=900)
    os.chown(directory, 65534, 65534)
    assert _cache(directory).load(margin_seconds=60) is None
    before = (directory / "token-default.json").read_text()
    _cache(directory).save("tok-" + "c" * 40, expires_in=900)  # refused, logged, no raise
    assert (directory / "token-default.json").read_text() == before


def test_an_oversized_cache_file_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = _cache(directory)
    cache.save("tok-" + "d" * 40, expires_in=900)
    entry = cache.path.read_text()
    assert cache.load(margin_seconds=60) == "tok-" + "d" * 40
    cache.path.write_text(entry.rstrip("\n") + " " * 100_000 + "\n")  # still valid JSON
    assert json.loads(cache.path.read_text())["access_token"] == "tok-" + "d" * 40
    assert cache.load(margin_seconds=60) is None


def test_a_planted_fifo_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    os.mkfifo(directory / "token-default.json", 0o600)
    assert _cache(directory).load(margin_seconds=60) is None  # returns at once, no hang


def test_the_cache_is_keyed_by_the_client_secret(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    _cache(directory, secret="old-secret").save("tok-" + "e" * 40, expires_in=900)
    assert _cache(directory, secret="old-secret").load(margin_seconds=60) == "tok-" + "e" * 40
    assert _cache(directory, secret="new-secret").load(margin_seconds=60) is None
    text = (directory / "token-default.json").read_text()
    assert "old-secret" not in text


async def test_a_changed_secret_gets_a_new_token_not_the_cached_one(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    first = await run_cli("token", "--upstream", criteo_url, env=_env())
    assert first.returncode == 0, first.stderr
    criteo.clients = {DEMO_CLIENT_ID: "rotated-secret"}  # the secret was rotated at Criteo
    second = await run_cli("token", "--upstream", criteo_url, env=_env("rotated-secret"))
    assert second.returncode == 0, second.stderr
    assert second.stdout != first.stdout
    assert len(criteo.token_requests) == 2


def test_a_python_without_blake2_still_tells_secrets_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "_blake2", None)  # as a build without BLAKE2 has it
    _cache(tmp_path).save("the-cached-token", expires_in=900)
    assert _cache(tmp_path).load(margin_seconds=60) == "the-cached-token"
    assert _cache(tmp_path, secret="another-secret").load(margin_seconds=60) is None
    assert DEMO_CLIENT_SECRET not in (tmp_path / "token-default.json").read_text()
