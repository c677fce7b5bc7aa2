"""Spike episodes: planted spikes found exactly, noise ignored, rates by height, tidy summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from replicate import spikes

PLANTED = {1500: 5.0, 3000: 20.0, 4500: 200.0}  # peak index -> height


def curve(n: int, seed: int, noise: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (2.0 + 4.0 * np.exp(-t / 1500)) * rng.lognormal(0.0, noise, n)


def plant(loss: np.ndarray, peak: int, height: float, up: int = 3, down: int = 8) -> None:
    """Multiply a short geometric rise to ``height`` at ``peak`` and a geometric decay after it."""
    for k in range(1, up + 1):
        loss[peak - k] *= height ** ((up - k) / up)
    loss[peak] *= height
    for j in range(1, down + 1):
        loss[peak + j] *= height ** (1 - j / down)


def planted_series(seed: int, n: int = 6000) -> np.ndarray:
    loss = curve(n, seed)
    for p, h in PLANTED.items():
        plant(loss, p, h)
    return loss


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_detect_finds_exactly_the_planted_spikes(seed):
    ep = spikes.detect(planted_series(seed))
    assert list(ep.columns) == spikes.COLUMNS
    assert list(ep["peak"]) == list(PLANTED)
    for (_, row), (p, h) in zip(ep.iterrows(), PLANTED.items()):
        assert p - 3 <= row["start"] <= p and row["end"] >= p and row["rise_start"] <= row["start"]
        assert row["height"] == pytest.approx(h, rel=0.2)
        assert row["recovery"] > p and row["steps_to_recover"] <= 12
        assert row["baseline"] == pytest.approx(2.0 + 4.0 * math.exp(-p / 1500), rel=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pure_noise_gives_no_episodes(seed):
    ep = spikes.detect(curve(20_000, seed, noise=0.1))
    assert len(ep) == 0 and list(ep.columns) == spikes.COLUMNS


def test_rates_scale_and_count_by_height():
    ep = pd.DataFrame({"height": [4.0, 12.0, 150.0, 5.0], "steps_to_recover": [2.0, 4.0, 10.0, np.nan]})
    r = spikes.rates(ep, n_steps=2000)
    assert r == {"spikes_per_1k": 2.0, "spikes_per_1k_h3": 2.0, "spikes_per_1k_h10": 1.0,
                 "spikes_per_1k_h100": 0.5, "largest_spike": 150.0, "median_steps_to_recover": 4.0}
    assert spikes.rates(ep, n_steps=2000, per=10_000)["spikes_per_10k_h10"] == 10.0
    empty = spikes.rates(spikes.detect(np.ones(50)), n_steps=50)
    assert {k: v for k, v in empty.items() if k != "median_steps_to_recover"} == {
        "spikes_per_1k": 0.0, "spikes_per_1k_h3": 0.0, "spikes_per_1k_h10": 0.0,
        "spikes_per_1k_h100": 0.0, "largest_spike": 0.0}
    assert math.isnan(empty["median_steps_to_recover"])


def test_episode_steps_are_in_the_callers_units():
    loss = curve(1000, 0)
    plant(loss, 300, 20.0)
    ep = spikes.detect(loss, np.arange(1000) * 10)
    assert len(ep) == 1
    row = ep.iloc[0]
    assert row["peak"] == 3000 and row["start"] % 10 == 0 and 2970 <= row["start"] <= 3000
    assert row["recovery"] % 10 == 0 and row["steps_to_recover"] == row["recovery"] - 3000


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_diverged_series_stops_at_the_first_non_finite_loss(bad):
    loss = curve(600, 0)
    plant(loss, 300, 20.0)
    loss[550:] = bad
    ep = spikes.detect(loss)
    assert list(ep["peak"]) == [300] and np.isfinite(ep["peak_loss"]).all()
    loss[500] = np.nan  # a NaN inside: everything after it is ignored, even a later spike
    loss[520] = 1e6
    assert list(spikes.detect(loss)["peak"]) == [300]


def test_merge_gap_joins_close_spikes():
    loss = np.ones(1000)
    loss[500] = loss[503] = 10.0  # two spiking steps, two quiet steps between
    assert len(spikes.detect(loss)) == 2
    assert len(spikes.detect(loss, merge_gap=1)) == 2
    ep = spikes.detect(loss, merge_gap=2)
    assert len(ep) == 1 and ep.iloc[0][["start", "end"]].tolist() == [500, 503]
    assert ep.iloc[0]["baseline"] == 1.0  # frozen: the quiet steps inside did not move it


def test_rise_start_marks_the_gradual_rise_before_the_threshold():
    loss = np.ones(1000)
    loss[400:420] = np.linspace(1.05, 5.0, 20)  # crosses 1.2x at 401, 3x at 410
    loss[420:430] = np.linspace(4.0, 1.0, 10)
    ep = spikes.detect(loss)
    assert len(ep) == 1
    row = ep.iloc[0]
    assert row["rise_start"] == 401 and row["start"] == 410 and row["peak"] == 419
    assert row["baseline"] == pytest.approx(1.0, abs=0.05) and row["recovery"] == 429


def test_min_loss_floor_and_early_steps():
    loss = np.full(300, 1e-4)
    loss[100] = 1e-2
    assert len(spikes.detect(loss)) == 1 and len(spikes.detect(loss, min_loss=0.1)) == 0
    early = np.ones(300)
    early[5] = 100.0  # fewer than min(window, 10) predecessors: never a spike
    assert len(spikes.detect(early)) == 0


def tidy(run_id: str, seed: int, loss: np.ndarray, status: str = "done") -> pd.DataFrame:
    n = len(loss)
    rows = pd.DataFrame({"step": np.arange(n), "loss": loss, "grad_norm": np.full(n, 1e3)})
    df = rows.melt(id_vars="step", var_name="metric", value_name="value")
    df.insert(0, "run_id", run_id)
    df.insert(1, "experiment", "demo")
    df.insert(2, "seed", seed)
    df.insert(3, "status", status)
    return df[["run_id", "experiment", "seed", "status", "step", "metric", "value"]]


def test_summarize_gives_one_row_per_run_with_its_rates():
    a = curve(2000, 0)
    plant(a, 500, 20.0)
    plant(a, 1500, 200.0)
    metrics = pd.concat([tidy("a", 0, a), tidy("b", 1, curve(2000, 1), status="diverged")],
                        ignore_index=True).sample(frac=1, random_state=0)  # order must not matter
    s = spikes.summarize(metrics).set_index("run_id").sort_index()
    assert list(s.index) == ["a", "b"]
    assert s.loc["a", "n_steps"] == 2000 and s.loc["a", "seed"] == 0 and s.loc["b", "status"] == "diverged"
    assert s.loc["a", "spikes_per_1k"] == 1.0 and s.loc["a", "spikes_per_1k_h100"] == 0.5
    assert s.loc["a", "largest_spike"] == pytest.approx(200, rel=0.2)
    assert s.loc["b", "spikes_per_1k"] == 0.0 and math.isnan(s.loc["b", "median_steps_to_recover"])
    ep = spikes.episodes_of(metrics)
    assert list(ep["run_id"]) == ["a", "a"] and list(ep["peak"]) == [500, 1500]
    assert len(spikes.episodes_of(tidy("b", 1, curve(500, 1)))) == 0


def _spiking_steps_by_definition(loss, window, factor, min_loss, merge_gap):
    """The module docstring's definition, step by step with a plain list: which steps spike."""
    kept, spiking, frozen = [], [], None
    for t, x in enumerate(loss):
        if not math.isfinite(x):
            break
        if spiking and t - spiking[-1] <= merge_gap + 1:
            base = frozen
        elif len(kept) >= max(1, min(window, 10)):
            base = frozen = float(np.median(kept[-window:]))
        else:
            base = None
        if base is not None and x > factor * base and x > min_loss:
            spiking.append(t)
        else:
            kept.append(x)
    return spiking


@pytest.mark.parametrize("seed", range(6))
def test_detect_equals_the_definition_on_random_series(seed):
    """``detect`` starts its exact loop at the first spike (a rolling median before it): the
    episodes must be those of the plain definition, ties, NaNs and merged spikes included."""
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(60):
        n = int(rng.integers(0, 300))
        loss = np.exp(rng.normal(0, rng.choice([0.1, 0.5, 1.5]), n)) * np.exp(-np.arange(n) / rng.choice([50, 1e9]))
        for i in rng.integers(0, max(n, 1), int(rng.integers(0, 6))):
            loss[i:i + int(rng.integers(1, 5))] *= rng.choice([2.5, 3.5, 20, 1000])
        if n and rng.random() < 0.15:
            loss[int(rng.integers(0, n))] = np.nan
        if rng.random() < 0.3:
            loss = np.round(loss, 1)  # ties in the median window
        kw = dict(window=int(rng.choice([5, 20, 100])), factor=3.0, min_loss=float(rng.choice([0.0, 0.5])),
                  merge_gap=int(rng.choice([0, 2])))
        want = _spiking_steps_by_definition(loss, **kw)
        got = spikes.detect(loss, **kw)
        # every spiking step lies in exactly one episode [start, end], and episode starts are spiking
        assert sorted(got["start"]) == [t for i, t in enumerate(want)
                                        if i == 0 or t - want[i - 1] > kw["merge_gap"] + 1]
        assert all(t in want for t in got["end"])
        found += len(got)
    assert found > 20  # the series do spike


def _rolling_ratio(loss: np.ndarray, window: int = 100, min_pred: int = 10) -> float:
    """The leaderboard's former own spike ratio (replicate/leaderboard.py until issue 14): max_t
    loss[t] / median(loss[t-window:t]) over the finite prefix, t with >= min_pred before."""
    bad = np.flatnonzero(~np.isfinite(loss))
    x = pd.Series(loss[: bad[0]] if len(bad) else loss)
    med = x.rolling(window, min_periods=min_pred).median().shift(1)
    r = (x / med).to_numpy()
    r = r[np.isfinite(r)]
    return float(r.max()) if len(r) else float("nan")


@pytest.mark.parametrize("seed", range(4))
def test_largest_ratio_is_the_rolling_ratio_without_episodes_and_the_tallest_height_with(seed):
    rng = np.random.default_rng(seed)
    quiet = spiky = 0
    for _ in range(80):
        n = int(rng.integers(0, 400))
        loss = np.exp(rng.normal(0, rng.choice([0.05, 0.2, 0.4]), n)) * np.exp(-np.arange(n) / rng.choice([80, 1e9]))
        if rng.random() < 0.5:
            for i in rng.integers(0, max(n, 1), int(rng.integers(1, 4))):
                loss[i:i + 2] *= rng.choice([2.0, 5.0, 50.0])
        if n and rng.random() < 0.15:
            loss[int(rng.integers(0, n)):] = np.inf  # a diverged run
        ep = spikes.detect(loss)
        got = spikes.largest_ratio(loss)
        if len(ep) == 0:  # bit for bit what the leaderboard computed before
            want = _rolling_ratio(loss)
            assert (math.isnan(got) and math.isnan(want)) or got == want
            quiet += 1
        else:
            assert got == ep["height"].max()
            spiky += 1
    assert quiet > 10 and spiky > 10
