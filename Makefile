# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs losskit[cli] and runs `losskit demo` on its bundled data
#   make test   creates .venv, installs torch (CPU) and the test extras, and runs the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the CPU build of torch that lies on this machine's disk; any other version pulls CUDA wheels
TORCH := torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.cli: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli]'
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.cli
	$(BIN)/losskit demo

test: $(VENV)/.test
	$(BIN)/python -m ruff check src tests benchmarks tools
	$(BIN)/python -m pytest

bench: $(VENV)/.test
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
