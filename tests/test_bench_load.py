import json
import re
import shutil

import pytest

from opsnb.bench.load import LoadResult, bodies_from_run, check_loopback, run_load
from opsnb.errors import ConfigError
from opsnb.schema import Schema
from tests.serving_support import running_server
from tests.support import opsnb_cli


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/predict",
        "https://127.0.0.1/predict",
        "http://192.168.1.5:8000/predict",
        "10.1.1.1:80",
    ],
)
def test_only_loopback_http_is_a_target(url):
    with pytest.raises(ConfigError, match=r"load tests only target http on loopback"):
        check_loopback(url)


def test_loopback_urls_are_split_into_host_port_and_path():
    assert check_loopback("http://127.0.0.1:8123/predict") == ("127.0.0.1", 8123, "/predict")
    assert check_loopback("localhost:9000") == ("localhost", 9000, "/predict")


def test_bounds_must_be_positive():
    with pytest.raises(ConfigError, match=r"requests=0, concurrency=1, duration_s=1 and 1 bodies"):
        run_load("http://127.0.0.1:1/predict", [b"{}"], requests=0, concurrency=1, duration_s=1)


def test_an_unreachable_server_counts_as_connection_failures_not_answers():
    result = run_load(
        "http://127.0.0.1:1/predict", [b"{}"], requests=5, concurrency=2, duration_s=10
    )
    assert (result.failures, sum(result.statuses.values())) == (5, 0)


def test_summary_percentiles_come_from_successful_answers():
    result = LoadResult(wall_s=2.0, latencies_s=[0.001] * 98 + [0.1, 0.2])
    result.statuses.update({200: 100, 503: 7})
    summary = result.summary()
    assert summary["throughput_rps"] == 50.0
    assert summary["requests"] == 107
    assert summary["p50_ms"] == 1.0
    assert summary["p99_ms"] > 99


def test_bodies_are_single_records_of_the_test_split_with_null_for_missing(serving_run):
    bodies = [json.loads(b) for b in bodies_from_run(serving_run, limit=100)]
    schema = Schema.load(serving_run / "bundle" / "schema.json")
    assert len(bodies) == 100
    assert all(list(b) == schema.feature_names for b in bodies)
    assert any(v is None for b in bodies for v in b.values())


def test_a_run_without_a_test_split_is_refused(serving_run, tmp_path):
    shutil.copytree(serving_run / "bundle", tmp_path / "run" / "bundle")
    with pytest.raises(ConfigError, match=r"data/test.parquet is missing; pass a run folder"):
        bodies_from_run(tmp_path / "run")


@pytest.mark.slow
def test_opsnb_loadtest_loads_a_running_service_and_reports_it(serving_run, tmp_path):
    with running_server(serving_run, folder=tmp_path) as server:
        url = f"{server.url}/predict"
        args = ("loadtest", url, "--run", str(serving_run), "-n", "60", "-c", "4")
        as_json = opsnb_cli(*args, "--duration", "20", "--json")
        as_text = opsnb_cli(*args, "--duration", "20")
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    summary = json.loads(as_json.stdout)
    assert (summary["requests"], summary["ok"], summary["statuses"]) == (60, 60, {"200": 60})
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert as_text.returncode == 0, as_text.stderr[-3000:]
    assert re.match(r"60 requests at concurrency 4 in [\d.]+ s: [\d.]+ ok/s, p50 ", as_text.stdout)
    assert "statuses {200: 60}, connection failures 0" in as_text.stdout


def test_opsnb_loadtest_refuses_a_remote_target_before_reading_the_run(tmp_path):
    done = opsnb_cli("loadtest", "http://10.0.0.1:80/predict", "--run", str(tmp_path / "none"))
    assert done.returncode == 1
    assert "error: load tests only target http on loopback" in done.stderr
