# Two entry points (see README): `make demo` installs and runs the main job on the
# embedded default; `make test` installs and runs lint, type checks and the test suite.
#
# The environment is uv.lock, installed exactly: `uv sync --locked` refuses a lock that is
# out of date with pyproject.toml, installs every locked version with its hash, and removes
# anything else from .venv. uv itself is bootstrapped into .uv/ from PyPI at a pinned
# version and hash, so only Python 3.11 and make are needed.
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV_SHA256 := d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19
TOOLS := .uv
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Both extras (teachers, dev) and the default group (assets: musicnn, tinysoundfont).
# Bytecode is compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE
# is set (as on our CI machines) every Ray worker would recompile torch, Ray and pandas at
# import (5.5 s instead of 2.3 s per process here).
SYNC := $(UV) sync --locked --all-extras --compile-bytecode
# uv uses this interpreter for .venv and never downloads one of its own.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install lock lockcheck demo test test-fast lint typecheck bench chaos clean

install: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	echo 'uv==$(UV_VERSION) --hash=sha256:$(UV_SHA256)' > $(TOOLS)/requirements.txt
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes -r $(TOOLS)/requirements.txt

$(STAMP): pyproject.toml uv.lock $(UV)
	@$(UV) lock --check --offline 2>/dev/null || { \
	  echo "error: uv.lock is out of date with pyproject.toml; run 'make lock' and commit uv.lock" >&2; \
	  exit 1; }
	$(SYNC)
	$(BIN)/python -m east_ray.check_install
	touch $@

# Re-resolve uv.lock after editing pyproject.toml (keeps every pin that still fits);
# `make lock LOCK_ARGS=--upgrade` moves every package to the newest allowed release.
lock: $(UV)
	$(UV) lock $(LOCK_ARGS)

# The installed .venv is exactly uv.lock (nothing added, removed or swapped by hand).
lockcheck: install
	@$(SYNC) --check --quiet || { \
	  echo "error: .venv does not match uv.lock (a package was installed or changed by hand); run '$(SYNC)'" >&2; \
	  exit 1; }

demo: install
	$(BIN)/python -m east_ray.study demo

lint: install
	$(BIN)/ruff check east_ray tests bench
	$(BIN)/ruff format --check east_ray tests bench
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

test: lockcheck lint typecheck
	$(BIN)/python -m pytest -q

# The suite without the tests marked slow (Ray Tune studies, kills, multi-node): a quick
# check while editing; `make test` is the gate.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python -m bench

# SIGKILL a running study at seeded random moments and check every rerun (minutes, so not
# part of `make test`); e.g. `make chaos CHAOS_ARGS="-n 3 --seed 7"`.
chaos: install
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
