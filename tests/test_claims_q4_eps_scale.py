"""Q4 (replicate/claims/q4_eps_scale.py) on synthetic probes: which x collapses ||u||/||r|| onto one
curve, where it crosses 0.5, too few seeds; the sqrtv_rms probe; a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from replicate import results, train
from replicate.claims import CLAIMS, _load_modules
from replicate.claims.q4_eps_scale import crossing, fit_seed, monotone_fit, q4
from replicate.optim import make
from replicate.probes import Probes

_load_modules()
SIZES = {"[16, 16]": (3e-2, 1e-2, 3e-3), "[128, 128]": (3e-3, 3e-4, 1e-3), "[16, 16, 16, 16]": (1e-2, 2e-3, 5e-4, 2e-2)}
EPS = (1e-4, 1e-3, 1e-2)


def probes_frame(y_of, seeds=(0, 1, 2), steps=(100, 125, 150)):
    """Tidy metrics and runs: per layer a scale s (sqrt v and grad RMS, jittered by seed) and
    y = y_of(eps, s) at every probe step."""
    mrows, rrows = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for hidden, scales in SIZES.items():
            for eps in EPS:
                rid = f"{hidden}-{eps}-{seed}"
                rrows.append({"run_id": rid, "seed": seed, "status": "done", "optimizer.eps": eps, "model.hidden": hidden})
                for k, s in enumerate(scales):
                    s = s * float(np.exp(0.1 * rng.standard_normal()))
                    for step in steps:
                        for metric, v in ((f"u_over_r/layer{k}", y_of(eps, s)), (f"grad_rms/layer{k}", s),
                                          (f"sqrtv_rms/layer{k}", s)):
                            mrows.append({"run_id": rid, "experiment": "q4_eps_scale", "seed": seed,
                                          "status": "done", "step": step, "metric": metric, "value": v})
    return pd.DataFrame(mrows), pd.DataFrame(rrows)


def test_the_judge_is_registered_in_place_of_the_pending_placeholder():
    assert CLAIMS["Q4"].judge is q4 and CLAIMS["Q4"].experiment == "q4_eps_scale"


def test_one_curve_of_eps_over_the_layer_scale_beats_eps_alone_when_y_depends_on_the_ratio():
    j = q4(*probes_frame(lambda eps, s: 1 / (1 + eps / s)))
    assert j.verdict == "answered" and j.seeds == [0, 1, 2]
    assert j.value == pytest.approx(1.0, abs=1e-9) and j.ci_low <= 1.0  # a perfect monotone fit
    assert "Best single variable: eps/grad_rms" in j.detail or "Best single variable: eps/sqrtv_rms" in j.detail
    r2_eps = float(j.detail.split("x = eps: R^2 ")[1].split(" ")[0])
    assert r2_eps < 0.8  # eps alone leaves the spread between layers unexplained
    x50 = float(j.detail.split("x = eps/sqrtv_rms: ")[1].split("0.5 at x = ")[1].split(" ")[0])
    assert x50 == pytest.approx(1.0, rel=0.35)  # 1/(1+x) = 0.5 at x = 1 (interpolated between points)


def test_eps_alone_wins_when_y_depends_on_eps_only():
    j = q4(*probes_frame(lambda eps, s: 1 / (1 + eps / 1e-3)))
    assert j.verdict == "answered" and "Best single variable: eps." in j.detail
    assert j.value < 0.9


def test_inconclusive_with_too_few_seeds():
    assert q4(*probes_frame(lambda eps, s: 1 / (1 + eps / s), seeds=(0, 1))).verdict == "inconclusive"


def test_monotone_fit_pools_ties_and_crossing_interpolates():
    ux, curve, fitted = monotone_fit(np.log(np.array([1.0, 1.0, 10.0, 100.0])), np.array([1.0, 0.8, 0.6, 0.2]))
    assert np.allclose(fitted, [0.9, 0.9, 0.6, 0.2]) and len(ux) == 3
    assert crossing(ux, curve) == pytest.approx(10 ** 1.25, rel=1e-6)  # 0.6 at 10, 0.2 at 100: 0.5 a quarter on
    assert np.isnan(crossing(ux, np.array([0.9, 0.8, 0.7])))
    p = pd.DataFrame({"eps": [1e-3] * 4, "grad_rms": [1e-4, 1e-3, 1e-2, 1e-1], "sqrtv_rms": 1.0,
                      "y": [0.1, 0.5, 0.9, 0.99]})
    f = fit_seed(p, "eps/grad_rms")
    assert f["r2"] == pytest.approx(1.0) and f["rho"] == pytest.approx(-1.0) and f["x50"] == pytest.approx(1.0)


def test_sqrtv_rms_probe_is_the_rms_of_sqrt_v_hat():
    w = torch.nn.Parameter(torch.zeros(10_000))
    model = torch.nn.Module()
    model.w = w
    model.layers = lambda: {"w": ["w"]}
    opt = make("adam", [w], lr=1e-3, eps=1e-3)
    probes = Probes(model, opt, {"every": 1, "dip": False}, seed=0)
    gen = torch.Generator().manual_seed(0)
    for t in range(50):
        w.grad = 1e-4 * torch.randn(10_000, generator=gen)
        probes.before_step(t)
        opt.step()
        out = probes.after_step(t)
    assert out["sqrtv_rms/w"] == pytest.approx(1e-4, rel=0.05)
    assert out["u_over_r/w"] == pytest.approx(1 / (1 + 1e-3 / 1e-4), rel=0.3)  # the one-curve prediction


def test_a_tiny_run_of_the_experiment_gives_an_answer(cfg_factory, tmp_path):
    for hidden in ("[8,8]", "[32,32]"):
        for eps in (1e-4, 1e-2):
            for seed in (0, 1, 2):
                train.run(cfg_factory("experiment=q4_eps_scale", f"model.hidden={hidden}", f"optimizer.eps={eps}",
                                      f"seed={seed}", "train.steps=31", "probe.every=10", "threads=1"))
    root = tmp_path / "results"
    j = q4(results.load(root, experiment="q4_eps_scale"), results.runs(root, experiment="q4_eps_scale"))
    assert j.verdict == "answered" and j.seeds == [0, 1, 2] and 0 <= j.value <= 1
    assert "2 model sizes" in j.detail
