# edgeva: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install edgeva into it (CPU PyTorch 2.13.0).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Sample videos and weights live outside the repository; point edgeva at them when present.
ifneq ($(wildcard ../shared/assets),)
export EDGEVA_ASSETS ?= $(abspath ../shared/assets)
endif

.PHONY: install test demo lint clean system-deps

# Debian packages the tests use: headless Chromium for the dashboard's browser test (driven
# by Playwright from pip; Playwright's own browser download is not used) and docker-compose,
# which validates deploy/compose.yaml without a Docker engine. Only what is
# missing is installed, so this is a no-op on a machine that has it; elsewhere than Debian
# it says so and the browser test skips with that reason.
APT_PACKAGES := chromium docker-compose

$(BIN)/edgeva: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/edgeva

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "system-deps: no apt-get; install$$missing by hand"; exit 0; fi; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo "system-deps: installing$$missing"; \
	$$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing

test: install system-deps
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

demo: install
	$(BIN)/edgeva demo

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
