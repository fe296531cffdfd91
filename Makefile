# Two commands set up everything on a fresh machine with Python 3.11 and make:
#   make serve   start the prediction service on the committed models
#   make test    run the test suite (plus lint and type checks with `make check`)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: install tools serve train test lint typecheck check clean requirements bench bench-quick \
	bench-score bench-spark bench-profile bench-csv proto

# `make serve` installs only what serving needs (the `serve` extra: no scikit-learn, pandas,
# matplotlib or test tools); `make test` and the other targets add training and development.
SERVE_STAMP := $(VENV)/.serve-installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip $(PIP_FLAGS) install --upgrade pip

$(SERVE_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip $(PIP_FLAGS) install -c constraints.txt -e '.[serve]'
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip $(PIP_FLAGS) install -c constraints.txt -e '.[train,serve,spark,dev]'
	touch $(STAMP) $(SERVE_STAMP)

install: $(STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/python -m service

train: $(STAMP)
	$(BIN)/python -m training train all

# System tools some tests use: a compose implementation and nginx (deployment tests),
# chromium (the web page's browser test), wrk (the benchmark's smoke test) and Java (Spark's
# batch-scoring tests); Debian packages.
SYSTEM_TOOLS := docker-compose nginx chromium wrk java
SYSTEM_PACKAGES := docker-compose nginx-light chromium wrk openjdk-17-jre-headless
tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "note: missing$$missing: apt-get install $(SYSTEM_PACKAGES) to run every test"; \
	  fi; \
	fi

test: $(STAMP) tools
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The serving benchmark against MLServer and the raw onnxruntime limit (about 15 minutes).
bench: $(STAMP) tools
	bash bench/run.sh

bench-quick: $(STAMP) tools
	bash bench/run.sh --quick

# Where one worker's time goes under the cases whose targets are not met (py-spy, about a minute).
bench-profile: $(STAMP) tools
	$(BIN)/python -m bench.profile

# The batch-scoring command on 1,000,000 generated churn rows, five timed runs (about a minute).
bench-score: $(STAMP)
	$(BIN)/python -m bench.score

# The same command locally and on Spark local[2], 1,000,000 and 5,000,000 rows (about 15 minutes).
bench-spark: $(STAMP) tools
	$(BIN)/python -m bench.spark

# pyarrow against the project's CSV code: batch scoring and API bodies (issue 17, about a minute).
bench-csv: $(STAMP)
	$(BIN)/python -m bench.csv_readers

# The Open Inference Protocol's gRPC messages and stubs (service/protocol/), from its .proto;
# the result is committed (tests/service/test_grpc_protocol.py checks it is up to date).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
	  service/protocol/grpc_predict_v2.proto

# Re-pin the images' requirements from constraints.txt, each image's extras alone in a throwaway
# venv: name:extras (the spark image scores with the serving stack plus pyspark).
IMAGE_EXTRAS := serve:serve train:train spark:serve,spark
requirements:
	@for pair in $(IMAGE_EXTRAS); do name=$${pair%%:*}; extras=$${pair#*:}; \
	  rm -rf /tmp/req-$$name && $(PYTHON) -m venv /tmp/req-$$name && \
	  /tmp/req-$$name/bin/pip $(PIP_FLAGS) install -c constraints.txt ".[$$extras]" && \
	  { echo "# Pinned $$extras dependencies for the $$name image (make requirements regenerates this file)."; \
	    /tmp/req-$$name/bin/pip freeze --exclude draftpick-serving; } > requirements/$$name.txt; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
