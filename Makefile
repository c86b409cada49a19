# climbkit: `make train` and `make test` set up .venv on first use.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# papermill starts the notebook kernel with `python` from PATH: make it the venv's
export PATH := $(abspath $(BIN)):$(PATH)

# expanded once, so every step of a run uses the same name
ifndef RUN
RUN := climb-$(shell date +%Y%m%d-%H%M%S)
endif
ARGS ?=
GRADER_ARGS ?=

.PHONY: setup train train-grader generate test export check-export check-ledger nbdev-test pytest bench soak lab clean results results-bench

$(BIN)/.climbkit-installed: settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU build on this machine (a bare `torch` would pull a CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

setup: $(BIN)/.climbkit-installed

## train: the grade predictor (runs/grade-$(RUN)), then the route generator (runs/$(RUN)), each a papermill run of
## nbs/train.ipynb with its defaults (add ARGS='-p epochs 20 ...' for the generator); the generator's report uses the grader
train: setup train-grader
	@mkdir -p runs/$(RUN)
	$(BIN)/papermill nbs/train.ipynb runs/$(RUN)/train.ipynb -p name $(RUN) -p out_dir runs --log-output $(ARGS)
	@echo "run folder: runs/$(RUN)"

train-grader: setup
	@mkdir -p runs/grade-$(RUN)
	$(BIN)/papermill nbs/train.ipynb runs/grade-$(RUN)/train.ipynb -p task climb_grade -p name grade-$(RUN) -p out_dir runs --log-output $(GRADER_ARGS)

## generate: routes and metrics of a trained run (default: the newest climb run): make generate [GEN_RUN=runs/<name>] [ARGS='-p grade 7B']
GEN_RUN ?= $(shell $(BIN)/python -c "from climbkit.core import list_runs; r = list_runs('runs', 'climb', 'best.pt'); print(r[0] if r else '')" 2>/dev/null)
generate: setup
	@test -n "$(GEN_RUN)" || (echo "no trained climb run under runs/: run 'make train' first" && exit 1)
	$(BIN)/papermill nbs/generate.ipynb $(GEN_RUN)/generate.ipynb -p run $(GEN_RUN) --log-output $(ARGS)
	@echo "rendered: $(GEN_RUN)/generate.ipynb"

## test: climbkit/ must equal what nbdev_export writes, README's tables what the ledger (results/) holds; then nbdev_test and pytest
test: setup check-export check-ledger nbdev-test pytest

export: setup
	$(BIN)/nbdev_export

check-export: setup
	@tmp=$$(mktemp -d) && cp settings.ini $$tmp/ && cp -r nbs $$tmp/nbs && \
	  (cd $$tmp && $(abspath $(BIN))/nbdev_export) && \
	  if diff -r -x __pycache__ climbkit $$tmp/climbkit; then echo "climbkit/ equals what nbdev_export writes"; rm -rf $$tmp; \
	  else echo "climbkit/ differs from what nbdev_export writes: edit the notebooks in nbs/, run 'make export', commit both."; rm -rf $$tmp; exit 1; fi

check-ledger: setup
	$(BIN)/climbkit-ledger check README.md

nbdev-test: setup
	$(BIN)/nbdev_test --timing

pytest: setup
	$(BIN)/python -m pytest -q tests

## bench: climbkit against a plain PyTorch loop, and each training aid on and off (runs/bench-<date>/; ARGS='-p data ... -p steps 500')
BENCH := bench-$(shell date +%Y%m%d-%H%M%S)
bench: setup
	@mkdir -p runs/$(BENCH)
	$(BIN)/papermill nbs/bench.ipynb runs/$(BENCH)/bench.ipynb -p name $(BENCH) -p out_dir runs --log-output $(ARGS)
	@echo "results: runs/$(BENCH)"

## soak: 20,000 steps of the flagship, watching memory and disk (runs/soak-<date>/; ARGS='-p steps 2000' for a shorter look)
SOAK := soak-$(shell date +%Y%m%d-%H%M%S)
soak: setup
	@mkdir -p runs/$(SOAK)
	$(BIN)/papermill nbs/soak.ipynb runs/$(SOAK)/soak.ipynb -p name $(SOAK) -p out_dir runs --log-output $(ARGS)
	@echo "results: runs/$(SOAK)"

## results: rewrite the ledger (results/*.json, each with its command, commit, date, machine and raw repeats) and README's tables
## from it; one part at a time: make results-bench. Run on a quiet machine: these are timings.
RESULTS := bench
results: $(addprefix results-,$(RESULTS))
	$(BIN)/climbkit-ledger sync README.md

## results-bench: the fair benchmark, 3 interleaved repeats (about 30 minutes on 2 cores without native bf16)
RESULTS_BENCH := results-bench-$(shell date +%Y%m%d-%H%M%S)
results-bench: setup
	@mkdir -p runs/$(RESULTS_BENCH)
	$(BIN)/papermill nbs/bench.ipynb runs/$(RESULTS_BENCH)/bench.ipynb -p name $(RESULTS_BENCH) -p out_dir runs -p repeats 3 \
	  -p ledger results -p ledger_command 'make results-bench' --log-output $(ARGS)
	$(BIN)/climbkit-ledger keep runs/$(RESULTS_BENCH)/bench.ipynb results/bench.ipynb
	$(BIN)/climbkit-ledger sync README.md

lab: setup
	$(BIN)/jupyter lab nbs

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
