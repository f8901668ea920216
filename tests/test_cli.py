import dataclasses
import subprocess
import sys

import pytest

from opsnb.cli import build_parser, serve_options
from opsnb.serving import ServeOptions


def _options(*argv: str) -> ServeOptions:
    return serve_options(build_parser().parse_args(["serve", "runs/x", *argv]))


def test_serve_options_not_given_keep_the_dataclass_defaults() -> None:
    assert _options() == ServeOptions(bundle="runs/x")
    given = _options("--max-batch", "64", "--log", "p.sqlite", "--log-sync", "FULL")
    assert given == dataclasses.replace(
        ServeOptions(bundle="runs/x"), max_batch=64, log_path="p.sqlite", log_sync="FULL"
    )


@pytest.mark.parametrize(
    ("text", "slack"), [("0.5", 0.5), ("none", None), ("any", None), ("-1", None), ("0", 0.0)]
)
def test_range_slack_none_means_any_float32(text: str, slack: float | None) -> None:
    assert _options("--range-slack", text).range_slack == slack


def test_log_retention_options_reach_serve_options(capsys: pytest.CaptureFixture[str]) -> None:
    given = _options("--log-max-mb", "none", "--log-max-age-days", "30", "--log-keep", "3")
    assert (given.log_max_mb, given.log_max_age_days, given.log_keep) == (None, 30.0, 3)
    assert _options("--log-max-mb", "64").log_max_mb == 64.0
    with pytest.raises(SystemExit):
        _options("--log-max-mb", "0")
    assert "'0' is neither a number > 0 nor 'none' (no bound)" in capsys.readouterr().err


def test_a_bad_range_slack_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _options("--range-slack", "wide")
    assert "'wide' is neither a number of spans nor 'none'" in capsys.readouterr().err


def _cli(statement: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``opsnb argv`` in a fresh interpreter after ``statement``; print the heavy modules."""
    code = f"import sys\n{statement}\nfrom opsnb.cli import main\n"
    return subprocess.run(
        [sys.executable, "-c", code + "rc = main(sys.argv[1:])\n"
         "print(*[m for m in ('papermill', 'xgboost', 'sklearn') if m in sys.modules])\n"
         "sys.exit(rc)", *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_command_imports_only_its_own_stack() -> None:
    done = _cli("", "stages")
    assert done.returncode == 0, done.stderr
    assert "prepare" in done.stdout
    assert done.stdout.splitlines()[-1] == ""  # none of papermill, xgboost, sklearn loaded


def test_a_pipeline_command_without_the_pipeline_extra_says_what_to_install() -> None:
    done = _cli("sys.modules['papermill'] = None  # as in the serving install", "run")
    assert done.returncode == 1
    assert "error: 'opsnb run' needs papermill, which the serving install leaves out" in (
        done.stderr
    )
    assert "pip install 'opsnb[pipeline]'" in done.stderr
