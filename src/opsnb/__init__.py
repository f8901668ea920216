"""opsnb: take a tabular model from a notebook to a compiled, served and monitored model.

The names below load their modules on first use, so ``import opsnb.serving`` (or any one
module) does not import the pipeline's stack of papermill, Jupyter and XGBoost.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from opsnb.errors import OpsnbError

if TYPE_CHECKING:
    from opsnb.notebook import open_stage
    from opsnb.pipeline import run
    from opsnb.stages import STAGES

__all__ = ["STAGES", "OpsnbError", "open_stage", "run"]
__version__ = "0.1.0"

_LAZY = {"open_stage": "opsnb.notebook", "run": "opsnb.pipeline", "STAGES": "opsnb.stages"}


def __getattr__(name: str) -> Any:
    """Import ``open_stage``, ``run`` and ``STAGES`` from their modules when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'opsnb' has no attribute {name!r}")
