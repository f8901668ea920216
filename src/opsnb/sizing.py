"""Usage heatmap and right-sizing from measured capacity: cores, replicas, a weekly schedule, GPU.

- :func:`heatmap`: hour-of-day x weekday of request volume, CPU use and p99 latency from the
  prediction log, placed at the *event time* each request carried (the replay compresses a week
  of production into a minute; the server's own clock would put it all in one hour).
- :func:`right_size`: from the requests one core answers per CPU-second (measured) and a headroom
  share kept free for bursts, the cores and replicas a target request rate needs.
- :func:`schedule`: the heatmap's demand profile, scaled so its busiest hour is the target rate,
  turned into replicas hour by hour; :func:`schedule_saving` compares it with holding the peak
  all week.
- :func:`gpu_break_even`: the request rate from which a GPU offer costs less than the CPU time
  the same predictions take, as arithmetic.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opsnb.errors import ConfigError
from opsnb.prices import Offer

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOURS_PER_WEEK = 168


def usage_table(
    request_ids: list[str | None], stream: pd.DataFrame, time_column: str | None
) -> pd.DataFrame:
    """request_id -> event time for each answered request of a replay (``monitor/usage.parquet``).

    ``request_ids[i]`` is the id the server gave row ``i`` of ``stream`` (None: refused). Without
    a time column the event time is left empty and the log's own clock is used.
    """
    times = (
        pd.to_datetime(stream[time_column].iloc[: len(request_ids)]).to_numpy()
        if time_column and time_column in stream
        else np.full(len(request_ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    )
    frame = pd.DataFrame({"request_id": request_ids, "event_time": times})
    return frame.dropna(subset=["request_id"]).reset_index(drop=True)


def read_usage(log_path: str | Path, usage_path: str | Path) -> pd.DataFrame:
    """The log's requests with their latency and event time (the log's clock where none)."""
    log = Path(log_path)
    if not log.is_file():
        raise ConfigError(
            f"{log} does not exist: there is no monitor data yet; run the monitor stage first"
        )
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as conn:
        rows = pd.read_sql_query("SELECT request_id, ts, latency_ms FROM predictions", conn)
    rows["event_time"] = pd.to_datetime(rows["ts"], unit="s")
    where = Path(usage_path)
    if where.is_file():
        events = pd.read_parquet(where).dropna(subset=["event_time"])
        joined = rows.drop(columns="event_time").merge(events, on="request_id", how="inner")
        if len(joined):
            rows = joined
    return rows[["request_id", "event_time", "latency_ms"]]


def heatmap(usage: pd.DataFrame, cpu_s_per_request: float) -> pd.DataFrame:
    """168 rows (weekday x hour): requests, CPU-seconds and p99 latency (ms) per cell.

    CPU-seconds per cell are the cell's requests x the measured server CPU-seconds per request
    (the server's CPU counter is read over the whole replay, not per request). ``attrs['weeks']``
    holds how many weeks of event time the log covers.
    """
    times = pd.to_datetime(usage["event_time"])
    cells = pd.DataFrame(
        {"weekday": times.dt.day_of_week, "hour": times.dt.hour, "latency_ms": usage["latency_ms"]}
    )
    grouped = cells.groupby(["weekday", "hour"])["latency_ms"]
    stats = pd.DataFrame({"requests": grouped.size(), "p99_ms": grouped.quantile(0.99)})
    grid = pd.MultiIndex.from_product([range(7), range(24)], names=["weekday", "hour"])
    out = stats.reindex(grid).reset_index()
    out["requests"] = out["requests"].fillna(0).astype(int)
    out["cpu_s"] = out["requests"] * cpu_s_per_request
    span = (times.max() - times.min()).total_seconds() if len(times) else 0.0
    out.attrs["weeks"] = max(span / (7 * 86_400), 1 / 7) if len(times) else 0.0
    return out[["weekday", "hour", "requests", "cpu_s", "p99_ms"]]


def right_size(
    per_core_rps: float, target_rps: float, headroom: float, cores_per_replica: int
) -> dict[str, Any]:
    """Cores and replicas for ``target_rps`` keeping ``headroom`` of each core free."""
    if not 0.0 <= headroom < 1.0:
        raise ConfigError(
            f"headroom must be within [0, 1), got {headroom}; e.g. 0.3 keeps 30 % free"
        )
    if not target_rps > 0 or not per_core_rps > 0:
        raise ConfigError(
            f"target_rps ({target_rps}) and the measured capacity per core ({per_core_rps}) "
            "must be > 0"
        )
    if cores_per_replica < 1:
        raise ConfigError(f"cores_per_replica must be >= 1, got {cores_per_replica}")
    usable = per_core_rps * (1 - headroom)
    cores = math.ceil(target_rps / usable)
    replicas = math.ceil(cores / cores_per_replica)
    return {
        "per_core_rps": per_core_rps,
        "headroom": headroom,
        "usable_per_core_rps": usable,
        "target_rps": target_rps,
        "cores": cores,
        "cores_per_replica": cores_per_replica,
        "replicas": replicas,
        "arithmetic": (
            f"one core answers {per_core_rps:,.0f} req/s (answered / server CPU-s); with "
            f"{headroom:.0%} headroom {usable:,.0f} req/s; {target_rps:,.0f} req/s needs "
            f"ceil({target_rps:,.0f} / {usable:,.0f}) = {cores} core(s) = "
            f"ceil({cores} / {cores_per_replica}) = {replicas} replica(s) of "
            f"{cores_per_replica} vCPU"
        ),
    }


def schedule(heat: pd.DataFrame, plan: dict[str, Any], vcpu_hour: float) -> pd.DataFrame:
    """Replicas hour by hour for the heatmap's demand scaled so its busiest hour is the target."""
    peak = heat["requests"].max()
    share = heat["requests"] / peak if peak > 0 else pd.Series(1.0, index=heat.index)
    per_replica = plan["usable_per_core_rps"] * plan["cores_per_replica"]
    out = heat[["weekday", "hour"]].copy()
    out["rps"] = share * plan["target_rps"]
    out["replicas"] = np.maximum(1, np.ceil(out["rps"] / per_replica)).astype(int)
    out["usd"] = out["replicas"] * plan["cores_per_replica"] * vcpu_hour
    out.attrs["peak_usd_per_hour"] = plan["replicas"] * plan["cores_per_replica"] * vcpu_hour
    return out


def schedule_saving(plan: pd.DataFrame) -> dict[str, Any]:
    """The weekly cost of the schedule against holding the peak's replicas all 168 hours."""
    scheduled = float(plan["usd"].sum())
    peak = float(plan.attrs["peak_usd_per_hour"]) * HOURS_PER_WEEK
    saving = 1 - scheduled / peak if peak > 0 else 0.0
    return {
        "scheduled_usd_per_week": scheduled,
        "peak_usd_per_week": peak,
        "saving_share": saving,
        "replica_hours": int(plan["replicas"].sum()),
        "arithmetic": (
            f"{int(plan['replicas'].sum())} replica-hours scheduled = ${scheduled:.2f}/week vs "
            f"{int(plan['replicas'].max())} replicas x 168 h = ${peak:.2f}/week: "
            f"saving {saving:.0%}"
        ),
    }


def gpu_break_even(
    cpu_s_per_prediction: float, offer: Offer, gpu_rps: float, gpu_source: str
) -> dict[str, Any]:
    """The sustained request rate from which one GPU-hour costs less than the CPU it replaces.

    Optimistic for the GPU: it assumes the GPU removes all of the server's measured CPU time
    (HTTP parsing and logging stay on a CPU in practice).
    """
    gpu_hour = offer.price("gpu_hour")
    vcpu = offer.prices["vcpu_hour"]
    if gpu_hour is None:
        return {"offer": offer.name, "offered": False,
                "arithmetic": f"{offer.name} offers no GPU: no break-even to compute"}  # fmt: skip
    usd_per_prediction = cpu_s_per_prediction / 3600 * vcpu
    rate = gpu_hour / 3600 / usd_per_prediction
    pays = rate <= gpu_rps
    return {
        "offer": offer.name,
        "offered": True,
        "gpu_hour_usd": gpu_hour,
        "break_even_rps": rate,
        "gpu_rps": gpu_rps,
        "gpu_source": gpu_source,
        "pays_below_capacity": pays,
        "arithmetic": (
            f"CPU per prediction {cpu_s_per_prediction * 1000:.4f} ms x ${vcpu:g}/vCPU-h = "
            f"${usd_per_prediction:.3e}; a GPU at ${gpu_hour:g}/h pays from "
            f"${gpu_hour:g} / 3600 / ${usd_per_prediction:.3e} = {rate:,.0f} req/s sustained, "
            f"{'within' if pays else 'beyond'} the stated GPU throughput {gpu_rps:,.0f} req/s"
            + (f" ({gpu_source})" if gpu_source else "")
        ),
    }
