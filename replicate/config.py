"""Config checks: a bad value gives one line naming the key and what is allowed.

``validate(cfg)`` runs before anything is created or written. Rules are a table keyed by dotted
config keys; a key absent from a config is not checked (a model without ``data.batch_size``, say).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
    """A config value that is not allowed; ``str(err)`` is the one line shown to the user."""


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


Rule = tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (lambda v: _num(v) and v > 0, "a number > 0")
NONNEG: Rule = (lambda v: _num(v) and v >= 0, "a number >= 0")
UNIT: Rule = (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)")
COUNT: Rule = (lambda v: _int(v) and v >= 1, "an integer >= 1")
COUNT0: Rule = (lambda v: _int(v) and v >= 0, "an integer >= 0")
BATCH: Rule = (lambda v: v is None or (_int(v) and v >= 1), "an integer >= 1, or null for the full batch")

RULES: dict[str, Rule] = {
    "seed": (lambda v: _int(v) and 0 <= v < 2 ** 32, "an integer in [0, 2**32 - 1] (numpy's seed range)"),
    "optimizer.lr": POSITIVE,
    "optimizer.b1": UNIT,
    "optimizer.b2": UNIT,
    "optimizer.eps": NONNEG,
    "optimizer.weight_decay": NONNEG,
    "optimizer.momentum": UNIT,
    "data.batch_size": BATCH,
    "data.context": COUNT,
    "data.vocab_size": COUNT,  # before model.vocab_size, which the GPT YAMLs interpolate from it
    "model.context": COUNT,
    "model.depth": COUNT,
    "model.width": COUNT,
    "model.heads": COUNT,
    "model.vocab_size": COUNT,
    "model.mlp_ratio": POSITIVE,
    "train.val_batches": COUNT,
    "schedule.warmup_steps": COUNT0,
    "train.steps": COUNT,
    "probe.every": COUNT0,
    "probe.start": COUNT0,
    "probe.model_every": (lambda v: v is None or (_int(v) and v >= 0), "an integer >= 0, or null for probe.every"),
    "probe.hessian_every": COUNT0,
    "probe.hessian_iters": COUNT,
    "probe.bins": COUNT,
    "probe.range": POSITIVE,
    "train.log_every": COUNT,
    "train.checkpoint_every": COUNT0,
    "train.grad_accum": COUNT,
    "train.val_every": COUNT0,
    "dist.zero": (lambda v: isinstance(v, bool), "true or false"),
    "train.precision": (lambda v: v in ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16"),
    "train.loss_scale": (lambda v: v == "dynamic" or (_num(v) and v > 0), "dynamic or a number > 0"),
    "threads": (lambda v: v is None or (_int(v) and v >= 1), "an integer >= 1, or null for torch's default"),
    "if_locked": (lambda v: v in ("wait", "skip"), "wait or skip"),
    "device": (lambda v: isinstance(v, str) and v.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
               "auto, cpu, cuda, cuda:N or mps"),
}


def _get(cfg: Mapping, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate(cfg: Mapping) -> None:
    """Raise ConfigError for the first value that breaks a rule in ``RULES``."""
    for key, (ok, allowed) in RULES.items():
        present, value = _get(cfg, key)
        if present and not ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: must be {allowed}")


def check_writable(root: Path | str) -> Path:
    """Create ``root`` if needed and prove a file can be written in it."""
    root = Path(root).expanduser().absolute()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"results_dir={str(root)!r} cannot be written ({e.strerror or e}): "
                          "choose a writable folder") from None
    return root
