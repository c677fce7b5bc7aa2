"""Hydra entry point: ``python -m replicate [overrides]`` runs one run, ``-m`` a sweep.

A bad config value, an unknown key (on the command line or in an experiment's files), an unknown
config-group option, an override Hydra cannot read, an unwritable ``results_dir`` or a builder's
refusal ends with one line on stderr, ``error: <key>: ...``, naming the key and what is allowed, and
exit code 2, before anything is written (replicate/frontdoor.py). In a sweep (``-m``) a run that
diverges is recorded as ``diverged`` and the sweep goes on; a run that fails is recorded as
``failed`` with its traceback in its manifest, and the sweep goes on too.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .frontdoor import CONF, _fail, precheck  # noqa: F401  (precheck: the front door's first look)


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .config import ConfigError
    from .train import run

    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        manifest = run(cfg)
    except ConfigError as e:
        _fail(str(e))
    except Exception as e:
        if not sweep:
            raise
        print(f"run failed ({type(e).__name__}: {e}); recorded as failed, the sweep goes on", file=sys.stderr)
        return {"status": "failed"}
    status = manifest["status"]
    held = manifest.get("held_by")
    how = (f"being trained by pid {held.get('pid')} on {held.get('host')}, skipped" if held else
           "already finished, skipped" if manifest.get("skipped") else
           f"{manifest.get('steps_done')} steps, {manifest.get('wall_time_s', 0):.1f}s")
    # a run held by another process may have no manifest of its own yet: name it from the config
    print(f"{manifest.get('experiment', cfg.name)} seed={manifest.get('seed', cfg.seed)} {manifest['run_id']}: "
          f"{status} ({how})")
    if held:  # trained by another process right now: the sweep's summary says so, not "running"
        status = "held by another process"
    return {"status": status, "skipped": bool(manifest.get("skipped")) and not held, "run_id": manifest["run_id"]}


def main() -> None:
    from .config import ConfigError
    from .frontdoor import check

    argv = sys.argv[1:]
    precheck(argv)
    try:
        check(argv)
    except ConfigError as e:
        _fail(str(e))
    # Hydra's argparse cannot take overrides on both sides of -m: put the flag first.
    flags = [a for a in argv if a in ("-m", "--multirun")]
    sys.argv[1:] = flags + [a for a in argv if a not in flags]
    _app()


if __name__ == "__main__":
    main()
