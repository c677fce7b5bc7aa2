"""H1 (Marek et al. 2025, arXiv 2507.07101): β2 held fixed makes small batches unstable; β2 scaled
to a fixed half-life in tokens does not.

Adam's second moment v is an exponential average with half-life ln 0.5 / ln β2 steps, i.e.
t½ = B·ln 0.5 / ln β2 sequences (times the context in tokens) at batch B. Holding t½ fixed across
batch sizes gives β2(B) = β2(B_ref)^(B/B_ref); at a fixed β2 a batch 16× smaller averages v over 16×
fewer tokens. The experiment (``conf/experiment/h1_beta2_halflife_gpt.yaml``) trains the tiny GPT on
byte-level text at equal tokens for every batch size, with β2 fixed at 0.95 ("fixed") and scaled from
0.95 at the largest batch ("scaled"); a run belongs to an arm by its β2 (fixed: 0.95; scaled:
0.95^(B/B_max)), so the largest batch's run, where the two coincide, is in both.

Per seed, three conditions (CLAIMS.md's threshold):

- at the smallest batch the scaled arm has fewer spike episodes than the fixed arm (under the definition
  judged: Z6 for the verdict, the row's definition; R3, R10, R100 beside it). Where both arms have 0
  episodes that seed cannot show "fewer": the condition is ``unclear`` (never ``yes``), so a workload whose
  fixed arm never spikes gives at best ``inconclusive``; ``no`` when the scaled arm has as many or more and
  the fixed arm spiked (or the scaled arm spiked more);
- at the smallest batch the scaled arm's final held-out loss is no higher than the fixed arm's;
- the scaled arm's spread of final held-out loss over the batch sizes (max − min, per seed) is smaller.

Each is ``yes`` only when it holds in every seed (``verdicts.every_seed``; the spike condition as above),
combined by ``verdicts.combine``. The final held-out loss is the mean of the run's ``val_loss`` over
its last 10% of steps (equal tokens at every batch). The value is the mean over seeds of the fixed minus
the scaled arm's episodes at the smallest batch, with a percentile bootstrap interval over the seeds'
differences (``stats.bootstrap_interval``: it stays within their range).
Flag: the largest batch's run is the same run in both arms. Where it has the highest final held-out
loss of both arms in every seed, spread = L(B_max) − min_B L(B), so the scaled arm's spread is smaller
only if its best loss is higher, and a true claim cannot pass the spread condition: ``Judgement.flag``
says so and ``Judgement.corrected`` is the verdict of the other two conditions (the verdict stays the
pre-set threshold's). On this workload at 262k tokens the reference batch is the least trained.
Premise (CLAIMS.md): the batch sizes span ≥ 16× and none of them is the full data set; ``data.batch_size``
null (a full batch) or a data set whose batch is the whole of it (``data.n`` ≤ the batch) fails it. The
byte-level text draws random windows with replacement from 8.6M training bytes, so no batch is the data
set. Where it fails the verdict is ``out of regime`` (``verdicts.in_regime``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import bootstrap_interval, count_of_rate
from .registry import Judgement, claim
from .verdicts import combine, every_seed, in_regime

SOURCE = "Marek et al. 2025 (arXiv 2507.07101)"
B2_REF = 0.95        # beta2 of the fixed arm, and of the scaled arm at the largest batch
MIN_SPAN = 16        # CLAIMS.md premise: the batch sizes span >= 16x
MIN_BATCH_SIZES = 3
FINAL_FRAC = 0.1     # the final held-out loss: mean val_loss over the last 10% of a run's steps
TOL = 1e-6           # relative tolerance matching a run's beta2 to an arm


def _num(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x


def _final_val(metrics: pd.DataFrame, runs: pd.DataFrame) -> dict[str, float]:
    """run_id -> the mean of its val_loss over the last FINAL_FRAC of its steps (NaN without one)."""
    v = metrics[metrics["metric"] == "val_loss"]
    steps = runs.set_index("run_id")["train.steps"] if "train.steps" in runs else None
    out = {}
    for rid, g in v.groupby("run_id"):
        n = _num(steps.get(rid)) if steps is not None else math.nan
        if not math.isfinite(n):
            n = float(g["step"].max()) + 1
        tail = g[g["step"] >= (1 - FINAL_FRAC) * n]["value"].astype(float)
        out[rid] = float(tail.mean()) if len(tail) and np.isfinite(tail).all() else math.nan
    return out


def _arms(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its batch, beta2 and arm memberships (fixed, scaled: booleans)."""
    r = runs.copy()
    r["batch"] = [_num(b) for b in r.get("data.batch_size", pd.Series(np.nan, index=r.index))]
    r["b2"] = [_num(b) for b in r["optimizer.b2"]]
    bmax = r["batch"].max()
    r["fixed"] = np.isclose(r["b2"], B2_REF, rtol=TOL, atol=0)
    r["scaled"] = np.isclose(r["b2"], B2_REF ** (r["batch"] / bmax), rtol=TOL, atol=0)
    return r


def _premise(r: pd.DataFrame) -> tuple[dict[int, bool], str]:
    held, parts = {}, []
    for seed, g in r.groupby("seed"):
        b = g["batch"]
        n = g["data.n"].map(_num) if "data.n" in g else pd.Series(np.nan, index=g.index)
        full = bool(b.isna().any() or (n.notna() & (n <= b)).any())
        bs = sorted(b.dropna().unique())
        span = bs[-1] / bs[0] if bs and bs[0] > 0 else math.nan
        held[int(seed)] = bool(math.isfinite(span) and span >= MIN_SPAN and not full)
        parts.append(f"{int(seed)}: {span:g}x{' (a full batch)' if full else ''}")
    reached = ("batch sizes " + ", ".join(f"{x:g}" for x in sorted(r["batch"].dropna().unique()))
               + "; span per seed " + ", ".join(parts)
               + f" (premise: >= {MIN_SPAN}x, none the full data set)")
    return held, reached


@claim("H1", experiment="h1_beta2_halflife_gpt", figures=["spike_rates", "halflife"], spikes=True, primary="Z6",
       source=SOURCE,
       statement=("Small batches are unstable with β2 held fixed; holding β2's half-life fixed in "
                  "tokens (β2(B) = β2(B_ref)^(B/B_ref)) makes them train stably"),
       metric=("tiny GPT on byte-level text, batch 4, 16, 64 at equal tokens, β2 fixed at 0.95 vs scaled "
               "0.95^(B/64); spike episodes (Z6; R3, R10, R100 beside it) at the smallest batch and final "
               "held-out loss (mean val_loss over the last 10% of tokens); value = mean over seeds of the "
               "fixed minus the scaled arm's episodes at the smallest batch, bootstrap interval over seeds"),
       threshold=("at the smallest batch the scaled arm has fewer spikes and a final held-out loss no higher "
                  "than the fixed arm's in every seed, and the scaled arm's spread of final loss over batch "
                  "sizes is smaller (in every seed); both arms 0 spikes in a seed: unclear"))
def h1(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = "Z6") -> Judgement:
    if runs.empty:
        return Judgement("inconclusive", None, detail="no runs")
    r = _arms(runs)
    s = spikes.summarize(metrics, definition=definition)
    count = {row["run_id"]: count_of_rate(row["spikes_per_1k"], row["n_steps"]) for _, row in s.iterrows()}
    final = _final_val(metrics, runs)
    r["count"] = r["run_id"].map(count)
    r["final"] = r["run_id"].map(final)
    bmin = r["batch"].min()
    seeds, diffs, spike_ans, loss_ok, spread_ok, rows, top_worst = [], [], [], [], [], [], []
    for seed, g in r.groupby("seed"):
        fx, sc = g[g["fixed"]], g[g["scaled"]]
        fb, sb = fx.groupby("batch")["final"].mean(), sc.groupby("batch")["final"].mean()
        if (len(fb) < MIN_BATCH_SIZES or len(sb) < MIN_BATCH_SIZES or bmin not in fb.index
                or bmin not in sb.index):
            continue
        f0, s0 = fx[fx["batch"] == bmin], sc[sc["batch"] == bmin]
        if f0["count"].isna().any() or s0["count"].isna().any():
            continue
        fc, scn = int(f0["count"].sum()), int(s0["count"].sum())
        seeds.append(int(seed))
        diffs.append(fc - scn)
        spike_ans.append("yes" if scn < fc else "unclear" if fc == scn == 0 else "no")
        fl, sl = float(fb[bmin]), float(sb[bmin])
        loss_ok.append(math.isfinite(fl) and math.isfinite(sl) and sl <= fl)
        fspread, sspread = float(fb.max() - fb.min()), float(sb.max() - sb.min())
        spread_ok.append(math.isfinite(fspread) and math.isfinite(sspread) and sspread < fspread)
        bmax = max(fb.index)
        top_worst.append(bool(fb[bmax] >= fb.max() and sb[bmax] >= sb.max()))
        rows.append(f"seed {int(seed)}: {definition} episodes at B={bmin:g} fixed {fc} / scaled {scn}; final "
                    f"held-out loss at B={bmin:g} fixed {fl:.3f} / scaled {sl:.3f}; by batch fixed "
                    + "/".join(f"{x:.3f}" for x in fb) + " (spread " + f"{fspread:.3f}), scaled "
                    + "/".join(f"{x:.3f}" for x in sb) + f" (spread {sspread:.3f})")
    spike_cond = ("no" if "no" in spike_ans else "yes" if spike_ans and all(a == "yes" for a in spike_ans)
                  else "unclear")
    conditions = {f"fewer {definition} spikes (scaled) at the smallest batch in every seed": spike_cond,
                  "final held-out loss (scaled) <= fixed at the smallest batch in every seed": every_seed(loss_ok),
                  "spread over batch sizes (scaled) < fixed in every seed": every_seed(spread_ok)}
    if spike_cond == "unclear" and spike_ans:
        rows.append("both arms 0 episodes at the smallest batch in seed(s) "
                    + ", ".join(str(sd) for sd, a in zip(seeds, spike_ans) if a == "unclear")
                    + ": 'fewer' cannot be shown there")
    value = float(np.mean(diffs)) if diffs else None
    lo, hi = bootstrap_interval(diffs)
    j = combine(conditions, seeds, value, (lo, hi), "; ".join(rows))
    if top_worst and all(top_worst):
        # The largest batch's run is the same run in both arms; where it has the highest final loss of
        # both, spread = L(B_max) - min_B L(B), so the scaled arm's spread is smaller only if its best
        # loss is higher: a scaled arm no worse than the fixed one (the claim) cannot pass it.
        j.flag = ("a true claim cannot pass 'spread (scaled) < fixed' here: the largest batch's run, shared by "
                  "both arms, has the highest final held-out loss of both in every seed, so a smaller spread "
                  "means a worse best loss (conf/experiment/h1_beta2_halflife_gpt.yaml header)")
        j.corrected = combine(dict(list(conditions.items())[:2]), seeds, value, (lo, hi), "").verdict
    held, reached = _premise(r)
    return in_regime(j, held, reached)
