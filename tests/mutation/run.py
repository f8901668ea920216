"""``make mutate``: mutation testing of the modules that carry opsnb's guarantees.

For each module in ``modules.toml`` (or those named on the command line) cosmic-ray mutates a
scratch copy of the project (never this working tree: other runs keep importing the real code)
and runs that module's own fast test files against each mutant. The score per module is printed
and written to ``tests/mutation/last_scores.md``; the README quotes it.

Usage: ``python tests/mutation/run.py [name ...] [--workers N] [--survivors] [--show]``.
``--workers 2`` runs two modules at once. Each module's cosmic-ray session is kept in
``.mutate/<name>.sqlite``; ``--survivors`` re-runs only that session's surviving mutants against
today's tests, which is how a new test is shown to kill them (and how a score is brought up to
date cheaply); ``--show`` prints the kept survivors' diffs.
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
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db  # the 'mutate' extra
from cosmic_ray.work_item import WorkerOutcome, WorkResult

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
SCORES = HERE / "last_scores.md"
SESSIONS = PROJECT / ".mutate"  # one cosmic-ray session per module (git-ignored)
DEFAULT_TIMEOUT_S = 60.0
"""Per mutant, unless modules.toml says otherwise: ten times a fast module's test run, so a mutant
that makes a loop spin costs a minute, not the five a global default would."""
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


def _test_command(tests: list[str], *, conftest: bool) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-x", "-q", "--no-cov", "-p", "no:cacheprovider",
        "-o", "addopts=", "-W", "ignore::DeprecationWarning",
        *([] if conftest else ["--noconftest"]), *tests,
    ]  # fmt: skip


def _config(
    folder: Path, module: str, tests: list[str], timeout_s: float, *, conftest: bool
) -> Path:
    command = " ".join(_test_command(tests, conftest=conftest))
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


NEAREST = {
    "ReplaceBinaryOperator": {
        "Add": {"Sub"}, "Sub": {"Add"}, "Mul": {"Div"}, "Div": {"Mul"}, "FloorDiv": {"Mul"},
        "Mod": {"FloorDiv"}, "Pow": {"Mul"}, "RShift": {"LShift"}, "LShift": {"RShift"},
        "BitOr": {"BitAnd"}, "BitAnd": {"BitOr"}, "BitXor": {"BitOr"},
    },
    "ReplaceComparisonOperator": {
        "Eq": {"NotEq"}, "NotEq": {"Eq"}, "Is": {"IsNot"}, "IsNot": {"Is"},
        "Lt": {"GtE", "LtE"}, "LtE": {"Gt", "Lt"}, "Gt": {"LtE", "GtE"}, "GtE": {"Lt", "Gt"},
    },
}  # fmt: skip
"""The variants kept per operator site: its opposite and, for an ordering, the off-by-one.
cosmic-ray writes every ``a / b`` eleven ways and every ``a == b`` seven; on a path or a float
ten of the eleven crash at once, so they measure how many ways code can crash, not what the
tests notice, and they would make a module take hours. The rest are not run."""


def _variant(operator: str) -> bool:
    """True for a mutant that is a further variant of a site already mutated (see NEAREST)."""
    kind, _, change = operator.rsplit("/", maxsplit=1)[-1].partition("_")
    if kind not in NEAREST:
        return False
    source, _, target = change.partition("_")
    return target not in NEAREST[kind].get(source, {target})


def _skip(session: Path, module: Path) -> tuple[int, int]:
    """Mark as skipped the mutants inside type annotations (never evaluated, with ``from
    __future__ import annotations``: equivalent by construction) and the further variants of a
    site; return how many of each."""
    spans = _annotations(module.read_text())
    annotations = variants = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            starts = [tuple(m.start_pos) for m in item.mutations]
            if starts and all(any(a <= s < b for a, b in spans) for s in starts):
                annotations += 1
            elif all(_variant(m.operator_name) for m in item.mutations):
                variants += 1
            else:
                continue
            db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return annotations, variants


def _signature_markers(session: Path, module: Path) -> int:
    """Mark as skipped the "mutants" of a bare ``*`` in a parameter list; return how many.

    cosmic-ray reads the keyword-only marker of ``def f(a, *, b)`` as a multiplication and
    writes it as ``/`` (positional-only). That changes no operator, only which calls are legal,
    and every call the code makes stays legal, so none can be detected; they are not counted."""
    lines = module.read_text().splitlines()

    def bare_star(row: int, col: int) -> bool:
        line = lines[row - 1] if 0 < row <= len(lines) else ""
        return line[col : col + 1] == "*" and line[col + 1 :].lstrip()[:1] in (",", ")")

    with sqlite3.connect(session) as conn:
        jobs = [
            job
            for job, operator, row, col in conn.execute(
                "SELECT m.job_id, m.operator_name, m.start_pos_row, m.start_pos_col"
                " FROM mutation_specs m LEFT JOIN work_results r ON r.job_id = m.job_id"
                " WHERE r.worker_outcome IS NULL OR r.worker_outcome != 'SKIPPED'"
            )
            if "ReplaceBinaryOperator_Mul_" in operator and bare_star(row, col)
        ]
        conn.executemany("DELETE FROM work_results WHERE job_id = ?", [(j,) for j in jobs])
        conn.executemany(
            "INSERT INTO work_results (job_id, worker_outcome) VALUES (?, 'SKIPPED')",
            [(j,) for j in jobs],
        )
    return len(jobs)


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
    name: str,
    module: str,
    tests: list[str],
    timeout_s: float,
    *,
    conftest: bool = True,
    survivors_only: bool = False,
) -> dict[str, object]:
    """Mutate ``module`` in a scratch copy, run ``tests`` per mutant; return the tallies.

    With ``survivors_only`` the module's kept session is reused and only its survivors run again.
    """
    folder = _scratch()
    env = {
        **os.environ,
        "PYTHONPATH": str(folder / "src"),
        "OPSNB_RUNS_DIR": str(folder / "test-runs"),  # what the root conftest would set
        "OPSNB_TEST_COMPILE_CACHE": str(folder / "compile-cache"),  # gcc once, not per mutant
    }
    config = _config(folder, module, tests, timeout_s, conftest=conftest)
    kept = SESSIONS / f"{name}.sqlite"
    session = folder / "session.sqlite"
    t0 = time.monotonic()
    try:
        cli = [sys.executable, "-m", "cosmic_ray.cli"]
        baseline = subprocess.run(  # unmutated, the tests must pass (and fill the compile cache)
            _test_command(tests, conftest=conftest), cwd=folder, env=env,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if baseline.returncode != 0:
            failed = baseline.stdout[-3000:]
            raise SystemExit(f"{name}: the tests fail without any mutant:\n{failed}")
        if survivors_only:
            if not kept.is_file():
                raise SystemExit(f"no kept session for {name!r} at {kept}: run it once in full")
            shutil.copy2(kept, session)
            with sqlite3.connect(session) as conn:  # a survivor without a result is pending
                conn.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
            last = json.loads(kept.with_suffix(".json").read_text())
            equivalent, variants = last["annotations"], last["variants"]
            full_minutes = last.get("full_minutes", last["minutes"])
        else:
            subprocess.run(
                [*cli, "init", str(config), str(session)], cwd=folder, env=env, check=True
            )
            equivalent, variants = _skip(session, folder / module)
        markers = _signature_markers(session, folder / module)
        if survivors_only:  # those found by the earlier runs of this session count too
            markers += last.get("markers", 0)
        subprocess.run(
            [*cli, "exec", str(config), str(session)],
            cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        counts = _counts(session)
        survivors = _survivors(session)
        SESSIONS.mkdir(exist_ok=True)
        shutil.copy2(session, kept)
    finally:
        if not os.environ.get("OPSNB_MUTATE_KEEP"):
            shutil.rmtree(folder, ignore_errors=True)
    killed = counts.get("killed", 0)
    survived = counts.get("survived", 0)
    incompetent = counts.get("incompetent", 0)  # the mutant did not even import: counts as killed
    total = killed + survived + incompetent
    score = 100.0 * (killed + incompetent) / total if total else 100.0
    result = {
        "name": name,
        "module": module,
        "mutants": total,
        "killed": killed + incompetent,
        "survived": survived,
        "annotations": equivalent,
        "variants": variants,
        "markers": markers,
        "score": round(score, 1),
        "minutes": round((time.monotonic() - t0) / 60, 1),
        "full_minutes": full_minutes if survivors_only else round((time.monotonic() - t0) / 60, 1),
        "run": "survivors" if survivors_only else "full",
        "survivors": survivors,
    }
    kept.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return result


def show(name: str) -> str:
    """Each surviving mutant of ``name``'s kept session: its line, operator and changed lines."""
    kept = SESSIONS / f"{name}.sqlite"
    if not kept.is_file():
        raise SystemExit(f"no kept session for {name!r} at {kept}: run make mutate first")
    with sqlite3.connect(kept) as conn:
        rows = conn.execute(
            "SELECT m.module_path, m.start_pos_row, m.operator_name, r.diff"
            " FROM mutation_specs m JOIN work_results r ON r.job_id = m.job_id"
            " WHERE r.test_outcome = 'SURVIVED' ORDER BY m.start_pos_row"
        ).fetchall()
    out = []
    for path, row, operator, diff in rows:
        changed = [
            line
            for line in (diff or "").splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        out += [f"{path}:{row} {operator}", *(f"    {line}" for line in changed)]
    return "\n".join(out)


def _write(order: list[str]) -> None:
    """The score table of every module with a kept result, in ``modules.toml`` order."""
    results = [json.loads(p.read_text()) for p in SESSIONS.glob("*.json")]
    results.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    lines = [
        "# Last `make mutate` scores (cosmic-ray; each module against its own fast tests)",
        "",
        "| module | mutants | killed | survived | score | skipped: in annotations | skipped:"
        " further variants | skipped: `*` of a signature | last run | minutes (full run) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['mutants']} | {r['killed']} | {r['survived']} | "
            f"{r['score']}% | {r['annotations']} | {r['variants']} | {r.get('markers', 0)} | "
            f"{r['run']} | {r.get('full_minutes', r['minutes'])} |"
        )
    total = sum(r["mutants"] for r in results)
    killed = sum(r["killed"] for r in results)
    if total:
        lines += ["", f"All modules: {killed} of {total} mutants killed ({killed / total:.1%})."]
    SCORES.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="modules from modules.toml (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="modules mutated at once")
    parser.add_argument(
        "--survivors", action="store_true", help="re-run only the kept sessions' survivors"
    )
    parser.add_argument(
        "--show", action="store_true", help="print the kept survivors' diffs; run nothing"
    )
    args = parser.parse_args(argv)
    table = tomllib.loads((HERE / "modules.toml").read_text())
    names = args.names or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(table)}")
    if args.show:
        print("\n".join(show(name) for name in names))
        return 0
    lock = threading.Lock()  # modules finish on pool threads; one writes the scores at a time

    def one(name: str) -> None:
        entry = table[name]
        try:
            result = mutate(
                name,
                entry["module"],
                list(entry["tests"]),
                float(entry.get("timeout_s", DEFAULT_TIMEOUT_S)),
                conftest=bool(entry.get("conftest", True)),
                survivors_only=args.survivors,
            )
        except (subprocess.CalledProcessError, SystemExit) as exc:  # the other modules go on
            print(f"{name}: not scored: {exc}", flush=True)
            return
        lines = [
            f"{name:12s} {result['module']:38s} {result['killed']}/{result['mutants']} killed"
            f" = {result['score']}% ({result['minutes']} min)",
            *(f"    survived: {s}" for s in result["survivors"]),  # type: ignore[attr-defined]
        ]
        with lock:
            print("\n".join(lines), flush=True)
            _write(list(table))

    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        list(pool.map(one, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
