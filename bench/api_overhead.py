"""API overhead benchmark (issue: foundation).

Serves, with uvicorn in this same run, (1) a bare FastAPI app with one route and (2) the
platform on its embedded defaults (SQLite, memory rate limits raised out of the way), then
measures requests per second of:

* ``GET /api/v1/health`` (bare app)                 - the reference
* ``GET /api/v1/health`` (platform)                 - middleware cost: request ids, metrics, rate limit
* ``GET /api/v1/auth/me`` with a Bearer token       - plus JWT check and the session lookup in the DB

The load comes from wrk when it is installed (``apt-get install wrk``), else from the asyncio
client in ``bench/_loadgen.py``. Rounds alternate between the targets and the best round of each
is kept (the machines are shared and noisy). Prints each rate and the ratios; the target is
auth/me >= 0.5 x bare.

    .venv/bin/python bench/api_overhead.py [--seconds 3] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO_")}
    env.update(
        CO_DATA_DIR=data_dir,
        CO_LOG_LEVEL="WARNING",
        CO_RATE_LIMIT_DEFAULT="100000000/minute",
        CO_RATE_LIMIT_ANONYMOUS="100000000/minute",
        CO_RATE_LIMIT_AUTH="100000000/minute",
        CO_RATE_LIMIT_TRADING="100000000/minute",
    )
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def uvicorn_args(target: str, port: int, *extra: str) -> list[str]:
    return [PY, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", *extra]  # fmt: skip


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
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = _wrk_ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1))
    p99 = _wrk_ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    return {"rps": rps, "errors": int(errors.group(1)) if errors else 0, "p50_ms": p50, "p99_ms": p99}


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
        servers = [
            start(uvicorn_args("_bare_app:app", bare_port, "--app-dir", str(ROOT / "bench")), env),
            start(uvicorn_args("cryptoorchestrator.api.app:create_app", platform_port, "--factory"), env),
        ]
        try:
            wait_ready(bare_port)
            wait_ready(platform_port)
            registered = httpx.post(
                f"http://127.0.0.1:{platform_port}/api/v1/auth/register",
                json={"username": "bench", "email": "bench@example.com", "password": "benchmark-passphrase"},
                timeout=30,
            )
            registered.raise_for_status()
            auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
            targets = {
                "bare FastAPI  GET /api/v1/health": (bare_port, "/api/v1/health", {}),
                "platform      GET /api/v1/health": (platform_port, "/api/v1/health", {}),
                "platform      GET /api/v1/auth/me": (platform_port, "/api/v1/auth/me", auth),
            }
            best: dict[str, dict] = {}
            for port, path, headers in targets.values():  # warm-up
                load(port, path, headers, 1.0, options.connections)
            for round_number in range(options.rounds):
                for name, (port, path, headers) in targets.items():
                    result = load(port, path, headers, options.seconds, options.connections)
                    if result["errors"]:
                        raise RuntimeError(f"{name}: {result['errors']} non-200 answers")
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
                print(f"round {round_number + 1}/{options.rounds} done", file=sys.stderr)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)

    bare = best["bare FastAPI  GET /api/v1/health"]["rps"]
    print(
        f"\nAPI overhead ({options.connections} connections, best of {options.rounds} x {options.seconds}s, "
        f"load from {'wrk' if shutil.which('wrk') else 'bench/_loadgen.py (install wrk: lighter)'})"
    )
    print(f"{'target':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7}")
    for name, result in best.items():
        ratio = result["rps"] / bare
        print(f"{name:40} {result['rps']:9.0f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f} {ratio:7.2f}")
    me_ratio = best["platform      GET /api/v1/auth/me"]["rps"] / bare
    verdict = "met" if me_ratio >= 0.5 else "NOT met"
    print(f"\nauthenticated /auth/me at {me_ratio:.2f} x the bare route: target (>= 0.50) {verdict}")


if __name__ == "__main__":
    main()
