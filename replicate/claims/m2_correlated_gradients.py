"""M2 (Molybog et al. 2023, arXiv 2304.09871, §3-4): time-correlated gradients pile r = m̂/√v̂ up
near ±1 (sign descent), more so as the signal-to-noise ratio grows.

The judge reads the per-layer probes ``r_frac_sign`` and ``r_abs_mean`` of ``replicate.probes`` at
each run's last probe; each condition is decided over seeds (``verdicts.combine``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..stats import t_interval
from .frames import last_probe, layers_of, wide
from .m0_early_bimodal import SIGN
from .registry import Judgement, claim
from .verdicts import combine, every_seed, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# M2 (CLAIMS.md): fraction |r| > 0.9 above 0.9 at SNR >= 3
M2_FRAC, M2_HIGH_SNR = 0.9, 3.0


def rises(values: Sequence[float]) -> bool:
    """Never falls, and ends higher than it starts."""
    v = np.asarray(values, dtype=float)
    return bool(len(v) >= 2 and np.all(np.diff(v) >= 0) and v[-1] > v[0])


@claim("M2", experiment="m2_correlated_gradients", figures=["update_histograms"],
       source=f"{SOURCE} §3-4",
       statement="Time-correlated gradients make the update distribution bimodal near +-1 (sign descent), "
                 "more so as the per-coordinate signal-to-noise ratio grows",
       metric="fraction |r| > 0.9 at SNR >= 3 (its minimum over SNR 3 and 10; mean over seeds, t interval), "
              "gradients = fixed +-1 signal + N(0, 1/SNR^2) noise on 1e5 coordinates; beside it, whether mean |r| "
              "and the fraction rise with SNR (0.3, 1, 3, 10) in every seed",
       threshold="both rise monotonically in every seed; fraction > 0.9 at SNR >= 3")
def m2(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["data.snr"])
    layers = layers_of(w.columns, "r_frac_sign")
    rows = last_probe(w, f"r_frac_sign/{layers[0]}") if layers else w.iloc[0:0]
    high, mono, seeds, table = [], [], [], {}
    for seed, g in rows.groupby("seed"):
        g = g.sort_values("data.snr")
        snr = g["data.snr"].to_numpy(dtype=float)
        if len(snr) < 3 or not (snr >= M2_HIGH_SNR).any():
            continue  # an incomplete sweep: this seed cannot be judged
        frac = np.min([g[f"r_frac_sign/{layer}"].to_numpy(dtype=float) for layer in layers], axis=0)
        absr = np.min([g[f"r_abs_mean/{layer}"].to_numpy(dtype=float) for layer in layers], axis=0) \
            if all(f"r_abs_mean/{layer}" in g for layer in layers) else np.full(len(snr), np.nan)
        seeds.append(int(seed))
        mono.append(rises(frac) and rises(absr))
        high.append(float(frac[snr >= M2_HIGH_SNR].min()))
        for s, f, a in zip(snr, frac, absr):
            table.setdefault(float(s), []).append((f, a))
    conditions = {"mean |r| and fraction rise with SNR in every seed": every_seed(mono),
                  f"fraction |r| > {SIGN:g} at SNR >= {M2_HIGH_SNR:g} above {M2_FRAC:g}":
                      side(high, M2_FRAC, above=True)}
    detail = "mean over seeds by SNR (fraction |r| > 0.9 / mean |r|): " + "; ".join(
        f"{s:g}: {np.mean([x[0] for x in v]):.3f} / {np.mean([x[1] for x in v]):.3f}" for s, v in sorted(table.items()))
    value = float(np.mean(high)) if high else None
    return combine(conditions, seeds, value, t_interval(high), detail)
