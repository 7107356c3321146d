# edgeva: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install edgeva into it (CPU PyTorch 2.13.0).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Sample videos and weights live outside the repository; point edgeva at them when present.
ifneq ($(wildcard ../shared/assets),)
export EDGEVA_ASSETS ?= $(abspath ../shared/assets)
endif

.PHONY: install sysdeps test demo lint clean

# Debian packages the tests use, installed by `make sysdeps` (run by `make test`, so by CI):
# FFmpeg's HTTP server and GStreamer's RTSP server (run by the system python3) serve live video
# to the live-source and fault tests, openssl makes their certificates, headless Chromium runs
# the dashboard's browser test (driven by Playwright from pip; its own browser download is not
# used) and docker-compose validates deploy/compose.yaml without a Docker engine.
# Idempotent: installs only what is missing; without root or sudo it says what to install, and
# the tests that need a missing package skip saying which.
SYSDEPS := ffmpeg gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good python3-gi openssl chromium docker-compose

$(BIN)/edgeva: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,ray]'
	touch $@

install: $(BIN)/edgeva

sysdeps:
	@missing=$$(for p in $(SYSDEPS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "sysdeps: no apt-get; install by hand (the tests that need them skip):" $$missing; exit 0; fi; \
	sudo=""; if [ "$$(id -u)" != 0 ]; then sudo="sudo -n"; fi; \
	echo "sysdeps: installing" $$missing; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	{ $$sudo apt-get update -q >/dev/null 2>&1 && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || \
	echo "sysdeps: could not install (the tests that need them skip, saying why):" $$missing

test: install sysdeps
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

demo: install
	$(BIN)/edgeva demo

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
