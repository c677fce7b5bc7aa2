"""M11 (PaLM, Chowdhery et al. 2022, arXiv 2204.02311, §5.1): spikes come from a batch meeting a model state.

Read from runs of the rollback mitigation (``replicate/mitigations.py`` Rollback) in three modes,
``mitigation.rollback.mode``: (a) ``replay`` (the same snapshot, the same batches), (b) ``skip``
(PaLM: the same snapshot, the next ``skip`` batches skipped), (c) ``feed`` (the same snapshot fed
the ``feed`` batches up to the spike's). Per run the loop logs ``rollbacks`` (events) and the
counts ``rollback_recurred`` / ``rollback_clean`` (the spike test, loss > 3x the median of the
previous 100 non-spiking losses, fired again, or did not, between the restore and ``recur`` steps
after the spike's step, or after the spike's batch was fed again in mode feed); their last logged
values are the run's. Events still open at the end of a run are undecided and not counted.

Replicated when (a) every replay event recurs, with the replayed loss at the spike step equal to
the rolled-back spike's loss bit for bit, and (b) and (c) are each clean in >= 80% of their
decided events. value = min(clean fraction of b, of c), events pooled over seeds; interval: the
Wilson score interval (``stats.wilson_interval``) (95%) of that mode's fraction, k clean of n events, p̂ = k/n:
(p̂ + z²/2n ± z·√(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n), z = 1.96, treating events as independent
trials (each goes back the full ``back`` steps from a spike of its own: ``roll_recurring: false``;
events of one run share its history, so the interval is if anything too narrow). Inconclusive with fewer than MIN_SEEDS seeds with a decided
event in every mode, or when the interval straddles 0.8 (3 clean of 3 gives [0.44, 1]: a few
events cannot show >= 80%; 1 of 3 gives [0.06, 0.79]).

The events and their outcomes are the loop's online spike test (``spikes.OnlineDetector``, R3's
start test, set by ``mitigation.rollback.factor``/``window``), fixed when the runs were made and the
same under every spike definition. What the definition judged (R3 for the verdict; R10, R100, Z6
beside it, ``spikes.episodes``) decides is the premise (CLAIMS.md): the deterministic spiking run
has >= 10 spike episodes per seed under the definition used, none starting on an injected batch
(``verdicts.spike_premise``), counted on the seed's replay run, whose loss is that run's own
timeline bit for bit (every replay restores a snapshot and trains on the same batches), i.e. the
spikes its events are drawn from; a seed without a replay run counts none. Unless the premise held
in every seed, ``out of regime`` (``verdicts.in_regime``). The detail's rate of spikes after the
first one (the replay runs' timeline) is counted under the same definition.

Flagged threshold (issue 15 part 3; derivation: the experiment's header, written before this rule's
verdict on the real runs was looked at). "Clean" counts any spike in the window, and the workload keeps
spiking at its own background rate after a first spike, so even if the claim held exactly a window is
clean only with probability p0 = exp(-rate x L): rate = the mean over the judged seeds of the replay
runs' rate after their first spike (under the definition judged, as in the detail), L = back + recur
(b: restore to spike + recur) and feed + recur (c: restore to the fed spike batch + recur), from the runs'
config. When 0.8 > p0 of (b) or (c), ``Judgement.flag`` says so, and ``Judgement.corrected`` is the
verdict under the threshold a true claim can pass: (a) as pre-set; (b) and (c) each clean in >= 0.8 x p0
of their events, yes when the Wilson lower bound >= 0.8 p0, no when the upper bound < 0.8 p0, else
unclear, and unclear too when 0.8 p0 is below the Wilson upper bound of 0 clean of that mode's n (the
power check: the events could not tell a true claim, ~p0 clean, from a false one, ~0 clean); replicated
when all are yes, not replicated when any is no, else inconclusive (``verdicts.combine``), then the same
premise (``in_regime``). The verdict stays the pre-set threshold's.
"""

from __future__ import annotations

import math

import pandas as pd

from .. import spikes
from ..stats import wilson_interval
from .frames import not_injected
from .registry import Judgement, claim
from .verdicts import combine, enough_seeds, in_regime, spike_premise

SOURCE = "Chowdhery et al. 2022, PaLM (arXiv 2204.02311)"
M11_NEED = 0.8
DERIVATION = "conf/experiment/m11_rollback_mlp.yaml header"
MODES = ("replay", "skip", "feed")
MODE_KEY = "mitigation.rollback.mode"


def _last(g: pd.DataFrame, col: str) -> float:
    s = g[col].dropna() if col in g else pd.Series(dtype=float)
    return float(s.iloc[-1]) if len(s) else 0.0


def run_events(g: pd.DataFrame, definition: str = spikes.PRIMARY, row: pd.Series | None = None) -> dict:
    """One run's events, from its wide rows (index: step, sorted): counts, the (last) rolled-back
    spike, its replayed loss (the logged loss at the spike's step, NaN if not logged), the step
    where the outcome was decided, the run's loss episodes under ``definition`` (``episodes``; not
    counting those starting on an injected batch of ``row``'s data) and its spike rate after the
    spike under it (for replay runs, whose timeline is the run without rollback)."""
    g = g.sort_index()
    loss = g["loss"].dropna() if "loss" in g else pd.Series(dtype=float)
    ep = spikes.episodes(loss.to_numpy(float), loss.index.to_numpy(), definition)
    events, rec, clean = _last(g, "rollbacks"), _last(g, "rollback_recurred"), _last(g, "rollback_clean")
    out = {"events": int(events), "recurred": int(rec), "clean": int(clean),
           "spike_step": math.nan, "spike_loss": math.nan, "replayed_loss": math.nan,
           "restore_step": math.nan, "decided_at": math.nan, "rate_after": math.nan,
           "episodes": not_injected(ep, pd.Series(dtype=object) if row is None else row)}
    if events and "rollback_spike_step" in g:
        ev = g.dropna(subset=["rollback_spike_step"])
        if len(ev):
            s = int(ev["rollback_spike_step"].iloc[-1])
            out.update(spike_step=s, spike_loss=float(ev["rollback_spike_loss"].iloc[-1]),
                       restore_step=int(ev.index[-1]))
            if s in g.index:
                out["replayed_loss"] = float(g.loc[s, "loss"])
            if rec + clean and {"rollback_recurred", "rollback_clean"} <= set(g.columns):
                dec = g.loc[g.index >= ev.index[-1], ["rollback_recurred", "rollback_clean"]].dropna()
                dec = dec[dec.sum(axis=1) == rec + clean]  # the row where the last outcome was logged
                if len(dec):
                    out["decided_at"] = int(dec.index[0])
            after = g.loc[g.index > s, "loss"].dropna()
            if len(after) > 1:
                n_after = int((ep["start"] > s).sum()) if len(ep) else 0
                out["rate_after"] = 1000.0 * n_after / len(after)
    return out


def _clean_fraction(df: pd.DataFrame) -> float:
    decided = df["recurred"].sum() + df["clean"].sum()
    return float(df["clean"].sum() / decided) if decided else math.nan


def _value(per: pd.DataFrame) -> float:
    return min(_clean_fraction(per[per["mode"] == m]) for m in ("skip", "feed"))


def _interval(per: pd.DataFrame) -> tuple[float, float]:
    """The Wilson interval of the mode (skip or feed) with the lower clean fraction."""
    fr = {m: _clean_fraction(per[per["mode"] == m]) for m in ("skip", "feed")}
    fr = {m: f for m, f in fr.items() if math.isfinite(f)}
    if not fr:
        return math.nan, math.nan
    d = per[per["mode"] == min(fr, key=fr.get)]
    return wilson_interval(int(d["clean"].sum()), int(d["clean"].sum() + d["recurred"].sum()))


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:g}"


@claim("M11", experiment="m11_rollback_mlp", source=f"{SOURCE} §5.1", spikes=True,
       statement="Spikes come from a batch meeting a model state (PaLM's experience)",
       metric="first spike of each run, rolled back 100 steps: (a) replay the same batches, (b) skip 200 batches, "
              "(c) feed the 20 batches up to the spike's; an event recurs when the loop's spike test (R3's start test, > 3x "
              "the median of the previous 100 non-spiking losses, the same under every definition) fires before 20 "
              "steps after the spike (its batch, in c); value = min of the clean fractions of (b) and (c), events "
              "pooled over seeds; premise counted under the definition (R3; R10, R100, Z6 beside it)",
       threshold=f"(a) recurs bit for bit in every event; (b) and (c) clean in >= {M11_NEED:.0%} of events; premise: "
                 ">= 10 spikes per seed under the definition in the replay run (the spiking run's own timeline) "
                 "(flagged where the background spike rate puts p0 = exp(-rate x window) below 0.8; corrected: "
                 ">= 0.8 x p0 per mode, with a power check)")
def m11(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    w = metrics[metrics["metric"].isin(["loss", "rollbacks", "rollback_recurred", "rollback_clean",
                                        "rollback_spike_step", "rollback_spike_loss"])]
    if w.empty or MODE_KEY not in runs:
        return Judgement("inconclusive", None, detail="no rollback runs")
    w = w.pivot_table(index=["run_id", "step"], columns="metric", values="value")
    info = runs.set_index("run_id")
    rows = []
    for rid, g in w.groupby(level=0):
        if rid not in info.index:
            continue
        e = run_events(g.droplevel(0), definition, info.loc[rid])
        e.update(run_id=rid, seed=int(info.loc[rid, "seed"]), mode=str(info.loc[rid, MODE_KEY]))
        rows.append(e)
    per = pd.DataFrame(rows)
    if per.empty:
        return Judgement("inconclusive", None, detail="no rollback runs")
    per = per[per["mode"].isin(MODES)].sort_values(["mode", "seed"])
    decided = per[(per["recurred"] + per["clean"]) > 0]
    seeds_by_mode = {m: sorted(decided.loc[decided["mode"] == m, "seed"].unique()) for m in MODES}
    seeds = sorted(set.intersection(*(set(v) for v in seeds_by_mode.values())))

    rp = per[per["mode"] == "replay"]
    rp_dec = rp[(rp["recurred"] + rp["clean"]) > 0]
    exact = bool(len(rp_dec)) and bool((rp_dec["replayed_loss"] == rp_dec["spike_loss"]).all())
    a_ok = bool(len(rp_dec)) and int(rp_dec["clean"].sum()) == 0 and exact
    frac = {m: _clean_fraction(per[per["mode"] == m]) for m in MODES}
    value = _value(per[per["seed"].isin(seeds)]) if seeds else math.nan
    lo, hi = _interval(per[per["seed"].isin(seeds)]) if seeds else (math.nan, math.nan)

    if not enough_seeds(seeds) or not math.isfinite(value):
        verdict = "inconclusive"
    elif not a_ok:
        verdict = "not replicated"
    elif math.isfinite(lo) and lo < M11_NEED <= hi:
        verdict = "inconclusive"
    else:
        verdict = "replicated" if value >= M11_NEED else "not replicated"

    def count(m):
        d = per[per["mode"] == m]
        n_ev, n_rec, n_clean = int(d["events"].sum()), int(d["recurred"].sum()), int(d["clean"].sum())
        return f"{n_clean}/{n_rec + n_clean} clean, {n_rec} recurred, {n_ev - n_rec - n_clean} undecided"

    parts = [f"(a) replay: {count('replay')}; replayed loss equals the original bit for bit: "
             f"{'yes' if exact else 'no'} ({int((rp_dec['replayed_loss'] == rp_dec['spike_loss']).sum())}/"
             f"{len(rp_dec)} runs, their last event)",
             f"(b) skip: {count('skip')} (clean fraction {_fmt(round(frac['skip'], 3))})",
             f"(c) feed: {count('feed')} (clean fraction {_fmt(round(frac['feed'], 3))})"]
    runs_txt = "; ".join(
        f"{r.mode} seed {r.seed}: spike at {_fmt(r.spike_step)} (restore {_fmt(r.restore_step)}), "
        + ("no event" if not r.events else "recurred" if r.recurred else "clean" if r.clean else "undecided")
        + (f" at {_fmt(r.decided_at)}" if r.recurred or r.clean else "")
        for r in per.itertuples())
    rate = rp["rate_after"].dropna()
    base = (f"; without rollback (the replay runs' timeline) the runs spike again ({definition} episodes) at {rate.mean():.1f} per 1k steps "
            f"after their first spike (per seed {', '.join(f'{x:.1f}' for x in rate)})") if len(rate) else ""
    ref = ""
    if len(rate) and {"mitigation.rollback.back", "mitigation.rollback.recur", "mitigation.rollback.feed"} <= set(runs):
        back, recur, feed = (float(runs[f"mitigation.rollback.{k}"].median()) for k in ("back", "recur", "feed"))
        rho = rate.mean() / 1000
        ref = (f"; a crude reference (spikes arriving at that rate, independently): a window of {back + recur:g} "
               f"steps (skip: restore to spike + {recur:g}) is spike-free with probability "
               f"{math.exp(-rho * (back + recur)):.3f}, one of {feed + recur:g} (feed) {math.exp(-rho * (feed + recur)):.3f}")
    detail = "; ".join(parts) + "; per run, its last event: " + runs_txt + base + ref
    counts = {int(s): int(rp.loc[rp["seed"] == s, "episodes"].sum()) for s in sorted(per["seed"].unique())}
    held, reached = spike_premise(counts, definition)
    reached = reached.replace("spike episodes per seed", "spike episodes of the replay run (the spiking run's own "
                                                         "timeline) per seed")
    j = in_regime(Judgement(verdict, value, lo, hi, [int(s) for s in seeds], detail), held, reached)
    _flag(j, per, runs, seeds, a_ok, held, reached, definition)
    return j


def window_lengths(runs: pd.DataFrame) -> dict[str, float] | None:
    """L per mode (the steps from the restore to the end of the outcome's window): back + recur (skip),
    feed + recur (feed), from the runs' config (medians); None without those keys."""
    keys = [f"mitigation.rollback.{k}" for k in ("back", "recur", "feed")]
    if not set(keys) <= set(runs):
        return None
    back, recur, feed = (float(runs[k].median()) for k in keys)
    if not all(math.isfinite(x) for x in (back, recur, feed)):
        return None
    return {"skip": back + recur, "feed": feed + recur}


def corrected_condition(k: int, n: int, need: float) -> str:
    """One mode under the corrected threshold ``need`` = 0.8 p0: 'unclear' without events or when
    ``need`` is below the Wilson upper bound of 0 of n (the power check), else the Wilson interval of
    k of n: 'yes' when its lower bound >= need, 'no' when its upper bound < need, 'unclear' otherwise."""
    if n == 0 or need < wilson_interval(0, n)[1]:
        return "unclear"
    lo, hi = wilson_interval(k, n)
    return "yes" if lo >= need else "no" if hi < need else "unclear"


def _flag(j: Judgement, per: pd.DataFrame, runs: pd.DataFrame, seeds: list, a_ok: bool, held: dict,
          reached: str, definition: str) -> None:
    """Sets ``j.flag`` and ``j.corrected`` when the background rate makes 0.8 impassable (see the module)."""
    lengths = window_lengths(runs)
    rp = per[(per["mode"] == "replay") & per["seed"].isin(seeds)]
    rate = rp["rate_after"].dropna()
    if lengths is None or not len(rate):
        return
    rho = float(rate.mean()) / 1000
    p0 = {m: math.exp(-rho * L) for m, L in lengths.items()}
    if min(p0.values()) >= M11_NEED:
        return
    sub = per[per["seed"].isin(seeds)]
    conditions = {"(a) replay recurs bit for bit in every event": "yes" if a_ok else "no"}
    notes = []
    for m, tag in (("skip", "b"), ("feed", "c")):
        d = sub[sub["mode"] == m]
        k, n = int(d["clean"].sum()), int(d["clean"].sum() + d["recurred"].sum())
        need = M11_NEED * p0[m]
        said = corrected_condition(k, n, need)
        zero_hi = wilson_interval(0, n)[1] if n else math.nan
        lo_m, hi_m = wilson_interval(k, n)
        conditions[f"({tag}) {m} clean in >= {need:.4f} (0.8 p0) of events: {k}/{n}, Wilson "
                   f"[{_fmt(round(lo_m, 4))}, {_fmt(round(hi_m, 4))}]"] = said
        if n and need < zero_hi:
            notes.append(f"({tag}) {m}: 0.8 p0 = {need:.4f} is below the Wilson upper bound of 0 clean of its {n} "
                         f"events ({zero_hi:.4f}), so they cannot tell a true claim from a false one (unclear)")
    c = combine(conditions, seeds, j.value, (j.ci_low, j.ci_high), "")
    c = in_regime(c, held, reached)
    impassable = [f"({t}) {m} {p0[m]:.3f} (L = {lengths[m]:g} steps)" for m, t in (("skip", "b"), ("feed", "c"))
                  if p0[m] < M11_NEED]
    j.flag = (f"a true claim cannot pass 'clean in >= {M11_NEED:.0%} of events': the runs spike again at "
              f"{1000 * rho:.1f} per 1k steps after a first spike ({definition}, replay runs' timeline, seeds "
              f"{'/'.join(str(int(s)) for s in seeds)}), so if it held exactly a window would be spike-free with "
              f"probability p0 = exp(-rate x L): " + ", ".join(impassable) + f"; corrected: >= 0.8 x p0"
              + (f"; {'; '.join(notes)}" if notes else "") + f" (derivation: {DERIVATION})")
    j.corrected = c.verdict
    j.detail += f". Corrected rule ({c.detail})"
