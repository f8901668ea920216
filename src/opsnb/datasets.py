"""Data sources, chosen by the ``dataset`` parameter, and the data card that describes them.

Three kinds of source:

- ``loans``: the built-in seeded loan-applications generator (:mod:`opsnb.loans`);
- ``breast_cancer`` (binary) and ``diabetes`` (regression): real data sets that ship with
  scikit-learn, read from its installed files (no download);
- a path to a CSV or Parquet file, with ``target`` naming the label column, read by
  :mod:`opsnb.tables`.

Once the target is seen the task is resolved (:func:`resolve_labels`): two distinct values make
a binary problem (string labels such as ``yes``/``no`` or ``>50K``/``<=50K`` are mapped to 0/1
and the mapping is recorded), more numeric values a regression; a forced task is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opsnb.artifacts import sha256_bytes
from opsnb.errors import ConfigError, DataError
from opsnb.loans import (
    LOANS_TARGET,
    LOANS_TIMESTAMP,
    TRUTH_PREFIX,
    loan_applications,
    production_stream,
)
from opsnb.loans import scenario as loans_scenario
from opsnb.problem import AUTO
from opsnb.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, read_table

BUILTIN = ("loans", "breast_cancer", "diabetes")
"""Built-in data sets by the name the ``dataset`` parameter uses."""
POSITIVE_LABELS = frozenset({"1", "yes", "y", "true", "t", "positive", "pos"})
"""String labels taken as the positive class (compared in lower case)."""
_TIME_NAME = re.compile(r"(date|time|_at$|^at$)", re.IGNORECASE)


@dataclass(frozen=True)
class LoadedData:
    """A loaded data set and what a pipeline needs to know about it.

    Attributes:
        frame: the data, labels already mapped to numbers.
        source: a one-line provenance (``builtin:loans(...)``, ``file:/path``, ...).
        target: the label column.
        timestamp: the column that orders rows in time, or ``None``.
        task: the resolved task, ``"binary"`` or ``"regression"``.
        task_source: ``"inferred"`` from the labels or ``"forced"`` by the parameter.
        label_mapping: original label -> 0/1 for a binary target that needed mapping.
        key: names the data set's frozen schema contract (same source, same contract).
        provenance: how the data was obtained (file hash and size, reader options, versions).
    """

    frame: pd.DataFrame
    source: str
    target: str
    timestamp: str | None
    task: str
    task_source: str
    key: str
    label_mapping: dict[str, int] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def load(
    dataset: str,
    *,
    target: str = AUTO,
    task: str = AUTO,
    n_rows: int = 20_000,
    seed: int = 42,
    columns: list[str] | str | None = None,
    timestamp: str = AUTO,
    positive_label: str = "",
) -> LoadedData:
    """Load ``dataset`` (a built-in name or a file path) and resolve its target and task.

    Raises:
        ConfigError: an unknown data set name, or a file given without ``target``.
        DataError: the file cannot be used (see :func:`read_table`) or its target cannot be
            (missing column, a single class, more than two string classes).
    """
    if dataset in BUILTIN:
        frame, default_target, default_time, source, provenance = _builtin(
            dataset, n_rows=n_rows, seed=seed
        )
        key = dataset
    elif _looks_like_path(dataset):
        path = Path(dataset).expanduser()
        frame, provenance = read_table(path, columns=columns)
        default_target, default_time = None, None
        source = f"file:{path.resolve()}"
        key = f"{path.stem}"
    else:
        raise ConfigError(
            f"unknown dataset {dataset!r}; built-in datasets: {', '.join(BUILTIN)}, "
            "or give the path of a .csv or .parquet file"
        )
    if target == AUTO:
        if default_target is None:
            raise ConfigError(
                f"dataset {dataset} is a file: name its label column with -p target <column>; "
                f"columns are: {', '.join(map(str, frame.columns))}"
            )
        target = default_target
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not found in {dataset}; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    frame = frame.copy()
    labels, resolved, mapping = resolve_labels(frame[target], task=task, positive=positive_label)
    frame[target] = labels
    time_column = _resolve_timestamp(frame, timestamp, default_time, target=target)
    if time_column is not None:
        frame[time_column] = pd.to_datetime(frame[time_column], format="ISO8601")
    return LoadedData(
        frame=frame,
        source=source,
        target=target,
        timestamp=time_column,
        task=resolved,
        task_source="inferred" if task == AUTO else "forced",
        key=f"{key}-{target}",
        label_mapping=mapping,
        provenance=provenance,
    )


def _looks_like_path(dataset: str) -> bool:
    return "/" in dataset or Path(dataset).suffix.lower() in CSV_SUFFIXES + PARQUET_SUFFIXES


def _builtin(
    name: str, *, n_rows: int, seed: int
) -> tuple[pd.DataFrame, str, str | None, str, dict[str, Any]]:
    """Frame, default target, timestamp, source line and provenance of a built-in data set."""
    if name == "loans":
        frame = loan_applications(n_rows, seed=seed)
        source = f"builtin:loans(n_rows={n_rows}, seed={seed})"
        return frame, LOANS_TARGET, LOANS_TIMESTAMP, source, {"generator": "opsnb.loans"}
    from sklearn import datasets as bundled  # noqa: PLC0415 (only these two sources need it)

    loader, target = {
        "breast_cancer": (bundled.load_breast_cancer, "benign"),
        "diabetes": (bundled.load_diabetes, "progression"),
    }[name]
    frame = loader(as_frame=True).frame.rename(columns={"target": target})
    provenance = {
        "loader": f"sklearn.datasets.{loader.__name__}",
        "sklearn": version("scikit-learn"),
    }
    return frame, target, None, f"sklearn:{name}", provenance


def resolve_labels(
    labels: pd.Series, *, task: str = AUTO, positive: str = ""
) -> tuple[pd.Series, str, dict[str, int] | None]:
    """Return the labels as numbers, the task and the label mapping (``None`` when not needed).

    Two distinct values make a binary task: two numbers other than 0/1 map smaller -> 0,
    larger -> 1; two strings map the positive class to 1: ``positive`` if given, else a value
    such as ``yes``/``true``/``1``, else one starting with ``>``, else the rarer one. More
    than two numeric values make a regression. Missing labels stay missing (the prepare stage
    quarantines those rows).

    Raises:
        ConfigError: ``task`` is not ``auto``, ``binary`` or ``regression``.
        DataError: no label at all, a single class, more than two string classes, or labels
            that contradict a forced task.
    """
    if task not in (AUTO, "binary", "regression"):
        raise ConfigError(f"task {task!r} is not supported; expected auto, binary or regression")
    name = labels.name
    present = labels.dropna()
    if present.empty:
        raise DataError(f"target {name!r} has no values: every label is missing")
    numeric = pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels)
    if not numeric:
        present = present.astype(str).str.strip()
    distinct = sorted(present.unique(), key=lambda v: (str(type(v)), v))
    if len(distinct) == 1:
        raise DataError(
            f"target {name!r} has a single value ({distinct[0]!r} in all {len(present)} labelled "
            "rows); a model needs two classes (binary) or varying numbers (regression)"
        )
    if task == "regression" and not numeric:
        raise DataError(
            f"task 'regression' needs a numeric target; {name!r} holds text such as {distinct[0]!r}"
        )
    if len(distinct) > 2:
        if not numeric:
            shown = ", ".join(map(repr, distinct[:6]))
            raise DataError(
                f"target {name!r} has {len(distinct)} text classes ({shown}); opsnb supports "
                "binary classification (two classes) and regression (numbers)"
            )
        if task == "binary":
            raise DataError(
                f"task 'binary' needs two classes; target {name!r} has {len(distinct)} "
                "distinct values (use task auto or regression)"
            )
        return pd.to_numeric(labels).astype(np.float64), "regression", None
    if task == "regression":
        return pd.to_numeric(labels).astype(np.float64), "regression", None
    if numeric and {float(v) for v in distinct} == {0.0, 1.0}:
        return labels.astype(np.float64), "binary", None
    if numeric:  # two numbers other than 0/1: the smaller is 0, the larger 1
        low, high = sorted(float(v) for v in distinct)
        mapped = labels.map({low: 0.0, high: 1.0}).astype(np.float64)
        return mapped, "binary", {f"{low:g}": 0, f"{high:g}": 1}
    texts = [str(v) for v in distinct]
    one = _positive_class(texts, present.astype(str), positive=positive, name=str(name))
    mapping = {t: int(t == one) for t in texts}
    keyed = labels.map(lambda v: np.nan if pd.isna(v) else mapping[str(v).strip()])
    return keyed.astype(np.float64), "binary", mapping


def _positive_class(texts: list[str], present: pd.Series, *, positive: str, name: str) -> str:
    if positive:
        if positive not in texts:
            raise DataError(
                f"positive_label {positive!r} is not a value of target {name!r}; "
                f"its values are {', '.join(map(repr, texts))}"
            )
        return positive
    for text in texts:
        if text.lower() in POSITIVE_LABELS:
            return text
    for text in texts:
        if text.startswith(">"):
            return text
    counts = present.value_counts()
    return str(min(texts, key=lambda t: (counts.get(t, 0), t)))


def _resolve_timestamp(
    frame: pd.DataFrame, timestamp: str, default: str | None, *, target: str
) -> str | None:
    """The column that orders rows in time: named, the source's own, or one found by dtype/name."""
    if timestamp in ("", "none", None):
        return None
    if timestamp != AUTO:
        if timestamp not in frame.columns:
            raise DataError(
                f"timestamp column {timestamp!r} not found; "
                f"columns are: {', '.join(map(str, frame.columns))}"
            )
        if not _parses_as_time(frame[timestamp]):
            raise DataError(
                f"timestamp column {timestamp!r} does not hold ISO-8601 dates or times "
                f"(e.g. {frame[timestamp].dropna().iloc[0]!r}); give another column or none"
            )
        return timestamp
    if default is not None:
        return default
    for name in frame.columns:
        if name == target:
            continue
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            return str(name)
        if _TIME_NAME.search(str(name)) and _parses_as_time(column):
            return str(name)
    return None


def _parses_as_time(column: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column):
        return False
    present = column.dropna()
    try:
        pd.to_datetime(present, format="ISO8601")
    except (ValueError, TypeError):
        return False
    return len(present) > 0


def data_card(data: LoadedData) -> dict[str, Any]:
    """Describe a loaded data set: provenance, size, hash, task, labels, time range, missing."""
    frame, target = data.frame, data.target
    content = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    labels = frame[target]
    card: dict[str, Any] = {
        "source": data.source,
        "key": data.key,
        "provenance": data.provenance,
        "rows": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
        "target": target,
        "task": data.task,
        "task_source": data.task_source,
        "label_mapping": data.label_mapping,
        "timestamp": data.timestamp,
        "content_sha256": sha256_bytes(content),
        "missing_share": round(float(frame.isna().mean().mean()), 4),
        "missing_by_column": {
            str(c): round(float(s), 4) for c, s in frame.isna().mean().items() if s > 0
        },
        "labels_missing": int(labels.isna().sum()),
    }
    if data.task == "binary":
        counts = labels.value_counts()
        card["class_balance"] = {f"{k:g}": int(v) for k, v in sorted(counts.items())}
        card["target_mean"] = round(float(labels.mean()), 4)
    else:
        card["target_summary"] = {
            k: round(float(v), 4) for k, v in labels.describe().items() if k != "count"
        }
    if data.timestamp:
        stamps = frame[data.timestamp]
        card["time_range"] = [to_second(stamps.min()), to_second(stamps.max())]
    return card


def to_second(value: Any) -> str:
    """A timestamp as text to the second (``2024-03-01 09:30:12``); other values as they are."""
    try:
        return str(pd.Timestamp(value).floor("s"))
    except (TypeError, ValueError):
        return str(value)


def column_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per column: type, missing share, distinct values, and its range or top value."""
    rows = []
    for name, column in frame.items():
        present = column.dropna()
        if pd.api.types.is_datetime64_any_dtype(column):
            spread = f"{to_second(present.min())} .. {to_second(present.max())}"
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            spread = f"{present.min():.4g} .. {present.max():.4g}" if len(present) else "-"
        else:
            top = present.astype("string").value_counts()
            spread = (
                f"most often {top.index[0]!r} ({top.iloc[0] / len(frame):.0%})" if len(top) else "-"
            )
        rows.append({"column": str(name), "type": str(column.dtype),
                     "missing": f"{column.isna().mean():.1%}", "distinct": int(present.nunique()),
                     "range or top value": spread})  # fmt: skip
    return pd.DataFrame(rows)


def verdict(card: dict[str, Any]) -> dict[str, Any]:
    """The dataset stage's verdict: what the pipeline will learn from (a decision)."""
    if card["task"] == "binary":
        target = f"{card['target']!r} (binary, {card['target_mean']:.1%} positive)"
    else:
        target = f"{card['target']!r} (regression, mean {card['target_summary']['mean']:.4g})"
    when = " .. ".join(card.get("time_range", []))
    ordered = (
        f", ordered by {card['timestamp']!r} {when}" if card["timestamp"] else ", no time order"
    )
    text = (
        f"Using {card['rows']:,} rows x {len(card['columns'])} columns from {card['source']}: "
        f"target {target}{ordered}"
    )
    return {"text": text, "passed": None}


def card_table(card: dict[str, Any]) -> pd.DataFrame:
    """The data card's headline facts as a two-column table for a notebook."""
    balance = card.get("class_balance") or card.get("target_summary")
    facts = {
        "source": card["source"],
        "rows": f"{card['rows']:,}",
        "columns": len(card["columns"]),
        "target": f"{card['target']} ({card['task']}, {card['task_source']})",
        "label mapping": card["label_mapping"] or "-",
        "target balance": balance,
        "labels missing": card["labels_missing"],
        "missing share": f"{card['missing_share']:.2%}",
        "timestamp": card["timestamp"] or "-",
        "time range": " .. ".join(card.get("time_range", [])) or "-",
        "content sha256": card["content_sha256"][:16] + "…",
        "file sha256": str(card["provenance"].get("file_sha256", "-"))[:16],
    }
    return pd.DataFrame({"fact": list(facts), "value": [str(v) for v in facts.values()]})


def production_batch(
    card: dict[str, Any],
    *,
    holdout: pd.DataFrame,
    n_rows: int,
    seed: int,
    after: pd.Timestamp | None,
    scenario: str = "none",
) -> pd.DataFrame:
    """What the monitor stage replays as production traffic.

    The built-in loans data gets a fresh production stream from its generator (after the last
    training timestamp, altered by the named :data:`opsnb.loans.SCENARIOS` entry, with its
    ``truth_*`` columns); any other data set replays ``holdout``, a split no model trained on,
    with 10 % of its labels flipped under ``label-flip`` (binary targets). ``auto`` is
    ``label-flip`` where labels can flip (loans, binary targets) and ``none`` for regression.
    """
    if scenario == "auto":  # label flips where labels can flip, else the split as it is
        loans = card["source"].startswith("builtin:loans")
        scenario = "label-flip" if loans or card.get("task") == "binary" else "none"
    if card["source"].startswith("builtin:loans"):
        start = after if after is not None else pd.Timestamp.now()
        return production_stream(n_rows, seed=seed, after=start, scenario=loans_scenario(scenario))
    if scenario in ("none", "clean"):
        return holdout.copy()
    if scenario == "label-flip" and card.get("task") == "binary":
        return inject_label_flips(holdout, card["target"], share=0.1, seed=seed)
    raise ConfigError(
        f"scenario {scenario!r} needs the built-in loans data; {card['source']} replays its "
        "held-out split (scenario none or clean; label-flip for a binary target)"
    )


def inject_label_flips(
    frame: pd.DataFrame, target: str, *, share: float, seed: int
) -> pd.DataFrame:
    """A copy of ``frame`` with ``share`` of its 0/1 labels flipped at random.

    ``truth_flipped`` marks them: the ground truth a label-issue screen is measured against.
    """
    out = frame.copy()
    flipped = np.random.default_rng([seed, 2]).uniform(size=len(out)) < share
    out.loc[flipped, target] = 1 - out.loc[flipped, target]
    out[TRUTH_PREFIX + "flipped"] = flipped
    return out
