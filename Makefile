# cellscale: `make demo` runs the workflow on the bundled demo data; `make test` runs the tests.
# Both set themselves up (a .venv with everything from pip) on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore::UserWarning

.PHONY: demo test venv report demo-data models models-gpu models-tissue clean lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[model,workflow,test,slurm,gke]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local
	$(BIN)/snakemake --profile profiles/local --report results/report.html
	@echo "Results in results/; open results/report.html"

test: $(STAMP)
	$(BIN)/pytest -q -ra

lint: $(STAMP)
	$(BIN)/snakemake --lint

# Regenerate the generated demo samples (seeded: identical every time).
demo-data: $(STAMP)
	$(BIN)/cellscale synth tissue -o data/demo/synthetic/tissue.ome.tif --size 512 --seed 1
	$(BIN)/cellscale synth timelapse -o data/demo/synthetic/timelapse.ome.tif --size 256 --frames 24 --seed 2

# Retrain the shipped models (needs ../shared/data; resumable: rerun to continue from train_runs/). Each writes
# model.keras, model.int8.tflite and its card. The nuclear model needs a GPU with JAX (models-gpu: about 17 min
# on one H100); the tissue model trains here on the CPU (about 1 h).
models: models-gpu models-tissue

GPU_TRAIN = KERAS_BACKEND=jax $(BIN)/cellscale train --data ../shared/data/dsb2018 --steps 4500 --batch 32 --workers 7

models-gpu: $(STAMP)
	$(GPU_TRAIN) --out train_runs/nuclear-gpu1-out --run-dir train_runs/nuclear-gpu1 --lr 2e-3 --seed 4 --fit-only
	$(GPU_TRAIN) --out models/nuclear --run-dir train_runs/nuclear-gpu2 --lr 1e-3 --seed 5 \
		--init-from train_runs/nuclear-gpu1-out --fit-only
	# where TensorFlow is (the int8 copy needs it): resume the finished run, tune, score, write the card
	$(BIN)/cellscale train --data ../shared/data/dsb2018 --steps 4500 --batch 32 --workers 7 --out models/nuclear \
		--run-dir train_runs/nuclear-gpu2 --lr 1e-3 --seed 5 --init-from train_runs/nuclear-gpu1-out

models-tissue: $(STAMP)
	$(BIN)/cellscale train --data synthetic-tissue --codex ../shared/data/codex/R001_X003_Y004 --out models/tissue \
		--run-dir train_runs/tissue-codex --steps 1200 --images 24
	$(BIN)/cellscale train --data synthetic-tissue --codex ../shared/data/codex/R001_X003_Y004 --out models/tissue \
		--run-dir train_runs/tissue-ft --steps 1500 --images 24 --lr 5e-4 --seed 1 --init-from models/tissue

clean:
	rm -rf results logs benchmarks/out .snakemake
