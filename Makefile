PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_N ?= 60
NPROCS ?= 2
TORCH_VERSION ?= 2.13.0
# e.g. https://download.pytorch.org/whl/cpu (or .../cu128 for a CUDA image)
TORCH_INDEX ?=
# The wheelhouse's torch build (the local version label): cpu by default, so that the
# image never gets PyPI's torch, whose Linux wheels pull gigabytes of CUDA libraries.
# A CUDA image: make wheelhouse TORCH_INDEX=https://download.pytorch.org/whl/cu128 TORCH_LOCAL=cu128
TORCH_LOCAL ?= cpu

# Every dependency at the version last tested (make lock refreshes it).
LOCK := requirements/lock.txt
LOCK_VENV := .lock-venv

.PHONY: install test test-slow demo lint clean docs wheelhouse lock

install: $(STAMP)

# torch first and alone: pip then takes the CPU build on this machine's disk; a torch
# pulled in as a dependency could be PyPI's CUDA build (gigabytes).
$(STAMP): setup.cfg pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -c $(LOCK) pip
	$(BIN)/pip install -c $(LOCK) torch==$(TORCH_VERSION)
	$(BIN)/pip install -c $(LOCK) -e '.[test,docs]'
	touch $(STAMP)

# Resolve the dependencies anew in a fresh environment and record every version in the
# lock (then run make test before committing it).
lock:
	rm -rf $(LOCK_VENV)
	$(PY) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --upgrade pip
	$(LOCK_VENV)/bin/pip install torch==$(TORCH_VERSION)
	$(LOCK_VENV)/bin/pip install '.[test,docs]'
	{ sed -n '/^#/p' $(LOCK); $(LOCK_VENV)/bin/pip freeze --all --exclude bgs_app \
	  | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

# The slow tests: the group level end to end and the simulated-study recovery (CI runs
# them after make test; each uses both cores, so they run one after the other).
test-slow: install
	$(BIN)/python -m pytest -q -m slow --durations=10

# ruff, and the import contracts of .importlinter (make test checks them too, in
# tests/test_architecture.py).
lint: install
	$(BIN)/ruff check bgs_app tests benchmarks
	$(BIN)/lint-imports --config .importlinter

demo: install
	bash scripts/demo.sh $(DEMO_DIR) $(DEMO_N) $(NPROCS)

docs: install
	$(BIN)/python -c "import sphinx, numpydoc, sphinxarg, myst_parser" 2>/dev/null || \
	  $(BIN)/pip install -q sphinx numpydoc sphinx-argparse myst-parser
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

# Wheels of bgs_app and of every dependency (for the Python of $(BIN)), so that the
# container build (Dockerfile) installs with --no-index.
wheelhouse: install
	rm -rf wheelhouse
	$(BIN)/pip wheel --wheel-dir wheelhouse -c $(LOCK) \
	  $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
	  torch==$(TORCH_VERSION)$(if $(TORCH_LOCAL),+$(TORCH_LOCAL)) ".[deepbet]"
	cp $(LOCK) wheelhouse/lock.txt

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(DEMO_DIR) build dist *.egg-info wheelhouse docs/_build
