# From a fresh clone (only python3 >= 3.10 and make needed):
#   make gate   the ToMe gate on the embedded pipelines; writes report/
#   make test   the test suite without the gate and the benchmarks (under 5 minutes)
#   make bench  the benchmarks: tests marked bench (or slow) that measure speed for real
# Each sets up .venv first: torch (a CPU build where the index has one) then the project with
# its constraints. Set-up is skipped while pyproject.toml and constraints.txt are unchanged.
# Others: make lint, make train-faces, make gpu-wheels (here), make gpu-check (on a CUDA machine).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# The default PyPI index works where it serves a CPU build (as here); elsewhere, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tome-installed

.PHONY: gate test bench lint train-faces gpu-wheels gpu-check clean

gate: $(STAMP)
	$(PY) -m pytest tests/test_gate.py --tome-ratios=0.3,0.5 --tome-report=report

# `make gate` runs tests/test_gate.py (marked gate), so `make test` leaves it out: CI gates
# each ratio once.
test: $(STAMP)
	$(PY) -m pytest -m "not bench and not gate" --durations=10

bench: $(STAMP)
	$(PY) -m pytest -m bench

lint: $(STAMP)
	$(PY) -m ruff check pytest_tome tests conftest.py
	$(PY) -m ruff format --check pytest_tome tests conftest.py
	$(VENV)/bin/zizmor --offline .github/workflows
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# Retrain faces-ddpm and faces-ldm (seeded, one CPU thread each, about 30 minutes on 2 cores):
# rewrites pytest_tome/models/faces/weights/ and docs/faces/loss-<model>.png and samples.png.
train-faces: $(STAMP)
	$(PY) scripts/train_faces.py

# Reinstalled when pyproject.toml or constraints.txt change (the stamp is older than they are).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,lint]" -c constraints.txt
	touch $(STAMP)

# Wheels for the GPU machine, which reaches no package index (scripts/gpu_check.sh).
gpu-wheels: $(STAMP)
	$(PY) -m pip download --quiet --no-deps -d .gpu-wheels -r scripts/gpu-wheels.txt
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w .gpu-wheels .

gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) report report-gpu .gpu-wheels
