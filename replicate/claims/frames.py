"""Shaping results for the judges: the tidy metrics frame of ``results.load()`` into the tables a
judge reads (one row per (run, step), per run, per layer), the layer names in depth order, each
run's loss episodes under a spike definition (``spiking_runs``), and which steps were injected
batches of a run's data (``injected``, ``not_injected``: those spikes are the data's, not counted)."""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import pandas as pd

from .. import spikes

LATE = 1 / 3  # ``late``'s default: the probe steps in the last third of a run (>= 2/3 of its last probe step)


def wide(metrics: pd.DataFrame, runs: pd.DataFrame, keys: Iterable[str] = ()) -> pd.DataFrame:
    """One row per (run, step), one column per metric, plus the run's seed, status and ``keys``."""
    w = metrics.pivot_table(index=["run_id", "step"], columns="metric", values="value").reset_index()
    cols = ["run_id", "seed", "status", *[k for k in keys if k in runs.columns]]
    return w.merge(runs[cols], on="run_id")


def late(w: pd.DataFrame, column: str, fraction: float = LATE) -> pd.DataFrame:
    """Per run, the mean of every column over the probe steps (rows where ``column`` is measured)
    in the last ``fraction`` of the run: one row per run, with its seed and config keys."""
    have = w[w[column].notna()] if column in w else w.iloc[0:0]
    last = have.groupby("run_id")["step"].transform("max")
    tail = have[have["step"] >= (1 - fraction) * last]
    keys = [c for c in tail.columns if c == "seed" or "." in c]  # config keys are dotted, metrics not
    numeric = [c for c in tail.columns if c not in keys and c not in ("run_id", "status")
               and pd.api.types.is_numeric_dtype(tail[c])]
    means = tail[["run_id", *numeric]].groupby("run_id").mean()
    return means.join(tail[["run_id", *keys]].groupby("run_id").first()).reset_index()


def last_probe(w: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per run, the row of the last step at which ``column`` was measured."""
    have = w[w[column].notna()] if column in w else w.iloc[0:0]
    return have.sort_values("step").groupby("run_id").tail(1)


def spiking_runs(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY):
    """(seed, one run's wide frame indexed by step, its loss episodes under ``definition``
    (``spikes.episodes``; R3 by default)) for every run."""
    if metrics.empty:
        return
    w = wide(metrics, runs)
    for _, g in w.groupby("run_id", sort=True):
        g = g.sort_values("step").set_index("step")
        loss = g["loss"].dropna()
        yield int(g["seed"].iloc[0]), g, spikes.episodes(loss.to_numpy(), loss.index.to_numpy(), definition)


def onset_crossing(x: pd.Series, lo: int, hi: int, level: float) -> int | None:
    """The last step in (lo, hi] where x goes from <= level (at the logged step before) to > level."""
    seg = x.loc[lo:hi]
    steps, above = seg.index.to_numpy(), seg.to_numpy() > level
    ups = [int(steps[i]) for i in range(1, len(seg)) if above[i] and not above[i - 1] and steps[i] > lo]
    return ups[-1] if ups else None


# ------------------------------------------------------------------------------------- layers
def layers_of(columns: Iterable[str], metric: str) -> list[str]:
    """The layers that have ``metric/<layer>`` columns, shallow first: embedding, block0…, head
    (other names in natural order between them)."""
    names = [c.split("/", 1)[1] for c in columns if isinstance(c, str) and c.startswith(metric + "/")]

    def key(name: str):
        digits = re.findall(r"\d+", name)
        rank = 0 if name == "embedding" else 2 if name == "head" else 1
        return rank, re.sub(r"\d+", "", name), int(digits[-1]) if digits else -1

    return sorted(set(names), key=key)


def layer_order(names: list[str]) -> list[str]:
    """Layers shallow to deep: an 'embedding' first, then by the number in the name (layer0, block1).
    (B2's and W1's order, which also covers the MLP's layer names.)"""
    def key(n: str):
        digits = re.findall(r"\d+", n)
        return (0 if "emb" in n else 1, int(digits[0]) if digits else 10**6, n)
    return sorted(names, key=key)


def deepest_block(layers: list[str]) -> str | None:
    blocks = [x for x in layers if x.startswith("block")]
    return blocks[-1] if blocks else None


def injected(row: pd.Series, steps: np.ndarray) -> np.ndarray:
    """Which of ``steps`` are injected batches of the run's Markov stream (none for other data)."""
    every = row.get("data.inject_every")
    every = int(every) if every is not None and pd.notna(every) else 0
    at = row.get("data.inject_at")
    at = set() if at is None or (np.isscalar(at) and pd.isna(at)) else {int(x) for x in at}
    return np.array([(every > 0 and (s + 1) % every == 0) or int(s) in at for s in steps], dtype=bool)


def not_injected(ep: pd.DataFrame, row: pd.Series) -> int:
    """How many of a run's episodes ``ep`` do not start on an injected batch of its data (``row``:
    the run's config, as ``results.runs`` gives it; ``injected``)."""
    if not len(ep):
        return 0
    return int((~injected(row, ep["start"].to_numpy())).sum())
