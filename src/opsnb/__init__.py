"""opsnb: take a tabular model from a notebook to a compiled, served and monitored model."""

from opsnb.errors import OpsnbError
from opsnb.notebook import open_stage
from opsnb.pipeline import run
from opsnb.stages import STAGES

__all__ = ["STAGES", "OpsnbError", "open_stage", "run"]
__version__ = "0.1.0"
