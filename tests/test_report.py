"""report.html: built from the stages' stories, self-contained, opened in real headless Chromium."""

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from opsnb import config, plots, report
from opsnb.artifacts import RunManifest, read_json, write_json
from opsnb.stages import STAGES, stage_by_name
from opsnb.story import Story, story_relpath
from tests.browser import open_page
from tests.support import manifest_of, opsnb_cli

EXPECTED_FIGURES = {
    "prepare": ["distributions", "balance"],
    "design": ["cv curve"],
    "train": ["roc", "calibration"],
    "robustness": [
        "robust accuracy against epsilon",
        "robust accuracy against k",
        "smallest flip per row",
        "most attackable features",
    ],
    "operationalize": ["latency"],
    "monitor": [
        "drift_heatmap",
        "drift_distributions",
        "quality",
        "alert_timeline",
        "usage_heatmap",
        "scaling_schedule",
    ],
    "update": ["flagged per check", "backdoor scan", "shift", "metric deltas"],
}
"""The plots each stage notebook must show as image/png (the loans data is binary)."""


def _synthetic_run(folder: Path) -> Path:
    """A run folder where 'problem' succeeded with a story and 'dataset' failed."""
    manifest = RunManifest.load(folder)
    manifest.stages["problem"] = {"status": "succeeded", "outcome": "executed",
                                  "started": "2026-01-02T03:04:05.678+00:00", "wall_s": 2.5,
                                  "cpu_s": 1.25, "kernel_peak_rss_mb": 200.0}  # fmt: skip
    manifest.stages["dataset"] = {"status": "failed", "wall_s": 1.0,
                                  "error": "DataError: column 'y' <missing>"}  # fmt: skip
    manifest.save()
    kept = Story("problem")
    kept.figure("drift", plots.drift(pd.DataFrame({"feature": ["a", "b"], "psi": [0.3, 0.01]}),
                                     threshold=0.2))  # fmt: skip
    kept.table("criteria", pd.DataFrame({"criterion": ["quality"], "requirement": ["auc >= 0.75"]}))
    kept.set_verdict("PASS: auc 0.801 >= floor 0.75", passed=True)
    write_json(folder / story_relpath("problem"), kept.to_dict())
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("stage.figure('drift', fig)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "image/png": kept.items[0]["png"], "text/plain": "<figure>"})]  # fmt: skip
    notebook.cells = [nbformat.v4.new_markdown_cell("# 00 · Problem"), cell]
    (folder / "notebooks").mkdir()
    nbformat.write(notebook, folder / "notebooks" / stage_by_name("problem").notebook)
    return folder


def _check_in_browser(path: Path, *, images: int, min_height: int) -> None:
    page = open_page(path.as_uri())
    assert page.console_errors == []
    assert page.failed_requests == []
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    assert len(page.images) == images
    assert all(i["ok"] and i["width"] > 0 and i["height"] > 0 for i in page.images), page.images
    assert page.height >= min_height
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(page.screenshot) > 20_000
    (path.parent / "screenshot.png").write_bytes(page.screenshot)  # to look at by hand


def test_the_report_tells_the_story_and_opens_clean_in_chromium(tmp_path: Path) -> None:
    run = _synthetic_run(tmp_path / "run-1")
    path = report.build(run)
    page = path.read_text()
    order = [page.index(f'id="{s.name}"') for s in STAGES]
    assert order == sorted(order)  # sections in run order
    assert "2026-01-02 03:04:05" in page  # to the second
    assert "auc 0.801 &gt;= floor 0.75" in page
    assert "DataError: column &#x27;y&#x27; &lt;missing&gt;" in page  # escaped, not markup
    assert page.count('src="data:image/png;base64,') == 1
    assert not re.search(r'(?:src|href)="https?://', page)
    rendered = run / "notebooks" / "00_problem.html"
    assert 'href="notebooks/00_problem.html"' in page
    assert "<script" not in rendered.read_text()
    _check_in_browser(path, images=1, min_height=800)
    _check_in_browser(rendered, images=1, min_height=200)


def test_the_browser_check_sees_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<html><body><img src="missing.png"><script>console.error("boom")</script>'
        "<p>x</p></body></html>"
    )
    page = open_page(broken.as_uri())
    assert page.console_errors
    assert page.failed_requests
    assert not page.images[0]["ok"]


def test_opsnb_report_rebuilds_a_run_and_refuses_a_folder_that_is_not_one(
    runs_dir: Path,
) -> None:
    run = _synthetic_run(runs_dir / "r1")
    done = opsnb_cli("report", "r1", env={config.RUNS_ENV: str(runs_dir)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {run / 'report.html'}"
    missing = opsnb_cli("report", str(runs_dir / "nope"))
    assert missing.returncode == 1
    assert "is not a run folder (no manifest.json)" in missing.stderr


@pytest.mark.slow
def test_every_stage_notebook_shows_its_plots_and_ends_with_its_verdict(
    completed_run: Path,
) -> None:
    counts = {}
    for stage in STAGES:
        executed = nbformat.read(completed_run / "notebooks" / stage.notebook, as_version=4)
        outputs = [o for c in executed.cells for o in c.get("outputs", [])]
        images = [o["data"]["text/plain"] for o in outputs if "image/png" in o.get("data", {})]
        counts[stage.name] = len(images)
        for name in EXPECTED_FIGURES.get(stage.name, []):
            assert any(text.startswith(f"<figure '{name}'") for text in images), (stage, images)
        assert not any("<Figure size" in str(o.get("data", {})) for o in outputs)
        last = outputs[-1]["data"]  # the verdict is the notebook's last output
        assert 'class="opsnb-verdict"' in last["text/html"], stage.name
        assert re.search(r"\d", last["text/plain"])
        story = read_json(completed_run / story_relpath(stage.name))
        assert story["verdict"]["text"] == last["text/plain"]
        assert [i["name"] for i in story["items"] if i["kind"] == "figure"] == [
            t.split("'")[1] for t in images
        ]
        assert not any(o.get("output_type") == "stream" and "split.cc" in o["text"]
                       for o in outputs)  # fmt: skip
    assert counts == {s.name: len(EXPECTED_FIGURES.get(s.name, [])) for s in STAGES}


@pytest.mark.slow
def test_the_run_report_opens_clean_in_chromium(completed_run: Path) -> None:
    path = completed_run / "report.html"
    assert manifest_of(completed_run).data["report"] == "report.html"
    assert "<h1>Run good: succeeded</h1>" in path.read_text()  # written once the run ended
    for stage in STAGES:
        assert (completed_run / "notebooks" / stage.notebook).with_suffix(".html").is_file()
    figures = sum(len(v) for v in EXPECTED_FIGURES.values())
    _check_in_browser(path, images=figures, min_height=3000)


@pytest.mark.slow
def test_the_manifest_reads_in_run_order_with_the_values_used(completed_run: Path) -> None:
    data = read_json(completed_run / "manifest.json")
    assert list(data)[:4] == ["run_id", "status", "created", "updated"]
    assert list(data)[-1] == "artifacts"
    assert list(data["stages"]) == [s.name for s in STAGES]
    design = data["stages"]["design"]
    assert design["params"]["cv_folds"] == 3  # a default, resolved
    assert design["params"]["max_depth"] == [3]  # an override
    assert design["overrides"] == {"max_depth": [3], "max_rounds": 120}
    assert data["problem"]["task"] == "binary"
    assert data["problem"]["quality_floor"] == 0.75
    for relpath in ("model/model.ubj", "bundle/model.so", "manifest.json", "report.html"):
        mode = (completed_run / relpath).stat().st_mode & 0o777
        assert mode & 0o044 == 0o044, (relpath, oct(mode))  # the group and others read it
    assert np.all([(completed_run / "logs" / f"{s.name}.log").is_file() for s in STAGES])
