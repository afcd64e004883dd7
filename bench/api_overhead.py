"""API overhead benchmark (issue: foundation).

Serves, with uvicorn in this same run, (1) a bare FastAPI app with one route and (2) the
platform on its embedded defaults (SQLite, in-process rate limits, JSON logs at INFO with the
access log on - as it ships; only the rate limits are raised out of the way, they still run),
then measures requests per second of:

* ``GET /api/v1/health`` (bare app)                 - the reference
* ``GET /api/v1/health`` (platform)                 - middleware cost: request ids, rate limit,
                                                      metrics, access log
* ``GET /api/v1/auth/me`` with a Bearer token       - plus the JWT check, the session check
                                                      (cached for ``session_cache_seconds``, then
                                                      the database) and the user's JSON

Both servers run with the same uvicorn settings: one worker, the same event loop and HTTP
implementation (uvloop and httptools when installed, as ``uvicorn[standard]`` brings them), no
uvicorn access log (the platform writes its own). The servers' stderr (the platform's JSON log
lines) goes to a file, as a deployment's would; at the end the access log is checked: one line
per request, carrying request and user ids.

The load comes from wrk when it is installed (``apt-get install wrk``), else from the asyncio
client in ``bench/_loadgen.py``. Rounds alternate between the targets and the best round of each
is kept (the machines are shared and noisy). Prints each rate and the ratios; the target is
auth/me >= 0.5 x bare.

    .venv/bin/python bench/api_overhead.py [--seconds 3] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, path: str = "/api/v1/health", timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not start")


def platform_env(data_dir: str) -> dict[str, str]:
    """The platform's defaults (log level, access log, JSON logs included), rate limits raised."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO_")}
    env.update(
        CO_DATA_DIR=data_dir,
        CO_RATE_LIMIT_DEFAULT="100000000/minute",
        CO_RATE_LIMIT_ANONYMOUS="100000000/minute",
        CO_RATE_LIMIT_AUTH="100000000/minute",
        CO_RATE_LIMIT_TRADING="100000000/minute",
    )
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink)


def server_impl() -> tuple[str, str]:
    """The event loop and HTTP parser uvicorn's "auto" picks, named so both servers get the same."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def uvicorn_args(target: str, port: int, *extra: str) -> list[str]:
    loop, http = server_impl()
    return [PY, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", loop, "--http", http, "--log-level", "warning", "--no-access-log", *extra]  # fmt: skip


def access_log_summary(log: Path, user_id: int) -> str:
    """Check the platform's access log: a JSON line per request with its request id, and the
    user id on the authenticated ones."""
    lines = requests = with_user = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        lines += 1
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") != "request" or not event.get("request_id"):
            continue
        requests += 1
        with_user += event.get("user_id") == user_id and event.get("route") == "/api/v1/auth/me"
    if not with_user:
        raise RuntimeError(f"the access log ({log}) has no /auth/me line with the user id")
    return (
        f"{requests} of {lines} lines are access-log lines with request ids, "
        f"{with_user} of them /auth/me with the user id"
    )


def _wrk_ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    return (
        value / 1000
        if text.endswith("us")
        else value * 1000
        if text.endswith("s") and not text.endswith("ms")
        else value
    )


def load_wrk(port: int, path: str, headers: dict[str, str], seconds: float, connections: int) -> dict:
    """wrk (C, one thread): the load generator takes little of the shared CPU."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*args, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = _wrk_ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1))
    p99 = _wrk_ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    return {"rps": rps, "requests": requests, "errors": int(errors.group(1)) if errors else 0,
            "p50_ms": p50, "p99_ms": p99}  # fmt: skip


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(server: subprocess.Popen[bytes], port: int, path: str, headers: dict[str, str],
             seconds: float, connections: int) -> dict:  # fmt: skip
    """One round of load, with the server's CPU time per request: steadier than req/s on a shared
    machine, where other processes take turns on the cores (they still slow it some: caches)."""
    before = cpu_seconds(server.pid)
    result = load(port, path, headers, seconds, connections)
    after = cpu_seconds(server.pid)
    done = result.get("requests", 0) + result.get("errors", 0)
    result["cpu_us"] = (after - before) / done * 1e6 if before is not None and after and done else None
    return result


def load(port: int, path: str, headers: dict[str, str], seconds: float, connections: int) -> dict:
    if shutil.which("wrk"):
        return load_wrk(port, path, headers, seconds, connections)
    job = {"host": "127.0.0.1", "port": port, "path": path, "headers": headers,
           "seconds": seconds, "connections": connections}  # fmt: skip
    out = subprocess.run(
        [PY, str(ROOT / "bench" / "_loadgen.py"), json.dumps(job)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        env = platform_env(data_dir)
        subprocess.run([PY, "-m", "cryptoorchestrator", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        bare_port, platform_port = free_port(), free_port()
        platform_log = Path(data_dir) / "platform.log"
        servers = [
            start(uvicorn_args("_bare_app:app", bare_port, "--app-dir", str(ROOT / "bench")), env,
                  Path(data_dir) / "bare.log"),
            start(uvicorn_args("cryptoorchestrator.api.app:create_app", platform_port, "--factory"), env,
                  platform_log),
        ]  # fmt: skip
        try:
            try:
                wait_ready(bare_port)
                wait_ready(platform_port)
            except RuntimeError:
                for log in sorted(Path(data_dir).glob("*.log")):
                    print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                raise
            registered = httpx.post(
                f"http://127.0.0.1:{platform_port}/api/v1/auth/register",
                json={"username": "bench", "email": "bench@example.com", "password": "benchmark-passphrase"},
                timeout=30,
            )
            registered.raise_for_status()
            auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
            user_id = int(registered.json()["user"]["id"])
            bare_server, platform_server = servers
            targets = {
                "bare FastAPI  GET /api/v1/health": (bare_server, bare_port, "/api/v1/health", {}),
                "platform      GET /api/v1/health": (platform_server, platform_port, "/api/v1/health", {}),
                "platform      GET /api/v1/auth/me": (
                    platform_server,
                    platform_port,
                    "/api/v1/auth/me",
                    auth,
                ),
            }
            best: dict[str, dict] = {}
            least_cpu: dict[str, float] = {}
            for _, port, path, headers in targets.values():  # warm-up
                load(port, path, headers, 1.0, options.connections)
            for round_number in range(options.rounds):
                for name, (server, port, path, headers) in targets.items():
                    result = measured(server, port, path, headers, options.seconds, options.connections)
                    if result["errors"]:
                        raise RuntimeError(f"{name}: {result['errors']} non-200 answers")
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
                    if result["cpu_us"] is not None:
                        least_cpu[name] = min(least_cpu.get(name, result["cpu_us"]), result["cpu_us"])
                print(f"round {round_number + 1}/{options.rounds} done", file=sys.stderr)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
        access_log = access_log_summary(platform_log, user_id)

    bare = best["bare FastAPI  GET /api/v1/health"]["rps"]
    loop, http = server_impl()
    print(
        f"\nAPI overhead ({options.connections} connections, best of {options.rounds} x {options.seconds}s, "
        f"load from {'wrk' if shutil.which('wrk') else 'bench/_loadgen.py (install wrk: lighter)'}; "
        f"uvicorn: 1 worker, --loop {loop} --http {http} for both; platform logs at its defaults)"
    )
    header = f"{'target':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7}"
    print(f"{header}   {'CPU µs/req':>10} {'x bare':>7}")
    bare_cpu = least_cpu.get("bare FastAPI  GET /api/v1/health")
    for name, result in best.items():
        ratio = result["rps"] / bare
        cpu = least_cpu.get(name)
        cpu_text = f"{cpu:10.1f} {bare_cpu / cpu:7.2f}" if cpu and bare_cpu else f"{'n/a':>10} {'':>7}"
        print(
            f"{name:40} {result['rps']:9.0f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f} {ratio:7.2f}"
            f"   {cpu_text}"
        )
    me_ratio = best["platform      GET /api/v1/auth/me"]["rps"] / bare
    verdict = "met" if me_ratio >= 0.5 else "NOT met"
    print(
        "\n(CPU µs/req: the server's own CPU time per request, least over the rounds; its 'x bare' is\n"
        " bare's CPU per request over this one's, the req/s ratio a server gets when CPU-bound.)"
    )
    print(f"platform log: {access_log}")
    print(f"authenticated /auth/me at {me_ratio:.2f} x the bare route: target (>= 0.50) {verdict}")


if __name__ == "__main__":
    main()
