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
, := ,
GRADER_ARGS ?=
, := ,

.PHONY: docs docs-serve docs-check browser params setup git-filter train train-grader generate sweep compare test export check-export check-ledger nbdev-test pytest bench soak lab clean results $(addprefix results-,$(RESULTS))

$(BIN)/.climbkit-installed: settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU build on this machine (a bare `torch` would pull a CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory git-filter
	@touch $@

## git-filter: notebook outputs never reach a commit: nbstripout cleans nbs/*.ipynb as git stages them (.gitattributes)
git-filter:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "'$(abspath $(BIN))/python' -m nbstripout --keep-id" && \
	  git config filter.nbstripout.smudge cat && \
	  git config diff.ipynb.textconv "'$(abspath $(BIN))/python' -m nbstripout -t --keep-id" && \
	  echo "git filter: nbstripout cleans nbs/*.ipynb on commit"; fi

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

## sweep: a pruned TPE sweep of the route generator on the built-in data (nbs/configs/sweep-climb.yaml: 12 trials, 2 workers x 1 thread,
## about 9 minutes), with its morning view rendered in runs/$(SWEEP)/sweep.ipynb; after a kill, `make sweep SWEEP=<that name>` resumes it
SWEEP_SPEC ?= configs/sweep-climb.yaml
ifndef SWEEP
SWEEP := sweep-climb-$(shell date +%Y%m%d-%H%M%S)
endif
sweep: setup
	@mkdir -p runs/$(SWEEP)
	$(BIN)/papermill nbs/sweep.ipynb runs/$(SWEEP)/sweep.ipynb -p name $(SWEEP) -p out_dir runs --log-output \
	  $(if $(wildcard runs/$(SWEEP)/sweep.yaml),-p resume runs/$(SWEEP),-p spec $(SWEEP_SPEC)) $(ARGS)
	@echo "sweep folder: runs/$(SWEEP)"

## compare: any runs side by side (default: every run under runs/), rendered in runs/compare.ipynb: make compare [RUNS='runs/sweep-* runs/climb-*']
RUNS ?= runs/*
compare: setup
	$(BIN)/papermill nbs/compare.ipynb runs/compare.ipynb -p runs '$(RUNS)' --log-output $(ARGS)
	@echo "rendered: runs/compare.ipynb"

## generate: routes and metrics of a trained run (default: the newest climb run): make generate [GEN_RUN=runs/<name>] [ARGS='-p grade 7B']
GEN_RUN ?= $(shell $(BIN)/python -c "from climbkit.core import list_runs; r = list_runs('runs', 'climb', 'best.pt'); print(r[0] if r else '')" 2>/dev/null)
generate: setup
	@test -n "$(GEN_RUN)" || (echo "no trained climb run under runs/: run 'make train' first" && exit 1)
	$(BIN)/papermill nbs/generate.ipynb $(GEN_RUN)/generate.ipynb -p run $(GEN_RUN) --log-output $(ARGS)
	@echo "rendered: $(GEN_RUN)/generate.ipynb"

## test: climbkit/ must equal what nbdev_export writes, README's tables what the ledger (results/) holds; then nbdev_test and pytest
test: setup browser check-export check-ledger nbdev-test pytest

## docs: the documentation site from README, the guides (nbs/guides/) and every notebook, into _docs/ (open _docs/index.html); its links checked
docs: setup
	$(BIN)/climbkit-site _docs

## docs-serve: the built site at http://localhost:8000 (its search box needs a server)
docs-serve: docs
	$(BIN)/python -m http.server -d _docs 8000

## docs-check: build the site and open its pages in headless Chromium as a reader would (tests/test_docs.py; no skips)
docs-check: setup browser
	CLIMBKIT_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q tests/test_docs.py

## browser: headless Chromium and its driver for the site's tests: installed with apt-get where this runs as root and they are missing
browser:
	@command -v chromedriver >/dev/null && command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    && echo "browser: installed chromium and chromium-driver"; } || \
	  echo "browser: Chromium is not installed and cannot be here (not root): the site's browser test will say so"

export: setup
	$(BIN)/nbdev_export

check-export: setup
	@tmp=$$(mktemp -d) && cp settings.ini $$tmp/ && cp -r nbs $$tmp/nbs && \
	  (cd $$tmp && $(abspath $(BIN))/nbdev_export) && \
	  if diff -r -x __pycache__ climbkit $$tmp/climbkit; then echo "climbkit/ equals what nbdev_export writes"; rm -rf $$tmp; \
	  else echo "climbkit/ differs from what nbdev_export writes: edit the notebooks in nbs/, run 'make export', commit both."; rm -rf $$tmp; exit 1; fi

check-ledger: setup
	$(BIN)/climbkit-ledger check

nbdev-test: setup
	$(BIN)/nbdev_test --timing

## pytest: the tests on both cores (pytest-xdist; a file's tests stay together in one worker, its module fixtures shared)
pytest: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

## bench: climbkit against a plain PyTorch loop, each configuration against its floor, each training aid on and off, and how cost
## grows with the model (runs/bench-<date>/; ARGS='-p data ... -p steps 500')
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

## results: rewrite the ledger (results/*.json, each with its command, commit, date, machine and raw figures) and README's
## tables from it; one part at a time: make results-bench, results-grader, ... Run on a quiet machine: most are timings.
RESULTS := bench limit sharing samples grader routes stories kg images tiny profiles soak sweep generation
SHARED_DATA ?= ../shared/data
STAMP := $(shell date +%Y%m%d-%H%M%S)
# fp32, bf16 (AVX512-BF16) or amx: the kind of CPU the timings come from (each kind has its own ledger files); read when a recipe uses it, after setup
KIND = $(shell $(BIN)/python -c 'from climbkit.ledger import machine_kind; print(machine_kind())')
# $(call train_run,NAME,PARAMETERS): one papermill run of nbs/train.ipynb into runs/res-NAME-<stamp>/
train_run = mkdir -p runs/res-$(1)-$(STAMP) && $(BIN)/papermill nbs/train.ipynb runs/res-$(1)-$(STAMP)/train.ipynb \
  -p name res-$(1)-$(STAMP) -p out_dir runs --log-output $(2)
# $(call collect,RESULT,RUN NAMES,LABELS): nbs/results.ipynb reads the runs and writes results/RESULT.json (rendered beside it)
collect = $(BIN)/papermill nbs/results.ipynb results/$(1).ipynb -p result $(1) -p runs '$(foreach r,$(2),runs/res-$(r)-$(STAMP))' \
  -p labels '$(3)' --log-output && $(BIN)/climbkit-ledger sync

results: $(addprefix results-,$(RESULTS))

## results-bench: the fair benchmark, 3 interleaved repeats; the aids switched on and off at batch 16, 3 interleaved rounds (about 40 minutes on 2 cores without native bf16;
## the floor and scaling study are results-limit's, left out here so that one never overwrites the other's ledger file);
## results/bench-fp32.json, bench-bf16.json (AVX512-BF16) or bench-amx.json (AMX), by the kind of CPU
results-bench: setup
	@mkdir -p runs/res-bench-$(STAMP)
	$(BIN)/papermill nbs/bench.ipynb runs/res-bench-$(STAMP)/bench.ipynb -p name res-bench-$(STAMP) -p out_dir runs -p repeats 3 -p ablate 'mlp climb16' -p sharing_seconds 0 -p limit_configs '' -p scaling_widths '' \
	  -p ledger results -p ledger_command 'make results-bench' --log-output $(ARGS)
	$(BIN)/climbkit-ledger keep runs/res-bench-$(STAMP)/bench.ipynb results/bench-$(KIND).ipynb
	$(BIN)/climbkit-ledger sync

## results-sharing: the route generator in processes started together: alone, two runs at once, beside a plain PyTorch loop;
## climbkit's default threads, a thread per core (before) and passive waiting; 3 interleaved repeats (about 40 minutes). Writes
## results/sharing-fp32.json, sharing-bf16.json or sharing-amx.json, by the kind of CPU
results-sharing: setup
	@mkdir -p runs/res-sharing-$(STAMP)
	$(BIN)/papermill nbs/bench.ipynb runs/res-sharing-$(STAMP)/bench.ipynb -p name res-sharing-$(STAMP) -p out_dir runs \
	  -p configs '' -p ablate '' -p limit_configs '' -p scaling_widths '' -p ledger results -p ledger_command 'make results-sharing' --log-output $(ARGS)
	$(BIN)/climbkit-ledger sync

## results-limit: each configuration against its floor, its own matrix products alone (the route generator at batch 16 and 64, the 80M
## knowledge-graph model on UMLS, ResNet-50 at 224 px; 3 interleaved repeats), the measures that could close the gap on and off at
## batch 16 and 64 (3 interleaved rounds), and how cost grows with the route generator's width and batch (about 40 minutes on 2 cores without native bf16);
## results/limit-fp32.json, limit-bf16.json or limit-amx.json, by the kind of CPU
results-limit: setup
	@mkdir -p runs/res-limit-$(STAMP)
	$(BIN)/papermill nbs/bench.ipynb runs/res-limit-$(STAMP)/bench.ipynb -p name res-limit-$(STAMP) -p out_dir runs -p configs '' \
	  -p ablate 'climb16 climb64' -p ablations 'compile dropout pack bf16weights' -p freeze_steps 6 -p kg_data $(SHARED_DATA)/kg/umls -p sharing_seconds 0 \
	  -p ledger results -p ledger_command 'make results-limit' --log-output $(ARGS)
	$(BIN)/climbkit-ledger keep runs/res-limit-$(STAMP)/bench.ipynb results/limit-$(KIND).ipynb
	$(BIN)/climbkit-ledger sync

## results-grader: the grade predictor's ablation on the MoonBoard 2016 file: each variant with GRADE_SEEDS seeds (the default CNN, one-hot
## labels, a cumulative-link head, an MLP, attention over the holds), their ensembles, the majority class (about 45 minutes on one thread)
GRADE_SEEDS ?= 0 1 2
GRADE_VARIANTS = cnn: cnn-onehot:-p~label_sigma~0 cnn-coral:-p~loss~coral mlp:-p~arch~mlp~-p~hidden~128 holds:-p~arch~holds~-p~hidden~64~-p~dropout~0.3
GRADE_LABELS = CNN (the default)|CNN, one-hot labels (`-p label_sigma 0`)|CNN, cumulative-link head (`-p loss coral`)|MLP (`-p arch mlp -p hidden 128`)|attention over the holds (`-p arch holds -p hidden 64 -p dropout 0.3`)
grade_run = $(call train_run,grader-$(1)-s$(2),-p task climb_grade -p data $(SHARED_DATA)/moonboard2016.json -p seed $(2) -p threads 1 $(subst ~, ,$(3)))
results-grader: setup
	$(foreach v,$(GRADE_VARIANTS),$(foreach s,$(GRADE_SEEDS),$(call grade_run,$(word 1,$(subst :, ,$(v))),$(s),$(word 2,$(subst :, ,$(v)))) && )) true
	$(call collect,grader,$(foreach v,$(GRADE_VARIANTS),$(foreach s,$(GRADE_SEEDS),grader-$(word 1,$(subst :, ,$(v)))-s$(s))),$(shell echo '$(GRADE_LABELS)' | \
	  awk -F'|' -v n=$(words $(GRADE_SEEDS)) '{for(i=1;i<=NF;i++) for(j=1;j<=n;j++) printf "%s%s", (i>1||j>1)?"|":"", $$i}'))

## results-routes: route metrics of the generator, with a grade predictor trained first on the same data: the built-in data as
## `make train` trains it, the built-in data with the overnight recipe (nbs/configs/flagship.yaml, beside the others on the
## second core), and MoonBoard 2016 for ROUTES_MB_EPOCHS epochs; each with its grade control (guidance 0-3 from the top-p
## nucleus and plain sampling from the whole distribution, best of 4 and 16 by the grader, best of 4, 8 and 16 by the
## generator itself); one thread a run (about 90 minutes)
ROUTES_MB_EPOCHS ?= 10
ROUTE_SWEEPS := -p best_of_sweep '4 16' -p self_best_of_sweep '4 8 16'
results-routes: setup
	$(call train_run,routes-grader-builtin,-p task climb_grade -p threads 1)
	( $(call train_run,routes-flagship,-p config configs/flagship.yaml -p grader runs/res-routes-grader-builtin-$(STAMP) -p threads 1 $(ROUTE_SWEEPS)) \
	  > runs/res-routes-flagship-$(STAMP).log 2>&1 ) & \
	$(call train_run,routes-builtin,-p grader runs/res-routes-grader-builtin-$(STAMP) -p threads 1 $(ROUTE_SWEEPS)) && \
	$(call train_run,routes-grader-mb,-p task climb_grade -p data $(SHARED_DATA)/moonboard2016.json -p threads 1) && \
	$(call train_run,routes-mb,-p data $(SHARED_DATA)/moonboard2016.json -p epochs $(ROUTES_MB_EPOCHS) -p grader runs/res-routes-grader-mb-$(STAMP) -p threads 1 $(ROUTE_SWEEPS)) && \
	wait $$! || { echo "a run failed (the flagship recipe's log: runs/res-routes-flagship-$(STAMP).log)"; exit 1; }
	$(call collect,routes,routes-builtin routes-flagship routes-mb,built-in$(,) `make train`|built-in$(,) flagship recipe|MoonBoard 2016$(,) $(ROUTES_MB_EPOCHS) epochs)

## results-samples: README's picture: routes the generator writes after training as `make train` trains it, drawn on the board,
## into results/routes-samples.png and results/samples.json (about 20 minutes)
results-samples: setup
	$(call train_run,samples-grader,-p task climb_grade)
	$(call train_run,samples,-p grader runs/res-samples-grader-$(STAMP))
	$(call collect,samples,samples,built-in data as make train trains it)

## results-generation: the generation panel's Generate timed on a generator trained as `make train` trains it: 8 routes, best of 1, 4 and 8
## (the generator's own rerank, its scoring in fp32 and, where the CPU computes bf16 natively, bf16), 5 interleaved repeats (about 10 minutes);
## results/generation-fp32.json, generation-bf16.json or generation-amx.json, by the kind of CPU
results-generation: setup
	$(call train_run,generation,)
	$(BIN)/papermill nbs/results.ipynb results/generation-$(KIND).ipynb -p result generation -p runs 'runs/res-generation-$(STAMP)' \
	  -p labels 'built-in data as make train trains it' --log-output && $(BIN)/climbkit-ledger sync

## results-sweep: the flagship's sweep (`make sweep`'s settings), then the same trials again without pruning (same parameters, same order):
## the leaderboard and what pruning saved (about 20 minutes)
results-sweep: setup
	@mkdir -p runs/res-sweep-$(STAMP) runs/res-sweep-unpruned-$(STAMP)
	$(BIN)/papermill nbs/sweep.ipynb runs/res-sweep-$(STAMP)/sweep.ipynb -p name res-sweep-$(STAMP) -p out_dir runs -p spec $(SWEEP_SPEC) --log-output
	$(BIN)/papermill nbs/sweep.ipynb runs/res-sweep-unpruned-$(STAMP)/sweep.ipynb -p name res-sweep-unpruned-$(STAMP) -p out_dir runs \
	  -p spec $(SWEEP_SPEC) -p pruner none -p replay runs/res-sweep-$(STAMP) --log-output
	$(call collect,sweep,sweep sweep-unpruned,pruned (median)|the same trials$(,) unpruned)

## results-stories: the report's small run, its exact flags, and a larger run, one after the other on one thread (about 5 minutes)
results-stories: setup
	$(call train_run,stories-small,-p task stories -p epochs 5 -p hidden_dim 32 -p num_rules 4 -p threads 1)
	$(call train_run,stories-report,-p task stories -p epochs 5 -p hidden_dim 32 -p num_rules 4 -p num_stories 100 -p batch_size 8 -p threads 1)
	$(call train_run,stories-large,-p task stories -p num_stories 2000 -p epochs 15 -p hidden_dim 128 -p num_rules 12 -p threads 1)
	$(call collect,stories,stories-small stories-report stories-large,\
	  `-p epochs 5 -p hidden_dim 32 -p num_rules 4` (1$(,)000 stories)|the same with the report’s exact flags: `-p num_stories 100 -p batch_size 8`|\
	  `-p num_stories 2000 -p epochs 15 -p hidden_dim 128 -p num_rules 12`)

## results-kg: link prediction on UMLS and Nations, the two graphs side by side on one thread each (about 45 minutes on 2 cores with native bf16): the transformer's
## recipe (nbs/configs/kg-<graph>.yaml) and the tuned ComplEx and DistMult (kg-complex.yaml, kg-distmult.yaml), each with every seed of
## KG_SEEDS, then the recipe's ablation at KG_ABLATION_STEPS steps (seed 0): the recipe itself, then each change of KG_ABLATION alone.
## Each model is its own run (`-p baseline none`: the transformer's runs do not train ComplEx again in reference/)
KG_GRAPHS = umls nations
KG_SEEDS ?= 0 1 2
KG_ABLATION_STEPS ?= 1500
KG_ABLATION = recipe: context:-p~max_seq_len~7 absolute:-p~rel_attention_bias~false smoothing:-p~label_smoothing~0 \
  dropout:-p~dropout~0.1 head:-p~head~mask n3:-p~n3~0.005 decay:-p~weight_decay~0 depth:-p~n_layers~1 \
  width:-p~d_model~256~-p~dim_feedforward~512 ema:-p~ema~0 embscale:-p~emb_scale~1
kg_run = $(call train_run,kg-$(1)-$(2)-s$(3),-p config nbs/configs/$(4).yaml -p data $(SHARED_DATA)/kg/$(1) -p seed $(3) -p threads 1 -p baseline none $(5))
kg_lane = $(foreach s,$(KG_SEEDS),$(call kg_run,$(1),transformer,$(s),kg-$(1)) && $(call kg_run,$(1),complex,$(s),kg-complex) && \
  $(call kg_run,$(1),distmult,$(s),kg-distmult) && ) $(foreach v,$(KG_ABLATION),$(call kg_run,$(1),ab-$(word 1,$(subst :, ,$(v))),0,kg-$(1),\
  -p steps $(KG_ABLATION_STEPS) $(subst ~, ,$(word 2,$(subst :, ,$(v))))) && ) true
kg_names = $(foreach g,$(KG_GRAPHS),$(foreach s,$(KG_SEEDS),kg-$(g)-transformer-s$(s) kg-$(g)-complex-s$(s) kg-$(g)-distmult-s$(s)) \
  $(foreach v,$(KG_ABLATION),kg-$(g)-ab-$(word 1,$(subst :, ,$(v)))-s0))
kg_labels = $(foreach g,$(KG_GRAPHS),$(foreach s,$(KG_SEEDS),transformer|ComplEx|DistMult|)$(foreach v,$(KG_ABLATION),ablation: $(or $(subst ~, ,$(word 2,$(subst :, ,$(v)))),recipe)|))
results-kg: setup
	( $(call kg_lane,umls) ) & lane=$$!; ( $(call kg_lane,nations) ); done=$$?; wait $$lane && test $$done = 0
	$(call collect,kg,$(kg_names),$(kg_labels))

## results-images: ResNet-50 and ResNet-18 training speed by precision and memory layout (about 10 minutes without native bf16)
results-images: setup
	$(BIN)/papermill nbs/results.ipynb results/images.ipynb -p result images --log-output && $(BIN)/climbkit-ledger sync

## results-tiny: the image report's tiny run (ResNet-50 from scratch, 10 epochs) with two seeds (about 30 minutes on 2 cores without native bf16)
results-tiny: setup
	$(call train_run,tiny,-p config configs/tiny.yaml)
	$(call train_run,tiny-seed1,-p config configs/tiny.yaml -p seed 1)
	$(call collect,tiny,tiny tiny-seed1,`tiny.yaml`|`tiny.yaml -p seed 1` (other classes and initialisation))

## results-profiles: what a step costs, by climbkit.bench.profile: the flagship at batch 16 and the 80M knowledge-graph model (about 35 minutes on 2 cores without native bf16: each evaluation of the 80M model takes minutes)
results-profiles: setup
	$(BIN)/papermill nbs/results.ipynb results/profiles.ipynb -p result profiles -p shared_data $(SHARED_DATA) --log-output && \
	  $(BIN)/climbkit-ledger sync

## results-soak: the soak notebook for SOAK_STEPS optimizer steps (3,000: about 20 minutes here; `make soak` runs 20,000), into the ledger
SOAK_STEPS ?= 3000
results-soak: setup
	@mkdir -p runs/res-soak-$(STAMP)
	$(BIN)/papermill nbs/soak.ipynb runs/res-soak-$(STAMP)/soak.ipynb -p name res-soak-$(STAMP) -p out_dir runs -p steps $(SOAK_STEPS) \
	  -p ledger results -p ledger_command 'make results-soak' --log-output
	$(BIN)/climbkit-ledger keep runs/res-soak-$(STAMP)/soak.ipynb results/soak.ipynb
	$(BIN)/climbkit-ledger sync

## params: the last lines of train.ipynb's parameter cell, the names of every task's own parameters, from the registered tasks
params: setup
	$(BIN)/python -c "from climbkit.run import sync_parameter_cell; sync_parameter_cell('nbs/train.ipynb')"

## lab: JupyterLab on the project root (as root too, as in a container: jupyter refuses root without --allow-root)
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
