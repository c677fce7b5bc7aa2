"""Helpers for the optimizer-step benchmarks (tests/bench/test_optimizers.py, `make bench`).

An optimizer step is memory-bound: its floor is (bytes moved per parameter × parameters) / memory
bandwidth.  This module derives the counted bytes per parameter of every variant from its row
(``BYTES_PER_PARAM``, a view of ``replicate.optim.ROWS``), the expected optimizer-state bytes
(``expected_state_bytes``) and the measured ones (``state_bytes``), a device-to-device copy
bandwidth (``copy_bandwidth``), a step timer (CUDA events on a GPU, ``time.perf_counter`` on the
CPU; the median after warm-up), model-shaped parameter sets (``model_shapes``), and
``python -m replicate.bench results/bench/<file>.json`` to print the README table from a
pytest-benchmark JSON.
"""
from __future__ import annotations

import json
import math
import platform
import re
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Callable, Iterable, Optional

import torch

from .optim.variants import ROWS, Row, get_row

# --- bytes moved per parameter per step --------------------------------------------------------
# The compulsory traffic of ONE fused pass (what a perfect kernel moves), derived from a variant's
# row (replicate.optim.ROWS: its k = len(state) per-coordinate state tensors), the same in both
# layouts:
#   "fp32": fp32 params, grads and state: read p, g and each moment (4·(2 + k)), write p and each
#           moment (4·(1 + k)): 12 + 8k, so 28 for the Adam family (m, v), 20 for one moment (lion;
#           sgd with momentum, as benchmarked: its row's "bench" case).
#   "bf16": bf16 params and grads, fp32 master weights and fp32 state (mixed precision): read g (2),
#           read + write the fp32 master (8) and each fp32 moment (8 each), write the bf16 copy of
#           p (2): 12 + 8k again (+2 if the bf16 p is read as well).
# A variant whose update needs a per-tensor reduction BEFORE it can be applied reads again: its
# row's extra_pass (stable_adamw: +8 fp32 / +6 bf16); a factored one declares its own counts
# (adafactor: 24 / 20).  The eager (foreach) forms move far more than this (one pass per _foreach_
# op, with temporaries); gbps / copy bandwidth shows how close an implementation comes to one pass.
LAYOUTS = ("fp32", "bf16")

# torch.optim.AdamW, the benchmarks' reference (not a variant: its own small row, state in the
# param dtype, no master copy).
TORCH_ADAMW = Row("torch_adamw", None, state=("exp_avg", "exp_avg_sq"))


def _row(variant: str) -> Row:
    return TORCH_ADAMW if variant == "torch_adamw" else get_row(variant)


def _counted(row: Row) -> dict[str, int]:
    if row.bytes is not None:
        return {layout: row.bytes[layout] for layout in LAYOUTS}
    k = len(row.need("state"))
    return {layout: 12 + 8 * k + row.extra_pass.get(layout, 0) for layout in LAYOUTS}


class _FromRows(Mapping):
    """A read-only view over the registered variants' rows (+ torch_adamw): ``fn(row)`` per name,
    computed when read, so a variant registered later is in it and one that lacks the field raises
    IncompleteRow instead of reading a default."""

    def __init__(self, fn: Callable[[Row], object], reference: bool = True):
        self._fn, self._reference = fn, reference

    def _names(self) -> list[str]:
        return [*ROWS, *(["torch_adamw"] if self._reference else [])]

    def __getitem__(self, name: str):
        if name not in self._names():
            raise KeyError(name)
        return self._fn(_row(name))

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


# variant -> {"fp32": bytes, "bf16": bytes} (registration order, then torch_adamw)
BYTES_PER_PARAM: Mapping[str, dict[str, int]] = _FromRows(_counted)

# Hyperparameters used by the benchmarks where a variant's defaults would benchmark a trivial case
# (its row's "bench" case: sgd momentum 0.9; {} for the others).
BENCH_HPARAMS: Mapping[str, dict] = _FromRows(lambda row: row.case("bench"), reference=False)

# Per-coordinate optimizer-state tensors kept per parameter: len(row.state) (Adam family 2: m, v;
# lion 1: m; sgd with momentum 1: its buffer); 0 for a factored variant (adafactor's row/column
# factors for ≥2-D tensors: see expected_state_bytes).
STATE_TENSORS: Mapping[str, int] = _FromRows(lambda row: 0 if row.factored else len(row.need("state")))

# Mixed precision as intended (bf16 params + fp32 master, m, v): 16 bytes per param in all,
# of which 12 optimizer state (4 master + 4 m + 4 v): what TransformOptimizer keeps for bf16 params.
MIXED_PRECISION_TARGET = {"total": 16, "optimizer_state": 12}


def bytes_per_param(variant: str, layout: str = "fp32") -> int:
    """Counted bytes moved per parameter per step for ``variant`` in ``layout`` ("fp32"|"bf16")."""
    return BYTES_PER_PARAM[variant][layout]


def expected_state_bytes(variant: str, shapes: Iterable[tuple[int, ...]],
                         dtype: torch.dtype = torch.float32) -> float:
    """Expected optimizer-state bytes per parameter, as our implementation keeps it: fp32 state
    tensors (m, v, ...: the row's state, under its "bench" case; a factored variant's own rule,
    e.g. Adafactor's row/column factors), plus a 4-byte fp32 master copy for bf16 or fp16 params
    (mixed precision: 12 bytes for the Adam family, MIXED_PRECISION_TARGET).  0-dim shared
    counters (a few bytes per group) are not counted."""
    shapes = [tuple(s) for s in shapes]
    row = _row(variant)
    if row is TORCH_ADAMW:  # torch keeps its state in the param dtype, no master
        return float(STATE_TENSORS[variant] * torch.tensor([], dtype=dtype).element_size())
    master = 4.0 if dtype in (torch.bfloat16, torch.float16) else 0.0
    if row.state_bytes is not None:
        return row.state_bytes(shapes) + master
    return float(STATE_TENSORS[variant] * 4) + master


def state_bytes(states: Iterable[dict]) -> int:
    """Bytes of the distinct non-scalar tensors in per-param state dicts (``opt.param_state(p)``
    of ours, ``opt.state[p]`` of torch.optim); 0-dim tensors (step counts) are left out."""
    seen, total = set(), 0
    for st in states:
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and id(v) not in seen:
                seen.add(id(v))
                total += v.numel() * v.element_size()
    return total


# --- model-shaped parameter sets --------------------------------------------------------------

def model_shapes(n_params: int, layers: int = 4) -> list[tuple[int, ...]]:
    """Shapes of ``layers`` GPT blocks (qkv, proj, fc, fc2 matrices; biases and LayerNorm vectors),
    width d (a multiple of 8) chosen so the total is close to ``n_params`` (12·d² + 13·d per block)."""
    d = max(8, round(math.sqrt(n_params / (12 * layers)) / 8) * 8)
    block = [(d, 3 * d), (3 * d,), (d, d), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,),
             (d,), (d,), (d,), (d,)]
    return block * layers


def n_params(shapes: Iterable[tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes)


# --- device, timing, bandwidth -----------------------------------------------------------------

def device_name(device: str | torch.device = "cpu") -> str:
    """The CUDA device name, or the CPU model name (/proc/cpuinfo, else platform.processor())."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_slug(device: str | torch.device | None = None) -> str:
    """A file-name-safe device label: 'cuda-nvidia-h100-80gb-hbm3', 'cpu-amd-epyc'."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    name = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    return f"{device.type}-{name}" if not name.startswith(device.type) else name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Times each call ``timer(fn)``: CUDA events on a GPU (synchronized after each call, so a
    wall-clock timer around it is right too), ``time.perf_counter`` on the CPU.  The first
    ``warmup`` calls are not kept.  ``times()`` in seconds; ``median()``."""

    def __init__(self, device: str | torch.device = "cpu", warmup: int = 0):
        self.device, self.warmup, self._calls, self._kept = torch.device(device), warmup, 0, []

    def __call__(self, fn: Callable[[], object]) -> None:
        keep = self._calls >= self.warmup
        self._calls += 1
        if self.device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            fn()
            end.record()
            end.synchronize()
            if keep:
                self._kept.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            if keep:
                self._kept.append(time.perf_counter() - t0)

    def times(self) -> list[float]:
        return list(self._kept)

    def median(self) -> float:
        if not self._kept:
            raise ValueError("no timed calls after warm-up")
        return statistics.median(self._kept)


def time_fn(fn: Callable[[], object], device: str | torch.device = "cpu", warmup: int = 3,
            iters: int = 10) -> float:
    """Median seconds of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    timer = StepTimer(device, warmup)
    for _ in range(warmup + iters):
        timer(fn)
    return timer.median()


def copy_bandwidth(device: str | torch.device = "cpu", nbytes: Optional[int] = None,
                   warmup: int = 2, iters: int = 10) -> float:
    """Measured memory bandwidth in GB/s: ``dst.copy_(src)`` of a large float32 tensor, counting
    read + write (2 × nbytes; a CPU's write-allocate traffic is not counted).  Default size 2 GiB on
    a GPU (far above L2), 256 MiB on the CPU."""
    device = torch.device(device)
    if nbytes is None:
        nbytes = (2 << 30) if device.type == "cuda" else (256 << 20)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.zeros_like(src)
    _sync(device)
    t = time_fn(lambda: dst.copy_(src), device, warmup, iters)
    return 2 * src.numel() * 4 / t / 1e9


def gbps(bytes_per_param_: float, params: int, seconds: float) -> float:
    """Achieved GB/s: counted bytes moved / step time."""
    return bytes_per_param_ * params / seconds / 1e9


# --- the README table from a pytest-benchmark JSON ---------------------------------------------

def summarize(path: str, params: Optional[int] = None, dtype: str = "fp32") -> str:
    """Markdown table of the optimizer-step benchmarks in ``path`` at the largest size (or
    ``params``) of layout ``dtype`` ("fp32", or "bf16": bf16 params with fp32 master and state):
    step time eager / compiled, GB/s, fraction of copy bandwidth, ratio to fused AdamW (of the
    same layout, when measured)."""
    data = json.load(open(path))
    rows = [b["extra_info"] for b in data["benchmarks"]
            if b["extra_info"].get("kind") == "optimizer_step" and b["extra_info"]["dtype"] == dtype]
    if not rows:
        return "(no optimizer-step benchmarks)"
    size = params or max(r["params"] for r in rows)
    rows = [r for r in rows if r["params"] == size]
    by = {(r["variant"], r["mode"]): r for r in rows}
    fused = by.get(("torch_adamw", "fused"))
    info = rows[0]
    copy = sorted(r["copy_gbps"] for r in rows)
    spread = f", {copy[0]:.1f}–{copy[-1]:.1f} over its benchmarks" if copy[-1] > copy[0] else ""
    head = (f"{info['device']}, torch {info['torch']}, {info['threads']} threads, "
            f"{size / 1e6:.1f}M {dtype} params, copy bandwidth {statistics.median(copy):.1f} GB/s "
            f"(median{spread}; each fraction is of the copy measured beside its benchmark), "
            f"median step times\n\n")
    out = ["| variant | bytes/param | eager ms | compiled ms | compiled GB/s | compiled × copy bw "
           "| eager × copy bw | compiled / fused AdamW |", "|" + "---|" * 8]
    order = [v for v in BYTES_PER_PARAM if v != "torch_adamw"]
    fmt = lambda r, key, f: format(r[key] * (1e3 if key == "step_s" else 1), f) if r else "–"  # noqa: E731
    for v in order:
        e, c = by.get((v, "eager")), by.get((v, "compiled"))
        if not (e or c):
            continue
        ratio = f"{c['step_s'] / fused['step_s']:.2f}" if c and fused else "–"
        out.append(f"| {v} | {bytes_per_param(v, dtype)} | {fmt(e, 'step_s', '.1f')} | "
                   f"{fmt(c, 'step_s', '.1f')} | {fmt(c, 'gbps', '.1f')} | "
                   f"{fmt(c, 'bandwidth_fraction', '.2f')} | {fmt(e, 'bandwidth_fraction', '.2f')} "
                   f"| {ratio} |")
    for mode in ("forloop", "foreach", "fused"):
        r = by.get(("torch_adamw", mode))
        if r:
            ratio = f"{r['step_s'] / fused['step_s']:.2f}" if fused else "–"
            out.append(f"| torch AdamW {mode} | {bytes_per_param('torch_adamw', dtype)} | {r['step_s'] * 1e3:.1f} | – | {r['gbps']:.1f} "
                       f"| {r['bandwidth_fraction']:.2f} | – | {ratio} |")
    return head + "\n".join(out)


def state_table(n: int = 1_000_000) -> str:
    """Markdown table: optimizer-state bytes per param, measured on the CPU for model_shapes(n),
    in fp32 and with bf16 params, beside the expected counts."""
    from .optim import VARIANTS, make

    shapes = model_shapes(n)
    out = ["| variant | fp32: measured | fp32: expected | bf16 params: measured | "
           "mixed-precision target |", "|---|---|---|---|---|"]
    for v in sorted(VARIANTS):
        got = {}
        for dt in (torch.float32, torch.bfloat16):
            ps = [torch.nn.Parameter(torch.zeros(s, dtype=dt)) for s in shapes]
            opt = make(v, ps, **BENCH_HPARAMS.get(v, {}))
            got[dt] = state_bytes(opt.param_state(p) for p in ps) / n_params(shapes)
        # fp32 master (4) + each fp32 moment (4): adam 12 (MIXED_PRECISION_TARGET), lion 8
        target = 4 + 4 * STATE_TENSORS[v]
        out.append(f"| {v} | {got[torch.float32]:.3g} | "
                   f"{expected_state_bytes(v, shapes):.3g} | {got[torch.bfloat16]:.3g} | {target} |")
    return "\n".join(out)


if __name__ == "__main__":  # python -m replicate.bench results/bench/<file>.json
    for p in sys.argv[1:]:
        for dtype in ("fp32", "bf16"):
            print(f"## {p}, {dtype}\n\n{summarize(p, dtype=dtype)}\n")
    print(state_table())
