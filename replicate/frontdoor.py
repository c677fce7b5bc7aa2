"""The front door: what ``python -m replicate`` checks before Hydra starts, so that every mistake in
the command line or in an experiment's files ends with one line ``error: <key>: ...`` and exit code 2,
and nothing is written.

The config tree a run may use is the primary config (conf/config.yaml) and the files of the group
options it selects (``model=gpt``, ``mitigation=[clip]``, the options an experiment or arm selects in
its defaults list), each at its package. Experiment and arm files (conf/experiment, conf/arm) and the
command line only set keys of that tree: a key they set that the tree does not define is an error
(a typo such as ``train.val_evry``, or ``model.width`` with ``model=mlp``), named with the closest
known keys. The exceptions are the mappings in ``OPEN``, whose keys are names the user picks.
``check(argv)`` composes the run (the first point of a sweep; every point's values are validated
too) and validates it with ``replicate.config.validate``; ``status(argv)`` is the same for a caller
that wants an exit code (the fuzz tests).
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .config import ConfigError, validate

CONF = Path(__file__).resolve().parent.parent / "conf"
# mappings whose keys the user names: mitigation.layer_lr.scales.<layer name> (docs/mitigations.md)
OPEN = ("mitigation.layer_lr.scales",)
# Hydra's own flags that take a value or change what is composed: the front door leaves those to Hydra
HYDRA_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun",
               "--info", "-i", "--shell-completion", "-sc", "--help", "-h", "--hydra-help", "--version")
SWEEP_GROUPS = ("experiment", "arm")  # files that set keys of the tree, not define them


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


def status(argv: list[str], conf: Path = CONF, build: bool = False) -> int:
    """The exit code ``python -m replicate argv`` would have before training: 0, or 2 after printing
    the one-line error; with ``build``, the model, data and optimizer are built too (no training)."""
    try:
        precheck(argv, conf)
        cfg = check(argv, conf)
        if build and cfg is not None:
            from .train import _build

            _build(cfg)
    except SystemExit as e:  # precheck's _fail has printed the line
        return int(e.code or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def check(argv: list[str], conf: Path = CONF) -> dict | None:
    """Raise ConfigError (one line) for an unknown key, an override Hydra would refuse, or a bad value;
    return the run's config (the first point of a sweep) as ``train.run`` gets it, or None where the
    command line has Hydra flags the front door leaves to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if any(a.split("=")[0] in HYDRA_FLAGS for a in argv):
        return None
    multirun = any(a in ("-m", "--multirun") for a in argv)
    args = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    parsed = [_parse(a) for a in args]
    base, sweeps = [], []
    for arg, o in zip(args, parsed):
        if not _key(o):
            raise ConfigError(f"{arg!r}: not an override: write key=value")
        if o.is_sweep_override():
            if not multirun:
                raise ConfigError(f"{_key(o)}: {o.input_line.split('=', 1)[1]!s} is a sweep: run it with -m, "
                                  "or write a list as [a,b]")
            sweeps.append(o)
            base.append(f"{o.get_key_element()}={_first(o)}")
        else:
            base.append(arg)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        tree = _Tree(conf, base, parsed)
        for o in parsed:
            tree.check_override(o)
        try:
            composed = compose("config", overrides=base, return_hydra_config=True)
        except Exception as e:  # what Hydra refuses that the checks above did not name
            raise ConfigError(_hydra_line(e, parsed)) from None
        from omegaconf import OmegaConf

        params = OmegaConf.select(composed, "hydra.sweeper.params") if multirun else None
        params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
        given = {_key(o) for o in sweeps}
        sweeps += [_parse(f"{k}={v}") for k, v in params.items() if k.lstrip("+~") not in given]
        cfg = OmegaConf.to_container(composed, resolve=False)
        cfg.pop("hydra", None)
        try:
            cfg = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
        except Exception as e:
            raise ConfigError(_hydra_line(e, parsed)) from None
        for o in sweeps:  # every value of every sweep: its keys (a group's files) and its values
            tree.check_override(o)
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            for v in values:
                if tree.is_group(o):
                    other = _Tree(conf, [*_without(base, o), f"{o.get_key_element()}={v}"], [o])
                    for p in parsed:
                        if not p.is_sweep_override():
                            other.check_override(p)
                else:
                    point = copy.deepcopy(cfg)
                    _set(point, _key(o), _parse(f"{_key(o)}={v}").value())
                    validate(point)
    GlobalHydra.instance().clear()
    validate(cfg)
    return cfg


class _Tree:
    """The keys a composition may set: those of the primary config and the selected group options
    (``known``), and the keys the experiment and arm files set (checked against ``known``)."""

    def __init__(self, conf: Path, overrides: list[str], parsed: Iterable = ()):
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode

        self.conf = conf
        try:
            dl = GlobalHydra.instance().config_loader().compute_defaults_list("config", overrides, RunMode.RUN)
        except Exception as e:
            raise ConfigError(_hydra_line(e, parsed)) from None
        self.known: dict[str, Any] = {}
        self.nodes: set[str] = set()
        self.selected: dict[str, list[str]] = {}
        setters = []
        for d in dl.defaults:
            path = d.config_path or ""
            if path.startswith("hydra/") or d.package == "hydra" or not (conf / f"{path}.yaml").is_file():
                continue
            group = path.split("/")[0]
            keys = _file_keys(conf / f"{path}.yaml", d.package or "")
            if group in SWEEP_GROUPS:
                setters.append((path, keys))
            else:
                self.known.update(keys)
                if "/" in path:
                    self.selected.setdefault(group, []).append(path.split("/", 1)[1])
        for k in self.known:
            parts = k.split(".")
            self.nodes |= {".".join(parts[:i]) for i in range(1, len(parts))}
        for path, keys in setters:
            for k in keys:
                if not self.defines(k):
                    raise ConfigError(self.unknown(k, f" (set in conf/{path}.yaml)"))

    def defines(self, key: str) -> bool:
        if key in self.known or key == "hydra" or key.startswith("hydra."):
            return True
        return any(key.startswith(p + ".") and (p in self.nodes or p in self.known) for p in OPEN)

    def is_group(self, o) -> bool:
        key = _key(o).split("@")[0]
        return key.startswith("hydra/") or (self.conf / key).is_dir()

    def check_override(self, o) -> None:
        key = _key(o)
        if not key:
            raise ConfigError(f"{o.input_line!r}: not an override: write key=value")
        if self.is_group(o):
            return
        if o.is_delete():  # the builder would fall back to a value no file shows (or fail on a name)
            raise ConfigError(f"{key}: a key of the config cannot be deleted (~{key}); set it instead, {key}=...")
        if o.is_add() and not o.is_force_add() and key in self.known:
            raise ConfigError(f"{key}: already a key of the config: set it without the +, {key}=...")
        if not self.defines(key):
            raise ConfigError(self.unknown(key, ""))

    def unknown(self, key: str, where: str) -> str:
        msg = f"{key}: not a key of the config{where}"
        group = key.split(".")[0]
        others = _options_defining(self.conf, group, key) if (self.conf / group).is_dir() else []
        if others:
            chosen = ",".join(self.selected.get(group, [])) or "[]"
            msg += f"; it is a key of {group}={'/'.join(others)}, and {group}={chosen} is selected"
        close = difflib.get_close_matches(key, list(self.known), n=3, cutoff=0.6)
        if close:
            msg += f"; did you mean {' or '.join(close)}?"
        return msg


@lru_cache(maxsize=None)
def _load(path: Path) -> dict:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    return node if isinstance(node, dict) else {}


def _file_keys(path: Path, package: str) -> dict[str, Any]:
    body = {k: v for k, v in _load(path).items() if k != "defaults"}
    if package == "":
        body.pop("hydra", None)
    return _flatten(body, package + "." if package else "")


def _flatten(node: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _options_defining(conf: Path, group: str, key: str) -> list[str]:
    """The options of ``group`` whose file defines ``key`` (for a hint)."""
    found = []
    for p in sorted((conf / group).rglob("*.yaml")):
        first = p.read_text().split("\n", 1)[0]
        package = first.split("@package", 1)[1].strip() if "@package" in first else group
        package = "" if package == "_global_" else package
        if key in _file_keys(p, package):
            found.append(p.relative_to(conf / group).with_suffix("").as_posix())
    return found


def _parse(arg: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(arg)
    except Exception as e:
        key = arg.split("=", 1)[0].lstrip("+~") or arg
        raise ConfigError(f"{key}: cannot read {arg!r}: {_first_line(e)}") from None


def _key(o) -> str:
    return o.key_or_group + (f"@{o.package}" if o.package else "")


def _first(o) -> str:
    try:
        return next(iter(o.sweep_string_iterator()))
    except Exception as e:
        raise ConfigError(f"{_key(o)}: cannot read the sweep {o.input_line!r}: {_first_line(e)}") from None


def _without(base: list[str], o) -> list[str]:
    key = o.get_key_element()
    return [b for b in base if b.split("=", 1)[0] != key]


def _set(cfg: dict, dotted: str, value: Any) -> None:
    node = cfg
    *head, last = dotted.split(".")
    for part in head:
        node = node.setdefault(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node[last] = value


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def _hydra_line(e: BaseException, parsed: Iterable) -> str:
    """One line from a Hydra or OmegaConf error, naming the key it is about where it says."""
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or type(e).__name__
    full_key = getattr(e, "full_key", None)
    if full_key:
        return f"{full_key}: {_first_line(e)}"
    for o in parsed:
        if _key(o) and _key(o) in text:
            return f"{_key(o)}: {text}"
    return f"config: {text}"
