"""opsnb score, chunked engine: equal to the in-process predictor, quarantine, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import loans, scoring
from opsnb.errors import ArtifactError, ConfigError, DataError, SchemaError
from opsnb.predictor import load_bundle
from tests.support import PROJECT, opsnb_cli

ROWS = 4000


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 fresh loan applications as four Parquet parts."""
    folder = tmp_path_factory.mktemp("score-in") / "parts"
    loans.write_loan_parts(folder, ROWS, seed=9, rows_per_part=1000)
    return folder


def _whole(parts: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(parts.glob("*.parquet"))])


def test_chunked_scores_equal_the_in_process_predictor(loans_bundle, parts, tmp_path):
    out = tmp_path / "scores.parquet"
    summary = scoring.score(loans_bundle, parts, out, chunk_rows=300, threads=2)
    scores = pd.read_parquet(out)
    quarantine = pd.read_parquet(tmp_path / "scores.quarantine.parquet")
    assert summary.rows_in == ROWS == summary.scored + summary.quarantined
    assert len(scores) == summary.scored
    assert len(quarantine) == summary.quarantined
    whole = _whole(parts)
    refused = set(quarantine["record"].map(lambda r: json.loads(r)["application_id"]))
    kept = whole[~whole["application_id"].isin(refused)]
    model = load_bundle(loans_bundle)
    try:
        expected = model.predict(kept)
        assert list(scores["application_id"]) == list(kept["application_id"])
        np.testing.assert_array_equal(scores["prediction"].to_numpy(), expected)
        assert set(scores["model_version"]) == {model.version}
    finally:
        model.close()
    assert list(scores.columns) == [
        "source", "row", "application_id", "prediction", "model_version"
    ]  # fmt: skip
    first = scores[scores["source"] == "part-00001.parquet"]["row"]
    assert first.min() >= 0
    assert first.max() < 1000
    done = scoring.read_summary(out)
    assert done["rows_in"] == ROWS
    assert done["rows_per_s"] > 0


def test_rows_that_break_the_schema_are_quarantined_with_their_reason(loans_bundle, tmp_path):
    frame = loans.loan_applications(300, seed=11)
    frame["credit_score"] = frame["credit_score"].astype(str)  # a producer sent text
    frame.loc[3, "credit_score"] = "seven hundred"  # wrong type
    frame.loc[5, "income"] = 1e12  # out of range
    frame.loc[8, "term_months"] = np.nan  # required (no missing value in training)
    frame["region"] = frame["region"].cat.add_categories(["mars"])
    frame.loc[13, "region"] = "mars"  # unknown category, rejected by the contract
    frame.loc[21, "age"] = np.inf
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    summary = scoring.score(loans_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet")
    quarantine = pd.read_parquet(tmp_path / "out.quarantine.parquet").set_index("row")
    assert summary.quarantined == 5
    assert summary.scored == 295
    assert quarantine.loc[3, ["reason", "column", "value"]].tolist() == [
        "wrong type", "credit_score", "seven hundred"
    ]  # fmt: skip
    assert quarantine.loc[5, "reason"] == "out of range"
    assert quarantine.loc[8, ["reason", "column"]].tolist() == [
        "missing required value", "term_months"
    ]  # fmt: skip
    assert quarantine.loc[13, ["reason", "value"]].tolist() == ["unknown category", "mars"]
    assert quarantine.loc[21, ["reason", "column"]].tolist() == ["out of range", "age"]
    assert json.loads(quarantine.loc[13, "record"])["application_id"] == "A0011-0000013"
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert not set(scored["row"]) & {3, 5, 8, 13, 21}


def test_a_csv_with_a_bad_line_in_the_middle_quarantines_that_line(loans_bundle, tmp_path):
    frame = loans.loan_applications(2000, seed=12)
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(1000, "A-broken,2024-01-01,41,oops\n")
    path.write_text("".join(lines))
    summary = scoring.score(loans_bundle, path, tmp_path / "out.parquet", chunk_rows=256)
    quarantine = pd.read_parquet(tmp_path / "out.quarantine.parquet")
    malformed = quarantine[quarantine["reason"] == scoring.MALFORMED]
    assert len(malformed) == 1
    assert "A-broken" in malformed["record"].iloc[0]
    assert summary.rows_in == 2001
    assert summary.scored + summary.quarantined == 2001
    parquet = tmp_path / "in.parquet"
    frame.to_parquet(parquet, index=False)
    same = scoring.score(loans_bundle, parquet, tmp_path / "p.parquet")
    csv_scores = pd.read_parquet(tmp_path / "out.parquet")
    parquet_scores = pd.read_parquet(tmp_path / "p.parquet")
    assert same.scored == summary.scored
    np.testing.assert_allclose(csv_scores["prediction"], parquet_scores["prediction"], atol=1e-7)


def test_columns_that_do_not_match_the_schema_stop_before_anything_is_written(
    loans_bundle, tmp_path
):
    frame = loans.loan_applications(100).drop(columns=["income"])
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    with pytest.raises(SchemaError, match=r"lacks feature column\(s\) 'income' required"):
        scoring.score(loans_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_corrupt_parquet_part_is_one_error_and_no_output(loans_bundle, parts, tmp_path):
    damaged = tmp_path / "parts"
    damaged.mkdir()
    for p in parts.glob("*.parquet"):
        (damaged / p.name).write_bytes(p.read_bytes())
    data = (damaged / "part-00002.parquet").read_bytes()
    (damaged / "part-00002.parquet").write_bytes(data[: len(data) // 2])  # truncated footer
    with pytest.raises(DataError, match=r"part-00002.parquet is not a readable Parquet file"):
        scoring.score(loans_bundle, damaged, tmp_path / "out.parquet")
    middle = bytearray(data)
    middle[4:200] = b"\xff" * 196  # the first page header and its data, after the magic
    (damaged / "part-00002.parquet").write_bytes(bytes(middle))
    with pytest.raises(DataError, match=r"part-00002.parquet could not be read to the end"):
        scoring.score(loans_bundle, damaged, tmp_path / "out.parquet", chunk_rows=100)
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_specs_and_options_are_refused(loans_bundle, tmp_path):
    with pytest.raises(DataError, match="matches no file"):
        scoring.score(loans_bundle, str(tmp_path / "*.parquet"), tmp_path / "o.parquet")
    with pytest.raises(DataError, match="does not exist"):
        scoring.score(loans_bundle, tmp_path / "nope.csv", tmp_path / "o.parquet")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="neither CSV nor Parquet"):
        scoring.score(loans_bundle, tmp_path / "x.json", tmp_path / "o.parquet")
    with pytest.raises(DataError, match=r"holds no \.parquet or \.csv"):
        scoring.score(loans_bundle, tmp_path, tmp_path / "o.parquet")
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        scoring.score(loans_bundle, tmp_path, tmp_path / "o.parquet", engine="spark")
    with pytest.raises(ArtifactError, match="neither a run folder"):
        scoring.score(tmp_path, tmp_path, tmp_path / "o.parquet")
    loans.loan_applications(50).to_csv(tmp_path / "a.csv", index=False)
    loans.loan_applications(50).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(DataError, match="mixes CSV and Parquet"):
        scoring.score(loans_bundle, str(tmp_path / "[ab].*"), tmp_path / "o.parquet")


def test_an_interrupted_job_leaves_no_output_under_the_final_name(loans_bundle, tmp_path):
    source = tmp_path / "big"
    loans.write_loan_parts(source, 300_000, seed=1, rows_per_part=100_000)
    out = tmp_path / "out.parquet"
    job = subprocess.Popen(
        [sys.executable, "-m", "opsnb.cli", "score", str(loans_bundle), str(source),
         "--out", str(out), "--chunk-rows", "2000", "-q"],
        cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.parquet.tmp-*/*")) and time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]


def test_memory_stays_bounded_on_a_file_many_chunks_large(loans_bundle, tmp_path):
    """Arrow's peak allocation scoring 20x the rows stays that of a few chunks."""
    probe = (
        "import sys, resource, pyarrow as pa; from opsnb import scoring; "
        "s = scoring.score(sys.argv[1], sys.argv[2], sys.argv[3], chunk_rows=2000); "
        "print(pa.default_memory_pool().max_memory(), "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, s.rows_in)"
    )
    peaks = {}
    for rows in (20_000, 400_000):
        source = tmp_path / f"in-{rows}"
        loans.write_loan_parts(source, rows, seed=2, rows_per_part=20_000)  # row groups alike
        done = subprocess.run(
            [sys.executable, "-c", probe, str(loans_bundle), str(source), str(tmp_path / "o")],
            capture_output=True, text=True, check=True, cwd=PROJECT,
        )  # fmt: skip
        arrow, rss_kib, rows_in = map(int, done.stdout.split())
        assert rows_in == rows
        peaks[rows] = (arrow, rss_kib)
    # Holding 400,000 rows would take > 60 MB of Arrow memory: the chunks take a few MB.
    assert peaks[400_000][0] < 32 << 20, peaks
    assert peaks[400_000][1] - peaks[20_000][1] < 48 << 10, peaks  # RSS grew < 48 MB


def test_the_score_command_prints_the_summary(loans_bundle, parts, tmp_path):
    out = tmp_path / "scores.parquet"
    result = opsnb_cli("score", str(loans_bundle), str(parts), "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert f"{ROWS:,} rows in" in result.stdout
    assert "quarantine:" in result.stdout
    bad = opsnb_cli("score", str(loans_bundle), str(tmp_path / "none.parquet"), "--out", "x")
    assert bad.returncode == 1
    assert "error: input" in bad.stderr


def test_generate_writes_parts_without_holding_them(tmp_path):
    result = opsnb_cli(
        "generate", "--rows", "2_500", "--out", str(tmp_path / "g"), "--rows-per-part", "1000",
        "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "g").iterdir())
    assert [p.name for p in files] == [f"part-0000{i}.parquet" for i in range(3)]
    frame = pd.concat([pd.read_parquet(p) for p in files])
    assert len(frame) == 2500
    assert frame["application_id"].is_unique
    assert frame["applied_at"].is_monotonic_increasing
    with pytest.raises(ConfigError, match="not an empty folder"):
        loans.write_loan_parts(tmp_path / "g", 10)
    with pytest.raises(ConfigError, match="must be >= 1"):
        loans.write_loan_parts(tmp_path / "h", 0)


def test_scoring_needs_only_the_base_install(loans_bundle, parts, tmp_path):
    """No training stack, no notebooks, no Dask: a scoring install is the serving one."""
    code = (
        "import sys\n"
        "for name in ('xgboost', 'sklearn', 'papermill', 'pandera', 'dask', 'treelite'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "from opsnb import scoring\n"
        "print(scoring.score(sys.argv[1], sys.argv[2], sys.argv[3]).rows_in)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(loans_bundle), str(parts), str(tmp_path / "o.parquet")],
        capture_output=True, text=True, cwd=PROJECT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(ROWS)
