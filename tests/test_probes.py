"""Probes against known answers, and the promise that they never change training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replicate import results, train
from replicate.optim import make
from replicate.probes import Probes, bimodality_coefficient


class Flat(torch.nn.Module):
    """One layer of n coordinates whose gradients the test sets by hand."""

    def __init__(self, n: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(n))

    def layers(self):
        return {"w": ["w"]}


def feed(grads, steps: int, b1=0.9, b2=0.999, eps=1e-8, every=None, **probe_cfg):
    """Adam on a Flat layer fed with grads(t); the probe metrics of the last step."""
    first = grads(0)
    model = Flat(first.numel())
    opt = make("adam", model.parameters(), lr=1e-3, b1=b1, b2=b2, eps=eps)
    probes = Probes(model, opt, {"every": every or steps - 1, **probe_cfg}, seed=0)
    out = {}
    for t in range(steps):
        model.w.grad = grads(t) if t else first
        probes.before_step(t)
        opt.step()
        out = probes.after_step(t) or out
    return out, probes


@pytest.mark.parametrize("b1", [0.9, 0.5])
def test_iid_gaussian_gradients_give_a_unimodal_r_with_the_known_std(b1):
    gen = torch.Generator().manual_seed(0)
    out, probes = feed(lambda t: torch.randn(100_000, generator=gen), steps=300, b1=b1)
    expected = math.sqrt((1 - b1) / (1 + b1))
    assert abs(out["r_std/w"] / expected - 1) < 0.05, (out["r_std/w"], expected)
    # a normal of that std: P(|r| > 0.9) is 8e-5 at b1 = 0.9 (CLAIMS M1: < 1%) and 12% at b1 = 0.5
    assert out["r_frac_sign/w"] < (0.01 if b1 == 0.9 else 0.15)
    assert out["r_bc/w"] < 5 / 9
    assert out["r_dip_p/w"] > 0.05  # the dip test does not reject unimodality
    assert 0.0 < out["u_over_r/w"] <= 1.0 and abs(out["grad_autocorr/w"]) < 0.05


def test_time_correlated_gradients_pile_up_near_plus_minus_one():
    gen = torch.Generator().manual_seed(1)
    sign = torch.where(torch.rand(100_000, generator=gen) < 0.5, -1.0, 1.0)
    out, probes = feed(lambda t: sign * (1 + 0.1 * torch.randn(100_000, generator=gen)), steps=300)
    assert out["r_frac_sign/w"] > 0.9 and out["r_bc/w"] > 5 / 9
    assert out["r_dip_p/w"] < 0.05  # bimodal: the dip test rejects unimodality
    assert out["grad_autocorr/w"] > 0.95
    h = [x for x in probes.histograms if x["quantity"] == "r" and x["step"] == 299][0]
    edges = np.linspace(h["lo"], h["hi"], len(h["counts"]) + 1)
    near_one = (np.abs((edges[:-1] + edges[1:]) / 2) > 0.8)
    assert h["counts"][near_one].sum() > 0.9 * h["counts"].sum()


def test_bimodality_coefficient_of_known_samples():
    gen = torch.Generator().manual_seed(2)
    assert bimodality_coefficient(torch.randn(100_000, generator=gen)) == pytest.approx(1 / 3, abs=0.02)
    mix = torch.where(torch.rand(100_000, generator=gen) < 0.5, -1.0, 1.0) + 0.05 * torch.randn(100_000, generator=gen)
    assert bimodality_coefficient(mix) > 0.9


def test_stalling_statistics_when_eps_dominates():
    """g ~ 1e-6·N(0,1) with ε = 1e-3: √v̂ ≪ ε everywhere, so u/r ≈ √v̂/ε and every |g| < ε."""
    gen = torch.Generator().manual_seed(3)
    out, _ = feed(lambda t: 1e-6 * torch.randn(50_000, generator=gen), steps=100, eps=1e-3)
    assert out["frac_sqrtv_below_eps/w"] == 1.0 and out["frac_g_below_eps/w"] == 1.0
    assert out["u_over_r/w"] < 1e-2
    assert out["grad_rms/w"] == pytest.approx(1e-6, rel=0.05)


def test_rms_t_and_decaying_fraction_see_v_before_the_step():
    """After 200 steps of unit gradients, a step with gradients 100× smaller: g² ≪ v for every
    coordinate (decaying) and RMS_t ≈ 0.01; a step 10× larger gives RMS_t ≈ 10."""
    n = 10_000
    small, _ = feed(lambda t: torch.ones(n) * (0.01 if t == 199 else 1.0), steps=200)
    assert small["frac_v_decaying/w"] == 1.0 and small["rms_g2_over_v/w"] == pytest.approx(0.01, rel=0.05)
    big, _ = feed(lambda t: torch.ones(n) * (10.0 if t == 199 else 1.0), steps=200)
    assert big["frac_v_decaying/w"] == 0.0 and big["rms_g2_over_v/w"] == pytest.approx(10.0, rel=0.05)


def test_curvature_on_a_diagonal_quadratic_matches_the_analytic_values(cfg_factory):
    from replicate.models import build_model

    torch.manual_seed(0)
    model = build_model({"name": "diag_quadratic", "dim": 8, "h_min": 0.5, "h_max": 4.0, "x0": 1.0,
                         "x0_spread": 0.5, "dtype": "float64"})
    opt = make("adam", model.parameters(), lr=0.01, b1=0.9, b2=0.99, eps=1e-8)
    probes = Probes(model, opt, {"every": 5, "hessian_every": 5, "hessian_iters": 20}, seed=0)
    for t in range(6):
        opt.zero_grad()
        model.loss(None).backward()
        probes.before_step(t)
        opt.step()
        out = probes.after_step(t)
    h, x = model.h, model.x.detach()
    s = opt.param_state(model.x)
    d = 1 / ((s["v"] / (1 - 0.99 ** 6)).sqrt() + 1e-8)
    g = h * x
    assert out["lambda_max_H"] == pytest.approx(4.0, rel=1e-6)
    assert out["lambda_max_Hhat"] == pytest.approx(float((h * d).max()), rel=1e-6)
    assert out["lambda_grad_Hhat"] == pytest.approx(float((g * g * h * d).sum() / (g * g).sum()), rel=1e-6)
    assert out["threshold_2_over_lr"] == pytest.approx(200.0)
    assert out["threshold_momentum"] == pytest.approx(2 * 1.9 / (0.1 * 0.01))


GPT = ["model=gpt", "data=markov", "data.batch_size=8", "data.context=16", "model.width=32", "model.heads=2",
       "optimizer.lr=3.0e-3", "train.steps=30", "train.checkpoint_every=10"]


def test_probes_never_change_training(cfg_factory, tmp_path):
    off = train.run(cfg_factory(*GPT, results_dir=tmp_path / "off"))
    on = train.run(cfg_factory(*GPT, "probe=full", "probe.every=3", "probe.hessian_every=6",
                               "probe.hessian_iters=5", results_dir=tmp_path / "on"))
    a = results.load(tmp_path / "off", metrics=["loss"]).sort_values("step")["value"].to_numpy()
    b = results.load(tmp_path / "on", metrics=["loss"]).sort_values("step")["value"].to_numpy()
    assert len(a) == len(b) == 30 and np.array_equal(a, b)


def test_a_run_with_every_probe_writes_every_metric_and_histograms(cfg_factory):
    cfg = cfg_factory(*GPT, "probe=full", "probe.every=5", "probe.hessian_every=15", "probe.hessian_iters=5")
    train.run(cfg)
    df = results.load(cfg["results_dir"])
    names = set(df["metric"])
    for layer in ("embedding", "block0", "block1", "head"):
        for m in ("grad_norm", "grad_rms", "update_norm", "update_rms", "param_norm", "param_rms",
                  "frac_g_below_eps", "frac_sqrtv_below_eps", "u_over_r", "rms_g2_over_v", "frac_v_decaying",
                  "r_frac_sign", "r_std", "r_bc", "r_dip", "r_dip_p", "grad_autocorr"):
            assert f"{m}/{layer}" in names, f"{m}/{layer}"
    for m in ("lambda_max_H", "lambda_max_Hhat", "lambda_grad_Hhat", "threshold_2_over_lr", "threshold_momentum"):
        assert m in names
    assert sorted(df[df["metric"] == "lambda_max_H"]["step"]) == [0, 15]
    assert sorted(df[df["metric"] == "r_bc/embedding"]["step"]) == [0, 5, 10, 15, 20, 25]
    h = results.load_histograms(cfg["results_dir"])
    assert len(h) == 6 * 4 * 2 and set(h["quantity"]) == {"r", "u"}
    assert all(c.sum() == n for c, n in zip(h["counts"], h["layer"].map(_layer_size(cfg))))


def test_probe_start_holds_every_probe_back_until_its_step_and_leaves_training_alone(cfg_factory, tmp_path):
    """probe.start: no per-layer, curvature or model probe before that step; the loss is unchanged,
    and at its default 0 the run's id is the one it had before the key existed."""
    cfg = cfg_factory(*GPT, "probe=full", "probe.every=5", "probe.hessian_every=10", "probe.hessian_iters=5",
                      "probe.start=12", results_dir=tmp_path / "late")
    train.run(cfg)
    df = results.load(tmp_path / "late")
    assert sorted(df[df["metric"] == "r_bc/embedding"]["step"]) == [15, 20, 25]
    assert sorted(df[df["metric"] == "lambda_max_H"]["step"]) == [20]
    plain = cfg_factory(*GPT, results_dir=tmp_path / "plain")
    train.run(plain)
    a = results.load(tmp_path / "plain", metrics=["loss"]).sort_values("step")["value"].to_numpy()
    b = df[df["metric"] == "loss"].sort_values("step")["value"].to_numpy()
    assert np.array_equal(a, b)
    at0 = cfg_factory(*GPT, "probe=full", "probe.start=0")
    assert results.run_id(at0) == results.run_id({k: v for k, v in at0.items() if k != "probe"} | {
        "probe": {k: v for k, v in at0["probe"].items() if k != "start"}})


def _layer_size(cfg):
    from replicate.models import build_model

    model = build_model(cfg["model"])
    named = dict(model.named_parameters())
    return {layer: sum(named[n].numel() for n in names) for layer, names in model.layers().items()}


def test_sgd_gets_the_metrics_that_apply_and_a_note_on_the_rest(cfg_factory):
    from replicate.models import build_model

    torch.manual_seed(0)
    model = build_model({"name": "mlp"})
    opt = make("sgd", model.parameters(), lr=0.01, momentum=0.9)
    probes = Probes(model, opt, {"every": 1, "hessian_every": 1, "hessian_iters": 4}, seed=0,
                    probe_batch=(torch.randn(16, 1), torch.randn(16, 1)))
    model.loss((torch.randn(16, 1), torch.randn(16, 1))).backward()
    probes.before_step(0)
    opt.step()
    out = probes.after_step(0)
    assert "v" in probes.notes and "r_frac_sign" in probes.notes
    assert "grad_rms/layer0" in out and "lambda_max_H" in out
    assert not any(k.startswith(("r_", "u_over_r", "rms_g2_over_v")) for k in out)
    assert "lambda_max_Hhat" not in out and not probes.histograms


def test_a_run_records_which_probes_do_not_apply_to_its_optimizer(cfg_factory):
    import json

    cfg = cfg_factory("model=mlp", "data=regression", "train.steps=12", "optimizer=sgd", "probe=layers",
                      "probe.every=5")
    train.run(cfg)
    manifest = json.loads((results.run_dir(cfg["results_dir"], cfg) / "manifest.json").read_text())
    assert "second moment" in manifest["probe_notes"] and "r_frac_sign" in manifest["probe_notes"]
    assert "grad_rms/layer0" in set(results.load(cfg["results_dir"])["metric"])


def test_update_cosine_with_the_negative_gradient():
    """cos(Δθ, -g): +1 where Adam's update follows the gradient, -1 where momentum carries it
    against a gradient that just flipped, ‖g‖₁/(√n‖g‖) for Adam's first (sign-like) step."""
    n = 1000
    out, _ = feed(lambda t: torch.ones(n), steps=20)
    assert abs(out["update_cos_neg_grad/w"] - 1) < 1e-9
    out, _ = feed(lambda t: torch.ones(n) if t < 19 else -torch.ones(n), steps=20)
    assert abs(out["update_cos_neg_grad/w"] + 1) < 1e-9
    g = torch.linspace(0.01, 1.0, n)
    out, _ = feed(lambda t: g, steps=2, every=1)  # step 1 of a constant g: u = sign(g) up to eps
    want = float(g.sum() / (math.sqrt(n) * g.norm()))
    assert abs(out["update_cos_neg_grad/w"] - want) < 1e-4 and want < 0.9


def test_autocorrelation_of_float64_gradients_whose_squares_multiply_to_underflow():
    """Σg²·Σg'² underflows to 0 for float64 gradients ~1e-90 (the quadratic after it converges);
    the autocorrelation is still defined (here 1: a constant gradient) and nothing divides by 0."""
    model = Flat(4)
    model.w.data = model.w.data.double()
    opt = make("adam", model.parameters(), lr=1e-3)
    probes = Probes(model, opt, {"every": 3}, seed=0)
    out = {}
    for t in range(4):
        model.w.grad = torch.full((4,), 1e-90, dtype=torch.float64)
        probes.before_step(t)
        opt.step()
        out = probes.after_step(t) or out
    assert out["grad_autocorr/w"] == pytest.approx(1.0)
