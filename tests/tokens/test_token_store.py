"""The refresh-token store: 0600 in 0700, replaced atomically, an unusable file refused at start.

DESIGN.md §3.4. ``TokenStore.save`` is checked in process; the refusal at start
through the installed command, against the fake Criteo.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from proxy.tokens.store import TokenStore
from tests.conftest import assert_one_line_error, demo_env
from tests.tokens.conftest import AUTHORIZE_AGAIN, run_to_exit


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- 3. TokenStore.save: modes and atomic replacement (in process) -----------------------


@pytest.mark.usefixtures("umask_zero")
def test_save_creates_the_dir_0700_and_the_file_0600_even_with_umask_0_and_at_every_instant(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes_before_rename: list[int] = []
    real_replace = os.replace

    def spying_replace(source: Any, target: Any) -> None:
        modes_before_rename.append(stat.S_IMODE(os.stat(source).st_mode))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spying_replace)
    store = TokenStore(str(store_path))

    store.save(DEMO_CLIENT_ID, "rt-first")
    store.save(DEMO_CLIENT_ID, "rt-second")

    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert modes_before_rename == [0o600, 0o600]  # the temp file was never wider
    assert store.load().refresh_token == "rt-second"
    assert [p.name for p in store_path.parent.iterdir()] == [store_path.name]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_save_leaves_the_previous_file_intact_and_no_temp_file(
    failing: str, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TokenStore(str(store_path))
    store.save(DEMO_CLIENT_ID, "rt-old")
    before = store_path.read_bytes()

    def disk_full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(DEMO_CLIENT_ID, "rt-new")
    monkeypatch.undo()

    assert store_path.read_bytes() == before
    assert store.load().refresh_token == "rt-old"
    assert [p.name for p in store_path.parent.iterdir()] == [store_path.name]


def test_save_under_a_parent_that_is_a_file_raises_oserror_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file\n", encoding="utf-8")

    with pytest.raises(OSError):  # noqa: PT011 - which errno depends on the platform
        TokenStore(str(blocker / "tokens.json")).save(DEMO_CLIENT_ID, "rt-x")

    assert blocker.read_text(encoding="utf-8") == "a file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


# --- 11. an unusable token store at start ------------------------------------------------


def _missing(path: Path) -> None:
    pass


def _directory(path: Path) -> None:
    path.mkdir(parents=True, mode=0o700)


def _write(text: str, mode: int = 0o600) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)

    return write


def _other_client(path: Path) -> None:
    TokenStore(str(path)).save("someone-else", "rt-of-someone-else")


VALID_STORE = json.dumps({"version": 1, "client_id": DEMO_CLIENT_ID, "refresh_token": "rt-x"})
FIX_HINTS = (AUTHORIZE_AGAIN, "chmod 600", "remove", "delete", "rm ")

BAD_STORES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "missing": (_missing, (AUTHORIZE_AGAIN,)),
    "a-directory": (_directory, ()),
    "not-json": (_write("not json {"), ("corrupt", AUTHORIZE_AGAIN)),
    "json-without-refresh-token": (
        _write(json.dumps({"client_id": DEMO_CLIENT_ID})),
        ("corrupt", AUTHORIZE_AGAIN),
    ),
    "empty": (_write(""), ("corrupt", AUTHORIZE_AGAIN)),
    "readable-by-others-644": (_write(VALID_STORE, 0o644), ("chmod 600",)),
    "readable-by-group-640": (_write(VALID_STORE, 0o640), ("chmod 600",)),
    "another-client-id": (_other_client, ("someone-else", AUTHORIZE_AGAIN)),
}


@pytest.mark.parametrize(("make_bad", "fragments"), BAD_STORES.values(), ids=BAD_STORES.keys())
async def test_an_unusable_token_store_at_start_is_exit_2_with_one_line_naming_file_and_fix(
    make_bad: Callable[[Path], None],
    fragments: tuple[str, ...],
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
) -> None:
    make_bad(store_path)
    before = store_path.read_bytes() if store_path.is_file() else None

    result = await run_to_exit("--config", str(config_file), env=demo_env())

    line = assert_one_line_error(result, 2, "credentials.token_store", str(store_path), *fragments)
    assert any(hint in line for hint in FIX_HINTS), f"no way to fix it in: {line}"
    assert "serving on" not in result.stdout
    assert criteo.token_requests == []
    if before is not None:
        assert store_path.read_bytes() == before
