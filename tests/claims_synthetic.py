"""Synthetic results for the claim tests: tidy metrics and run tables as ``results.load`` and
``results.runs`` give them, and loss series with and without spikes."""

from __future__ import annotations

import numpy as np
import pandas as pd

N = 1200
SPIKES = (300, 500, 700, 900, 1100)  # rise starts = 3x crossings: the loss jumps in one step


def loss_frame(series: dict[str, np.ndarray], seeds: dict[str, int]) -> pd.DataFrame:
    """A tidy metrics frame (as results.load) with one loss series per run id."""
    return pd.concat([pd.DataFrame({"run_id": rid, "experiment": "x", "seed": seeds[rid], "status": "done",
                                    "step": np.arange(len(loss)), "metric": "loss", "value": loss})
                      for rid, loss in series.items()], ignore_index=True)


def smooth(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.exp(-np.arange(n) / 500) * np.exp(0.02 * rng.standard_normal(n)) + 1e-3


def spiky(n=2000, every=100, height=50.0, seed=0):
    loss = smooth(n, seed)
    for t in range(150, n, every):
        loss[t:t + 3] *= height
    return loss


def frames(runs: list[tuple[str, int, dict, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics, runs) as results.load / results.runs give them, from (run_id, seed, config,
    {step: {metric: value}})."""
    rows, meta = [], []
    for rid, seed, config, steps in runs:
        for step, values in steps.items():
            for metric, value in values.items():
                rows.append({"run_id": rid, "experiment": "x", "seed": seed, "status": "done", "step": step,
                             "metric": metric, "value": float(value)})
        meta.append({"run_id": rid, "seed": seed, "status": "done", **config})
    return pd.DataFrame(rows), pd.DataFrame(meta)


def base_loss(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1e-3 * np.exp(0.02 * rng.standard_normal(n))


def spiky_loss(seed: int, starts=SPIKES) -> np.ndarray:
    loss = base_loss(seed)
    for t in starts:
        loss[t:t + 3] *= 30.0
    return loss


def runs_frame(series, seeds, **cols) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": rid, "seed": seeds[rid], "status": "done", **{k: v[rid] for k, v in cols.items()}}
                         for rid in series])


# The premise of M7, W1, B2 and M11 (CLAIMS.md): >= 10 spikes per seed under the definition used, none
# on an injected batch. SPIKES_10: 11 isolated rise starts in N steps (the loss jumps in one step, as
# at SPIKES); ``premise_starts`` leaves a seed with 9 of them, ``inject_at`` marks some as injected.
SPIKES_10 = tuple(range(150, N, 100))


def premise_starts(seed: int, few: int | None = None) -> tuple[int, ...]:
    """SPIKES_10, or its first 9 (one short of the premise) for the seed ``few``."""
    return SPIKES_10[:9] if seed == few else SPIKES_10


def inject_at(runs: pd.DataFrame, steps_by_seed: dict[int, list[int]]) -> pd.DataFrame:
    """``runs`` with ``data.inject_at`` (``steps_by_seed``' steps for those seeds, none for the others)
    and ``data.inject_every`` 0, as results.runs gives a Markov run's config."""
    out = runs.copy()
    out["data.inject_at"] = [list(steps_by_seed.get(int(s), [])) for s in out["seed"]]
    out["data.inject_every"] = 0
    return out


# Counted spike episodes (M9, Q1, Q3 premises: >= 10 episodes per seed under the definition used):
# ``k`` isolated one-step-rise spikes (30x for 3 steps) every ``gap`` steps from ``first`` on a flat
# noisy loss of ``n`` steps; each is one episode under R3, R10 and Z6 (30x < 100: none under R100).
def counted_spikes(seed: int, k: int, n: int = 3000, gap: int = 100, first: int = 150,
                   height: float = 30.0) -> np.ndarray:
    assert first + gap * (k - 1) + 3 < n, "too many spikes for the series"
    loss = base_loss(seed, n)
    for i in range(k):
        t = first + gap * i
        loss[t:t + 3] *= height
    return loss


# Per-step series of several metrics (the Slingshot's probes are logged every step): one run's tidy
# rows built column-wise, fast for runs of thousands of steps.
def tidy_run(run_id: str, seed: int, series: dict[str, np.ndarray], experiment: str = "x") -> pd.DataFrame:
    """A tidy metrics frame (as results.load) of one run: every metric of ``series`` at steps 0..n-1."""
    parts = []
    for metric, values in series.items():
        values = np.asarray(values, dtype=float)
        parts.append(pd.DataFrame({"run_id": run_id, "experiment": experiment, "seed": seed, "status": "done",
                                   "step": np.arange(len(values)), "metric": metric, "value": values}))
    return pd.concat(parts, ignore_index=True)
