"""Optimizer step throughput: achieved GB/s per variant from ``results/bench/*.json``."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .style import tight


def bench_table(root: Path | str) -> pd.DataFrame:
    """Optimizer-step benchmarks of every ``root/bench/*.json`` (pytest-benchmark JSON written by
    ``make bench``), one row each: file, device, variant, mode, params, gbps, bandwidth_fraction,
    copy_gbps, rounds."""
    rows = []
    for path in sorted(glob.glob(str(Path(root) / "bench" / "*.json"))):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        for b in data.get("benchmarks", []):
            x = b.get("extra_info", {})
            if x.get("kind") != "optimizer_step" or x.get("gbps") is None:
                continue
            rows.append({"file": Path(path).stem, "device": x.get("device"), "variant": x.get("variant"),
                         "mode": x.get("mode"), "dtype": x.get("dtype"), "params": x.get("params"),
                         "gbps": x.get("gbps"), "bandwidth_fraction": x.get("bandwidth_fraction"),
                         "copy_gbps": x.get("copy_gbps"), "rounds": b.get("stats", {}).get("rounds")})
    return pd.DataFrame(rows)


def fig_throughput(table: pd.DataFrame):
    """Achieved GB/s of one optimizer step per variant (counted bytes per parameter / median step
    time), eager and compiled, beside torch.optim.AdamW, at the largest size of each device, one
    panel per device and layout (fp32; bf16 params with fp32 master and state), with the device's
    measured copy bandwidth (dashed)."""
    if table is None or table.empty:
        return None
    t = table[table["dtype"].isin(["fp32", "bf16"])]
    if t.empty:
        return None
    t = t[t["params"] == t.groupby(["file", "dtype"])["params"].transform("max")]
    panels = [(f, dt) for f in dict.fromkeys(t["file"]) for dt in ("fp32", "bf16")
              if ((t["file"] == f) & (t["dtype"] == dt)).any()]
    variants = list(dict.fromkeys(t.sort_values("variant")["variant"]))
    variants = [v for v in variants if v != "torch_adamw"] + (["torch_adamw"] if "torch_adamw" in variants else [])
    modes = [m for m in ("eager", "compiled", "forloop", "foreach", "fused") if m in set(t["mode"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1.5, 0.42 * len(variants) + 1.8),
                             squeeze=False, sharey=True)
    for i, (ax, (f, dt)) in enumerate(zip(axes[0], panels)):
        d = t[(t["file"] == f) & (t["dtype"] == dt)]
        sns.barplot(data=d, y="variant", x="gbps", hue="mode", order=variants, hue_order=modes, ax=ax,
                    palette=dict(zip(("eager", "compiled", "forloop", "foreach", "fused"),
                                     sns.color_palette("colorblind", 5))), orient="h", errorbar=None)
        copy = d["copy_gbps"].dropna()
        if len(copy):
            ax.axvline(copy.median(), color="crimson", ls="--", lw=1,
                       label=f"copy bandwidth {copy.median():.1f} GB/s" + (" (median)" if copy.nunique() > 1 else ""))
        r = d["rounds"].dropna()
        rounds = (f"median of {int(r.min())}" + (f"–{int(r.max())}" if r.max() != r.min() else "") + " rounds") if len(r) else ""
        layout = "fp32 params and state" if dt == "fp32" else "bf16 params, fp32 master and state"
        ax.set_title(f"{d['device'].iloc[0]} ({f}), {d['params'].iloc[0] / 1e6:.1f}M params,\n{layout}; "
                     f"{rounds}; 1 seed (a timing)", fontsize=8.5)
        ax.set_xlabel("achieved GB/s (counted bytes per param / step time)")
        ax.set_ylabel("optimizer variant" if i == 0 else "")
        if i == len(panels) - 1:
            ax.legend(fontsize=7.5, title="mode", title_fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                      frameon=False)
        else:
            ax.get_legend().remove()
    fig.suptitle("Optimizer step throughput", fontsize=10)
    tight(fig)
    return fig
