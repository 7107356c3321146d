# edgeva: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install edgeva into it (CPU PyTorch 2.13.0).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Sample videos and weights live outside the repository; point edgeva at them when present.
ifneq ($(wildcard ../shared/assets),)
export EDGEVA_ASSETS ?= $(abspath ../shared/assets)
endif

.PHONY: install test demo lint clean

$(BIN)/edgeva: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/edgeva

test: install
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

demo: install
	$(BIN)/edgeva demo

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
