"""The replication scorecard: every claim's verdict from results/ alone.

``python -m replicate.scorecard [results_dir]`` writes ``scorecard.json`` (a list of objects with
claim, source, metric, value, ci_low, ci_high, threshold, verdict, seeds, runtime_s, and what was
run) and ``scorecard.md`` (the same as a table, then one line per claim on what was run).
``python -m replicate.scorecard --experiments --claims m8,b1 --tier cpu`` prints the experiments
that ``make replicate`` runs for those claims (and ``EXTRA_EXPERIMENTS``, e.g. ``mitigations``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import results
from .claims import CLAIMS, _load_modules, _order, evaluate

# Experiments without a verdict that `make replicate` runs beside the claims' (tier cpu), each
# selectable by name like a claim id: `make replicate CLAIMS=mitigations` (the leaderboard,
# replicate/leaderboard.py).
EXTRA_EXPERIMENTS = {"mitigations": ("mitigations", "mitigations_lr")}

KEYS = ("claim", "source", "metric", "value", "ci_low", "ci_high", "threshold", "verdict", "seeds", "runtime_s")


def experiments(claims: str | None = None, tier: str = "cpu") -> list[str]:
    """The experiments behind the claims given (comma-separated ids, any case) or of a tier."""
    _load_modules()
    if claims:
        wanted = [c.strip().upper() for c in claims.split(",") if c.strip()]
        extra = {e for c in wanted if c.lower() in EXTRA_EXPERIMENTS for e in EXTRA_EXPERIMENTS[c.lower()]}
        wanted = [c for c in wanted if c.lower() not in EXTRA_EXPERIMENTS]
        unknown = [c for c in wanted if c not in CLAIMS]
        if unknown:
            raise SystemExit(f"error: CLAIMS={','.join(unknown)} not a claim id: choose from "
                             f"{', '.join([*sorted(CLAIMS, key=_order), *EXTRA_EXPERIMENTS])}")
        chosen = [CLAIMS[c] for c in wanted]
    else:
        chosen = [c for c in CLAIMS.values() if c.tier == tier]
        extra = {e for v in EXTRA_EXPERIMENTS.values() for e in v} if tier == "cpu" else set()
    return sorted({c.experiment for c in chosen if c.experiment} | extra)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def write(root: Path | str = "results", out: Path | str | None = None) -> tuple[Path, Path]:
    """Judge the runs under ``root``; write scorecard.json and scorecard.md to ``out`` (default ``root``)."""
    root = Path(root)
    out = Path(out) if out is not None else root
    verdicts = evaluate(root)
    rows = []
    for v in verdicts:
        d = v.to_dict()
        rows.append({**{k: d[k] for k in KEYS}, "experiment": d["experiment"], "statement": d["statement"],
                     "detail": d["detail"], "runs": d["runs"]})
    results.atomic_write(out / "scorecard.json", json.dumps(rows, indent=1) + "\n")
    lines = ["# Replication scorecard", "",
             "Every verdict is computed by `replicate/claims/` from the runs under `results/runs/` "
             "(`make replicate`, then `make report`). Interval: 95% over seeds (bootstrap for fractions).", "",
             "| claim | verdict | value | interval | threshold | seeds | runtime (s) | source |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        interval = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["ci_low"] is not None else "–"
        lines.append(f"| {r['claim']} | **{r['verdict']}** | {_fmt(r['value'])} | {interval} | {r['threshold']} | "
                     f"{','.join(map(str, r['seeds'])) or '–'} | {r['runtime_s']:.0f} | {r['source']} |")
    lines += ["", "## What was run", ""]
    for r in rows:
        what = f"`{r['experiment']}` ({len(r['runs'])} runs)" if r["runs"] else "nothing yet"
        lines.append(f"- **{r['claim']}** — {r['statement']}. Metric: {r['metric']}. Run: {what}."
                     + (f" {r['detail']}." if r["detail"] else ""))
    results.atomic_write(out / "scorecard.md", "\n".join(lines) + "\n")
    return out / "scorecard.json", out / "scorecard.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", nargs="?", default="results")
    p.add_argument("--experiments", action="store_true", help="print the experiments to run and exit")
    p.add_argument("--claims", default="", help="comma-separated claim ids (with --experiments)")
    p.add_argument("--tier", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--out", default=None, help="folder to write scorecard.json/.md to (default: results_dir)")
    args = p.parse_args(argv)
    if args.experiments:
        print(" ".join(experiments(args.claims, args.tier)))
        return 0
    results.require_runs(args.results_dir)
    for path in write(args.results_dir, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
