# climbkit: `make train` and `make test` set up .venv on first use.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# papermill starts the notebook kernel with `python` from PATH: make it the venv's
export PATH := $(abspath $(BIN)):$(PATH)

RUN  ?= climb-$(shell date +%Y%m%d-%H%M%S)
ARGS ?=

.PHONY: setup train test export check-export nbdev-test pytest bench lab clean

$(BIN)/.climbkit-installed: settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU build on this machine (a bare `torch` would pull a CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

setup: $(BIN)/.climbkit-installed

## train: papermill run of nbs/train.ipynb with its defaults (add ARGS='-p epochs 20 ...'); the run folder is runs/$(RUN)
train: setup
	@mkdir -p runs/$(RUN)
	$(BIN)/papermill nbs/train.ipynb runs/$(RUN)/train.ipynb -p name $(RUN) -p out_dir runs --log-output $(ARGS)
	@echo "run folder: runs/$(RUN)"

## test: climbkit/ must equal what nbdev_export writes; then nbdev_test and pytest
test: setup check-export nbdev-test pytest

export: setup
	$(BIN)/nbdev_export

check-export: setup
	@tmp=$$(mktemp -d) && cp settings.ini $$tmp/ && cp -r nbs $$tmp/nbs && \
	  (cd $$tmp && $(abspath $(BIN))/nbdev_export) && \
	  if diff -r -x __pycache__ climbkit $$tmp/climbkit; then echo "climbkit/ equals what nbdev_export writes"; rm -rf $$tmp; \
	  else echo "climbkit/ differs from what nbdev_export writes: edit the notebooks in nbs/, run 'make export', commit both."; rm -rf $$tmp; exit 1; fi

nbdev-test: setup
	$(BIN)/nbdev_test --timing

pytest: setup
	$(BIN)/python -m pytest -q tests

## bench: the speed benchmark of issue #2 on the real MoonBoard 2016 file (about 30 minutes)
bench: setup
	$(BIN)/papermill nbs/bench.ipynb runs/bench-$(RUN).ipynb --log-output $(ARGS)

lab: setup
	$(BIN)/jupyter lab nbs

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
