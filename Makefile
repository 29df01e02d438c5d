# Everything installs into a local virtual environment (.venv). The CPU torch wheel is installed
# first and pinned, so nothing later pulls CUDA packages; set TORCH_SPEC to bring another build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install browser-deps cluster-deps cluster serve test lint typecheck check bench-cpu proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	# spandrel (real SR networks) without its torchvision requirement: no CPU torchvision wheel
	# exists for this torch, and resolving one would pull CUDA torch. Tests stand in for it.
	$(BIN)/pip install --quiet --no-deps "spandrel==0.4.2" "einops>=0.8"
	touch $(STAMP)

install: $(STAMP)

# Chromium + the pinned npm packages of the browser tests (apt needs root; skipped otherwise).
BROWSER_STAMP := tests/browser/node_modules/.installed
$(BROWSER_STAMP): tests/browser/package-lock.json
	./scripts/install-browser-deps.sh
	touch $(BROWSER_STAMP)

browser-deps: $(BROWSER_STAMP)

# PostgreSQL for the cluster tests (apt needs root; the cluster tests skip without it).
CLUSTER_STAMP := $(VENV)/.cluster-deps
$(CLUSTER_STAMP): scripts/install-cluster-deps.sh $(STAMP)
	./scripts/install-cluster-deps.sh
	touch $(CLUSTER_STAMP)

cluster-deps: $(CLUSTER_STAMP)

# A whole cluster on this machine: PostgreSQL, SeaweedFS (S3), 2 workers and a gateway.
cluster: $(CLUSTER_STAMP)
	$(BIN)/python scripts/local_cluster.py $(ARGS)

serve: $(STAMP)
	$(BIN)/helios serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

# Two pytest-xdist workers (most tests wait on servers, sockets and subprocesses; a module, and
# the cluster and browser folders, each stay on one worker: tests/conftest.py). WORKERS=0: serial.
# --no-loadscope-reorder: the groups start in collection order (conftest puts the long ones
# first) rather than largest-first, which would leave the minutes-long single-test groups last.
# One torch thread per process: two workers, each with its test's servers and engine processes,
# on 2 cores would otherwise oversubscribe them (OpenMP threads spinning against each other).
WORKERS ?= 2
test: $(STAMP) $(BROWSER_STAMP) $(CLUSTER_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25 $(ARGS)

# Reactor's wire messages: regenerate the committed gencode after editing the .proto.
PROTO_DIR := src/helios_serve/realtime/reactor/proto
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I src -I "$$($(BIN)/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
		--python_out=src --pyi_out=src $(PROTO_DIR)/reactor_wire.proto

bench-cpu: $(STAMP)
	$(BIN)/helios bench --model tiny --chunks 2,8,32 --out benchmarks/results/cpu-tiny

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
