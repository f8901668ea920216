"""The real service on 127.0.0.1: predictions, refusals, feedback, metrics, OpenAPI, fuzzing."""

import contextlib
import json
import re
import select
import socket
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsnb import predictor
from opsnb.bench import load as loadtest
from opsnb.serving import ServeOptions, create_app
from opsnb.serving.server import bind
from tests.serving_support import Server, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(serving_run, tmp_path_factory):
    with running_server(serving_run, folder=tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest.fixture(scope="module")
def records(serving_run):
    return [json.loads(b) for b in loadtest.bodies_from_run(serving_run, limit=300)]


def complete(answer: bytes) -> bool:
    head, blank, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, flags=re.IGNORECASE)
    return bool(blank) and (length is None or len(body) >= int(length.group(1)))


def raw_exchange(port: int, request: bytes, chunks: list[bytes] = ()) -> bytes:
    """Send raw bytes; return the server's answer, which may come before all is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0.01)
            if readable:  # answered early: stop sending, or a reset could discard the answer
                break
            sock.sendall(chunk)
        answer = b""
        while not complete(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_predictions_over_http_equal_the_in_process_predictor(server, serving_run, records):
    model = predictor.load_bundle(serving_run / "bundle")
    try:
        expected = model.predict(pd.read_parquet(serving_run / "data" / "test.parquet").head(300))
    finally:
        model.close()
    status, answer = server.post("/predict", records)
    assert status == 200, answer
    got = [p["probability"] for p in answer["predictions"]]
    np.testing.assert_array_equal(got, expected)
    ids = [p["request_id"] for p in answer["predictions"]]
    assert len(set(ids)) == 300
    status, single = server.post("/predict", records[7])
    assert single["predictions"][0]["probability"] == expected[7]
    assert (
        single["model_version"]
        == answer["model_version"]
        == server.get_json("/ready")["model_version"]
    )
    with sqlite3.connect(server.log) as conn:
        logged = conn.execute(
            "SELECT output, features FROM predictions WHERE request_id = ?", (ids[5],)
        ).fetchone()
    assert logged[0] == expected[5]
    assert json.loads(logged[1]) == records[5]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{nope", "application/json", 400, r"request body is not valid JSON"),
        (b"[]", "application/json", 422, r"empty array; expected at least one record"),
        (b'{"age": 30}', "application/json", 422, r"record 0 lacks field\(s\) 'income'"),
        (b"{}", "text/plain", 415, r"content-type 'text/plain' is not accepted; send applicat"),
        (b"{}", "", 415, r"content-type '\(none\)' is not accepted"),
    ],
)
def test_bad_requests_are_answered_4xx_with_the_documented_status(
    server, body, content_type, status, message
):
    headers = {"Content-Type": content_type} if content_type else {}
    got, _, raw = server.call("POST", "/predict", body, headers)
    answer = json.loads(raw)
    assert got == status
    assert answer["error"] in {"syntax", "contract", "media_type"}
    assert re.search(message, answer["message"])


def test_a_bad_value_is_named_by_record_field_and_value(server, records):
    bad = [records[0], {**records[1], "income": 1e39}, records[2]]
    status, answer = server.post("/predict", bad)
    assert status == 422
    assert answer["record"] == 1
    assert answer["field"] == "income"
    assert answer["message"].startswith("record 1: field 'income' = 1e+39 (a number); expected")
    assert "float32" in answer["message"]


def test_an_oversized_body_is_refused_before_it_is_read(server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    answer = raw_exchange(server.port, head)  # no body sent at all: the answer comes anyway
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"content-length '50000000' exceeds the limit of 1048576 bytes" in answer


def test_an_oversized_chunked_body_is_refused_once_it_passes_the_limit(server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    answer = raw_exchange(server.port, head, [chunk] * 40)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request body exceeds the limit of 1048576 bytes" in answer


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_json_bodies_never_get_a_5xx(server, records, data):
    names = list(records[0])
    record = data.draw(st.fixed_dictionaries(dict.fromkeys(names, JSON)) | JSON)
    if isinstance(record, dict) and data.draw(st.booleans()):
        record = {**records[0], **record}  # mostly valid records with a few strange fields
    body = data.draw(st.sampled_from([json.dumps(record), json.dumps([record, records[1]])]))
    status, _, raw = server.call(
        "POST", "/predict", body.encode(), {"Content-Type": "application/json"}
    )
    assert status in (200, 400, 413, 415, 422), raw
    if status != 200:
        assert json.loads(raw)["message"]


def test_feedback_is_stored_for_an_answered_request_and_refused_for_an_unknown_one(server, records):
    _, answer = server.post("/predict", records[3])
    rid = answer["predictions"][0]["request_id"]
    assert server.post("/feedback", {"request_id": rid, "label": 1}) == (
        200,
        {"stored": True, "request_id": rid},
    )
    status, refused = server.post("/feedback", {"request_id": "not-an-id", "label": 0})
    assert status == 404
    assert "request_id 'not-an-id' is not in the prediction log" in refused["message"]
    status, refused = server.post("/feedback", {"request_id": rid, "label": "yes"})
    assert status == 422
    status, refused = server.post("/feedback", {"request_id": rid, "label": 0.5})
    assert (status, refused["field"]) == (422, "label")
    assert "expected 0 or 1 (the observed class of a binary model)" in refused["message"]
    status, refused = server.post("/feedback", {"request_id": rid, "label": 0})
    assert (status, refused["error"]) == (409, "label_exists")  # the first label stands
    with sqlite3.connect(server.log) as conn:
        assert conn.execute(
            "SELECT label FROM feedback WHERE request_id = ?", (rid,)
        ).fetchone() == (1.0,)


def test_concurrent_requests_form_batches_larger_than_one(server, serving_run):
    before_calls = server.metric("opsnb_batch_requests_count")
    before_requests = server.metric("opsnb_batch_requests_sum")
    bodies = loadtest.bodies_from_run(serving_run, limit=200)
    result = loadtest.run_load(
        f"{server.url}/predict", bodies, requests=600, concurrency=32, duration_s=60
    )
    assert result.statuses == {200: 600}
    calls = server.metric("opsnb_batch_requests_count") - before_calls
    requests = server.metric("opsnb_batch_requests_sum") - before_requests
    assert requests == 600
    assert requests / calls > 1.0, (requests, calls)


def test_health_ready_metrics_and_openapi(server, records):
    assert server.get_json("/health") == {"alive": True}
    ready = server.get_json("/ready")
    assert ready["ready"] is True
    doc = server.get_json("/openapi.json")
    record = doc["components"]["schemas"]["Record"]
    assert list(record["properties"]) == list(records[0])
    assert record["additionalProperties"] is False
    home = record["properties"]["home_ownership"]
    assert "RENT" in home["enum"]
    assert doc["info"]["version"] == ready["model_version"]
    status, page = server.get("/docs")
    assert status == 200
    assert b"/openapi.json" in page
    _, text = server.get("/metrics")
    for name in (
        "opsnb_request_seconds_bucket",
        "opsnb_batch_rows_bucket",
        "opsnb_queue_depth",
        "opsnb_errors_total",
        "process_cpu_seconds_total",
        "opsnb_model_info",
    ):
        assert name.encode() in text


@pytest.fixture(scope="module")
def in_process(serving_run, tmp_path_factory):
    """The same app under uvicorn in a thread of this process (so coverage sees it)."""
    sock = bind("127.0.0.1", 0)  # the system picks the port: no find-then-bind race
    port = int(sock.getsockname()[1])
    folder = tmp_path_factory.mktemp("in-process")
    options = ServeOptions(
        bundle=str(serving_run), log_path=str(folder / "log.sqlite"), admin_token="t0ken"
    )
    server = uvicorn.Server(uvicorn.Config(create_app(options), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    running = Server(port, None, folder / "log.sqlite", folder / "none")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if running.get("/ready")[0] == 200:
                break
        time.sleep(0.05)
    yield running
    server.should_exit = True
    thread.join(timeout=30)


def test_in_process_service_answers_refuses_and_reloads(in_process, serving_run, records):
    status, answer = in_process.post("/predict", records[:3])
    assert status == 200
    rid = answer["predictions"][0]["request_id"]
    assert in_process.post("/feedback", {"request_id": rid, "label": 0})[0] == 401
    assert in_process.post("/feedback", {"request_id": rid, "label": 0}, "t0ken")[0] == 200
    assert in_process.post("/feedback", {"request_id": rid, "label": 1}, "t0ken")[0] == 200
    assert in_process.post("/feedback", b"{", "t0ken")[0] == 400
    assert in_process.post("/predict", [])[0] == 422
    assert in_process.call("POST", "/predict", b"{}", {"Content-Type": "text/csv"})[0] == 415
    assert in_process.post("/admin/reload", {})[0] == 401
    assert in_process.post("/admin/reload", {}, "wrong")[0] == 401
    status, refused = in_process.post("/admin/reload", {"bundle": "/tmp/x"}, "t0ken")
    assert (status, refused["error"]) == (400, "syntax")
    status, refused = in_process.post("/admin/reload", {"version": 7}, "t0ken")
    assert (status, refused["error"]) == (400, "syntax")
    status, refused = in_process.post("/admin/reload", {"version": "nothing-here"}, "t0ken")
    assert status == 409
    assert "is neither a run folder with bundle/manifest.json nor a bundle" in refused["message"]
    status, reloaded = in_process.post("/admin/reload", b"", "t0ken")
    assert (status, reloaded["model_version"]) == (200, answer["model_version"])
    status, reloaded = in_process.post("/admin/reload", {"version": serving_run.name}, "t0ken")
    assert (status, reloaded["version"]) == (200, serving_run.name)
    assert in_process.get("/openapi.json")[0] == 200
    assert in_process.get("/docs")[0] == 200
    assert b'opsnb_reloads_total{outcome="refused"} 1.0' in in_process.get("/metrics")[1]


def test_until_a_model_is_loaded_ready_and_predict_answer_503_and_health_200(
    serving_run, copy_of, tmp_path, records
):
    """No model loaded (here: the configured one is refused): alive, not ready, no predictions."""
    run = copy_of(serving_run)
    library = run / "bundle" / "model.so"
    library.write_bytes(library.read_bytes()[:-64])
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    options = ServeOptions(bundle=str(run), log_path=str(tmp_path / "log.sqlite"))
    server = uvicorn.Server(uvicorn.Config(create_app(options), port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    running = Server(port, None, tmp_path / "log.sqlite", tmp_path / "none")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, raw = running.get("/ready")
                if "does not match" in raw.decode():
                    break
            time.sleep(0.05)
        assert status == 503
        ready = json.loads(raw)
        assert ready["ready"] is False
        assert "bundle file model.so does not match manifest.json" in ready["reason"]
        assert running.get("/health") == (200, b'{"alive":true}')
        status, answer = running.post("/predict", records[:1])
        assert status == 503
        assert answer["message"] == "the model is not loaded yet; retry shortly"
        assert running.get("/openapi.json")[0] == 503
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()
