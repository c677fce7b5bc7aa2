"""The mitigation leaderboard: every fix on the same spiking workloads, with error bars, no verdict.

``table(root) -> pd.DataFrame`` reads the runs of experiment ``mitigations`` (conf/experiment/
mitigations.yaml: arms conf/arm/mitigations/<workload>/<arm>.yaml, seeds 0-2) and returns one row
per workload × arm, sorted within a workload by R3's spike rate then final loss. Per run
(``run_table``):

- ``spikes_R3`` / ``spikes_R10`` / ``spikes_R100`` / ``spikes_Z6``: loss-spike episodes per 1k
  steps under each of the four definitions of CLAIMS.md ("Spike definitions";
  ``spikes.DEFINITIONS``, ``spikes.summarize(..., definition=d)``'s ``spikes_per_1k``): R3 (the
  primary, fixed before any run: the loss exceeds 3× the median of the previous 100 non-spiking
  losses, the episode ends back under 1.2× it), R10 and R100 (the same rule at 10× and 100×), Z6
  (OLMo-core's SkipStepOptimizer rule: the loss exceeds the mean of the previous 128 losses by
  more than 6 standard deviations). R3 is the one the board is sorted by; the others are shown
  beside it, no ranking is picked among them afterwards;
- ``largest_spike``: the tallest R3 episode's loss / its baseline; in a run with no R3 episode, the
  largest ratio of a loss to the median of the previous 100 losses (< 3; ``spikes.largest_ratio``:
  R3's start test is the legacy rule's, so that median is R3's baseline there);
- ``steps_to_recover``: median over R3 episodes of the steps from the peak back to <= 1.2× the
  pre-spike baseline (NaN in a run with no R3 episode or none recovered);
- ``final_loss``: median of the last 5% of steps (replicate/sensitivity.py), +inf if diverged;

and per workload × arm (where an LR grid was run: experiments ``mitigations_lr`` and ``w2_qk_norm``)
``lr_sensitivity``, Wortsman et al. 2023 (arXiv 2309.14322): mean over a >= 5-point grid of
min(final loss, loss at init) minus the best (replicate/sensitivity.py). ``run_table`` also
carries each run's ``n_steps`` (steps of its finite loss) and its episode counts ``n_spikes_R3`` /
``_R10`` / ``_R100`` / ``_Z6`` (recovered exactly from the rates: ``stats.count_of_rate``).

Each metric's columns are ``<m>``, ``<m>_lo``, ``<m>_hi``, intervals 95%, that never leave the
quantity's range (CLAIMS.md, "Spike definitions": never a t interval below 0):

- spike rates (each definition alike): ``<m>`` is the rate pooled over seeds, 1000 × Σ episodes /
  Σ n_steps (the mean of the seeds' rates when they ran equal steps; a diverged run counts the
  steps it ran), and ``_lo``/``_hi`` the exact (Garwood) Poisson interval of the pooled count,
  scaled the same way (``stats.rate_interval``; low end 0 at no episode). It treats the seeds as
  one Poisson process with a common rate, so where seeds differ it is narrower than an interval
  over seeds. The summary also has the pooled ``n_spikes_<definition>`` and ``n_steps``;
- largest spike, steps to recover, final loss, LR sensitivity (all >= 0): the mean over seeds and
  its Student-t interval over seeds clipped at 0 (``stats.mean_interval(..., bounds=(0, inf))``).
  Why not a percentile bootstrap over seeds: with 3 seeds the bootstrap distribution of the mean
  has an atom of 1/27 = 3.7% > 2.5% at each extreme, so its 95% interval is exactly the seeds'
  [min, max], which covers even the median only 1 - 2/2^3 = 75% of the time; it would be reported
  as 95% and is not. Clipping the t interval at 0 removes only values the mean cannot take, so it
  keeps the t interval's coverage (approximate for skewed values such as the largest spike).

The table also has ``seeds`` (the seeds averaged), ``diverged`` (runs that diverged),
``description`` (the arm file's first comment line).

``write(root)`` writes ``<root>/leaderboard.md``; ``python -m replicate.leaderboard [root]`` does it
(``make report`` calls it). The report draws the leaderboard figure from ``table(root)``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import results, sensitivity, spikes
from .stats import count_of_rate, mean_interval, rate_interval

EXPERIMENT = "mitigations"
LR_EXPERIMENTS = ("mitigations", "mitigations_lr", "w2_qk_norm")  # runs that can form an LR grid
ARMS = Path(__file__).resolve().parent.parent / "conf" / "arm" / "mitigations"
DEFINITIONS = tuple(spikes.DEFINITIONS)  # R3 (spikes.PRIMARY, first), R10, R100, Z6
RATES = {f"spikes_{d}": f"n_spikes_{d}" for d in DEFINITIONS}  # rate column -> its per-run episode count
PRIMARY_RATE = f"spikes_{spikes.PRIMARY}"  # the sort key and the first column
METRICS = (*RATES, "largest_spike", "steps_to_recover", "final_loss")
PER = 1000  # the rates are per 1k steps
WORKLOAD_ORDER = {"mlp": 0, "gpt": 1, "slingshot": 2}
WORKLOAD_NAMES = {"modular_mlp": "slingshot"}  # model.name -> the workload's name (its folder of arms)


def run_table(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run_id, workload (``model.name``; ``WORKLOAD_NAMES`` renames the modular MLP
    to ``slingshot``), arm (``label``), seed, lr, status and
    the per-run metrics of the module docstring, plus init_loss."""
    if metrics.empty:
        return pd.DataFrame(columns=["run_id", "workload", "arm", "seed", "lr", "status", *METRICS, "init_loss",
                                     "n_steps", *RATES.values()])
    # R3 (the primary) gives the largest spike and the recovery; every definition its own rate
    s = spikes.summarize(metrics, definition=spikes.PRIMARY).rename(
        columns={"median_steps_to_recover": "steps_to_recover", "spikes_per_1k": PRIMARY_RATE})
    s = s[["run_id", "experiment", "seed", "status", "n_steps", PRIMARY_RATE, "largest_spike", "steps_to_recover"]]
    for d in DEFINITIONS:
        if f"spikes_{d}" != PRIMARY_RATE:
            other = spikes.summarize(metrics, definition=d)[["run_id", "spikes_per_1k"]]
            s = s.merge(other.rename(columns={"spikes_per_1k": f"spikes_{d}"}), on="run_id", how="left")
    quiet = set(s.loc[~(s["largest_spike"] > 0), "run_id"])  # runs without an R3 episode
    ratio = {rid: spikes.largest_ratio(g.sort_values("step")["value"].to_numpy(float))
             for rid, g in metrics[metrics["metric"] == "loss"].groupby("run_id") if rid in quiet}
    s["largest_spike"] = [h if h > 0 else ratio[rid] for rid, h in zip(s["run_id"], s["largest_spike"])]
    for rate, count in RATES.items():  # the integer episode counts behind the rates (exact, or an error)
        s[count] = [count_of_rate(r, n, PER) for r, n in zip(s[rate], s["n_steps"])]
    s = s.merge(sensitivity.run_losses(metrics).drop(columns="seed"), on="run_id")
    info = runs[["run_id", "model.name", "label", "optimizer.lr"]].rename(
        columns={"model.name": "workload", "label": "arm", "optimizer.lr": "lr"})
    info["workload"] = info["workload"].map(lambda w: WORKLOAD_NAMES.get(w, w))
    s = s.drop(columns=["experiment", "status"]).merge(info.assign(status=runs["status"].to_numpy()), on="run_id")
    return s[["run_id", "workload", "arm", "seed", "lr", "status", *METRICS, "init_loss", "n_steps", *RATES.values()]]


def _interval(x: pd.Series) -> tuple[float, float, float]:
    """Mean over seeds and its t interval clipped at 0 (every such metric is >= 0; the module
    docstring says why not a bootstrap); (inf, NaN, NaN) when a run diverged (an infinite value)."""
    v = x.to_numpy(float)
    fin = v[np.isfinite(v)]
    if len(v) and len(fin) < len(v) and np.any(np.isinf(v)):
        return float("inf"), float("nan"), float("nan")
    if not len(fin):
        return float("nan"), float("nan"), float("nan")
    return mean_interval(fin, bounds=(0.0, math.inf))


def _pooled_rate(g: pd.DataFrame, count: str) -> tuple[float, float, float]:
    """The rate per 1k steps pooled over the seeds of ``g`` and its exact Poisson interval."""
    return rate_interval(g[count].to_numpy(float), g["n_steps"].to_numpy(float), per=PER)


def describe(workload: str, arm: str) -> str:
    """The first comment line after the package line of conf/arm/mitigations/<workload>/<arm>.yaml."""
    path = ARMS / str(workload) / f"{arm}.yaml"
    if not path.exists():
        return ""
    for line in path.read_text().splitlines():
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("# ").strip()
    return ""


def summarize(per_run: pd.DataFrame, sens: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard from ``run_table`` rows of the leaderboard runs (one lr per arm) and an
    optional ``sensitivity.table(..., by=["workload", "arm"])``: one row per workload × arm, sorted
    by workload, then the pooled R3 spike rate, then final loss (intervals: module docstring)."""
    rows = []
    for (workload, arm), g in per_run.groupby(["workload", "arm"], sort=False):
        row = {"workload": workload, "arm": arm, "description": describe(workload, arm),
               "lr": float(g["lr"].iloc[0]), "seeds": sorted(int(s) for s in g["seed"]),
               "diverged": int((g["status"] == "diverged").sum())}
        row["n_steps"] = int(g["n_steps"].sum())
        for m in METRICS:
            if m in RATES:
                row[m], row[f"{m}_lo"], row[f"{m}_hi"] = _pooled_rate(g, RATES[m])
                row[RATES[m]] = int(g[RATES[m]].sum())
            else:
                row[m], row[f"{m}_lo"], row[f"{m}_hi"] = _interval(g[m])
        row["lr_sensitivity"] = row["lr_sensitivity_lo"] = row["lr_sensitivity_hi"] = float("nan")
        row["lr_seeds"] = []
        if sens is not None and not sens.empty:
            s = sens[(sens["workload"] == workload) & (sens["arm"] == arm)].dropna(subset=["lr_sensitivity"])
            if len(s):
                row["lr_sensitivity"], row["lr_sensitivity_lo"], row["lr_sensitivity_hi"] = _interval(s["lr_sensitivity"])
                row["lr_seeds"] = sorted(int(x) for x in s["seed"])
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_w"] = out["workload"].map(lambda w: WORKLOAD_ORDER.get(w, 9))
    out = out.sort_values(["_w", "workload", PRIMARY_RATE, "final_loss"], na_position="last")
    return out.drop(columns="_w").reset_index(drop=True)


def table(root: Path | str = "results") -> pd.DataFrame:
    """The leaderboard of the runs under ``root``: one row per workload × arm (see the module
    docstring for the columns); empty when experiment ``mitigations`` has no finished runs."""
    frames = {}
    for exp in LR_EXPERIMENTS:  # the primary seeds only: held-out runs in the same folder never mix in
        r = results.runs(root, experiment=exp, seeds=results.PRIMARY_SEEDS)
        if r.empty:
            continue
        r = r[r["status"].isin(results.FINISHED)]
        if r.empty or "label" not in r:
            continue
        m = results.load(root, experiment=exp, metrics=["loss"], seeds=results.PRIMARY_SEEDS)
        frames[exp] = run_table(m, r)
    if EXPERIMENT not in frames:
        return pd.DataFrame()
    grid = pd.concat(frames.values(), ignore_index=True)
    sens = sensitivity.table(grid, by=["workload", "arm"], lr="lr")
    return summarize(frames[EXPERIMENT], sens)


def _fmt(x: float, lo: float = float("nan"), hi: float = float("nan")) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "diverged"
    v = f"{x:.3g}"
    return f"{v} [{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) and math.isfinite(hi) else v


def markdown(board: pd.DataFrame) -> str:
    """``board`` (``table()``) as the verdict-free leaderboard page."""
    lines = ["# Mitigation leaderboard", "",
             "Generated by `python -m replicate.leaderboard` (`make report`) from the runs of "
             "`conf/experiment/mitigations.yaml` (and, for the LR sensitivity, `mitigations_lr` and "
             "`w2_qk_norm`). No verdicts: a comparison on three small spiking workloads (mlp, gpt, slingshot). Each cell: value "
             "[95% interval]; no interval leaves the quantity's range.", "",
             "- **Spikes /1k** under the four spike definitions of CLAIMS.md (\"Spike definitions\", "
             "`replicate/spikes.py`), fixed before any run: **R3** (the primary: an episode starts when the "
             "loss exceeds 3x the median of the previous 100 non-spiking losses and ends when it is back "
             "under 1.2x that median), **R10** and **R100** (the same rule at 10x and 100x), **Z6** "
             "(OLMo-core's SkipStepOptimizer rule: the loss exceeds the mean of the previous 128 losses by "
             "more than 6 standard deviations; consecutive flagged steps are one episode). The board is "
             "ranked by R3; the other three are shown beside it, none is picked afterwards. The value is "
             "the rate pooled over the seeds, 1000 × (episodes summed over the seeds) / (steps summed over "
             "the seeds; a diverged seed counts the steps it ran), which is the mean of the seeds' rates "
             "when they ran equal steps. The interval is the exact (Garwood) Poisson 95% interval of the "
             "pooled episode count, scaled the same way: never below 0, [0, 3.69 × 1000 / steps] with no "
             "episode. It treats the seeds as one Poisson process with a common rate, so where the seeds' "
             "rates differ it is narrower than an interval over seeds.",
             "- **Largest** (the tallest R3 episode's ratio to its baseline; without an R3 episode the "
             "largest loss / median ratio), **recover** (median steps from an R3 peak back to 1.2x the "
             "pre-spike baseline, over the seeds with a recovered R3 episode), **final loss** (median loss of the last 5% "
             "of steps) and **LR sens.** (mean over a 5-point LR grid of min(final loss, initial loss) "
             "minus the best, Wortsman et al. 2023; only the arms with a grid): the mean over seeds with "
             "its 95% Student-t interval over seeds, clipped at 0 (none of them can be negative; clipping "
             "removes only impossible values, so the coverage is the t interval's, approximate for skewed "
             "values such as the largest spike). Not a bootstrap: with 3 seeds a 95% percentile bootstrap "
             "of the mean is exactly the seeds' min to max, which covers even the median only 75% of the "
             "time. With 3 seeds t(0.975; 2) = 4.30, so these intervals are wide; a value without an "
             "interval comes from one seed; `diverged`: a seed diverged (its final loss is infinite).",
             "- Sorted by the pooled spike rate under R3, then final loss.", ""]
    if board.empty:
        return "\n".join(lines + ["No runs of experiment `mitigations` yet: `make replicate CLAIMS=mitigations`.", ""])
    for workload, g in board.groupby("workload", sort=False):
        lines += [f"## {workload}", "",
                  "| # | arm | what it is | spikes R3 /1k | R10 /1k | R100 /1k | Z6 /1k | largest (R3) | "
                  "recover (R3, steps) | final loss | LR sens. | seeds |", "|---" * 12 + "|"]
        for i, r in enumerate(g.itertuples(), 1):
            cells = [_fmt(getattr(r, m), getattr(r, f"{m}_lo"), getattr(r, f"{m}_hi")) for m in METRICS]
            sens = _fmt(r.lr_sensitivity, r.lr_sensitivity_lo, r.lr_sensitivity_hi)
            div = f" ({r.diverged} diverged)" if r.diverged else ""
            lines.append(f"| {i} | `{r.arm}` | {r.description} (lr {r.lr:g}) | " + " | ".join(cells)
                         + f" | {sens} | {','.join(map(str, r.seeds))}{div} |")
        lines.append("")
    return "\n".join(lines)


def write(root: Path | str = "results", out: Path | str | None = None) -> Path:
    """Write the leaderboard of ``root`` to ``out`` (default ``<root>/leaderboard.md``)."""
    out = Path(out) if out is not None else Path(root) / "leaderboard.md"
    results.atomic_write(out, markdown(table(root)) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", nargs="?", default="results")
    p.add_argument("--out", default=None, help="file to write (default: <results_dir>/leaderboard.md)")
    args = p.parse_args(argv)
    results.require_runs(args.results_dir)
    print(f"wrote {write(args.results_dir, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
