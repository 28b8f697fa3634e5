"""What coordination on Redis (DESIGN 11) costs one proxy: req/s at 50 connections with
coordination on and off, side by side in one run (issue 21's target: within 10 %).

One command, from the repository root (not collected by pytest):

    python tests/bench/coordination_cost.py [--rounds 5] [--seconds 5]

Needs nginx, wrk and redis-server from the system's packages (`apt-get install
nginx-light wrk redis-server`); without them it says so and exits 0. Everything runs
on 127.0.0.1: nginx is the upstream (a small JSON answer and a token endpoint, as in
bench.py, so unmetered like most of Criteo's answers between window updates), a
redis-server on a free port, and two criteo-proxy processes with default settings,
one of them a member of a fleet on that Redis. wrk -t2 -c50 runs against each in
alternating rounds; the table gives medians, the ratio, and the Redis calls a request
cost (from Redis's own command counters).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402 - the sibling benchmark's helpers (nginx, wrk, processes)

OFF, ON = "coordination off", "coordination on"


def redis_calls(port: int) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(n) for n in re.findall(r"calls=(\d+)", out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    missing = [t for t in ("nginx", "wrk", "redis-server", "redis-cli") if not shutil.which(t)]
    if missing:
        print(f"skipped: needs {', '.join(missing)} (apt-get install nginx-light wrk redis-server)")
        return 0
    bench.raise_nofile()
    with bench.processes() as children, tempfile.TemporaryDirectory(prefix="coord-") as name:
        tmp = Path(name)
        nginx_port, redis_port = bench.free_port(), bench.free_port()
        bench.start_nginx(children, tmp, nginx_port, 1)
        redis = children.start(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        bench.wait_listening(redis_port, redis, "redis-server")
        upstream = f"http://127.0.0.1:{nginx_port}"
        fleet = f"coordination:\n  redis_url: redis://127.0.0.1:{redis_port}/0\n"
        ports = {OFF: bench.free_port(), ON: bench.free_port()}
        pids = {
            OFF: bench.start_criteo_proxy(children, tmp, OFF, ports[OFF], upstream, "").pid,
            ON: bench.start_criteo_proxy(children, tmp, ON, ports[ON], upstream, fleet).pid,
        }
        urls = {target: f"http://127.0.0.1:{port}{bench.PATH}" for target, port in ports.items()}
        for url in urls.values():  # a token, then the first answer (the window's probe)
            subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
        results: dict[str, list[dict[str, float]]] = {OFF: [], ON: []}
        calls_per_request: list[float] = []
        for number in range(args.rounds):
            for target in (OFF, ON) if number % 2 == 0 else (ON, OFF):
                bench.log(f"round {number + 1}/{args.rounds}: {target}")
                before = redis_calls(redis_port)
                run = bench.run_wrk(urls[target], args.seconds, 2, 50, pids[target])
                results[target].append(run)
                if target == ON:
                    served = run["rps"] * args.seconds
                    calls_per_request.append((redis_calls(redis_port) - before) / served)
    med = {
        t: {m: bench.median([r[m] for r in runs]) for m in runs[0]} for t, runs in results.items()
    }
    print(
        f"python {sys.version.split()[0]}; wrk -t2 -c50, {args.seconds:g} s x {args.rounds} rounds"
    )
    print(f"{'':18} {'req/s':>8} {'p99 ms':>8} {'CPU µs/req':>11} {'errors':>7}")
    for target in (OFF, ON):
        m = med[target]
        figures = f"{m['rps']:>8.0f} {m['p99']:>8.1f} {m['cpu_us']:>11.0f} {m['errors']:>7.0f}"
        print(f"{target:18} {figures}")
    ratio = med[ON]["rps"] / med[OFF]["rps"]
    print(f"ratio on/off: {ratio:.3f} ({'MET' if ratio >= 0.9 else 'MISSED'}: within 10 %)")
    print(f"Redis calls per request with coordination on: {bench.median(calls_per_request):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
