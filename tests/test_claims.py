"""The claim registry (every claim of CLAIMS.md registered, GPU twins, figures, pending claims), the
verdict helpers, and the scorecard. Each experiment's judge is tested in tests/test_claims_<experiment>.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from replicate.claims import CLAIMS, MIN_SEEDS, VERDICTS, _load_modules, _order, fraction_of_seeds
from replicate.claims.registry import Claim, claim, pending

ROOT = Path(__file__).resolve().parent.parent
_load_modules()


def test_fraction_of_seeds_on_both_sides_and_with_too_few_seeds():
    assert fraction_of_seeds({0: True, 1: True, 2: False}, need=2 / 3).verdict == "replicated"
    assert fraction_of_seeds({0: True, 1: False, 2: False}, need=2 / 3).verdict == "not replicated"
    few = fraction_of_seeds({0: True, 1: True}, need=0.5)
    assert few.verdict == "inconclusive" and MIN_SEEDS == 3


CLAIMS_MD = ROOT.parent / "shared" / "CLAIMS.md"


def claim_ids_in_claims_md(path: Path = CLAIMS_MD) -> set[str]:
    """Every id CLAIMS.md names: the first column of its claim tables (``| id | claim | ...``), the
    ids listed in the premises table's first column (``| claims | premise |``, e.g. "M0, M1, M2"),
    the open questions (``- Q1.``) and the gpu tier's ``_gpu`` twins."""
    text = path.read_text()
    ids: set[str] = set()
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells[0]
        elif set(cells[0]) <= set("-: "):
            continue  # the separator row
        elif header == "id":
            assert re.fullmatch(r"[A-Z]+\d+", cells[0]), f"not a claim id: {cells[0]!r}"
            ids.add(cells[0])
        elif header == "claims":
            ids |= set(re.findall(r"[A-Z]+\d+", cells[0]))
    ids |= set(re.findall(r"^- (Q\d)\.", text, flags=re.M))
    gpu = re.search(r"Tier `gpu`.*?: ([^.]*?)\s+again", text, flags=re.S)
    ids |= {f"{i.strip()}_gpu" for i in re.findall(r"[A-Z]+\d+", gpu.group(1))} if gpu else set()
    return ids


@pytest.mark.skipif(not CLAIMS_MD.exists(), reason="../shared/CLAIMS.md not beside the repo")
def test_every_claim_of_claims_md_is_registered():
    ids = claim_ids_in_claims_md()
    assert len(ids) >= 32 and {"T1", "T2", "H1", "W3", "K1", "M6_gpu", "Q4"} <= ids
    assert ids <= set(CLAIMS), sorted(ids - set(CLAIMS))


def test_the_claims_md_reader_takes_every_table_id_and_the_premises_lists(tmp_path):
    md = tmp_path / "CLAIMS.md"
    md.write_text("Tier `gpu` runs: M3 and Z9 again.\n\n| id | claim | metric | when |\n|---|---|---|---|\n"
                  "| T1 | a | b | c |\n| K12 | a | b | c |\n\ntext\n\n| claims | premise | |\n|---|---|---|\n"
                  "| M0, H1 | none | |\n\n- Q7. a question\n")
    assert claim_ids_in_claims_md(md) == {"T1", "K12", "M0", "H1", "Q7", "M3_gpu", "Z9_gpu"}


def test_every_claim_lives_in_the_module_named_like_its_experiment():
    stems = {p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")}
    for cid, c in CLAIMS.items():
        if c.judge is None:
            continue
        module = c.judge.__module__.rsplit(".", 1)[-1]
        if c.twin_of:  # a twin (GPU, second workload): its claim's judge, on its own experiment
            assert c.experiment in stems and CLAIMS[c.twin_of].judge is c.judge, cid
            assert module == CLAIMS[c.twin_of].experiment, cid
        else:
            assert module == c.experiment and c.experiment in stems, (cid, module, c.experiment)


def test_pending_claims_have_no_experiment_yet_and_are_not_run(tmp_path):
    from replicate.claims import evaluate

    pending_ids = sorted(cid for cid, c in CLAIMS.items() if c.judge is None)
    assert pending_ids == ["K1", "M6_gpu", "W3"]
    stems = {p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")}
    for v in evaluate(tmp_path, ids=pending_ids):
        assert v.experiment is None and v.verdict in ("not run (no experiment yet)", "not run (tier gpu)")
        assert v.statement and v.metric and v.threshold and v.source
    assert not {"w3_attn_logits_gpt",
                "k1_qk_clip_gpt"} & stems  # once one exists, its module gets a judge in place of pending()


def test_claim_registers_its_gpu_twin_and_figures(monkeypatch):
    monkeypatch.setattr("replicate.claims.registry.CLAIMS", reg := {})

    @claim("X1", experiment="x1_cpu", gpu="x1_gpu", figures=["spike_rates", "loss"], source="src",
           statement="It holds", metric="m", threshold="t")
    def judge(metrics, runs):
        return None

    assert set(reg) == {"X1", "X1_gpu"}
    cpu, gpu = reg["X1"], reg["X1_gpu"]
    assert (cpu.experiment, cpu.tier, cpu.figures, cpu.judge) == ("x1_cpu", "cpu", ["spike_rates", "loss"], judge)
    assert (gpu.experiment, gpu.tier, gpu.judge, gpu.source, gpu.metric, gpu.threshold) == (
        "x1_gpu", "gpu", judge, "src", "m", "t")
    assert gpu.statement == "It holds (GPU tier: 6 x 384 GPT, 10.9M parameters, byte-level Shakespeare, bf16)"
    assert gpu.figures == []  # as before: a twin's section shows what its experiment's data calls for

    @claim("X2", experiment="x2", source="s", statement="s", metric="m", threshold="t")
    def plain(metrics, runs):
        return None

    assert set(reg) == {"X1", "X1_gpu", "X2"} and reg["X2"].figures == [] and isinstance(reg["X2"], Claim)


def test_a_pending_copy_of_a_judged_claim_is_refused(monkeypatch):
    monkeypatch.setattr("replicate.claims.registry.CLAIMS", reg := {})
    claim("X1", experiment="x1", gpu="x1_gpu", source="s", statement="s", metric="m", threshold="t")(lambda m, r: None)
    with pytest.raises(ValueError, match="X1"):
        pending("X1", source="s", statement="s", metric="m", threshold="t")
    pending("X2", source="s", statement="s", metric="m", threshold="t")
    with pytest.raises(ValueError, match="X2"):
        claim("X2", experiment="x2", source="s", statement="s", metric="m", threshold="t")(lambda m, r: None)
    assert reg["X2"].judge is None


def test_the_gpu_twins_are_the_cpu_judges_on_the_gpu_experiments():
    twins = {cid: c for cid, c in CLAIMS.items() if cid.endswith("_gpu") and c.judge is not None}
    assert {cid: c.experiment for cid, c in twins.items()} == {
        "M3_gpu": "m3_gpu", "M7_gpu": "m7_gpu", "M8_gpu": "m8_gpu", "M9_gpu": "m9_gpu", "W1_gpu": "w1_gpu"}
    for cid, c in twins.items():
        cpu = CLAIMS[cid[:-4]]
        assert c.judge is cpu.judge and c.statement.startswith(cpu.statement + " (GPU tier:")


def test_the_slingshot_twins_judge_the_precursors_again_on_their_own_experiment():
    twins = {cid: c for cid, c in CLAIMS.items() if cid.endswith("_slingshot")}
    assert set(twins) == {"M7_slingshot", "W1_slingshot", "B2_slingshot"}
    for cid, c in twins.items():
        own = CLAIMS[c.twin_of]
        assert cid == f"{c.twin_of}_slingshot" and c.experiment == "precursors_slingshot" and c.tier == "cpu"
        assert (c.judge, c.threshold, c.metric, c.spikes, c.primary, c.figures) == (
            own.judge, own.threshold, own.metric, True, "R3", own.figures)
        assert c.statement.startswith(own.statement + " (second workload, the Slingshot")


def test_twin_registers_a_second_workload_and_refuses_to_overwrite_a_claim(monkeypatch):
    from replicate.claims import registry

    reg = {}
    monkeypatch.setattr(registry, "CLAIMS", reg)
    judge = registry.claim("X1", experiment="x1", source="s", statement="It holds", metric="m", threshold="t",
                           spikes=True, primary="R100", figures=["loss"])(lambda m, r, definition="R3": None)
    t = registry.twin("X1", "other", experiment="x1_other", workload=" (elsewhere)")
    assert reg["X1_other"] is t and (t.judge, t.experiment, t.statement, t.primary, t.figures, t.twin_of) == (
        judge, "x1_other", "It holds (elsewhere)", "R100", ["loss"], "X1")
    registry.claim("X1_b", experiment="y", source="s", statement="s", metric="m", threshold="t")(lambda m, r: None)
    with pytest.raises(ValueError, match="X1_b"):
        registry.twin("X1", "b", experiment="z", workload="")


def test_the_report_figures_come_from_the_claims():
    """What report/__init__.py's CLAIM_FIGURES held, now carried by each ``@claim(figures=...)``."""
    assert {cid: c.figures for cid, c in CLAIMS.items() if c.figures} == {
        "M0": ["update_histograms"], "M1": ["update_histograms"], "M2": ["update_histograms"],
        "M3": ["update_histograms"], "M4": ["grad_rms"], "M5": ["grad_rms"], "M6": ["loss"],
        "M7": ["update_histograms"], "M8": ["spike_rates"], "M9": ["spike_rates"],
        "M10": ["grad_rms", "spike_rates"], "B1": ["spike_rates"], "B2": ["curvature"],
        "W1": ["rms_lead"], "Q1": ["spike_rates"], "Q4": ["grad_rms"],
        "T1": ["loss"], "T2": ["loss", "slingshot"], "H1": ["spike_rates", "halflife"],
        "M7_slingshot": ["update_histograms"], "W1_slingshot": ["rms_lead"], "B2_slingshot": ["curvature"]}


def test_ids_sort_by_family_in_the_order_of_claims_md():
    assert sorted(["Q1", "K1", "H1", "T2", "T1", "S1", "W3", "W2", "B2", "M10", "M3_gpu", "M3", "M0"], key=_order) == [
        "M0", "M3", "M3_gpu", "M10", "B2", "W2", "W3", "S1", "T1", "T2", "H1", "K1", "Q1"]


def test_the_seed_check_and_answered():
    from replicate.claims.verdicts import answered, enough_seeds, judged

    assert not enough_seeds([0, 1]) and enough_seeds([0, 1, 2])
    assert judged([0, 1], True) == "inconclusive" and judged([0, 1, 2], True) == "replicated"
    assert judged([0, 1, 2], False) == "not replicated" and judged([0, 1, 2], True, unclear=True) == "inconclusive"
    a = answered([0, 1, 2], 1.5, (1.0, 2.0), "d")
    assert (a.verdict, a.value, a.ci_low, a.ci_high, a.detail) == ("answered", 1.5, 1.0, 2.0, "d")
    assert answered([0, 1, 2], 1.5, (1.0, 2.0), "d", complete=False).verdict == "inconclusive"
    few = answered([0], 1.5, (None, None), "d", why="with both arms")
    assert few.verdict == "inconclusive" and few.detail == "only 1 seed(s) with both arms, 3 needed. d"


def test_no_module_under_claims_imports_the_report_or_the_leaderboard_and_stats_imports_nothing_of_ours():
    for path in (ROOT / "replicate" / "claims").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) .*\b(report|leaderboard)\b", text, flags=re.M), path.name
    stats = (ROOT / "replicate" / "stats.py").read_text()
    assert not re.search(r"^\s*from \.|^\s*import replicate|^\s*from replicate", stats, flags=re.M)


def _valid(verdict: str) -> bool:
    return verdict in VERDICTS or verdict.startswith("not run")


def test_the_committed_scorecard_lists_every_claim_with_a_valid_verdict():
    card = json.loads((ROOT / "results" / "scorecard.json").read_text())
    keys = {"claim", "source", "metric", "value", "ci_low", "ci_high", "threshold", "verdict", "seeds", "runtime_s"}
    assert all(keys <= set(row) for row in card)
    assert {row["claim"] for row in card} == set(CLAIMS)
    assert all(_valid(row["verdict"]) for row in card)
    for row in card:  # a verdict always comes with its numbers
        if row["verdict"] in ("replicated", "not replicated"):
            assert row["value"] is not None and len(row["seeds"]) >= MIN_SEEDS


def test_scorecard_writes_both_files_from_a_results_folder(tmp_path):
    from replicate import scorecard

    js, md = scorecard.write(tmp_path)
    rows = json.loads(js.read_text())
    assert {r["claim"] for r in rows} == set(CLAIMS)
    assert all(r["verdict"].startswith("not run") for r in rows)  # nothing was run
    assert "| claim | statement | verdict | premise | robustness |" in md.read_text()
    assert scorecard.experiments("m8,b1") == ["b1_quadratic", "m8_beta2_mlp"]
    with pytest.raises(SystemExit, match="CLAIMS=NOPE"):
        scorecard.experiments("nope")


