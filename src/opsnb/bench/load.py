"""The load generator (``opsnb loadtest``): loopback only, bounded in requests and time.

Each of ``concurrency`` connections sends HTTP/1.1 keep-alive requests back to back (a closed
loop, like wrk) until ``requests`` were sent or ``duration_s`` passed. With ``rate`` set, requests
start on a fixed schedule instead (an open loop), so a server slower than the offered rate
shows it as refusals or latency rather than as a slower client. Bodies are single records from
the run's test split, in the JSON the service expects.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import pandas as pd

from opsnb.bundle import SCHEMA, resolve_bundle
from opsnb.errors import ConfigError
from opsnb.schema import Schema

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadResult:
    """What a load run saw: statuses, latencies, and optionally the 200 answers' bodies."""

    wall_s: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    refused_latencies_s: list[float] = field(default_factory=list)
    failures: int = 0
    unsent: int = 0
    answers: list[bytes] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Throughput and p50/p95/p99 latency (ms) of successful answers; counts by status.

        ``refused_p50_ms``/``refused_p99_ms`` are the latencies of the 503 answers (how cheap a
        refusal is). Status codes are strings, so the summary is plain JSON.
        """
        ok = self.statuses.get(200, 0)
        lat = np.asarray(self.latencies_s) * 1000 if self.latencies_s else np.zeros(1)
        refused = (
            np.asarray(self.refused_latencies_s) * 1000 if self.refused_latencies_s else np.zeros(1)
        )
        return {
            "requests": sum(self.statuses.values()) + self.failures,
            "ok": ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connection_failures": self.failures,
            "unsent": self.unsent,
            "wall_s": round(self.wall_s, 3),
            "throughput_rps": round(ok / self.wall_s, 1) if self.wall_s else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "refused_p50_ms": round(float(np.percentile(refused, 50)), 3),
            "refused_p99_ms": round(float(np.percentile(refused, 99)), 3),
        }


def check_loopback(url: str) -> tuple[str, int, str]:
    """Return (host, port, path) of ``url``; refuse any host but the loopback interface."""
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"load tests only target http on loopback ({', '.join(LOOPBACK_HOSTS)}); got {url!r}"
        )
    return parts.hostname, parts.port or 80, parts.path or "/predict"


def bodies_from_run(run: str | os.PathLike[str], *, limit: int = 5000) -> list[bytes]:
    """Single-record JSON bodies made from the run's test split (``data/test.parquet``)."""
    bundle = resolve_bundle(run)
    schema = Schema.load(bundle / SCHEMA)
    test = Path(run).expanduser().resolve() / "data" / "test.parquet"
    if not test.is_file():
        raise ConfigError(f"{test} is missing; pass a run folder that has its test split")
    frame = pd.read_parquet(test).head(limit)
    records: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for feature in schema.features:
        name, categorical = feature.name, feature.is_categorical
        for record, value in zip(records, frame[name].tolist(), strict=True):
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            record[name] = None if missing else (str(value) if categorical else float(value))
    return [orjson.dumps(r) for r in records]


def _request(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    return status, await reader.readexactly(length), close


async def _connection(
    host: str,
    port: int,
    path: str,
    bodies: itertools.cycle[bytes],
    *,
    tickets: asyncio.Queue[float],
    result: LoadResult,
    keep_answers: bool,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while True:
        scheduled = await tickets.get()
        if scheduled < 0:
            break
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = min(scheduled, time.perf_counter()) if scheduled else time.perf_counter()
            writer.write(_request(host, path, next(bodies)))
            status, body, close = await _read_answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.failures += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        result.statuses[status] += 1
        if status == 200:
            result.latencies_s.append(time.perf_counter() - started)
            if keep_answers:
                result.answers.append(body)
        elif status == 503:
            result.refused_latencies_s.append(time.perf_counter() - started)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _load(
    url: str,
    bodies: list[bytes],
    *,
    requests: int,
    concurrency: int,
    duration_s: float,
    rate: float | None,
    keep_answers: bool,
    result: LoadResult,
) -> LoadResult:
    host, port, path = check_loopback(url)
    tickets: asyncio.Queue[float] = asyncio.Queue()
    cycle = itertools.cycle(bodies)
    workers = [
        asyncio.create_task(
            _connection(
                host, port, path, cycle, tickets=tickets, result=result, keep_answers=keep_answers
            )
        )
        for _ in range(concurrency)
    ]
    start = time.perf_counter()
    end = start + duration_s
    for i in range(requests):
        if rate:
            due = start + i / rate
            if due > end:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tickets.put_nowait(due)
        else:
            while tickets.qsize() > concurrency and time.perf_counter() < end:
                await asyncio.sleep(0.001)
            if time.perf_counter() >= end:
                break
            tickets.put_nowait(0.0)
    # Requests not started by the deadline (plus a grace for an open loop's backlog) are
    # never sent: the run stays bounded in time however slow the server is.
    grace = end + (min(2.0, duration_s) if rate else 0.0)
    while not tickets.empty() and time.perf_counter() < grace:
        await asyncio.sleep(0.001)
    while not tickets.empty():
        tickets.get_nowait()
        result.unsent += 1
    for _ in workers:
        tickets.put_nowait(-1.0)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30.0)
    result.wall_s = time.perf_counter() - start
    return result


def run_load(
    url: str,
    bodies: list[bytes],
    *,
    requests: int = 2000,
    concurrency: int = 8,
    duration_s: float = 60.0,
    rate: float | None = None,
    keep_answers: bool = False,
    result: LoadResult | None = None,
) -> LoadResult:
    """Send at most ``requests`` bodies to ``url`` (loopback only) within ``duration_s``.

    ``result``, when given, is filled as answers arrive, so another thread can watch progress.

    Raises:
        ConfigError: the URL is not on loopback, or the bounds are not positive.
    """
    check_loopback(url)
    if requests < 1 or concurrency < 1 or duration_s <= 0 or not bodies:
        raise ConfigError(
            f"requests={requests}, concurrency={concurrency}, duration_s={duration_s} and "
            f"{len(bodies)} bodies: each must be positive"
        )
    return asyncio.run(
        _load(
            url,
            bodies,
            requests=requests,
            concurrency=concurrency,
            duration_s=duration_s,
            rate=rate,
            keep_answers=keep_answers,
            result=result or LoadResult(),
        )
    )
