"""Backdoor and targeted-poison scan: groups far purer in a batch than in trusted data.

A backdoor teaches the model "when the trigger is present, answer this label": a batch carrying
one has a feature value, a narrow range or a combination of categories whose rows share one
label far more often than such rows do in the trusted data. :func:`backdoor_scan` tests every
such group (Fisher's exact test against the trusted rows of the group, or, where the trusted
data has too few, a binomial test against what the current model predicts for the batch rows),
controls the false discovery rate over all groups (Benjamini-Hochberg, scipy), and flags the
rows of significant groups; a group whose rows a stronger group already explained is tested
again without them, so nested groups are not counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy import stats

from opsnb.schema import Schema, target_vector


def _bins(column: pd.Series, inner: np.ndarray) -> pd.Series:
    """Each value's quantile bin as text (``[lo, hi)``); missing values get none."""
    values = pd.to_numeric(column, errors="coerce")
    index = np.searchsorted(inner, values.to_numpy(), side="right")
    lo = np.concatenate([[-np.inf], inner])
    hi = np.concatenate([inner, [np.inf]])
    names = np.array([f"[{lo[i]:.6g}, {hi[i]:.6g})" for i in range(len(lo))], dtype=object)
    out = pd.Series(names[index], index=column.index, dtype="object")
    out[values.isna().to_numpy()] = None
    return out


def groupings(
    frame: pd.DataFrame, schema: Schema, trusted: pd.DataFrame, bins: int
) -> Iterator[tuple[str, str, pd.Series, pd.Series]]:
    """Yield (kind, feature, batch key, trusted key) per grouping the scan tests.

    Kinds: ``value`` (a numeric feature's exact value), ``range`` (its bin among ``bins``
    quantiles of the trusted data), ``category`` and ``categories`` (every pair).
    """
    cats = [f.name for f in schema.features if f.kind == "categorical"]
    for f in schema.features:
        name = f.name
        if f.kind == "numeric":
            yield "value", name, frame[name], trusted[name]
            ref = pd.to_numeric(trusted[name], errors="coerce").dropna()
            if ref.empty:
                continue
            edges: np.ndarray = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
            if len(edges) > 2:
                inner = np.asarray(edges[1:-1])
                yield "range", name, _bins(frame[name], inner), _bins(trusted[name], inner)
        else:
            yield "category", name, frame[name].astype("string"), trusted[name].astype("string")
    for a_i, a in enumerate(cats):
        for b in cats[a_i + 1 :]:
            key = frame[a].astype("string") + " & " + frame[b].astype("string")
            tkey = trusted[a].astype("string") + " & " + trusted[b].astype("string")
            yield "categories", f"{a} & {b}", key, tkey


def _purity_test(
    n: int, hits: int, ref_n: int, ref_hits: int, *, expected: float, min_trusted: int
) -> tuple[float, float, str]:
    """P-value that ``hits`` of ``n`` exceed the reference, the reference purity and its kind."""
    if ref_n >= min_trusted:
        ref = ref_hits / ref_n
        table = [[hits, n - hits], [ref_hits, ref_n - ref_hits]]
        return float(stats.fisher_exact(table, alternative="greater").pvalue), ref, "trusted"
    ref = float(np.clip(expected, 1e-3, 1 - 1e-3))
    p = float(stats.binomtest(hits, n, ref, alternative="greater").pvalue)
    return p, ref, "model"


def backdoor_scan(
    batch: pd.DataFrame,
    *,
    labels: np.ndarray,
    expected: np.ndarray,
    trusted: pd.DataFrame,
    schema: Schema,
    alpha: float = 0.01,
    min_rows: int = 10,
    min_purity: float = 0.9,
    min_gap: float = 0.15,
    bins: int = 50,
    min_trusted_rows: int = 30,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Groups whose label purity in the batch is far above the reference; flags their rows.

    ``labels`` are the batch's 0/1 labels and ``expected`` the current model's probability of
    label 1 for each batch row. A group is tested when it has ``min_rows`` batch rows (and at
    least 0.5 % of the batch); it is a backdoor when significant (Benjamini-Hochberg at
    ``alpha``), its purity reaches ``min_purity`` and exceeds the reference by ``min_gap``.
    Returns the reason detail per batch row (None: not flagged) and the table of groups.
    """
    t_labels = target_vector(trusted, schema)
    min_rows = max(min_rows, int(0.005 * len(batch)))
    groups = []
    for kind, feature, batch_key, tkey in groupings(batch, schema, trusted, bins):
        key = batch_key.reset_index(drop=True)
        counts = key.value_counts(dropna=True)
        values = counts.index[counts.to_numpy() >= min_rows]
        if kind == "value":
            # Exact values repeat naturally (scores, counts); test only those over-represented
            # in the batch against the trusted data: a choice blind to labels, so BH holds.
            ref_share = tkey.value_counts(normalize=True).reindex(values).fillna(0).to_numpy()
            values = values[counts[values].to_numpy() / len(key) >= 2 * ref_share]
        for value in values:
            member = (key == value).to_numpy(dtype=bool, na_value=False)
            n = int(member.sum())
            ones = int(labels[member].sum())
            major = 1 if ones * 2 >= n else 0
            hits = ones if major else n - ones
            tmember = (tkey == value).to_numpy(dtype=bool, na_value=False)
            t_ones = int(t_labels[tmember].sum())
            ref_n = int(tmember.sum())
            ref_hits = t_ones if major else ref_n - t_ones
            mean_p = float(expected[member].mean())
            p, ref, source = _purity_test(
                n,
                hits,
                ref_n,
                ref_hits,
                expected=mean_p if major else 1 - mean_p,
                min_trusted=min_trusted_rows,
            )
            groups.append(
                {
                    "kind": kind,
                    "feature": feature,
                    "value": str(value),
                    "rows": n,
                    "label": major,
                    "purity": hits / n,
                    "reference": ref,
                    "reference_from": source,
                    "trusted_rows": ref_n,
                    "p_value": p,
                    "_member": member,
                }
            )
    flags = np.zeros(len(batch), dtype=bool)
    details = np.full(len(batch), None, dtype=object)
    if not groups:
        return details, pd.DataFrame(columns=["kind", "feature", "value", "rows", "p_value"])
    table = pd.DataFrame(groups)
    table["q_value"] = stats.false_discovery_control(table["p_value"].to_numpy())
    significant = table["q_value"] <= alpha
    cutoff = float(table.loc[significant, "p_value"].max()) if significant.any() else -1.0
    table = table.sort_values("p_value", kind="stable", ignore_index=True)
    table["flagged"] = 0
    for i, g in table.iterrows():
        if g["p_value"] > cutoff:
            break
        rest = g["_member"] & ~flags
        n = int(rest.sum())
        if n < min_rows:
            continue
        hits = int((labels[rest] == g["label"]).sum())
        mean_p = float(expected[rest].mean())
        ref_hits = round(g["reference"] * g["trusted_rows"])
        p, ref, _ = _purity_test(
            n,
            hits,
            g["trusted_rows"],
            ref_hits,
            expected=mean_p if g["label"] else 1 - mean_p,
            min_trusted=min_trusted_rows,
        )
        purity = hits / n
        if p <= cutoff and purity >= min_purity and purity - ref >= min_gap:
            hit = rest & (labels == g["label"])
            flags |= hit
            table.loc[i, "flagged"] = int(hit.sum())
            details[hit] = (
                f"{g['feature']} {'in' if g['kind'] == 'range' else '='} {g['value']}: {n} rows, "
                f"{purity:.0%} labelled {g['label']} against {ref:.0%} "
                f"({g['reference_from']}), p={p:.2g}"
            )
    table = table.drop(columns="_member")
    table[["purity", "reference"]] = table[["purity", "reference"]].round(4)
    return details, table
