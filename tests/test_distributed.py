"""Multi-process training on CPU (gloo): DDP and ZeRO-1 equal one process with the same global
batch, ZeRO-1 shards the optimizer state, a run resumes under another world size; micro-batches;
the mixed-precision memory arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from replicate import distributed, results, train
from replicate.config import ConfigError
from replicate.distributed import Dist

# 8 rows of 256 per step: 4 per rank, 2 per micro-batch at grad_accum=4; three hidden layers of 32
# so that whole tensors split about evenly over 2 ranks (two 32x32 weights)
MLP = ["model=mlp", "model.hidden=[32,32,32]", "data=regression", "data.batch_size=8", "train.steps=8", "train.checkpoint_every=4",
       "train.keep_checkpoint=true", "threads=1"]


def series(root):
    df = results.load(root, metrics=["loss"])
    assert df["run_id"].nunique() == 1
    return df.sort_values("step")["value"].to_numpy()


def manifest(root):
    rid = results.runs(root)["run_id"].iloc[0]
    return results.read_manifest(next((root / "runs").glob(f"*/{rid}")))


def unfinish(root):
    """Make the finished run look killed after its last checkpoint (step 4)."""
    rdir = next((root / "runs").glob("*/*"))
    m = results.read_manifest(rdir)
    results.write_manifest(rdir, {**m, "status": "running"})
    (rdir / "metrics.parquet").unlink()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    from conftest import make_cfg

    root = tmp_path_factory.mktemp("single")
    train.run(make_cfg(MLP, root))
    return root, series(root), manifest(root)


def test_ddp_on_two_processes_equals_one_process_and_the_replicas_agree(tmp_path, single):
    from conftest import make_cfg

    _, ref, _ = single
    train.spawn(make_cfg(MLP, tmp_path), 2)
    got, m = series(tmp_path), manifest(tmp_path)
    assert m["status"] == "done" and m["memory"]["world_size"] == 2
    assert m["replica_spread"] == 0.0  # parameters bit-equal across ranks
    assert len(got) == 8 and np.allclose(got, ref, rtol=1e-5, atol=0)
    assert not np.allclose(got[1:], ref[0], rtol=1e-3)  # it trained


def test_zero1_equals_one_process_shards_the_state_and_resumes_on_one_process(tmp_path, single):
    from conftest import make_cfg

    _, ref, m1 = single
    cfg = make_cfg([*MLP, "dist.zero=true"], tmp_path)
    train.spawn(cfg, 2)
    got, m = series(tmp_path), manifest(tmp_path)
    assert m["replica_spread"] == 0.0 and np.allclose(got, ref, rtol=1e-5, atol=0)
    full = m1["memory"]["optimizer_state_bytes_per_rank"][0]
    per_rank = m["memory"]["optimizer_state_bytes_per_rank"]
    assert len(per_rank) == 2 and max(per_rank) < 0.75 * full  # ~ full / 2 (whole tensors per rank)
    assert sum(per_rank) == pytest.approx(full, rel=0.05)  # only the step counts are duplicated

    # world size 2 with ZeRO-1 -> 1 process: the consolidated state loads into a plain optimizer
    unfinish(tmp_path)
    resumed = train.run(make_cfg([*MLP, "dist.zero=false"], tmp_path))
    assert resumed["status"] == "done" and resumed["resumes"] == 1
    assert np.allclose(series(tmp_path), ref, rtol=1e-5, atol=0)


def test_a_one_process_checkpoint_resumes_on_two_processes_with_zero1(tmp_path, single):
    import shutil

    from conftest import make_cfg

    root, ref, _ = single
    shutil.copytree(root / "runs", tmp_path / "runs")
    unfinish(tmp_path)
    train.spawn(make_cfg([*MLP, "dist.zero=true"], tmp_path), 2)
    m = manifest(tmp_path)
    assert m["status"] == "done" and m["resumes"] == 1 and m["memory"]["zero"]
    assert np.allclose(series(tmp_path), ref, rtol=1e-5, atol=0)


def test_gradient_accumulation_equals_the_whole_batch(tmp_path, single, cfg_factory):
    _, ref, _ = single
    train.run(cfg_factory(*MLP, "train.grad_accum=4"))
    assert np.allclose(series(tmp_path / "results"), ref, rtol=1e-5, atol=0)


def test_microbatches_are_contiguous_shards_of_the_global_batch():
    x = torch.arange(12).reshape(12, 1)
    pieces = [distributed.microbatches((x, -x), Dist(r, 2), 3) for r in range(2)]
    rows = [p[0][:, 0].tolist() for per_rank in pieces for p in per_rank]
    assert rows == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert torch.equal(pieces[1][0][1], -pieces[1][0][0])
    assert distributed.microbatches(None, Dist(1, 2), 2) == [None, None]
    with pytest.raises(ValueError, match="equal parts"):
        distributed.microbatches(x, Dist(0, 5), 1)


def test_bad_splits_and_zero_with_probes_are_one_line_config_errors(tmp_path, cfg_factory):
    with pytest.raises(ConfigError, match="data.batch_size=8 does not split"):
        train.run(cfg_factory(*MLP, "train.grad_accum=3"))
    with pytest.raises(ConfigError, match="dist.zero=true shards"):
        train.run(cfg_factory(*MLP, "dist.zero=true", "probe=layers", "probe.every=1"))
    with pytest.raises(ConfigError, match="train.grad_accum=0"):
        train.run(cfg_factory(*MLP, "train.grad_accum=0"))
    assert not (tmp_path / "results" / "runs").exists()


def test_mixed_precision_arithmetic_and_measured_state_bytes():
    mp = distributed.mixed_precision_bytes(1000)
    assert mp["bytes_per_param"] == 16 and mp["total"] == 16_000
    assert mp["master_fp32"] + mp["m_fp32"] + mp["v_fp32"] == 12_000  # 12 of the 16: optimizer state
    assert distributed.mixed_precision_bytes(1000, world=4, zero=True)["bytes_per_param"] == 4 + 12 / 4
    from replicate.optim import TransformOptimizer

    p = torch.nn.Parameter(torch.zeros(1000))
    opt = TransformOptimizer([p], "adam")
    # fp32 training: m and v, 8 bytes per parameter, plus the step count
    assert 8000 <= distributed.optimizer_state_bytes(opt) <= 8000 + 64
    sharded = distributed.ShardedOptimizer([p], lambda g: TransformOptimizer(g, "adam"), Dist(1, 2))
    assert sharded.local is None and distributed.optimizer_state_bytes(sharded) == 0  # rank 1 owns nothing


def test_probes_clip_and_rollback_run_on_rank_0_under_ddp(tmp_path):
    from conftest import make_cfg

    gpt = ["model=gpt", "data=markov", "data.batch_size=8", "data.context=16", "model.width=32", "model.heads=2",
           "train.steps=12", "threads=1", "probe=layers", "probe.every=5", "mitigation=[clip,rollback]",
           "train.grad_accum=2"]
    train.spawn(make_cfg(gpt, tmp_path), 2)
    m = manifest(tmp_path)
    assert m["status"] == "done" and m["replica_spread"] == 0.0
    df = results.load(tmp_path)
    assert sorted(df[df["metric"] == "r_frac_sign/embedding"]["step"]) == [0, 5, 10]


def test_throughput_counts_tokens_and_mfu_only_on_a_known_gpu_in_low_precision():
    from replicate.models import build_model

    cfg = {"data": {"batch_size": 8, "context": 16}, "model": {"depth": 2, "width": 32}, "train": {"precision": "bf16"}}
    model = build_model({"name": "gpt", "vocab_size": 256, "context": 16, "depth": 2, "width": 32, "heads": 2})
    n = sum(p.numel() for p in model.parameters())
    t = distributed.throughput(cfg, model, steps=100, seconds=2.0, device_name="NVIDIA H100 80GB HBM3")
    assert t["tokens_per_s"] == 8 * 16 * 100 / 2 and t["flops_per_token"] == 6 * n + 12 * 2 * 32 * 16
    assert t["mfu"] == pytest.approx(t["flops_per_token"] * t["tokens_per_s"] / 989e12)
    assert "tokens_per_s_steady" not in t
    s = distributed.throughput(cfg, model, 100, 2.0, "NVIDIA H100 80GB HBM3", steady=(90, 1.0))
    assert s["tokens_per_s_steady"] == 8 * 16 * 90 and s["mfu_steady"] == pytest.approx(
        t["flops_per_token"] * s["tokens_per_s_steady"] / 989e12)
    assert distributed.throughput(cfg, model, 100, 2.0, "x86_64")["mfu"] is None
    assert distributed.throughput({**cfg, "train": {"precision": "fp32"}}, model, 100, 2.0, "NVIDIA H200")["mfu"] is None


def test_a_run_records_its_steady_rate_after_the_warm_up(cfg_factory):
    """The manifest's throughput has the whole session's tokens/s (compilation included) and the
    rate after the first tenth of the steps; the loop's bookkeeping key does not leak into it."""
    from replicate import train

    m = train.run(cfg_factory("model=gpt", "data=markov", "data.batch_size=8", "data.context=16", "model.width=32",
                              "model.heads=2", "train.steps=20", "threads=1"))
    t = m["throughput"]
    assert t["tokens_per_s"] > 0 and t["tokens_per_s_steady"] > 0 and "steady" not in m
    # 18 of the 20 steps after the 2 warm-up steps, in less time than the whole run
    assert t["tokens_per_s_steady"] * m["wall_time_s"] > 8 * 16 * 18
