"""``opsnb run``, ``report``, ``stages`` and ``notebooks``: the pipeline's commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsnb import config
from opsnb.errors import ConfigError

if TYPE_CHECKING:
    from opsnb import pipeline
    from opsnb.stages import Stage


def _parse_value(text: str) -> Any:
    """Read a ``-p`` value as YAML so numbers and booleans keep their type (``-p n_rows 500``)."""
    import yaml

    return yaml.safe_load(text) if text.strip() else text


def _load_params(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    params: dict[str, Any] = {}
    if args.params_file:
        path = Path(args.params_file)
        if not path.is_file():
            raise ConfigError(f"parameters file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"parameters file {path} must hold a mapping of name: value")
        params.update(loaded)
    for name, value in args.param or []:
        params[name] = _parse_value(value)
    return params


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from opsnb import pipeline
    from opsnb.stages import STAGES

    params = _load_params(args)
    # A bar only on a terminal (None: tqdm decides); the per-stage lines always print.
    # leave=False: once done the bar goes, and the terminal keeps the stage lines and the last one.
    bar = tqdm(total=len(STAGES), unit="stage", disable=True if args.quiet else None, leave=False)

    def progress(stage: Stage, outcome: pipeline.StageOutcome | None) -> None:
        if outcome is None:
            bar.set_description(stage.name)
            return
        bar.update(1)
        bar.write(
            f"  {stage.name:<15} {outcome.status:<9} {outcome.wall_s:7.1f} s  {outcome.detail}"
        )

    try:
        result = pipeline.run(
            params,
            run_id=args.run_id,
            from_stage=args.from_stage,
            until=args.until,
            force=args.force,
            on_stage=progress,
        )
    finally:
        bar.close()
    status = result.manifest.data["status"]
    print(f"run {result.run_id}: {status} -> {result.run_dir / 'report.html'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from opsnb import report

    run_dir = config.resolve_run_dir(args.run)
    if not (run_dir / "manifest.json").is_file():
        raise ConfigError(
            f"{run_dir} is not a run folder (no manifest.json); pass runs/<id>, a run id or latest"
        )
    print(f"report: {report.build(run_dir)}")
    return 0


def _cmd_stages(_: argparse.Namespace) -> int:
    from opsnb.stages import STAGES

    for stage in STAGES:
        print(f"{stage.name:<15} {stage.notebook:<26} {stage.summary}")
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from opsnb import hygiene

    paths = [Path(p) for p in args.paths] or sorted(config.notebooks_dir().glob("*.ipynb"))
    if args.action == "clean":
        for path in paths:
            if hygiene.clean(path):
                print(f"cleaned {path}")
        return 0
    if args.action == "adopt":
        executed = config.executed_notebooks_dir(args.from_run)
        for path in paths:
            if (executed / path.name).is_file():
                for cell in hygiene.adopt_checked_outputs(path, executed / path.name):
                    print(f"{path}: refreshed checked output of cell {cell}")
        return 0
    problems = [p for path in paths for p in hygiene.check(path)]
    for problem in problems:
        print(problem)
    print(f"{len(paths)} notebooks checked, {len(problems)} problems")
    return 1 if problems else 0
