# The two set-up commands of the README: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

# --no-compile: Python compiles the modules that are imported, when they are, instead of every module
# of every package (tens of thousands in torch, transformers and their kin) up front.
$(BIN)/avemotion: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[train,speech,dev,docs]'
	touch $@

demo: $(BIN)/avemotion
	$(BIN)/avemotion demo -o demo-output

test: $(BIN)/avemotion
	$(BIN)/python -m pytest

clean:
	rm -rf demo-output .pytest_cache
