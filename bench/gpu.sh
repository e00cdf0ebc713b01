#!/usr/bin/env bash
# One-GPU benchmark (fp32 vs bf16 step, 1/2/4 trials per GPU); JSON into the given folder.
# Usage: bench/gpu.sh OUT_DIR   (needs the packages of `make install`; about 1.5 minutes on one H100)
set -euo pipefail
out="${1:?usage: bench/gpu.sh OUT_DIR}"
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -m bench.gpu --out "$out" --steps 20
