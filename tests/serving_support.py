"""Helpers for tests that start the real prediction service on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsnb import signing

PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def post(self, path: str, data: Any, token: str | None = None) -> tuple[int, Any]:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, _, raw = self.call("POST", path, body, headers)
        return status, json.loads(raw) if raw else None

    def get(self, path: str) -> tuple[int, bytes]:
        status, _, raw = self.call("GET", path)
        return status, raw

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path)[1])

    def metric(self, name: str) -> float:
        """Sum of the samples of a metric line that starts with ``name``."""
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines()
            if line.startswith(name) and (line[len(name)] in " {")
        )


def wait_ready(server: Server, timeout_s: float = 60) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited {server.proc.returncode}: {server.output.read_text()}"
            )
        with contextlib.suppress(OSError):
            status, raw = server.get("/ready")
            if status == 200:
                return dict(json.loads(raw))
        time.sleep(0.1)
    raise AssertionError(f"server not ready in {timeout_s} s: {server.output.read_text()}")


@contextlib.contextmanager
def running_server(
    run: Path, *options: str, folder: Path, admin_token: str | None = None
) -> Iterator[Server]:
    """Start ``opsnb serve run`` on a loopback port; always stop it.

    One process binds port 0 itself and reports the port it got (``--port-file``): no race
    between finding a free port and binding it. Several workers need a fixed port.
    """
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"server-{time.monotonic_ns()}.out"
    port_file = folder / f"port-{time.monotonic_ns()}"
    log = folder / "predictions.sqlite"
    if admin_token:
        token_file = folder / "admin-token"
        token_file.write_text(admin_token)
        options = (*options, "--admin-token-file", str(token_file))
    fixed = "--workers" in options and options[options.index("--workers") + 1] != "1"
    where = (
        ["--port", str(free_port())] if fixed else ["--port", "0", "--port-file", str(port_file)]
    )
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opsnb.cli",
                "serve",
                str(run),
                *where,
                "--log",
                str(log),
                *options,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=PROJECT,
            start_new_session=True,  # its worker processes share its group: stopped together
        )
    port = int(where[1]) if fixed else _reported_port(port_file, proc, output)
    server = Server(port, proc, log, output)
    try:
        wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # no worker outlives a stuck supervisor
                proc.wait()


def _reported_port(
    port_file: Path, proc: subprocess.Popen[bytes], output: Path, timeout_s: float = 120
) -> int:
    """The port the server wrote to ``port_file`` once it was listening."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if port_file.is_file():
            return int(port_file.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {output.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server reported no port in {timeout_s} s: {output.read_text()}")


def copy_bundle(run: Path, target: Path, *, version: str | None = None) -> Path:
    """Copy the run's bundle; with ``version``, relabel the copy as another model version
    (and sign the new manifest with the project key, as opsnb does for what it builds)."""
    shutil.copytree(run / "bundle", target)
    if version is not None:
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["model_sha256"] = version
        (target / "manifest.json").write_text(json.dumps(manifest))
        signing.sign_bundle(target)
    return target
