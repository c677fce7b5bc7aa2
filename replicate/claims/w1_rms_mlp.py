"""W1 (Wortsman et al. 2023, arXiv 2304.13013, §3.4): a loss spike follows the second-moment
estimate underestimating g².

W1 reads one spiking run at a time: its loss episodes under the spike definition judged
(``spikes.episodes``: R3, loss > 3x the median of the previous 100 non-spiking losses until back
under 1.2x it, for the verdict; R10, R100 and Z6 beside it) and the probes logged beside the loss.
Premise (CLAIMS.md): >= 10 loss episodes per seed under the definition used, none starting on an
injected batch (``verdicts.spike_premise``); unless it held in every seed, ``out of regime``.

W1, RMS_t = sqrt(mean(g^2 / v_hat)) per layer (``rms_g2_over_v/<layer>``, v_hat from *before* step
t, g of step t: the same parameters theta_t as the loss logged at step t, no shift). An RMS_t
spike is RMS_t > 1 (the second-moment estimate underestimates g^2 on average; StableAdamW's
clipping point), its onset the last upward crossing of 1 after the previous loss episode ended and
at or before this episode's peak. Lead = rise_start - onset of the earliest layer; a hit when
1 <= lead <= 8. The first layer is the one with the earliest onset (a tie at step resolution goes
to the larger RMS_t at that step). A relative definition (RMS_t > 3x the median of its previous
100 values, ``spikes.detect`` on the RMS_t series: not a loss spike, so the same under every
loss-spike definition) is reported beside it, never judged.
The same judge gives W1_gpu on ``w1_gpu``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import mean_interval
from .frames import layer_order, not_injected, onset_crossing, spiking_runs
from .registry import Judgement, claim
from .verdicts import in_regime, judged, spike_premise

WORTSMAN = "Wortsman et al. 2023 (arXiv 2304.13013)"

W1_LEAD = (1, 8)  # "1-8 steps before the rise starts" (CLAIMS.md)
W1_NEED = 0.7
W1_RMS = 1.0  # an RMS_t spike: RMS_t > 1
W1_RELATIVE = 3.0  # the relative definition reported beside it: RMS_t > 3x its running median


def w1_run(g: pd.DataFrame, ep: pd.DataFrame, lead: tuple[int, int] = W1_LEAD, level: float = W1_RMS) -> dict:
    """W1's numbers for one run: per loss episode, the RMS_t spike onset per layer, the lead of the
    earliest one over the start of the loss rise, and the layer that crossed first."""
    layers = layer_order([c.split("/", 1)[1] for c in g.columns if c.startswith("rms_g2_over_v/")])
    rms = {layer: g[f"rms_g2_over_v/{layer}"].dropna() for layer in layers}
    rel = {layer: spikes.detect(x.to_numpy(), x.index.to_numpy(), factor=W1_RELATIVE) for layer, x in rms.items()}
    rows, prev_end = [], -1
    for _, e in ep.iterrows():
        rs, peak = int(e["rise_start"]), int(e["peak"])
        onset = {layer: onset_crossing(x, prev_end, peak, level) for layer, x in rms.items()}
        onset = {layer: t for layer, t in onset.items() if t is not None}
        row = {"rise_start": rs, "lead": np.nan, "first": None, "lead_rel": np.nan, "isolated": rs - prev_end > 50}
        if onset:
            first = min(onset, key=lambda la: (onset[la], -float(rms[la].get(onset[la], 0.0))))
            row.update(lead=rs - onset[first], first=first)
        rel_on = [max(t) for t in ([int(t) for t in d["start"] if prev_end < t <= peak] for d in rel.values()) if t]
        if rel_on:  # per layer its last RMS_t episode starting in (prev_end, peak]; the earliest layer
            row["lead_rel"] = rs - min(rel_on)
        rows.append(row)
        prev_end = int(e["end"])
    df = pd.DataFrame(rows, columns=["rise_start", "lead", "first", "lead_rel", "isolated"])
    ok = df["lead"].between(*lead)
    return {"spikes": len(df), "hit": int(ok.sum()), "layers": layers, "episodes": df,
            "hit_rel": int(df["lead_rel"].between(*lead).sum())}


@claim("W1", experiment="w1_rms_mlp", gpu="w1_gpu", figures=["rms_lead"], spikes=True,
       source=f"{WORTSMAN} §3.4",
       statement="Loss spikes follow 1-8 steps after the second-moment estimate underestimates g^2: "
                 "RMS_t = sqrt(mean(g^2/v)) spikes first, in the shallow layer",
       metric=f"per seed: fraction of loss spikes (R3 episodes: > 3x the median of the previous 100 non-spiking "
              f"losses, until back under 1.2x; R10, R100, Z6 beside it) whose earliest RMS_t "
              f"spike (RMS_t > {W1_RMS:g} in any layer) begins {W1_LEAD[0]}-{W1_LEAD[1]} steps before the loss rise "
              "starts (first step > 1.2x baseline); value = mean over seeds; and the shallowest layer crosses first "
              "most often (pooled)",
       threshold=f">= {W1_NEED}, and the shallowest layer first most often; premise: >= 10 loss spikes per seed "
                 "under the definition")
def w1(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    frac, frac_rel, per, n_spikes = {}, {}, {}, {}
    info = runs.set_index("run_id")
    for seed, g, ep in spiking_runs(metrics, runs, definition):
        n_spikes[seed] = n_spikes.get(seed, 0) + not_injected(ep, info.loc[g["run_id"].iloc[0]])
        r = w1_run(g, ep)
        per[seed] = r
        if r["spikes"] and r["layers"]:
            frac[seed] = r["hit"] / r["spikes"]
            frac_rel[seed] = r["hit_rel"] / r["spikes"]
    value, lo, hi = mean_interval(frac, bounds=(0.0, 1.0))
    seeds = sorted(frac)
    eps = pd.concat([per[s]["episodes"].assign(seed=s) for s in seeds], ignore_index=True) if seeds else pd.DataFrame()
    shallow = per[seeds[0]]["layers"][0] if seeds else None
    counts = eps["first"].value_counts() if len(eps) else pd.Series(dtype=int)
    shallow_first = bool(len(counts)) and counts.get(shallow, 0) > max([c for la, c in counts.items() if la != shallow],
                                                                       default=0)
    verdict = judged(seeds, value >= W1_NEED and shallow_first)
    detail = ""
    if len(eps):
        lead = eps["lead"].dropna()
        iso = eps[eps["isolated"]]
        detail = (f"{len(eps)} {definition} loss spikes over {len(seeds)} seeds; per seed hit fraction "
                  + ", ".join(f"{s}: {frac[s]:.2f}" for s in seeds)
                  + f"; lead of RMS_t > {W1_RMS:g} over the rise start: median {lead.median():.0f} steps "
                    f"(quartiles {lead.quantile(0.25):.0f}, {lead.quantile(0.75):.0f}), none for {eps['lead'].isna().sum()}"
                  + f"; first layer to cross: " + ", ".join(f"{la} {c}" for la, c in counts.items())
                  + f"; isolated spikes (no episode in the 50 steps before) {len(iso)}, hit fraction "
                    f"{iso['lead'].between(*W1_LEAD).mean() if len(iso) else float('nan'):.2f}"
                  + f"; relative definition (RMS_t > {W1_RELATIVE:g}x its running median, not judged): hit fraction "
                    f"{np.mean(list(frac_rel.values())):.2f}, median lead {eps['lead_rel'].median():.0f}")
    held, reached = spike_premise(n_spikes, definition)
    return in_regime(Judgement(verdict, value, lo, hi, seeds, detail), held, reached)
