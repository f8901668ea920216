"""Monitoring a served model from its prediction log.

- :mod:`~opsnb.monitoring.reference`: the training reference shipped in the bundle.
- :mod:`~opsnb.monitoring.checker`: the second-opinion model shipped in the bundle.
- :mod:`~opsnb.monitoring.logs`: reading the server's SQLite log in chunks.
- :mod:`~opsnb.monitoring.drift`: per-window drift statistics and the shift test.
- :mod:`~opsnb.monitoring.quality`: realized and estimated (CBPE) quality per window.
- :mod:`~opsnb.monitoring.alerts`: alert records and their table.
- :mod:`~opsnb.monitoring.analysis`: the whole analysis of a log and its output files.
- :mod:`~opsnb.monitoring.replay`: replaying a stream through a real ``opsnb serve``.
"""

from opsnb.monitoring.analysis import Bundle, MonitorResult, Windows, analyse_log, write_outputs
from opsnb.monitoring.drift import PSI_MAJOR, PSI_MODERATE, drift_table, psi, shift_test

__all__ = [
    "PSI_MAJOR",
    "PSI_MODERATE",
    "Bundle",
    "MonitorResult",
    "Windows",
    "analyse_log",
    "drift_table",
    "psi",
    "shift_test",
    "write_outputs",
]
