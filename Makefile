PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench lint clean

# torch is pinned and installed first: a CPU wheel of 2.13.0 is on local disk, while an unpinned
# torch pulled in by the package's dependencies would download a CUDA build of several GB.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,causal]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/measureflow demo

# One process per core (pytest-xdist), each with one torch thread: on small tensors two threads
# in one process mostly wait on each other, and the suite runs about 1.5x faster this way.
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n auto src tests

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_samplers.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_flows.py
	$(PY) benchmarks/bench_diffusion.py
	$(PY) benchmarks/bench_gan.py
	$(PY) benchmarks/bench_nets.py
	$(PY) benchmarks/bench_infinite_langevin.py
	$(PY) benchmarks/bench_inference.py --only sims,npe
	$(PY) benchmarks/bench_causal.py

lint: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
