"""S1 (replicate/claims/s1_surge.py) on synthetic grids on both sides of its thresholds and with too
few seeds; the noisy quadratic and its gradient-noise stream; a tiny end-to-end grid."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from replicate import results, train
from replicate.claims import CLAIMS, _load_modules
from replicate.claims.s1_surge import optimal_lr, s1
from replicate.data import build_data
from replicate.models import build_model

_load_modules()
BATCHES = (4, 32, 256, 2048)
LRS = (0.0035, 0.007, 0.014, 0.028, 0.056)
GRID_LRS = (0.00175, *LRS, 0.112)  # the synthetic runs' grid: wide enough that every optimum is interior (the premise)
GOOD = {"sgd": (0.005, 0.012, 0.025, 0.04), "adam eps=1e-08": (0.01, 0.03, 0.02, 0.008),
        "adam eps=0.3": (0.01, 0.03, 0.03, 0.022)}


def grid(curves: dict[str, tuple], seeds=(0, 1, 2), steps: int = 10):
    """Runs whose final loss is exp((log lr - log eta*(B))^2) (times a constant): the optimum of each
    (arm, batch, seed) is eta*(B) times a small per-seed jitter, recovered exactly by the parabola."""
    mrows, rrows = [], []
    for arm, etas in curves.items():
        name, eps = ("sgd", np.nan) if arm == "sgd" else ("adam", float(arm.split("=")[1]))
        for seed in seeds:
            jitter = 1 + 0.05 * (seed - 1)
            for b, eta in zip(BATCHES, etas):
                for lr in GRID_LRS:
                    rid = f"{arm}-{b}-{lr}-{seed}"
                    loss = 0.1 * math.exp((math.log(lr) - math.log(eta * jitter)) ** 2)
                    rrows.append({"run_id": rid, "seed": seed, "status": "done", "optimizer.name": name,
                                  "optimizer.lr": lr, "optimizer.eps": eps, "data.batch_size": b})
                    for step in range(steps):
                        mrows.append({"run_id": rid, "experiment": "s1_surge", "seed": seed, "status": "done",
                                      "step": step, "metric": "loss", "value": loss * (2.0 if step < 5 else 1.0)})
    return pd.DataFrame(mrows), pd.DataFrame(rrows)


def test_the_judge_is_registered_in_place_of_the_pending_placeholder():
    assert CLAIMS["S1"].judge is s1 and CLAIMS["S1"].experiment == "s1_surge"


def test_optimal_lr_recovers_a_parabola_vertex_and_flags_grid_edges():
    lrs = np.array(LRS)
    eta = 0.02
    lr, edge = optimal_lr(lrs, np.exp((np.log(lrs) - np.log(eta)) ** 2))
    assert lr == pytest.approx(eta, rel=1e-6) and not edge
    lr, edge = optimal_lr(lrs, np.exp((np.log(lrs) - np.log(1.0)) ** 2))  # optimum above the grid
    assert lr == LRS[-1] and edge
    lr, _ = optimal_lr(lrs, np.array([3.0, 2.0, 1.0, np.inf, np.nan]))  # diverged neighbours count as worst
    assert lr == LRS[2]


def test_replicated_with_an_interior_peak_a_rising_sgd_and_a_flatter_large_eps():
    j = s1(*grid(GOOD))
    assert j.verdict == "replicated", j.detail
    assert j.seeds == [0, 1, 2] and j.value == pytest.approx(0.03 / 0.008, rel=1e-6)
    assert "peak batch adam eps=1e-08 [32, 32, 32]" in j.detail


def test_not_replicated_when_adam_only_rises_sgd_falls_or_eps_does_not_flatten():
    rising = {**GOOD, "adam eps=1e-08": (0.01, 0.02, 0.03, 0.04)}
    assert s1(*grid(rising)).verdict == "not replicated"
    sgd_falls = {**GOOD, "sgd": (0.005, 0.025, 0.012, 0.04)}
    assert s1(*grid(sgd_falls)).verdict == "not replicated"
    same_drop = {**GOOD, "adam eps=0.3": (0.01, 0.03, 0.02, 0.007)}  # the large eps falls further
    j = s1(*grid(same_drop))
    assert j.verdict == "not replicated" and "drop shrinks from adam eps=1e-08 to adam eps=0.3 (log ratio > 0): no" in j.detail


def test_inconclusive_with_too_few_seeds_or_a_missing_arm():
    assert s1(*grid(GOOD, seeds=(0, 1))).verdict == "inconclusive"
    metrics, runs = grid({k: v for k, v in GOOD.items() if k != "sgd"})
    assert s1(metrics, runs).verdict == "inconclusive"


def test_noisy_quadratic_returns_the_exact_loss_and_the_noisy_gradient():
    torch.manual_seed(0)
    model = build_model({"name": "noisy_quadratic", "dim": 32, "block": 8, "diag": 0.1, "offdiag": 0.5})
    H = torch.block_diag(*[0.1 * torch.eye(8) + 0.5 * torch.ones(8, 8)] * 4)
    x = model.x.detach().clone()
    xi = build_data({"name": "gradient_noise", "n": 32, "sigma": 2.0, "batch_size": 4}).batch_at(0)
    loss = model.loss(xi)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * float(x @ H @ x), rel=1e-5)
    assert torch.allclose(model.x.grad, H @ x + xi, atol=1e-5)
    assert (x > 0).all()  # the start's signs agree with the positive off-diagonal curvature
    with pytest.raises(ValueError):
        build_model({"name": "noisy_quadratic", "dim": 30, "block": 8})


def test_gradient_noise_variance_falls_as_one_over_the_batch():
    for b in (1, 16, 256):
        xi = build_data({"name": "gradient_noise", "seed": 3, "n": 100_000, "sigma": 2.0, "batch_size": b}).batch_at(5)
        assert float(xi.std()) == pytest.approx(2.0 / math.sqrt(b), rel=0.02)
    s = build_data({"name": "gradient_noise", "seed": 3, "n": 10})
    assert torch.equal(s.batch_at(7), s.batch_at(7)) and not torch.equal(s.batch_at(7), s.batch_at(8))


def test_a_tiny_grid_of_the_experiment_gives_a_valid_verdict(cfg_factory, tmp_path):
    """The experiment's workload, 3 seeds x 3 arms x 3 batches x 3 learning rates x 20 steps, judged."""
    for arm in ("sgd", "adam", "adam_eps"):
        base = cfg_factory("experiment=s1_surge", f"+arm/s1_surge={arm}", "train.steps=20", "threads=1")
        for b in (4, 256, 2048):
            for lr in (0.007, 0.014, 0.028):
                for seed in (0, 1, 2):  # composed once per arm: the grid's keys set as a sweep would
                    train.run({**base, "seed": seed, "data": {**base["data"], "batch_size": b, "seed": seed},
                               "optimizer": {**base["optimizer"], "lr": lr}})
    root = tmp_path / "results"
    runs = results.runs(root, experiment="s1_surge")
    j = s1(results.load(root, experiment="s1_surge"), runs)
    assert len(runs) == 81 and j.seeds == [0, 1, 2]
    assert j.verdict in ("replicated", "not replicated", "inconclusive", "out of regime") and j.value > 0 and "sgd" in j.detail


def test_premise_every_optimum_inside_the_grid():
    """The premise (Adam's and SGD's optima inside the grid at every batch): held, the verdict stands;
    an optimum at the grid's edge in one seed makes it out of regime, the threshold's verdict in the detail."""
    j = s1(*grid(GOOD))
    assert j.premise_held and "0/0/0" in j.premise
    metrics, runs = grid(GOOD)
    drop = runs[(runs["seed"] == 2) & (runs["optimizer.name"] == "sgd") & (runs["data.batch_size"] == 4)
                & (runs["optimizer.lr"] < 0.007)]["run_id"]  # seed 2, sgd, batch 4: the grid starts at its optimum
    keep = ~runs["run_id"].isin(drop)
    j = s1(metrics[metrics["run_id"].isin(runs[keep]["run_id"])], runs[keep])
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "0/0/1" in j.premise
