"""Champion/challenger: screen a labelled batch, retrain on what passed, promote if not worse.

:func:`update` is the shortcut ``opsnb update`` and the update stage call; its steps:

1. :func:`load_champion` reads the current run (schema, splits, model, design); a run without
   a trusted holdout cannot be updated;
2. :func:`opsnb.poisoning.screen` screens the batch (a file, or the prediction log joined with
   its feedback labels: :func:`opsnb.feedback.labelled_log`);
3. if the screen admits the batch, the admitted rows (plus those earlier updates admitted) are
   sealed as ``data/admitted.parquet`` in a new run and the pipeline runs into it with the
   champion's parameters: unchanged stages are reused, prepare adds the rows to ``train``;
4. the challenger is compared with the champion on the trusted holdout (paired bootstrap CI of
   the metric difference) and on the robustness report where both runs have one;
5. it is promoted only when not worse and promotion was asked for: ``runs/champion`` moves in
   one atomic rename, and a named server is told to reload.

The decision and its reasons are always written to the new run: ``update/decision.json`` and
``update/flagged.parquet`` (the batch row, the check and the reason of every flagged row).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from opsnb import config, evaluation, pipeline, poisoning, training
from opsnb.artifacts import RunManifest, now_iso, read_json, write_json, write_parquet
from opsnb.errors import ArtifactError, DataError, OpsnbError
from opsnb.feedback import read_labelled
from opsnb.parameters import declared_parameters
from opsnb.problem import Problem
from opsnb.schema import Schema, target_vector
from opsnb.stages import ADMITTED, STAGES, stage_by_name
from opsnb.tables import read_table

log = logging.getLogger(__name__)

CHAMPION = "champion"
"""``runs/champion``: a symbolic link to the run being served."""
ADMIN_TOKEN_ENV = config.ADMIN_TOKEN_ENV
"""The bearer token of the server's admin endpoints; without it no server is reloaded."""
DECISION = "update/decision.json"
FLAGGED = "update/flagged.parquet"
_NEEDED = (
    "problem.json",
    "schema.json",
    "design.json",
    "model/model.ubj",
    "data/train.parquet",
    "data/valid.parquet",
)
_UNTIL = "operationalize"


@dataclass
class Champion:
    """The run being updated, loaded and verified."""

    run_dir: Path
    schema: Schema
    metric: str
    train: pd.DataFrame
    valid: pd.DataFrame
    trusted: pd.DataFrame
    booster: xgb.Booster
    hyperparameters: dict[str, Any]
    params: dict[str, Any]
    admitted: pd.DataFrame | None
    resolved: dict[str, Any]

    @property
    def seed(self) -> int:
        """The seed the champion was trained with."""
        return int(self.resolved.get("seed", 42))


def load_champion(run: str | os.PathLike[str]) -> Champion:
    """Load and verify the run to update.

    Raises:
        ArtifactError: the run is not a finished training run (an artifact is missing or
            changed since it was sealed).
        DataError: the run has no trusted holdout, so nothing can judge an update.
    """
    folder = Path(run).expanduser().resolve()
    if not (folder / "manifest.json").is_file():
        raise ArtifactError(f"{run} is not a run folder (no manifest.json)", path=str(run))
    manifest = RunManifest.load(folder)
    for relpath in _NEEDED:
        manifest.verify(relpath)
    trusted_rel = "data/trusted.parquet"
    if trusted_rel not in manifest.artifacts or not (folder / trusted_rel).is_file():
        raise DataError(
            f"run {folder.name} has no trusted split ({trusted_rel}): an update is judged on a "
            "holdout no model trains on; re-run prepare with trusted_fraction > 0"
        )
    trusted = pd.read_parquet(manifest.verify(trusted_rel))
    if trusted.empty:
        raise DataError(f"run {folder.name}: the trusted split is empty; raise trusted_fraction")
    schema = Schema.load(folder / "schema.json")
    problem = Problem.from_dict(read_json(folder / "problem.json"))
    problem = problem.resolve(task=schema.task, target=schema.target)
    params: dict[str, Any] = {}
    for stage in STAGES[: [s.name for s in STAGES].index(_UNTIL) + 1]:  # the challenger's stages
        record = manifest.stages.get(stage.name, {})
        # The parameters given (the runner fingerprints those), not the resolved defaults.
        params.update(record.get("overrides", record.get("params", {})))
    admitted = (
        pd.read_parquet(manifest.verify(ADMITTED)) if ADMITTED in manifest.artifacts else None
    )
    return Champion(
        run_dir=folder,
        schema=schema,
        metric=problem.metric,
        train=pd.read_parquet(folder / "data/train.parquet"),
        valid=pd.read_parquet(folder / "data/valid.parquet"),
        trusted=trusted,
        booster=training.load_model(folder / "model/model.ubj"),
        hyperparameters=read_json(folder / "design.json")["hyperparameters"],
        params=params,
        admitted=admitted,
        resolved={
            k: v
            for r in manifest.stages.values()
            for k, v in r.get("params", {}).items()
            if r is manifest.stages.get("train")
        }
        or params,
    )


def batch_from_log(
    log_path: str | os.PathLike[str], schema: Schema, *, until: float | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The labelled rows of a prediction log, in log order, the label under the schema's target."""
    frame, counts = read_labelled(log_path, until=until)
    return frame.rename(columns={"label": schema.target}), counts


def read_batch(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a labelled batch file (CSV or Parquet) in file order."""
    frame, _ = read_table(Path(path))
    return frame


# -- promotion -------------------------------------------------------------------------------
def champion_link(runs_root: Path | None = None) -> Path:
    """Where the champion pointer lives: ``<runs>/champion``."""
    return (runs_root or config.runs_root()) / CHAMPION


def current_champion(runs_root: Path | None = None) -> Path | None:
    """The run ``runs/champion`` points at, or None when there is no champion yet."""
    link = champion_link(runs_root)
    return link.resolve() if link.is_symlink() else None


def promote(run_dir: Path) -> Path:
    """Point ``runs/champion`` at ``run_dir`` in one atomic rename; return the link.

    A new link is made under a temporary name and renamed over the old one, so a crash at any
    moment leaves either the old champion or the new one, never none.
    """
    link = champion_link(run_dir.parent)
    tmp = run_dir.parent / f".{CHAMPION}.{secrets.token_hex(4)}"
    tmp.symlink_to(run_dir.name)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return link


def reload_server(
    server: str, version: str, *, token: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Ask a running server to load ``version`` (a run id in its model store) over its admin API.

    ``POST <server>/admin/reload`` with ``{"version": ...}`` and the bearer token. Returns the
    status and body of the answer; a refusal is returned, not raised: the server keeps serving
    the model it had, and the decision records why.
    """
    body = json.dumps({"version": version}).encode()
    request = urllib.request.Request(
        server.rstrip("/") + "/admin/reload",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return {"status": answer.status, "body": answer.read().decode(errors="replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")}
    except OSError as exc:
        return {"status": None, "body": f"{type(exc).__name__}: {exc}"}


# -- the flow --------------------------------------------------------------------------------
def _seal(run_dir: Path, relpath: str, obj: pd.DataFrame | dict[str, Any], stage: str) -> None:
    path = run_dir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, pd.DataFrame):
        write_parquet(path, obj)
    else:
        write_json(path, obj)
    RunManifest.load(run_dir).seal(relpath, stage=stage)


def _robustness(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "reports" / "robustness.json"
    report: dict[str, Any] | None = read_json(path) if path.is_file() else None
    return report


def _headline(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a robustness report: top-level ones and those ``at_epsilon``."""
    found = {
        k: v for k, v in report.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    nested = report.get("at_epsilon")
    if isinstance(nested, dict):
        found.update(
            {
                k: v
                for k, v in nested.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        )
    return found


def compare_robustness(
    old: dict[str, Any] | None, new: dict[str, Any] | None, *, tolerance: float = 0.01
) -> dict[str, Any]:
    """Champion against challenger on the numbers both robustness reports share.

    The challenger is less robust when a robust or certified accuracy dropped by more than
    ``tolerance`` (absolute). A report that does not apply (regression) is not compared.
    """
    if old is None or new is None:
        return {"compared": False, "reason": "no robustness report in both runs"}
    if old.get("applies") is False or new.get("applies") is False:
        return {"compared": False, "reason": "the robustness report does not apply to this task"}
    a, b = _headline(old), _headline(new)
    shared = {k: {"champion": a[k], "challenger": b[k]} for k in a if k in b}
    dropped = [
        k for k, v in shared.items()
        if ("robust" in k or "certified" in k) and v["challenger"] < v["champion"] - tolerance
    ]  # fmt: skip
    return {"compared": True, "values": shared, "worse": dropped, "tolerance": tolerance}


def _frame_or_path(batch: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    return batch if isinstance(batch, pd.DataFrame) else read_batch(batch)


def update(
    run: str | os.PathLike[str],
    batch: pd.DataFrame | str | os.PathLike[str],
    *,
    source: str = "",
    promote_if_better: bool = False,
    server: str | None = None,
    options: poisoning.ScreenOptions | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Screen ``batch`` for the run ``run``, retrain, compare and maybe promote; see the module.

    Returns the decision (also written to ``update/decision.json`` of the new run). Bad input
    raises before anything is written, and the champion is never touched unless promoted.
    """
    champion = load_champion(run)
    frame = _frame_or_path(batch)
    opts = options or poisoning.ScreenOptions(seed=champion.seed)
    frame = frame.reset_index(drop=True)
    screened = poisoning.screen(
        frame,
        schema=champion.schema,
        train=champion.train,
        valid=champion.valid,
        trusted=champion.trusted,
        current=champion.booster,
        hyperparameters=champion.hyperparameters,
        metric=champion.metric,
        options=opts,
        early_stopping_rounds=int(champion.resolved.get("early_stopping_rounds", 30)),
    )
    _not_twice(screened, frame, champion.admitted)
    if "request_id" in frame.columns:
        rows = screened.flagged[poisoning.ROW].to_numpy()
        screened.flagged["request_id"] = frame["request_id"].to_numpy()[rows].astype(str)
    runs_root = champion.run_dir.parent
    new_dir = runs_root / (run_id or pipeline.new_run_id())
    new_dir.mkdir(parents=True, exist_ok=False)
    decision: dict[str, Any] = {
        "run": new_dir.name,
        "decided": now_iso(),
        "champion": champion.run_dir.name,
        "challenger": None,
        "source": source or (str(batch) if not isinstance(batch, pd.DataFrame) else "frame"),
        "rows": screened.rows,
        "flagged": screened.counts(),
        "passed_screen": len(screened.admitted),
        "admitted_rows": 0,
        "reasons": list(screened.refusals),
        "negative_impact": screened.impact,
        "shift": screened.shift.to_dict("records"),
        "label_issues": screened.labels.to_dict("records"),
        "backdoors": screened.backdoors.head(10).to_dict("records"),
        "promoted": False,
    }
    _seal(new_dir, FLAGGED, screened.flagged, "update")
    if screened.passed:
        try:
            _challenge(champion, screened.admitted, new_dir, decision, opts)
        except OpsnbError as exc:
            decision["decision"] = "refused"
            decision["reasons"].append(f"the challenger could not be built: {exc}")
        if decision["decision"] == "admitted" and promote_if_better:
            _promote(new_dir, decision, server)
        elif decision["decision"] == "admitted":
            decision["reasons"].append("not promoted: --promote was not given")
    else:
        decision["decision"] = "refused"
    if decision["decision"] == "admitted":
        decision["admitted_rows"] = len(screened.admitted)
    _seal(new_dir, DECISION, _jsonable(decision), "update")
    return decision


def _not_twice(
    screened: poisoning.Screen, frame: pd.DataFrame, already: pd.DataFrame | None
) -> None:
    """Late labels: a logged request an earlier update admitted is not admitted again."""
    if already is None or "request_id" not in frame.columns or "request_id" not in already:
        return
    seen = frame["request_id"].isin(already["request_id"]).to_numpy()
    again = screened.admitted.index[seen[screened.admitted.index]]
    if len(again) == 0:
        return
    screened.admitted = screened.admitted.drop(index=again)
    extra = pd.DataFrame(
        {
            poisoning.ROW: again.to_numpy(dtype=np.int64),
            "check": "contract",
            "reason": "duplicate: admitted by an earlier update",
            "detail": "request_id already in data/admitted.parquet",
        }
    )
    extra[["check", "reason", "detail"]] = extra[["check", "reason", "detail"]].astype("string")
    flagged = pd.concat([screened.flagged, extra], ignore_index=True)
    screened.flagged = flagged.sort_values(poisoning.ROW, ignore_index=True)


def _challenge(
    champion: Champion,
    admitted: pd.DataFrame,
    new_dir: Path,
    decision: dict[str, Any],
    opts: poisoning.ScreenOptions,
) -> None:
    """Run the pipeline into ``new_dir`` with the admitted rows and compare it with the champion."""
    rows = admitted if champion.admitted is None else pd.concat([champion.admitted, admitted])
    _seal(new_dir, ADMITTED, rows.reset_index(drop=True), "admission")
    names = {n for s in STAGES for n in declared_parameters(s)}
    params = {k: v for k, v in champion.params.items() if k in names and k != "run_dir"}
    pipeline.run(params, run_dir=new_dir, until=stage_by_name(_UNTIL).name)
    decision["challenger"] = new_dir.name
    built = RunManifest.load(new_dir)
    challenger = training.load_model(built.verify("model/model.ubj"))
    new_schema = Schema.load(built.verify("schema.json"))
    trusted, schema = champion.trusted, champion.schema
    y = target_vector(trusted, schema)
    comparison = evaluation.paired_bootstrap(
        schema.task,
        champion.metric,
        y,
        training.predict(challenger, trusted, new_schema),
        training.predict(champion.booster, trusted, schema),
        resamples=opts.resamples,
        seed=opts.seed,
    )
    comparison["metric"] = champion.metric
    decision["comparison"] = comparison
    decision["robustness"] = compare_robustness(_robustness(champion.run_dir), _robustness(new_dir))
    worse = poisoning.worse(comparison, champion.metric, opts.tolerance)
    if worse:
        decision["reasons"].append(
            f"challenger worse on the trusted holdout: {champion.metric} {comparison['new']:.4f} "
            f"against {comparison['old']:.4f} (delta {comparison['delta']:+.4f}, 95% CI "
            f"[{comparison['low']:+.4f}, {comparison['high']:+.4f}]); the champion stays"
        )
    for key in decision["robustness"].get("worse", []):
        decision["reasons"].append(f"challenger less robust: {key} dropped; the champion stays")
    decision["decision"] = "refused" if worse or decision["robustness"].get("worse") else "admitted"
    if decision["decision"] == "admitted":
        decision["reasons"].append(
            f"challenger not worse on the trusted holdout: {champion.metric} delta "
            f"{comparison['delta']:+.4f} (95% CI [{comparison['low']:+.4f}, "
            f"{comparison['high']:+.4f}])"
        )


def _promote(new_dir: Path, decision: dict[str, Any], server: str | None) -> None:
    promote(new_dir)
    decision["promoted"] = True
    decision["reasons"].append(f"promoted: runs/{CHAMPION} -> {new_dir.name}")
    if server:
        token = os.environ.get(ADMIN_TOKEN_ENV)
        if not token:
            decision["reload"] = {"status": None, "body": f"not reloaded: ${ADMIN_TOKEN_ENV} unset"}
        else:
            decision["reload"] = reload_server(server, new_dir.name, token=token)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars, NaN) for decision.json."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def summary(decision: dict[str, Any]) -> str:
    """The decision in one line."""
    verdict = decision["decision"].upper()
    flagged = ", ".join(f"{k} {v}" for k, v in decision["flagged"].items())
    return (
        f"{verdict}: {decision['admitted_rows']} of {decision['rows']} rows admitted "
        f"({decision['passed_screen']} passed the screen; flagged: {flagged}); "
        f"{_first_line(decision['reasons'][-1]) if decision['reasons'] else ''}"
    ).rstrip("; ")


def _first_line(reason: str) -> str:
    """A reason's first line: a failed challenger's reason carries the runner's whole message."""
    return reason.splitlines()[0] if reason else reason


def truth_table(batch: pd.DataFrame, flagged: pd.DataFrame) -> pd.DataFrame:
    """Flagged rows against the ground truth of a generated batch (its ``truth_*`` columns).

    One row per truth column: rows altered, rows flagged (by any check), caught, recall and
    precision of the flags against that truth; and one row for the unaltered rows.
    """
    hit = np.zeros(len(batch), dtype=bool)
    hit[flagged[poisoning.ROW].to_numpy(dtype=np.int64)] = True
    truths = [c for c in batch.columns if str(c).startswith("truth_")]
    rows = []
    altered = np.zeros(len(batch), dtype=bool)
    for column in truths:
        truth = batch[column].to_numpy(dtype=bool)
        altered |= truth
        caught = int((truth & hit).sum())
        rows.append(
            {
                "truth": column,
                "rows": int(truth.sum()),
                "flagged": int(hit.sum()),
                "caught": caught,
                "recall": round(caught / truth.sum(), 3) if truth.any() else None,
                "precision": round(caught / hit.sum(), 3) if hit.any() else None,
            }
        )
    clean = ~altered
    rows.append(
        {
            "truth": "unaltered",
            "rows": int(clean.sum()),
            "flagged": int(hit.sum()),
            "caught": int((clean & hit).sum()),
            "recall": None,
            "precision": None,
        }
    )
    return pd.DataFrame(rows)
