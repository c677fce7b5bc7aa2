"""Held-out seeds: seeds 0-2 make the scorecard, another seed set (`make replicate SEEDS=10,11,12`)
its held-out column; the two sets share results/runs and never mix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replicate import leaderboard, report, results, scorecard, suite
from replicate.claims import CLAIMS
from replicate.claims.registry import Claim, Judgement, evaluate

from conftest import write_run as _write_run

PRIMARY, HELDOUT = results.PRIMARY_SEEDS, results.HELDOUT_SEEDS


def _metrics(seed: int, score: float, steps: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    loss = np.exp(-np.arange(steps) / 100) * np.exp(0.01 * rng.standard_normal(steps)) + 1e-3
    return pd.DataFrame({"step": np.arange(steps), "loss": loss, "score": score})


def _hist() -> pd.DataFrame:
    return pd.DataFrame([{"step": 0, "layer": "layer0", "quantity": "r", "lo": -1.0, "hi": 1.0,
                          "counts": np.ones(8, dtype=np.int64)}])


def _toy_judge(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    """replicated when every run's ``score`` is 1, else not replicated; the seeds it saw."""
    score = metrics.loc[metrics["metric"] == "score", "value"]
    seeds = sorted(int(s) for s in runs["seed"])
    return Judgement("replicated" if (score == 1).all() else "not replicated", float(score.mean()), seeds=seeds)


@pytest.fixture
def toy_claims(monkeypatch):
    """Two claims on their own experiments: ZA (the same verdict on both seed sets), ZB (not)."""
    for cid, exp in (("ZA", "toy_same"), ("ZB", "toy_diff")):
        monkeypatch.setitem(CLAIMS, cid, Claim(cid, exp, "Toy et al.", f"claim {cid}", "score", "score = 1", "cpu",
                                               _toy_judge))
    return ["ZA", "ZB"]


@pytest.fixture
def mixed(tmp_path, toy_claims):
    """runs of seeds 0-2 and 10-12 side by side: toy_same scores 1 in both, toy_diff 1 on 0-2 only."""
    root = tmp_path / "results"
    for seed in (*PRIMARY, *HELDOUT):
        _write_run(root, "toy_same", seed, {"x": 1}, _metrics(seed, 1.0), _hist())
        _write_run(root, "toy_diff", seed, {"x": 1}, _metrics(seed, 1.0 if seed in PRIMARY else 0.0), _hist())
    return root


# ------------------------------------------------------------------------------- results.py
def test_runs_load_and_histograms_filter_by_seed(mixed):
    everything = results.runs(mixed, experiment="toy_same")
    assert sorted(everything["seed"]) == [*PRIMARY, *HELDOUT]
    for seeds in (PRIMARY, HELDOUT, (1, 11)):
        assert sorted(results.runs(mixed, "toy_same", seeds=seeds)["seed"]) == sorted(seeds)
        assert set(results.load(mixed, "toy_same", seeds=seeds)["seed"]) == set(seeds)
        assert set(results.load(mixed, "toy_same", metrics=["loss"], seeds=seeds)["seed"]) == set(seeds)
        assert set(results.load_histograms(mixed, "toy_same", seeds=seeds)["seed"]) == set(seeds)
    assert set(results.load(mixed)["seed"]) == {*PRIMARY, *HELDOUT}  # no filter: every seed, as before
    none = results.runs(mixed, seeds=(99,))
    assert none.empty and "seed" in none.columns and results.load(mixed, seeds=(99,)).empty
    assert results.parse_seeds("12, 10,11,10") == (10, 11, 12) and results.parse_seeds("") is None
    with pytest.raises(ValueError, match="integers"):
        results.parse_seeds("10,x")


def test_the_main_outputs_need_runs_of_the_primary_seeds(tmp_path):
    """Held-out runs alone would rebuild the committed scorecard as "not run": refused in one line."""
    _write_run(tmp_path, "toy_same", 10, {"x": 1}, _metrics(10, 1.0))
    with pytest.raises(SystemExit, match="of seeds 0,1,2") as e:
        results.require_runs(tmp_path)
    assert str(e.value.code).startswith("error: no runs under") and "\n" not in str(e.value.code)
    results.require_runs(tmp_path, seeds=HELDOUT)  # the held-out scorecard has its runs
    _write_run(tmp_path, "toy_same", 1, {"x": 1}, _metrics(1, 1.0))
    results.require_runs(tmp_path)


# ---------------------------------------------------------------------- judging, never mixing
def test_evaluate_on_a_mixed_folder_judges_only_the_requested_seeds(mixed, toy_claims):
    main = {v.claim: v for v in evaluate(mixed, ids=toy_claims, seeds=PRIMARY)}
    held = {v.claim: v for v in evaluate(mixed, ids=toy_claims, seeds=HELDOUT)}
    both = {v.claim: v for v in evaluate(mixed, ids=toy_claims)}
    assert main["ZA"].seeds == main["ZB"].seeds == list(PRIMARY) and len(main["ZB"].runs) == 3
    assert held["ZA"].seeds == held["ZB"].seeds == list(HELDOUT) and len(held["ZB"].runs) == 3
    assert not set(main["ZB"].runs) & set(held["ZB"].runs)
    assert (main["ZB"].verdict, held["ZB"].verdict) == ("replicated", "not replicated")
    assert main["ZA"].verdict == held["ZA"].verdict == "replicated"
    assert both["ZB"].seeds == [*PRIMARY, *HELDOUT]  # seeds=None: every run, as evaluate did before
    assert [v.verdict for v in evaluate(mixed, ids=["ZA"], seeds=(5,))] == ["not run"]


def test_stability_both_ways_and_not_run():
    assert scorecard.stability("replicated", "replicated") is True
    assert scorecard.stability("not replicated", "not replicated") is True
    assert scorecard.stability("replicated", "not replicated") is False
    assert scorecard.stability("not replicated", "inconclusive") is False
    assert scorecard.stability("replicated", "not run") is None
    assert scorecard.stability("replicated", None) is None
    assert scorecard.stability("not run (tier gpu)", "not run (tier gpu)") is None


def _rows(path: Path) -> dict[str, dict]:
    return {r["claim"]: r for r in json.loads(path.read_text())}


def test_the_main_scorecard_gets_the_held_out_column_and_flags_unstable_claims(mixed, toy_claims):
    js, md = scorecard.write(mixed)  # before any held-out scorecard: the column says not run
    before = _rows(js)
    for cid in toy_claims:
        r = before[cid]
        assert r["seed_set"] == list(PRIMARY) and r["seeds"] == list(PRIMARY) and r["verdict"] == "replicated"
        assert r["heldout"]["verdict"] == "not run" and r["heldout"]["seed_set"] == [] and r["stable"] is None
    text = md.read_text()
    assert "| claim | statement | verdict | premise | robustness | held-out | value |" in text
    assert "| ZB | claim ZB | **replicated** | – | – | not run |" in text

    hjs, hmd = scorecard.write(mixed, seeds=HELDOUT)
    assert hjs == mixed / "heldout" / "scorecard.json" and hmd.exists()
    held = _rows(hjs)
    assert held["ZB"]["seed_set"] == held["ZB"]["seeds"] == list(HELDOUT) and "heldout" not in held["ZB"]
    assert held["ZB"]["verdict"] == "not replicated" and hmd.read_text().startswith(
        "# Held-out scorecard (seeds 10,11,12)")

    js, md = scorecard.write(mixed)
    after = _rows(js)
    assert after["ZA"]["heldout"]["verdict"] == "replicated" and after["ZA"]["stable"] is True
    assert after["ZB"]["heldout"] == {"seed_set": list(HELDOUT), "verdict": "not replicated", "value": 0.0,
                                      "ci_low": None, "ci_high": None, "seeds": list(HELDOUT),
                                      "premise_held": None, "robustness": "", "by_definition": {}}
    assert after["ZB"]["stable"] is False
    for cid in after:  # the primary verdict and numbers are never changed by the held-out column
        assert {k: v for k, v in after[cid].items() if k not in ("heldout", "stable")} == \
               {k: v for k, v in before[cid].items() if k not in ("heldout", "stable")}
    text = md.read_text()
    assert "| claim | statement | verdict | premise | robustness | held-out (seeds 10,11,12) | value |" in text
    assert "| ZA | claim ZA | **replicated** | – | – | replicated |" in text
    assert "| ZB | claim ZB | **replicated** | – | – | not replicated — **unstable** |" in text
    assert "Unstable (the verdict differs on seeds 10,11,12): ZB; 2 claims judged on both seed sets." in text

    with pytest.raises(ValueError, match="overlap"):
        scorecard.write(mixed, seeds=(2, 10))


def test_the_report_shows_the_column_and_draws_its_figures_from_the_primary_seeds(mixed, toy_claims,
                                                                                  monkeypatch):
    scorecard.write(mixed, seeds=HELDOUT)
    seen = {}

    def record(data, out, demanded=frozenset()):
        seen[data.experiment] = (set(data.runs["seed"]), set(data.metrics["seed"]), set(data.hist["seed"]))
        return {}

    monkeypatch.setattr(report, "experiment_figures", record)
    report.build(mixed, workers=1, tables=True)
    assert seen == {e: ({*PRIMARY},) * 3 for e in ("toy_same", "toy_diff")}
    html = (mixed / "report" / "index.html").read_text()
    assert "<th>held-out (seeds 10,11,12)</th>" in html
    za, zb = (html[html.index(f'<td><a href="#claim-{c}">'):].split("</tr>")[0] for c in ("ZA", "ZB"))
    assert "unstable" in zb and "unstable" not in za and "not replicated" in zb
    section = html[html.index('id="claim-ZB"'):]
    assert "v-unstable" in section[:section.index("</section>")]


def test_a_scorecard_without_the_held_out_fields_still_makes_a_page(tmp_path):
    """A scorecard.json written before the held-out column (or by hand) renders with "not run"."""
    (tmp_path / "scorecard.json").write_text(json.dumps([
        {"claim": "M1", "source": "s", "metric": "m", "value": 1.0, "ci_low": None, "ci_high": None,
         "threshold": "t", "verdict": "replicated", "seeds": [0, 1, 2], "runtime_s": 1.0, "experiment": "e",
         "statement": "s", "detail": "", "runs": []}]))
    report.build(tmp_path, workers=1)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<th>held-out</th>" in html and ">not run</span>" in html


def test_the_leaderboard_reads_the_primary_seeds_only(tmp_path):
    for seed in (*PRIMARY, *HELDOUT):
        for arm in ("adam", "clip"):
            _write_run(tmp_path, "mitigations", seed,
                       {"label": arm, "model": {"name": "mlp"}, "optimizer": {"lr": 1e-3}}, _metrics(seed, 1.0))
    board = leaderboard.table(tmp_path)
    assert len(board) == 2 and all(s == list(PRIMARY) for s in board["seeds"])


# ---------------------------------------------------------------------------------- the suite
def test_the_suite_passes_the_seeds_to_every_experiment():
    cmd = suite.command("m8_beta2_mlp", results_dir="r", overrides=["train.steps=3"], seeds=(10, 11, 12),
                        python="py")
    assert cmd == ["py", "-m", "replicate", "-m", "experiment=m8_beta2_mlp", "hydra/launcher=basic", "threads=1",
                   "results_dir=r", "train.steps=3", "seed=10,11,12"]
    assert not [c for c in suite.command("m8_beta2_mlp") if c.startswith("seed=")]  # its own seeds
    assert suite.cost("m1_iid_gradients", seeds=(10, 11)) == pytest.approx(suite.cost("m1_iid_gradients") * 2 / 3)
    # an experiment without a seed sweep (probe_demo: one run) gets one: a run per seed
    assert suite.cost("probe_demo", seeds=(10, 11, 12)) == pytest.approx(suite.cost("probe_demo") * 3)
    assert suite.log_dir("r", (10, 11, 12)) == Path("r") / "logs" / "seeds_10_11_12"
    with pytest.raises(ValueError, match="twice"):
        suite.run(["m1_iid_gradients"], overrides=["seed=4"], seeds=(10,))


@pytest.mark.parametrize("argv, why", [(["--seeds", "2,10"], "mixes"), (["--seeds", "10", "--", "seed=3"], "twice"),
                                       (["--seeds", "a"], "integers")])
def test_the_suite_refuses_mixed_or_doubled_seeds(argv, why, capsys):
    with pytest.raises(SystemExit):
        suite.main(["--claims", "m1", *argv])
    assert why in capsys.readouterr().err


def test_held_out_seeds_end_to_end_on_m1(tmp_path, capsys):
    """`python -m replicate.suite --claims m1 --seeds 10,11`: M1's sweep with seeds 10 and 11 in place of
    its own 0,1,2, then the held-out scorecard judged on them."""
    root = tmp_path / "results"
    assert suite.main(["--claims", "m1", "--seeds", "10,11", "--jobs", "1", "--results-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "sweep finished: 2 runs: 2 done" in out and f"wrote {root / 'heldout' / 'scorecard.json'}" in out
    assert "note: no runs of seeds 0,1,2" in out  # make report will keep the main scorecard: said so
    r = results.runs(root, experiment="m1_iid_gradients")
    assert sorted(r["seed"]) == [10, 11] and set(r["status"]) == {"done"}
    assert (root / "logs" / "seeds_10_11" / "m1_iid_gradients.log").exists()
    m1 = _rows(root / "heldout" / "scorecard.json")["M1"]
    assert m1["seed_set"] == m1["seeds"] == [10, 11] and sorted(m1["runs"]) == sorted(r["run_id"])
    assert m1["verdict"] == "inconclusive" and "per seed" in m1["detail"]  # 2 seeds: MIN_SEEDS is 3
    assert "# Held-out scorecard (seeds 10,11)" in (root / "heldout" / "scorecard.md").read_text()
    assert not (root / "scorecard.json").exists()  # the main scorecard is make report's
    main = _rows(scorecard.write(root)[0])["M1"]  # no runs of seeds 0-2: not run there, the column filled
    assert main["verdict"] == "not run" and main["heldout"]["verdict"] == "inconclusive" and main["stable"] is None
