# lossd: `make serve` and `make test` work on a fresh machine with only Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install serve test parity golden proto bench bench-core soak fuzz container-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)  ## REST on :8000, gRPC on :50051
	$(VENV)/bin/lossd serve

test: $(STAMP)  ## the whole suite (torch-only tests are skipped unless torch is installed)
	$(PY) -m pytest -q

$(VENV)/.torch: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,parity]'
	touch $@

parity: $(VENV)/.torch  ## live parity with torch 2.13 (CPU wheel from this machine's disk)
	$(PY) -m pytest -q -m torch tests/core

golden: $(VENV)/.torch  ## regenerate tests/golden/*.json from torch
	$(PY) -m tests.golden.generate

proto: $(STAMP)  ## regenerate service/lossd/_proto from protos/
	$(PY) protos/generate.py

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench  ## lossd vs the bare transport floor (docs/benchmarks.md, docs/img/)
	$(PY) -m bench.serve --full
	$(PY) -m bench.plots

soak: $(STAMP)  ## about 5 minutes of steady load; fails if RSS grows 5% after warm-up
	$(PY) -m bench.soak --seconds 300

fuzz: $(VENV)/.torch  ## long fuzzing: schemathesis (>= 1,000 cases), gRPC garbage, codec and loss properties
	LOSSD_FUZZ_EXAMPLES=200 LOSSD_FUZZ_MIN_CASES=1000 $(PY) -m pytest -q -s \
		tests/service/test_fuzz_rest.py tests/service/test_fuzz_grpc.py \
		tests/service/test_codec_properties.py tests/core/test_loss_properties.py

bench-core: $(VENV)/.torch
	$(PY) -m bench.core

container-test: $(STAMP)  ## build the image with podman, run it, compute, SIGTERM (installs podman)
	$(PY) deploy/container_test.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
