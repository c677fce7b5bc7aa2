"""The four spike definitions of CLAIMS.md ("Spike definitions"): R3, R10, R100 and Z6.

Each is checked against a plain step-by-step transcription of its wording, then on planted series
where they disagree: (a) a noisy band near 0, (b) isolated tall jumps, (c) a slow drift and a small
level shift, (d) a dip between 1.2x and 3x inside a spike, (e) Z6's warm-up, window and ddof,
(f) a diverged series. ``detect`` (the legacy rule every claim uses today) is checked bit for bit
against a frozen copy of its code as it was before the definitions were added.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
import pandas as pd
import pytest

from replicate import spikes

NAMES = ["R3", "R10", "R100", "Z6"]
COLUMNS = ["start", "peak", "end", "recovery", "rise_start", "baseline", "peak_loss", "height",
           "steps_to_recover"]  # frozen too


# ---------------------------------------------------------------------------------------------
# A frozen copy of replicate/spikes.py's _ratio, _scan, detect and largest_ratio at 65e441d (before
# the definitions): detect's default output must stay exactly this (claims and the scorecard use it).

def _frozen_ratio(a: float, b: float) -> float:
    """a / b, inf (not a warning) when it overflows: float64 quadratics go from 1e-300 to 1e-5."""
    with np.errstate(over="ignore", divide="ignore"):
        return float(np.float64(a) / np.float64(b))


def _frozen_scan(loss: np.ndarray, window: int, factor: float, min_loss: float,
          merge_gap: int) -> tuple[int, np.ndarray, list[int]]:
    """The definition's pass over one loss series: (n, the length of its finite prefix; the
    baseline of each of those steps, NaN where there is none; the spiking steps)."""
    bad = np.flatnonzero(~np.isfinite(loss))
    n = int(bad[0]) if len(bad) else len(loss)  # a diverged run: detect on its finite prefix
    min_pred = max(1, min(window, 10))

    # Until the first spiking step no step is left out of the window, so the baseline there is a
    # plain rolling median (computed at once); the exact loop below starts at that step.
    base_at = (pd.Series(loss[:n]).rolling(window, min_periods=min_pred).median().shift(1).to_numpy(copy=True)
               if n else np.zeros(0))
    with np.errstate(invalid="ignore"):
        first = np.flatnonzero((loss[:n] > factor * base_at) & (loss[:n] > min_loss))
    t0 = int(first[0]) if len(first) else n
    recent: deque[float] = deque(loss[max(0, t0 - window):t0].tolist())  # the last `window` non-spiking losses
    ordered: list[float] = sorted(recent)  # the same values, sorted (for the median)
    spiking: list[int] = []
    frozen = np.nan
    for t in range(t0, n):
        x = loss[t]
        in_episode = bool(spiking) and t - spiking[-1] <= merge_gap + 1
        if in_episode:
            base = frozen
        elif len(ordered) >= min_pred:
            m = len(ordered)
            base = frozen = 0.5 * (ordered[(m - 1) // 2] + ordered[m // 2])
        else:
            base = np.nan
        base_at[t] = base
        if base == base and x > factor * base and x > min_loss:  # (base == base: not NaN)
            spiking.append(t)
            continue  # spiking steps stay out of the baseline window
        recent.append(x)
        bisect.insort(ordered, x)
        if len(recent) > window:
            ordered.pop(bisect.bisect_left(ordered, recent.popleft()))
    return n, base_at, spiking


def _frozen_detect(loss, steps=None, *, window: int = 100, factor: float = 3.0, min_loss: float = 0.0,
           rise: float = 1.2, merge_gap: int = 0) -> pd.DataFrame:
    """Spike episodes of one loss series, one row each (columns ``COLUMNS``), in ``steps``' units.

    ``recovery`` is the first step after the peak with loss <= ``rise`` × the episode's baseline
    (searched to the end of the finite series, through later episodes if need be); NaN if never.
    """
    loss = np.asarray(loss, dtype=float)
    steps = np.arange(len(loss)) if steps is None else np.asarray(steps)
    if len(steps) != len(loss):
        raise ValueError(f"loss has {len(loss)} points but steps has {len(steps)}")
    n, base_at, spiking = _frozen_scan(loss, window, factor, min_loss, merge_gap)

    groups: list[list[int]] = []
    for t in spiking:
        if groups and t - groups[-1][-1] <= merge_gap + 1:
            groups[-1].append(t)
        else:
            groups.append([t])

    rows, prev_end = [], -1
    for g in groups:
        s, e = g[0], g[-1]
        b = base_at[s]
        p = s + int(np.argmax(loss[s:e + 1]))
        r = s
        while r - 1 > prev_end and loss[r - 1] > rise * b:
            r -= 1
        after = np.flatnonzero(loss[p + 1:n] <= rise * b)
        rec = steps[p + 1 + after[0]] if len(after) else np.nan
        rows.append({"start": steps[s], "peak": steps[p], "end": steps[e], "recovery": rec,
                     "rise_start": steps[r], "baseline": b, "peak_loss": loss[p],
                     "height": _frozen_ratio(loss[p], b), "steps_to_recover": rec - steps[p]})
        prev_end = e
    return pd.DataFrame(rows, columns=COLUMNS)


def _frozen_largest_ratio(loss, *, window: int = 100, factor: float = 3.0, min_loss: float = 0.0,
                  merge_gap: int = 0) -> float:
    """The largest ratio of a loss to its baseline under ``detect``'s definition, over the finite
    prefix (NaN when no step has a baseline). In a series of positive losses with episodes it is
    the tallest one's ``height``; in one without, the tallest excursion that stayed under ``factor`` × the baseline,
    which is then the plain median of the previous ``window`` losses (no step was left out of it)."""
    loss = np.asarray(loss, dtype=float)
    n, base_at, _ = _frozen_scan(loss, window, factor, min_loss, merge_gap)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = loss[:n] / base_at
    r = r[np.isfinite(r)]
    return float(r.max()) if len(r) else float("nan")


def _random_series(rng, n_max=400):
    n = int(rng.integers(0, n_max))
    loss = np.exp(rng.normal(0, rng.choice([0.05, 0.2, 0.5, 1.5]), n)) * np.exp(-np.arange(n) / rng.choice([50, 1e9]))
    for i in rng.integers(0, max(n, 1), int(rng.integers(0, 6))):
        loss[i:i + int(rng.integers(1, 12))] *= rng.choice([1.5, 2.5, 3.5, 20, 1000])
    if n and rng.random() < 0.15:
        loss[int(rng.integers(0, n)):] = rng.choice([np.nan, np.inf])
    if rng.random() < 0.3:
        loss = np.round(loss, 1)  # ties
    return loss


@pytest.mark.parametrize("seed", range(4))
def test_detect_default_output_is_bit_identical_to_its_frozen_copy(seed):
    rng = np.random.default_rng(100 + seed)
    found = 0
    for _ in range(60):
        loss = _random_series(rng)
        steps = np.arange(len(loss)) * int(rng.choice([1, 10]))
        for kw in ({}, dict(window=int(rng.choice([5, 20])), factor=float(rng.choice([3.0, 10.0])),
                            min_loss=float(rng.choice([0.0, 0.5])), merge_gap=int(rng.choice([0, 2])))):
            want = _frozen_detect(loss, steps, **kw)
            got = spikes.detect(loss, steps, **kw)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            found += len(want)
        a, b = spikes.largest_ratio(loss), _frozen_largest_ratio(loss)
        assert (math.isnan(a) and math.isnan(b)) or a == b
    assert found > 30


def test_the_registry():
    assert spikes.COLUMNS == COLUMNS
    assert list(spikes.DEFINITIONS) == NAMES and spikes.PRIMARY == "R3"
    for name, d in spikes.DEFINITIONS.items():
        assert d.name == name and d.description.startswith(name) and "\n" not in d.description
    assert [spikes.DEFINITIONS[k].factor for k in ["R3", "R10", "R100"]] == [3.0, 10.0, 100.0]
    z = spikes.DEFINITIONS["Z6"]
    assert (z.sigmas, z.window) == (6.0, 128)
    assert spikes.resolve("Z6") is z and spikes.resolve(z) is z
    with pytest.raises(ValueError, match="known: R3, R10, R100, Z6"):
        spikes.episodes(np.ones(10), definition="R5")
    assert list(spikes.episodes(np.ones(10)).columns) == spikes.COLUMNS


# ---------------------------------------------------------------------------------------------
# Plain transcriptions of the definitions' wording, one step at a time.

def _ratio_by_definition(loss, factor, window=100, rise=1.2, min_loss=0.0):
    """CLAIMS.md's R rule: [(start, recovery or None, baseline)], indices."""
    kept, out, cur = [], [], None
    for t, x in enumerate(loss):
        if not math.isfinite(x):
            break
        if cur is not None:
            b = cur[2]
            if x > factor * b and x > min_loss:
                continue  # above the factor: part of the episode, never in a window
            if x <= rise * b:
                cur[1] = t
                out.append(tuple(cur))
                cur = None
            kept.append(x)
            continue
        if len(kept) >= min(window, 10):
            b = float(np.median(kept[-window:]))
            if x > factor * b and x > min_loss:
                cur = [t, None, b]
                continue
        kept.append(x)
    if cur is not None:
        out.append(tuple(cur))
    return out


def _z6_flags_by_definition(loss, window=128, sigmas=6.0, ddof=1):
    """OLMo-core's test, step by step: the flagged indices."""
    flags = []
    for t, x in enumerate(loss):
        if not math.isfinite(x):
            break
        if t + 1 < max(2, window // 2):  # fewer than 64 losses held, this one included
            continue
        w = np.array(loss[max(0, t - window):t])
        m = math.fsum(w) / len(w)
        sd = math.sqrt(math.fsum((w - m) ** 2) / (len(w) - ddof))
        if x - m > sigmas * sd:
            flags.append(t)
    return flags


@pytest.mark.parametrize("seed", range(4))
def test_ratio_rules_equal_their_wording_on_random_series(seed):
    rng = np.random.default_rng(200 + seed)
    found = 0
    for _ in range(50):
        loss = _random_series(rng)
        for name in ["R3", "R10", "R100"]:
            d = spikes.DEFINITIONS[name]
            want = _ratio_by_definition(loss, d.factor)
            got = spikes.episodes(loss, definition=name)
            assert list(got["start"]) == [s for s, _, _ in want]
            assert list(got["baseline"]) == [b for _, _, b in want]
            n = len(loss) if np.isfinite(loss).all() else int(np.flatnonzero(~np.isfinite(loss))[0])
            assert [None if math.isnan(r) else r for r in got["recovery"]] == [r for _, r, _ in want]
            assert list(got["end"]) == [n - 1 if r is None else r - 1 for _, r, _ in want]
            assert (got["peak"] >= got["start"]).all() and (got["peak"] <= got["end"]).all()
            assert (got["rise_start"] <= got["start"]).all()
            h, pk, b = (got[c].to_numpy(float) for c in ["height", "peak_loss", "baseline"])
            with np.errstate(divide="ignore"):  # a baseline of 0 (rounded losses): height inf
                assert np.allclose(h, pk / b)
            found += len(got)
    assert found > 50


@pytest.mark.parametrize("seed", range(4))
def test_z6_equals_olmo_cores_rule_on_random_series(seed):
    rng = np.random.default_rng(300 + seed)
    found = 0
    for _ in range(30):
        loss = _random_series(rng, n_max=700)
        flags = _z6_flags_by_definition(list(loss))
        got = spikes.episodes(loss, definition="Z6")
        covered = [t for s, e in zip(got["start"], got["end"]) for t in range(s, e + 1)]
        assert covered == flags  # every flagged step in an episode, every step of an episode flagged
        assert (got["start"].iloc[1:].to_numpy() > got["end"].iloc[:-1].to_numpy() + 1).all()  # runs split
        for row in got.itertuples():
            w = loss[max(0, row.start - 128):row.start]
            assert row.baseline == pytest.approx(w.mean(), rel=1e-12)
            with np.errstate(divide="ignore"):
                assert row.height == pytest.approx(np.float64(row.peak_loss) / w.mean(), rel=1e-12)
        found += len(got)
    assert found > 20


def test_episode_steps_are_in_the_callers_units():
    loss = np.ones(1000)
    loss[300:303] = 200.0
    for name in NAMES:
        ep = spikes.episodes(loss, np.arange(1000) * 10, name)
        assert ep[["start", "peak", "recovery"]].iloc[0].tolist() == [3000, 3000, 3030], name
    with pytest.raises(ValueError, match="steps"):
        spikes.episodes(loss, np.arange(5))


# ---------------------------------------------------------------------------------------------
# Planted series where the definitions disagree; ``counts`` gives {definition: episodes}, with
# "legacy" for ``detect``.

def counts(loss):
    out = {k: len(spikes.episodes(loss, definition=k)) for k in NAMES}
    out["legacy"] = len(spikes.detect(loss))
    return out


def smooth_decay(n, seed, noise=0.03):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (2.0 + 4.0 * np.exp(-t / 1500)) * rng.lognormal(0.0, noise, n)


@pytest.mark.parametrize("seed", range(3))
def test_a_noisy_band_near_zero_is_many_r3_episodes_and_no_z6_one(seed):
    """A loss ~1e-5 times noise of up to x/÷4 (log-uniform): often > 3x its median, never 10x;
    its std is ~1 median, so never 6 std over its mean."""
    rng = np.random.default_rng(seed)
    loss = 1e-5 * np.exp(rng.uniform(-np.log(4), np.log(4), 3000))
    c = counts(loss)
    assert c["R3"] > 300 and c["R10"] == c["R100"] == c["Z6"] == 0
    assert c["legacy"] > c["R3"]  # a dip to 1.2x-3x and a rise again: two legacy spikes, one R3 episode
    assert len(spikes.episodes(loss, definition=spikes.Ratio("R3f", 3.0, "floored", min_loss=1e-4))) == 0


@pytest.mark.parametrize("seed", range(3))
def test_isolated_tall_jumps_are_counted_alike_by_all_four(seed):
    loss = smooth_decay(6000, seed)
    jumps = [1000, 2000, 3000, 4000, 5000]
    for p in jumps:
        loss[p] *= 1000.0
        loss[p + 1] *= 30.0
        loss[p + 2] *= 2.0
    c = counts(loss)
    assert c == {"R3": 5, "R10": 5, "R100": 5, "Z6": 5, "legacy": 5}
    for name in NAMES:
        ep = spikes.episodes(loss, definition=name)
        assert list(ep["start"]) == jumps and list(ep["peak"]) == jumps
        assert list(ep["recovery"]) == [p + 3 for p in jumps]  # back under 1.2x after the 2x step
        assert ((ep["height"] > 900) & (ep["height"] < 1100)).all()
    # R3's episode runs to the recovery; Z6's is the flagged step only (the jump in its window
    # inflates the std: the 30x step after it is not 6 std out)
    assert list(spikes.episodes(loss, definition="R3")["end"]) == [p + 2 for p in jumps]
    assert list(spikes.episodes(loss, definition="R100")["end"]) == [p + 2 for p in jumps]
    assert list(spikes.episodes(loss, definition="Z6")["end"]) == jumps


@pytest.mark.parametrize("seed", range(3))
def test_a_slow_drift_is_no_episode_and_a_small_level_shift_is_z6_only(seed):
    rng = np.random.default_rng(seed)
    t = np.arange(6000)
    drift = 10.0 ** (t / 6000) * rng.lognormal(0.0, 0.01, 6000)  # the loss rises 10x over the run
    assert counts(drift) == {"R3": 0, "R10": 0, "R100": 0, "Z6": 0, "legacy": 0}
    shift = rng.lognormal(0.0, 0.01, 3000)
    shift[1500:] *= 1.5  # a step up by 1.5x: far under 3x, but ~50 std of a 1% noise band
    assert counts(shift) == {"R3": 0, "R10": 0, "R100": 0, "Z6": 1, "legacy": 0}
    ep = spikes.episodes(shift, definition="Z6").iloc[0]
    assert ep["start"] == 1500 and 1501 <= ep["end"] <= 1505  # flagged until the window catches up
    assert math.isnan(ep["recovery"])  # never back under 1.2x the old mean


def test_a_dip_inside_a_spike_is_one_r3_episode_and_two_legacy_ones():
    rng = np.random.default_rng(0)
    loss = rng.lognormal(0.0, 0.01, 1000)
    loss[500:505] *= 5.0
    loss[505:508] *= 2.0  # under 3x, above 1.2x
    loss[508:512] *= 8.0
    c = counts(loss)
    assert c == {"R3": 1, "R10": 0, "R100": 0, "Z6": 2, "legacy": 2}
    r3 = spikes.episodes(loss, definition="R3")
    assert r3[["start", "end", "recovery"]].iloc[0].tolist() == [500, 511, 512]
    assert 508 <= r3["peak"].iloc[0] <= 511  # the tallest step is in the re-rise
    assert r3["baseline"].iloc[0] == pytest.approx(1.0, abs=0.01)
    legacy = spikes.detect(loss)
    assert legacy[["start", "end"]].values.tolist() == [[500, 504], [508, 511]]
    z6 = spikes.episodes(loss, definition="Z6")
    assert list(z6["start"]) == [500, 508]  # the dip is not flagged: two runs of flagged steps


def test_spiking_steps_stay_out_of_later_r3_baselines():
    loss = np.ones(1000)
    loss[500:560] = 100.0  # 60 steps above 3x: in no later window
    loss[600] = 5.0
    ep = spikes.episodes(loss, definition="R3")
    assert list(ep["start"]) == [500, 600] and list(ep["baseline"]) == [1.0, 1.0]


def test_z6_warm_up_window_and_sample_std():
    rng = np.random.default_rng(0)
    base = 1.0 + 0.001 * rng.standard_normal(1000)
    for t, want in [(62, []), (63, [63])]:  # the 64th loss (index 63) is the first tested
        loss = base.copy()
        loss[t] = 10.0
        assert list(spikes.episodes(loss, definition="Z6")["start"]) == want
    # the window is the previous 128 losses, flagged ones included: a 1000 at 200 (itself flagged)
    # inflates the std of every window holding it, so a 10 at 328 passes and one at 329 is flagged
    for t, want in [(328, [200]), (329, [200, 329])]:
        loss = base.copy()
        loss[200] = 1000.0
        loss[t] = 10.0
        assert list(spikes.episodes(loss, definition="Z6")["start"]) == want
    # sample std (ddof 1): 64 zeros and 64 twos have mean 1, std 1 (ddof 0) or 1.0039 (ddof 1)
    for x, flagged in [(7.01, False), (7.03, True)]:
        loss = np.r_[np.tile([0.0, 2.0], 64), x, np.ones(5)]
        ep = spikes.episodes(loss, definition="Z6")
        assert list(ep["start"]) == ([128] if flagged else [])
        assert (128 in _z6_flags_by_definition(list(loss), ddof=0)) and (
            (128 in _z6_flags_by_definition(list(loss))) == flagged)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_diverged_series_is_cut_at_its_first_non_finite_loss(bad):
    rng = np.random.default_rng(0)
    loss = rng.lognormal(0.0, 0.01, 600)
    loss[300:] *= 20.0  # jumps and never comes back
    loss[400:] = bad
    loss[450] = 1e6  # after the cut: ignored
    for name in NAMES:
        ep = spikes.episodes(loss, definition=name)
        assert len(ep) == (0 if name == "R100" else 1), name
        if len(ep):
            row = ep.iloc[0]
            assert row["start"] == 300 and np.isfinite(row["peak_loss"]) and math.isnan(row["recovery"])
            assert row["end"] == (399 if name != "Z6" else row["end"]) and row["end"] < 400
    assert spikes.episodes(loss, definition="R3")["end"].iloc[0] == 399  # unrecovered: to the end
    for name in NAMES:
        assert len(spikes.episodes(np.full(200, bad), definition=name)) == 0
        assert len(spikes.episodes(np.zeros(0), definition=name)) == 0


# ---------------------------------------------------------------------------------------------
# episodes_of and summarize

def tidy(run_id, seed, loss):
    n = len(loss)
    return pd.DataFrame({"run_id": run_id, "experiment": "demo", "seed": seed, "status": "done",
                         "step": np.arange(n), "metric": "loss", "value": loss})


def test_episodes_of_and_summarize_take_a_definition_and_default_to_detect():
    rng = np.random.default_rng(0)
    a = 1e-5 * np.exp(rng.uniform(-np.log(4), np.log(4), 2000))  # a noisy band: R3 many, Z6 none
    b = smooth_decay(2000, 1)
    b[1000] *= 1000.0
    metrics = pd.concat([tidy("a", 0, a), tidy("b", 1, b)], ignore_index=True)
    pd.testing.assert_frame_equal(spikes.summarize(metrics), spikes.summarize(metrics, definition=None))
    legacy = spikes.summarize(metrics).set_index("run_id")
    assert legacy.loc["a", "spikes_per_1k"] == len(spikes.detect(a)) / 2
    for name in NAMES:
        s = spikes.summarize(metrics, definition=name).set_index("run_id")
        assert list(s.columns) == list(legacy.columns)
        assert s.loc["a", "spikes_per_1k"] == len(spikes.episodes(a, definition=name)) / 2
        assert s.loc["b", "spikes_per_1k"] == 0.5 and s.loc["b", "largest_spike"] == pytest.approx(1000, rel=0.1)
        ep = spikes.episodes_of(metrics, definition=name)
        assert list(ep.columns) == ["run_id", *spikes.COLUMNS]
        assert (ep["run_id"] == "a").sum() == len(spikes.episodes(a, definition=name))
    assert spikes.summarize(metrics, definition="Z6").set_index("run_id").loc["a", "spikes_per_1k"] == 0
    pd.testing.assert_frame_equal(spikes.episodes_of(metrics), spikes.episodes_of(metrics, definition=None))
    assert len(spikes.episodes_of(metrics, factor=100.0)) == 1  # detect's keywords without a definition
    with pytest.raises(TypeError, match="factor"):
        spikes.summarize(metrics, definition="R3", factor=10.0)
