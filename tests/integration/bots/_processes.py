"""Runner processes for the multi-process tests: environment, spawning, bounded waits, and a
fake Binance that outlives them.

The fake venue lives in the test process behind a small HTTP server (:class:`VenueServer`), so
that what a killed runner sent to "the exchange" is still there when the next runner starts:
the runner's ``FakeBinance`` answers every request through :class:`RemoteVenue`, which forwards
the decoded request to the server and returns its answer (ccxt's code runs unchanged on both
sides of that hop). ``python -m tests.integration.bots._processes`` is the runner process of the
kill -9 test: the CLI's runner (``cli/runner.py``) with that venue wired in.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptoorchestrator.testing.fake_exchange_records import VenueRequest, VenueResponse
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot

ROOT = Path(__file__).resolve().parents[3]
VENUE_URL_ENV = "CO_TEST_VENUE_URL"


def runner_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a runner process: same database and data as the test, short leases."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CO_")}
    env.update(
        {
            "CO_ENV": "test",
            "CO_DATABASE_URL": database_url,
            "CO_DATA_DIR": str(data_dir),
            "CO_SYNTHETIC_DATA": "false",
            "CO_PAPER_POLL_SECONDS": "0",
            "CO_BOT_HEARTBEAT_SECONDS": "0.2",
            "CO_BOT_LEASE_SECONDS": "1.5",
            "CO_BOT_CANDLE_WINDOW": "30",
            "CO_REPLAY_SPEED": "3000",
            "CO_LOG_LEVEL": "WARNING",
            "CO_BACKTEST_WORKERS": "0",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def spawn(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=dict(env), stdout=handle, stderr=subprocess.STDOUT
        )


def spawn_cli_runner(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``cryptoorchestrator runner`` in its own process."""
    return spawn(["-m", "cryptoorchestrator", "runner"], env, log)


def spawn_crash_runner(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The kill -9 test's runner: the CLI runner with the remote fake venue (this module)."""
    return spawn(["-m", "tests.integration.bots._processes"], env, log)


async def wait_until(check: Callable[[], Awaitable[bool]], *, seconds: float, what: str) -> None:
    """Poll ``check`` until it is true; fail after ``seconds`` (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {seconds} s")
        await asyncio.sleep(0.1)


async def wait_exit(process: subprocess.Popen[bytes], *, seconds: float) -> int:
    async def exited() -> bool:
        return process.poll() is not None

    await wait_until(exited, seconds=seconds, what=f"process {process.pid} to exit")
    return int(process.returncode)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


# --- the venue across processes ----------------------------------------------------------------


class VenueServer:
    """Serves one :class:`SimulatedBinanceSpot` over HTTP to runner processes."""

    def __init__(self, venue: SimulatedBinanceSpot) -> None:
        self.venue = venue
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = VenueRequest(**raw)
                with server.lock:
                    answer = server.venue.handle(request)
                body = json.dumps(
                    {"status": answer.status, "body": answer.body, "headers": dict(answer.headers)}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/"

    def __enter__(self) -> VenueServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


class RemoteVenue:
    """The part of ``SimulatedBinanceSpot`` that ``FakeBinance`` uses, answered over HTTP."""

    api_key = "fake-binance-api-key-0001"
    secret = "fake-binance-secret-0001"

    def __init__(self, url: str) -> None:
        self._url = url

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def handle(self, request: VenueRequest) -> VenueResponse:
        payload = json.dumps(
            {
                "method": request.method,
                "path": request.path,
                "params": dict(request.params),
                "api_key": request.api_key,
                "signed_payload": request.signed_payload,
                "signature": request.signature,
            }
        ).encode()
        call = urllib.request.Request(self._url, data=payload, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(call, timeout=30) as reply:
            answer = json.loads(reply.read())
        return VenueResponse(answer["status"], answer["body"], answer["headers"])


def main() -> None:
    """The kill -9 test's runner process: ``cli/runner.py``'s loop over the remote venue."""
    from cryptoorchestrator.bootstrap import build_container
    from cryptoorchestrator.cli.runner import run_runner
    from cryptoorchestrator.config.settings import load_settings
    from cryptoorchestrator.exchanges.client import CcxtExchangeClient
    from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
    from cryptoorchestrator.testing.fake_exchange import FakeBinance

    url = os.environ[VENUE_URL_ENV]
    registry = RateBudgetRegistry()

    def venue_factory(account: Any, credentials: Any) -> Any:
        return CcxtExchangeClient(FakeBinance(venue=RemoteVenue(url)), budget_registry=registry)  # type: ignore[arg-type]

    async def run() -> None:
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        container = build_container(load_settings(), venue_factory=venue_factory)
        await run_runner(container, stop=stopped)

    asyncio.run(run())


if __name__ == "__main__":
    main()
