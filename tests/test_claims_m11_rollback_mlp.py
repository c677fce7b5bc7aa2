"""M11 (replicate/claims/m11_rollback_mlp.py): the judge on synthetic results on both sides of its
threshold and with too few seeds; the rollback outcome counts (rollback_recurred / rollback_clean)
on a run with a planted bad batch; and the judge end to end on real runs of the three modes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from replicate import mitigations, results, train
from replicate.optim import make
from replicate.claims import CLAIMS, _load_modules, evaluate
from replicate.claims.m11_rollback_mlp import m11
from replicate.data import Regression
from replicate.stats import wilson_interval

_load_modules()
N, RESTORE, SPIKE, LOSS = 300, 100, 200, 0.05
# the run's other spikes (the premise: >= 10 per seed in the replay run), 50x for one step each
OTHERS = tuple(t for t in range(20, N, 20) if t != SPIKE)  # 13


def run_rows(mode: str, outcomes: list[str], exact: bool = True, others=OTHERS) -> dict[str, np.ndarray]:
    """A run's wide metrics: events at RESTORE (the last one's row survives, as in the loop), the
    counts of recurred / clean outcomes on the rows where they are decided; the loss spikes at
    ``others`` (and at SPIKE when its last event recurred)."""
    nan = np.full(N, np.nan)
    m = {k: nan.copy() for k in ("rollbacks", "rollback_recurred", "rollback_clean", "rollback_spike_step",
                                 "rollback_spike_loss")}
    m["loss"] = 1e-3 * np.ones(N)
    m["loss"][list(others)] = LOSS
    rec = sum(o == "recur" for o in outcomes[:-1])
    clean = sum(o == "clean" for o in outcomes[:-1])
    m["rollbacks"][RESTORE] = len(outcomes)
    m["rollback_spike_step"][RESTORE], m["rollback_spike_loss"][RESTORE] = SPIKE, LOSS
    m["rollback_recurred"][RESTORE], m["rollback_clean"][RESTORE] = rec, clean
    last = outcomes[-1]
    if last == "recur":
        m["loss"][SPIKE] = LOSS if exact else LOSS * (1 + 1e-6)
        m["rollback_recurred"][SPIKE], m["rollback_clean"][SPIKE] = rec + 1, clean
    elif last == "clean":
        m["rollback_recurred"][SPIKE + 20], m["rollback_clean"][SPIKE + 20] = rec, clean + 1
    return m


def frames(spec: dict[tuple[str, int], list[str]], exact: bool = True, few: int | None = None,
           inject: dict[int, list[int]] | None = None, others=OTHERS, config: dict | None = None):
    """``few``: that seed's runs spike 9 times (one short of the premise); ``inject``: per seed, the
    steps its runs' config marks as injected batches (``data.inject_at``); ``others``: the runs' other
    spikes; ``config``: more config keys of every run (e.g. mitigation.rollback.back)."""
    tidy, runs = [], []
    for (mode, seed), outcomes in spec.items():
        rid = f"{mode}{seed}"
        others_ = others[:8] if seed == few else others
        for name, values in run_rows(mode, outcomes, exact, others_).items():
            ok = np.isfinite(values)
            tidy.append(pd.DataFrame({"run_id": rid, "experiment": "m11_rollback_mlp", "seed": seed,
                                      "status": "done", "step": np.arange(N)[ok], "metric": name,
                                      "value": values[ok]}))
        runs.append({"run_id": rid, "seed": seed, "status": "done", "mitigation.rollback.mode": mode,
                     "data.inject_at": list((inject or {}).get(seed, [])), "data.inject_every": 0, **(config or {})})
    return pd.concat(tidy, ignore_index=True), pd.DataFrame(runs)


def spec(skip, feed, replay=None, seeds=(0, 1, 2)):
    replay = replay or [["recur"]] * len(seeds)
    out = {}
    for i, s in enumerate(seeds):
        out[("replay", s)], out[("skip", s)], out[("feed", s)] = replay[i], skip[i], feed[i]
    return out


def test_m11_replicates_when_replay_recurs_exactly_and_skip_and_feed_stay_clean():
    seven = [["clean"] * 7] * 3  # 21 of 21 clean: Wilson interval [0.85, 1]
    j = m11(*frames(spec(skip=seven, feed=seven)))
    assert j.verdict == "replicated" and j.value == 1.0 and j.seeds == [0, 1, 2] and j.ci_low > 0.8
    assert "(a) replay: 0/3 clean, 3 recurred" in j.detail and "bit for bit: yes (3/3" in j.detail


def test_m11_not_replicated_when_skip_recurs_or_replay_is_not_exact_or_does_not_recur():
    j = m11(*frames(spec(skip=[["recur"], ["recur"], ["clean"]], feed=[["clean"]] * 3)))
    assert j.verdict == "not replicated" and j.value == pytest.approx(1 / 3) and j.ci_high < 0.8
    seven = [["clean"] * 7] * 3
    j = m11(*frames(spec(skip=seven, feed=seven), exact=False))
    assert j.verdict == "not replicated" and "bit for bit: no" in j.detail
    j = m11(*frames(spec(skip=seven, feed=seven, replay=[["recur"], ["recur"], ["clean"]])))
    assert j.verdict == "not replicated"
    # feed recurring in 10 of 21 events: 0.52, interval below 0.8
    mixed = [["recur"] * 4 + ["clean"] * 3, ["recur"] * 3 + ["clean"] * 4, ["recur"] * 3 + ["clean"] * 4]
    j = m11(*frames(spec(skip=seven, feed=mixed)))
    assert j.verdict == "not replicated" and j.value == pytest.approx(11 / 21) and j.ci_high < 0.8


def test_m11_inconclusive_with_too_few_seeds_or_an_interval_across_the_threshold():
    j = m11(*frames(spec(skip=[["clean"]] * 2, feed=[["clean"]] * 2, seeds=(0, 1))))
    assert j.verdict == "inconclusive" and j.seeds == [0, 1]
    # 3 clean of 3 in both modes: Wilson [0.44, 1] straddles 0.8 (too few events to show >= 80%)
    j = m11(*frames(spec(skip=[["clean"]] * 3, feed=[["clean"]] * 3)))
    assert j.value == 1.0 and j.ci_low < 0.8 <= j.ci_high and j.verdict == "inconclusive"
    # undecided events (the run ended inside the window) are not counted
    j = m11(*frames(spec(skip=[["clean"], ["clean"], ["open"]], feed=[["clean"]] * 3)))
    assert j.verdict == "inconclusive" and j.seeds == [0, 1] and "1 undecided" in j.detail


def test_m11_premise_ten_spikes_per_seed_in_the_replay_run_injected_batches_not_counted():
    seven = [["clean"] * 7] * 3
    j = m11(*frames(spec(skip=seven, feed=seven)))
    assert j.premise_held and "per seed (0/1/2): 14/14/14" in j.premise and "replay run" in j.premise
    j = m11(*frames(spec(skip=seven, feed=seven), few=1))
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "14/9/14" in j.premise  # 8 others + the spike
    j = m11(*frames(spec(skip=seven, feed=seven), few=1, exact=False))
    assert j.verdict == "out of regime" and "by its threshold: not replicated" in j.detail
    # the skip runs' spikes are not the premise's: only the replay run (the spiking run's timeline) counts
    cut = frames(spec(skip=seven, feed=seven))
    metrics, runs = cut
    keep = ~((metrics["run_id"] == "replay2") & (metrics["metric"] == "loss") & (metrics["step"] < 150))
    j = m11(metrics[keep], runs)
    assert j.verdict == "out of regime" and "14/14/7" in j.premise
    j = m11(*frames(spec(skip=seven, feed=seven), inject={0: [20, 40, 60, 80, 100]}))
    assert j.verdict == "out of regime" and "9/14/14" in j.premise and "injected batches not counted" in j.premise
    j = m11(*frames(spec(skip=seven, feed=seven), inject={0: [20, 40, 60, 80]}))
    assert j.verdict == "replicated" and "10/14/14" in j.premise


# ------------------------------------------------- the flagged threshold and its corrected verdict
WINDOWS = {"mitigation.rollback.back": 100, "mitigation.rollback.recur": 20, "mitigation.rollback.feed": 20}
QUIET = tuple(range(20, SPIKE, 20))  # 9 spikes before SPIKE, none after: rate after the spike 0, p0 = 1
BUSY = QUIET + (240,)  # one spike in the 99 steps after SPIKE: 10.1 per 1k; p0 = 0.298 (L 120), 0.668 (L 40)
P0_SKIP, P0_FEED = math.exp(-120 / 99), math.exp(-40 / 99)


def per_seed(clean: int, recur: int, seeds: int = 3) -> list[list[str]]:
    return [["recur"] * recur + ["clean"] * clean] * seeds


def test_m11_not_flagged_on_a_quiet_background():
    j = m11(*frames(spec(skip=per_seed(7, 0), feed=per_seed(7, 0)), others=QUIET, config=WINDOWS))
    assert j.premise_held and "0.0 per 1k" in j.detail  # rate after the first spike: 0, p0 = 1
    assert j.verdict == "replicated" and j.flag == "" and j.corrected is None


def test_m11_flagged_on_a_busy_background_and_a_true_claim_passes_the_corrected_threshold():
    # clean fractions at p0: 30 of 100 per seed (skip), 67 of 100 (feed)
    j = m11(*frames(spec(skip=per_seed(30, 70), feed=per_seed(67, 33)), others=BUSY, config=WINDOWS))
    assert j.premise_held and j.verdict == "not replicated" and j.value == pytest.approx(0.3)  # pre-set stays
    assert "10.1 per 1k" in j.flag and f"(b) skip {P0_SKIP:.3f} (L = 120 steps)" in j.flag
    assert f"(c) feed {P0_FEED:.3f} (L = 40 steps)" in j.flag
    assert "derivation: conf/experiment/m11_rollback_mlp.yaml header" in j.flag and "cannot tell" not in j.flag
    assert wilson_interval(90, 300)[0] >= 0.8 * P0_SKIP and wilson_interval(201, 300)[0] >= 0.8 * P0_FEED
    assert j.corrected == "replicated", j.detail
    # the same under a failed premise: out of regime, the corrected verdict too
    j = m11(*frames(spec(skip=per_seed(30, 70), feed=per_seed(67, 33)), others=BUSY, config=WINDOWS, few=1))
    assert j.verdict == "out of regime" and j.flag and j.corrected == "out of regime"


def test_m11_corrected_not_replicated_when_nothing_is_clean_in_many_events():
    assert wilson_interval(0, 300)[1] < 0.8 * P0_SKIP  # 300 events can tell p0 from 0
    j = m11(*frames(spec(skip=per_seed(0, 100), feed=per_seed(0, 100)), others=BUSY, config=WINDOWS))
    assert j.flag and j.verdict == "not replicated" and j.corrected == "not replicated", j.detail
    # one mode clean at p0, the other never: still not replicated
    j = m11(*frames(spec(skip=per_seed(30, 70), feed=per_seed(0, 100)), others=BUSY, config=WINDOWS))
    assert j.corrected == "not replicated"
    # (a) not recurring: not replicated under the corrected threshold as under the pre-set one
    j = m11(*frames(spec(skip=per_seed(30, 70), feed=per_seed(67, 33), replay=[["recur"], ["recur"], ["clean"]]),
                    others=BUSY, config=WINDOWS))
    assert j.verdict == "not replicated" and j.corrected == "not replicated"


def test_m11_corrected_inconclusive_with_too_few_events_the_power_check():
    # skip: 0 of 6 has Wilson upper bound 0.39, above 0.8 p0 = 0.238; feed: 0 of 3, 0.56, above 0.534
    assert wilson_interval(0, 6)[1] > 0.8 * P0_SKIP and wilson_interval(0, 3)[1] > 0.8 * P0_FEED
    for skip, feed in ((per_seed(0, 1), per_seed(0, 1)), (per_seed(2, 0), per_seed(2, 0)),
                       (per_seed(0, 2), per_seed(67, 33))):
        j = m11(*frames(spec(skip=skip, feed=feed), others=BUSY, config=WINDOWS))
        assert j.flag and "cannot tell a true claim from a false one" in j.flag
        assert j.corrected == "inconclusive", (skip, feed, j.detail)
    # 0 of 6 feed events does have the power (upper bound 0.39 < 0.534): not replicated
    j = m11(*frames(spec(skip=per_seed(0, 2), feed=per_seed(0, 2)), others=BUSY, config=WINDOWS))
    assert j.corrected == "not replicated" and "(c) feed" not in j.flag.split("corrected")[1]
    # the workload's own rate (37.8 per 1k): p0 = 0.011 for (b), so 0.8 p0 = 0.009 needs ~445 events
    assert wilson_interval(0, 440)[1] > 0.8 * math.exp(-0.0378 * 120) > wilson_interval(0, 450)[1]


def test_m11_is_registered_with_its_experiment():
    assert CLAIMS["M11"].experiment == "m11_rollback_mlp" and CLAIMS["M11"].judge is m11


# ------------------------------------------------------------------- the outcome counts, end to end
BAD = 33  # a planted bad batch: targets shifted by 100, its loss ~1e4 x the others (bad data per se)


@pytest.fixture
def planted(monkeypatch):
    real = Regression.batch_at

    def batch_at(self, i):
        x, y = real(self, i)
        return (x, y + 100.0) if i == BAD else (x, y)

    monkeypatch.setattr(Regression, "batch_at", batch_at)


ROLLBACK = ["model=mlp", "data=regression", "data.batch_size=null", "threads=1", "optimizer.lr=3e-3",
            "train.steps=60", "mitigation=[rollback]", "mitigation.rollback.every=5", "mitigation.rollback.back=10",
            "mitigation.rollback.skip=15", "mitigation.rollback.window=20", "mitigation.rollback.max_rollbacks=1",
            "mitigation.rollback.recur=20", "name=m11_rollback_mlp"]


def wide_of(root) -> pd.DataFrame:
    return results.load(root).pivot_table(index="step", columns="metric", values="value")


def test_rollback_counts_whether_the_spike_recurs_in_each_mode(cfg_factory, planted, tmp_path):
    """A bad batch spikes from any state: replay and feed (it is fed again at the restore, step 20)
    recur, skip (batches 20-34 skipped) is clean once step 33 + recur = 53 has passed."""
    got = {}
    for mode in ("replay", "skip", "feed"):
        cfg = cfg_factory(*ROLLBACK, f"mitigation.rollback.mode={mode}", results_dir=tmp_path / mode)
        assert train.run(cfg)["status"] == "done"
        got[mode] = wide_of(tmp_path / mode)
    for mode, (rec, clean, at) in {"replay": (1, 0, BAD), "skip": (0, 1, BAD + 20), "feed": (1, 0, 20)}.items():
        w = got[mode]
        dec = w.loc[w.index >= 20, ["rollback_recurred", "rollback_clean"]].dropna()
        assert (w["rollback_recurred"].dropna().iloc[-1], w["rollback_clean"].dropna().iloc[-1]) == (rec, clean), mode
        assert list(dec.index[dec.sum(axis=1) == 1]) == [at], mode  # decided (and logged) at this step
    rp = got["replay"]
    assert rp.loc[BAD, "loss"] == rp["rollback_spike_loss"].dropna().iloc[0]  # the replay is bit for bit


def test_rollback_outcome_unit_and_state_roundtrip():
    rb = mitigations.Rollback(every=1, back=0, skip=0, window=10, recur=3, mode="skip")
    rb.watch_until = 13  # as after a restore from a spike at step 10
    for step in range(11, 13):
        rb.at = step
        assert not rb.spiked(1.0)
    state = rb.state_dict()
    again = mitigations.Rollback(every=1, back=0, skip=0, window=10, recur=3, mode="skip")
    again.load_state_dict(state)
    assert again.watch_until == 13 and (again.recurred, again.clean) == (0, 0)
    again.spiked(1.0, step=13)
    assert (again.recurred, again.clean, again.watch_until) == (0, 1, None)
    assert again.event() == {"rollback_recurred": 0.0, "rollback_clean": 1.0}
    with pytest.raises(ValueError, match="recur"):
        mitigations.Rollback(recur=-1)


@pytest.mark.parametrize("roll", [True, False])
def test_a_recurring_spike_is_rolled_back_again_only_with_roll_recurring(roll):
    rb = mitigations.Rollback(every=1, back=0, skip=0, window=10, recur=5, roll_recurring=roll)
    rb.snapshots.append({"step": 0})  # the spike test reads only the snapshots' steps
    for step in range(10):
        rb.at = step
        assert not rb.spiked(1.0)
    rb.watch_until = 14  # as after a restore from a spike at step 9
    assert rb.spiked(100.0, step=10) is roll and (rb.recurred, rb.clean) == (1, 0)
    assert rb.spiked(100.0, step=11) is True  # outside any window: an ordinary spike, rolled back
    young = mitigations.Rollback(every=1, back=5, window=10, roll_recurring=roll)
    for step in range(12):
        young.snapshot(step, torch.nn.Linear(1, 1), make("adam", [torch.zeros(1, requires_grad=True)]),
                       Regression(), None, []) if step >= 8 else None  # snapshots from step 8 only
        young.at = step
        if step < 11:
            assert not young.spiked(1.0)
    # a spike at 11 with no snapshot 5 steps old: rolled back (to the oldest) only with roll_recurring
    assert young.spiked(100.0) is roll
    with pytest.raises(ValueError, match="roll_recurring"):
        mitigations.Rollback(roll_recurring="no")


def test_m11_end_to_end_on_a_bad_batch_says_not_replicated(cfg_factory, planted, tmp_path):
    """Three seeds of the three modes on the planted bad batch: feeding it from an earlier state
    spikes again (bad data, not a batch meeting a state), so the threshold says not replicated; one
    spike in 60 steps is short of the premise (>= 10 per seed), so the verdict is out of regime."""
    root = tmp_path / "res"
    for seed in (0, 1, 2):
        for mode in ("replay", "skip", "feed"):
            train.run(cfg_factory(*ROLLBACK, f"mitigation.rollback.mode={mode}", f"seed={seed}", results_dir=root))
    (v,) = evaluate(root, ids=["M11"])
    assert v.verdict == "out of regime" and "by its threshold: not replicated" in v.detail and not v.premise_held
    assert v.value == 0.0 and v.seeds == [0, 1, 2]
    assert "(b) skip: 3/3 clean" in v.detail and "(c) feed: 0/3 clean, 3 recurred" in v.detail
