# cloakflow: `make demo` sets everything up and runs the main flow; `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export GX_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION ?= false

PREFECT_PORT ?= 4200
MLFLOW_PORT  ?= 5000
DATASET ?= bank-marketing
ARGS    ?=

DEMO_REASON ?= demo run on the public UCI Bank Marketing table
.PHONY: setup demo federate test lint ui deploy benchmark docs docs-serve clean

setup: $(STAMP)

# Idempotent: rebuilds the environment only when the lock or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || { $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null; \
	    $(BIN)/python -m pip install --quiet --disable-pip-version-check uv; }
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# The default policy blocks the tutorial-settings release (see README, "Privacy evaluation");
# the demo publishes it anyway on the public table and records why in the manifest.
demo: setup
	$(BIN)/cloakflow run $(DATASET) --accept-risk "$(DEMO_REASON)" $(ARGS)

# Federated training on the bank table split into 3 holders, at random and by a column (skewed)
federate: setup
	$(BIN)/cloakflow federate $(DATASET) --clients 3 --partition random --rounds 3 \
	    --accept-risk "$(DEMO_REASON)" $(ARGS)
	$(BIN)/cloakflow federate $(DATASET) --clients 3 --partition by=euribor3m --rounds 3 \
	    --accept-risk "$(DEMO_REASON)" $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check flows tasks models tests benchmarks

# Prefect server (UI at http://127.0.0.1:$(PREFECT_PORT)) and MLflow UI (http://127.0.0.1:$(MLFLOW_PORT)),
# both on loopback only. Ctrl-C stops both. The UI's API address follows PREFECT_PORT (the
# server's own default would send the browser to :4200).
ui: setup
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "cloakflow run records its runs here by itself$(if $(filter-out 4200,$(PREFECT_PORT)), when started with PREFECT_SERVER_API_PORT=$(PREFECT_PORT),)"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
	    --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} & \
	PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT=$(PREFECT_PORT) \
	PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	    $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# Work pools and deployments from prefect.yaml, against the server in PREFECT_API_URL.
deploy: setup
	@if [ -z "$$PREFECT_API_URL" ]; then echo "make deploy registers the deployments on a running Prefect server: start one (make ui), then PREFECT_API_URL=http://127.0.0.1:4200/api make deploy" >&2; exit 2; fi
	$(BIN)/prefect work-pool create cpu --type process --overwrite
	$(BIN)/prefect work-pool create gpu --type process --overwrite
	CLOAKFLOW_HOME=$${CLOAKFLOW_HOME:-$(CURDIR)} $(BIN)/prefect --no-prompt deploy --all

# The documentation site (docs/, MkDocs Material): built strictly (a broken link or a missing
# page fails) into site/; docs-serve serves it on 127.0.0.1:8000 and rebuilds on edits.
docs: setup
	$(BIN)/mkdocs build --strict --quiet

docs-serve: setup
	$(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

benchmark: setup
	$(BIN)/python -m benchmarks.bench_tutorial $(ARGS)

clean:
	rm -rf $(VENV) mlflow.db mlartifacts releases .pytest_cache site
