"""M1 (Molybog et al. 2023, arXiv 2304.09871, §3-4): gradients independent over time give a
unimodal update distribution r = m̂/√v̂ of std √((1-β1)/(1+β1)).

The judge reads the per-layer probes ``r_std``, ``r_dip_p`` and ``r_frac_sign`` of ``replicate.probes``
at each run's last probe; each condition is decided over seeds (``verdicts.combine``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..stats import t_interval
from .frames import last_probe, layers_of, wide
from .m0_early_bimodal import SIGN
from .registry import Judgement, claim
from .verdicts import combine, inside, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# M1 (CLAIMS.md): std(r) within 5% of sqrt((1-b1)/(1+b1)); dip test p > 0.05; fraction |r| > 0.9 < 1%
M1_STD_TOL, M1_DIP_P, M1_FRAC = 0.05, 0.05, 0.01


@claim("M1", experiment="m1_iid_gradients", figures=["update_histograms"],
       source=f"{SOURCE} §3-4",
       statement="Gradients independent over time give a unimodal update distribution",
       metric="std(r) / sqrt((1-b1)/(1+b1)) at the last probe, i.i.d. N(0, 1) gradients on 1e5 coordinates "
              "(mean over seeds, t interval); beside it the dip test p and the fraction |r| > 0.9",
       threshold="std ratio in [0.95, 1.05]; dip p > 0.05; fraction < 0.01 (each by its interval over seeds)")
def m1(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["optimizer.b1"])
    layers = layers_of(w.columns, "r_std")
    rows = last_probe(w, f"r_std/{layers[0]}") if layers else w.iloc[0:0]
    ratio, dip_p, frac, seeds = [], [], [], []
    for _, r in rows.iterrows():
        expected = math.sqrt((1 - r["optimizer.b1"]) / (1 + r["optimizer.b1"]))
        rs = [r[f"r_std/{layer}"] / expected for layer in layers]
        ratio.append(max(rs, key=lambda x: abs(x - 1)))  # the layer farthest from the formula
        dip_p.append(min(r.get(f"r_dip_p/{layer}", float("nan")) for layer in layers))
        frac.append(max(r[f"r_frac_sign/{layer}"] for layer in layers))
        seeds.append(int(r["seed"]))
    conditions = {
        f"std ratio in [{1 - M1_STD_TOL:g}, {1 + M1_STD_TOL:g}]": inside(ratio, 1 - M1_STD_TOL, 1 + M1_STD_TOL),
        f"dip p > {M1_DIP_P:g}": side(dip_p, M1_DIP_P, above=True) if all(map(math.isfinite, dip_p))
        else "unclear",
        f"fraction |r| > {SIGN:g} < {M1_FRAC:g}": side(frac, M1_FRAC, above=False),
    }
    detail = (f"per seed {seeds}: std ratio {[round(x, 4) for x in ratio]}, dip p {[round(x, 3) for x in dip_p]}"
              f"{' (no dip test: diptest not installed)' if not all(map(math.isfinite, dip_p)) else ''}, "
              f"fraction |r| > {SIGN:g} {[f'{x:.1e}' for x in frac]}")
    value = float(np.mean(ratio)) if ratio else None
    return combine(conditions, sorted(set(seeds)), value, t_interval(ratio), detail)
