# cellscale: `make demo` runs the workflow on the bundled demo data; `make test` runs the tests.
# Both set themselves up (a .venv from pip) on a fresh machine: `make demo` with what the demo's workflow imports,
# `make test` (and `make venv`) with every extra. The full install covers the demo's, so either order installs once.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
# model: the Keras networks and their int8 copies (segment); workflow: Snakemake; spatial: the default output.formats'
# spatialdata stores. The other default formats (ome-tiff, ome-zarr), the tables, tracking, the report and the cost
# table need only the core dependencies
DEMO_EXTRAS := model,workflow,spatial
ALL_EXTRAS := model,workflow,test,slurm,gke
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore::UserWarning

.PHONY: demo test venv report demo-data models clean lint

venv: $(STAMP)

# $(1): the extras to install (with the core dependencies and cellscale itself, editable)
define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(1)]"
endef

$(STAMP): pyproject.toml
	$(call install,$(ALL_EXTRAS))
	touch $(DEMO_STAMP) $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(call install,$(DEMO_EXTRAS))
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/snakemake --profile profiles/local
	$(BIN)/snakemake --profile profiles/local --report results/report.html
	@echo "Results in results/; open results/report.html"

# lint-imports: the architecture contracts in pyproject.toml ([tool.importlinter]), in under a second.
# Two pytest workers, whole files each (--dist loadfile keeps a module's fixtures, e.g. the one SLURM run, in one
# worker): the SLURM and GKE tests mostly wait on their clusters, and the other worker runs the rest meanwhile. Files
# start in collection order, the longest first (tests/conftest.py).
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest -q -ra -n 2 --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint

# Regenerate the generated demo samples (seeded: identical every time).
demo-data: $(STAMP)
	$(BIN)/cellscale synth tissue -o data/demo/synthetic/tissue.ome.tif --size 512 --seed 1
	$(BIN)/cellscale synth timelapse -o data/demo/synthetic/timelapse.ome.tif --size 256 --frames 24 --seed 2

# Retrain the shipped models (needs ../shared/data; nuclear about 3.5 h in three runs, the two tissue models
# about 1.5 h; resumable: rerun to continue from train_runs/). Each writes model.keras, model.int8.tflite and its card.
models: $(STAMP)
	$(BIN)/cellscale train --data ../shared/data/dsb2018 --out models/nuclear --run-dir train_runs/nuclear --steps 9000
	$(BIN)/cellscale train --data ../shared/data/dsb2018 --out models/nuclear --run-dir train_runs/nuclear-ft --steps 3000 \
		--lr 3e-4 --seed 1 --init-from models/nuclear
	$(BIN)/cellscale train --data ../shared/data/dsb2018 --out models/nuclear --run-dir train_runs/nuclear-ft2 --steps 2500 \
		--lr 2e-4 --seed 2 --init-from models/nuclear
	$(BIN)/cellscale train --data synthetic-tissue --codex ../shared/data/codex/R001_X003_Y004 --out models/tissue \
		--run-dir train_runs/tissue-codex --steps 1200 --images 24
	$(BIN)/cellscale train --data synthetic-tissue --codex ../shared/data/codex/R001_X003_Y004 --out models/tissue \
		--run-dir train_runs/tissue-ft --steps 1500 --images 24 --lr 5e-4 --seed 1 --init-from models/tissue
	$(BIN)/cellscale train --data synthetic-tissue --codex ../shared/data/codex/R001_X003_Y004 --codex-first 2 \
		--out models/tissue-tight --run-dir train_runs/tissue-e2 --steps 1500 --images 24 --lr 5e-4 --seed 1 \
		--init-from models/tissue

clean:
	rm -rf results logs .snakemake
