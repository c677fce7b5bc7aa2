"""M10 (replicate/claims/m10_eps_regimes.py) on synthetic results: both directions on both sides of
their thresholds, a baseline without spikes, too few seeds; and a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from replicate import results, train
from replicate.claims import CLAIMS, VERDICTS, _load_modules
from replicate.claims.frames import injected
from replicate.claims.m10_eps_regimes import m10

_load_modules()
N = 300
EVERY = 30  # injected batches at steps 29, 59, ...
ARMS = {"imitated_base": ("gpt", 3e-2), "imitated_fix": ("gpt", 1e-12),
        "toy_base": ("quadratic", 1e-8), "toy_fix": ("quadratic", 1.0)}


def _frames(spikes=None, final=None, seeds=(0, 1, 2)):
    """Loss series per arm: flat with 5x spikes at the given steps, 5x on the injected batch 149
    (imitated arms) and 299 (the fix arm), never counted, and a final tenth scaled by ``final[arm]``."""
    spikes = {"imitated_base": (100, 200), "imitated_fix": (), "toy_base": (150, 250), "toy_fix": (),
              **(spikes or {})}
    final = {"imitated_fix": 0.99, "toy_fix": 0.5, **(final or {})}
    rows, runs = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for arm, (model, eps) in ARMS.items():
            rid = f"{arm}-{seed}"
            loss = 2 * np.exp(0.01 * rng.standard_normal(N))
            loss[-N // 10:] *= final.get(arm, 1.0)
            for t in spikes[arm]:
                loss[t] *= 5
            if model == "gpt":
                loss[149] *= 5
            if arm == "imitated_fix":  # the last step is an injected batch: in no final loss
                loss[N - 1] *= 5
            metrics = {"loss": loss}
            if model == "gpt":  # probes every 10 steps: the stalled arm's update is 5% of r
                probe = np.where(np.arange(N) % 10 == 0, 1.0, np.nan)
                metrics.update({"u_over_r/embedding": probe * (0.05 if eps > 1e-3 else 1.0),
                                "update_rms/embedding": probe * 1e-4, "grad_rms/embedding": probe * 1e-3})
            for metric, values in metrics.items():
                ok = np.isfinite(values)
                rows.append(pd.DataFrame({"run_id": rid, "experiment": "m10_eps_regimes", "seed": seed,
                                          "status": "done", "step": np.arange(N)[ok], "metric": metric,
                                          "value": values[ok]}))
            runs.append({"run_id": rid, "seed": seed, "status": "done", "model.name": model, "optimizer.eps": eps,
                         "data.inject_every": EVERY if model == "gpt" else np.nan,
                         "data.inject_at": [] if model == "gpt" else np.nan})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(runs)


def test_m10_replicates_when_both_directions_cut_spikes_without_a_worse_loss():
    j = m10(*_frames())
    assert j.verdict == "replicated", j.detail
    assert j.seeds == [0, 1, 2] and j.value == 1.0
    assert "spikes [2, 2, 2] -> [0, 0, 0] (on injected batches, not counted: [1, 1, 1] -> [2, 2, 2])" in j.detail
    assert "embedding 0.050" in j.detail and "embedding 1.000" in j.detail  # the un-stalling, per layer


@pytest.mark.parametrize("kw", [
    dict(spikes={"imitated_base": (100,), "imitated_fix": (100,)}),  # (a) 1 -> 1 spike: no cut
    dict(spikes={"imitated_base": (100, 200, 250), "imitated_fix": (100, 200)}),  # (a) 3 -> 2: a 33% cut
    dict(spikes={"toy_fix": (150, 250)}),             # (b) the large eps does not remove them
    dict(final={"imitated_fix": 1.05}),               # (a) 5% worse final loss
    dict(final={"toy_fix": 1.03}),                    # (b) 3% worse final loss
])
def test_m10_not_replicated_when_a_direction_fails(kw):
    j = m10(*_frames(**kw))
    assert j.verdict == "not replicated", (kw, j.detail)


def test_m10_a_cut_of_exactly_half_is_enough():
    j = m10(*_frames(spikes={"imitated_fix": (100,)}))  # 2 -> 1 in (a)
    assert j.verdict == "replicated" and j.value == 0.5, j.detail


def test_m10_inconclusive_with_too_few_seeds_or_a_straddling_loss():
    assert m10(*_frames(seeds=(0, 1))).verdict == "inconclusive"
    metrics, runs = _frames()
    # a final-loss ratio whose interval straddles 1.01: 0.99, 1.00, 1.05 over the three seeds
    for seed, f in zip((0, 1, 2), (0.99, 1.0, 1.05)):
        sel = (metrics["run_id"] == f"imitated_fix-{seed}") & (metrics["metric"] == "loss") & (metrics["step"] >= N - N // 10)
        metrics.loc[sel, "value"] *= f / 0.99
    assert m10(metrics, runs).verdict == "inconclusive"


def test_injected_steps_of_a_markov_stream():
    row = pd.Series({"data.inject_every": 30, "data.inject_at": [5]})
    assert list(injected(row, np.array([5, 29, 30, 59]))) == [True, True, False, True]
    assert not injected(pd.Series({"data.inject_every": np.nan, "data.inject_at": np.nan}), np.array([29])).any()


def test_m10_is_registered_with_its_experiment():
    assert CLAIMS["M10"].experiment == "m10_eps_regimes" and CLAIMS["M10"].judge is m10


def test_m10_end_to_end_on_tiny_runs(cfg_factory, tmp_path):
    """Every arm and seed of m10_eps_regimes for 40 steps: a valid verdict."""
    for arm in ("imitated_eps_3e-2", "imitated_eps_1e-12", "toy_eps_1e-8", "toy_eps_1"):
        for seed in (0, 1, 2):
            train.run(cfg_factory("experiment=m10_eps_regimes", f"+arm/m10_eps_regimes={arm}", f"seed={seed}",
                                  "train.steps=40", "threads=1", results_dir=tmp_path))
    runs = results.runs(tmp_path, experiment="m10_eps_regimes")
    assert len(runs) == 12 and set(runs["status"]) == {"done"}
    j = m10(results.load(tmp_path, experiment="m10_eps_regimes"), runs)
    assert j.verdict in VERDICTS and j.seeds == [0, 1, 2], j.detail


def test_m10_premise_each_baseline_spikes_in_every_seed():
    """Premise held (both baselines spike in every run): the verdict stands; (a)'s baseline without a
    spike (formerly a 'not replicated' case: nothing to cut) is out of regime, its threshold's verdict
    in the detail; so is a toy baseline without a spike in one seed only."""
    j = m10(*_frames())
    assert j.premise_held and "(a) imitated 2/2/2; (b) toy 2/2/2" in j.premise
    j = m10(*_frames(spikes={"imitated_base": ()}))
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: not replicated" in j.detail and "(a) imitated 0/0/0" in j.premise
    metrics, runs = _frames()
    flat = (metrics["run_id"] == "toy_base-1") & (metrics["metric"] == "loss") & metrics["step"].isin([150, 250])
    metrics.loc[flat, "value"] /= 5  # seed 1's toy baseline: no spike
    j = m10(metrics, runs)
    assert j.verdict == "out of regime" and "(b) toy 2/0/2" in j.premise
    assert "by its threshold: not replicated" in j.detail


def test_m10_counts_the_episodes_of_the_definition_used():
    assert CLAIMS["M10"].spikes
    j = m10(*_frames(), definition="Z6")  # 5x one-step spikes on a 1% noise band: 6 sigma and more
    assert j.verdict == "replicated" and "baseline Z6 spike episodes" in j.premise
    j = m10(*_frames(), definition="R10")  # 5x spikes are no R10 episode: no baseline spikes, premise missed
    assert j.verdict == "out of regime" and "baseline R10 spike episodes" in j.premise and "0/0/0" in j.premise


def test_m10_cut_interval_is_a_bootstrap_over_seeds_within_the_seeds_cuts():
    metrics, runs = _frames()
    extra = (metrics["run_id"] == "imitated_fix-0") & (metrics["metric"] == "loss") & (metrics["step"] == 100)
    metrics.loc[extra, "value"] *= 5  # seed 0: (a) 2 -> 1, a cut of 0.5; seeds 1, 2: 1.0
    j = m10(metrics, runs)
    assert j.verdict == "replicated" and j.value == pytest.approx(5 / 6)
    assert 0.5 <= j.ci_low <= j.value <= j.ci_high <= 1.0
    one = m10(*_frames(seeds=(0,)))
    assert one.verdict == "inconclusive" and all(np.isnan(x) or x <= 1.0 for x in (one.ci_low, one.ci_high))
