"""What a stage shows a person: its kept figures and tables, and its one-line verdict.

A stage notebook keeps evidence through its stage context (``stage.figure("roc", fig)``,
``stage.table("metrics", frame)``) and ends with ``stage.verdict("PASS: AUC 0.801 >= floor
0.75", passed=True)``. Each call displays what it keeps in the notebook, as PNG or HTML that
papermill, nbval, JupyterLab and nbconvert all render, and :class:`Story` remembers it; the
stage's ``finish()`` writes the story as the sealed, declared output ``story/<stage>.json``,
which ``report.html`` reads. A figure is rendered to PNG once, then closed, so a notebook's
memory does not grow with its plots.

:func:`enable_png` registers a PNG formatter for matplotlib figures in the running IPython
kernel, so a figure returned from a cell renders as an image too (without one, a bare
``Figure`` shows as ``<Figure size 1280x720 with 12 Axes>``).
"""

from __future__ import annotations

import base64
import html
import io
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from opsnb.errors import StageError

STORY_DIR = "story"
DPI = 100
TABLE_ROWS = 30
"""A kept table longer than this is cut (with a note): a report shows evidence, not dumps."""


def story_relpath(stage: str) -> str:
    """The declared output of ``stage`` holding its story (``story/<stage>.json``)."""
    return f"{STORY_DIR}/{stage}.json"


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` as PNG bytes (the Agg renderer, whatever the backend)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def close(fig: Figure) -> None:
    """Release ``fig``: pyplot keeps figures it made until they are closed."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def figure_title(fig: Figure) -> str:
    """The figure's title (its suptitle, else its first axes' title), or ``""``."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return str(suptitle.get_text())
    for ax in fig.axes:
        if ax.get_title():
            return str(ax.get_title())
    return ""


def _ipython() -> Any:
    """The running IPython shell, or ``None`` outside one (a script, a test)."""
    module = sys.modules.get("IPython")
    return module.get_ipython() if module is not None else None


def enable_png() -> bool:
    """Make the running IPython kernel display matplotlib figures as PNG; False outside one."""
    shell = _ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["image/png"].for_type(Figure, png_bytes)
    return True


def _display(data: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
    if _ipython() is None:
        return
    from IPython.display import display  # noqa: PLC0415 - only inside a kernel

    display(data, raw=True, metadata=metadata or {})  # type: ignore[no-untyped-call]


# -- formatted tables ----------------------------------------------------------------------------
def _round_significant(value: float, digits: int) -> float:
    if not np.isfinite(value) or value == 0:
        return value
    magnitude = int(np.floor(np.log10(abs(value))))
    return round(value, max(digits - 1 - magnitude, 0))


def tidy(frame: pd.DataFrame | pd.Series, *, digits: int = 3) -> pd.DataFrame:
    """A small table a person reads: floats to ``digits`` significant digits, times to the second.

    Integers stay exact; a value of 1,234.5678 keeps its whole part (1,235 at 3 digits).
    """
    out = frame.to_frame() if isinstance(frame, pd.Series) else frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            out[name] = column.dt.floor("s")
        elif pd.api.types.is_float_dtype(column):
            out[name] = column.map(lambda v: _round_significant(float(v), digits))
    return out


def table_html(frame: pd.DataFrame) -> str:
    """A frame as an HTML table for the report (first :data:`TABLE_ROWS` rows, a note if cut)."""
    shown = frame.head(TABLE_ROWS)
    plain_index = isinstance(shown.index, pd.RangeIndex)  # 0, 1, 2 … tells a reader nothing
    text = shown.to_html(
        border=0, classes="tbl", na_rep="–", float_format=_fmt_float, index=not plain_index
    )
    if len(frame) > TABLE_ROWS:
        text += f'<p class="note">first {TABLE_ROWS} of {len(frame):,} rows</p>'
    return text


def _fmt_float(value: float) -> str:
    return f"{value:,.6g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"


# -- the verdict ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A stage's one-line verdict: ``passed`` True (PASS), False (FAIL) or None (a decision)."""

    text: str
    passed: bool | None

    @property
    def label(self) -> str:
        """``PASS``, ``FAIL`` or ``DECIDED``."""
        return {True: "PASS", False: "FAIL", None: "DECIDED"}[self.passed]

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        kind = {True: "pass", False: "fail", None: "decided"}[self.passed]
        colour = {"pass": "#2e7d32", "fail": "#c62828", "decided": "#455a64"}[kind]
        return (
            f'<p class="opsnb-verdict" data-verdict="{kind}" style="font-size:1.1em">'
            f'<b style="color:{colour}">{self.label}</b> {html.escape(self.text)}</p>'
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"text": self.text, "passed": self.passed, "label": self.label}


def check_verdict(text: str, *, stage: str) -> str:
    """The verdict text, stripped; refuses an empty one, several lines, or one with no number."""
    line = text.strip()
    problem = None
    if not line:
        problem = "is empty"
    elif "\n" in line:
        problem = "has several lines"
    elif not re.search(r"\d", line):
        problem = "states no number"
    if problem:
        raise StageError(
            f"stage '{stage}': verdict {text!r} {problem}; "
            "expected one line with the numbers it rests on, "
            "e.g. 'PASS: AUC 0.801 >= floor 0.75'",
            stage=stage,
        )
    return line


# -- the story -----------------------------------------------------------------------------------
@dataclass
class Story:
    """The evidence a stage kept, in the order it was kept, and its verdict."""

    stage: str
    items: list[dict[str, Any]] = field(default_factory=list)
    verdict: Verdict | None = None

    def _add(self, item: dict[str, Any]) -> None:
        names = [i["name"] for i in self.items]
        if item["name"] in names:
            self.items[names.index(item["name"])] = item  # a re-run cell replaces its figure
        else:
            self.items.append(item)

    def figure(self, name: str, fig: Figure, *, caption: str = "") -> None:
        """Keep ``fig`` as PNG under ``name``, display it, and close it."""
        if not isinstance(fig, Figure):
            raise StageError(
                f"stage '{self.stage}': figure {name!r}: expected a matplotlib Figure, "
                f"got {type(fig).__name__}; "
                "the helpers in opsnb.plots return one",
                stage=self.stage,
            )
        png = base64.b64encode(png_bytes(fig)).decode("ascii")
        title = figure_title(fig)
        width, height = (round(v * DPI) for v in fig.get_size_inches())
        close(fig)
        self._add({"kind": "figure", "name": name, "title": title, "caption": caption,
                   "png": png, "width": width, "height": height})  # fmt: skip
        _display(
            {"image/png": png, "text/plain": f"<figure {name!r}: {title}>"},
            {"image/png": {"width": width, "height": height}},
        )

    def table(self, name: str, frame: pd.DataFrame | pd.Series, *, caption: str = "") -> None:
        """Keep a small table (tidied) under ``name`` and display it."""
        tidied = tidy(frame)
        rendered = table_html(tidied) if len(tidied) else '<p class="note">none</p>'
        if not len(tidied):
            self._add({"kind": "table", "name": name, "caption": caption, "html": rendered})
            _display(
                {"text/html": f"<p>{html.escape(name)}: none</p>", "text/plain": f"{name}: none"}
            )
            return
        self._add({"kind": "table", "name": name, "caption": caption, "html": rendered})
        _display({"text/html": rendered, "text/plain": tidied.head(TABLE_ROWS).to_string()})

    def set_verdict(self, text: str, *, passed: bool | None) -> Verdict:
        """Record the stage's verdict and return it (a notebook shows it as the cell's value)."""
        self.verdict = Verdict(check_verdict(text, stage=self.stage), passed)
        return self.verdict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the stage, its verdict, the kept items."""
        return {
            "stage": self.stage,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "items": self.items,
        }
