# lossd: `make serve` and `make test` work on a fresh machine with only Python 3.11 and pip.
# Each target installs (editable, into .venv) only the extras it needs, always at the versions in
# constraints.txt. One stamp per set of extras: `make serve` then `make test` adds the test tools
# and keeps what is installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALL := $(PY) -m pip install --quiet -c constraints.txt
DEPS := pyproject.toml constraints.txt
SERVER := $(VENV)/.server
TEST := $(VENV)/.test
TORCH := $(VENV)/.torch
BENCH := $(VENV)/.bench

.PHONY: install serve test parity golden proto bench bench-smoke bench-core soak fuzz container-test scale-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(SERVER): $(DEPS) | $(PY)
	$(INSTALL) -e '.[server]'
	touch $@

# each larger set holds the smaller ones, so its stamp stands for them too
$(TEST): $(DEPS) | $(PY)
	$(INSTALL) -e '.[server,test]'
	touch $@ $(SERVER)

$(TORCH): $(DEPS) | $(PY)
	$(INSTALL) -e '.[server,test,parity,torch]'
	touch $@ $(TEST) $(SERVER)

$(BENCH): $(DEPS) | $(PY)
	$(INSTALL) -e '.[server,test,bench]'
	touch $@ $(TEST) $(SERVER)

install: $(TEST)

serve: $(SERVER)  ## REST on :8000, gRPC on :50051
	$(VENV)/bin/lossd serve

test: $(TEST)  ## the whole suite (torch-only tests are skipped unless torch is installed)
	$(PY) -m pytest -q

parity: $(TORCH)  ## live parity with torch 2.13 (CPU wheel from this machine's disk)
	$(PY) -m pytest -q -m torch tests

golden: $(TORCH)  ## regenerate tests/golden/*.json from torch
	$(PY) -m tests.golden.generate

proto: $(TEST)  ## regenerate service/lossd/_proto from protos/ (grpcio-tools, a test tool)
	$(PY) protos/generate.py

# the peers (MLServer, KServe, PyTriton) install on first use into .venv/peers/<name>, pinned by
# bench/peers/constraints-<name>.txt; one that cannot be installed or started is skipped
bench: $(BENCH)  ## lossd vs the transport floors and its V2 peers, about 25 minutes (docs/benchmarks.md, docs/img/)
	$(PY) -m bench.serve --full
	$(PY) -m bench.plots

bench-smoke: $(BENCH)  ## start lossd and each peer once; one V2 REST and gRPC call of each loss must agree
	$(PY) -m bench.serve --smoke

soak: $(SERVER)  ## about 5 minutes of steady load; fails if RSS grows 5% after warm-up
	$(PY) -m bench.soak --seconds 300

# a new seed each run (printed first and last); LOSSD_FUZZ_SEED=<n> replays that run's examples
fuzz: $(TORCH)  ## long fuzzing: schemathesis (>= 1,000 cases), gRPC garbage, codec and loss properties, headers and V2 parameters, degenerate shapes
	@seed=$${LOSSD_FUZZ_SEED:-$$($(PY) -c 'import secrets; print(secrets.randbelow(2**32))')}; \
	echo "make fuzz: seed $$seed (replay: make fuzz LOSSD_FUZZ_SEED=$$seed)"; \
	LOSSD_FUZZ_SEED=$$seed LOSSD_FUZZ_EXAMPLES=200 LOSSD_FUZZ_MIN_CASES=1000 \
	$(PY) -m pytest -q -s --hypothesis-seed=$$seed \
		tests/api/rest/test_fuzz_rest.py tests/api/rpc/test_fuzz_grpc.py \
		tests/test_codec_properties.py tests/losses/test_loss_properties.py \
		tests/api/test_numbers.py tests/api/test_bounds.py tests/api/rest/test_diagnosis.py \
		tests/losses/test_degenerate.py \
	|| { echo "make fuzz failed with seed $$seed: replay with make fuzz LOSSD_FUZZ_SEED=$$seed"; \
	     exit 1; }; \
	echo "make fuzz: seed $$seed passed"

bench-core: $(TORCH)
	$(PY) -m bench.core

container-test: $(SERVER)  ## build the image with podman, run it, compute, SIGTERM (installs podman)
	$(PY) deploy/container_test.py

scale-test: $(TEST)  ## 3 replicas in network namespaces behind HAProxy, sharing Redis, under faults (root; installs haproxy, redis-server)
	@command -v haproxy >/dev/null && command -v redis-server >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		haproxy redis-server >/dev/null; }
	$(PY) -m pytest -q -s -m scale tests/e2e/test_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
