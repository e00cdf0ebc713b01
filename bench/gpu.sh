#!/usr/bin/env bash
# One-GPU benchmark (fp32 vs bf16 step, 1/2/4 trials per GPU); JSON into the given folder.
# Usage: bench/gpu.sh OUT_DIR   (needs `make install` first; about 3-6 minutes on one GPU)
set -euo pipefail
out="${1:?usage: bench/gpu.sh OUT_DIR}"
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -m bench.gpu --out "$out" --steps 20
