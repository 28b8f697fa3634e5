"""How long the short commands take to start, next to a bare Python start, in one run.

    python tests/bench/startup.py [--rounds 30]

Times, in alternating rounds (so that the machine's noise falls on every command
alike), N runs of each of:

- ``python -c pass`` (the same interpreter as the installed command): the floor;
- ``python -c 'import re, json'``: what a cache hit cannot do without (the console
  script pip writes imports ``re`` before our code runs; the cache file is JSON);
- ``python -c 'import re, argparse'``: the same for ``--help`` (the grammar);
- ``criteo-proxy token`` answering from its cache (a shell loop of
  ``$(criteo-proxy token)`` pays this once per call), as that loop writes it and with
  ``--upstream URL`` (whose URL check compiles a regular expression);
- ``criteo-proxy --help``;
- ``criteo-proxy status --url URL`` against a running ``criteo-proxy demo``;

and prints each one's median and its ratio to the floor. The demo (a fake Criteo
and the proxy, on 127.0.0.1) fills the token cache once; the entry for Criteo's own token
URL, which cannot be fetched here, is written as the command writes it
(tests/cli/test_cached_token.py holds the two to one key); the cache lives in a
temporary XDG_CACHE_HOME. Ratios, not absolute times, are what compare across
machines and runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from proxy.config.defaults import DEFAULT_PROFILE, DEFAULT_UPSTREAM_URL
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from proxy.tokens.command_cache import TokenCache, default_cache_path


def command() -> list[str]:
    script = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "proxy"]


def start_demo(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    """``criteo-proxy demo --port 0``; returns it, the proxy's URL and the fake's."""
    demo = subprocess.Popen(
        [*command(), "demo", "--port", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert demo.stdout is not None
    proxy_url = fake_url = ""
    for line in demo.stdout:
        if "serving on " in line and not proxy_url:
            proxy_url = line.split("serving on ", 1)[1].split()[0]
        if "fake Criteo API answers on " in line:
            fake_url = line.split("answers on ", 1)[1].split()[0]
        if proxy_url and fake_url:
            return demo, proxy_url, fake_url
    demo.kill()
    raise SystemExit("criteo-proxy demo did not start")


def time_once(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode()[:500]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as plain:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRITEO_")},
            "XDG_CACHE_HOME": cache,
            "CRITEO_CLIENT_ID": DEMO_CLIENT_ID,
            "CRITEO_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        }
        # One entry per profile's file: the plain token's entry has a cache of its own.
        plain_env = {**env, "XDG_CACHE_HOME": plain}
        TokenCache(
            default_cache_path(DEFAULT_PROFILE, plain_env),
            client_id=DEMO_CLIENT_ID,
            token_url=f"{DEFAULT_UPSTREAM_URL}/oauth2/token",
            client_secret=DEMO_CLIENT_SECRET,
        ).save("a-cached-token", expires_in=900)
        demo, proxy_url, fake_url = start_demo(env)
        try:
            token = [*command(), "token", "--upstream", fake_url]
            time_once(token, env)  # fills the cache: every timed call below is a hit
            commands = {
                "python -c pass": ([sys.executable, "-c", "pass"], env),
                # What a cache hit cannot do without: pip's script wrapper imports re,
                # and the cache file is JSON; --help needs argparse instead.
                "python -c 'import re, json'": ([sys.executable, "-c", "import re, json"], env),
                "python -c 'import re, argparse'": (
                    [sys.executable, "-c", "import re, argparse"],
                    env,
                ),
                "criteo-proxy token (cached)": ([*command(), "token"], plain_env),
                "criteo-proxy token --upstream URL (cached)": (token, env),
                "criteo-proxy --help": ([*command(), "--help"], env),
                "criteo-proxy status": ([*command(), "status", "--url", proxy_url], env),
            }
            times: dict[str, list[float]] = {name: [] for name in commands}
            for argv, argv_env in commands.values():  # warm the file system cache
                time_once(argv, argv_env)
            for _ in range(rounds):
                for name, (argv, argv_env) in commands.items():
                    times[name].append(time_once(argv, argv_env))
        finally:
            demo.terminate()
            demo.wait(15)
    floor = statistics.median(times["python -c pass"])
    print(f"{rounds} rounds, each command once per round; medians ({sys.executable})")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:46} {median * 1000:7.1f} ms  {median / floor:5.2f}x python -c pass")


if __name__ == "__main__":
    main()
