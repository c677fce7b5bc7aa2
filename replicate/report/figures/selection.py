"""What a figure reads from the results: one experiment's rows, the loss-spike episodes of its
runs, its layers from shallow to deep, and the window around the first spike."""

from __future__ import annotations

import re

import pandas as pd

from ... import spikes


def _of(df: pd.DataFrame, experiment: str | None) -> pd.DataFrame:
    if experiment is None or df.empty or "experiment" not in df.columns:
        return df
    return df[df["experiment"] == experiment]


def layer_order(names) -> list[str]:
    """Layers shallow to deep: embedding, then by the number in the name (layer0, block1…), head last."""
    def key(n: str):
        digits = re.findall(r"\d+", n)
        rank = 0 if "emb" in n else 2 if n == "head" else 1
        return rank, int(digits[-1]) if digits else -1, n
    return sorted(set(names), key=key)


def _layers(metrics: pd.DataFrame, metric: str) -> list[str]:
    names = metrics.loc[metrics["metric"].str.startswith(metric + "/"), "metric"].unique()
    return layer_order(n.split("/", 1)[1] for n in names)


def episodes(metrics: pd.DataFrame, definition: str = spikes.PRIMARY) -> pd.DataFrame:
    """Spike episodes of every run in ``metrics`` under one of CLAIMS.md's definitions (R3, the
    primary, unless told: ``spikes.episodes_of(..., definition=)`` on the loss). A run whose loss
    goes below 0 (a linear model's θ·g) has none: a ratio to its median means nothing there."""
    loss = metrics[metrics["metric"] == "loss"]
    negative = loss.loc[loss["value"] < 0, "run_id"].unique()
    return spikes.episodes_of(loss[~loss["run_id"].isin(negative)], definition=definition)


def _first_spike_window(eps: pd.DataFrame, runs: pd.DataFrame, before: int, after: int):
    """(run_id, seed, lo, hi, episodes of that run in the window) around the first spike of the
    lowest seed that has one; None when no run spiked."""
    if eps.empty:
        return None
    e = eps.merge(runs[["run_id", "seed"]], on="run_id").sort_values(["seed", "start"])
    first = e.iloc[0]
    lo, hi = int(first["rise_start"]) - before, int(first["peak"]) + after
    mine = e[(e["run_id"] == first["run_id"]) & (e["peak"] >= lo) & (e["start"] <= hi)]
    return first["run_id"], int(first["seed"]), lo, hi, mine

