"""The service's life: startup refusal, overload, reload under load, SIGTERM drain, kill -9."""

import http.client
import json
import os
import signal
import socket
import sqlite3
import threading
import time

import pytest

from opsnb.bench.load import LoadResult, bodies_from_run, run_load
from opsnb.errors import ConfigError
from opsnb.serving.app import ServeOptions
from opsnb.serving.server import app_from_env, serve
from tests.serving_support import copy_bundle, running_server, wait_ready
from tests.support import opsnb_cli

pytestmark = pytest.mark.slow


class Load(threading.Thread):
    """Run the load generator in the background; ``result`` holds what the clients saw."""

    def __init__(self, server, bodies, **bounds):
        super().__init__(daemon=True)
        self.args = (f"{server.url}/predict", bodies)
        self.result = LoadResult()
        self.bounds = {"keep_answers": True, "result": self.result, **bounds}

    def run(self):
        run_load(*self.args, **self.bounds)

    def answered(self) -> int:
        return len(self.result.answers)


def answered_ids(result) -> set[str]:
    return {p["request_id"] for a in result.answers for p in json.loads(a)["predictions"]}


def logged_ids(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT request_id FROM predictions")}


@pytest.fixture(scope="module")
def bodies(serving_run):
    return bodies_from_run(serving_run, limit=200)


def test_serve_refuses_a_tampered_bundle_before_starting(serving_run, copy_of):
    run = copy_of(serving_run)
    library = run / "bundle" / "model.so"
    library.write_bytes(library.read_bytes()[:-100])
    # port 0: were the check to regress, the server would start; the timeout turns that hang
    # into a failure within a minute, not a CI kill
    result = opsnb_cli("serve", str(run), "--port", "0", timeout_s=60)
    assert result.returncode == 1
    assert "error: bundle file model.so does not match manifest.json" in result.stderr


def test_options_and_urls_are_checked():
    with pytest.raises(ConfigError, match=r"workers must be >= 1, got 0"):
        serve(ServeOptions(bundle="x"), workers=0)
    with pytest.raises(ConfigError, match=r"OPSNB_SERVE_OPTIONS is not set; start the service"):
        app_from_env()
    with pytest.raises(ConfigError, match=r"only target http on loopback .*got 'http://10.0.0.1"):
        run_load("http://10.0.0.1:80/predict", [b"{}"])


def test_over_the_latency_budget_predict_answers_503_but_health_and_metrics_answer(
    serving_run, tmp_path, bodies
):
    with running_server(serving_run, "--budget-ms", "0", folder=tmp_path) as server:
        status, headers, raw = server.call(
            "POST", "/predict", bodies[0], {"Content-Type": "application/json"}
        )
        assert status == 503
        assert headers["retry-after"] == "1"
        assert json.loads(raw)["message"] == "over the latency budget of 0 ms; retry later"
        assert server.get("/health")[0] == 200
        assert server.get("/metrics")[0] == 200
        assert server.metric('opsnb_errors_total{kind="overload"}') == 1


def test_under_overload_requests_are_answered_200_or_503_and_none_fail(
    serving_run, tmp_path, bodies
):
    with running_server(serving_run, "--budget-ms", "1", folder=tmp_path) as server:
        result = run_load(
            f"{server.url}/predict", bodies, requests=3000, concurrency=96, duration_s=60
        )
    assert set(result.statuses) <= {200, 503}
    assert result.statuses[503] > 0
    assert result.statuses[200] > 0
    assert result.failures == 0


def test_reload_under_load_fails_no_request(serving_run, tmp_path, bodies):
    first = copy_bundle(serving_run, tmp_path / "v1")
    copy_bundle(serving_run, tmp_path / "v2", version="2" * 64)
    third = copy_bundle(serving_run, tmp_path / "v3", version="3" * 64)
    broken = copy_bundle(serving_run, tmp_path / "broken", version="4" * 64)
    (broken / "model.so").write_bytes(b"\x7fELF not really")
    live = tmp_path / "live"
    live.symlink_to(first)
    with running_server(live, folder=tmp_path / "srv", admin_token="tok") as server:
        load = Load(server, bodies, requests=100_000, concurrency=8, duration_s=2.5)
        load.start()
        while load.answered() < 50 and load.is_alive():
            time.sleep(0.01)
        status, answer = server.post("/admin/reload", {"version": "v2"}, "tok")
        assert (status, answer["model_version"]) == (200, "2" * 12)
        status, answer = server.post("/admin/reload", {"version": broken.name}, "tok")
        assert status == 409
        assert "model.so does not match manifest.json" in answer["message"]
        assert answer["model_version"] == "2" * 12  # the old model keeps serving
        live.unlink()
        live.symlink_to(third)
        server.proc.send_signal(signal.SIGHUP)  # reload the configured path: now v3
        while server.get_json("/ready")["model_version"] != "3" * 12:
            time.sleep(0.02)
        load.join(timeout=60)
    result = load.result
    versions = {json.loads(a)["model_version"] for a in result.answers}
    assert result.failures == 0
    assert set(result.statuses) == {200}
    assert {"2" * 12, "3" * 12} <= versions
    assert answered_ids(result) <= logged_ids(server.log)


def test_after_kill_9_every_answered_prediction_is_in_the_log(serving_run, tmp_path, bodies):
    with running_server(serving_run, folder=tmp_path) as server:
        load = Load(server, bodies, requests=5000, concurrency=16, duration_s=20)
        load.start()
        while load.answered() < 500 and load.is_alive():
            time.sleep(0.005)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        load.join(timeout=60)
    answered = answered_ids(load.result)
    assert len(answered) >= 500
    assert load.result.failures > 0  # the clients really were cut off mid-load
    missing = answered - logged_ids(server.log)
    assert not missing, f"{len(missing)} acknowledged predictions are not in the log"


def test_sigterm_drains_admitted_requests_and_exits(serving_run, tmp_path, bodies):
    with running_server(serving_run, "--drain-s", "5", folder=tmp_path) as server:
        load = Load(server, bodies, requests=5000, concurrency=16, duration_s=20)
        load.start()
        while load.answered() < 300 and load.is_alive():
            time.sleep(0.005)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        load.join(timeout=60)
    assert set(load.result.statuses) <= {200, 503}
    assert answered_ids(load.result) <= logged_ids(server.log)


def test_sigterm_answers_a_request_that_is_in_flight_when_it_arrives(serving_run, tmp_path, bodies):
    """A request half-sent when SIGTERM arrives is still read, predicted and answered."""
    body = bodies[0]
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with running_server(serving_run, "--drain-s", "20", folder=tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(head + body[: len(body) // 2])
            time.sleep(0.3)  # the server has the headers: the request is in flight
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert server.proc.poll() is None, "the server exited with a request in flight"
            conn.sendall(body[len(body) // 2 :])
            response = http.client.HTTPResponse(conn)
            response.begin()
            status, payload = response.status, response.read()
        assert server.proc.wait(timeout=60) == 0
    assert status == 200, payload[:300]
    predictions = json.loads(payload)["predictions"]
    assert len(predictions) == 1
    assert {p["request_id"] for p in predictions} <= logged_ids(server.log)


def test_several_worker_processes_share_the_port_and_the_log(serving_run, tmp_path, bodies):
    with running_server(serving_run, "--workers", "2", folder=tmp_path) as server:
        result = run_load(
            f"{server.url}/predict",
            bodies,
            requests=400,
            concurrency=8,
            duration_s=60,
            keep_answers=True,
        )
        assert wait_ready(server)["ready"]
    assert result.statuses == {200: 400}
    assert answered_ids(result) <= logged_ids(server.log)
