# Two commands on a fresh machine: `make repro` and `make test`; `make quick` for a first look.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro test test-fast quick install demo space reference-status

install: $(STAMP)

# The pinned requirements, then the package itself, editable (pyproject.toml); building it
# uses the venv's setuptools, so nothing is downloaded for the build.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

repro: $(STAMP)
	dvc repro

# The test files spread over the cores (pytest-xdist; a file's tests stay together, in order,
# on one worker: the e2e module builds one repo for all its tests). TEST_JOBS=1: one process.
TEST_JOBS ?= auto

test: $(STAMP)
	python -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

# While editing: the tests that need neither real dvc nor training subprocesses (pytest -m).
test-fast: $(STAMP)
	python -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow" tests

# Does dvc.lock (the committed reference) still match the code and params? Names, per stage,
# what changed since; exit 1 if anything did (scripts/reference_status.py).
reference-status: $(STAMP)
	python scripts/reference_status.py

# The whole pipeline, small, in minutes on a CPU: width 0.25, 25,000 training / 5,000 test
# images, 4 epochs, a fixed max_lr (its time and accuracy: docs/results.md, "make quick").
# params.yaml stays the one source: these are `dvc exp run -S` overrides, so the run is an
# experiment in `dvc exp show`.
#   make quick SEED=1 SOURCE=../shared/data/cifar10.npz
# SEED: recipe.seed; SOURCE: data.source (offline: a local copy); EXTRA: more `dvc exp run`
# arguments, applied last (e.g. EXTRA="-S train.epochs=20").
SEED ?= 0
SOURCE ?=
EXTRA ?=
QUICK := -S model.width_multiplier=0.25 -S data.train_subset=25000 -S data.test_subset=5000 \
	-S lr_find.num_iter=40 -S train.epochs=4 -S train.peak_epoch=1 -S recipe.batch_size=256 \
	-S train.max_lr=0.008 -S recipe.seed=$(SEED) $(if $(SOURCE),-S data.source=$(SOURCE))

quick: $(STAMP)
	dvc exp run $(QUICK) $(EXTRA)

# The demo app on http://127.0.0.1:7860 (resnet9/app.py); MODEL=... for another model file,
# APP_ARGS for more arguments (e.g. APP_ARGS="--port 7861 --test-data ../shared/data/cifar10.npz").
MODEL ?= data/model.pt
APP_ARGS ?=

demo: $(STAMP)
	python -m resnet9.app --model $(MODEL) $(APP_ARGS)

# A Hugging Face Space (sdk: gradio) in $(SPACE_DIR), ready to push: app/ (entry point, README
# with the Space's settings, requirements without the training stack, examples), the resnet9
# package and $(MODEL) as data/model.pt. Fails, naming the file, if $(MODEL) is not a usable model.
SPACE_DIR ?= build/space

space: $(STAMP)
	python -m resnet9.predict --info --model $(MODEL) > /dev/null
	@test ! -e $(SPACE_DIR) || test -f $(SPACE_DIR)/app.py || \
		{ echo "space: $(SPACE_DIR) exists and is not a Space folder; not replacing it" >&2; exit 1; }
	rm -rf $(SPACE_DIR) && mkdir -p $(SPACE_DIR)/data
	cp -r app/app.py app/requirements.txt app/README.md app/.gitattributes app/examples resnet9 \
		$(SPACE_DIR)/
	rm -rf $(SPACE_DIR)/resnet9/__pycache__
	cp $(MODEL) $(SPACE_DIR)/data/model.pt
	@echo "space: assembled $(SPACE_DIR) with $(MODEL); try it: cd $(SPACE_DIR) && python app.py"
