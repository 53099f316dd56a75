PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_N ?= 100
NPROCS ?= 2

.PHONY: install test demo lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

lint: install
	$(BIN)/ruff check bgs_app tests benchmarks

demo: install
	bash scripts/demo.sh $(DEMO_DIR) $(DEMO_N) $(NPROCS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info
