"""Test helpers shared by many test files: the real CLI, small parameters, census-like files.

Import them as ``from tests.support import ...`` (the one import style for test helpers; the
fixtures live in ``conftest.py``, which no test imports).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from opsnb.artifacts import RunManifest

# Small enough for seconds per stage, large enough for a model with real signal.
SMALL = {
    "n_rows": 2500, "production_rows": 600, "max_depth": [3], "max_rounds": 120, "batch_rows": 500,
}  # fmt: skip
PROJECT = Path(__file__).resolve().parent.parent


def small_args() -> list[str]:
    """SMALL as ``-p name value`` command-line arguments."""
    args = []
    for name, value in SMALL.items():
        args += ["-p", name, str(value)]
    return args


def opsnb_cli(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real ``opsnb`` command (this interpreter's) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "opsnb.cli", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        timeout=timeout_s,
        check=False,
    )


def manifest_of(run: Path) -> RunManifest:
    """The run's manifest."""
    return RunManifest.load(run)


def census_rows(n: int, seed: int = 0) -> list[list[str]]:
    """Rows of a census-like table as found in the wild: text categories, '?' for missing
    values, and a string label ('>50K' / '<=50K') that depends on the features."""

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        age = int(rng.integers(18, 80))
        hours = int(rng.integers(10, 70))
        education = str(rng.choice(["HS-grad", "Bachelors", "Masters", "Doctorate", "11th"]))
        workclass = str(
            rng.choice(["Private", "Self-emp", "State-gov", "?"], p=[0.6, 0.2, 0.15, 0.05])
        )
        country = str(
            rng.choice(["United-States", "Mexico", "India", "?"], p=[0.8, 0.08, 0.07, 0.05])
        )
        gain = int(rng.choice([0, 0, 0, int(rng.integers(1, 20000))]))
        score = (
            0.04 * (age - 40)
            + 0.05 * (hours - 40)
            + 1e-4 * gain
            + {"Masters": 1.2, "Doctorate": 1.8, "Bachelors": 0.8}.get(education, -0.5)
            + rng.normal(0, 0.7)
        )
        label = ">50K" if score > 0.6 else "<=50K"
        weight = int(rng.integers(100, 3000)) * 100  # census sampling weight: rows differ
        rows.append(
            [
                str(age),
                workclass,
                education,
                str(hours),
                str(gain),
                country,
                label,
                f"{i}",
                str(weight),
            ]
        )
    return rows


CENSUS_COLUMNS = [
    "age",
    "workclass",
    "education",
    "hours_per_week",
    "capital_gain",
    "native_country",
    "income",
    "person_id",
    "fnlwgt",
]


def write_census(path: Path, rows: list[list[str]], *, header: bool = True) -> Path:
    """Write census rows comma-space separated, with or without a header row."""
    lines = [", ".join(CENSUS_COLUMNS)] if header else []
    lines += [", ".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
