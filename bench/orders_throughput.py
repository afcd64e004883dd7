"""Order throughput benchmark (issue: trading core).

Serves, with uvicorn in this same run, (1) a bare FastAPI app whose one POST route validates an
order body and answers it (``bench/_bare_orders_app.py``, the reference) and (2) the platform on
its embedded defaults (SQLite, the paper exchange on the synthetic first-run series, rate limits
raised out of the way), then measures authenticated paper market orders per second through
``POST /api/v1/orders`` (each one validated, locked, persisted, matched, booked into the ledger,
positions and trades), with p50 and p99 latency, against the bare route. Target: at least a
quarter of the bare route's rate, and p99 under 10 x p50.

It also measures the in-process matching engine (``bench/matching_engine.py`` has the full
figure): submit/cancel/price-update operations per second of the paper exchange.

The load comes from wrk with a Lua POST script when wrk is installed (``apt-get install wrk``),
else from an asyncio client in this process. The best of ``--rounds`` rounds is kept per target.

    .venv/bin/python bench/orders_throughput.py [--seconds 3] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api_overhead import free_port, wait_ready  # the same server plumbing as the API benchmark

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ORDER = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.001"}


def platform_env(data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO_")}
    limits = "100000000/minute"
    env.update(
        CO_DATA_DIR=data_dir,
        CO_LOG_LEVEL="WARNING",
        CO_ACCESS_LOG="false",
        CO_PAPER_STARTING_BALANCES="USDT:1000000000",
        CO_SYNTHETIC_SYMBOLS="BTC/USDT",
        CO_RATE_LIMIT_DEFAULT=limits,
        CO_RATE_LIMIT_ANONYMOUS=limits,
        CO_RATE_LIMIT_AUTH=limits,
        CO_RATE_LIMIT_TRADING=limits,
    )
    return env


def server(target: str, port: int, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    args = [PY, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", *extra]  # fmt: skip
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    return value * 1000 if text.endswith("s") else value


def load_wrk(port: int, headers: dict[str, str], seconds: float, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(ORDER))}"]
        lines += [
            f'wrk.headers["{k}"] = "{v}"' for k, v in {**headers, "Content-Type": "application/json"}.items()
        ]
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name,
             f"http://127.0.0.1:{port}/api/v1/orders"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "errors": int(errors.group(1)) if errors else 0,
        "p50_ms": _ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
    }


async def _load_python(
    port: int, headers: dict[str, str], seconds: float, connections: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            response = await client.post("/api/v1/orders", json=ORDER, headers=headers)
            latencies.append((time.perf_counter() - start) * 1000)
            errors += response.status_code != 201

    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "errors": errors,
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def load(port: int, headers: dict[str, str], seconds: float, connections: int) -> dict[str, float]:
    if shutil.which("wrk"):
        return load_wrk(port, headers, seconds, connections)
    return asyncio.run(_load_python(port, headers, seconds, connections))


def matching_ops(seconds: float = 1.0) -> float:
    """Paper-exchange operations per second in process: submit a resting limit, feed a price."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from cryptoorchestrator.domain.instruments import Instrument
    from cryptoorchestrator.domain.orders import Order, OrderSide, OrderType
    from cryptoorchestrator.simulator.matching import MarketState, PaperExchange

    engine = PaperExchange(id_prefix="bench")
    instrument = Instrument(symbol="BTC/USDT", base="BTC", quote="USDT", quantity_step=Decimal("0.00001"))
    now = datetime.now(UTC)
    market = MarketState(
        symbol="BTC/USDT", last=Decimal(60000), bid=Decimal(59999), ask=Decimal(60001), timestamp=now
    )
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for i in range(200):
            order = Order(
                id=f"o{count}-{i}", user_id=1, account_id="a", symbol="BTC/USDT", side=OrderSide.BUY,
                type=OrderType.LIMIT, quantity=Decimal("0.001"), client_order_id=f"c{count}-{i}",
                created_at=now, updated_at=now, price=Decimal(59000 - i),
            )  # fmt: skip
            engine.submit(order, instrument=instrument, market=market, now=now)
        engine.on_market(MarketState(symbol="BTC/USDT", last=Decimal(58000), timestamp=now), now=now)
        engine.on_market(market, now=now)
        count += 202
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        env = platform_env(data_dir)
        subprocess.run([PY, "-m", "cryptoorchestrator", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        bare_port, platform_port = free_port(), free_port()
        servers = [
            server("_bare_orders_app:app", bare_port, env, "--app-dir", str(ROOT / "bench")),
            server("cryptoorchestrator.api.app:create_app", platform_port, env, "--factory"),
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
            first = httpx.post(
                f"http://127.0.0.1:{platform_port}/api/v1/orders", json=ORDER, headers=auth, timeout=30
            )
            if first.status_code != 201 or first.json()["status"] != "filled":
                raise RuntimeError(f"the platform did not fill a paper order: {first.text}")
            targets = {"bare FastAPI POST /api/v1/orders": (bare_port, {}),
                       "platform     POST /api/v1/orders": (platform_port, auth)}  # fmt: skip
            best: dict[str, dict[str, float]] = {}
            for port, headers in targets.values():
                load(port, headers, 1.0, options.connections)  # warm-up
            for number in range(options.rounds):
                for name, (port, headers) in targets.items():
                    result = load(port, headers, options.seconds, options.connections)
                    if result["errors"]:
                        raise RuntimeError(f"{name}: {result['errors']} answers that were not 201")
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
                print(f"round {number + 1}/{options.rounds} done", file=sys.stderr)
            stored = httpx.get(
                f"http://127.0.0.1:{platform_port}/api/v1/orders?limit=1", headers=auth, timeout=30
            )
            total = stored.json()["total"]
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=10)
    bare = best["bare FastAPI POST /api/v1/orders"]
    platform = best["platform     POST /api/v1/orders"]
    tool = "wrk" if shutil.which("wrk") else "httpx (install wrk: lighter)"
    print(f"\nPaper market orders ({options.connections} connections, best of {options.rounds} x "
          f"{options.seconds}s, load from {tool}); {total} orders stored by the platform")  # fmt: skip
    print(f"{'target':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7}")
    for name, result in best.items():
        print(f"{name:36} {result['rps']:9.0f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f} "
              f"{result['rps'] / bare['rps']:7.2f}")  # fmt: skip
    ratio = platform["rps"] / bare["rps"]
    tail = platform["p99_ms"] / platform["p50_ms"]
    rate_verdict = "met" if ratio >= 0.25 else "NOT met"
    tail_verdict = "met" if tail < 10 else "NOT met"
    print(f"\norders at {ratio:.2f} x the bare route (target >= 0.25: {rate_verdict}); "
          f"p99 / p50 = {tail:.1f} (target < 10: {tail_verdict})")  # fmt: skip
    engine = matching_ops()
    print(
        f"in-process paper matching engine: {engine:,.0f} order operations/s "
        "(bench/matching_engine.py compares it with a reference)"
    )


if __name__ == "__main__":
    main()
