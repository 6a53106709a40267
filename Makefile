# `make test` sets up .venv (CPU torch on CPU machines) and runs the test suite.
# `make demo` runs the shipped demo model on the shipped scenes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU build; the package's own range then installs nothing more.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python sample.py demo --out outputs/demo --overwrite

.PHONY: install test demo
