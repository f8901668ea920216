"""Champion/challenger through the real `opsnb update`: real pipeline, server and log."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import config, loans, poisoning, update
from opsnb.artifacts import RunManifest, sha256_file
from opsnb.errors import DataError
from opsnb.schema import Schema
from opsnb.serving.predlog import PredictionLog
from tests.serving_support import running_server
from tests.support import PROJECT, opsnb_cli

pytestmark = pytest.mark.slow
TOKEN = "update-test-token"


@pytest.fixture
def champion(serving_run: Path, runs_dir: Path) -> Path:
    """A copy of a finished run (through operationalize) as runs/champion, with its contract."""
    base = runs_dir / "base"
    shutil.copytree(serving_run, base, symlinks=True)
    shutil.copytree(serving_run.parent / "contracts", runs_dir / "contracts")
    update.promote(base)
    return base


def _batch(run: Path, scenario: str, rows: int = 1200, seed: int = 21) -> pd.DataFrame:
    trusted = pd.read_parquet(run / "data" / "trusted.parquet")
    after = trusted["applied_at"].max()
    return loans.production_stream(rows, seed=seed, after=after, scenario=loans.scenario(scenario))


def _state(runs_dir: Path) -> tuple[str, list[str], str]:
    """The champion pointer, the run folders, and the champion's manifest hash."""
    target = update.current_champion(runs_dir)
    folders = sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink())
    return str(target), folders, sha256_file(target / "manifest.json")


def _version(server) -> str:
    status, body = server.post("/predict", _record())
    assert status == 200, body
    return str(body["model_version"])


def _record() -> dict:
    test = pd.read_parquet(update.current_champion(Path(config.runs_root())) / "data/test.parquet")
    row = test.drop(columns=["default", "applied_at", "application_id"]).iloc[0]
    return {
        k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()
    }


def test_clean_batch_is_admitted_promoted_and_the_server_reloaded(champion, runs_dir, tmp_path):
    path = tmp_path / "clean.parquet"
    _batch(champion, "clean").to_parquet(path)
    srv = tmp_path / "srv"
    with running_server(runs_dir / "champion", folder=srv, admin_token=TOKEN) as server:
        before = _version(server)
        result = opsnb_cli(
            "update",
            "champion",
            "--data",
            str(path),
            "--promote",
            "--server",
            server.url,
            "--run-id",
            "challenger",
            env={config.RUNS_ENV: str(runs_dir), update.ADMIN_TOKEN_ENV: TOKEN},
        )
        assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
        assert result.stdout.startswith("ADMITTED: ")
        after = _version(server)
    decision = json.loads((runs_dir / "challenger" / update.DECISION).read_text())
    assert decision["decision"] == "admitted"
    assert decision["promoted"]
    assert decision["champion"] == "base"
    assert decision["challenger"] == "challenger"
    assert decision["reload"]["status"] == 200
    c = decision["comparison"]
    assert c["low"] <= c["delta"] <= c["high"]
    assert c["metric"] == "auc"
    assert any(
        r.startswith("challenger not worse on the trusted holdout") for r in decision["reasons"]
    )
    assert update.current_champion(runs_dir) == (runs_dir / "challenger").resolve()
    assert after != before
    # The challenger trained on the champion's rows plus the admitted ones; other splits unchanged.
    new_train = pd.read_parquet(runs_dir / "challenger" / "data" / "train.parquet")
    old_train = pd.read_parquet(champion / "data" / "train.parquet")
    assert len(new_train) == len(old_train) + decision["admitted_rows"]
    for split in ("trusted", "test"):
        assert sha256_file(runs_dir / "challenger" / "data" / f"{split}.parquet") == sha256_file(
            champion / "data" / f"{split}.parquet"
        )
    manifest = RunManifest.load(runs_dir / "challenger")
    assert manifest.stages["problem"]["reused_from"] == "base"  # unchanged stages are reused
    for relpath in (update.DECISION, update.FLAGGED, "data/admitted.parquet"):
        manifest.verify(relpath)


def test_a_hurting_batch_is_refused_and_the_champion_keeps_serving(champion, runs_dir, tmp_path):
    batch = _batch(champion, "clean")
    batch["default"] = 1 - batch["default"]
    path = tmp_path / "lies.csv"
    batch.to_csv(path, index=False)
    before = _state(runs_dir)
    with running_server(runs_dir / "champion", folder=tmp_path / "srv") as server:
        version = _version(server)
        result = opsnb_cli(
            "update",
            "champion",
            "--data",
            str(path),
            "--promote",
            "--server",
            server.url,
            "--run-id",
            "refused",
            env={config.RUNS_ENV: str(runs_dir), update.ADMIN_TOKEN_ENV: TOKEN},
        )
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stdout.startswith("REFUSED: ")
        assert _version(server) == version
    assert _state(runs_dir)[0] == before[0]
    assert _state(runs_dir)[2] == before[2]
    decision = json.loads((runs_dir / "refused" / update.DECISION).read_text())
    assert decision["decision"] == "refused"
    assert not decision["promoted"]
    assert decision["reasons"], "every refusal says why"
    flagged = pd.read_parquet(runs_dir / "refused" / update.FLAGGED)
    assert flagged["reason"].notna().all()
    assert len(flagged) == sum(decision["flagged"].values())


def _log(path: Path, batch: pd.DataFrame) -> list[str]:
    features = batch.drop(columns=["default", "application_id", "applied_at"]).filter(
        regex="^(?!truth_)"
    )
    log = PredictionLog(path)
    ids = [f"r{i:04d}" for i in range(len(batch))]
    rows = [
        (rid, 1000.0 + i, "v1", features.iloc[i].to_json(), 0.5, 1.0) for i, rid in enumerate(ids)
    ]
    log.write(rows)
    log.close()
    return ids


def test_from_log_joins_feedback_with_late_duplicate_and_missing_labels(champion, tmp_path):
    batch = _batch(champion, "clean", rows=40)
    path = tmp_path / "predictions.sqlite"
    ids = _log(path, batch)
    log = PredictionLog(path)
    for i in range(30):  # rows 30..39 never get a label
        log.feedback(ids[i], float(1 - batch["default"].iloc[i]))  # a first, wrong label ...
    for i in range(0, 30, 3):
        # ... corrected later by an administrator (the first label stands otherwise)
        log.feedback(ids[i], float(batch["default"].iloc[i]), replace=True)
    cutoff = time.time()
    time.sleep(0.05)
    for i in range(30, 35):
        log.feedback(ids[i], float(batch["default"].iloc[i]))  # late: after the cut
    log.close()
    schema = Schema.load(champion / "schema.json")
    frame, counts = update.batch_from_log(path, schema, until=cutoff)
    assert counts == {
        "predictions": 40,
        "labelled": 30,
        "unlabelled": 5,
        "late": 5,
        "duplicate_labels": 0,
    }
    assert frame["request_id"].tolist() == ids[:30]  # log order
    expected = [
        batch["default"].iloc[i] if i % 3 == 0 else 1 - batch["default"].iloc[i] for i in range(30)
    ]
    assert frame["default"].tolist() == expected
    assert frame["income"].tolist()[:5] == pytest.approx(
        batch["income"].iloc[:5].tolist(), nan_ok=True
    )
    everything, counts = update.batch_from_log(path, schema)
    assert len(everything) == 35
    assert counts["late"] == 0
    assert counts["unlabelled"] == 5


def test_a_log_without_feedback_is_one_clear_error(champion, runs_dir, tmp_path):
    path = tmp_path / "predictions.sqlite"
    _log(path, _batch(champion, "clean", rows=10))
    before = _state(runs_dir)
    result = opsnb_cli(
        "update", "champion", "--from-log", str(path), env={config.RUNS_ENV: str(runs_dir)}
    )
    assert result.returncode == 1
    assert "has 10 prediction(s) but no feedback label; post labels to /feedback" in result.stderr
    assert _state(runs_dir) == before
    with pytest.raises(DataError, match="does not exist"):
        update.batch_from_log(tmp_path / "nope.sqlite", {"target": "default"})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: b.drop(columns=["credit_score"]), "lacks feature column(s) 'credit_score'"),
        (lambda b: b.drop(columns=["default"]), "has no label column 'default'"),
        (lambda b: b.assign(default=3), "outside the task's classes (3"),
        (lambda b: b.iloc[:0], "has a header (17 columns) but no data rows"),
    ],
)
def test_bad_batches_are_one_clear_error_and_leave_the_champion(
    champion, runs_dir, tmp_path, make, message
):
    path = tmp_path / "bad.parquet"
    make(_batch(champion, "clean", rows=30)).to_parquet(path)
    before = _state(runs_dir)
    result = opsnb_cli(
        "update", "champion", "--data", str(path), "--promote", env={config.RUNS_ENV: str(runs_dir)}
    )
    assert result.returncode == 1
    assert result.stderr.count("error: ") == 1
    assert message in result.stderr
    assert _state(runs_dir) == before


def test_a_run_without_trusted_split_cannot_be_updated(champion, runs_dir, tmp_path):
    path = tmp_path / "b.parquet"
    _batch(champion, "clean", rows=30).to_parquet(path)
    manifest = RunManifest.load(champion)
    del manifest.artifacts["data/trusted.parquet"]
    manifest.save()
    (champion / "data" / "trusted.parquet").unlink()
    result = opsnb_cli(
        "update", str(champion), "--data", str(path), env={config.RUNS_ENV: str(runs_dir)}
    )
    assert result.returncode == 1
    assert "has no trusted split (data/trusted.parquet)" in result.stderr


_FLIPPER = """
import sys
from pathlib import Path
from opsnb.update import promote
a, b = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while True:
    promote(a)
    promote(b)
"""


def test_promotion_is_atomic_when_the_process_is_killed_mid_way(tmp_path):
    runs = tmp_path / "runs"
    a, b = runs / "a", runs / "b"
    for run in (a, b):
        run.mkdir(parents=True)
        (run / "manifest.json").write_text("{}")
    update.promote(a)
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", _FLIPPER, str(a), str(b)], stdout=subprocess.PIPE, cwd=PROJECT
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + np.random.default_rng().uniform(0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        champion = update.current_champion(runs)
        assert champion in (a.resolve(), b.resolve())
        assert (champion / "manifest.json").is_file()


def test_update_from_a_log_numbers_rows_in_log_order(champion, runs_dir, tmp_path):
    batch = _batch(champion, "clean", rows=600)
    path = tmp_path / "predictions.sqlite"
    ids = _log(path, batch)
    log = PredictionLog(path)
    for i, rid in enumerate(ids):
        if i % 10:  # every tenth prediction never gets its label
            log.feedback(rid, float(1 - batch["default"].iloc[i]))  # every label a lie
    log.close()
    before = _state(runs_dir)
    result = opsnb_cli("update", "champion", "--from-log", str(path), "--run-id", "logged",
                       env={config.RUNS_ENV: str(runs_dir)})  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "log: predictions 600, labelled 540, unlabelled 60" in result.stdout
    assert _state(runs_dir)[0] == before[0]
    decision = json.loads((runs_dir / "logged" / update.DECISION).read_text())
    assert decision["source"] == f"log:{path}"
    assert decision["rows"] == 540
    flagged = pd.read_parquet(runs_dir / "logged" / update.FLAGGED)
    assert flagged["row"].between(0, 539).all()
    labelled = [rid for i, rid in enumerate(ids) if i % 10]
    assert flagged["request_id"].tolist() == [labelled[r] for r in flagged["row"]]


def test_the_update_stage_screens_the_next_batch_and_ends_with_the_decision(completed_run):
    decision = json.loads((completed_run / update.DECISION).read_text())
    assert decision["decision"] in ("admitted", "refused")
    assert decision["reasons"]
    batch = pd.read_parquet(completed_run / "update" / "batch.parquet")
    assert batch["truth_flipped"].any()  # the default scenario: label-flip
    flagged = pd.read_parquet(completed_run / update.FLAGGED)
    assert flagged["row"].between(0, len(batch) - 1).all()
    challenger = completed_run.parent / decision["run"]
    assert json.loads((challenger / update.DECISION).read_text())["rows"] == len(batch)
    executed = json.loads((completed_run / "notebooks" / "08_update.ipynb").read_text())
    verdict = next(c for c in executed["cells"] if "stage.verdict(" in "".join(c["source"]))
    assert decision["decision"].upper() + ": " in json.dumps(verdict["outputs"])


def test_a_request_admitted_earlier_is_not_admitted_twice() -> None:
    frame = pd.DataFrame({"request_id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]})
    screened = poisoning.Screen(
        rows=3,
        flagged=pd.DataFrame({"row": np.array([2], dtype=np.int64), "check": ["backdoor"],
                              "reason": ["backdoor: x"], "detail": ["-"]}).astype(
            {"check": "string", "reason": "string", "detail": "string"}),
        admitted=frame.iloc[:2],
    )  # fmt: skip
    update._not_twice(screened, frame, pd.DataFrame({"request_id": ["b", "z"]}))
    assert screened.admitted["request_id"].tolist() == ["a"]
    assert screened.flagged["row"].tolist() == [1, 2]
    assert screened.flagged["reason"].iloc[0] == "duplicate: admitted by an earlier update"


def test_robustness_reports_are_compared_where_both_runs_have_one() -> None:
    old = {
        "applies": True,
        "rows_attacked": 200,
        "at_epsilon": {"robust_accuracy": 0.71, "certified_accuracy": 0.6, "clean_accuracy": 0.8},
    }
    new = {
        "applies": True,
        "rows_attacked": 200,
        "at_epsilon": {
            "robust_accuracy": 0.65,
            "certified_accuracy": 0.595,
            "clean_accuracy": 0.82,
        },
    }
    result = update.compare_robustness(old, new)
    assert result["compared"]
    assert result["worse"] == ["robust_accuracy"]  # certified dropped less than the tolerance
    assert result["values"]["clean_accuracy"] == {"champion": 0.8, "challenger": 0.82}
    assert not update.compare_robustness(old, None)["compared"]
    assert not update.compare_robustness({"applies": False}, {"applies": False})["compared"]
