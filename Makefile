# Two commands on a new machine: `make run` (the whole job on the sample data) and `make test`.
# Both set up .venv first (scripts/setup.sh is a no-op when nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test test-fast lint baseline data schema lock airflow-up airflow-down bench bench-dag-run clean

setup:
	@bash scripts/setup.sh

run: setup  ## Pipeline end to end (LocalDagRunner) on the sample data, then the run report.
	$(PY) -m cartola.cli run

test: setup  ## Whole test suite, end-to-end tests included.
	$(PY) -m pytest

test-fast: setup  ## Unit tests only.
	$(PY) -m pytest -m "not e2e"

lint: setup
	$(PY) -m pylint --rcfile=.pylintrc --fail-under=9.5 src tests bench

baseline: setup  ## The data scientist's baseline (pandas/statsmodels/scikit-learn).
	$(PY) src/refactored_code.py

data: setup  ## Regenerate the synthetic sample data.
	$(PY) -m cartola.data.sample_data

schema: setup  ## Re-infer and curate schema/schema.pbtxt from data/ (review the diff!).
	$(PY) -m cartola.data.schema

lock:  ## Re-resolve requirements.txt from requirements.in.
	uv pip compile requirements.in --override overrides.txt --python-version 3.10 --python-platform x86_64-manylinux_2_36 -o requirements.txt

PROFILE ?=
airflow-up: setup  ## Local Airflow 3 (127.0.0.1:8080) with the DAG linked in; PROFILE=sqlite|postgres|celery.
	$(PY) -m cartola.orchestration.airflow_local start $(if $(PROFILE),--profile $(PROFILE))

airflow-down:
	$(PY) -m cartola.orchestration.airflow_local stop

bench: setup  ## Parse cost of the DAG file, server latency, batch scoring (needs a pushed model: make run).
	$(PY) bench/dag_parse.py
	$(PY) bench/serve.py
	$(PY) bench/score.py

bench-dag-run: setup  ## Trigger-to-pushed-model under the real scheduler, both DAGs (~20 min).
	$(PY) bench/dag_run.py

clean:  ## Remove pipeline outputs, metadata, Airflow home and pushed models (keeps .venv).
	rm -rf tfx_output airflow reports serving_model/*/
