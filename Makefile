# Two entry points (see README): `make demo` installs and runs the main job on the
# embedded default; `make test` installs and runs lint, type checks and the test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Packages whose declared dependencies cannot install here (tensorflow, pyaudio): we use
# only their files (musicnn's TF1 checkpoints, tinysoundfont's synthesiser).
NO_DEPS := musicnn==0.1.0 tinysoundfont==0.3.7
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,teachers]'
	$(BIN)/python -m pip install --quiet --no-deps $(NO_DEPS)
	touch $@

demo: install
	$(BIN)/python -m east_ray.study demo

lint: install
	$(BIN)/ruff check east_ray tests
	$(BIN)/ruff format --check east_ray tests

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
