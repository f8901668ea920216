"""Open a page in real headless Chromium over the DevTools protocol and report what happened.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it). The page's console errors,
uncaught exceptions, every request and every failed one are collected from DevTools events;
images are checked by decoding each one in the page; the screenshot covers the whole page.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    """The Chromium executable; skipped outside CI when there is none, a failure in CI."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it in CI)")
    raise AssertionError  # unreachable: skip raises


@dataclass
class Page:
    """What loading one page did."""

    console_errors: list[str]
    failed_requests: list[str]
    requests: list[str]
    images: list[dict[str, Any]]
    height: int
    screenshot: bytes


class _Session:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == method:
                return
        raise TimeoutError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        return result["result"].get("value")


def _devtools_port(profile: Path, process: subprocess.Popen[bytes], timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before it listened")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


_IMAGES = """Promise.all([...document.images].map(img => img.decode().then(
  () => ({src: img.src.slice(0, 30), ok: true, width: img.naturalWidth, height: img.naturalHeight}),
  () => ({src: img.src.slice(0, 30), ok: false, width: img.naturalWidth, height: img.naturalHeight})
)))"""


def open_page(url: str, *, width: int = 1200, timeout: float = 90) -> Page:
    """Load ``url`` in headless Chromium and return its errors, requests, images and screenshot."""
    profile = Path(tempfile.mkdtemp(prefix="opsnb-chromium-"))
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, process, timeout)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        target = next(t for t in targets if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            session = _Session(ws)
            for domain in ("Runtime", "Log", "Network", "Page"):
                session.call(f"{domain}.enable")
            session.call("Page.navigate", url=url)
            session.wait_for("Page.loadEventFired", timeout)
            images = session.evaluate(_IMAGES)
            height = int(session.evaluate("document.documentElement.scrollHeight"))
            shot = session.call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            )  # fmt: skip
            events = session.events
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)
    errors = []
    for event in events:
        params = event.get("params", {})
        method = event.get("method")
        if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(str(params["entry"].get("text")))
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    failed = [
        f"{e['params'].get('errorText')} ({e['params'].get('requestId')})"
        for e in events
        if e.get("method") == "Network.loadingFailed"
    ]
    return Page(errors, failed, requests, images, height, base64.b64decode(shot["data"]))
