#!/usr/bin/env bash
# One GPU, everything at once: the CUDA-only tests (a training step never waits for the
# device, eager and compiled; compiled vs eager agreement of every system's loss and
# gradients on CUDA), then `bench.gpu` (fp32 vs bf16 step, eager and compiled, the trainer's
# step vs a bare loop, a train() smoke run, 1/2/4/8 trials per GPU eager and compiled).
# Writes OUT_DIR/cuda_tests.txt and OUT_DIR/gpu.json (rewritten after each part, so a run
# stopped by a time limit keeps what it measured; packing comes last).
# Usage: bench/gpu.sh OUT_DIR   (the packages of `make install`, or a Python that has them.
# Time: the eager rows took ~1.5 min on an H100 and an H200; the compiled rows add their
# compiles (six graphs built from scratch, the packed trials' from inductor's cache) and
# the 8-per-GPU rows, neither timed on a GPU yet. The CPU smoke check,
# `python -m bench.gpu --out DIR --steps 2 --smoke-width 8`, ran every part, 8 per GPU and
# the compiled packing included, in 18 minutes here with a demo study beside it.)
set -uo pipefail
out="${1:?usage: bench/gpu.sh OUT_DIR}"
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mkdir -p "$out"
# a failing test is a finding to report, not a reason to skip the measurements
"$PY" -m pytest -q -p no:cacheprovider -k cuda tests/test_trainer.py tests/test_compile.py \
  2>&1 | tee "$out/cuda_tests.txt"
tests=${PIPESTATUS[0]}
"$PY" -m bench.gpu --out "$out" --steps 20 || exit
exit "$tests"
