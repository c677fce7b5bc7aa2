"""The gpu tier on CPU, tiny: its experiments compose to the GPU workload, and one of them (m8_gpu)
runs end to end at a toy size to a valid verdict through the cpu tier's judge."""

from __future__ import annotations

import pytest
from conftest import make_cfg

from replicate import results, train
from replicate.claims import CLAIMS, VERDICTS, _load_modules, evaluate
from replicate.models import build_model
from replicate.scorecard import experiments

TINY = ["model.depth=1", "model.width=32", "model.heads=2", "model.compile=false", "optimizer.compile=false",
        "data.context=16", "data.batch_size=8", "train.steps=120", "train.val_every=50", "schedule.warmup_steps=10", "threads=1"]


@pytest.mark.parametrize("exp", ["m3_gpu", "m7_gpu", "m8_gpu", "m9_gpu", "w1_gpu"])
def test_gpu_experiments_compose_to_the_gpu_workload(tmp_path, exp):
    cfg = make_cfg([f"experiment={exp}"], tmp_path)
    assert cfg["name"] == exp and cfg["data"]["name"] == "shakespeare" and cfg["data"]["context"] == 256
    assert cfg["train"]["precision"] == "bf16" and cfg["model"]["compile"] and cfg["optimizer"]["compile"]
    assert cfg["schedule"]["name"] == "cosine" and cfg["schedule"]["warmup_steps"] == 200
    model = build_model({k: v for k, v in cfg["model"].items() if k != "compile"})
    assert 10e6 < sum(p.numel() for p in model.parameters()) < 125e6


def test_make_replicate_tier_gpu_selects_the_gpu_experiments():
    _load_modules()
    assert set(experiments(tier="gpu")) == {"m3_gpu", "m7_gpu", "m8_gpu", "m9_gpu", "w1_gpu"} | {
        CLAIMS[c].experiment for c in CLAIMS if c.endswith("_gpu") and CLAIMS[c].judge is not None}
    assert not {"m3_gpu", "m7_gpu", "m8_gpu", "m9_gpu", "w1_gpu"} & set(experiments(tier="cpu"))
    for cid in ("M3_gpu", "M7_gpu", "M8_gpu", "M9_gpu", "W1_gpu"):
        assert CLAIMS[cid].tier == "gpu" and CLAIMS[cid].judge is not None


def test_m8_gpu_runs_tiny_on_cpu_to_a_valid_verdict(tmp_path):
    for b2 in (0.9, 0.95, 0.99, 0.999):
        for seed in (0, 1, 2):
            m = train.run(make_cfg(["experiment=m8_gpu", f"optimizer.b2={b2}", f"seed={seed}", *TINY], tmp_path))
            assert m["status"] == "done"
    df = results.load(tmp_path, experiment="m8_gpu")
    val = df[df["metric"] == "val_loss"]
    assert sorted(val["step"].unique()) == [0, 50, 100, 119] and val["value"].notna().all()
    (v,) = evaluate(tmp_path, ids=["M8_gpu"])
    assert v.verdict in VERDICTS and v.seeds == [0, 1, 2] and v.experiment == "m8_gpu"
