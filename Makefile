# Set-up is part of every target: a missing .venv is created first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Train every method of conf/method/ on this dataset (USPS ships offline in ../shared/datasets).
DATASET ?= usps
SEED ?= 0
ARGS ?=
SHARED_DATA := $(wildcard ../shared/datasets/USPS/usps.bz2)
ifneq ($(SHARED_DATA),)
export KD_DATA_DIR ?= $(abspath ../shared/datasets)
endif
# Fetch missing datasets with torchvision unless the offline copy is there (present files are always used).
DOWNLOAD ?= $(if $(SHARED_DATA),false,true)

.PHONY: help setup train study report bench test test-fast lint tensorboard clean-venv

help:
	@echo "make train   # every method of conf/method/ (teacher, scratch, RKD, IKD) on DATASET=$(DATASET) seed $(SEED) (ARGS='trainer.max_epochs=1' to shorten)"
	@echo "make test    # the whole test suite"
	@echo "make lint    # ruff check and ruff format --check (settings: pyproject.toml [tool.ruff])"
	@echo "make study   # the paper's grid: 5 datasets x every method of conf/method/ x 3 seeds (needs all datasets)"
	@echo "make report SWEEP=outputs/study   # tables, figures and claims from a sweep"
	@echo "make bench   # training throughput vs a bare PyTorch loop"

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev,joblib,slurm]"
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(PY) -m kd_lightning.train -m dataset=$(DATASET) 'method=glob(*)' seed=$(SEED) dataset.download=$(DOWNLOAD) $(ARGS)

study: $(STAMP)
	$(PY) -m kd_lightning.train -m experiment=study dataset.download=$(DOWNLOAD) $(ARGS)

SWEEP ?= outputs/study
report: $(STAMP)
	$(PY) -m kd_lightning.report $(SWEEP)

bench: $(STAMP)
	$(PY) -m kd_lightning.bench --dataset $(DATASET) $(ARGS)

# Two pytest workers (pytest-xdist), each test file on one worker (module fixtures keep their order);
# every test process uses one torch thread (tests/conftest.py), so the two workers fill two cores.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs

clean-venv:
	rm -rf $(VENV)
