# All set-up happens here: a fresh Python 3.11 machine needs nothing but `make`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean wheels

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

# Wheels of what the GPU machines' image lacks (Python 3.12, x86-64), same versions as .venv;
# carry .whl to the device and `source gpu/device_env.sh` there (docs/gpu.md)
DEVICE_PKGS := simpy pydantic pydantic_core annotated-types typing-inspection
wheels: $(STAMP)
	rm -rf .whl && mkdir -p .whl
	for p in $(DEVICE_PKGS); do \
	  v=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('$$p'))"); \
	  $(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .whl "$$p==$$v" || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache
