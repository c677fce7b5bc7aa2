"""Intervals and rank statistics: the suite's one statistics module.

Claims (replicate/claims/), the leaderboard and the report take every interval and rank statistic
from here. Intervals are 95% unless ``conf`` says otherwise and come as ``(low, high)``, NaN where
the data cannot give one (fewer than 2 values for an interval over seeds).

- ``t_interval``: Student-t interval of a mean over seeds; ``mean_interval``: the mean and its
  t interval, clipped to the range the metric can take;
- ``bootstrap_interval``: percentile bootstrap of any statistic over seeds;
- ``wilson_interval``: Wilson score interval of a proportion k/n;
- ``poisson_interval``: exact (Garwood) interval of a Poisson count k, or of a rate k/exposure;
  it never leaves [0, inf) (CLAIMS.md: spike rates get intervals that cannot leave their range);
  ``rate_interval``: a rate pooled over seeds (pooled count / pooled exposure) with that interval;
  ``count_of_rate``: the integer count behind a rate (``spikes.rates`` reports rates);
- ``spearman``: Spearman's rho (0 when one side does not vary); ``auroc``: area under the ROC
  curve by the Mann-Whitney U statistic.

Nothing here imports from the package (numpy and scipy only).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np


def t_interval(values: Sequence[float], conf: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over seeds (NaN for fewer than 2 values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + conf / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def mean_interval(values: Mapping[object, float] | Iterable[float],
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds of the finite ``values`` (a sequence, or a mapping
    seed -> value) and its t interval, clipped to ``bounds``, the range the metric can take (a
    fraction: (0, 1); a rate or a loss: (0, inf)). NaN mean without a finite value."""
    vals = values.values() if isinstance(values, Mapping) else values
    x = [v for v in vals if v is not None and math.isfinite(v)]
    value = float(np.mean(x)) if x else float("nan")
    lo, hi = t_interval(x)
    if math.isfinite(lo):
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return value, lo, hi


def bootstrap_interval(values: Sequence[float], stat: Callable = np.mean, conf: float = 0.95,
                       n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over seeds (NaN for fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = np.array([stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n)])
    return float(np.quantile(boot, (1 - conf) / 2)), float(np.quantile(boot, 1 - (1 - conf) / 2))


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaN for n = 0), p = k/n:
    (p + z²/2n ± z·√(p(1-p)/n + z²/4n²)) / (1 + z²/n), clipped to [0, 1]."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    mid, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (mid - half) / (1 + z * z / n)), min(1.0, (mid + half) / (1 + z * z / n))


def poisson_interval(k: int, exposure: float = 1.0, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood 1936) interval of the mean of a Poisson count ``k``, divided by ``exposure``
    (e.g. k spikes pooled over seeds in ``exposure`` thousand steps: a rate per 1k steps):
    [χ²(α/2; 2k) / 2, χ²(1-α/2; 2k+2) / 2] / exposure, α = 1 - conf, the lower end 0 at k = 0.
    It never goes below 0 (k = 0 at 95%: [0, 3.689])."""
    from scipy.stats import chi2

    if k < 0 or exposure <= 0 or not math.isfinite(exposure):
        return math.nan, math.nan
    alpha = 1 - conf
    lo = float(chi2.ppf(alpha / 2, 2 * k) / 2) if k > 0 else 0.0
    hi = float(chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2)
    return lo / exposure, hi / exposure


def count_of_rate(rate: float, exposure: float, per: float = 1000) -> int:
    """The integer count k behind ``rate`` = k · per / exposure (as ``spikes.rates`` computes it),
    recovered as round(rate · exposure / per); 0 for zero exposure (no steps, no events). Raises
    ValueError when the product is not within 1e-6 of an integer (the rate was not a count over
    ``exposure``), so a count is never silently rounded from something else."""
    if exposure == 0:
        return 0
    x = float(rate) * float(exposure) / float(per)
    if not math.isfinite(x) or x < -1e-6 or abs(x - round(x)) > 1e-6:
        raise ValueError(f"rate {rate!r} over {exposure!r} steps (per {per:g}) is not a count: {x!r}")
    return int(round(x))


def rate_interval(counts: Iterable[float], exposures: Iterable[float], per: float = 1000,
                  conf: float = 0.95) -> tuple[float, float, float]:
    """(rate, low, high) of events pooled over seeds: seed i saw ``counts[i]`` events in
    ``exposures[i]`` steps; with K = Σ k_i and E = Σ E_i,

        rate = per · K / E,   [low, high] = per · [χ²(α/2; 2K) / 2,  χ²(1-α/2; 2K+2) / 2] / E,

    α = 1 - conf: the exact (Garwood) Poisson interval of the pooled count K (``poisson_interval``)
    scaled like the rate. The low end is 0 at K = 0 (the high end per · 3.689 / E at 95%), and it
    never goes below 0. (NaN, NaN, NaN) when E = 0 (no steps at all).

    Pooling assumes the seeds share one rate and that events are independent (a Poisson process):
    the interval is for that common rate. Where seeds really differ (over-dispersion, clustered
    spikes) it is narrower than an interval over seeds would be. Counts must be non-negative
    integers (an integral float is accepted) and exposures finite and >= 0; a run with zero
    exposure must have a zero count."""
    k = [float(c) for c in counts]
    e = [float(x) for x in exposures]
    if len(k) != len(e):
        raise ValueError(f"{len(k)} counts but {len(e)} exposures")
    for c, x in zip(k, e):
        if not (math.isfinite(c) and c >= 0 and c == int(c)):
            raise ValueError(f"a count must be a non-negative integer, got {c!r}")
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"an exposure must be finite and >= 0, got {x!r}")
        if x == 0 and c > 0:
            raise ValueError(f"{c:g} events in zero steps")
    total_k, total_e = int(sum(k)), sum(e)
    if total_e == 0:
        return math.nan, math.nan, math.nan
    lo, hi = poisson_interval(total_k, total_e / per, conf=conf)
    return per * total_k / total_e, lo, hi


def spearman(x, y) -> float:
    """Spearman's rho; 0 when ``y`` does not vary (no rise), NaN with fewer than 2 points."""
    from scipy import stats

    if len(x) < 2:
        return float("nan")
    if np.ptp(np.asarray(y, float)) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def auroc(score, label) -> float:
    """Area under the ROC curve of ``score`` for the binary ``label``: the Mann-Whitney U statistic
    of the positives' scores over the negatives', U / (n_pos n_neg), ties counted one half; NaN when a
    class is empty. 1 = every positive scores above every negative, 0.5 = no better than chance."""
    from scipy import stats

    score, label = np.asarray(score, dtype=float), np.asarray(label, dtype=bool)
    keep = np.isfinite(score)
    score, label = score[keep], label[keep]
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    u = ranks[label].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))
