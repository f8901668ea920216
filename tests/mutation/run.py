"""``make mutate``: mutation testing of the modules that carry opsnb's guarantees.

For each module in ``modules.toml`` (or those named on the command line) cosmic-ray mutates a
scratch copy of the project (never this working tree: other runs keep importing the real code)
and runs that module's own fast test files against each mutant. The score per module is printed
and written to ``tests/mutation/last_scores.md``; the README quotes it.

Usage: ``python tests/mutation/run.py [name ...]`` (``--workers N`` runs modules in parallel).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db  # the 'mutate' extra
from cosmic_ray.work_item import WorkerOutcome, WorkResult

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
SCORES = HERE / "last_scores.md"
COPIED = ("src", "tests", "notebooks", "conftest.py", "pyproject.toml", "examples", "benchmarks")


def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="opsnb-mutate-"))
    for name in COPIED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, folder / name)
    return folder


def _config(
    folder: Path, module: str, tests: list[str], timeout_s: float, *, conftest: bool
) -> Path:
    command = " ".join(
        [sys.executable, "-m", "pytest", "-x", "-q", "--no-cov", "-p", "no:cacheprovider",
         "-o", "addopts=", "-W", "ignore::DeprecationWarning",
         *([] if conftest else ["--noconftest"]), *tests]
    )  # fmt: skip
    text = (
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {timeout_s}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    path = folder / "cosmic-ray.toml"
    path.write_text(text)
    return path


def _annotations(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) of every type annotation: never evaluated (``from __future__ import
    annotations``), so a mutant inside one is equivalent by construction."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        found: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            found += [arg.annotation for arg in every if arg is not None]
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        for ann in found:
            if ann is not None and ann.end_lineno is not None and ann.end_col_offset is not None:
                spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno, ann.end_col_offset)))
    return spans


def _skip_equivalent(session: Path, module: Path) -> int:
    """Mark the mutants inside type annotations as skipped; return how many."""
    spans = _annotations(module.read_text())
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            starts = [tuple(m.start_pos) for m in item.mutations]
            if starts and all(any(a <= s < b for a, b in spans) for s in starts):
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
    return skipped


def _counts(session: Path) -> dict[str, int]:
    with sqlite3.connect(session) as conn:
        rows = conn.execute(
            "SELECT test_outcome, COUNT(*) FROM work_results GROUP BY test_outcome"
        ).fetchall()
    return {str(k).lower(): int(v) for k, v in rows}


def _survivors(session: Path) -> list[str]:
    with sqlite3.connect(session) as conn:
        rows = conn.execute(
            "SELECT m.module_path, m.operator_name, m.start_pos_row, m.occurrence"
            " FROM mutation_specs m JOIN work_results r ON r.job_id = m.job_id"
            " WHERE r.test_outcome = 'SURVIVED' ORDER BY m.start_pos_row"
        ).fetchall()
    return [f"{path}:{row} {op} (#{occ})" for path, op, row, occ in rows]


def mutate(
    name: str, module: str, tests: list[str], timeout_s: float, *, conftest: bool = True
) -> dict[str, object]:
    """Mutate ``module`` in a scratch copy, run ``tests`` per mutant; return the tallies."""
    folder = _scratch()
    env = {
        **os.environ,
        "PYTHONPATH": str(folder / "src"),
        "OPSNB_RUNS_DIR": str(folder / "test-runs"),  # what the root conftest would set
    }
    config = _config(folder, module, tests, timeout_s, conftest=conftest)
    session = folder / "session.sqlite"
    t0 = time.monotonic()
    try:
        cli = [sys.executable, "-m", "cosmic_ray.cli"]
        subprocess.run([*cli, "init", str(config), str(session)], cwd=folder, env=env, check=True)
        equivalent = _skip_equivalent(session, folder / module)
        subprocess.run([*cli, "exec", str(config), str(session)], cwd=folder, env=env, check=True)
        counts = _counts(session)
        survivors = _survivors(session)
    finally:
        keep = os.environ.get("OPSNB_MUTATE_KEEP")
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    killed = counts.get("killed", 0)
    survived = counts.get("survived", 0)
    incompetent = counts.get("incompetent", 0)  # the mutant did not even import: counts as killed
    total = killed + survived + incompetent
    score = 100.0 * (killed + incompetent) / total if total else 100.0
    return {
        "name": name,
        "module": module,
        "mutants": total,
        "killed": killed + incompetent,
        "survived": survived,
        "annotations": equivalent,
        "score": round(score, 1),
        "minutes": round((time.monotonic() - t0) / 60, 1),
        "survivors": survivors,
    }


def _write(results: list[dict[str, object]]) -> None:
    previous = SCORES.read_text() if SCORES.is_file() else ""
    lines = [
        "# Last `make mutate` scores (cosmic-ray; each module against its own fast tests)",
        "",
        "| module | mutants | killed | survived | score | in annotations (skipped) | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = {r["name"]: r for r in results}
    for line in previous.splitlines():  # keep modules not run this time
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in rows and cells[0] not in ("module", "---"):
            lines.append(line)
    for r in results:
        lines.append(
            f"| {r['name']} | {r['mutants']} | {r['killed']} | {r['survived']} | "
            f"{r['score']}% | {r['annotations']} | {r['minutes']} |"
        )
    SCORES.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="modules from modules.toml (default: all)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per mutant test run")
    args = parser.parse_args(argv)
    table = tomllib.loads((HERE / "modules.toml").read_text())
    names = args.names or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(table)}")
    results = []
    for name in names:
        entry = table[name]
        result = mutate(
            name,
            entry["module"],
            list(entry["tests"]),
            args.timeout_s,
            conftest=bool(entry.get("conftest", True)),
        )
        results.append(result)
        print(
            f"{name:12s} {result['module']:38s} {result['killed']}/{result['mutants']} killed"
            f" = {result['score']}% ({result['minutes']} min)",
            flush=True,
        )
        for survivor in result["survivors"]:  # type: ignore[attr-defined]
            print(f"    survived: {survivor}", flush=True)
        _write(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
