# All set-up happens here: a fresh Python 3.11 machine needs nothing but `make`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch for the gpu package's CPU tests (a file of it is on disk here)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lorasim sweep configs/demo_sweep.yaml --out results/demo

test: $(STAMP)
	$(BIN)/ruff check sim gpu experiments tests benchmarks results
	$(BIN)/python -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/lorasim bench

clean:
	rm -rf $(VENV) .pytest_cache
