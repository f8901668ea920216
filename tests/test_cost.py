"""Cost arithmetic, price-table errors, heatmap, right-sizing, budget verdicts, opsnb cost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from opsnb import cost, loans, plots_cost, prices, sizing
from opsnb.artifacts import RunManifest, write_json
from opsnb.cli import main
from opsnb.errors import ConfigError

SERVING = {
    "requests": 4000, "answered": 4000, "server_cpu_s": 6.0, "wall_s": 10.0,
    "throughput_rps": 400.0, "latency_ms": {"p50": 2.0, "p90": 4.0, "p95": 5.0, "p99": 8.0},
}  # fmt: skip
TABLE = {
    "date": "2026-11-28",
    "currency": "USD",
    "offers": {
        "a": {"vcpu_hour": 0.036, "gib_hour": 0.004, "gpu_hour": 0.36, "gb_month": 0.02,
              "source": "test figure"},
        "b": {"vcpu_hour": 0.072, "source": "twice a"},
    },
}  # fmt: skip


def _table(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_table_states_date_and_sources() -> None:
    table = prices.load()
    assert table.date
    assert len(table.offers) >= 4
    assert all(o.source for o in table.offers.values())


def test_cost_per_million_recomputed_and_doubles_with_price(tmp_path: Path) -> None:
    table = prices.load(_table(tmp_path, TABLE))
    serving = cost.Serving.from_dict(SERVING)
    a = cost.per_million(serving, table.offer("a"))
    # 6 CPU-s / 4000 predictions = 1.5 ms each; a million: 1500 CPU-s = 0.41667 h x $0.036
    assert a["busy_usd_per_million"] == pytest.approx(1e6 * 6.0 / 4000 / 3600 * 0.036)
    assert a["provisioned_usd_per_million"] == pytest.approx(1e6 * 10.0 / 4000 / 3600 * 0.036)
    assert a["utilisation"] == pytest.approx(0.6)
    assert a["idle_share"] == pytest.approx(0.4)
    b = cost.per_million(serving, table.offer("b"))
    assert b["busy_usd_per_million"] == pytest.approx(2 * a["busy_usd_per_million"])


@pytest.mark.parametrize(
    ("offers", "message"),
    [
        ({"a": {"vcpu_hour": -1, "source": "x"}}, "offers.a.vcpu_hour = -1 is negative"),
        (
            {"a": {"vcpu_hour": "cheap", "source": "x"}},
            "offers.a.vcpu_hour = 'cheap' is not a number",
        ),
        ({"a": {"vcpu_hour": 1, "tpu_hour": 2, "source": "x"}}, "offers.a.tpu_hour is a unit"),
        ({"a": {"gib_hour": 1, "source": "x"}}, "offers.a.vcpu_hour is missing"),
        ({"a": {"vcpu_hour": 1}}, "offers.a.source is missing"),
    ],
)
def test_price_table_errors_name_file_and_key(tmp_path: Path, offers: dict, message: str) -> None:
    path = _table(tmp_path, {**TABLE, "offers": offers})
    with pytest.raises(ConfigError, match=message) as info:
        prices.load(path)
    assert str(path) in str(info.value)


def test_missing_offer_and_missing_keys(tmp_path: Path) -> None:
    table = prices.load(_table(tmp_path, TABLE))
    with pytest.raises(
        ConfigError, match=r"offers.spot is not in the price table; offers there: a, b"
    ):
        table.offer("spot")
    with pytest.raises(ConfigError, match="key 'date' is missing"):
        prices.load(_table(tmp_path, {"currency": "USD", "offers": {}}))
    with pytest.raises(ConfigError, match="does not exist"):
        prices.load(tmp_path / "none.yaml")


def test_no_monitor_data_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serving.json does not exist: there is no monitor data"):
        cost.Serving.load(tmp_path / "monitor" / "serving.json")


def test_budget_verdicts_pass_and_fail(tmp_path: Path) -> None:
    table = prices.load(_table(tmp_path, TABLE))
    serving = cost.Serving.from_dict(SERVING)
    assert cost.latency_verdict(serving, 10.0).passed
    failed = cost.latency_verdict(serving, 5.0)
    assert not failed.passed
    assert failed.text.startswith("FAIL: p99 8 ms > budget 5 ms")
    per = cost.per_million(serving, table.offer("a"))  # provisioned $0.025 per million
    assert cost.cost_verdict(per, 0.03).passed
    over = cost.cost_verdict(per, 0.02)
    assert not over.passed
    assert "$0.0250 per million" in over.text
    assert "/ 3600" in over.text


def _log(path: Path, times: pd.Series, latency: list[float]) -> pd.DataFrame:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE predictions (request_id TEXT, ts REAL, model_version TEXT, "
                     "features TEXT, output REAL, latency_ms REAL)")  # fmt: skip
        conn.executemany(
            "INSERT INTO predictions VALUES (?, ?, 'v', '{}', 0.5, ?)",
            [(f"r{i}", 1.7e9 + i, lat) for i, lat in enumerate(latency)],
        )
    return pd.DataFrame({"request_id": [f"r{i}" for i in range(len(times))], "event_time": times})


def test_heatmap_from_constructed_log(tmp_path: Path) -> None:
    monday_9 = pd.Timestamp("2026-11-23 09:15")  # a Monday
    times = pd.Series([monday_9] * 3 + [pd.Timestamp("2026-11-28 22:05")])  # + a Saturday
    usage = _log(tmp_path / "log.sqlite", times, [1.0, 2.0, 30.0, 4.0])
    usage.to_parquet(tmp_path / "usage.parquet")
    rows = sizing.read_usage(tmp_path / "log.sqlite", tmp_path / "usage.parquet")
    heat = sizing.heatmap(rows, cpu_s_per_request=0.002)
    assert len(heat) == 168
    assert heat["requests"].sum() == 4
    cell = heat[(heat["weekday"] == 0) & (heat["hour"] == 9)].iloc[0]
    assert cell["requests"] == 3
    assert cell["cpu_s"] == pytest.approx(0.006)
    assert cell["p99_ms"] == pytest.approx(pd.Series([1.0, 2.0, 30.0]).quantile(0.99))
    assert heat[(heat["weekday"] == 5) & (heat["hour"] == 22)]["requests"].item() == 1
    fig = plots_cost.usage_heatmap(heat, 10.0)
    assert "busiest hour Mon 09:00" in fig.texts[0].get_text()


def test_right_sizing_and_schedule_on_constructed_capacity() -> None:
    plan = sizing.right_size(
        per_core_rps=1000.0, target_rps=2500.0, headroom=0.3, cores_per_replica=2
    )
    # usable 700 req/s per core; ceil(2500 / 700) = 4 cores = 2 replicas
    assert (plan["cores"], plan["replicas"]) == (4, 2)
    heat = pd.DataFrame({"weekday": [d for d in range(7) for _ in range(24)],
                         "hour": list(range(24)) * 7, "requests": [10] + [1] * 167})  # fmt: skip
    schedule = sizing.schedule(heat, plan, vcpu_hour=0.05)
    assert schedule["replicas"].max() == 2
    assert (schedule["replicas"] == 1).sum() == 167
    saving = sizing.schedule_saving(schedule)
    assert saving["peak_usd_per_week"] == pytest.approx(2 * 2 * 0.05 * 168)
    assert saving["scheduled_usd_per_week"] == pytest.approx((2 + 167) * 2 * 0.05)
    assert saving["saving_share"] == pytest.approx(1 - 169 / 336)
    title = plots_cost.scaling_schedule(schedule, saving).axes[0].get_title()
    assert title.startswith("following demand saves 50%")
    with pytest.raises(ConfigError, match="headroom must be within"):
        sizing.right_size(1000.0, 10.0, 1.0, 2)


def test_gpu_break_even_arithmetic(tmp_path: Path) -> None:
    table = prices.load(_table(tmp_path, TABLE))
    gpu = sizing.gpu_break_even(0.0015, table.offer("a"), 1e8, "stated")
    # CPU per prediction: 0.0015 s x $0.036/h / 3600 = $1.5e-8; $0.36/h / 3600 / 1.5e-8 = 6667/s
    assert gpu["break_even_rps"] == pytest.approx(0.36 / 3600 / (0.0015 * 0.036 / 3600))
    assert gpu["pays_below_capacity"]
    assert not sizing.gpu_break_even(0.0015, table.offer("b"), 1e8, "")["offered"]


def test_seasonal_stream_has_daily_and_weekly_shape() -> None:
    stream = loans.production_stream(6000, seed=3, after=pd.Timestamp("2026-01-05"), days=14)
    t = stream[loans.LOANS_TIMESTAMP]
    assert t.is_monotonic_increasing
    assert (t.dt.hour == 11).sum() > 5 * (t.dt.hour == 3).sum()
    assert (t.dt.day_of_week == 1).sum() > 2 * (t.dt.day_of_week == 6).sum()


def test_analyse_and_cli_on_a_constructed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    manifest = RunManifest.load(run)
    manifest.data["stages"] = {
        "train": {"wall_s": 36.0, "cpu_s": 72.0, "kernel_peak_rss_mb": 1024.0}
    }
    manifest.save()
    write_json(run / "monitor" / "serving.json", SERVING)
    write_json(run / "problem.json", {"p99_latency_ms": 10.0, "cost_per_million_usd": 1.0})
    times = pd.Series(pd.date_range("2026-11-23", periods=40, freq="4h"))
    _log(run / "monitor" / "predictions.sqlite", times, [2.0] * 40).to_parquet(
        run / "monitor" / "usage.parquet"
    )
    table = _table(tmp_path, TABLE)
    report = cost.analyse(run, prices.load(table), "a", compare=("b",))
    # train: 72 CPU-s x $0.036/h + 1 GiB x 36 s x $0.004/GiB-h
    assert report.run_usd == pytest.approx(72 / 3600 * 0.036 + 36 / 3600 * 0.004)
    assert report.passed
    assert report.to_dict()["cpu_s_per_1k_predictions"] == pytest.approx(1.5)
    assert cost.with_budgets({"text": "PASS: x", "passed": True}, report)["text"].startswith(
        "PASS: x; budgets: PASS"
    )
    assert main(["cost", str(run), "--prices", str(table), "--offer", "a", "--compare", "b"]) == 0
    out = capsys.readouterr().out
    assert "cost of the run: $0.0008" in out
    assert "PASS: p99 8 ms <= budget 10 ms" in out
    assert (
        main(
            [
                "cost",
                str(tmp_path / "nothing"),
                "--prices",
                str(table),
                "--offer",
                "a",
                "--compare",
                "",
            ]
        )
        == 1
    )
    assert "no monitor data yet" in capsys.readouterr().err


def test_usage_table_pairs_answered_requests_with_event_time() -> None:
    stream = pd.DataFrame({"t": pd.date_range("2026-11-23", periods=3, freq="h"), "x": [1, 2, 3]})
    table = sizing.usage_table(["r0", None, "r2"], stream, "t")
    assert table["request_id"].tolist() == ["r0", "r2"]
    assert table["event_time"].iloc[1] == pd.Timestamp("2026-11-23 02:00")
    assert sizing.usage_table(["r0"], stream, None)["event_time"].isna().all()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("date: [unclosed", "not valid YAML"),
        ("- a list", "expected a mapping"),
        ("date: x\ncurrency: EUR\noffers: {a: {vcpu_hour: 1, source: s}}", "currency is 'EUR'"),
        ("date: x\ncurrency: USD\noffers: {}", "offers must be a non-empty mapping"),
        ("date: x\ncurrency: USD\noffers: {a: 3}", "offers.a must be a mapping"),
    ],
)
def test_price_table_shape_errors(tmp_path: Path, raw: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(raw)
    with pytest.raises(ConfigError, match=message):
        prices.load(path)


def test_bad_monitor_data_and_sizing_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'latency_ms' is missing"):
        cost.Serving.from_dict({k: v for k, v in SERVING.items() if k != "latency_ms"})
    with pytest.raises(ConfigError, match="expected at least one answered request"):
        cost.Serving.from_dict({**SERVING, "answered": 0})
    with pytest.raises(ConfigError, match="must be > 0"):
        sizing.right_size(1000.0, 0.0, 0.3, 2)
    with pytest.raises(ConfigError, match="cores_per_replica must be >= 1"):
        sizing.right_size(1000.0, 10.0, 0.3, 0)
    with pytest.raises(ConfigError, match="no monitor data yet"):
        sizing.read_usage(tmp_path / "none.sqlite", tmp_path / "none.parquet")
