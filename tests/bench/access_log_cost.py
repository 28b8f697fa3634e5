"""Access-log cost: req/s through criteo-proxy with the access log on and off.

Run on demand (not collected by pytest):

    python tests/bench/access_log_cost.py [--seconds 5] [--rounds 3] [--connections 50]

A fake Criteo, the proxy (twice: access log on, writing to a file, and off)
and the load generator run as separate processes on 127.0.0.1; rounds
alternate between the two proxies and the medians are compared in one run,
so the ratio holds even on a noisy machine. The load generator is wrk when it
is installed (apt-get install wrk), else a small aiohttp client.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script: the repository on the path, for tests.ports (standard library only).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ports import free_port

PATH = "/2026-07/advertisers/me"


def wait_listening(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def start_fake(port: int) -> subprocess.Popen[bytes]:
    code = (
        "from aiohttp import web; from proxy.fakes.criteo import FakeCriteo; "
        f"web.run_app(FakeCriteo().build_app(), host='127.0.0.1', port={port}, "
        "access_log=None, print=None)"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def start_proxy(port: int, upstream: str, config: Path, log_file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRITEO_CLIENT_ID": "demo-client", "CRITEO_CLIENT_SECRET": "demo-secret"}
    command = [
        sys.executable,
        "-m",
        "proxy",
        "--config",
        str(config),
        "--port",
        str(port),
        "--upstream",
        upstream,
    ]
    with log_file.open("ab") as log:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)


def run_wrk(url: str, seconds: float, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


def run_aiohttp(url: str, seconds: float, connections: int) -> float:
    code = f"""
import asyncio, time, aiohttp
async def main():
    done = 0
    deadline = time.monotonic() + {seconds}
    conn = aiohttp.TCPConnector(limit={connections})
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker():
            nonlocal done
            while time.monotonic() < deadline:
                async with session.get({url!r}) as resp:
                    await resp.read()
                    done += 1
        await asyncio.gather(*(worker() for _ in range({connections})))
    print(done / {seconds})
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    load = run_wrk if shutil.which("wrk") else run_aiohttp
    tool = "wrk" if load is run_wrk else "aiohttp client (install wrk for steadier figures)"

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fake_port = free_port()
        processes = [start_fake(fake_port)]
        try:
            wait_listening(fake_port)
            upstream = f"http://127.0.0.1:{fake_port}"
            targets = {}
            for name, access_log in (("access log on", "true"), ("access log off", "false")):
                config = work / f"{name.replace(' ', '-')}.yaml"
                config.write_text(f"logging:\n  access_log: {access_log}\n  level: info\n")
                port = free_port()
                processes.append(start_proxy(port, upstream, config, work / f"{port}.log"))
                wait_listening(port)
                targets[name] = f"http://127.0.0.1:{port}{PATH}"
            for url in targets.values():  # warm up: token, connections
                load(url, 1, args.connections)
            results: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, url in targets.items():
                    results[name].append(load(url, args.seconds, args.connections))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)

    print(
        f"load: {tool}, {args.connections} connections, {args.rounds} rounds of "
        f"{args.seconds:g} s, alternating"
    )
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:15s} median {medians[name]:8.0f} req/s   rounds: {rounds}")
    ratio = medians["access log on"] / medians["access log off"]
    print(f"ratio on/off: {ratio:.3f}  (access log cost {100 * (1 - ratio):.1f} %)")


if __name__ == "__main__":
    main()
