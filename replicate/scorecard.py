"""The replication scorecard: every claim's verdict from results/ alone.

``python -m replicate.scorecard [results_dir]`` writes ``scorecard.json`` (a list of objects with
claim, source, metric, value, ci_low, ci_high, threshold, verdict, seeds, runtime_s, and what was
run) and ``scorecard.md`` (the same as a table, then one line per claim on what was run).
``python -m replicate.scorecard --experiments --claims m8,b1 --tier cpu`` prints the experiments
that ``make replicate`` runs for those claims (and ``EXTRA_EXPERIMENTS``, e.g. ``mitigations``).

Seeds never mix. The scorecard judges the runs of ``results.PRIMARY_SEEDS`` (0, 1, 2) only; each
row's ``seed_set`` names them. ``--seeds 10,11,12`` (what ``make replicate SEEDS=10,11,12`` runs
after its sweeps) judges those seeds' runs only and writes the held-out scorecard
``<results_dir>/heldout/scorecard.{json,md}`` instead, the same rows with that ``seed_set``. The main
scorecard then carries a held-out column read from that file: per row ``heldout`` (its
``seed_set``, ``verdict``, ``value``, ``ci_low``, ``ci_high``, ``seeds``; verdict ``not run`` when
the file or the claim's row is missing) and ``stable``: true when both seed sets give the same
verdict, false when they differ (the claim is *unstable*), None when either was not run. The
primary verdict is never changed by it.

Spike definitions (CLAIMS.md): a spike claim's row carries ``by_definition`` (R3, R10, R100, Z6 ->
verdict, value, interval, premise_held) and ``robustness`` (``robust``, or the definitions that
differ from R3's verdict, which is the row's verdict); the held-out column carries them too, and
the page ends with the grid of verdicts by definition and seed set. A threshold that a true claim
could not pass on its workload is flagged (``flag``: why, and where the derivation is) with the
verdict under the derived threshold (``corrected``) beside the pre-set one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Iterable

from . import results, spikes
from .claims import CLAIMS, _load_modules, _order, evaluate

# Experiments without a verdict that `make replicate` runs beside the claims' (tier cpu), each
# selectable by name like a claim id: `make replicate CLAIMS=mitigations` (the leaderboard,
# replicate/leaderboard.py).
EXTRA_EXPERIMENTS = {"mitigations": ("mitigations", "mitigations_lr")}

KEYS = ("claim", "source", "statement", "metric", "value", "ci_low", "ci_high", "threshold", "verdict", "seeds",
        "runtime_s", "experiment", "detail", "runs", "premise", "premise_held", "robustness", "primary",
        "by_definition", "flag", "corrected")
HELDOUT = "heldout"  # <results_dir>/heldout/scorecard.{json,md}: the scorecard of the held-out seeds
# a held-out row's fields in the main one
HELDOUT_KEYS = ("verdict", "value", "ci_low", "ci_high", "seeds", "premise_held", "robustness", "by_definition")


def experiments(claims: str | None = None, tier: str = "cpu") -> list[str]:
    """The experiments behind the claims given (comma-separated ids, any case) or of a tier."""
    _load_modules()
    if claims:
        ids = {c.upper(): c for c in CLAIMS}  # any case: m8, M7_slingshot, m7_SLINGSHOT
        wanted = [c.strip() for c in claims.split(",") if c.strip()]
        extra = {e for c in wanted if c.lower() in EXTRA_EXPERIMENTS for e in EXTRA_EXPERIMENTS[c.lower()]}
        wanted = [ids.get(c.upper(), c.upper()) for c in wanted if c.lower() not in EXTRA_EXPERIMENTS]
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


def _seeds_s(seeds) -> str:
    return ",".join(map(str, seeds)) or "–"


def _not_run(verdict: str | None) -> bool:
    return not verdict or verdict.startswith("not run")


def stability(verdict: str, heldout: str | None) -> bool | None:
    """Whether a claim's verdict holds on the held-out seeds: True (the same verdict), False (a
    different one: *unstable*), None when either seed set was not run."""
    if _not_run(verdict) or _not_run(heldout):
        return None
    return verdict == heldout


def read_heldout(root: Path | str = "results") -> tuple[tuple[int, ...], dict[str, dict]]:
    """The held-out scorecard of ``root`` (``<root>/heldout/scorecard.json``): (its seed set, claim
    -> row); ``((), {})`` when there is none or it cannot be read."""
    path = Path(root) / HELDOUT / "scorecard.json"
    if not path.exists():
        return (), {}
    try:
        rows = json.loads(path.read_text())
        by_claim = {r["claim"]: r for r in rows}
        seed_set = tuple(sorted({int(s) for r in rows for s in r.get("seed_set") or []}))
    except Exception as e:  # a damaged file: the column says not run, the scorecard is still written
        warnings.warn(f"ignoring unreadable held-out scorecard {path}: {e}", stacklevel=2)
        return (), {}
    if not seed_set or set(seed_set) & set(results.PRIMARY_SEEDS):
        warnings.warn(f"ignoring held-out scorecard {path}: its seed set {list(seed_set)} is not disjoint from the "
                      f"primary seeds {list(results.PRIMARY_SEEDS)}", stacklevel=2)
        return (), {}
    return seed_set, by_claim


def with_heldout(rows: list[dict], seed_set: tuple[int, ...], heldout: dict[str, dict]) -> list[dict]:
    """``rows`` of the main scorecard with the held-out column: ``heldout`` and ``stable`` per row."""
    out = []
    for r in rows:
        h = heldout.get(r["claim"])
        column = {"seed_set": list(seed_set), **{k: (h or {}).get(k) for k in HELDOUT_KEYS}}
        column["verdict"] = (h or {}).get("verdict") or "not run"
        column["seeds"] = list(column["seeds"] or [])
        column["by_definition"] = dict(column["by_definition"] or {})
        out.append({**r, "heldout": column, "stable": stability(r["verdict"], column["verdict"])})
    return out


def _heldout_cell(r: dict) -> str:
    h = r.get("heldout") or {}
    verdict = h.get("verdict") or "not run"
    return f"{verdict} — **unstable**" if r.get("stable") is False else verdict


def _premise_cell(r: dict) -> str:
    """Whether the runs reached the claim's premise: reached, **not reached**, or – (none measured)."""
    held = r.get("premise_held")
    return "–" if held is None else ("reached" if held else "**not reached**")


def _robust_cell(r: dict) -> str:
    """``robust``, the definitions whose verdict differs from R3's, or – (no spikes counted)."""
    return r.get("robustness") or "–"


def _threshold_cell(r: dict) -> str:
    """The pre-set threshold, and where a true claim could not pass it, the flag and the verdict
    under the derived threshold."""
    if not r.get("flag"):
        return str(r["threshold"])
    return f"{r['threshold']} ⚑ *a true claim cannot pass it* (why: below); corrected: **{r.get('corrected')}**"


def definition_grid(rows: list[dict], seed_set: tuple[int, ...], heldout_seed_set: tuple[int, ...] = ()) -> list[str]:
    """The markdown table of spike claims' verdicts by definition (columns) and seed set."""
    spiky = [r for r in rows if r.get("by_definition")]
    if not spiky:
        return []
    names = list(spikes.DEFINITIONS)
    sets = [("", seed_set, lambda r: r.get("by_definition") or {})]
    if heldout_seed_set:
        sets.append(("h", heldout_seed_set, lambda r: (r.get("heldout") or {}).get("by_definition") or {}))
    head = ["claim", *[f"{d} (seeds {_seeds_s(ss)})" for _, ss, _ in sets for d in names]]
    out = ["## Verdicts by spike definition", "",
           f"The verdict is {spikes.PRIMARY}'s (`{spikes.PRIMARY}` in `replicate/spikes.py`, fixed before any run), or "
           "the definition the claim's CLAIMS.md row names (marked *); the others are shown beside it, never used "
           "to choose it.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in spiky:
        cells = [r["claim"]]
        for _, _, get in sets:
            by = get(r)
            cells += [(by.get(d) or {}).get("verdict", "not run") + ("*" if d == r.get("primary") != spikes.PRIMARY
                                                                       else "") for d in names]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def markdown(rows: list[dict], seed_set: tuple[int, ...], heldout_seed_set: tuple[int, ...] | None = None) -> str:
    """The scorecard page. ``heldout_seed_set``: the main scorecard's held-out column (``()``:
    not run yet); None: no such column (the held-out scorecard itself)."""
    main = heldout_seed_set is not None
    if main:
        title = "# Replication scorecard"
        held = (f"held-out (seeds {_seeds_s(heldout_seed_set)})" if heldout_seed_set else "held-out")
        seeds_line = (f"Seeds {_seeds_s(seed_set)} (`results.PRIMARY_SEEDS`). Column *{held}*: the verdict on "
                      + (f"the held-out seeds (`{HELDOUT}/scorecard.md`, `make replicate "
                         f"SEEDS={_seeds_s(heldout_seed_set)}`); **unstable** where it differs from the verdict, "
                         "which it never changes."
                         if heldout_seed_set else
                         f"held-out seeds, not run yet (`make replicate SEEDS={_seeds_s(results.HELDOUT_SEEDS)}` "
                         f"writes `{HELDOUT}/scorecard.md`)."))
    else:
        title = f"# Held-out scorecard (seeds {_seeds_s(seed_set)})"
        seeds_line = (f"The same claims judged on the runs of seeds {_seeds_s(seed_set)} only; the main scorecard "
                      f"(`../scorecard.md`) is judged on seeds {_seeds_s(results.PRIMARY_SEEDS)} and shows these "
                      "verdicts beside its own, **unstable** where they differ.")
    how = "`make replicate`, then `make report`" if main else f"`make replicate SEEDS={_seeds_s(seed_set)}`"
    lines = [title, "",
             "Every verdict is computed by `replicate/claims/` from the runs under `results/runs/` "
             f"({how}). Interval: 95% over seeds (bootstrap for fractions).", "",
             seeds_line, ""]
    lines += [f"Column *robustness*: `robust` when the spike definitions R10, R100 and Z6 (CLAIMS.md) give "
              f"{spikes.PRIMARY}'s verdict, else those that differ (grid below); – for claims that count no spikes. "
              "⚑: a threshold a true claim could not pass on its workload, with the verdict under the derived one.", ""]
    head = ["claim", "statement", "verdict", "premise", "robustness", *([held] if main else []), "value",
            "interval", "threshold", "seeds"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        interval = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["ci_low"] is not None else "–"
        cells = [r["claim"], r.get("statement", ""), f"**{r['verdict']}**", _premise_cell(r), _robust_cell(r),
                 *([_heldout_cell(r)] if main else []), _fmt(r["value"]),
                 interval, _threshold_cell(r), _seeds_s(r["seeds"])]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if main and heldout_seed_set:
        both = [r for r in rows if r.get("stable") is not None]
        unstable = [r["claim"] for r in both if r["stable"] is False]
        lines += ["", (f"Unstable (the verdict differs on seeds {_seeds_s(heldout_seed_set)}): {', '.join(unstable)}; "
                       if unstable else f"No verdict differs on seeds {_seeds_s(heldout_seed_set)}; ")
                  + f"{len(both)} claim{'s' * (len(both) != 1)} judged on both seed sets."]
    lines += ["", *definition_grid(rows, seed_set, heldout_seed_set if main else ())]
    lines += ["## What was run", ""]
    for r in rows:
        what = (f"`{r['experiment']}` ({len(r['runs'])} runs, {r['runtime_s']:.0f} s)" if r["runs"] else "nothing yet")
        lines.append(f"- **{r['claim']}** ({r['source']}) — {r['statement']}. Metric: {r['metric']}. Run: {what}."
                     + (f" Premise: {r['premise']}." if r.get("premise") else "")
                     + (f" ⚑ Threshold flag: {r['flag']}; the verdict under the derived threshold: "
                        f"**{r.get('corrected')}** (the verdict stays the pre-set threshold's)." if r.get("flag") else "")
                     + (f" {r['detail']}." if r["detail"] else ""))
    return "\n".join(lines) + "\n"


def write(root: Path | str = "results", out: Path | str | None = None,
          seeds: Iterable[int] | None = None) -> tuple[Path, Path]:
    """Judge the runs under ``root`` of ``seeds`` and write scorecard.json and scorecard.md to ``out``.

    ``seeds`` None (or ``results.PRIMARY_SEEDS``): the main scorecard, in ``root`` by default, with
    the held-out column read from ``<root>/heldout/scorecard.json``. Other seeds (disjoint from the
    primary ones): the held-out scorecard, in ``<root>/heldout`` by default."""
    root = Path(root)
    seed_set = results.parse_seeds(seeds) or results.PRIMARY_SEEDS
    main = set(seed_set) == set(results.PRIMARY_SEEDS)
    if not main and set(seed_set) & set(results.PRIMARY_SEEDS):
        raise ValueError(f"held-out seeds {list(seed_set)} overlap the primary seeds {list(results.PRIMARY_SEEDS)}")
    out = Path(out) if out is not None else root if main else root / HELDOUT
    verdicts = evaluate(root, seeds=seed_set)
    rows = []
    for v in verdicts:
        d = v.to_dict()
        rows.append({**{k: d[k] for k in KEYS}, "seed_set": list(seed_set)})
    heldout_set = None
    if main:
        heldout_set, heldout = read_heldout(root)
        rows = with_heldout(rows, heldout_set, heldout)
    results.atomic_write(out / "scorecard.json", json.dumps(rows, indent=1) + "\n")
    results.atomic_write(out / "scorecard.md", markdown(rows, seed_set, heldout_set))
    return out / "scorecard.json", out / "scorecard.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", nargs="?", default="results")
    p.add_argument("--experiments", action="store_true", help="print the experiments to run and exit")
    p.add_argument("--claims", default="", help="comma-separated claim ids (with --experiments)")
    p.add_argument("--tier", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--out", default=None, help="folder to write scorecard.json/.md to (default: results_dir, "
                                               "or results_dir/heldout with held-out --seeds)")
    p.add_argument("--seeds", default="", help=f"judge only these seeds' runs: held-out seeds (e.g. "
                                               f"{','.join(map(str, results.HELDOUT_SEEDS))}) write the held-out "
                                               "scorecard (default: the primary seeds "
                                               f"{','.join(map(str, results.PRIMARY_SEEDS))}, the main one)")
    args = p.parse_args(argv)
    if args.experiments:
        print(" ".join(experiments(args.claims, args.tier)))
        return 0
    try:
        seeds = results.parse_seeds(args.seeds) or results.PRIMARY_SEEDS
    except ValueError as e:
        p.error(str(e))
    if set(seeds) != set(results.PRIMARY_SEEDS) and set(seeds) & set(results.PRIMARY_SEEDS):
        p.error(f"--seeds {args.seeds}: held-out seeds must not include the primary seeds "
                f"{','.join(map(str, results.PRIMARY_SEEDS))}")
    results.require_runs(args.results_dir, seeds=seeds)
    for path in write(args.results_dir, args.out, seeds=seeds):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
