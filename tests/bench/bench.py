"""Performance benchmark of criteo-proxy against a bare aiohttp proxy and nginx (issues 7, 15).

One command, from the repository root (not collected by pytest):

    python tests/bench/bench.py [--rounds 3] [--seconds 5] [--stream-mib 1024] [--idle 1000]

Needs nginx, wrk and curl from the system's packages
(`apt-get install nginx-light wrk curl`); without them it says so and exits 0
("skipped"). Everything runs on 127.0.0.1 and nothing is sent anywhere else:

- upstream: a local nginx (temp prefix, one process, access log off) serving a
  small JSON body at /2026-07/advertisers/me, a fake token endpoint at
  POST /oauth2/token and a sparse --stream-mib MiB file at /big;
- targets: direct (nginx itself), the bare reference proxy (bare_proxy.py, next
  to this file), criteo-proxy with default settings (every feature on, access log
  written to a file), and criteo-proxy with one feature off at a time where a
  switch exists (access log, pacing, console history, transient retries) and with
  all four off: the ablation table prints each one's share of the gap to bare;
- load: wrk at 50 connections (-t2 -c50) for every target, and at 1 connection
  (-t1 -c1) for direct, bare, criteo-proxy, log off and all off; --seconds each, in
  --rounds rounds whose order rotates; medians of req/s, p50 and p99, and ratios
  against the bare proxy;
- streaming: /big downloaded with curl directly, through the bare proxy and
  through criteo-proxy (access log off), alternating, --rounds times; MB/s
  medians and the peak RSS (VmHWM) of that criteo-proxy process;
- idle: --idle concurrent keep-alive connections to a fresh criteo-proxy
  (default settings but listen.header_timeout: 60, so that none is closed as
  idle while they are counted), each having had one answer; errors and VmRSS.

Progress goes to stderr, the results (machine, settings, tables, targets met or
missed) to stdout, ready to paste into a note. The machines are noisy: compare
the ratios measured in one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Run as a script: the repository on the path, for tests.ports (standard library only).
sys.path.insert(0, str(REPO))

from tests.ports import free_port  # noqa: E402 - after the path it is found on

PATH = "/2026-07/advertisers/me"
SMALL_JSON = (
    '{"data":[{"id":"12345","type":"Advertiser","attributes":'
    '{"advertiserName":"Bench Advertiser","currency":"EUR","timezone":"Europe/Paris"}}]}'
)
TOKEN_JSON = (
    '{"access_token":"bench-token","token_type":"Bearer","expires_in":900,"refresh_token":null}'
)
BARE, DIRECT = "bare proxy", "direct nginx"
ON, OFF = "criteo-proxy", "  log off"
# criteo-proxy with every feature on (defaults: access log to a file, pacing, console
# history, transient retries), then with one feature off at a time where a switch
# exists, then all of them off: the ablation table says what each one costs.
VARIANTS = {
    ON: "",
    OFF: "logging:\n  access_log: false\n",
    "  pacing off": "rate_limit:\n  enabled: false\n",
    "  console off": "console:\n  enabled: false\n",
    "  retries off": "retry:\n  transient:\n    attempts: 0\n",
    "  all four off": (
        "logging:\n  access_log: false\nrate_limit:\n  enabled: false\n"
        "console:\n  enabled: false\nretry:\n  transient:\n    attempts: 0\n"
    ),
}
LOADS = ((1, 1), (2, 50))  # (wrk threads, connections)
ONE_CONNECTION_TARGETS = (DIRECT, BARE, ON, OFF, "  all four off")

NGINX_CONF = """\
# One process (master_process off): one PID to stop and to watch; one nginx
# worker answers ~10x faster than a Python proxy, so it never is the bottleneck,
# and it leaves the second core to the proxy and wrk.
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = {path} {{ default_type application/json; return 200 '{small}'; }}
        location = /oauth2/token {{ default_type application/json; return 200 '{token}'; }}
        location = /big {{ }}
    }}
}}
"""

IDLE_CLIENT = r"""
import asyncio, sys
PORT, N = int(sys.argv[1]), int(sys.argv[2])
REQUEST = b"GET /2026-07/advertisers/me HTTP/1.1\r\nHost: localhost\r\n\r\n"

async def exchange(reader, writer):
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        await reader.readuntil(b"\r\n0\r\n\r\n")
    else:
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"status {status}")

async def one():
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    await exchange(reader, writer)
    return reader, writer

async def main():
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(one() for _ in range(N)), return_exceptions=True)
    held = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    kinds = sorted({type(e).__name__ + ": " + str(e)[:60] for e in errors})[:3]
    print(f"opened {len(held)} {len(errors)} {loop.time() - started:.2f} {kinds}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent reads the RSS meanwhile
    again = await asyncio.gather(*(exchange(r, w) for r, w in held), return_exceptions=True)
    alive = sum(not isinstance(r, BaseException) for r in again)
    print(f"second {alive}", flush=True)
    for _, writer in held:
        writer.close()

asyncio.run(main())
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{name}: nothing listens on 127.0.0.1:{port}")


def proc_status_mb(pid: int, field: str) -> float:
    """VmHWM / VmRSS of a process in MB (10^6 bytes; /proc's "kB" are KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def uses_uvloop(pid: int) -> bool:
    return "uvloop" in Path(f"/proc/{pid}/maps").read_text()


def raise_nofile() -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]} (was {soft})"


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, seconds: float, threads: int, connections: int, pid: int | None = None
) -> dict[str, float]:
    """wrk's figures, and the CPU the target process PID spent per request (µs)."""
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    if rps is None or p50 is None or p99 is None:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    served = re.search(r"(\d+) requests in", out)
    cpu_us = 0.0
    if pid and served and int(served.group(1)):
        cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / int(served.group(1))
    return {
        "cpu_us": cpu_us,
        "rps": float(rps.group(1)),
        "p50": to_ms(*p50.groups()),
        "p99": to_ms(*p99.groups()),
        "errors": errors,
    }


CURL_FORMAT = "%{http_code} %{size_download} %{speed_download}"


def run_curl(url: str, expected_bytes: int) -> float:
    """Download URL, discard it; return MB/s (10^6 bytes per second)."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", CURL_FORMAT, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if out[0] != "200" or int(float(out[1])) != expected_bytes:
        raise SystemExit(f"download of {url} failed: status {out[0]}, {out[1]} bytes")
    return float(out[2]) / 1e6


def version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


class Processes:
    """Every child this benchmark starts; all stopped on the way out, whatever happens."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, **kwargs)  # type: ignore[call-overload]
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def processes() -> Iterator[Processes]:
    children = Processes()
    try:
        yield children
    finally:
        children.stop_all()


def start_nginx(children: Processes, tmp: Path, port: int, stream_mib: int) -> None:
    (tmp / "www").mkdir()
    subprocess.run(["truncate", "-s", f"{stream_mib}M", str(tmp / "www" / "big")], check=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(tmp=tmp, port=port, path=PATH, small=SMALL_JSON, token=TOKEN_JSON)
    )
    nginx = shutil.which("nginx") or "nginx"
    command = [nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]
    process = children.start(command, stdin=subprocess.DEVNULL)
    wait_listening(port, process, "nginx")


def start_criteo_proxy(
    children: Processes, tmp: Path, name: str, port: int, upstream: str, config_text: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRITEO_CLIENT_ID": "bench-client", "CRITEO_CLIENT_SECRET": "bench-secret"}
    env.pop("CRITEO_PROXY_CONFIG", None)
    command = [sys.executable, "-m", "proxy", "--port", str(port), "--upstream", upstream]
    command += ["--token-url", f"{upstream}/oauth2/token"]
    if config_text:
        config = tmp / f"{name.replace(' ', '-')}.yaml"
        config.write_text(config_text)
        command += ["--config", str(config)]
    with (tmp / f"{name.replace(' ', '-')}.log").open("ab") as stderr:
        process = children.start(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
    wait_listening(port, process, name)
    return process


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def load_rounds(
    urls: dict[str, str], rounds: int, seconds: float, pids: dict[str, int]
) -> dict[tuple[str, int], list[dict[str, float]]]:
    """Every target at 50 connections, the main ones at 1 too; the order rotates per round."""
    plan = [
        (name, threads, conns)
        for name in urls
        for threads, conns in LOADS
        if conns > 1 or name in ONE_CONNECTION_TARGETS
    ]
    results: dict[tuple[str, int], list[dict[str, float]]] = {
        (name, conns): [] for name, _, conns in plan
    }
    for number in range(rounds):
        shift = number * 3 % len(plan)
        for name, threads, conns in plan[shift:] + plan[:shift]:
            log(f"round {number + 1}/{rounds}: {name.strip()}, {conns} connection(s)")
            results[(name, conns)].append(
                run_wrk(urls[name], seconds, threads, conns, pids.get(name))
            )
    return dict(
        sorted(results.items(), key=lambda item: (item[0][1], list(urls).index(item[0][0])))
    )


def print_load_table(results: dict[tuple[str, int], list[dict[str, float]]]) -> dict:
    med = {
        key: {m: median([r[m] for r in runs]) for m in ("rps", "p50", "p99", "cpu_us")}
        for key, runs in results.items()
    }
    print()
    header = f"{'target':22s} {'conns':>5s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}"
    header += f" {'req/s÷bare':>10s} {'p99÷bare':>9s} {'CPU µs/req':>10s} {'errors':>6s}"
    print(header + "  req/s per round")
    for (name, conns), runs in results.items():
        m, bare = med[(name, conns)], med[(BARE, conns)]
        errors = sum(int(r["errors"]) for r in runs)
        per_round = ", ".join(f"{r['rps']:.0f}" for r in runs)
        cpu = f"{m['cpu_us']:10.1f}" if m["cpu_us"] else f"{'-':>10s}"
        print(
            f"{name:22s} {conns:5d} {m['rps']:9.0f} {m['p50']:8.3f} {m['p99']:8.3f} "
            f"{m['rps'] / bare['rps']:10.3f} {m['p99'] / bare['p99']:9.3f} {cpu} {errors:6d}"
            f"  {per_round}"
        )
    return med


def print_ablation(med: dict[tuple[str, int], dict[str, float]]) -> None:
    """What each feature costs: its share of the gap between criteo-proxy and bare.

    In CPU time per request (steady on a noisy machine: other processes do not
    inflate it) and in req/s (what the targets are stated in).
    """
    full, bare = med[(ON, 50)], med[(BARE, 50)]
    cpu_gap = full["cpu_us"] - bare["cpu_us"]
    print()
    print(
        f"ablation at 50 conns: criteo-proxy {full['cpu_us']:.1f} CPU µs/request vs bare "
        f"{bare['cpu_us']:.1f} (gap {cpu_gap:.1f} µs); {full['rps']:.0f} vs {bare['rps']:.0f} req/s"
    )
    columns = f"{'CPU µs/req':>10s} {'saved µs':>9s} {'share of gap':>13s} {'req/s':>9s}"
    print(f"{'feature off':22s} {columns} {'req/s gain':>11s}")
    for name in VARIANTS:
        if name == ON:
            continue
        m = med[(name, 50)]
        saved = full["cpu_us"] - m["cpu_us"]
        share = saved / cpu_gap if cpu_gap > 0 else 0.0
        print(
            f"{name.strip():22s} {m['cpu_us']:10.1f} {saved:9.1f} {share:12.1%} "
            f"{m['rps']:9.0f} {(m['rps'] - full['rps']) / full['rps']:+10.1%}"
        )


def slug(name: str) -> str:
    return name.strip().replace(" ", "-")


def stream_rounds(urls: dict[str, str], rounds: int, size: int) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {name: [] for name in urls}
    for name, url in urls.items():  # warm-up: nginx's page cache for the sparse file, pools
        log(f"streaming warm-up: {name}")
        run_curl(url, size)
    for number in range(rounds):
        for name, url in urls.items():
            log(f"streaming round {number + 1}/{rounds}: {name}")
            speeds[name].append(run_curl(url, size))
    return speeds


def idle_test(port: int, pid: int, count: int) -> tuple[int, int, float, str, float, int]:
    """Hold COUNT keep-alive connections (one answer each); read the proxy's RSS meanwhile."""
    client = subprocess.Popen(
        [sys.executable, "-c", IDLE_CLIENT, str(port), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdin is not None
        assert client.stdout is not None
        first = client.stdout.readline().strip().split(maxsplit=4)
        if len(first) < 4 or first[0] != "opened":
            raise SystemExit(f"idle client failed: {first}")
        opened = int(first[1]), int(first[2]), float(first[3]), first[4] if len(first) > 4 else ""
        rss = proc_status_mb(pid, "VmRSS")
        client.stdin.write("go\n")
        client.stdin.flush()
        second = client.stdout.readline().split()
        alive = int(second[1]) if len(second) == 2 else -1
        client.wait(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return (*opened, rss, alive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--stream-mib", type=int, default=1024)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()

    os.environ["PATH"] += os.pathsep + os.pathsep.join(["/usr/sbin", "/sbin"])  # nginx lives there
    missing = [tool for tool in ("nginx", "wrk", "curl") if shutil.which(tool) is None]
    if missing:
        print(f"bench skipped: {', '.join(missing)} not installed.")
        print("Install them from the system's packages: apt-get install nginx-light wrk curl")
        return 0
    nofile = raise_nofile()
    stream_bytes = args.stream_mib * 1024 * 1024
    verdicts: list[tuple[str, bool]] = []
    check: Callable[[str, bool], None] = lambda text, ok: verdicts.append((text, ok))  # noqa: E731
    started = time.monotonic()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="criteo-bench-") as tmp_name, processes() as children:
        tmp = Path(tmp_name)
        nginx_port = free_port()
        start_nginx(children, tmp, nginx_port, args.stream_mib)
        upstream = f"http://127.0.0.1:{nginx_port}"
        log(f"nginx on {upstream}")

        ports = {name: free_port() for name in (BARE, *VARIANTS)}
        bare_command = [sys.executable, str(HERE / "bare_proxy.py"), "--port", str(ports[BARE])]
        with (tmp / "bare.log").open("ab") as stderr:  # tracebacks when wrk hangs up mid-answer
            bare = children.start(
                [*bare_command, "--upstream", upstream], stdin=subprocess.DEVNULL, stderr=stderr
            )
        wait_listening(ports[BARE], bare, BARE)
        variants = {
            name: start_criteo_proxy(children, tmp, slug(name), ports[name], upstream, config_text)
            for name, config_text in VARIANTS.items()
        }
        on, off = variants[ON], variants[OFF]
        pids = {BARE: bare.pid, ON: on.pid, OFF: off.pid}
        cpu_pids = {BARE: bare.pid, **{name: p.pid for name, p in variants.items()}}

        urls = {DIRECT: f"{upstream}{PATH}"}
        urls |= {name: f"http://127.0.0.1:{port}{PATH}" for name, port in ports.items()}
        for name, url in urls.items():
            log(f"warm-up: {name}")
            for threads, conns in LOADS:
                run_wrk(url, 1, threads, conns)
        loaded = load_rounds(urls, args.rounds, args.seconds, cpu_pids)

        hwm_before_stream = proc_status_mb(off.pid, "VmHWM")
        stream_urls = {
            DIRECT: f"{upstream}/big",
            BARE: f"http://127.0.0.1:{ports[BARE]}/big",
            OFF: f"http://127.0.0.1:{ports[OFF]}/big",
        }
        speeds = stream_rounds(stream_urls, args.rounds, stream_bytes)
        hwm = proc_status_mb(off.pid, "VmHWM")
        hwm_bare = proc_status_mb(bare.pid, "VmHWM")
        uvloop_loaded = {name: uses_uvloop(pid) for name, pid in pids.items()}
        log_bytes = (tmp / f"{slug(ON)}.log").stat().st_size
        tracebacks = sum(
            (tmp / f"{slug(name)}.log").read_text(errors="replace").count("Traceback")
            for name in VARIANTS
        )

        log(f"idle: {args.idle} keep-alive connections to a fresh criteo-proxy")
        idle_port = free_port()
        idle_config = "listen:\n  header_timeout: 60\n"
        idle_proxy = start_criteo_proxy(children, tmp, "idle", idle_port, upstream, idle_config)
        rss_before_idle = proc_status_mb(idle_proxy.pid, "VmRSS")
        held, failed, open_seconds, kinds, idle_rss, alive = idle_test(
            idle_port, idle_proxy.pid, args.idle
        )

    # ---- the report: everything on stdout, ready to paste -------------------
    elapsed = time.monotonic() - started
    affinity = len(os.sched_getaffinity(0))
    uvloop_there = importlib.util.find_spec("uvloop") is not None
    print("criteo-proxy benchmark (tests/bench/bench.py)")
    print(
        f"machine: {os.cpu_count()} CPUs ({affinity} usable), {platform.platform()}, "
        f"load average at start {load_before}, at end "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(f"python: {sys.executable} {platform.python_version()}")
    print(
        f"uvloop installed in that Python: {'yes' if uvloop_there else 'no'}; loaded by: "
        + ", ".join(f"{name} {'yes' if v else 'no'}" for name, v in uvloop_loaded.items())
    )
    print(
        f"aiohttp {version([sys.executable, '-c', 'import aiohttp; print(aiohttp.__version__)'])}"
    )
    print(f"{version(['nginx', '-v'])}; {version(['wrk', '-v'])}; {version(['curl', '-V'])}")
    print(
        f"settings: --rounds {args.rounds} --seconds {args.seconds:g} "
        f"--stream-mib {args.stream_mib} --idle {args.idle}; RLIMIT_NOFILE {nofile}"
    )
    print(
        "upstream: nginx, 1 process (master_process off), access log off, sendfile on; "
        f"{len(SMALL_JSON)}-byte JSON body; fake token endpoint POST /oauth2/token"
    )
    print(
        "load: wrk -t1 -c1 and wrk -t2 -c50 --latency, "
        f"{args.seconds:g} s each, after 1 s warm-up; rounds alternate, order rotates"
    )
    print(
        f"criteo-proxy: default settings (every feature on), access log to a file "
        f"({log_bytes / 1e6:.1f} MB written); the indented ones: the same with one feature "
        f"off (logging.access_log / rate_limit.enabled / console.enabled: false, "
        f"retry.transient.attempts: 0), or all four; tracebacks in their logs: {tracebacks}"
    )
    med = print_load_table(loaded)
    print_ablation(med)

    print()
    print(
        f"streaming {args.stream_mib} MiB with curl (-o /dev/null), {args.rounds} rounds, "
        "MB/s = 10^6 bytes/s; criteo-proxy = the access-log-off instance"
    )
    stream_med = {name: median(v) for name, v in speeds.items()}
    for name, values in speeds.items():
        per_round = ", ".join(f"{v:.0f}" for v in values)
        ratio = stream_med[name] / stream_med[DIRECT]
        versus_bare = f"{stream_med[name] / stream_med[BARE]:5.3f}x bare" if name != DIRECT else ""
        print(
            f"{name:22s} {stream_med[name]:8.0f} MB/s  {ratio:5.3f}x direct "
            f"{versus_bare:10s}  rounds: {per_round}"
        )
    print(
        f"peak RSS (VmHWM) criteo-proxy log off: {hwm:.1f} MB after streaming "
        f"({hwm_before_stream:.1f} MB after the load rounds, before streaming); "
        f"bare proxy: {hwm_bare:.1f} MB"
    )

    print()
    print(
        f"idle: {args.idle} concurrent keep-alive connections, one answer each, to a fresh "
        "criteo-proxy (default settings, listen.header_timeout: 60)"
    )
    print(
        f"held {held}, errors {failed} {kinds}, opened in {open_seconds:.2f} s; "
        f"VmRSS {idle_rss:.1f} MB while held ({rss_before_idle:.1f} MB before); "
        f"{alive} answered a second request afterwards"
    )

    bare50, bare1 = med[(BARE, 50)], med[(BARE, 1)]
    ratio_off = med[(OFF, 50)]["rps"] / bare50["rps"]
    ratio_on = med[(ON, 50)]["rps"] / bare50["rps"]
    p99_on = med[(ON, 50)]["p99"] / bare50["p99"]
    p99_off = med[(OFF, 50)]["p99"] / bare50["p99"]
    added_us = (med[(ON, 1)]["p50"] - bare1["p50"]) * 1000
    stream_ratio = stream_med[OFF] / stream_med[BARE]
    console_on, console_off = med[(ON, 50)]["rps"], med[("  console off", 50)]["rps"]
    print()
    print(
        f"console on vs console.enabled: false, same run, 50 conns: {console_on:.0f} vs "
        f"{console_off:.0f} req/s ({console_on / console_off:.3f}x)"
    )
    check(f"req/s at 50 conns, access log on  ≥ 0.9x bare: {ratio_on:.3f}x", ratio_on >= 0.9)
    check(f"req/s at 50 conns, access log off ≥ 0.95x bare: {ratio_off:.3f}x", ratio_off >= 0.95)
    check(f"p99 at 50 conns ≤ 1.15x bare (log on): {p99_on:.3f}x", p99_on <= 1.15)
    check(f"p99 at 50 conns ≤ 1.15x bare (log off): {p99_off:.3f}x", p99_off <= 1.15)
    check(f"added latency at 1 conn ≤ 40 µs p50 (log on): {added_us:.0f} µs", added_us <= 40)
    check(f"streaming ≥ 1.0x bare: {stream_ratio:.3f}x", stream_ratio >= 1.0)
    check(f"streaming peak RSS ≤ 100 MB: {hwm:.1f} MB", hwm <= 100)
    check(f"{args.idle} idle connections without errors: {failed} errors", failed == 0)
    print()
    print("targets of issue 15:")
    for text, ok in verdicts:
        print(f"  {verdict(ok):6s}  {text}")
    print(f"(benchmark took {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the children are stopped already (processes())
        sys.exit("bench interrupted")
