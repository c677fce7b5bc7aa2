"""What the probes cost, on the CPU tiny GPT of probe_demo (pytest-benchmark; `make bench`).

- training with the per-layer probes at the default interval (probe=layers, every 10 steps) against
  training without them: extra_info['overhead'] = t_on / t_off - 1 (target <= 10%);
- one curvature probe (λ_max(H), λ_max(Ĥ), λ_grad(Ĥ), 20 Lanczos steps) in units of one forward +
  backward of the same batch: extra_info['fwd_bwd_equivalents'].
With --benchmark-disable (the default in `make test`) every function runs once, as a test.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import make_cfg  # noqa: E402

from replicate import train  # noqa: E402
from replicate.hessian import curvature  # noqa: E402

DEMO = ["experiment=probe_demo", "train.steps=100", "threads=1", "train.checkpoint_every=0"]


def _run(probe: list[str]) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        cfg = make_cfg([*DEMO, *probe], root)
        t0 = time.perf_counter()
        m = train.run(cfg)
        assert m["status"] == "done"
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_probe_overhead_per_layer_probes(benchmark):
    off, on = [], []

    def both():
        off.append(_run(["probe=none"]))
        on.append(_run(["probe=layers"]))

    benchmark.pedantic(both, rounds=3, iterations=1, warmup_rounds=1)
    t_off, t_on = sorted(off)[len(off) // 2], sorted(on)[len(on) // 2]
    benchmark.extra_info.update(device="cpu", threads=1, steps=100, probe_every=10,
                                t_off_s=t_off, t_on_s=t_on, overhead=t_on / t_off - 1)
    print(f"\nprobe overhead: {100 * (t_on / t_off - 1):.1f}% ({t_off:.2f}s without, {t_on:.2f}s with)")


def test_curvature_probe_cost_in_forward_backward_equivalents(benchmark):
    from replicate.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model({"name": "gpt", "vocab_size": 256, "context": 32})
    batch = torch.randint(0, 256, (64, 33), generator=torch.Generator().manual_seed(0))
    params = list(model.parameters())
    precond = [torch.rand_like(p) + 0.5 for p in params]

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model.loss(batch).backward()

    for _ in range(3):
        fwd_bwd()
    t0 = time.perf_counter()
    for _ in range(10):
        fwd_bwd()
    t_step = (time.perf_counter() - t0) / 10
    out = {}

    def probe():
        out.update(curvature(lambda: model.loss(batch), params, precond, iters=20, seed=0))

    benchmark.pedantic(probe, rounds=3, iterations=1)
    t_probe = benchmark.stats.stats.median if benchmark.stats else None
    if t_probe is None:  # --benchmark-disable: time the one call ourselves
        t0 = time.perf_counter()
        probe()
        t_probe = time.perf_counter() - t0
    benchmark.extra_info.update(device="cpu", threads=1, t_fwd_bwd_s=t_step, t_probe_s=t_probe,
                                hvp_count=out["hvp_count"], fwd_bwd_equivalents=t_probe / t_step)
    print(f"\ncurvature probe: {t_probe / t_step:.0f} forward+backward equivalents "
          f"({out['hvp_count']} HVPs, {t_probe:.2f}s vs {t_step * 1e3:.0f} ms)")
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
