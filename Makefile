# Both targets build .venv from a bare python3 when it is missing and reuse it when present.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint test-all demo bench clean mutants domains-data domains-study

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,slurm,data,ray]'
	@touch $(STAMP)

# Lint first: a style or undefined-name error fails fast, before minutes of tests. The fast suite runs in two
# workers, a test file each at a time (--dist loadfile, so a module's shared fixture trains once): much of a
# test's time is Python, tracing and compiling on one thread, so two workers fill both cores.
test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check scaling tests benchmarks

# Everything CI runs: fast suite plus the slow and browser tests.
test-all: lint
	$(PY) -m pytest -q -m 'not gpu and not perf'

demo: $(STAMP)
	$(VENV)/bin/scaling demo

bench: $(STAMP)
	$(VENV)/bin/scaling bench

# The three domains of sweeps/domains.yaml (scaling/domains.py): a BPE tokenizer trained on all three
# (corpora/domains/all), then each domain tokenized with it, so a mixture of them has one tokenizer.
DOMAINS := corpora/domains
domains-data: $(STAMP)
	@mkdir -p $(DOMAINS)
	@test -d $(DOMAINS)/all || $(VENV)/bin/scaling data prepare domain:python+prose+c --out $(DOMAINS)/all \
		--tokenizer bpe:1024 --val-fraction 0.05 --quiet
	@for d in python prose c; do test -d $(DOMAINS)/$$d || $(VENV)/bin/scaling data prepare domain:$$d \
		--out $(DOMAINS)/$$d --tokenizer $(DOMAINS)/all/tokenizer.json --val-fraction 0.05 --quiet || exit 1; done

# The domains study (README "Domains and downstream"): the corpora, the mixture sweep at two scales
# (sweeps/domains.yaml) by two agents, the built-in task scored on every run, and the report in
# reports/domains/ (analysis/domains.yaml). Its own run home, so the demo's is untouched; a rerun reuses
# the finished runs.
DOMAINS_HOME := runs-domains
domains-study: domains-data
	@id=$$(SCALING_HOME=$(DOMAINS_HOME) $(VENV)/bin/scaling sweep create sweeps/domains.yaml | tail -1) && \
	SCALING_HOME=$(DOMAINS_HOME) $(VENV)/bin/scaling sweep agents $$id --agents 2 --wandb off && \
	SCALING_HOME=$(DOMAINS_HOME) $(VENV)/bin/scaling eval --sweep $$id --task builtin:nextline && \
	SCALING_HOME=$(DOMAINS_HOME) $(VENV)/bin/scaling report analysis/domains.yaml --sweep $$id \
		--out reports/domains --wandb off

# Mutation testing of the numeric core against its fast tests ([tool.mutmut]; results in tests/mutants.md):
# FLOP/parameter accounting and the recipe, law forms and compute-optimal allocation, batching and corpora;
# the parametric fit, the sweep planner, the trainer's hooks and mesh, and the run home's queue, index and fence.
MUTANTS := 'scaling.family.x*__post_init__*' 'scaling.family.x*flops_per_token*' 'scaling.family.x*width*' \
	'scaling.family.x_shape_for_params*' 'scaling.family.x_default_*' 'scaling.family.x__round_up*' \
	'scaling.data.x_batch*' 'scaling.data.x_windows_per_epoch*' 'scaling.data.x_eval_batches*' \
	'scaling.data.x__byte_corpus*' 'scaling.data.x__is_val*' 'scaling.data.x__token_file*' \
	'scaling.laws.forms.x__chinchilla*' 'scaling.laws.forms.x_chinchilla_allocation*' \
	'scaling.laws.forms.x_allocation_exponents*' 'scaling.laws.forms.x_hoffmann_grid*' \
	'scaling.laws.forms.x_features_for*' 'scaling.laws.forms.x*predict*' 'scaling.laws.forms.x__kaplan_1d_log*' \
	'scaling.laws.forms.x__kaplan_joint_log*' 'scaling.laws.forms.x__compute_log*' \
	'scaling.laws.allocation.x_optimal_allocation*' 'scaling.laws.allocation.x__features*' \
	'scaling.laws.allocation.x__predict_each*' \
	'scaling.laws.parametric.x*' 'scaling.sweep.plan.x*' 'scaling.train.hooks.x*' 'scaling.train.mesh.x*' \
	'scaling.runs.queue.x*' 'scaling.runs.index.x*' 'scaling.runs.fence.x*'

mutants: $(STAMP)
	$(PY) -m pip install -q -e '.[test,slurm,data,ray,mutants]'
	$(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results

clean:
	rm -rf runs reports .pytest_cache
