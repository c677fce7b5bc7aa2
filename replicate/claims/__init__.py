"""The claims of ../shared/CLAIMS.md as verdict functions: results in, an honest verdict out.

A claim is registered with ``@claim(id, experiment=..., source=..., metric=..., threshold=...)`` on
a function ``judge(metrics, runs) -> Judgement`` that reads only ``results.load()`` (tidy metrics)
and ``results.runs()`` (one row per run, flattened config) of its experiment. ``evaluate(root)``
judges every claim; a claim whose experiment has no finished runs is ``not run``.

Verdicts: ``replicated``, ``not replicated``, ``inconclusive`` (too few seeds, or the interval
straddles the threshold where the claim asks for a clear effect), ``answered`` (the open questions
Q1–Q4: a measured answer, no pass/fail), ``not run (...)``. No verdict is written anywhere by hand:
every one comes from a judge function applied to results, and tests feed each judge synthetic
results on both sides of its threshold.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import results

MIN_SEEDS = 3
VERDICTS = ("replicated", "not replicated", "inconclusive", "answered")


@dataclass
class Judgement:
    """What a judge returns: the measured value with its interval over seeds, and the verdict."""

    verdict: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    seeds: list[int] = field(default_factory=list)
    detail: str = ""


@dataclass
class Claim:
    id: str
    experiment: str | None
    source: str
    statement: str
    metric: str
    threshold: str
    tier: str
    judge: Callable[[pd.DataFrame, pd.DataFrame], Judgement] | None


@dataclass
class Verdict:
    claim: str
    source: str
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: str
    verdict: str
    seeds: list[int]
    runtime_s: float
    experiment: str | None = None
    statement: str = ""
    detail: str = ""
    runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("value", "ci_low", "ci_high"):
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = None
        return d


CLAIMS: dict[str, Claim] = {}


def claim(id: str, *, experiment: str | None, source: str, statement: str, metric: str, threshold: str,
          tier: str = "cpu"):
    """Register ``judge`` as the verdict function of claim ``id``."""

    def register(judge):
        CLAIMS[id] = Claim(id, experiment, source, statement, metric, threshold, tier, judge)
        return judge

    return register


def pending(id: str, *, source: str, statement: str, metric: str, threshold: str, tier: str = "cpu") -> None:
    """A claim of CLAIMS.md whose experiment is not written yet: it shows as ``not run``. A claim
    registered with ``@claim`` in any module (imported before or after) takes its place."""
    if id not in CLAIMS:
        CLAIMS[id] = Claim(id, None, source, statement, metric, threshold, tier, None)


# ------------------------------------------------------------------------------------- statistics
def t_interval(values: Sequence[float], conf: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over seeds (NaN for fewer than 2 values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + conf / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(values: Sequence[float], stat: Callable = np.mean, conf: float = 0.95,
                       n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over seeds (NaN for fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = np.array([stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n)])
    return float(np.quantile(boot, (1 - conf) / 2)), float(np.quantile(boot, 1 - (1 - conf) / 2))


def fraction_of_seeds(hits: dict[int, bool], need: float, detail: str = "") -> Judgement:
    """For claims of the form "holds in ≥ ``need`` of the seeds": value = fraction of seeds where
    it holds, bootstrap interval over seeds; fewer than MIN_SEEDS seeds is inconclusive."""
    seeds = sorted(hits)
    frac = [float(hits[s]) for s in seeds]
    value = float(np.mean(frac)) if frac else float("nan")
    lo, hi = bootstrap_interval(frac)
    if len(seeds) < MIN_SEEDS:
        verdict = "inconclusive"
    else:
        verdict = "replicated" if value >= need else "not replicated"
    return Judgement(verdict, value, lo, hi, seeds, detail)


def wide(metrics: pd.DataFrame, runs: pd.DataFrame, keys: Iterable[str] = ()) -> pd.DataFrame:
    """One row per (run, step), one column per metric, plus the run's seed, status and ``keys``."""
    w = metrics.pivot_table(index=["run_id", "step"], columns="metric", values="value").reset_index()
    cols = ["run_id", "seed", "status", *[k for k in keys if k in runs.columns]]
    return w.merge(runs[cols], on="run_id")


# ------------------------------------------------------------------------------------- evaluation
def _load_modules() -> None:
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__name__}.{mod.name}")


def evaluate(root: Path | str = "results", ids: Iterable[str] | None = None) -> list[Verdict]:
    """Judge every registered claim (or ``ids``) from the finished runs under ``root``."""
    _load_modules()
    out = []
    for cid in sorted(CLAIMS, key=_order) if ids is None else ids:
        c = CLAIMS[cid]
        v = Verdict(c.id, c.source, c.metric, None, None, None, c.threshold, "", [], 0.0,
                    experiment=c.experiment, statement=c.statement)
        if c.judge is None:
            v.verdict = "not run (tier gpu)" if c.tier == "gpu" else "not run (no experiment yet)"
            out.append(v)
            continue
        runs = results.runs(root, experiment=c.experiment)
        done = runs[runs["status"].isin(results.FINISHED)] if not runs.empty else runs
        if done.empty:
            v.verdict = f"not run (tier {c.tier})" if c.tier != "cpu" else "not run"
            out.append(v)
            continue
        metrics = results.load(root, experiment=c.experiment)
        j = c.judge(metrics, done)
        v.value, v.ci_low, v.ci_high, v.verdict, v.detail = j.value, j.ci_low, j.ci_high, j.verdict, j.detail
        v.seeds = [int(s) for s in j.seeds]
        v.runtime_s = float(done["wall_time_s"].fillna(0).sum())
        v.runs = sorted(done["run_id"])
        out.append(v)
    return out


def _order(cid: str) -> tuple:
    family = {"M": 0, "B": 1, "W": 2, "S": 3, "Q": 4}.get(cid[0], 9)
    digits = "".join(ch for ch in cid[1:] if ch.isdigit())
    return family, int(digits or 0), cid
