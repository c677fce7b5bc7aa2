"""The arms of a sweep: which config keys vary between an experiment's runs, a short label per
run naming its arm, the arms and swept values in their natural order, and axis names of the keys."""

from __future__ import annotations

import math

import pandas as pd

# Config keys a sweep heatmap / rate plot is drawn over, in the order they are preferred as axes.
SWEEP_KEYS = ("optimizer.b2", "data.batch_size", "optimizer.eps", "optimizer.lr", "optimizer.b1",
              "model.depth", "model.width")
# Config keys that never label an arm of a sweep.
_NOT_ARMS = {"run_id", "experiment", "seed", "status", "wall_time_s", "steps_done", "path", "data.seed"}
_SYMBOL = {"optimizer.b2": "β2", "optimizer.b1": "β1", "data.batch_size": "batch size", "optimizer.eps": "ε",
           "optimizer.lr": "learning rate η", "model.depth": "depth", "model.width": "width"}


def varied_keys(runs: pd.DataFrame) -> list[str]:
    """The config keys whose values differ between an experiment's runs, seeds aside."""
    cols = [c for c in runs.columns if c not in _NOT_ARMS]
    if len(runs) < 2:
        return []
    df = runs[cols]
    objects = [c for c in cols if df[c].dtype == object]  # lists, mixed types: compared by repr
    n = df.drop(columns=objects).nunique(dropna=False)
    varied = set(n.index[n > 1]) | {c for c in objects if df[c].map(repr).nunique() > 1}
    return [c for c in cols if c in varied]


def arm_labels(runs: pd.DataFrame) -> pd.Series:
    """A short label per run naming its arm of the sweep: ``b2=0.999``, ``adam b2=0.9, model=mlp``.

    A config group's own keys are left out when its ``name`` varies (the name says it), and so are
    keys that the run's ``label`` (set by ``conf/arm/*``) already determines."""
    keys = varied_keys(runs)
    names = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".name")}
    keys = [k for k in keys if k.endswith(".name") or k.rsplit(".", 1)[0] not in names]
    has_label = "label" in runs.columns and runs["label"].notna().any()
    if has_label:
        by_label = runs.assign(_l=runs["label"].fillna("-")).groupby("_l")
        keys = [k for k in keys if k == "label" or by_label[k].apply(lambda c: c.map(repr).nunique()).max() > 1]
    if not keys:
        return pd.Series("all runs", index=runs.index)

    def val(v):  # 8.0 -> 8 (a column read as float because other experiments lack the key)
        return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 1e6 else v

    def fmt(r):
        return ", ".join(str(r[k]) if k == "label" else f"{k.split('.')[-2] if k.endswith('.name') else k.split('.')[-1]}={val(r[k])}"
                         for k in keys)
    return runs.apply(fmt, axis=1)


def _natural(values) -> list:
    """Sweep values in their natural order: numbers ascending, then None (full batch) last."""
    def key(v):
        try:
            return (0, float(v), "") if v is not None and not (isinstance(v, float) and math.isnan(v)) else (1, 0.0, "")
        except (TypeError, ValueError):
            return (0, math.inf, str(v))
    return sorted(set(values), key=key)


def _value_label(key: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "full batch" if key == "data.batch_size" else "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _natural_arms(runs: pd.DataFrame) -> list[str]:
    """Arm labels ordered by the swept values (numbers ascending), not alphabetically."""
    keys = [k for k in varied_keys(runs) if k in runs.columns and k != "label"]
    if not keys:
        return sorted(runs["arm"].unique())
    order = runs.assign(_k=runs[keys].apply(lambda r: tuple(_sortable(v) for v in r), axis=1))
    return list(dict.fromkeys(order.sort_values("_k")["arm"]))


def _sortable(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))

