"""Replay a production stream through a real ``opsnb serve`` on 127.0.0.1, labels arriving late.

:func:`replay` starts ``opsnb serve`` as a child process on a port the server picks itself
(``--port 0 --port-file``), waits for ``/ready``, sends every row of the stream as one
``/predict`` request (``concurrency`` keep-alive connections, in stream order block by block),
posts the ground truth of a ``label_share`` of the rows to ``/feedback`` once ``label_delay``
later rows have been answered (the last rows' labels have not arrived yet when it stops, as in
production), then stops the server with SIGTERM (it drains and exits 0) and returns what it
saw, including the server's CPU seconds over the replay, read from its ``/metrics``, and the
latency percentiles — what :mod:`opsnb.cost` needs. It is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from opsnb.errors import ConfigError, OpsnbError
from opsnb.monitoring.checker import plain
from opsnb.schema import Schema

START_TIMEOUT_S = 60.0
_CPU = re.compile(rb"^process_cpu_seconds_total (\S+)$", re.MULTILINE)


class ReplayError(OpsnbError):
    """The server could not be started or answered in a way the replay cannot use."""


@dataclass
class Server:
    """A running ``opsnb serve`` child process."""

    process: subprocess.Popen[bytes]
    port: int
    stderr: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 10.0
    ) -> tuple[int, bytes]:
        """One request on a fresh connection; returns (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def cpu_seconds(self) -> float:
        """The server process's CPU seconds so far (from its Prometheus ``/metrics``)."""
        _, text = self.request("GET", "/metrics")
        match = _CPU.search(text)
        return float(match.group(1)) if match else float("nan")


@dataclass
class Launch:
    """An ``opsnb serve`` process started but perhaps not yet ready (see :func:`launch`)."""

    process: subprocess.Popen[bytes]
    port_file: Path
    stderr: Path
    started: float


def launch(bundle: str | os.PathLike[str], log_path: str | os.PathLike[str], *extra: str) -> Launch:
    """Start ``opsnb serve`` for ``bundle`` on a free port, logging to ``log_path`` (replaced).

    Returns at once: the server loads, self-checks and warms its model while the caller
    prepares the traffic; :func:`replay` (or :func:`running_server`) waits until it is ready.
    """
    log = Path(log_path)
    for suffix in ("", "-wal", "-shm"):  # one replay, one log: never mix with an older one
        Path(f"{log}{suffix}").unlink(missing_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="opsnb-replay-"))
    port_file, stderr = folder / "port", folder / "stderr.txt"
    args = [sys.executable, "-m", "opsnb.cli", "serve", os.fspath(bundle), "--port", "0",
            "--port-file", os.fspath(port_file), "--log", os.fspath(log), *extra]  # fmt: skip
    with open(stderr, "wb") as err:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    return Launch(process, port_file, stderr, time.monotonic())


@contextmanager
def running_server(
    bundle: str | os.PathLike[str] | Launch, log_path: str | os.PathLike[str] = "", *extra: str
) -> Iterator[Server]:
    """A ready ``opsnb serve`` (launched here, or the given :class:`Launch`); SIGTERM after."""
    started = bundle if isinstance(bundle, Launch) else launch(bundle, log_path, *extra)
    process, port_file, stderr = started.process, started.port_file, started.stderr
    try:
        deadline = started.started + START_TIMEOUT_S
        while not port_file.is_file():
            _check_alive(process, stderr, deadline)
            time.sleep(0.02)
        server = Server(process, int(port_file.read_text()), stderr)
        while True:
            _check_alive(process, stderr, deadline)
            try:
                if server.request("GET", "/ready", timeout=2.0)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _check_alive(process: subprocess.Popen[bytes], stderr: Path, deadline: float) -> None:
    if process.poll() is not None:
        raise ReplayError(
            f"opsnb serve exited with status {process.returncode} before it was ready: "
            f"{stderr.read_text(errors='replace')[-1500:]}"
        )
    if time.monotonic() > deadline:
        raise ReplayError(
            f"opsnb serve was not ready within {START_TIMEOUT_S:.0f} s; its stderr: "
            f"{stderr.read_text(errors='replace')[-1500:]}"
        )


@dataclass
class ReplayResult:
    """What the replay sent and saw."""

    log_path: Path
    request_ids: list[str | None]
    statuses: dict[int, int]
    refusals: dict[str, Any]
    labels_sent: int
    label_statuses: dict[int, int]
    wall_s: float
    latencies_ms: np.ndarray
    server_cpu_s: float
    truncated: bool
    port: int
    notes: list[str] = field(default_factory=list)

    def serving(self) -> dict[str, Any]:
        """``serving.json``: requests, CPU seconds, wall time and latency percentiles."""
        lat = self.latencies_ms if self.latencies_ms.size else np.zeros(1)
        answered = self.statuses.get(200, 0)
        return {
            "requests": sum(self.statuses.values()),
            "answered": answered,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "labels_sent": self.labels_sent,
            "label_statuses": {str(k): v for k, v in sorted(self.label_statuses.items())},
            "wall_s": round(self.wall_s, 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu_s / max(answered, 1), 4),
            "throughput_rps": round(answered / self.wall_s, 1) if self.wall_s else 0.0,
            "latency_ms": {
                f"p{q}": round(float(np.percentile(lat, q)), 3) for q in (50, 90, 95, 99)
            },
            "truncated": self.truncated,
            "refusals": self.refusals,
        }


def records(frame: pd.DataFrame, schema: Schema | dict[str, Any]) -> list[bytes]:
    """One JSON body per row: the schema's features, NaN as null, categories as strings."""
    names = [f["name"] for f in plain(schema)["features"]]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ConfigError(f"the stream lacks feature column(s) {missing}; expected {names}")
    part = frame[names].astype(object)
    part = part.where(frame[names].notna(), None)
    return [orjson.dumps(r) for r in part.to_dict("records")]


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just what the replay needs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):  # a keep-alive connection the server closed: reconnect once
            try:
                if self.writer is None or self.reader is None:
                    opened = await asyncio.open_connection("127.0.0.1", self.port)
                    self.reader, self.writer = opened
                request = (
                    f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: "
                    f"application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                )
                self.writer.write(request.encode() + body)
                head = await self.reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length, close = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                answer = await self.reader.readexactly(length)
                if close:
                    self.close()
                return int(lines[0].split(" ", 2)[1]), answer
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def replay(  # noqa: PLR0915 - the request handlers are closures over the replay's state
    bundle: str | os.PathLike[str] | Launch,
    stream: pd.DataFrame,
    schema: Schema | dict[str, Any],
    *,
    log_path: str | os.PathLike[str],
    label_share: float = 0.5,
    label_delay: int = 1000,
    concurrency: int = 4,
    block: int = 250,
    max_requests: int = 20_000,
    max_seconds: float = 60.0,
    seed: int = 0,
) -> ReplayResult:
    """Send ``stream`` through a fresh ``opsnb serve`` of ``bundle``; see the module docstring.

    Args:
        bundle: the run folder or bundle folder to serve, or a server :func:`launch` started.
        stream: production rows (features, and the target column for labels).
        schema: the bundle's schema (feature names, target).
        log_path: where the server logs (replaced: one replay, one log); with a
            :class:`Launch`, the log it was started with.
        label_share: share of rows whose label is posted to ``/feedback``.
        label_delay: a row's label is posted once this many later rows were answered.
        concurrency: connections sending at once.
        block: rows sent between two rounds of labels.
        max_requests: most rows sent.
        max_seconds: time bound for sending; the rest of the stream is not sent.
        seed: which rows get labels.
    """
    if not 0.0 <= label_share <= 1.0:
        raise ConfigError(f"label_share must be within [0, 1], got {label_share}")
    log = Path(log_path)
    bodies = records(stream.head(max_requests), schema)
    target = plain(schema).get("target")
    labels = stream[target].to_numpy(np.float64) if target in stream else None
    chosen = np.random.default_rng(seed).uniform(size=len(bodies)) < label_share
    ids: list[str | None] = [None] * len(bodies)
    statuses: dict[int, int] = {}
    label_statuses: dict[int, int] = {}
    refusals: dict[str, Any] = {"requests": len(bodies), "fields": {}}
    latencies = np.full(len(bodies), np.nan)

    def predicted(i: int, status: int, text: bytes, started: float) -> None:
        latencies[i] = (time.perf_counter() - started) * 1000
        statuses[status] = statuses.get(status, 0) + 1
        answer = orjson.loads(text)
        if status == 200:
            ids[i] = answer["predictions"][0]["request_id"]
        elif status == 422 and answer.get("field"):
            seen = refusals["fields"].setdefault(
                answer["field"], {"count": 0, "examples": [], "first_index": i}
            )
            seen["count"] += 1
            seen["first_index"] = min(seen["first_index"], i)
            seen["reason"] = answer["message"].split("expected")[-1][:200].strip()
            value = orjson.loads(bodies[i]).get(answer["field"])
            if value not in seen["examples"] and len(seen["examples"]) < 5:
                seen["examples"].append(value)

    async def worker(conn: _Connection, todo: list[tuple[str, int]]) -> None:
        while todo:
            kind, i = todo.pop()
            started = time.perf_counter()
            if kind == "predict":
                predicted(i, *await conn.post("/predict", bodies[i]), started)
            else:
                assert labels is not None
                body = orjson.dumps({"request_id": ids[i], "label": float(labels[i])})
                status, _ = await conn.post("/feedback", body)
                label_statuses[status] = label_statuses.get(status, 0) + 1

    async def send(port: int) -> tuple[int, bool]:
        conns = [_Connection(port) for _ in range(concurrency)]
        t0, labelled_to, sent = time.perf_counter(), 0, len(bodies)
        try:
            for start in range(0, len(bodies), block):
                if time.perf_counter() - t0 > max_seconds:
                    return start, True
                stop = min(start + block, len(bodies))
                todo = [("predict", i) for i in reversed(range(start, stop))]
                await asyncio.gather(*(worker(c, todo) for c in conns))
                due = stop - label_delay
                if labels is not None and due > labelled_to:
                    todo = [("label", i) for i in reversed(range(labelled_to, due))
                            if chosen[i] and ids[i] is not None]  # fmt: skip
                    await asyncio.gather(*(worker(c, todo) for c in conns))
                    labelled_to = due
        finally:
            for conn in conns:
                conn.close()
        return sent, False

    with running_server(bundle, log) as server:
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        # a thread of its own: Jupyter's kernel already runs an event loop in this one
        with ThreadPoolExecutor(1) as pool:
            count, truncated = pool.submit(asyncio.run, send(server.port)).result()
        wall = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
        port = server.port
    bodies = bodies[:count]
    sent = int(sum(label_statuses.values()))
    notes = []
    if truncated:
        notes.append(
            f"replay stopped after {len(bodies)} rows: the {max_seconds:g} s bound was reached"
        )
    return ReplayResult(
        log, ids[: len(bodies)], statuses, refusals, sent, label_statuses, wall,
        latencies[: len(bodies)][~np.isnan(latencies[: len(bodies)])], cpu, truncated, port, notes,
    )  # fmt: skip
