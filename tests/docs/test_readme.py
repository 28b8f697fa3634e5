"""The README's first minutes: its two commands, its examples on a live API version,
and every curl example answered by the demo as written."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from proxy.fakes.criteo import LIVE_API_VERSION
from tests.conftest import StartCliServer

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
VERSIONED_PATH = re.compile(r"/(20\d\d-\d\d)/")


def code_blocks(language: str) -> list[list[str]]:
    return [
        block.splitlines()
        for block in re.findall(rf"^```{language}\n(.*?)^```$", README, re.MULTILINE | re.DOTALL)
    ]


def command_of(line: str) -> str:
    """A line of a shell block without its trailing comment."""
    return line.split("   #", 1)[0].strip()


def test_the_first_command_installs_in_a_venv_and_runs_the_demo() -> None:
    """PEP 668: Debian's and Ubuntu's Python refuse a bare `pip install .`
    (tests/docker/first_run.sh runs this line in a fresh Debian)."""
    first = command_of(code_blocks("sh")[0][0])
    steps = first.split(" && ")
    assert steps[0] == "python3 -m venv .venv"
    assert steps[1] == ". .venv/bin/activate"
    assert steps[-1] == "criteo-proxy demo"
    assert "pip install ." in steps


def test_the_second_command_is_what_ci_runs() -> None:
    second = command_of(code_blocks("sh")[0][1])
    assert second.endswith("&& pytest")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert second in ci.splitlines()


def test_the_same_two_commands_are_given_for_powershell() -> None:
    (block,) = [b for b in code_blocks("powershell") if any("criteo-proxy demo" in x for x in b)]
    demo, tests = (command_of(line.replace("  #", "   #")) for line in block[:2])
    assert "venv" in demo
    assert "pip install ." in demo
    assert demo.endswith("criteo-proxy demo")
    assert "pip install -e '.[dev]'" in tests
    assert tests.endswith("pytest")


def test_every_versioned_path_of_the_readme_is_on_the_live_version() -> None:
    """One edit at the next sunset: fakes' LIVE_API_VERSION, and these paths."""
    versions = set(VERSIONED_PATH.findall(README))
    assert versions == {LIVE_API_VERSION}


def test_every_key_of_config_example_yaml_is_in_the_readmes_table() -> None:
    example = yaml.safe_load((REPO / "config.example.yaml").read_text(encoding="utf-8"))

    def keys(mapping: dict[str, object], prefix: str = "") -> list[str]:
        found = []
        for name, value in mapping.items():
            if isinstance(value, dict):
                found += keys(value, f"{prefix}{name}.")
            else:
                found.append(f"{prefix}{name}")
        return found

    missing = [key for key in keys(example) if f"| `{key}` |" not in README]
    assert missing == []


def curl_examples() -> list[str]:
    """The README's curl commands to the proxy's default port, continuations joined."""
    commands = []
    for block in code_blocks("sh"):
        text = "\n".join(block).replace("\\\n", " ")
        for line in text.splitlines():
            line = command_of(line.replace(" #", "   #"))
            to_the_proxy = re.search(r"//(localhost|127\.0\.0\.1):8080/", line)
            elsewhere = "--unix-socket" in line or "X-Proxy-Key" in line
            if line.startswith("curl ") and to_the_proxy and not elsewhere:
                commands.append(line)
    return commands


def test_the_readme_has_curl_examples_to_check() -> None:
    examples = curl_examples()
    assert any("/advertisers/me" in e for e in examples)
    assert any("statistics/report" in e for e in examples)


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl: apt-get install curl")
async def test_every_curl_example_of_the_readme_is_answered_by_the_demo(
    start_cli_server: StartCliServer, tmp_path: Path
) -> None:
    """What a new user pastes after `criteo-proxy demo`: each answers 2xx (on the
    demo's port, which is 8080 unless that is taken)."""
    demo = await start_cli_server("demo", "--port", "0")
    port = demo.url.rsplit(":", 1)[1]
    await demo.wait_for_output(lambda: "/_proxy/" in demo.stdout)
    printed = set(VERSIONED_PATH.findall(demo.stdout))
    assert printed == {LIVE_API_VERSION}, demo.stdout
    for example in curl_examples():
        words = [re.sub(r":8080/", f":{port}/", word) for word in shlex.split(example)]
        process = await asyncio.create_subprocess_exec(
            *words,
            "-sS",
            "-w",
            "\n%{http_code}",  # where the example sends the answer, then the status
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*"},
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, (example, stderr)
        status = stdout.decode().rsplit("\n", 1)[-1]
        assert status.startswith("2"), (example, stdout[-300:])
    assert await demo.stop() == 0
