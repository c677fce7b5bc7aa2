"""Issue 5, "done when" 3: every optimizer variant composes with the probes inside the training loop
(tests/test_variants.py compiles each variant's step alone; tests/test_mitigations.py runs every
mitigation with the probes and compiled). Here each variant trains a tiny GPT with probe=layers,
and two variants with state other than Adam's (Lion: no v; Adafactor: factored v) also run with the
step compiled (dynamo, backend "eager", one graph) to the same losses."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from replicate import results, train
from replicate.optim import VARIANTS

GPT_CFG = ["model=gpt", "data=markov", "data.batch_size=4", "data.context=8", "data.vocab_size=32",
           "model.width=16", "model.heads=2", "model.depth=1", "threads=1", "probe=layers", "probe.every=2",
           "train.steps=6"]


def _wide(root):
    return results.load(root).pivot_table(index="step", columns="metric", values="value")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_trains_with_the_probes(name, cfg_factory, tmp_path):
    m = train.run(cfg_factory(*GPT_CFG, f"optimizer={name}", results_dir=tmp_path))
    w = _wide(tmp_path)
    assert m["status"] == "done" and list(w.index) == list(range(6))
    assert np.isfinite(w["loss"]).all()
    assert {"grad_rms/embedding", "update_norm/embedding"} <= set(w.columns), sorted(w.columns)
    assert w["grad_rms/embedding"].notna().sum() == 3  # probes every 2 steps


@pytest.mark.parametrize("name", ["lion", "adafactor"])
def test_variants_compiled_in_the_loop_with_probes_match_eager(name, cfg_factory, tmp_path, dynamo_only):
    for c in ("false", "true"):
        train.run(cfg_factory(*GPT_CFG, f"optimizer={name}", f"optimizer.compile={c}", results_dir=tmp_path / c))
    a, b = _wide(tmp_path / "false"), _wide(tmp_path / "true")
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)
    np.testing.assert_allclose(b["grad_rms/embedding"].dropna(), a["grad_rms/embedding"].dropna(), rtol=1e-6)
    assert not dynamo_only()
