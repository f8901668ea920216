"""The run's report: ``runs/<id>/report.html``, one self-contained page anyone can open.

The page tells the run's story: the run's status and its resolved problem, the pipeline
timeline (stage, outcome, status, wall and CPU seconds, peak memory, reused or not), then one
section per stage in run order with its verdict and the figures and tables it kept, and links to
the executed notebooks, rendered to HTML beside them (``notebooks/NN_stage.html``). Images are
embedded as PNG data; the page makes no request to anything (no scripts, fonts or styles from
elsewhere), so it opens from disk in any browser. :func:`build` writes it; ``opsnb run`` calls
it at the end of every run (a failed run too) and ``opsnb report RUN`` rebuilds it.

**Adding a section (the one interface).** A stage's section is its story,
``story/<stage>.json``, which its notebook fills through the stage context:

- ``stage.figure("name", fig)`` — a matplotlib figure (use a helper of :mod:`opsnb.plots`),
  shown in the notebook and kept as PNG;
- ``stage.table("name", frame)`` — a small table, numbers rounded, times to the second;
- ``stage.verdict("PASS: ...", passed=True)`` — the one line with numbers, shown first;

in the order the notebook keeps them. A new stage in ``stages.STAGES`` gets its section with no
change here; there is nothing to register.
"""

from __future__ import annotations

import html
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat

from opsnb.artifacts import RunManifest, atomic_open, read_json
from opsnb.problem import Problem
from opsnb.stages import STAGES, Stage
from opsnb.story import story_relpath

log = logging.getLogger(__name__)
_NBCONVERT_LOG = logging.getLogger(f"{__name__}.nbconvert")
_NBCONVERT_LOG.setLevel(logging.ERROR)  # its notices (alt text it fills in) are not the user's

REPORT = "report.html"
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#2b2d42;
margin:0 auto;max-width:1060px;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.6em 0 .3em;
border-top:1px solid #ddd;padding-top:.8em}h3{font-size:1em;margin:1em 0 .3em;color:#555}
.muted{color:#6c757d}.note{color:#6c757d;font-size:.85em}
.badge{display:inline-block;min-width:5.5em;text-align:center;border-radius:4px;color:#fff;
font-weight:600;font-size:.8em;padding:1px 6px;margin-right:6px}
.pass{background:#2e7d32}.fail{background:#c62828}.decided{background:#455a64}
.none{background:#9e9e9e}.verdict{font-size:1.05em;margin:.4em 0}
table.tbl,table.timeline{border-collapse:collapse;font-size:.85em;margin:.4em 0}
.tbl th,.tbl td,.timeline th,.timeline td{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right}.tbl th:first-child,.timeline td:first-child,.timeline th:first-child,
.timeline td.l{text-align:left}
.bar{background:#a7adb4;height:10px;display:inline-block;vertical-align:middle}
figure{margin:.8em 0}figure img{max-width:100%;height:auto;border:1px solid #f0f0f0}
figcaption{font-size:.85em;color:#6c757d}.error{color:#c62828;white-space:pre-wrap}
"""


def _badge(passed: Any, label: str | None = None) -> str:
    kind = {True: "pass", False: "fail", None: "decided"}.get(passed, "none")
    text = label or {"pass": "PASS", "fail": "FAIL", "decided": "DECIDED"}.get(kind, "—")
    return f'<span class="badge {kind}">{html.escape(text)}</span>'


def _second(stamp: str | None) -> str:
    if not stamp:
        return "–"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return html.escape(stamp)


def _num(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value):,.{digits}f}"


# -- notebooks rendered beside the report --------------------------------------------------------
def render_notebooks(run_dir: Path) -> dict[str, str]:
    """Render each executed notebook to ``notebooks/NN_stage.html``; map stage → relative link.

    A page newer than its notebook is kept. Scripts are stripped (outputs here are PNG and
    tables), so a page makes no request elsewhere either.
    """
    from nbconvert import HTMLExporter  # noqa: PLC0415 - heavy; only when a report is built

    exporter = None
    links = {}
    for stage in STAGES:
        source = run_dir / "notebooks" / stage.notebook
        if not source.is_file():
            continue
        target = source.with_suffix(".html")
        if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            exporter = exporter or HTMLExporter(template_name="lab", log=_NBCONVERT_LOG)  # type: ignore[no-untyped-call]
            notebook = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
            body, _ = exporter.from_notebook_node(notebook)
            with atomic_open(target) as handle:
                handle.write(_SCRIPT.sub("", body))
        links[stage.name] = f"notebooks/{target.name}"
    return links


# -- the page ------------------------------------------------------------------------------------
def _story(run_dir: Path, stage: Stage) -> dict[str, Any] | None:
    path = run_dir / story_relpath(stage.name)
    return read_json(path) if path.is_file() else None


def _timeline(manifest: RunManifest, stories: dict[str, Any]) -> str:
    records = manifest.stages
    longest = max([float(r.get("wall_s") or 0) for r in records.values()] + [1e-9])
    rows = []
    for stage in STAGES:
        record = records.get(stage.name, {})
        verdict = (stories.get(stage.name) or {}).get("verdict")
        outcome = record.get("outcome", "not run" if not record else "executed")
        if record.get("reused_from"):
            outcome = f"reused from {record['reused_from']}"
        wall = record.get("wall_s")
        badge = _badge(verdict["passed"], verdict["label"]) if verdict else _badge("none")
        bar = f'<span class="bar" style="width:{160 * float(wall or 0) / longest:.0f}px"></span>'
        rows.append(
            f'<tr><td class="l"><a href="#{stage.name}">{stage.notebook[:2]} {stage.name}</a></td>'
            f'<td class="l">{html.escape(outcome)}</td>'
            f'<td class="l">{html.escape(str(record.get("status", "—")))}</td>'
            f"<td>{_second(record.get('started'))}</td>"
            f"<td>{_num(wall)}</td><td class='l'>{bar}</td><td>{_num(record.get('cpu_s'))}</td>"
            f"<td>{_num(record.get('kernel_peak_rss_mb'), 0)}</td>"
            f"<td class='l'>{badge}</td></tr>"
        )
    head = (
        "<tr><th>stage</th><th>this run</th><th>status</th><th>started (UTC)</th>"
        "<th>wall s</th><th></th><th>CPU s</th><th>peak MB</th><th>verdict</th></tr>"
    )
    return f'<table class="timeline">{head}{"".join(rows)}</table>'


def _item(item: dict[str, Any]) -> str:
    name = html.escape(item["name"])
    caption = (
        f"<figcaption>{html.escape(item['caption'])}</figcaption>" if item.get("caption") else ""
    )
    if item["kind"] == "figure":
        alt = html.escape(item.get("title") or item["name"])
        return (
            f'<figure id="fig-{name}"><img alt="{alt}" width="{item["width"]}" '
            f'height="{item["height"]}" src="data:image/png;base64,{item["png"]}">'
            f"{caption}</figure>"
        )
    return f"<h3>{name}</h3>{item['html']}{caption}"


def _section(stage: Stage, record: dict[str, Any], story: dict[str, Any] | None,
             link: str | None) -> str:  # fmt: skip
    parts = [f'<h2 id="{stage.name}">{stage.notebook[:2]} · {stage.name}</h2>',
             f'<p class="muted">{html.escape(stage.summary)}</p>']  # fmt: skip
    verdict = (story or {}).get("verdict")
    if verdict:
        text = re.sub(rf"^{verdict['label']}\s*:\s*", "", verdict["text"])  # the badge says it
        parts.append(
            f'<p class="verdict">{_badge(verdict["passed"], verdict["label"])}'
            f"{html.escape(text)}</p>"
        )
    elif record.get("status") == "failed":
        error = html.escape(str(record.get("error", "")))
        parts.append(
            f'<p class="verdict">{_badge(False, "FAILED")}</p><p class="error">{error}</p>'
        )
    else:
        parts.append(f'<p class="verdict">{_badge("none", "NOT RUN")}no verdict recorded</p>')
    parts.extend(_item(item) for item in (story or {}).get("items", []))
    if link:
        ipynb = link.removesuffix(".html") + ".ipynb"
        parts.append(f'<p class="note">executed notebook: <a href="{link}">{link}</a> '
                     f'(<a href="{ipynb}">.ipynb</a>)</p>')  # fmt: skip
    return "\n".join(parts)


def render(run_dir: Path, links: dict[str, str] | None = None) -> str:
    """The report page of ``run_dir`` as HTML text."""
    manifest = RunManifest.load(run_dir)
    stories = {s.name: _story(run_dir, s) for s in STAGES}
    problem = manifest.data.get("problem")
    stated = f"<p>{html.escape(Problem.from_dict(problem).describe())}</p>" if problem else ""
    verdicts = [s["verdict"] for s in stories.values() if s and s.get("verdict")]
    counts = {label: sum(v["label"] == label for v in verdicts) for label in ("PASS", "FAIL")}
    summary = (
        f"{len(verdicts)} of {len(STAGES)} stages gave a verdict: {counts['PASS']} pass, "
        f"{counts['FAIL']} fail, {len(verdicts) - counts['PASS'] - counts['FAIL']} decided"
    )
    sections = [
        _section(s, manifest.stages.get(s.name, {}), stories[s.name], (links or {}).get(s.name))
        for s in STAGES
    ]
    status = str(manifest.data.get("status", "new"))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>opsnb run {html.escape(manifest.run_dir.name)}</title><style>{_CSS}</style>"
        "</head><body>"
        f"<h1>Run {html.escape(manifest.run_dir.name)}: {html.escape(status)}</h1>"
        f'<p class="muted">created {_second(manifest.data.get("created"))} UTC, updated '
        f"{_second(manifest.data.get('updated'))} UTC · {summary}</p>{stated}"
        f"<h2>Timeline</h2>{_timeline(manifest, stories)}"
        + "\n".join(sections)
        + "<p class=\"note\">manifest.json holds every artifact's SHA-256 and each stage's "
        "parameters.</p></body></html>\n"
    )


def build(run_dir: str | os.PathLike[str]) -> Path:
    """Render the notebooks beside the report, write ``report.html`` atomically; return its path."""
    folder = Path(run_dir)
    links = render_notebooks(folder)
    path = folder / REPORT
    with atomic_open(path) as handle:
        handle.write(render(folder, links))
    log.info("report written to %s", path)
    return path
