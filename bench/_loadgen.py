"""A small HTTP/1.1 keep-alive load generator (asyncio streams), shared by the API benchmarks.

Measures requests per second and latency percentiles for one URL with N concurrent connections.
It runs in its own process so that it does not share the server's core.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _worker(
    host: str, port: int, raw: bytes, deadline: float, latencies: list[float], counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(raw)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
            if status_line.split(b" ", 2)[1:2] == [b"200"]:
                counts[0] += 1
            else:
                counts[1] += 1
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes = b"",
    connections: int = 16,
    seconds: float = 3.0,
) -> LoadResult:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    raw = head.encode() + b"\r\n" + body
    latencies: list[float] = []
    counts = [0, 0]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_worker(host, port, raw, deadline, latencies, counts) for _ in range(connections)))
    return LoadResult(counts[0], counts[1], time.perf_counter() - start, latencies)


def main() -> None:
    """CLI for a subprocess: argv[1] is a JSON job, the result is printed as JSON."""
    job = json.loads(sys.argv[1])
    result = asyncio.run(
        run_load(
            job["host"],
            job["port"],
            job["path"],
            headers=job.get("headers"),
            connections=job.get("connections", 16),
            seconds=job.get("seconds", 3.0),
        )
    )
    print(
        json.dumps(
            {
                "requests": result.requests,
                "errors": result.errors,
                "seconds": result.seconds,
                "rps": result.rps,
                "p50_ms": result.percentile(50),
                "p99_ms": result.percentile(99),
                "mean_ms": statistics.fmean(result.latencies_ms) if result.latencies_ms else None,
            }
        )
    )


if __name__ == "__main__":
    main()
