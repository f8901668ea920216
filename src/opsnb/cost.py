"""What the run and its predictions cost, from this machine's own measurements and a price table.

Two sources, both measured by the OS, never estimated:

- the run manifest: per stage the CPU seconds (the kernel and everything it waited for), the wall
  time and the kernel's peak RSS -> the cost of the run at an offer;
- the monitor stage's real server (``monitor/serving.json``): its process CPU seconds over the
  replay, the requests it answered, the wall time and the latency percentiles -> CPU-seconds per
  1,000 predictions, cost per million predictions at each offer, the utilisation of what was
  provisioned, and the budget verdicts against ``problem.json`` (p99 and cost per million).

Prices come from :mod:`opsnb.prices`; right-sizing and the usage heatmap live in
:mod:`opsnb.sizing`. Every figure that rests on arithmetic carries the arithmetic as text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from opsnb import sizing
from opsnb.artifacts import RunManifest, read_json
from opsnb.errors import ConfigError
from opsnb.prices import Offer, PriceTable

HOUR = 3600.0
MILLION = 1_000_000


def stage_usage(run_dir: str | Path) -> pd.DataFrame:
    """CPU seconds, wall seconds and peak memory (MiB) of every stage the manifest records."""
    stages = RunManifest.load(run_dir).stages
    rows = []
    for name, record in stages.items():
        if "wall_s" not in record:
            continue
        cpu = record.get("cpu_s", record.get("kernel_cpu_s", 0.0))
        rows.append(
            {
                "stage": name,
                "wall_s": float(record["wall_s"]),
                "cpu_s": float(cpu),
                "peak_mib": float(record.get("kernel_peak_rss_mb", 0.0)),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "wall_s", "cpu_s", "peak_mib"])


def run_cost(usage: pd.DataFrame, offer: Offer) -> pd.DataFrame:
    """Cost per stage at ``offer``: CPU-seconds at the vCPU price plus peak memory x wall time.

    Memory is charged as if the stage held its peak RSS for its whole wall time (an upper bound).
    """
    vcpu = offer.prices["vcpu_hour"]
    gib = offer.price("gib_hour") or 0.0
    out = usage.copy()
    out["cpu_usd"] = out["cpu_s"] / HOUR * vcpu
    out["memory_usd"] = out["peak_mib"] / 1024 * out["wall_s"] / HOUR * gib
    out["total_usd"] = out["cpu_usd"] + out["memory_usd"]
    return out


def storage_cost(run_dir: str | Path, offer: Offer) -> dict[str, Any]:
    """Bytes the run folder holds and what storing them costs per month at ``offer``."""
    size = sum(p.stat().st_size for p in Path(run_dir).rglob("*") if p.is_file())
    price = offer.price("gb_month")
    return {
        "bytes": size,
        "usd_per_month": None if price is None else size / 1e9 * price,
        "arithmetic": (
            f"{offer.name} prices no storage"
            if price is None
            else f"{size / 1e9:.4f} GB x ${price:g}/GB-month = ${size / 1e9 * price:.6f}/month"
        ),
    }


@dataclass(frozen=True)
class Serving:
    """What the monitor stage's real server measured (``monitor/serving.json``)."""

    answered: int
    requests: int
    server_cpu_s: float
    wall_s: float
    p99_ms: float
    throughput_rps: float

    @classmethod
    def load(cls, path: str | Path) -> Serving:
        """Read ``serving.json``; no file (no monitor data yet) is one clear error."""
        where = Path(path)
        if not where.is_file():
            raise ConfigError(
                f"{where} does not exist: there is no monitor data yet; run the monitor stage "
                "first (opsnb run --until monitor), then ask for the cost"
            )
        return cls.from_dict(read_json(where), where)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path | str = "serving.json") -> Serving:
        """Validate the recorded figures this module rests on."""
        try:
            out = cls(
                answered=int(data["answered"]),
                requests=int(data["requests"]),
                server_cpu_s=float(data["server_cpu_s"]),
                wall_s=float(data["wall_s"]),
                p99_ms=float(data["latency_ms"]["p99"]),
                throughput_rps=float(data["throughput_rps"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{where}: key {exc} is missing or not a number; expected the monitor stage's "
                "serving.json (answered, requests, server_cpu_s, wall_s, latency_ms.p99)"
            ) from exc
        if out.answered < 1 or not out.server_cpu_s > 0 or not out.wall_s > 0:
            raise ConfigError(
                f"{where}: answered={out.answered}, server_cpu_s={out.server_cpu_s}, "
                f"wall_s={out.wall_s}; expected at least one answered request and CPU and wall "
                "time > 0 (re-run the monitor stage)"
            )
        return out

    @property
    def cpu_s_per_prediction(self) -> float:
        """Server CPU seconds per answered prediction."""
        return self.server_cpu_s / self.answered


def per_million(serving: Serving, offer: Offer, *, cores: float = 1.0) -> dict[str, Any]:
    """Cost per million predictions at ``offer``: busy (CPU-seconds used) and provisioned.

    Provisioned: ``cores`` vCPUs held for the replay's wall time, idle or not; utilisation is
    the busy share of that.
    """
    vcpu = offer.prices["vcpu_hour"]
    busy = MILLION * serving.cpu_s_per_prediction / HOUR * vcpu
    held_s = cores * serving.wall_s
    provisioned = MILLION * held_s / serving.answered / HOUR * vcpu
    utilisation = serving.server_cpu_s / held_s
    return {
        "offer": offer.name,
        "vcpu_hour_usd": vcpu,
        "busy_usd_per_million": busy,
        "provisioned_usd_per_million": provisioned,
        "utilisation": utilisation,
        "idle_share": max(0.0, 1.0 - utilisation),
        "arithmetic": (
            f"busy: 1e6 x {serving.server_cpu_s:.3f} CPU-s / {serving.answered:,} predictions "
            f"/ 3600 x ${vcpu:g}/vCPU-h = ${busy:.4f}; provisioned: 1e6 x {cores:g} vCPU x "
            f"{serving.wall_s:.3f} s / {serving.answered:,} / 3600 x ${vcpu:g} = "
            f"${provisioned:.4f} (utilisation {serving.server_cpu_s:.3f} / "
            f"({cores:g} x {serving.wall_s:.3f}) = {utilisation:.0%})"
        ),
    }


@dataclass(frozen=True)
class Verdict:
    """One budget verdict, the arithmetic included in its text."""

    name: str
    passed: bool
    text: str


def latency_verdict(serving: Serving, budget_ms: float) -> Verdict:
    """PASS when the p99 measured through the real server is within ``budget_ms``."""
    ok = serving.p99_ms <= budget_ms
    sign = "<=" if ok else ">"
    return Verdict(
        "p99 latency",
        ok,
        f"{'PASS' if ok else 'FAIL'}: p99 {serving.p99_ms:g} ms {sign} budget {budget_ms:g} ms "
        f"(measured through opsnb serve over {serving.answered:,} answered requests)",
    )


def cost_verdict(cost: dict[str, Any], budget_usd: float) -> Verdict:
    """PASS when the provisioned cost per million predictions is within ``budget_usd``."""
    value = float(cost["provisioned_usd_per_million"])
    ok = value <= budget_usd
    sign = "<=" if ok else ">"
    return Verdict(
        "cost per million",
        ok,
        f"{'PASS' if ok else 'FAIL'}: ${value:.4f} per million predictions at {cost['offer']} "
        f"{sign} budget ${budget_usd:g} ({cost['arithmetic']})",
    )


@dataclass
class CostReport:
    """The cost section's figures and tables (what ``monitor/cost.json`` holds)."""

    table: PriceTable
    offer: Offer
    compare: list[Offer]
    serving: Serving
    stages: pd.DataFrame
    storage: dict[str, Any]
    offers: pd.DataFrame
    verdicts: list[Verdict]
    heatmap: pd.DataFrame
    sizing: dict[str, Any]
    schedule: pd.DataFrame
    gpu: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def run_usd(self) -> float:
        """Cost of the recorded stages at the chosen offer."""
        return float(self.stages["total_usd"].sum())

    @property
    def passed(self) -> bool:
        """Every budget verdict passed."""
        return all(v.passed for v in self.verdicts)

    def verdict_line(self) -> str:
        """One line: both verdicts."""
        return " | ".join(v.text.split(" (", 1)[0] for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures, with the price table's date and path for provenance."""
        return {
            "prices": {"path": str(self.table.path), "date": self.table.date},
            "offer": self.offer.name,
            "run_usd": self.run_usd,
            "stages": self.stages.to_dict("records"),
            "storage": self.storage,
            "cpu_s_per_1k_predictions": 1000 * self.serving.cpu_s_per_prediction,
            "per_million": self.offers.to_dict("records"),
            "verdicts": [
                {"name": v.name, "passed": v.passed, "text": v.text} for v in self.verdicts
            ],
            "sizing": self.sizing,
            "schedule_saving": self.sizing.get("schedule"),
            "gpu": self.gpu,
            "notes": self.notes,
        }


def analyse(
    run_dir: str | Path,
    table: PriceTable,
    offer: str,
    *,
    compare: tuple[str, ...] = (),
    cores: float = 1.0,
    headroom: float = 0.3,
    target_rps: float = 100.0,
    cores_per_replica: int = 2,
    gpu_rps: float = 1e8,
    gpu_source: str = "",
    problem: dict[str, Any] | None = None,
) -> CostReport:
    """The whole cost section for the run in ``run_dir`` (see the module docstring)."""
    folder = Path(run_dir)
    chosen = table.offer(offer)
    others = [table.offer(n) for n in compare if n != offer]
    serving = Serving.load(folder / "monitor" / "serving.json")
    problem = problem if problem is not None else read_json(folder / "problem.json")
    costs = [per_million(serving, o, cores=cores) for o in (chosen, *others)]
    verdicts = [
        latency_verdict(serving, float(problem["p99_latency_ms"])),
        cost_verdict(costs[0], float(problem["cost_per_million_usd"])),
    ]
    usage = sizing.read_usage(folder / "monitor" / "predictions.sqlite",
                              folder / "monitor" / "usage.parquet")  # fmt: skip
    heat = sizing.heatmap(usage, serving.cpu_s_per_prediction)
    per_core = serving.answered / serving.server_cpu_s
    plan = sizing.right_size(per_core, target_rps, headroom, cores_per_replica)
    schedule = sizing.schedule(heat, plan, chosen.prices["vcpu_hour"])
    plan["schedule"] = sizing.schedule_saving(schedule)
    gpu = sizing.gpu_break_even(serving.cpu_s_per_prediction, chosen, gpu_rps, gpu_source)
    notes = []
    if serving.p99_ms > float(problem["p99_latency_ms"]):
        notes.append(
            "the measured p99 is over budget: the capacity per core below was measured at a "
            "latency the budget does not allow, so the sizing is optimistic"
        )
    if math.isclose(heat["requests"].sum(), 0):
        notes.append("the prediction log holds no rows of this replay: the heatmap is empty")
    return CostReport(
        table, chosen, others, serving, run_cost(stage_usage(folder), chosen),
        storage_cost(folder, chosen), pd.DataFrame(costs), verdicts, heat, plan, schedule, gpu,
        notes,
    )  # fmt: skip


def with_budgets(verdict: dict[str, Any], report: CostReport) -> dict[str, Any]:
    """The monitor stage's verdict with the budget verdicts appended (it ends with them)."""
    return {
        "text": f"{verdict['text']}; budgets: {report.verdict_line()}",
        "passed": bool(verdict["passed"]) and report.passed,
    }
