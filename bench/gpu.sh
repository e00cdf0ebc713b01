#!/usr/bin/env bash
# One-GPU benchmark (fp32 vs bf16 step, eager and compiled, 1/2/4 trials per GPU); JSON into
# the given folder.
# Usage: bench/gpu.sh OUT_DIR   (needs the packages of `make install`; the eager rows took about
# 1.5 minutes on one H100; the compiled rows add their compiles, not yet timed on a GPU: six
# graphs built from scratch (fp32 and bf16 for each student, the trainer's baseline and dcor
# steps), the packed trials' from inductor's cache. The CPU smoke check,
# `python -m bench.gpu --out DIR --steps 2 --smoke-width 8`, took 12 minutes here.)
set -euo pipefail
out="${1:?usage: bench/gpu.sh OUT_DIR}"
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -m bench.gpu --out "$out" --steps 20
