"""Root pytest configuration: keep every run a test makes (nbval's included) out of runs/."""

import os
import tempfile


def pytest_configure(config):
    # nbval executes notebooks/ with their default run_dir ("lab"), which resolves under
    # $OPSNB_RUNS_DIR; point it at a scratch folder so tests never touch the user's runs.
    os.environ.setdefault("OPSNB_RUNS_DIR", tempfile.mkdtemp(prefix="opsnb-test-runs-"))
