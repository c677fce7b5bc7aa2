"""Run every experiment of a tier (or of some claims), several at once: what ``make replicate`` runs.

``python -m replicate.suite [--tier cpu] [--claims m8,b1] [--jobs 2] [--results-dir results]
[--launcher basic] [--seeds 10,11,12] [-- overrides...]`` starts one ``python -m replicate -m
experiment=<name> threads=1`` per experiment, ``--jobs`` at a time, the most expensive first (sweep
points x steps, so the long ones do not finish last), each experiment's output in
``<results_dir>/logs/<experiment>.log``. A progress bar counts finished experiments, and one line
per experiment says how its runs ended. An experiment whose process fails is reported and the
others go on; the exit code is then 1. Runs already finished are skipped (their folder is named by
the config's hash), so a killed ``make replicate`` started again resumes where it stopped.

``--seeds 10,11,12`` (``make replicate SEEDS=10,11,12``) gives every experiment the override
``seed=10,11,12``: Hydra's basic sweeper puts command-line overrides after the experiment's
``hydra.sweeper.params``, and a key given twice keeps its last value, so those seeds replace the
experiment's own ``seed: 0,1,2`` (an experiment without a seed sweep gets it as one; the other
swept keys are kept). The runs land in the same ``<results_dir>/runs`` (a run's folder is named by
its config's hash, the seed included: no collision), the logs in ``<results_dir>/logs/seeds_10_11_12/``.
Seeds disjoint from ``results.PRIMARY_SEEDS`` are held-out seeds: the suite then writes the held-out
scorecard ``<results_dir>/heldout/scorecard.{json,md}`` (judged on those seeds' runs only), whose
verdicts ``make report`` shows beside the main scorecard's (``replicate.scorecard``). Seeds within
the primary set are ordinary runs (fewer primary seeds); a set that mixes both is refused.

Why processes and not one big Hydra sweep: every experiment has its own sweep (its own keys), and
running two experiments side by side, each with the in-process ``basic`` launcher, keeps both
cores busy without each sweep paying for a pool of worker processes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from tqdm import tqdm

from . import results, scorecard
from .scorecard import HELDOUT, experiments

CONF = Path(__file__).resolve().parent.parent / "conf"


def cost(experiment: str, conf: Path = CONF, seeds: tuple[int, ...] | None = None) -> float:
    """A rough cost to order experiments by: points of its sweep (with ``seeds`` in place of its
    own seeds, as ``seed_override`` does) x its train.steps."""
    try:
        cfg = yaml.safe_load((conf / "experiment" / f"{experiment}.yaml").read_text()) or {}
        default = yaml.safe_load((conf / "config.yaml").read_text()).get("train", {}).get("steps", 1000)
    except (OSError, yaml.YAMLError):
        return 0.0
    params = dict((cfg.get("hydra") or {}).get("sweeper", {}).get("params", {}) or {})
    if seeds:
        params["seed"] = ",".join(map(str, seeds))
    parser = OverridesParser.create()
    points = 1
    for key, value in params.items():
        o = parser.parse_override(f"{key}={value}")
        points *= len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1
    return float(points * ((cfg.get("train") or {}).get("steps") or default))


def _summary(log: Path) -> str:
    """The sweep's own last line ("sweep finished: 12 runs: 12 done"), or the last line of the log."""
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    done = [x for x in lines if x.startswith("sweep finished:")]
    return (done or lines or [""])[-1][:200]


def seed_override(seeds: tuple[int, ...] | None) -> list[str]:
    """The override that runs an experiment's sweep with ``seeds`` instead of its own: ``seed=10,11,12``
    (a sweep of one seed when there is one); none without ``seeds``."""
    return [f"seed={','.join(map(str, seeds))}"] if seeds else []


def command(name: str, *, results_dir: str = "results", launcher: str = "basic", overrides: list[str] = (),
            seeds: tuple[int, ...] | None = None, python: str = sys.executable) -> list[str]:
    """The command line of one experiment's sweep."""
    return [python, "-m", "replicate", "-m", f"experiment={name}", f"hydra/launcher={launcher}", "threads=1",
            f"results_dir={results_dir}", *overrides, *seed_override(seeds)]


def log_dir(results_dir: str, seeds: tuple[int, ...] | None = None) -> Path:
    """Where the experiments' logs go: ``logs/``, or ``logs/seeds_10_11_12/`` for other seeds."""
    logs = Path(results_dir) / "logs"
    return logs / f"seeds_{'_'.join(map(str, seeds))}" if seeds else logs


def run(names: list[str], *, jobs: int = 2, results_dir: str = "results", launcher: str = "basic",
        overrides: list[str] = (), seeds: tuple[int, ...] | None = None, python: str = sys.executable) -> int:
    """Run the experiments ``names``, ``jobs`` at a time (each with ``seeds`` instead of its own
    seeds, when given); the number of experiments that failed."""
    if seeds and any(o.lstrip("+~").startswith("seed=") for o in overrides):
        raise ValueError("seeds are given twice: as --seeds and as a seed=... override")
    logs = log_dir(results_dir, seeds)
    logs.mkdir(parents=True, exist_ok=True)
    names = sorted(names, key=lambda n: cost(n, seeds=seeds), reverse=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    running: set[str] = set()  # started and not finished (the threads add, the loop below removes)

    def one(name: str) -> tuple[str, int, float]:
        running.add(name)
        t0 = time.time()
        cmd = command(name, results_dir=results_dir, launcher=launcher, overrides=overrides, seeds=seeds,
                      python=python)
        with open(logs / f"{name}.log", "w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        return name, rc, time.time() - t0

    failed = []
    # no ETA: experiments differ in cost by 100x, the longest run first
    fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} experiments [{elapsed}] {postfix}"
    with ThreadPoolExecutor(max(1, jobs)) as pool, \
            tqdm(total=len(names), desc="make replicate", bar_format=fmt, file=sys.stdout) as bar:
        pending = {pool.submit(one, n): n for n in names}
        while pending:
            time.sleep(0.2)  # let the pool start its first experiments before naming them
            bar.set_postfix_str("running: " + ", ".join(sorted(running)))
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                name, rc, secs = f.result()
                running.discard(pending.pop(f))
                status = _summary(logs / f"{name}.log")
                if rc != 0:
                    failed.append(name)
                    status = f"FAILED (exit {rc}; see {logs / f'{name}.log'}): {status}"
                bar.write(f"{name:<26} {secs:6.0f} s  {status}")
                bar.update(1)
    if failed:
        print(f"{len(failed)} experiment(s) failed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tier", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--claims", default="", help="comma-separated claim ids (default: every claim of the tier)")
    p.add_argument("--jobs", type=int, default=2, help="experiments run at once (default 2)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--launcher", default="basic", help="Hydra launcher of each experiment's sweep")
    p.add_argument("--seeds", default="", help="comma-separated seeds instead of each experiment's own; held-out "
                   f"seeds (e.g. {','.join(map(str, results.HELDOUT_SEEDS))}) also write "
                   f"<results-dir>/{HELDOUT}/scorecard.{{json,md}}")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs={args.jobs} is not allowed: at least 1")
    try:
        seeds = results.parse_seeds(args.seeds)
    except ValueError as e:
        p.error(str(e))
    primary = set(results.PRIMARY_SEEDS)
    heldout = bool(seeds) and not set(seeds) & primary
    if seeds and not heldout and not set(seeds) <= primary:
        p.error(f"--seeds {args.seeds} mixes the primary seeds {','.join(map(str, sorted(primary)))} with others: "
                "run them as two sets (held-out seeds make their own scorecard)")
    if seeds and any(o.lstrip("+~").startswith("seed=") for o in args.overrides):
        p.error("seeds given twice: as --seeds and as a seed=... override")
    names = experiments(args.claims, args.tier)
    which = f", seeds {','.join(map(str, seeds))}" if seeds else ""
    print(f"{len(names)} experiments{which}, {args.jobs} at a time; logs in {log_dir(args.results_dir, seeds)}/")
    failed = run(names, jobs=args.jobs, results_dir=args.results_dir, launcher=args.launcher,
                 overrides=args.overrides, seeds=seeds)
    if heldout:  # what finished is judged even when an experiment failed (its claims: not run)
        for path in scorecard.write(args.results_dir, seeds=seeds):
            print(f"wrote {path}")
        try:
            results.require_runs(args.results_dir)
        except SystemExit:
            print(f"note: no runs of seeds {','.join(map(str, results.PRIMARY_SEEDS))} under {args.results_dir}/runs, "
                  "so the report keeps the main scorecard as it is: `make replicate` runs them, then `make report` "
                  "adds this held-out column to it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
