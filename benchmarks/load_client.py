"""A lean HTTP/1.1 load generator: N keep-alive connections on raw asyncio streams, each sending pre-encoded
POST requests back to back for a duration. Prints one JSON line: requests, errors, req/s, p50/p95/p99 latency.
With ``--rate`` it is open loop instead (the soak, benchmarks/soak.py): a fixed request rate, each body sent once.

    python benchmarks/load_client.py --url http://127.0.0.1:8000/predict --concurrency 8 --duration 15 \
        --bodies bodies.jsonl

Lean on purpose: it shares the machine's 2 cores with the server, so every microsecond it spends is one the
server under test does not get (httpx costs ~5x more per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np


async def worker(host: str, port: int, requests: list[bytes], deadline: float, offset: int,
                 latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    while time.perf_counter() < deadline:
        payload = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        status, reader, writer, _ = await _exchange_or_resend(host, port, reader, writer, payload)
        latencies.append(time.perf_counter() - started)
        if status is None or status >= 400:
            errors.append(status or 599)
        if status is None:
            break  # the server closed a fresh connection too
    writer.close()


def encode(url: str, bodies: list[bytes], headers: list[str] = ()) -> tuple[str, int, list[bytes]]:
    parsed = urlparse(url)
    extra = "".join(f"{header}\r\n" for header in headers)
    requests = [
        (f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n{extra}\r\n").encode() + body
        for body in bodies
    ]
    return parsed.hostname or "127.0.0.1", parsed.port or 80, requests


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int | None:
    """Send one request, read its whole answer; its status, or None when the connection was closed before any
    answer came (a keep-alive connection the server let go, as HAProxy does when it reloads)."""
    try:
        writer.write(payload)
        await writer.drain()
        status_line = await reader.readline()
    except (ConnectionError, OSError):
        return None
    if not status_line:
        return None
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(status_line.split()[1])


async def _exchange_or_resend(host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              payload: bytes) -> tuple[int | None, asyncio.StreamReader, asyncio.StreamWriter, bool]:
    """:func:`_exchange`; on a keep-alive connection the server let go, once more on a new one, as HTTP clients do.
    The status, the connection to go on with, and whether the request was sent again."""
    status = await _exchange(reader, writer, payload)
    if status is not None:
        return status, reader, writer, False
    writer.close()
    reader, writer = await asyncio.open_connection(host, port)
    return await _exchange(reader, writer, payload), reader, writer, True


async def paced_worker(host: str, port: int, requests: list[bytes], started: float, deadline: float, worker_id: int,
                       workers: int, interval: float, latencies: list[float], errors: list[int],
                       reconnects: list[int]) -> None:
    """Open loop: this connection's share of a fixed rate, each request sent at its scheduled time (or at once when
    behind) and its latency counted from that time, so a stall shows in the latencies instead of lowering the rate
    (no coordinated omission). Bodies are taken worker_id, worker_id + workers, ...: each exactly once. A request
    on a connection the server closed before answering is sent again once on a new one, as HTTP clients do."""
    reader, writer = await asyncio.open_connection(host, port)
    k = 0
    while True:
        scheduled = started + (worker_id + k * workers) * interval
        index = worker_id + k * workers
        if scheduled >= deadline or index >= len(requests):
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status, reader, writer, resent = await _exchange_or_resend(host, port, reader, writer, requests[index])
        if resent:
            reconnects.append(index)
        latencies.append(time.perf_counter() - scheduled)
        if status is None or status >= 400:
            errors.append(status or 599)
        k += 1
    writer.close()


async def run_paced(url: str, bodies: list[bytes], concurrency: int, duration: float, rate: float,
                    headers: list[str] = ()) -> dict:
    host, port, requests = encode(url, bodies, headers)
    latencies: list[float] = []
    errors: list[int] = []
    reconnects: list[int] = []
    started = time.perf_counter() + 0.5
    await asyncio.gather(*(paced_worker(host, port, requests, started, started + duration, c, concurrency, 1 / rate,
                                        latencies, errors, reconnects) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "target_rps": rate, "requests": len(latencies), "errors": len(errors),
            "error_statuses": sorted(set(errors)), "reconnects": len(reconnects), "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


async def run(url: str, bodies: list[bytes], concurrency: int, duration: float, warmup: float,
              headers: list[str] = ()) -> dict:
    host, port, requests = encode(url, bodies, headers)
    if warmup > 0:
        await asyncio.gather(*(worker(host, port, requests, time.perf_counter() + warmup, c * 7919, [], [])
                               for c in range(concurrency)))
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(*(worker(host, port, requests, started + duration, c * 7919, latencies, errors)
                           for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "rps": len(latencies) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, help="JSON lines, one request body each")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rate", type=float, default=0, help="open loop at this many requests/s (0: closed loop)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', sent with every request")
    args = parser.parse_args()
    bodies = [line.strip() for line in Path(args.bodies).read_bytes().splitlines() if line.strip()]
    if args.rate > 0:
        print(json.dumps(asyncio.run(run_paced(args.url, bodies, args.concurrency, args.duration, args.rate,
                                                   args.header))))
    else:
        print(json.dumps(asyncio.run(run(args.url, bodies, args.concurrency, args.duration, args.warmup, args.header))))


if __name__ == "__main__":
    main()
