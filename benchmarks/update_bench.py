"""Seed sweep of the update screen on scenarios with known ground truth.

For each seed the loans generator makes a data set, prepare splits it (train, valid, test,
trusted), a champion is trained, and the generator's next batch is screened under each
scenario (clean, label-flip, backdoor, drift). Per scenario it measures what the issue's goals
ask: label-flip recall and precision, whether the backdoor is found, whether a clean batch is
refused, and the trusted-holdout AUC of the model updated through the gate, with the clean
batch only, and with the whole batch admitted blindly. breast_cancer gets the same screen with
10 % of a held-out batch's labels flipped. One 10,000-row batch is timed on 2 threads.

    .venv/bin/python benchmarks/update_bench.py --seeds 20 --jsonl results.jsonl
    .venv/bin/python benchmarks/update_bench.py --quick        # what the test runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before XGBoost loads OpenMP

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

from opsnb import loans, poisoning, prepare, training
from opsnb.schema import target_vector
from opsnb.validation import infer_schema

FRACTIONS = {"train": 0.6, "valid": 0.15, "test": 0.15, "trusted": 0.1}
HYPER = {"max_depth": 4, "learning_rate": 0.1, "n_estimators": 150}
SCENARIOS = ("clean", "label-flip", "backdoor", "drift")


def _auc(model, trusted, schema) -> float:
    return float(
        roc_auc_score(target_vector(trusted, schema), training.predict(model, trusted, schema))
    )


def _rows_of(batch: pd.DataFrame, flagged: pd.DataFrame, check: str) -> np.ndarray:
    hit = np.zeros(len(batch), dtype=bool)
    hit[flagged.loc[flagged["check"] == check, "row"].to_numpy(dtype=np.int64)] = True
    return hit


def loans_seed(seed: int, rows: int, batch_rows: int, threads: int) -> list[dict]:
    raw = loans.loan_applications(rows, seed=seed)
    prep = prepare.prepare(
        raw, target="default", task="binary", timestamp="applied_at", fractions=FRACTIONS, seed=seed
    )
    schema, parts = prep.schema, prep.parts
    train, valid, trusted = parts["train"], parts["valid"], parts["trusted"]
    champion = poisoning.fit(train, valid, schema, HYPER, seed=seed, threads=threads)
    after = raw["applied_at"].max()
    options = poisoning.ScreenOptions(seed=seed, threads=threads)
    clean = loans.production_stream(batch_rows, seed=seed + 1000, after=after)
    clean_rows, _ = poisoning.contract_check(poisoning.labelled_batch(clean, schema), schema)
    auc_clean = _auc(
        poisoning.fit(
            pd.concat([train, clean_rows]), valid, schema, HYPER, seed=seed, threads=threads
        ),
        trusted,
        schema,
    )
    out = []
    for name in SCENARIOS:
        batch = loans.production_stream(
            batch_rows, seed=seed + 1000, after=after, scenario=loans.scenario(name)
        )
        t0 = time.perf_counter()
        screened = poisoning.screen(
            batch,
            schema=schema,
            train=train,
            valid=valid,
            trusted=trusted,
            current=champion,
            hyperparameters=HYPER,
            metric="auc",
            options=options,
        )
        wall = time.perf_counter() - t0
        record = {
            "data": "loans",
            "seed": seed,
            "scenario": name,
            "rows": len(batch),
            "screen_s": round(wall, 2),
            "refused": not screened.passed,
            "reasons": screened.refusals,
            **screened.counts(),
        }
        flips = batch["truth_flipped"].to_numpy()
        if flips.any():
            hit = _rows_of(batch, screened.flagged, "label issue")
            record["flip_recall"] = float((hit & flips).sum() / flips.sum())
            record["flip_precision"] = float((hit & flips).sum() / hit.sum()) if hit.any() else 0.0
        door = batch["truth_backdoor"].to_numpy()
        if door.any():
            hit = _rows_of(batch, screened.flagged, "backdoor")
            record["backdoor_recall"] = float((hit & door).sum() / door.sum())
            record["backdoor_precision"] = (
                float((hit & door).sum() / hit.sum()) if hit.any() else 0.0
            )
        if name in ("label-flip", "backdoor"):
            gate = (
                poisoning.fit(
                    pd.concat([train, screened.admitted]),
                    valid,
                    schema,
                    HYPER,
                    seed=seed,
                    threads=threads,
                )
                if screened.passed
                else champion
            )
            everything, _ = poisoning.contract_check(
                poisoning.labelled_batch(batch, schema), schema
            )
            blind = poisoning.fit(
                pd.concat([train, everything]), valid, schema, HYPER, seed=seed, threads=threads
            )
            record.update(
                auc_clean=auc_clean,
                auc_gate=_auc(gate, trusted, schema),
                auc_blind=_auc(blind, trusted, schema),
                auc_champion=_auc(champion, trusted, schema),
            )
        out.append(record)
    return out


def cancer_seed(seed: int, threads: int) -> dict:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "benign"})
    rng = np.random.default_rng(seed)
    part = rng.choice(["train", "valid", "trusted", "batch"], len(frame), p=[0.5, 0.15, 0.15, 0.2])
    schema = infer_schema(
        frame[part == "train"], target="benign", task="binary", range_tolerance=0.5
    )
    train, valid, trusted = (frame[part == p] for p in ("train", "valid", "trusted"))
    batch = frame[part == "batch"].reset_index(drop=True)
    flips = rng.uniform(size=len(batch)) < 0.1
    batch.loc[flips, "benign"] = 1 - batch.loc[flips, "benign"]
    hyper = {"max_depth": 3, "learning_rate": 0.1, "n_estimators": 80}
    champion = poisoning.fit(train, valid, schema, hyper, seed=seed, threads=threads)
    screened = poisoning.screen(
        batch,
        schema=schema,
        train=train,
        valid=valid,
        trusted=trusted,
        current=champion,
        hyperparameters=hyper,
        metric="auc",
        options=poisoning.ScreenOptions(seed=seed, threads=threads),
    )
    hit = _rows_of(batch, screened.flagged, "label issue")
    return {
        "data": "breast_cancer",
        "seed": seed,
        "scenario": "label-flip",
        "rows": len(batch),
        "flips": int(flips.sum()),
        "refused": not screened.passed,
        **screened.counts(),
        "flip_recall": float((hit & flips).sum() / max(flips.sum(), 1)),
        "flip_precision": float((hit & flips).sum() / hit.sum()) if hit.any() else 0.0,
    }


def timing(rows: int, batch_rows: int, threads: int) -> dict:
    raw = loans.loan_applications(rows, seed=0)
    prep = prepare.prepare(
        raw, target="default", task="binary", timestamp="applied_at", fractions=FRACTIONS, seed=0
    )
    parts = prep.parts
    champion = poisoning.fit(
        parts["train"], parts["valid"], prep.schema, HYPER, seed=0, threads=threads
    )
    batch = loans.production_stream(
        batch_rows, seed=99, after=raw["applied_at"].max(), scenario=loans.scenario("label-flip")
    )
    t0 = time.perf_counter()
    poisoning.screen(
        batch,
        schema=prep.schema,
        train=parts["train"],
        valid=parts["valid"],
        trusted=parts["trusted"],
        current=champion,
        hyperparameters=HYPER,
        metric="auc",
        options=poisoning.ScreenOptions(threads=threads),
    )
    return {
        "data": "timing",
        "batch_rows": batch_rows,
        "train_rows": len(parts["train"]),
        "threads": threads,
        "screen_s": round(time.perf_counter() - t0, 2),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def summarise(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    rows = []
    loans_ = frame[frame["data"] == "loans"] if "data" in frame else frame.iloc[:0]
    for name, part in loans_.groupby("scenario"):
        row = {
            "data": "loans",
            "scenario": name,
            "seeds": len(part),
            "refused_share": part["refused"].mean(),
        }
        for col in ("flip_recall", "flip_precision", "backdoor_recall", "backdoor_precision"):
            if col in part and part[col].notna().any():
                row[col] = part[col].mean()
        if "auc_gate" in part and part["auc_gate"].notna().any():
            row["gate_minus_clean"] = (part["auc_gate"] - part["auc_clean"]).mean()
            row["worst_gate_minus_clean"] = (part["auc_gate"] - part["auc_clean"]).min()
            row["blind_minus_clean"] = (part["auc_blind"] - part["auc_clean"]).mean()
        if "backdoor_recall" in part and part["backdoor_recall"].notna().any():
            row["backdoor_found_share"] = (part["backdoor_recall"] >= 0.9).mean()
        rows.append(row)
    cancer = frame[frame["data"] == "breast_cancer"] if "data" in frame else frame.iloc[:0]
    if len(cancer):
        rows.append(
            {
                "data": "breast_cancer",
                "scenario": "label-flip",
                "seeds": len(cancer),
                "refused_share": cancer["refused"].mean(),
                "flip_recall": cancer["flip_recall"].mean(),
                "flip_precision": cancer["flip_precision"].mean(),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch-rows", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-rows", type=int, default=10_000, help="batch rows of the timing")
    parser.add_argument("--skip", nargs="*", default=[], choices=["loans", "cancer", "timing"])
    parser.add_argument("--quick", action="store_true", help="2 seeds of small data (the test)")
    parser.add_argument("--jsonl", type=Path, help="append each record to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rows, args.batch_rows, args.time_rows = 1, 3000, 800, 1000
    records: list[dict] = []

    def keep(record: dict) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)
        if args.jsonl:
            with args.jsonl.open("a") as sink:
                sink.write(json.dumps(record) + "\n")

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if "loans" not in args.skip:
        for seed in seeds:
            for record in loans_seed(seed, args.rows, args.batch_rows, args.threads):
                keep(record)
    if "cancer" not in args.skip:
        for seed in seeds:
            keep(cancer_seed(seed, args.threads))
    if "timing" not in args.skip:
        keep(timing(args.rows, args.time_rows, 2))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarise(records).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
