# `make demo` and `make test` each set up everything on a fresh machine, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; a plain `torch` requirement would pull several GB of CUDA packages.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: setup demo test lint bench clean

$(STAMP):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet uv
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[hf,encoder,serve,ray,t2i,dev]" "$(TORCH)"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/swisscheese demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/organism_targets.py --out runs/demo

clean:
	rm -rf $(VENV) runs
