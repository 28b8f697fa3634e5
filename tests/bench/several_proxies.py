"""Several criteo-proxy processes on one Criteo app's rate-limit window (issue 14, part 3).

One command, from the repository root (not collected by pytest):

    python tests/bench/several_proxies.py [--limit 50] [--window 10] [--seconds 30]
        [--requests 250] [--counts 1,2,4] [--max-wait 30] [--seed 14] [--redis]

With --redis (DESIGN 11), each count runs twice, side by side in one run: the proxies
alone (pacing by the contention heuristic, as before coordination), then the same
proxies sharing one redis-server (Debian's, started here on a free loopback port).

Everything runs on 127.0.0.1. The fake Criteo (proxy/fakes/criteo.py) runs in this
process as a real aiohttp server and meters one app: --limit calls per --window
seconds, in fixed windows on the wall clock, answering 429 past it as Criteo does.
For each proxy count, a fresh fake and that many `criteo-proxy` processes (the
installed command, each its own config file and port, all with the same client
credentials, so one window), each driven by a client of its own.

The demand is the same for every count: one seeded schedule of bursts (--requests
GETs in all, bursts of 3 to 15 concurrent requests at random moments over
--seconds), dealt round-robin to the clients. Each run starts on a window
boundary, so every run has the same windows; it lasts until the last answer.

Per count, one row: requests the clients sent; 2xx they got; 429s that reached
them, Criteo's own passed on ("criteo") and the proxy's `rate_limited` past
rate_limit.max_wait ("proxy"); other errors; the proxies' waits for the window
(requests that waited, p50 and max, from each proxy's /_proxy/requests); the
calls the fake accepted and refused (429); and the share of the capacity of the
windows the run spanned that the accepted calls used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo

PATH = "/2026-07/advertisers/me"
BURST_SIZES = (3, 15)


@dataclass(frozen=True, slots=True)
class Burst:
    at_seconds: float  # after the run's start
    size: int


@dataclass(slots=True)
class Outcomes:
    """What the clients of one run got back."""

    sent: int = 0
    served: int = 0
    criteo_429: int = 0
    proxy_429: int = 0
    other_errors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def note(self, status: int | None, proxy_error: str | None, kind: str = "") -> None:
        self.sent += 1
        if status is not None and 200 <= status < 300:
            self.served += 1
        elif status == 429 and proxy_error == "rate_limited":
            self.proxy_429 += 1
        elif status == 429 and proxy_error is None:
            self.criteo_429 += 1
        else:
            self.other_errors += 1
            label = kind or f"{status} {proxy_error or ''}".strip()
            self.kinds[label] = self.kinds.get(label, 0) + 1


def build_schedule(total: int, seconds: float, seed: int) -> list[Burst]:
    """Bursts of random size at random moments, TOTAL requests in all, in time order."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(min(rng.randint(*BURST_SIZES), total - sum(sizes)))
    return sorted(
        (Burst(round(rng.uniform(0, seconds), 3), size) for size in sizes),
        key=lambda burst: burst.at_seconds,
    )


def cli_command() -> list[str]:
    script = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "proxy"]


async def start_proxy(
    tmp: Path,
    index: int,
    upstream: str,
    max_wait: float,
    requests: int,
    redis_url: str | None = None,
) -> tuple[asyncio.subprocess.Process, str]:
    """One criteo-proxy process with a config of its own on a free port; its URL."""
    config = tmp / f"proxy-{index}.yaml"
    coordination = (
        f"coordination:\n  redis_url: {redis_url}\n  key_prefix: {tmp.name}\n" if redis_url else ""
    )
    config.write_text(
        f"listen:\n  port: 0\n"
        f"upstream:\n  url: {upstream}\n"
        f"rate_limit:\n  max_wait: {max_wait:g}\n"
        f"console:\n  history: {requests + 100}\n"  # every request's wait, for the table
        + coordination
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRITEO_")}
    env.update(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    log = (tmp / f"proxy-{index}.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        *cli_command(),
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=env,
    )
    log.close()
    assert process.stdout is not None
    async with asyncio.timeout(20):
        async for raw in process.stdout:
            line = raw.decode().strip()
            if "serving on " in line:
                return process, line.split("serving on ", 1)[1].strip()
    raise SystemExit(f"criteo-proxy {index} did not start; see {tmp}/proxy-{index}.log")


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    """Until the proxy holds a token: the run then measures pacing, not token fetches."""
    async with asyncio.timeout(20):
        while True:
            async with session.get(url + "/_proxy/ready") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)


async def drive(
    session: aiohttp.ClientSession, url: str, bursts: Sequence[Burst], start: float
) -> Outcomes:
    """Fire each burst at its moment, concurrently, without waiting for the ones before."""
    outcomes = Outcomes()
    loop = asyncio.get_running_loop()

    async def one() -> None:
        try:
            async with session.get(url + PATH) as resp:
                await resp.read()
                outcomes.note(resp.status, resp.headers.get("X-Criteo-Proxy-Error"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcomes.note(None, None, type(exc).__name__)

    tasks: list[asyncio.Task[None]] = []
    for burst in bursts:
        await asyncio.sleep(max(0.0, start + burst.at_seconds - loop.time()))
        tasks.extend(asyncio.create_task(one()) for _ in range(burst.size))
    await asyncio.gather(*tasks)
    return outcomes


async def waits_of(session: aiohttp.ClientSession, url: str) -> list[float]:
    """Every rate-limit wait (seconds) the proxy recorded for the run's requests."""
    async with session.get(url + "/_proxy/requests", params={"limit": "100000"}) as resp:
        records = (await resp.json())["requests"]
    return [
        r["rate_limit_wait_ms"] / 1000
        for r in records
        if r["path"] == PATH and r["rate_limit_wait_ms"] > 0
    ]


@dataclass(frozen=True, slots=True)
class Row:
    proxies: int
    mode: str  # alone (the heuristic) or redis
    outcomes: Outcomes
    waits: list[float]
    accepted: int
    refused: int
    windows: int
    seconds: float
    token_requests: int
    refused_after_first_answer: int
    per_window: list[int]  # calls accepted in each window the run spanned


async def run(
    count: int, schedule: Sequence[Burst], args: argparse.Namespace, redis_url: str | None
) -> Row:
    fake = FakeCriteo(rate_limit=args.limit, rate_window_seconds=args.window)
    runner = web.AppRunner(fake.build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    processes: list[asyncio.subprocess.Process] = []
    # Idle connections are dropped before the proxy's own keep-alive timeout
    # (listen.header_timeout, 10 s) can close one under a new request.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=5)
    timeout = aiohttp.ClientTimeout(total=3 * args.max_wait + 4 * args.window + 60)
    try:
        with tempfile.TemporaryDirectory(prefix="several-proxies-") as tmp:
            urls = []
            for index in range(count):
                process, url = await start_proxy(
                    Path(tmp),
                    index,
                    upstream,
                    args.max_wait,
                    len(schedule) * BURST_SIZES[1],
                    redis_url,
                )
                processes.append(process)
                urls.append(url)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await asyncio.gather(*(wait_ready(session, url) for url in urls))
                refused_before = fake.throttled  # before the run: none, as no call was made
                # Start on a window boundary (and a little after, as the proxies' release
                # margin does): every run then meets the same windows.
                loop = asyncio.get_running_loop()
                now = time.time()
                boundary = (math.floor(now / args.window) + 1) * args.window
                await asyncio.sleep(boundary + 0.05 - now)
                started_epoch, start = time.time(), loop.time()
                results = await asyncio.gather(
                    *(
                        drive(session, url, schedule[index::count], start)
                        for index, url in enumerate(urls)
                    )
                )
                ended_epoch = time.time()
                waits = [w for url in urls for w in await waits_of(session, url)]
            warnings = [
                line
                for log in Path(tmp).glob("proxy-*.log")
                for line in log.read_text(errors="replace").splitlines()
                if " WARNING " in line or " ERROR " in line
            ]
            for line in warnings[:10]:
                print(f"        proxy log: {line[:200]}", file=sys.stderr)
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()
        await runner.cleanup()
    outcomes = Outcomes()
    for result in results:
        outcomes.sent += result.sent
        outcomes.served += result.served
        outcomes.criteo_429 += result.criteo_429
        outcomes.proxy_429 += result.proxy_429
        outcomes.other_errors += result.other_errors
        for kind, n in result.kinds.items():
            outcomes.kinds[kind] = outcomes.kinds.get(kind, 0) + n
    first = math.floor(started_epoch / args.window)
    last = math.floor(ended_epoch / args.window)
    return Row(
        proxies=count,
        mode="redis" if redis_url else "alone",
        outcomes=outcomes,
        waits=waits,
        accepted=sum(fake.rate_counts.values()),
        refused=fake.throttled,
        windows=last - first + 1,
        seconds=ended_epoch - started_epoch,
        token_requests=len(fake.token_requests),
        # The first answer of a run tells the fleet the window; every 429 Criteo answered
        # counts here, as the runs start with a token and no call sent yet.
        refused_after_first_answer=fake.throttled - refused_before,
        per_window=[
            sum(n for (_, index), n in fake.rate_counts.items() if index == window)
            for window in range(first, last + 1)
        ],
    )


@contextlib.contextmanager
def running_redis(wanted: bool) -> Iterator[str | None]:
    """Debian's redis-server on a free loopback port, for the run (None if not WANTED)."""
    if not wanted:
        yield None
        return
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("--redis needs redis-server: apt-get install redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="several-proxies-redis-") as directory:
        process = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


def format_row(row: Row, limit: int) -> str:
    o = row.outcomes
    waits = row.waits
    p50 = f"{statistics.median(waits):.2f}" if waits else "-"
    top = f"{max(waits):.2f}" if waits else "-"
    used = row.accepted / (limit * row.windows)
    return (
        f"{row.proxies:>7} {row.mode:>5} {o.sent:>5} {o.served:>5} {o.criteo_429:>6} "
        f"{o.proxy_429:>5} {o.other_errors:>5} {len(waits):>5} {p50:>6} {top:>6} "
        f"{row.accepted:>8} {row.refused:>7} {row.windows:>7} {used:>6.0%} "
        f"{row.token_requests:>6} {row.seconds:>6.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=50, help="calls per window (one app)")
    parser.add_argument("--window", type=int, default=10, help="window length, seconds")
    parser.add_argument("--seconds", type=float, default=30, help="span of the bursts")
    parser.add_argument(
        "--requests",
        type=int,
        default=250,
        help="total demand per run (250: 1.25x the capacity of 30 s at 50 per 10 s)",
    )
    parser.add_argument("--counts", default="1,2,4", help="proxy counts to run")
    parser.add_argument("--max-wait", type=float, default=30, help="rate_limit.max_wait")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--redis",
        action="store_true",
        help="each count alone and then sharing a redis-server (DESIGN 11), side by side",
    )
    parser.add_argument("--windows", action="store_true", help="print calls per window too")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    schedule = build_schedule(args.requests, args.seconds, args.seed)
    sizes = [burst.size for burst in schedule]
    print(
        f"several criteo-proxy processes on one app's window, on 127.0.0.1: fake Criteo "
        f"limit {args.limit} calls per {args.window} s window (fixed windows, 429 past it)"
    )
    print(
        f"demand per run: {args.requests} GET {PATH} in {len(schedule)} bursts of "
        f"{min(sizes)}-{max(sizes)} concurrent requests at random moments over "
        f"{args.seconds:g} s (seed {args.seed}), dealt round-robin to one client per proxy"
    )
    print(
        f"proxies: the installed criteo-proxy, defaults but rate_limit.max_wait "
        f"{args.max_wait:g} s (and a console history that holds every request), same "
        f"client id; each run starts on a window boundary and lasts until the last answer"
    )
    print(
        "waits: requests that waited for the window, p50 and max of each one's total "
        "wait (the wait after a 429 included); window used: accepted calls over the "
        "capacity of the windows the run spanned"
    )
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs")
    print()
    print(
        "                          429 to client        waits (s)       Criteo calls"
        "             window  token"
    )
    print(
        "proxies  mode  sent   2xx criteo proxy other count    p50    max accepted refused"
        " windows   used   reqs   secs"
    )
    kinds: dict[str, int] = {}
    with running_redis(args.redis) as redis_url:
        for count in counts:
            for url in (None, redis_url) if redis_url else (None,):
                mode = "redis" if url else "alone"
                print(f"[bench] {count} proxies, {mode}...", file=sys.stderr, flush=True)
                row = await run(count, schedule, args, url)
                print(format_row(row, args.limit), flush=True)
                if args.windows:
                    print(f"        calls per window: {row.per_window}", flush=True)
                for kind, n in row.outcomes.kinds.items():
                    kinds[f"{count} proxies {mode}: {kind}"] = n
    if kinds:
        print("other errors: " + ", ".join(f"{k} x{n}" for k, n in kinds.items()))


if __name__ == "__main__":
    asyncio.run(main())
