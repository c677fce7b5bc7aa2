"""Hydra entry point: ``python -m replicate [overrides]`` runs one run, ``-m`` a sweep.

A bad config value, an unknown key (on the command line or in an experiment's files), an unknown
config-group option, an override Hydra cannot read, an unwritable ``results_dir`` or a builder's
refusal ends with one line on stderr, ``error: <key>: ...``, naming the key and what is allowed, and
exit code 2, before anything is written (replicate/frontdoor.py). In a sweep (``-m``) a run that
diverges is recorded as ``diverged`` and the sweep goes on; a run that fails is recorded as
``failed`` with its traceback in its manifest, and the sweep goes on too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parent.parent / "conf"


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def precheck(argv: list[str], conf: Path = CONF) -> None:
    """Catch, before Hydra starts, the mistakes Hydra would answer with a page of text: an unknown
    option of a config group (``optimizer=adma``) and a ``results_dir`` that cannot be written."""
    from .config import ConfigError, check_writable

    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key == "results_dir":
            try:
                check_writable(value)
            except ConfigError as e:
                _fail(str(e))
            continue
        group = key.split("@")[0]
        if not (conf / group).is_dir() or value in ("", "null"):
            continue
        if "(" in value:  # a sweep function (choice(...), range(...)): Hydra checks it
            continue
        options = _options(group, conf)
        # a choice, a sweep a,b, a multi-select list [a,b] or a sweep of lists [a],[a,b]
        for choice in (c for c in re.split(r"[\[\],\s]+", value) if c):
            if choice not in options:
                _fail(f"{key}={choice!r} is not an option: choose one of {', '.join(options)}")


def _options(group: str, conf: Path) -> list[str]:
    """The choices of a config group: our YAML files, plus what Hydra and its plugins register."""
    options = {p.relative_to(conf / group).with_suffix("").as_posix()  # preset/gpt3 as well
               for p in (conf / group).rglob("*.yaml")}
    if group.startswith("hydra/"):
        from hydra.core.config_store import ConfigStore
        from hydra.core.plugins import Plugins

        Plugins.instance()  # registers the launchers' and sweepers' configs
        try:
            options |= {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
        except OSError:
            pass
    return sorted(options)


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
