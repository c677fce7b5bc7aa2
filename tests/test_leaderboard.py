"""The mitigation leaderboard (replicate/leaderboard.py) and the LR sensitivity it shares with W2
(replicate/sensitivity.py): metrics on planted series, the ranking, the page, the registration."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from replicate import leaderboard, results, scorecard, sensitivity


def tidy(series: dict[str, np.ndarray], seeds: dict[str, int]) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"run_id": rid, "experiment": "mitigations", "seed": seeds[rid], "status": "done",
                                    "step": np.arange(len(x)), "metric": "loss", "value": x})
                      for rid, x in series.items()], ignore_index=True)


def flat(n=1000, level=1.0):
    return np.full(n, level)


def planted(n=1000, at=(300, 600), height=50.0, width=3, tail=(5.0, 2.0)):
    """A flat loss of 1 with spikes of ``height`` for ``width`` steps, then a tail above 1.2x."""
    x = flat(n)
    for t in at:
        x[t:t + width] = height
        x[t + width:t + width + len(tail)] = tail
    return x


# ---------------------------------------------------------------------------------- sensitivity
def test_final_loss_is_the_median_of_the_last_five_percent_and_inf_when_diverged():
    x = np.r_[np.full(95, 9.0), [1.0, 2.0, 3.0, 100.0, 4.0]]  # a spike on the last steps does not move it
    assert sensitivity.final_loss(x) == 3.0
    assert sensitivity.final_loss(np.r_[x, np.nan]) == math.inf
    assert sensitivity.final_loss([2.0]) == 2.0 and math.isnan(sensitivity.final_loss([]))


def test_lr_sensitivity_caps_each_lr_at_the_initial_loss():
    # mean(min(L, L0)) - min: (0.5 + 0.2 + 1.0 + 1.0) / 4 - 0.2, the diverged and the worse-than-init count as L0
    s = sensitivity.lr_sensitivity({1e-3: 0.5, 3e-3: 0.2, 1e-2: math.inf, 3e-2: 7.0}, init=1.0)
    assert s == pytest.approx((0.5 + 0.2 + 1.0 + 1.0) / 4 - 0.2)
    assert sensitivity.lr_sensitivity({1e-3: 0.3, 1e-2: 0.3}, init=1.0) == 0.0  # flat in lr
    assert math.isnan(sensitivity.lr_sensitivity({1e-3: math.inf, 1e-2: 3.0}, init=1.0))  # nothing trained
    assert math.isnan(sensitivity.lr_sensitivity({}, init=1.0))


def test_sensitivity_table_needs_five_lrs_and_averages_duplicates():
    rows = [{"arm": "a", "seed": 0, "optimizer.lr": lr, "init_loss": 2.0, "final_loss": f}
            for lr, f in zip([1, 2, 3, 4, 5], [1.0, 0.5, 0.5, 3.0, math.inf])]
    rows.append({"arm": "a", "seed": 0, "optimizer.lr": 2, "init_loss": 2.0, "final_loss": 0.5})  # same run twice
    rows += [{"arm": "b", "seed": 0, "optimizer.lr": lr, "init_loss": 2.0, "final_loss": 0.5} for lr in [1, 2, 3, 4]]
    t = sensitivity.table(pd.DataFrame(rows), by=["arm"]).set_index("arm")
    assert t.loc["a", "lr_sensitivity"] == pytest.approx((1.0 + 0.5 + 0.5 + 2.0 + 2.0) / 5 - 0.5)
    assert t.loc["a", "n_lrs"] == 5 and t.loc["a", "best_lr"] == 2
    assert math.isnan(t.loc["b", "lr_sensitivity"]) and t.loc["b", "n_lrs"] == 4


# ------------------------------------------------------------------------------- per-run metrics
def _runs(arms: dict[str, str], seeds: dict[str, int], workload="mlp", lr=3e-3, status=None):
    return pd.DataFrame([{"run_id": rid, "seed": seeds[rid], "status": (status or {}).get(rid, "done"),
                          "model.name": workload, "label": arm, "optimizer.lr": lr} for rid, arm in arms.items()])


def test_run_table_counts_planted_spikes_under_each_definition_their_size_and_recovery():
    series = {"r": planted(height=50.0), "q": planted(at=(300,), height=500.0), "f": flat() + 0.01 * np.sin(np.arange(1000))}
    seeds = {k: 0 for k in series}
    t = leaderboard.run_table(tidy(series, seeds), _runs({"r": "a", "q": "b", "f": "c"}, seeds)).set_index("run_id")
    assert t.loc["r", "spikes_R3"] == 2 and t.loc["r", "spikes_R10"] == 2 and t.loc["r", "spikes_Z6"] == 2
    assert t.loc["r", "spikes_R100"] == 0 and t.loc["q", "spikes_R100"] == 1
    assert t.loc["r", "largest_spike"] == pytest.approx(50.0) and t.loc["q", "largest_spike"] == pytest.approx(500.0)
    # peak at the spike's first step; 1.2x the baseline is reached after the spike (3 steps) and the tail (2)
    assert t.loc["r", "steps_to_recover"] == 5
    assert t.loc["f", "spikes_R3"] == 0 and math.isnan(t.loc["f", "steps_to_recover"])
    assert t.loc["f", "spikes_Z6"] == 0  # a smooth wiggle is no 6-sigma excursion
    assert 1.0 < t.loc["f", "largest_spike"] < 1.05  # no episode: the largest loss / running median
    assert t.loc["r", "final_loss"] == 1.0 and t.loc["r", "init_loss"] == 1.0
    # the integer counts behind the rates, and the steps they are over
    assert t.loc["r", "n_steps"] == 1000 and t.loc["r", "n_spikes_R3"] == 2 and t.loc["q", "n_spikes_R100"] == 1
    assert t.loc["f", "n_spikes_R3"] == 0 and t["n_spikes_R10"].dtype.kind == "i"
    assert list(t["workload"].unique()) == ["mlp"]
    assert not any("_h3" in c or "_h10" in c for c in t.columns)  # the legacy height buckets are gone


def noisy_band(seed: int, n: int = 2000) -> np.ndarray:
    """A noisy loss around 1 with a 4-6x step every 50 steps: each crosses 3x the median (R3 counts
    it), none 10x (R10 and R100 do not). The base noise (lognormal, sigma 0.3, kept in [0.6, 1.8]:
    never 3x the median by itself) and the earlier 4-6x steps in Z6's window of 128 widen its
    standard deviation, so Z6 counts only some of them."""
    rng = np.random.default_rng(seed)
    x = np.clip(np.exp(0.3 * rng.standard_normal(n)), 0.6, 1.8)
    at = np.arange(100, n, 50)
    x[at] = rng.uniform(4.0, 6.0, len(at))
    return x


def isolated_jumps(seed: int, n: int = 2000) -> np.ndarray:
    """A quiet loss of 1 (tiny noise) with 3 isolated 1000x jumps: every definition counts them."""
    rng = np.random.default_rng(seed)
    x = 1.0 + 0.01 * rng.standard_normal(n)
    for t in (400 + seed, 1000, 1600):
        x[t] = 1000.0
    return x


def test_the_definitions_disagree_on_a_noisy_band_and_agree_on_isolated_jumps():
    """A noisy 4-6x band is spiking for R3 and not for R10 or R100 (Z6, scaled by the band's own
    noise, counts fewer of its steps than R3 does); isolated 1000x jumps are spikes under all four.
    The board ranks by R3: the band's arm is the spikier one there, the jumps' under R10, R100, Z6."""
    per_run = _board({"band": noisy_band, "jumps": isolated_jumps})
    t = per_run.set_index("run_id")
    for s in range(3):
        band, jumps = t.loc[f"band-{s}"], t.loc[f"jumps-{s}"]
        assert band["n_spikes_R3"] == len(range(100, 2000, 50)) == 38
        assert band["n_spikes_R10"] == 0 and band["n_spikes_R100"] == 0
        assert band["n_spikes_Z6"] < band["n_spikes_R3"]
        assert jumps["n_spikes_R3"] == jumps["n_spikes_R10"] == jumps["n_spikes_R100"] == jumps["n_spikes_Z6"] == 3
    board = leaderboard.summarize(per_run).set_index("arm")
    assert list(board.index) == ["jumps", "band"]  # sorted by R3, the primary: 1.5 < 19 per 1k
    assert board.loc["band", "spikes_R3"] == pytest.approx(19.0) and board.loc["jumps", "spikes_R3"] == pytest.approx(1.5)
    assert board.loc["band", "spikes_R10"] == 0 < board.loc["jumps", "spikes_R10"] == pytest.approx(1.5)
    assert board.loc["band", "spikes_R10_lo"] == 0.0 and board.loc["band", "spikes_R10_hi"] > 0
    assert board.loc["jumps", "largest_spike"] == pytest.approx(1000.0, rel=0.05)  # R3's episodes
    page = leaderboard.markdown(leaderboard.summarize(per_run))
    assert "| spikes R3 /1k | R10 /1k | R100 /1k | Z6 /1k | largest (R3) |" in page


def _board(series_of, n_seeds=3, **kw):
    series, seeds, arms = {}, {}, {}
    for arm, make in series_of.items():
        for s in range(n_seeds):
            rid = f"{arm}-{s}"
            series[rid], seeds[rid], arms[rid] = make(s), s, arm
    return leaderboard.run_table(tidy(series, seeds), _runs(arms, seeds, **kw))


def test_ranking_is_by_spikes_then_final_loss_with_intervals_over_seeds():
    per_run = _board({"spiky": lambda s: planted(at=(200, 400, 600 + s)),  # 3 spikes per 1k
                      "calm_high": lambda s: flat(level=2.0 + 0.1 * s),
                      "calm_low": lambda s: flat(level=1.0 + 0.1 * s),
                      "one_spike": lambda s: planted(at=(300,))})
    board = leaderboard.summarize(per_run)
    assert list(board["arm"]) == ["calm_low", "calm_high", "one_spike", "spiky"]
    row = board.set_index("arm").loc["calm_low"]
    assert row["final_loss"] == pytest.approx(1.1) and row["final_loss_lo"] < 1.1 < row["final_loss_hi"]
    assert row["seeds"] == [0, 1, 2] and row["spikes_R3"] == 0
    assert board.set_index("arm").loc["spiky", "spikes_R3"] == 3


def test_spike_rates_are_pooled_over_seeds_with_the_exact_poisson_interval():
    from replicate.stats import poisson_interval

    per_run = _board({"spiky": lambda s: planted(at=(200, 400, 600 + s)), "calm": lambda s: flat(level=1.0 + 0.1 * s)})
    board = leaderboard.summarize(per_run).set_index("arm")
    spiky, calm = board.loc["spiky"], board.loc["calm"]
    # 9 episodes in 3000 steps: 3 per 1k, interval = Garwood(9) per 3 thousand steps
    assert spiky["n_spikes_R3"] == 9 and spiky["n_steps"] == 3000
    assert (spiky["spikes_R3"], spiky["spikes_R3_lo"], spiky["spikes_R3_hi"]) == \
        pytest.approx((3.0, *(x / 3 for x in poisson_interval(9))))
    assert spiky["spikes_R3_lo"] < 3.0 < spiky["spikes_R3_hi"]  # equal seeds: not a zero-width interval
    # no spike in 3000 steps: [0, 3.689 / 3] per 1k, never below 0
    assert calm["spikes_R3"] == 0 and calm["spikes_R3_lo"] == 0.0
    assert calm["spikes_R3_hi"] == pytest.approx(3.689 / 3, abs=1e-3)


def test_other_metrics_get_the_t_interval_clipped_at_zero():
    per_run = _board({"a": lambda s: flat(level=(1e-3, 1e-3, 0.5)[s])})
    row = leaderboard.summarize(per_run).iloc[0]
    assert row["final_loss"] == pytest.approx((2e-3 + 0.5) / 3)
    assert row["final_loss_lo"] == 0.0 and row["final_loss_hi"] > 0.5  # the plain t interval starts below 0
    from replicate.stats import t_interval
    assert t_interval([1e-3, 1e-3, 0.5])[0] < 0 and row["final_loss_hi"] == pytest.approx(t_interval([1e-3, 1e-3, 0.5])[1])


def test_one_seed_gives_a_rate_interval_and_no_interval_over_seeds():
    row = leaderboard.summarize(_board({"a": lambda s: planted(at=(300,))}, n_seeds=1)).iloc[0]
    assert row["seeds"] == [0] and row["spikes_R3"] == 1.0 and 0 < row["spikes_R3_lo"] < 1.0
    assert math.isnan(row["final_loss_lo"]) and math.isnan(row["largest_spike_hi"])
    page = leaderboard.markdown(leaderboard.summarize(_board({"a": lambda s: planted(at=(300,))}, n_seeds=1)))
    assert "| 1 [0.0253, 5.57] |" in page  # the pooled rate's interval; final loss without one


def test_the_pooled_rate_counts_a_diverged_seed_over_the_steps_it_ran_and_can_reorder_arms():
    """Seed 1 of ``short`` diverges at step 250 after one spike (4 per 1k over its steps): the mean
    of the seeds' rates is (1 + 4) / 2 = 2.5 > ``steady``'s 2, the pooled rate 2 / 1.25k = 1.6 < 2."""
    def short(s):
        x = planted(at=(300,) if s == 0 else (100,))
        if s == 1:
            x[250:] = np.nan
        return x

    per_run = _board({"steady": lambda s: planted(at=(300, 600)), "short": short}, n_seeds=2,
                     status={"short-1": "diverged"})
    board = leaderboard.summarize(per_run).set_index("arm")
    assert per_run.groupby("arm")["spikes_R3"].mean().to_dict() == pytest.approx({"short": 2.5, "steady": 2.0})
    assert board.loc["short", "spikes_R3"] == pytest.approx(1.6) and board.loc["short", "n_steps"] == 1250
    assert list(board.index) == ["short", "steady"]
    assert board.loc["short", "final_loss"] == math.inf and board.loc["short", "diverged"] == 1


def test_a_run_without_a_finite_step_adds_no_steps_and_no_spikes():
    def run(s):
        return planted(at=(300,)) if s == 0 else np.full(1000, np.nan)

    per_run = _board({"a": run}, n_seeds=2, status={"a-1": "diverged"})
    assert per_run.set_index("seed").loc[1, "n_steps"] == 0 and per_run.set_index("seed").loc[1, "n_spikes_R3"] == 0
    row = leaderboard.summarize(per_run).iloc[0]
    assert row["spikes_R3"] == 1.0 and row["n_steps"] == 1000


def test_the_page_says_what_each_interval_is_and_none_goes_below_zero():
    import re

    per_run = _board({"spiky": lambda s: planted(at=(200, 400 + 100 * s), height=10.0 + 200 * s),
                      "calm": lambda s: flat(level=(1e-3, 1e-3, 0.5)[s])})
    page = leaderboard.markdown(leaderboard.summarize(per_run))
    for words in ("R3** (the primary", "**R10** and **R100**", "**Z6**", "OLMo-core", "rate pooled over the seeds", "exact (Garwood) Poisson 95% interval", "common rate",
                  "95% Student-t interval over seeds, clipped at 0", "Not a bootstrap", "min to max",
                  "Sorted by the pooled spike rate"):
        assert words in page, words
    assert "t interval]" not in page  # the old "mean over seeds [95% t interval]"
    cells = re.findall(r"(\S+) \[(\S+), (\S+)\]", page)
    assert len(cells) > 10
    for v, lo, hi in cells:
        assert 0.0 <= float(lo) <= float(v) <= float(hi), (v, lo, hi)


def test_a_diverged_seed_shows_as_diverged_not_as_a_number():
    def run(s):
        x = planted(at=(300,))
        if s == 1:
            x[500:] = np.nan
        return x

    per_run = _board({"a": run}, status={"a-1": "diverged"})
    row = leaderboard.summarize(per_run).iloc[0]
    assert row["diverged"] == 1 and row["final_loss"] == math.inf
    assert "diverged" in leaderboard.markdown(leaderboard.summarize(per_run))


# ----------------------------------------------------------------------------- from run folders
def _write_run(root, name, rid, seed, arm, lr, loss, workload="mlp"):
    d = root / "runs" / name / rid
    d.mkdir(parents=True)
    cfg = {"name": name, "seed": seed, "label": arm, "model": {"name": workload}, "optimizer": {"lr": lr}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    results.write_manifest(d, {"run_id": rid, "experiment": name, "seed": seed, "status": "done", "wall_time_s": 1.0})
    results.write_table(pd.DataFrame({"step": np.arange(len(loss)), "loss": loss}), d / "metrics.parquet")


def test_table_and_page_from_results_folders_with_an_lr_grid(tmp_path):
    """The leaderboard runs at the arm's lr, the grid's other lrs from mitigations_lr: the LR
    sensitivity of arm `adam` is computed over all five, the other arm has none."""
    finals = {3e-4: 0.8, 1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.9, 3e-2: np.inf}  # init loss 2.0
    for s in range(3):
        for lr, f in finals.items():
            loss = np.r_[2.0, np.full(99, f if np.isfinite(f) else np.nan)]
            name = "mitigations" if lr == 3e-3 else "mitigations_lr"
            _write_run(tmp_path, name, f"adam-{lr}-{s}", s, "adam", lr, loss)
        _write_run(tmp_path, "mitigations", f"clip-{s}", s, "clip", 3e-3, np.r_[2.0, np.full(99, 0.3)])
    board = leaderboard.table(tmp_path).set_index("arm")
    want = (0.8 + 0.5 + 0.4 + 0.9 + 2.0) / 5 - 0.4
    assert board.loc["adam", "lr_sensitivity"] == pytest.approx(want)
    assert board.loc["adam", "lr_seeds"] == [0, 1, 2] and board.loc["adam", "final_loss"] == pytest.approx(0.4)
    assert math.isnan(board.loc["clip", "lr_sensitivity"])
    assert list(board.index) == ["clip", "adam"]  # no spikes either: the lower final loss first
    out = leaderboard.write(tmp_path)
    page = out.read_text()
    assert out == tmp_path / "leaderboard.md" and "| 1 | `clip` |" in page and "| 2 | `adam` |" in page
    assert "Adam + global-norm gradient clipping" in page  # the arm file's own description
    assert f"{want:.3g}" in page and "replicated" not in page  # verdict-free


def test_empty_results_give_an_empty_table_and_a_page_that_says_so(tmp_path):
    assert leaderboard.table(tmp_path).empty
    assert "No runs" in leaderboard.write(tmp_path).read_text()


# ------------------------------------------------------------------------------- registration
def test_make_replicate_runs_the_leaderboard():
    assert {"mitigations", "mitigations_lr"} <= set(scorecard.experiments())
    assert scorecard.experiments("mitigations") == ["mitigations", "mitigations_lr"]
    assert scorecard.experiments("w2,mitigations") == ["mitigations", "mitigations_lr", "w2_qk_norm"]
    assert "mitigations" not in scorecard.experiments(tier="gpu")
    # a twin's id in any case (make replicate CLAIMS=m7_slingshot upper-cased it to an unknown id)
    assert scorecard.experiments("m7_slingshot") == scorecard.experiments("M7_SLINGSHOT") == ["precursors_slingshot"]
    with pytest.raises(SystemExit, match="Z9"):
        scorecard.experiments("z9")


def test_every_arm_is_in_the_sweep_and_says_what_it_is():
    conf = leaderboard.ARMS.parent.parent / "experiment" / "mitigations.yaml"
    swept = set(yaml.safe_load(conf.read_text())["hydra"]["sweeper"]["params"]["+arm/mitigations"].split(","))
    files = {f"{p.parent.name}/{p.stem}" for p in leaderboard.ARMS.glob("*/*.yaml") if not p.stem.startswith("_")}
    assert swept == files
    for arm in files:
        workload, name = arm.split("/")
        assert leaderboard.describe(workload, name), arm
        assert yaml.safe_load((leaderboard.ARMS / f"{arm}.yaml").read_text())["label"] == name


@pytest.mark.parametrize("arm", ["mlp/layer_lr", "gpt/qk_norm_z_loss", "mlp/sgd", "gpt/rollback", "slingshot/sgd",
                                 "slingshot/layer_lr", "slingshot/adam_fp64", "slingshot/stable_adamw"])
def test_arms_compose_into_valid_runs(arm, cfg_factory):
    from replicate import train

    cfg = cfg_factory("experiment=mitigations", f"+arm/mitigations={arm}")
    model, _, opt, _ = train._build(cfg)
    assert cfg["name"] == "mitigations" and cfg["label"] == arm.split("/")[1]
    workload = arm.split("/")[0]
    assert type(model).__name__.lower() == {"slingshot": "modularmlp"}.get(workload, workload)
    if workload == "slingshot":  # the Slingshot's workload: T1's model and data, beta2 0.9 unless the arm says
        assert (cfg["model"]["p"], cfg["data"]["p"], cfg["train"]["steps"], cfg["optimizer"]["lr"]) == (
            23, 23, 2500, 0.02 if arm.endswith("sgd") else 2e-3)
        assert cfg["optimizer"].get("b2", 0.9) == 0.9 and not any(leaderboard.describe("slingshot", a) == ""
                                                                  for a in ("adam", "adam_fp64"))


def test_the_slingshot_runs_are_the_third_workload(tmp_path):
    seeds = {"m": 0, "g": 0, "s": 0}
    runs = pd.DataFrame([{"run_id": rid, "seed": 0, "status": "done", "model.name": w, "label": "adam",
                          "optimizer.lr": 3e-3} for rid, w in (("m", "mlp"), ("g", "gpt"), ("s", "modular_mlp"))])
    per_run = leaderboard.run_table(tidy({k: planted() for k in seeds}, seeds), runs)
    assert dict(zip(per_run["run_id"], per_run["workload"])) == {"m": "mlp", "g": "gpt", "s": "slingshot"}
    board = leaderboard.summarize(per_run)
    assert list(board["workload"]) == ["mlp", "gpt", "slingshot"]
    assert board.set_index("workload").loc["slingshot", "description"].startswith("Adam, the baseline: beta2 0.9")


def test_json_safe():  # the table feeds the report's figure: plain types, no objects
    per_run = _board({"a": lambda s: planted(at=(300,))})
    json.dumps(leaderboard.summarize(per_run).drop(columns="description").to_dict("records"), default=float)
