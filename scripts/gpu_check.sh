#!/usr/bin/env bash
# The GPU check of issue 20: exact and fast mode against diffusers on the real 14B architecture
# (random bf16 weights), in one process, at most ~7.5 minutes on one H100 (--budget-s 450).
# Writes $OUT/gpu_check.json and $OUT/gpu_check.md after every phase, and $OUT/log.txt.
# What it measures, in order: src/helios_bench/gpu_check.py.
#
# 1. Here (with network), once: the wheels the GPU image lacks. The image has torch 2.11 +
#    triton, transformers, huggingface-hub, safetensors, numpy, pillow, regex, requests, filelock;
#    it lacks diffusers and torchao. Keep .whl out of git:
#
#      echo /.whl/ >> .git/info/exclude
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
#        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#        -d .whl diffusers==0.42.1 torchao==0.18.0
#
#    (2 files, ~7.5 MB: diffusers-0.42.1-py3-none-any.whl and
#    torchao-0.18.0-cp310-abi3-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl.)
#
# 2. On the GPU machine, from the repository root, with .whl carried along (device `run` with
#    carry [".whl"] and timeout_s 600; the tool sets $OUT to the folder that comes back):
#
#      scripts/gpu_check.sh
#
#    Extra arguments go to the check, e.g. `--fp8-edge-blocks 3`, `--budget-s 400`, or
#    `--phases stream_exact,stream_fast,quality` to rerun a part.
#
# 3. Here: copy $OUT/gpu_check.{json,md} to benchmarks/results/h100-14b-gpu-check.{json,md}
#    and add the row and findings to benchmarks/results/README.md.
#
# On the CPU the same script tests itself: `PYTHON=.venv/bin/python scripts/gpu_check.sh --tiny`
# (a toy of the architecture at 64x64; fast mode only rounds weights to FP8 there).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
if [ "${1:-}" != "--tiny" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
fi
"$PY" - <<'EOF'
import importlib
for name in ("torch", "diffusers", "torchao", "triton"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # the check records what it finds too; this line is for the log
        print(name, "missing:", type(exc).__name__)
EOF
set -o pipefail
"$PY" -m helios_bench.gpu_check --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
