#!/usr/bin/env bash
# What one 15-minute GPU lease should measure for issue 7 (and the gpu tier's tokens/s), as one
# prepared, time-boxed command. Prepare on the CPU machine first: `make gpu-kit` (wheels in .whl/).
# Then on the device (run tool): carry [".whl"], command: `bash tools/gpu_session.sh`.
# Run it with timeout_s=600: each step is under `timeout`, together under 560 s (wheels ~10 s, the
# two bench sessions 150 + 240 s, three tokens/s runs 50 s each). Everything lands in $OUT:
# nvidia-smi.txt, bench-targets.json/.md, bench-variants.json/.md, tokens.json, log (7 files: the
# device tool returns at most 8; run folders stay in /tmp/gpu_runs).
# Locally (a check of the script, not a measurement): OUT=/tmp/out PY=.venv/bin/python SIZE=cpu-1M
#   STEPS=5 EXTRA="schedule.warmup_steps=1 model.depth=1 data.batch_size=2" bash tools/gpu_session.sh
set -u
OUT=${OUT:?set OUT to a folder for the results}
PY=${PY:-python3}
SIZE=${SIZE:-cuda-100M}            # the bench size the issue's targets are stated at
STEPS=${STEPS:-300}                # optimizer steps per tokens/s run (> the 200 warm-up steps)
VARIANTS=${VARIANTS:-adam adam_atan2 stable_adamw}
EXTRA=${EXTRA:-}                   # more overrides for the tokens/s runs (locally: a tiny model)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
(nvidia-smi; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())") \
  > "$OUT/nvidia-smi.txt" 2>&1

# Two pytest sessions, each writing its JSON at its end: the targets first (compiled adam against
# torch's fused AdamW and the copy bandwidth), then every other variant, so a timeout in the second
# still leaves the first.
T=tests/bench/test_optimizers.py
TARGETS="$T::test_variant_step[$SIZE-adam-compiled-fp32] $T::test_variant_step[$SIZE-adam-eager-fp32]
  $T::test_torch_adamw_step[$SIZE-fused-fp32] $T::test_torch_adamw_step[$SIZE-foreach-fp32]
  $T::test_torch_adamw_step[$SIZE-forloop-fp32] $T::test_copy_bandwidth[${SIZE%%-*}]"
BENCH="$PY -m pytest -q -s -p no:cacheprovider -o addopts= --benchmark-enable"
echo "== bench 1/2: the targets at $SIZE fp32"
timeout 150 $BENCH --benchmark-json="$OUT/bench-targets.json" $TARGETS; echo "bench 1 exit $?"
echo "== bench 2/2: every other variant at $SIZE fp32, eager and compiled"
timeout 240 $BENCH --benchmark-json="$OUT/bench-variants.json" $T -k "$SIZE and fp32" \
  $(for t in $TARGETS; do echo "--deselect $t"; done); echo "bench 2 exit $?"
for f in targets variants; do $PY -m replicate.bench "$OUT/bench-$f.json" > "$OUT/bench-$f.md" 2>&1; done

echo "== tokens/s and MFU of the gpu tier's GPT (m8_gpu's config, $STEPS steps) per variant"
for v in $VARIANTS; do
  timeout 50 $PY -m replicate experiment=m8_gpu optimizer=$v train.steps=$STEPS train.val_every=0 seed=0 \
    results_dir=/tmp/gpu_runs progress=false hydra.run.dir=/tmp/gpu_hydra/$v $EXTRA || echo "run $v: exit $?"
done
$PY - "$OUT" /tmp/gpu_runs <<'PY'
import json, sys
from pathlib import Path

import yaml

out, runs = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for m in sorted(runs.glob("runs/*/*/manifest.json")):
    d, cfg = json.loads(m.read_text()), yaml.safe_load((m.parent / "config.yaml").read_text())
    rows.append({"optimizer": cfg["optimizer"]["name"], **{k: d.get(k) for k in (
        "run_id", "status", "device", "steps_done", "wall_time_s", "throughput", "versions")}})
(out / "tokens.json").write_text(json.dumps(rows, indent=1))
for r in rows:
    print(r["optimizer"], r["status"], r["steps_done"], r["throughput"])
PY
