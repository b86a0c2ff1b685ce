# Two commands: `make bench` runs the main job, `make test` runs the tests. Both set up the
# virtual environment first (idempotent: a stamp file tracks pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= default
PYTEST_ARGS ?=

.PHONY: gpu-check gpu-wheels setup test bench bench-quick bench-suite bench-compare report zoo list lint clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[oracles,ray,timm,pretrained,text]"
	# TorchRay is a test oracle only (CC-BY-NC): no dependencies, never imported by the library.
	$(PY) -m pip install --quiet --no-deps torchray==1.0.0.2
	touch $(STAMP)

test: setup
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
