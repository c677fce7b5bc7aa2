"""A Hydra callback that says, at the end of a sweep, how its runs ended.

Each job appends one JSON line (its overrides and status) to ``<sweep dir>/jobs.jsonl`` from its
own process, so this works with every launcher (basic, joblib, submitit); the sweep's end reads them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig


class SweepSummary(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or os.environ.get("RANK", "0") != "0":
            return  # one line per run: a multi-process run (torchrun, submitit tasks) reports from rank 0
        sweep_dir = config.hydra.sweep.dir
        ok = job_return.status == JobStatus.COMPLETED
        ret = job_return._return_value if ok else None
        line = {"job": config.hydra.job.num, "overrides": list(config.hydra.overrides.task),
                "status": ret.get("status", "failed") if isinstance(ret, dict) else "failed",
                "skipped": bool(isinstance(ret, dict) and ret.get("skipped"))}
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(sweep_dir) / "jobs.jsonl", "a") as f:  # one short append per job
            f.write(json.dumps(line) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / "jobs.jsonl"
        if not path.exists():
            return
        jobs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        counts = Counter(j["status"] for j in jobs)
        skipped = sum(j["skipped"] for j in jobs)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"sweep finished: {len(jobs)} runs: {parts}"
              + (f" ({skipped} already finished before, not trained again)" if skipped else ""))
        for j in jobs:
            if j["status"] == "failed":
                print(f"  failed: {' '.join(j['overrides'])} (traceback in its manifest.json)")
