"""The service attacked and faulted on 127.0.0.1: untrusted bundles, admin access, workers
with a tampered bundle, slow and vanishing clients, a log that cannot be written."""

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opsnb import signing
from opsnb.bench import load as loadtest
from tests.serving_support import copy_bundle, running_server

pytestmark = pytest.mark.slow

TOKEN = "test-admin-token"
EVIL_C = """
#include <stdio.h>
__attribute__((constructor)) static void opsnb_test_evil(void) {
    FILE* f = fopen("%s", "w");
    if (f) { fputs("ran", f); fclose(f); }
}
int get_num_feature(void) { return 1; }
"""


@pytest.fixture(scope="module")
def bodies(serving_run):
    return loadtest.bodies_from_run(serving_run, limit=100)


def evil_bundle(serving_run, target, marker, *, sign_with=None):
    """A bundle whose model.so runs code when loaded, with a manifest that matches it."""
    shutil.copytree(serving_run / "bundle", target)
    source = target / "evil.c"
    source.write_text(EVIL_C % marker)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(target / "model.so"), str(source)], check=True
    )
    source.unlink()
    manifest = json.loads((target / "manifest.json").read_text())
    digest = hashlib.sha256((target / "model.so").read_bytes()).hexdigest()
    manifest["files"]["model.so"] = digest
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / "manifest.sig").unlink()
    if sign_with is not None:
        signing.sign_bundle(target, sign_with)
    return target


def reload(server, version):
    return server.post("/admin/reload", {"version": version}, TOKEN)


def test_only_trusted_bundles_from_the_store_load_and_evil_code_never_runs(
    serving_run, tmp_path, bodies
):
    store, outside, marker = tmp_path / "store", tmp_path / "outside", tmp_path / "marker"
    copy_bundle(serving_run, store / "v1")
    # outside the store, even signed with the project key and with a valid manifest
    evil_bundle(serving_run, outside / "evil", marker, sign_with=signing.project_key())
    (store / "link").symlink_to(outside / "evil")
    evil_bundle(serving_run, store / "unsigned", marker)
    evil_bundle(serving_run, store / "foreign", marker, sign_with=Ed25519PrivateKey.generate())
    forged = evil_bundle(serving_run, store / "forged", marker)
    shutil.copy(serving_run / "bundle" / "manifest.sig", forged / "manifest.sig")
    with running_server(store / "v1", folder=tmp_path / "srv", admin_token=TOKEN) as server:
        version = server.get_json("/ready")["model_version"]
        refusals = {
            name: reload(server, name)
            for name in (
                "../outside/evil",
                str(outside / "evil"),
                "link",
                "unsigned",
                "foreign",
                "forged",
            )
        }
        assert server.post("/predict", bodies[0])[0] == 200
        output = server.output.read_text()
    assert not marker.exists(), "a refused bundle's library was loaded"
    for name, (status, answer) in refusals.items():
        assert status == 409, (name, answer)
        assert answer["model_version"] == version
    messages = {name: answer["message"] for name, (_, answer) in refusals.items()}
    assert "is not a name in the model store" in messages["../outside/evil"]
    assert "is not a name in the model store" in messages[str(outside / "evil")]
    assert "leads outside the model store" in messages["link"]
    assert "is not signed (manifest.sig is missing)" in messages["unsigned"]
    assert "which this server does not trust" in messages["foreign"]
    assert "does not match its manifest.json: the manifest changed" in messages["forged"]
    assert "../outside/evil" in output
    assert "\n../" not in output  # names are logged escaped, one line each


def test_admin_needs_the_token_json_and_a_host_naming_this_server(serving_run, tmp_path):
    with running_server(serving_run, folder=tmp_path, admin_token=TOKEN) as server:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        cross_site = server.call("POST", "/admin/reload", b'{"version": "x"}',
                                 {**auth, "Content-Type": "text/plain"})  # fmt: skip
        rebinding = server.call("POST", "/admin/reload", b"{}",
                                {**auth, "Content-Type": "application/json",
                                 "Host": "attacker.example:8000"})  # fmt: skip
        no_token = server.call("POST", "/admin/reload", b"{}", {"Content-Type": "application/json"})
        assert server.post("/admin/reload", {}, "wrong-token")[0] == 401
        assert server.post("/admin/reload", {}, TOKEN)[0] == 200
    assert cross_site[0] == 415
    assert rebinding[0] == 403
    assert b"Host header does not name this server" in rebinding[2]
    assert (no_token[0], no_token[1]["www-authenticate"]) == (401, "Bearer")


def test_two_workers_keep_serving_through_a_tampered_bundle_and_reload_together(
    serving_run, tmp_path, bodies
):
    store = tmp_path / "store"
    copy_bundle(serving_run, store / "v1")
    copy_bundle(serving_run, store / "v2", version="2" * 64)
    tampered = copy_bundle(serving_run, store / "tampered", version="3" * 64)
    library = tampered / "model.so"
    library.write_bytes(library.read_bytes()[:-64])
    (store / "live").symlink_to(store / "v1")
    with running_server(store / "live", "--workers", "2", folder=tmp_path / "srv",
                        admin_token=TOKEN) as server:  # fmt: skip
        pids, deadline = set(), time.monotonic() + 90
        while len(pids) < 2:  # the second worker may still be loading: wait for it
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            pids |= worker_pids(server)
        status, refused = reload(server, "tampered")
        assert status == 409
        assert "model.so does not match manifest.json" in refused["message"]
        (store / "live").unlink()
        (store / "live").symlink_to(tampered)
        server.proc.send_signal(signal.SIGHUP)  # the parent verifies it and refuses it
        time.sleep(1.0)
        answers = [server.post("/predict", bodies[i % len(bodies)]) for i in range(60)]
        answered, deadline = set(), time.monotonic() + 30
        while answered != pids and time.monotonic() < deadline:
            answered |= worker_pids(server)
        assert answered == pids, "both workers still answer, with their own processes"
        assert {status for status, _ in answers} == {200}
        assert {a["model_version"] for _, a in answers} == {serving_run_version(serving_run)}
        assert reload(server, "v2")[0] == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            versions = {server.post("/predict", bodies[0])[1]["model_version"] for _ in range(20)}
            if versions == {"2" * 12}:
                break
            time.sleep(0.1)
        assert versions == {"2" * 12}, "every worker serves the published version"
    assert "SIGHUP: refused model version live" in server.output.read_text()


def worker_pids(server):
    """The worker that answered (each call is a fresh connection: the kernel spreads them)."""
    text = server.get("/metrics")[1].decode()
    return {line.split('"')[1] for line in text.splitlines() if line.startswith("opsnb_worker_in")}


def serving_run_version(serving_run):
    return json.loads((serving_run / "bundle" / "manifest.json").read_text())["model_sha256"][:12]


class SlowSenders(threading.Thread):
    """``count`` connections that send headers, then one body byte a second."""

    def __init__(self, port, count):
        super().__init__(daemon=True)
        self.port, self.count, self.stop = port, count, threading.Event()
        self.sockets = []

    def run(self):
        head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                b"\r\nContent-Length: 4096\r\n\r\n")  # fmt: skip
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port))
            sock.sendall(head)
            self.sockets.append(sock)
        while not self.stop.wait(1.0):
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")

    def close(self):
        self.stop.set()
        self.join(timeout=10)
        for sock in self.sockets:
            sock.close()


def test_slow_bodies_do_not_starve_good_requests(serving_run, tmp_path, bodies):
    with running_server(serving_run, "--body-timeout-s", "60", folder=tmp_path) as server:
        slow = SlowSenders(server.port, 40)
        slow.start()
        time.sleep(1.5)
        result = loadtest.run_load(f"{server.url}/predict", bodies, requests=400,
                                   concurrency=8, duration_s=30)  # fmt: skip
        slow.close()
    ok = result.statuses.get(200, 0)
    assert ok >= 0.95 * 400, result.summary()


HEAD_500 = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 500\r\n\r\n"
)


def test_a_client_that_disconnects_mid_body_is_counted_not_failed(serving_run, tmp_path):
    with running_server(serving_run, folder=tmp_path) as server:
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(HEAD_500 + b'[{"age": 4')
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while server.metric('opsnb_client_disconnects_total{endpoint="/predict"}') < 10:
            assert time.monotonic() < deadline, "disconnects were not counted"
            time.sleep(0.05)
        metrics = server.get("/metrics")[1].decode()
    assert 'status="5' not in metrics
    output = server.output.read_text()
    assert "Traceback" not in output
    assert "ERROR" not in output


def test_a_log_that_cannot_be_written_answers_503_until_it_recovers(serving_run, tmp_path, bodies):
    with running_server(serving_run, folder=tmp_path) as server:
        assert server.post("/predict", bodies[0])[0] == 200
        limits = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (1, limits[1]))  # disk "full"
        try:
            status, refused = server.post("/predict", bodies[1])
            assert (status, refused["error"]) == (503, "log_unavailable")
            status, raw = server.get("/ready")
            assert status == 503
            assert b"the prediction log cannot be written" in raw
            assert server.post("/predict", bodies[2])[0] == 503
        finally:
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, limits)
        deadline = time.monotonic() + 15
        while server.get("/ready")[0] != 200:
            assert time.monotonic() < deadline, "the log did not recover"
            time.sleep(0.1)
        status, answer = server.post("/predict", bodies[3])
        assert status == 200
    rid = answer["predictions"][0]["request_id"]
    import sqlite3  # noqa: PLC0415

    with sqlite3.connect(server.log) as conn:
        assert conn.execute("SELECT 1 FROM predictions WHERE request_id = ?", (rid,)).fetchone()
    assert os.stat(server.log).st_mode & 0o777 == 0o640
