"""The codebase keeps its own promises: a mapped module per concept, layers that hold."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import opsnb

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = Path(opsnb.__file__).parent


def _modules() -> set[str]:
    names = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    return names | {f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


def test_every_module_is_named_in_the_readme_map() -> None:
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^- `([\w/]+(?:\.py|/))`", section, flags=re.M))
    assert _modules() - mapped == set(), "add a line per module to README's code map"
    assert mapped - _modules() == set(), "README maps a module that no longer exists"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
         "lint_imports_command()", "--no-cache"],
        cwd=root, env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_layer_contracts_hold_and_can_fail(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "src" / "opsnb")
    shutil.copy(PROJECT / "pyproject.toml", tmp_path)
    assert _lint_imports(tmp_path).returncode == 0

    monitoring = tmp_path / "src" / "opsnb" / "monitoring" / "drift.py"
    monitoring.write_text(monitoring.read_text() + "\nfrom opsnb import training  # noqa\n")
    broken = _lint_imports(tmp_path)
    assert broken.returncode != 0
    assert "Monitoring reads predictions, never trains or compiles BROKEN" in broken.stdout
    assert "opsnb.monitoring.drift -> opsnb.training" in broken.stdout


def test_test_helpers_are_imported_one_way() -> None:
    helpers = {p.stem for p in (PROJECT / "tests").glob("*.py") if not p.stem.startswith("test_")}
    pattern = re.compile(rf"^\s*(?:from|import) ({'|'.join(sorted(helpers))})\b", flags=re.M)
    other = {
        path.name: pattern.findall(path.read_text())
        for path in sorted((PROJECT / "tests").glob("*.py"))
        if pattern.search(path.read_text())
    }
    assert other == {}, "import test helpers as 'from tests.<module> import ...'"
    conftest = re.compile(r"^\s*(?:from|import) (?:tests\.)?conftest\b", flags=re.M)
    assert not [p.name for p in (PROJECT / "tests").glob("*.py") if conftest.search(p.read_text())]


_TRAINING_STACK = ("sklearn", "pandera", "xgboost", "treelite", "tl2cgen", "papermill")
_PROBED = (*_TRAINING_STACK, "pandas")


def _loaded_after(statement: str) -> list[str]:
    """Which modules of the training stack (and pandas) a fresh interpreter holds after it."""
    probe = f"import sys; {statement}; print(*[m for m in {_PROBED!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.split()


def test_serving_and_the_predictor_import_none_of_the_training_stack() -> None:
    # pandas neither: a server answering JSON makes no DataFrame (half its import time)
    assert _loaded_after("import opsnb.serving, opsnb.predictor, opsnb.bundle, opsnb.cli") == []
    # the probe can fail: a DataFrame caller and the pipeline side do load them
    assert _loaded_after("import opsnb.predictor, pandas") == ["pandas"]
    assert {"sklearn", "pandera"} <= set(_loaded_after("import opsnb.validation"))
    assert "papermill" in _loaded_after("import opsnb; opsnb.run")
