"""Optimizer-step throughput of every variant against the memory-bandwidth limit (`make bench`).

For each variant in VARIANTS: the eager (foreach) step and the compiled step (compile=True: the whole
step under torch.compile, lr a 0-dim tensor), on model-shaped parameter sets (replicate.bench.
model_shapes: 4 GPT blocks of matrices and vectors) at 3 sizes: CPU 1M, 4M, 16M; CUDA 1M, 100M, 1B;
fp32, and bf16 params with an fp32 master copy and fp32 state (mixed precision).  Beside them
torch.optim.AdamW in for-loop, foreach and fused forms.  Each benchmark's extra_info: device, torch,
threads, dtype, params, bytes_per_param (replicate.bench.BYTES_PER_PARAM), step_s (median after
warm-up; CUDA events on a GPU), params_per_s, gbps, bandwidth_fraction (of the copy bandwidth
measured right after each benchmark: copy_gbps), compile_s (the first compiled step, apart), state_bytes_per_param.

With --benchmark-disable (the default in `make test`) the same tests run once at a tiny size as
correctness tests: the compiled step equals the eager one on the benchmark tensors.  To stay quick,
only `adam` compiles with inductor there; the other variants compile with the "eager" backend
(dynamo tracing only; tests/test_variants.py covers inductor for one variant per code path).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from replicate import bench
from replicate.optim import VARIANTS, make

CPU_SIZES = [1_000_000, 4_000_000, 16_000_000]
CUDA_SIZES = [1_000_000, 100_000_000, 1_000_000_000]
TINY = 20_000  # --benchmark-disable
ROUNDS, WARMUP = 10, 3
INDUCTOR_WHEN_DISABLED = "adam"
TORCH_ADAMW = {"forloop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _disabled(config) -> bool:
    """As pytest-benchmark decides (session.py): --benchmark-disable unless --benchmark-enable."""
    return bool(config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"))


def pytest_generate_tests(metafunc):
    """(device, size) pairs: full sizes with --benchmark-enable, one tiny size when disabled."""
    if "size" not in metafunc.fixturenames:
        return
    disabled = _disabled(metafunc.config)
    cases = []
    for dev, sizes in (("cpu", CPU_SIZES), ("cuda", CUDA_SIZES)):
        for n in ([TINY] if disabled else sizes):
            label = f"{dev}-{n // 1000}k" if n < 1_000_000 else f"{dev}-{n // 1_000_000}M"
            cases.append(pytest.param(dev, n, id=label, marks=[NO_CUDA] if dev == "cuda" else []))
    metafunc.parametrize("device, size", cases)


@functools.lru_cache(maxsize=None)
def _copy_gbps_once(device: str) -> float:
    return bench.copy_bandwidth(device, nbytes=16 << 20, iters=3)


def _copy_gbps(device: str, disabled: bool) -> float:
    """The copy bandwidth the fractions are taken of, measured right after each benchmark (a shared
    machine's bandwidth drifts: 10.4-18.3 GB/s over one 12-minute CPU run); once, small, when the
    benchmarks only check correctness."""
    return _copy_gbps_once(device) if disabled else bench.copy_bandwidth(device)


def _params(shapes, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g, device=device, dtype=torch.float32).to(dtype))
          for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, device=device).to(dtype)
    return ps


def _fp32_state(name: str) -> bool:
    """Does the variant keep fp32 state for bf16 params (mixed precision)?"""
    p = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.bfloat16))
    st = make(name, [p], **bench.BENCH_HPARAMS.get(name, {})).param_state(p)
    return all(v.dtype == torch.float32 for v in st.values() if v.dim() > 0)


def _run(benchmark, step, device, *, variant, mode, dtype, params, layout, state_bpp,
         compile_s=None):
    """Time ``step`` (pytest-benchmark rounds + our own StepTimer) and fill extra_info."""
    disabled = benchmark.disabled
    timer = bench.StepTimer(device, warmup=0 if disabled else WARMUP)
    if disabled:
        benchmark(lambda: timer(step))  # runs once
    else:
        benchmark.pedantic(lambda: timer(step), rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    step_s = timer.median()
    bpp = bench.bytes_per_param(variant, layout)
    copy = _copy_gbps(device, disabled)
    rate = bench.gbps(bpp, params, step_s)
    benchmark.extra_info.update(
        kind="optimizer_step", variant=variant, mode=mode, device=bench.device_name(device),
        torch=torch.__version__, threads=torch.get_num_threads(), dtype=dtype, params=params,
        bytes_per_param=bpp, step_s=step_s, params_per_s=params / step_s, gbps=rate,
        copy_gbps=copy, bandwidth_fraction=rate / copy, compile_s=compile_s,
        state_bytes_per_param=state_bpp, timing="cuda events" if device == "cuda" else "perf_counter")
    if not disabled:
        print(f"\n{variant:>16} {mode:>8} {dtype} {params / 1e6:7.1f}M {step_s * 1e3:9.2f} ms "
              f"{rate:7.1f} GB/s {rate / copy:5.2f}× copy" + (f"  compile {compile_s:.1f}s"
                                                            if compile_s is not None else ""))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_step(benchmark, variant, mode, dtype, device, size, monkeypatch):
    if dtype == "bf16":
        assert _fp32_state(variant), "bf16 params must get fp32 state (mixed precision)"
    shapes = bench.model_shapes(size)
    n = bench.n_params(shapes)
    hp = bench.BENCH_HPARAMS.get(variant, {})
    ps = _params(shapes, DTYPES[dtype], device)
    compile_s = None
    if mode == "compiled":
        torch._dynamo.reset()  # a fresh cache: every variant and size compiles (no recompile limit)
        if benchmark.disabled and variant != INDUCTOR_WHEN_DISABLED:
            compile_ = torch.compile  # inductor options (wrapper.compile_options) do not apply
            monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend="eager"))
        ref = [torch.nn.Parameter(p.detach().clone()) for p in ps] if size == _smallest(benchmark, device) else None
        if ref is not None:
            for r, p in zip(ref, ps):
                r.grad = p.grad.clone()
        opt = make(variant, ps, lr=1e-3, compile=True, **hp)
        t = bench.StepTimer(device)
        counters.clear()
        t(opt.step)  # the first step compiles
        compile_s = t.times()[0]
        # one graph: a graph break splits the fused step into several kernels (and passes)
        assert not counters["graph_break"], f"graph breaks: {dict(counters['graph_break'])}"
        if ref is not None:  # correctness: compiled == eager on the benchmark tensors, 2 steps
            eager = make(variant, ref, lr=1e-3, **hp)
            eager.step()
            eager.step()
            opt.step()
            # bf16 params are their fp32 master rounded: an fp32 rounding difference between the
            # fused and the eager step may flip that rounding: one bf16 ulp, up to 2^-7 relative
            rtol = 1e-5 if dtype == "fp32" else 2.0 ** -7
            for p, q in zip(ps, ref):
                torch.testing.assert_close(p, q, rtol=rtol, atol=1e-6)
                a, b = opt.param_state(p), eager.param_state(q)
                assert a.keys() == b.keys()
                for k in a:
                    torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
            del eager, ref
    else:
        opt = make(variant, ps, lr=1e-3, **hp)
    state_bpp = bench.state_bytes(opt.param_state(p) for p in ps) / n
    _run(benchmark, opt.step, device, variant=variant, mode=mode, dtype=dtype, params=n,
         layout=dtype, state_bpp=state_bpp, compile_s=compile_s)
    assert all(torch.isfinite(p).all() for p in ps)


def _smallest(benchmark, device) -> int:
    return TINY if benchmark.disabled else (CPU_SIZES if device == "cpu" else CUDA_SIZES)[0]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("impl", list(TORCH_ADAMW))
def test_torch_adamw_step(benchmark, impl, dtype, device, size):
    """The reference: torch.optim.AdamW (lr 1e-3, weight_decay 0.01 as our adamw)."""
    if dtype == "bf16":
        pytest.skip("bf16 params + fp32 state: torch.optim.AdamW keeps its state in the param "
                    "dtype, so there is no mixed-precision reference to compare with")
    shapes = bench.model_shapes(size)
    n = bench.n_params(shapes)
    ps = _params(shapes, DTYPES[dtype], device)
    opt = torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, **TORCH_ADAMW[impl])
    if size == _smallest(benchmark, device):  # our adamw equals it on the same tensors
        ref = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        for r, p in zip(ref, ps):
            r.grad = p.grad.clone()
        ours = make("adamw", ref, lr=1e-3, weight_decay=0.01)
        for _ in range(2):
            opt.step()
            ours.step()
        for p, q in zip(ps, ref):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        del ours, ref
    state_bpp = bench.state_bytes(opt.state[p] for p in ps) / n
    _run(benchmark, opt.step, device, variant="torch_adamw", mode=impl, dtype=dtype, params=n,
         layout=dtype, state_bpp=state_bpp)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=NO_CUDA)])
def test_copy_bandwidth(benchmark, device):
    """The memory bandwidth the fractions are taken of: dst.copy_(src), read + write counted."""
    gb = _copy_gbps(device, benchmark.disabled)
    nbytes = (16 << 20) if benchmark.disabled else ((2 << 30) if device == "cuda" else (256 << 20))
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    timer = bench.StepTimer(device)
    benchmark(lambda: timer(lambda: dst.copy_(src)))
    benchmark.extra_info.update(kind="copy", device=bench.device_name(device), torch=torch.__version__,
                                threads=torch.get_num_threads(), bytes=2 * nbytes, gbps=gb)
    assert gb > 0 and torch.equal(dst, src)
    if not benchmark.disabled:
        print(f"\ncopy bandwidth ({bench.device_name(device)}): {gb:.1f} GB/s")


@pytest.mark.parametrize("variant", sorted(VARIANTS) + ["torch_adamw"])
def test_state_bytes_per_param(variant):
    """Optimizer-state bytes per param, measured, equal the expected count: fp32 state, plus a 4-byte
    fp32 master for bf16 params (12 bytes for Adam: mixed precision); torch.optim keeps the param dtype."""
    shapes = bench.model_shapes(TINY)
    n = bench.n_params(shapes)
    for dt in (torch.float32, torch.bfloat16):
        ps = _params(shapes, dt, "cpu")
        if variant == "torch_adamw":
            opt = torch.optim.AdamW(ps, lr=1e-3)
            opt.step()  # torch allocates its state on the first step
            got = bench.state_bytes(opt.state[p] for p in ps) / n
        else:
            opt = make(variant, ps, lr=1e-3, **bench.BENCH_HPARAMS.get(variant, {}))
            got = bench.state_bytes(opt.param_state(p) for p in ps) / n
        assert got == pytest.approx(bench.expected_state_bytes(variant, shapes, dt)), (variant, dt)
