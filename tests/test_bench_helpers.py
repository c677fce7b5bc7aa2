"""replicate.bench: bytes-per-param table, state bytes, shapes, timer, bandwidth, summary."""

from __future__ import annotations

import json
import time

import pytest
import torch

from replicate import bench
from replicate.optim import VARIANTS, make


def test_bytes_table_covers_every_variant_and_counts_adam_lion():
    """The table is derived from the rows: 12 + 8 bytes per state tensor, + a declared extra pass."""
    assert set(VARIANTS) | {"torch_adamw"} == set(bench.BYTES_PER_PARAM)
    assert bench.bytes_per_param("adam") == 28 == 4 * (4 + 3)  # read p, g, m, v; write p, m, v
    assert bench.bytes_per_param("lion") == 20 == 4 * (3 + 2)  # read p, g, m; write p, m
    assert bench.bytes_per_param("stable_adamw") > bench.bytes_per_param("adamw")  # extra pass
    assert bench.BYTES_PER_PARAM["stable_adamw"] == {"fp32": 36, "bf16": 34}  # 28 + its declared pass
    assert bench.BYTES_PER_PARAM["adafactor"] == {"fp32": 24, "bf16": 20}  # its own counts
    for v, row in bench.BYTES_PER_PARAM.items():
        assert set(row) == {"fp32", "bf16"} and all(n > 0 for n in row.values()), v


def test_model_shapes_mix_matrices_and_vectors_near_the_target():
    for n in (1_000_000, 16_000_000, 1_000_000_000):
        shapes = bench.model_shapes(n)
        assert {len(s) for s in shapes} == {1, 2}
        assert abs(bench.n_params(shapes) / n - 1) < 0.15


def check_state_bytes(variant):
    """Measured optimizer-state bytes per param (fp32 and bf16 params) equal the row's expected."""
    shapes = [(8, 4), (4,), (2, 3, 5)]
    for dt in (torch.float32, torch.bfloat16):
        ps = [torch.nn.Parameter(torch.zeros(s, dtype=dt)) for s in shapes]
        opt = make(variant, ps, **bench.BENCH_HPARAMS.get(variant, {}))
        got = bench.state_bytes(opt.param_state(p) for p in ps) / bench.n_params(shapes)
        assert got == pytest.approx(bench.expected_state_bytes(variant, shapes, dt))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_state_bytes_measured_equal_expected(variant):
    check_state_bytes(variant)
    if variant == "adam":
        shapes = [(8, 4), (4,), (2, 3, 5)]
        assert bench.expected_state_bytes("adam", shapes) == 8
        # mixed precision: fp32 master + m + v = the 12 bytes of MIXED_PRECISION_TARGET
        assert bench.expected_state_bytes("adam", shapes, torch.bfloat16) == 12
        assert bench.MIXED_PRECISION_TARGET["optimizer_state"] == 12


def test_state_bytes_counts_shared_tensors_once_and_skips_scalars():
    a, c = torch.zeros(10), torch.zeros(())
    assert bench.state_bytes([{"m": a, "count": c}, {"m": a}]) == 40


def test_step_timer_drops_warmup_and_takes_the_median():
    timer = bench.StepTimer("cpu", warmup=2)
    for d in (0.05, 0.05, 0.0, 0.01, 0.02):
        timer(lambda: time.sleep(d))
    assert len(timer.times()) == 3
    assert 0.005 < timer.median() < 0.05
    with pytest.raises(ValueError):
        bench.StepTimer("cpu").median()
    assert bench.time_fn(lambda: None, "cpu", warmup=1, iters=3) >= 0


def test_copy_bandwidth_and_gbps():
    gb = bench.copy_bandwidth("cpu", nbytes=4 << 20, warmup=1, iters=3)
    assert gb > 0  # no lower bound: a loaded 2-core CI machine can be very slow
    assert bench.gbps(28, 1_000_000, 0.001) == pytest.approx(28.0)


def test_device_name_and_slug():
    assert bench.device_name("cpu")
    slug = bench.device_slug("cpu")
    assert slug.startswith("cpu") and all(ch.isalnum() or ch == "-" for ch in slug)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_timer_and_names():
    timer = bench.StepTimer("cuda")
    x = torch.ones(1 << 20, device="cuda")
    timer(lambda: x.mul_(1.0))
    assert timer.median() > 0 and bench.device_slug("cuda").startswith("cuda")
    assert bench.copy_bandwidth("cuda", nbytes=64 << 20, iters=3) > 0


def test_summarize_a_benchmark_json(tmp_path):
    def row(variant, mode, step_s, dtype="fp32", copy=20.0):
        bpp = bench.bytes_per_param(variant, dtype)
        return {"extra_info": dict(kind="optimizer_step", variant=variant, mode=mode, dtype=dtype,
                                   params=1_000_000, device="cpu", torch="x", threads=2,
                                   copy_gbps=copy, step_s=step_s, gbps=bpp / step_s / 1e3,
                                   bandwidth_fraction=bpp / step_s / 1e3 / copy)}

    path = tmp_path / "b.json"
    path.write_text(json.dumps({"benchmarks": [row("adam", "eager", 0.01), row("adam", "compiled", 0.002),
                                               row("torch_adamw", "fused", 0.002, copy=40.0),
                                               row("stable_adamw", "compiled", 0.004, "bf16"),
                                               {"extra_info": {"kind": "copy"}}]}))
    table = bench.summarize(str(path))
    assert "| adam | 28 | 10.0 | 2.0 | 14.0 | 0.70 | 0.14 | 1.00 |" in table
    assert "torch AdamW fused" in table and "stable_adamw" not in table
    # copy bandwidth measured beside each benchmark: the header gives the median and the range
    assert "copy bandwidth 20.0 GB/s (median, 20.0–40.0 over its benchmarks" in table
    assert "| torch AdamW fused | 28 | 2.0 | – | 14.0 | 0.35 | – | 1.00 |" in table
    bf16 = bench.summarize(str(path), dtype="bf16")  # its own layout's bytes; no fused AdamW measured there
    assert "1.0M bf16 params" in bf16 and "| stable_adamw | 34 | – | 4.0 | 8.5 | 0.42 | – | – |" in bf16
    assert "| adam |" not in bf16
