# ptychopinn developer commands. `make demo` and `make test` are the two entry points.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench bench-quality bench-realistic bench-positions lint parity clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[tensorflow,ptychodus,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m ptycho.demo --out outputs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	$(PY) benchmarks/run.py

# Reconstruction quality per unit of compute on natural-image scans (solver, network, solver
# targets; calibration rows), ~30 min on 2 CPU cores: benchmarks/results/quality-<stamp>.*
bench-quality: $(STAMP)
	$(PY) benchmarks/quality.py

# Realistic detector data (issue 15 acceptance): clean vs realistic CXI, masks on/off, 1 vs 2
# probe modes, solver and network: benchmarks/results/realistic-<stamp>.*
bench-realistic: $(STAMP)
	$(PY) benchmarks/realistic.py

# Scan-position refinement (issue 14): per-position steps alone vs with the joint affine step,
# 3 error draws, a 1 % scale error and exact positions, ~8 min on 1 CPU thread:
# benchmarks/results/positions-<stamp>.*
bench-positions: $(STAMP)
	$(PY) benchmarks/positions.py

# Full backend parity run (~4 min on 2 CPU cores): simulate a scan, then train -> save -> load ->
# infer with TensorFlow and PyTorch and write outputs/parity/reports/<UTC timestamp>/ (see docs/parity.md).
PARITY_SCAN := outputs/parity/scan.npz
parity: $(STAMP)
	$(PY) -m ptycho.cli.main simulate --out $(PARITY_SCAN) --object-size 224 --step 7 --N 64 --nphotons 1e6 --seed 7
	$(PY) -m ptycho.cli.main parity --data $(PARITY_SCAN) --out outputs/parity/reports \
	    --nepochs 10 --batch-size 8 --n-filters-scale 1 --threads 1 --checks full

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) outputs build *.egg-info src/*.egg-info
