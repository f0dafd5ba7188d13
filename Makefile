# Every target creates and reuses a local virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch: on machines that keep it on local disk this pin installs it in seconds
# instead of pulling a multi-GB CUDA build. Anything torch>=2.4 works (see pyproject.toml).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.polyformer-installed

.PHONY: venv demo test test-all bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" || echo "note: $(TORCH_SPEC) not available here; pip will pick a torch>=2.4"
	@$(PY) -m pip install -q -e ".[dev,bench]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m polyformer.demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) benchmarks/shakespeare_char.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/vit_throughput.py
	$(PY) benchmarks/jamba_speed.py
	$(PY) benchmarks/hyena_scaling.py
	$(PY) benchmarks/mnist.py
	$(PY) benchmarks/selective_copy.py
	$(PY) benchmarks/hyena_tasks.py
	$(PY) benchmarks/multi30k.py

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache runs
