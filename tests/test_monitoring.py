"""Monitoring on constructed streams: drift, windows, late labels, CBPE, the checker, alerts."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from opsnb import monitoring
from opsnb.errors import ConfigError
from opsnb.monitoring import alerts, checker, drift, quality, reference
from opsnb.monitoring.analysis import Bundle, Windows, analyse_log, write_outputs
from opsnb.monitoring.logs import LogError
from opsnb.serving.predlog import PredictionLog

CATEGORIES = ["a", "b", "c"]
SCHEMA = {
    "task": "binary",
    "target": "y",
    "features": [
        {"name": "x0", "kind": "numeric"},
        {"name": "x1", "kind": "numeric"},
        {"name": "colour", "kind": "categorical", "categories": CATEGORIES},
    ],
}
PROBLEM = {"metric": "auc", "quality_floor": 0.7, "drift_psi": 0.1, "drift_alpha": 0.01}


def rows(n: int, seed: int, *, shift: float = 0.0, new_share: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.normal(shift, 1, n), rng.normal(0, 1, n), rng.integers(0, 3, n).astype(float)]
    )
    x[rng.uniform(size=n) < 0.05, 1] = np.nan
    x[rng.uniform(size=n) < new_share, 2] = 3  # a category never seen in training
    return x


def served(x: np.ndarray) -> np.ndarray:
    """The 'served model': saturating in x0 (as trees are), so a linear checker disagrees."""
    z = 1.5 * np.tanh(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) + 0.3 * (x[:, 2] == 1)
    return 1 / (1 + np.exp(-z))


def labels_for(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(size=len(p)) < p).astype(float)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    train, trusted = rows(6000, 1), rows(2000, 2)
    p_train, p_trusted = served(train), served(trusted)
    ref = reference.build_reference(
        train, SCHEMA, p_train, trusted_scores=p_trusted, trusted_labels=labels_for(p_trusted, 3)
    )
    second = checker.fit_checker(
        train, labels_for(p_train, 4), trusted, labels_for(p_trusted, 3),
        served_trusted=p_trusted, schema=SCHEMA,
    )  # fmt: skip
    return Bundle(Path("."), SCHEMA, ref, second, "v1")


def write_log(
    path: Path,
    x: np.ndarray,
    *,
    version: str = "v1",
    labels: np.ndarray | None = None,
    label_rows: np.ndarray | None = None,
    start: float = 1_000.0,
    step: float = 0.01,
) -> list[str]:
    log = PredictionLog(path)
    ids = [f"{version}-{i}" for i in range(len(x))]
    out = served(x)
    records = []
    for i, row in enumerate(x):
        colour = None if np.isnan(row[2]) else ([*CATEGORIES, "zz"])[int(row[2])]
        x1 = None if np.isnan(row[1]) else float(row[1])
        features = orjson.dumps({"x0": float(row[0]), "x1": x1, "colour": colour}).decode()
        records.append((ids[i], start + i * step, version, features, float(out[i]), 1.0))
    log.write(records)
    if labels is not None:
        for i in label_rows if label_rows is not None else range(len(x)):
            log.feedback(ids[i], float(labels[i]))
    log.close()
    return ids


def test_a_clean_stream_raises_no_drift_alert(bundle: Bundle, tmp_path: Path) -> None:
    x = rows(4000, 10)
    write_log(tmp_path / "log.sqlite", x, labels=labels_for(served(x), 11))
    result = analyse_log(bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM)
    assert len(result.windows) == 8
    assert [a for a in result.alerts if a["kind"] != "checker"] == []
    assert result.drifted_features() == []
    verdict = result.verdict()
    assert "0 of 3 features drifted (none)" in verdict["text"]
    assert verdict["passed"] is not any(a["severity"] == "high" for a in result.alerts)


def test_a_shift_is_detected_in_its_window_and_only_on_its_feature(
    bundle: Bundle, tmp_path: Path
) -> None:
    x = np.vstack([rows(2000, 20), rows(2000, 21, shift=1.0, new_share=0.1)])
    write_log(tmp_path / "log.sqlite", x)
    result = analyse_log(bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM)
    drifted = [a for a in result.alerts if a["kind"] == "drift"]
    assert {a["subject"] for a in drifted} == {"x0", "colour"}  # unseen categories move PSI
    assert {a["window"] for a in drifted} == {4, 5, 6, 7}
    new = [a for a in result.alerts if a["kind"] == "new_category"]
    assert {a["subject"] for a in new} == {"colour"}
    assert min(a["window"] for a in new) == 4
    assert result.drifted_features() == ["x0", "colour"]
    verdict = result.verdict()
    assert verdict["passed"] is False  # a whole-unit shift is high severity
    assert verdict["text"].startswith("FAIL: 2 of 3 features drifted (x0, colour)")
    heat = result.heatmap()
    assert heat.loc["x0", 5] > 0.1 > heat.loc["x1", 5]


def test_small_windows_do_not_cry_wolf(bundle: Bundle, tmp_path: Path) -> None:
    x = rows(600, 30)
    write_log(tmp_path / "log.sqlite", x)
    result = analyse_log(bundle, tmp_path / "log.sqlite", window=20, problem=PROBLEM)
    raw = result.drift[result.drift["feature"] == "x0"]["psi"]
    assert raw.max() > 0.2  # raw PSI of 20 rows is noise-large ...
    assert [a for a in result.alerts if a["kind"] in ("drift", "prediction_drift")] == []


def test_windows_by_count_and_by_time_and_an_empty_time_window(
    bundle: Bundle, tmp_path: Path
) -> None:
    assert Windows.parse("250") == Windows(size=250)
    assert Windows.parse("2min") == Windows(seconds=120.0)
    with pytest.raises(ConfigError, match="not a window size"):
        Windows.parse("fortnightly")
    x = rows(400, 40)
    log = tmp_path / "log.sqlite"
    write_log(log, x[:200], start=0.0, step=0.1)  # 0-20 s
    with sqlite3.connect(log) as conn:  # the next 200 rows 60-80 s later: window 2 empty
        feats = conn.execute("SELECT features, output FROM predictions LIMIT 200").fetchall()
        conn.executemany(
            "INSERT INTO predictions VALUES (?, ?, 'v1', ?, ?, 1.0)",
            [(f"late-{i}", 60.0 + i * 0.1, f, o) for i, (f, o) in enumerate(feats)],
        )
    result = analyse_log(bundle, log, window="30s", problem=PROBLEM)
    assert list(result.windows["rows"]) == [200, 0, 200]
    assert any("window 1" in n and "has no rows" in n for n in result.notes)
    assert not any(a["window"] == 1 for a in result.alerts)


def test_labels_joined_late_and_labels_for_unknown_ids(bundle: Bundle, tmp_path: Path) -> None:
    x = rows(1500, 50)
    y = labels_for(served(x), 51)
    log = tmp_path / "log.sqlite"
    write_log(log, x)
    time.sleep(0.01)
    store = PredictionLog(log)  # labels arrive later, for the first 1000 requests only
    for i in range(1000):
        assert store.feedback(f"v1-{i}", float(y[i]))
    store.close()
    with sqlite3.connect(log) as conn:
        conn.execute("INSERT INTO feedback VALUES ('nobody', 1.0, 0.0)")
    result = analyse_log(bundle, log, window=500, problem=PROBLEM)
    assert list(result.quality["labels"]) == [500, 500, 0]
    assert np.isnan(result.quality["auc"].iloc[2])
    assert np.isfinite(result.quality["estimated_auc"]).all()
    assert any("1 label(s)" in n and "not in the prediction log" in n for n in result.notes)


def test_cbpe_tracks_realized_auc_on_calibrated_scores() -> None:
    rng = np.random.default_rng(60)
    p = rng.beta(1.2, 3.5, 200_000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    estimate = quality.estimate(p, p)
    assert estimate["auc"] == pytest.approx(quality.auc(y, p), abs=0.005)
    assert estimate["accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)), abs=0.005)
    # per window of 2,000 rows the estimate stays within sampling noise of the realized AUC
    window = np.repeat(np.arange(10), 2000)
    table = quality.quality_table(
        "binary", window=window, scores=p[:20_000], labelled=np.ones(20_000, bool),
        labels=y[:20_000], windows=10, calibration=None,
    )  # fmt: skip
    assert np.mean(np.abs(table["auc"] - table["estimated_auc"])) < 0.02
    assert quality.expected_auc(np.array([0.5]), np.array([0.5])) != quality.expected_auc(
        np.array([0.1, 0.9]), np.array([0.0, 1.0])
    )


def test_a_poisoned_label_stream_opens_the_estimate_gap(bundle: Bundle, tmp_path: Path) -> None:
    x = rows(3000, 70)
    y = labels_for(served(x), 71)
    flip = np.random.default_rng(72).uniform(size=len(y)) < 0.3
    flip[:1000] = False  # labels lie from window 2 on
    y[flip] = 1 - y[flip]
    write_log(tmp_path / "log.sqlite", x, labels=y)
    result = analyse_log(bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM)
    gaps = [a for a in result.alerts if a["kind"] == "estimate_gap"]
    assert gaps
    assert min(a["window"] for a in gaps) == 2
    assert all(a["action"] == alerts.SCREEN_LABELS for a in gaps)
    assert {a["kind"] for a in result.alerts if a["window"] == 0} <= {"checker"}


def test_the_checker_disagrees_more_under_drift_and_fills_the_review_queue(
    bundle: Bundle, tmp_path: Path
) -> None:
    x = np.vstack([rows(1500, 80), rows(1500, 81, shift=2.5)])
    write_log(tmp_path / "log.sqlite", x)
    result = analyse_log(
        bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM, review_rows=50
    )
    rate = result.checker["disagreement_rate"].to_numpy()
    assert rate[3:].min() > 2 * rate[:3].max()
    assert {a["window"] for a in result.alerts if a["kind"] == "checker"} >= {3, 4, 5}
    review = result.review
    assert len(review) == 50
    gap_all = np.abs(served(x) - checker.score_checker(bundle.checker, x))
    assert review["disagreement"].min() == pytest.approx(np.sort(gap_all)[-50])
    assert list(review.columns[:5]) == ["request_id", "window", "served", "checker", "disagreement"]
    assert {"x0", "x1", "colour"} <= set(review.columns)
    assert review["request_id"].str.startswith("v1-").all()


def test_alert_records_carry_every_field_and_the_outputs_are_written(
    bundle: Bundle, tmp_path: Path
) -> None:
    x = np.vstack([rows(1000, 90), rows(1000, 91, shift=1.5)])
    y = labels_for(served(x), 92)
    write_log(tmp_path / "log.sqlite", x, labels=y)
    refusals = {"requests": 2100, "fields": {"colour": {"count": 100, "examples": ["zz"],
                "first_index": 1000, "reason": "unknown category"}}}  # fmt: skip
    result = analyse_log(
        bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM, refusals=refusals
    )
    assert result.alerts
    for alert in result.alerts:
        assert tuple(alert) == alerts.FIELDS
        assert alert["severity"] in ("low", "medium", "high")
        assert alert["action"]
    contract = [a for a in result.alerts if a["kind"] == "contract"]
    assert contract[0]["subject"] == "colour"
    assert contract[0]["window"] == 2
    table = result.alert_table()
    assert {"kind", "subject", "first_window", "windows", "action"} <= set(table.columns)
    paths = write_outputs(result, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == [
        "alerts.json", "drift.json", "quality.json", "review.parquet"
    ]  # fmt: skip
    assert pd.read_parquet(paths["review.parquet"]).shape[0] == len(result.review)
    assert alerts.table([]).empty


def test_bad_logs_get_one_clear_message_each(bundle: Bundle, tmp_path: Path) -> None:
    with pytest.raises(LogError, match="does not exist"):
        analyse_log(bundle, tmp_path / "missing.sqlite")
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database " * 100)
    with pytest.raises(LogError, match="not an opsnb prediction log: SQLite cannot read it"):
        analyse_log(bundle, text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (a)")
    with pytest.raises(LogError, match="no 'predictions' table"):
        analyse_log(bundle, other)
    PredictionLog(tmp_path / "empty.sqlite").close()
    with pytest.raises(LogError, match="is empty"):
        analyse_log(bundle, tmp_path / "empty.sqlite")
    write_log(tmp_path / "v2.sqlite", rows(100, 1), version="v2")
    with pytest.raises(LogError, match=r"holds no prediction of model version v1.*v2 \(100 rows\)"):
        analyse_log(bundle, tmp_path / "v2.sqlite")


def test_a_log_mixing_versions_is_analysed_for_the_bundles_version_only(
    bundle: Bundle, tmp_path: Path
) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, rows(1000, 100))
    write_log(log, rows(700, 101, shift=3.0), version="v2", start=2000.0)
    result = analyse_log(bundle, log, window=500, problem=PROBLEM)
    assert int(result.windows["rows"].sum()) == 1000
    assert any("left aside 700 rows of model version v2" in n for n in result.notes)
    assert result.drifted_features() == []


def test_shift_test_and_the_classic_psi() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=5000)
    summary = {"kind": "numeric", **reference.numeric_summary(base)}
    same = drift.shift_test(summary, rng.normal(size=2000))
    moved = drift.shift_test(summary, rng.normal(0.8, 1, 2000))
    assert same["p_value"] > 0.001
    assert same["psi_adjusted"] < 0.05
    assert moved["p_value"] < 1e-10
    assert moved["psi"] > monitoring.PSI_MODERATE
    assert monitoring.psi(base, rng.normal(size=5000)) < 0.02
    codes = rng.choice([0.0, 1.0, 2.0], 5000, p=[0.6, 0.3, 0.1])
    assert monitoring.psi(codes, codes.copy(), categorical=True) < 1e-9
    assert monitoring.psi(codes, rng.choice([0.0, 1.0, 2.0], 5000, p=[0.2, 0.3, 0.5]),
                          categorical=True) > monitoring.PSI_MAJOR  # fmt: skip
    with_missing = rng.normal(size=5000)
    with_missing[:1500] = np.nan
    assert monitoring.psi(base, with_missing) > monitoring.PSI_MAJOR
    assert monitoring.psi(base, rng.normal(2, 1, 5000), bins=5) > monitoring.PSI_MAJOR
    table = monitoring.drift_table(
        np.column_stack([base, base]),
        np.column_stack([base, base + 2]),
        ["s", "m"],
        ["numeric"] * 2,
    )
    assert list(table["feature"]) == ["m", "s"]
    assert list(table["level"]) == ["major", "stable"]


def test_reference_and_checker_refuse_what_does_not_fit(bundle: Bundle) -> None:
    with pytest.raises(ConfigError, match="expected \\(rows, 3\\)"):
        reference.build_reference(np.zeros((5, 2)), SCHEMA, np.zeros(5))
    with pytest.raises(ConfigError, match="format"):
        reference.check_reference({"format": "x"}, SCHEMA)
    other = {**SCHEMA, "features": SCHEMA["features"][:2]}
    with pytest.raises(ConfigError, match="describes features"):
        reference.check_reference(bundle.reference, other)
    with pytest.raises(ConfigError, match="not an opsnb checker"):
        checker.check_checker({}, SCHEMA)
    with pytest.raises(ConfigError, match="fitted on features"):
        checker.check_checker(bundle.checker, other)
    with pytest.raises(ConfigError, match=">= 20 to calibrate"):
        checker.fit_checker(
            rows(50, 1),
            np.ones(50),
            rows(5, 2),
            np.ones(5),
            served_trusted=np.ones(5),
            schema=SCHEMA,
        )


def test_a_regression_model_is_monitored_without_an_estimate(tmp_path: Path) -> None:
    schema = {**SCHEMA, "task": "regression"}
    train, trusted = rows(3000, 1), rows(1000, 2)
    y_train, y_trusted = served(train) * 10, served(trusted) * 10
    ref = reference.build_reference(train, schema, y_train)
    second = checker.fit_checker(
        train, y_train, trusted, y_trusted, served_trusted=y_trusted, schema=schema
    )
    assert second["family"] == "ridge regression"
    regression = Bundle(Path("."), schema, ref, second, "v1")
    x = rows(1000, 3)
    write_log(tmp_path / "log.sqlite", x, labels=served(x) * 10)
    result = analyse_log(regression, tmp_path / "log.sqlite", window=500,
                         problem={"metric": "r2", "quality_floor": 0.3})  # fmt: skip
    assert "estimated_auc" not in result.quality
    assert result.quality["r2"].notna().all()
    assert [a for a in result.alerts if a["kind"] == "quality"]  # labels x10 the outputs


def test_the_plots_state_their_answer(bundle: Bundle, tmp_path: Path) -> None:
    from opsnb import plots  # noqa: PLC0415

    x = np.vstack([rows(1000, 110), rows(1000, 111, shift=1.5, new_share=0.2)])
    write_log(tmp_path / "log.sqlite", x, labels=labels_for(served(x), 112))
    result = analyse_log(bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM)
    drifted = result.drifted_features()
    heat = plots.drift_heatmap(result.heatmap(), result.thresholds.psi, drifted)
    assert heat.axes[0].get_title() == "2 of 3 features drifted, first in window 2"
    dist = plots.drift_distributions(result.reference, result.live_counts, drifted)
    assert dist.get_suptitle() == "2 drifted feature(s): training vs live"
    qual = plots.quality_over_windows(result.quality, "auc", 0.99)
    assert qual.axes[0].get_title().startswith("realized auc below the floor in 4 window(s)")
    timeline = plots.alert_timeline(result.alerts, len(result.windows))
    assert timeline.axes[0].get_title().endswith("the first in window 2")
    assert plots.alert_timeline([], 3).axes[0].get_title() == "no alert fired"
    calm = plots.drift_heatmap(result.heatmap() * 0, 0.1, [])
    assert calm.axes[0].get_title() == "no feature drifted beyond its threshold"
    assert plots.quality_over_windows(result.quality, "auc", None).axes[0].get_title()


def test_a_bundle_without_the_monitor_files_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    from opsnb.artifacts import sha256_file, write_json  # noqa: PLC0415
    from opsnb.errors import ArtifactError  # noqa: PLC0415

    with pytest.raises(ArtifactError, match="neither a run folder"):
        Bundle.load(tmp_path)
    write_json(tmp_path / "schema.json", SCHEMA)
    write_json(tmp_path / "reference.json", bundle.reference)
    write_json(tmp_path / "checker.json", bundle.checker)
    files = {n: sha256_file(tmp_path / n) for n in ("schema.json", "reference.json")}
    write_json(tmp_path / "manifest.json", {"files": files, "model_sha256": "ab" * 32})
    with pytest.raises(ArtifactError, match=r"no checker\.json in its manifest"):
        Bundle.load(tmp_path)
    files["checker.json"] = "0" * 64
    write_json(tmp_path / "manifest.json", {"files": files, "model_sha256": "ab" * 32})
    with pytest.raises(ArtifactError, match=r"checker\.json does not match"):
        Bundle.load(tmp_path)
    files["checker.json"] = sha256_file(tmp_path / "checker.json")
    write_json(tmp_path / "manifest.json", {"files": files, "model_sha256": "ab" * 32})
    loaded = Bundle.load(tmp_path)
    assert loaded.version == "ab" * 6
    assert loaded.reference["rows"] == bundle.reference["rows"]


def test_two_worker_processes_find_what_one_finds(
    bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opsnb.monitoring import analysis  # noqa: PLC0415

    x = np.vstack([rows(1500, 120), rows(1500, 121, shift=1.0)])
    write_log(tmp_path / "log.sqlite", x, labels=labels_for(served(x), 122))
    one = analyse_log(bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM, workers=1)
    monkeypatch.setattr(analysis, "PARALLEL_ROWS", 1000)
    two = analyse_log(bundle, tmp_path / "log.sqlite", window=700, problem=PROBLEM, workers=2,
                      chunk_rows=400)  # fmt: skip
    again = analyse_log(bundle, tmp_path / "log.sqlite", window=500, problem=PROBLEM, workers=2,
                        chunk_rows=400)  # fmt: skip
    assert len(two.windows) == 5
    pd.testing.assert_frame_equal(one.drift, again.drift)
    pd.testing.assert_frame_equal(one.quality, again.quality)
    pd.testing.assert_frame_equal(one.windows, again.windows)
    assert one.alerts == again.alerts
    assert list(one.review["request_id"]) == list(again.review["request_id"])
