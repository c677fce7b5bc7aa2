"""Spike claims are judged under each of the four definitions of CLAIMS.md (replicate/claims/registry.py):
R3's verdict first, ``robustness`` naming the definitions that differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from claims_synthetic import loss_frame as tidy, smooth

from replicate import spikes
from replicate.claims import CLAIMS, _load_modules
from replicate.claims.registry import Judgement, claim, judge, robustness


def test_robustness_names_the_definitions_that_differ():
    same = {d: "replicated" for d in spikes.DEFINITIONS}
    assert robustness(same) == "robust"
    assert robustness({**same, "R10": "not replicated", "Z6": "out of regime"}) == \
        "R10: not replicated; Z6: out of regime"
    assert robustness({}) == ""


def test_a_spike_judge_must_take_a_definition():
    with pytest.raises(TypeError, match="definition"):
        claim("X_no_definition", experiment="x", source="s", statement="s", metric="m", threshold="t",
              spikes=True)(lambda metrics, runs: Judgement("replicated", 1.0))


def test_every_spike_claim_is_judged_under_the_four_definitions():
    _load_modules()
    spiky = [c for c in CLAIMS.values() if c.spikes]
    # every claim of CLAIMS.md that counts loss spikes (the twins, GPU and second workload, share their judges)
    assert {c.id for c in spiky if c.tier == "cpu" and not c.twin_of} == {
        "M6", "M7", "M8", "M9", "M10", "M11", "B1", "B2", "W1", "Q1", "Q2", "Q3", "T1", "T2", "H1"}
    assert {c.id for c in spiky if c.twin_of and c.tier == "cpu"} == {"M7_slingshot", "W1_slingshot", "B2_slingshot"}
    assert all("definition" in c.judge.__code__.co_varnames for c in spiky)


def _band_and_jumps(seeds=(0, 1, 2)):
    """M8-shaped runs where the definitions disagree: at beta2 0.99 a noisy band near 0 (the loss
    jumps 3-8x its median, often: many R3 episodes, few taller than 10x, none for Z6 whose window
    std holds the band); at 0.999 isolated 1000x jumps (an episode under every definition)."""
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for b2 in (0.9, 0.95, 0.99, 0.999):
            loss = smooth(3000, seed) * 1e-3
            if b2 == 0.99:
                hit = rng.random(3000) < 0.08
                loss[hit] *= rng.uniform(4, 8, hit.sum())
            if b2 == 0.999:
                loss[200::140] *= 1000.0
            rid = f"{seed}-{b2}"
            series[rid], seed_of[rid] = loss, seed
            rows.append({"run_id": rid, "seed": seed, "optimizer.b2": b2})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_m8_under_the_four_definitions():
    _load_modules()
    metrics, runs = _band_and_jumps()
    by = judge(CLAIMS["M8"], metrics, runs)
    assert set(by) == set(spikes.DEFINITIONS)
    # R3 counts the band at 0.99 as more spikes than the 0.999 jumps: not monotone
    assert by["R3"].verdict == "not replicated"
    # R100 and Z6 see only the jumps: monotone (0, 0, 0, many)
    assert by["R100"].verdict == "replicated" and by["Z6"].verdict == "replicated"
    assert "R3" in by["R3"].premise and "Z6" in by["Z6"].premise
    said = robustness({d: j.verdict for d, j in by.items()})
    assert "R100: replicated" in said and "Z6: replicated" in said


# ------------------------------------------------------------------ scorecard and report
def _spike_count_judge(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    """replicated when every run has >= 5 episodes under ``definition``; flags its threshold."""
    s = spikes.summarize(metrics, definition=definition)
    counts = (s["spikes_per_1k"] * s["n_steps"] / 1000).round()
    seeds = sorted(int(x) for x in runs["seed"])
    j = Judgement("replicated" if (counts >= 5).all() else "not replicated", float(counts.min()), seeds=seeds)
    j.flag, j.corrected = "derivation in toy.yaml", "replicated"
    return j


@pytest.fixture
def spiky_folder(tmp_path, monkeypatch):
    """A toy spike claim ZS on runs of both seed sets whose loss has a noisy 4-6x band: R3 counts
    it (replicated), R10 and R100 do not."""
    from conftest import write_run
    from replicate import results
    from replicate.claims.registry import Claim

    monkeypatch.setitem(CLAIMS, "ZS", Claim("ZS", "toy_spikes", "Toy et al.", "claim ZS", "episodes",
                                            ">= 5 per run", "cpu", _spike_count_judge, spikes=True))
    root = tmp_path / "results"
    for seed in (*results.PRIMARY_SEEDS, *results.HELDOUT_SEEDS):
        rng = np.random.default_rng(seed)
        loss = smooth(2000, seed) * 1e-3
        hit = rng.random(2000) < 0.05
        hit[:200] = False
        loss[hit] *= rng.uniform(4, 6, hit.sum())
        write_run(root, "toy_spikes", seed, {"x": 1}, pd.DataFrame({"step": np.arange(2000), "loss": loss}))
    return root


def test_the_scorecard_and_report_show_every_definition_on_both_seed_sets(spiky_folder):
    import json

    from replicate import report, scorecard

    scorecard.write(spiky_folder, seeds=(10, 11, 12))
    js, md = scorecard.write(spiky_folder)
    row = next(r for r in json.loads(js.read_text()) if r["claim"] == "ZS")
    assert row["verdict"] == row["by_definition"]["R3"]["verdict"] == "replicated"
    assert row["by_definition"]["R100"]["verdict"] == "not replicated"
    assert set(row["by_definition"]) == set(spikes.DEFINITIONS)
    assert "R100: not replicated" in row["robustness"]
    assert row["heldout"]["by_definition"]["R10"]["verdict"] == "not replicated"
    assert row["flag"] == "derivation in toy.yaml" and row["corrected"] == "replicated"
    text = md.read_text()
    assert "## Verdicts by spike definition" in text
    assert "| ZS | replicated | " in text and "| R3 (seeds 0,1,2) | R10 (seeds 0,1,2) |" in text
    assert "⚑" in text and "corrected: **replicated**" in text
    report.build(spiky_folder, workers=1)
    html = (spiky_folder / "report" / "index.html").read_text()
    section = html[html.index('id="claim-ZS"'):]
    section = section[:section.index("</section>")]
    assert "spike definition" in section and section.count("<tr><td>") == len(spikes.DEFINITIONS)
    assert "R3 (the verdict)" in section and "⚑" in section


def test_a_claim_may_name_its_primary_definition(monkeypatch):
    """T1's row says "Adam spikes (R100)": registered with primary="R100", its verdict is R100's."""
    from replicate.claims.registry import Verdict, evaluate  # noqa: F401

    metrics, runs = _band_and_jumps()
    seen = {}

    def judge_(metrics, runs, definition=spikes.PRIMARY):
        seen[definition] = True
        return Judgement({"R100": "replicated"}.get(definition, "not replicated"), 1.0, seeds=[0, 1, 2])

    claim("X_primary", experiment="x", source="s", statement="s", metric="m", threshold="t", spikes=True,
          primary="R100")(judge_)
    try:
        c = CLAIMS["X_primary"]
        assert c.primary == "R100"
        by = judge(c, metrics, runs)
        assert set(seen) == set(spikes.DEFINITIONS) and by["R100"].verdict == "replicated"
        assert robustness({d: j.verdict for d, j in by.items()}, c.primary) == \
            "R3: not replicated; R10: not replicated; Z6: not replicated"
        with pytest.raises(ValueError, match="unknown spike definition"):
            claim("X_bad", experiment="x", source="s", statement="s", metric="m", threshold="t", spikes=True,
                  primary="R7")(judge_)
    finally:
        CLAIMS.pop("X_primary", None)
