# Two commands: `make bench` runs the main job, `make test` runs the tests. Both set up the
# virtual environment first (idempotent: a stamp file tracks pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= default
PYTEST_ARGS ?=

.PHONY: gpu-check gpu-wheels setup test bench bench-quick bench-suite bench-compare report report-browser browser zoo list lint clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[oracles,ray,timm,pretrained,text]"
	# TorchRay is a test oracle only (CC-BY-NC): no dependencies, never imported by the library.
	$(PY) -m pip install --quiet --no-deps torchray==1.0.0.2
	touch $(STAMP)

# The browser is best effort: without it (no root, no apt) the report's browser test skips, saying why.
test: setup
	-@timeout 600 $(MAKE) --no-print-directory browser || echo "make browser failed: the report's browser test will skip"
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench run --config $(CONFIG)

bench-quick: setup
	$(PY) -m bench run --config quick

bench-suite: setup
	$(PY) -m pytest bench/suite --benchmark-enable -p no:cacheprovider $(PYTEST_ARGS)

bench-compare: setup
	$(PY) -m bench compare $(RUNS)

report: setup
	$(PY) -m bench report $(RUN)

# Headless Chromium for the report's browser test (tests/bench/test_report_browser.py): Debian's
# package, installed only when no chromium is on the PATH (needs root or sudo; the test skips without it).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

report-browser: setup browser
	$(PY) -m pytest -q -p no:cacheprovider tests/bench/test_report_browser.py

zoo: setup
	$(PY) -m bench train

list: setup
	$(PY) -m bench list

clean:
	rm -rf .pytest_cache .benchmarks build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache

# On a GPU machine: `make gpu-check` (wheels/ carried along for what the machine lacks; fetch them
# here first with `make gpu-wheels`).
gpu-check:
	$(PYTHON) -m bench.gpu_check --wheels wheels $(GPU_CHECK_ARGS)

gpu-wheels: setup
	$(PY) -m bench.gpu_check --download-wheels wheels
