# The two set-up commands of the README, `make demo` and `make test`, work on a fresh machine:
# each creates .venv and installs delegate (editable, with the dev extra) the first time, and
# reinstalls only when pyproject.toml changes (the stamp file below).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.delegate-installed
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x tests/test_cli.py"`.
PYTEST_ARGS ?=

# litellm fetches its cost map and Anthropic beta headers from the internet unless told to use
# the copies it ships; CI has no internet and runs must not depend on it.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS := True
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test lint demo quickstart bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict delegate

# pytest exits 5 when it collected no tests; make treats that like any failure (and says why).
test: lint
	@echo "$(strip $(VENV)/bin/pytest -q $(PYTEST_ARGS))"
	@$(VENV)/bin/pytest -q $(PYTEST_ARGS) || { status=$$?; \
		if [ $$status -eq 5 ]; then echo "pytest ran no tests: failing" >&2; fi; \
		exit $$status; }

# The main job: a shipped workflow, run end to end with simulated models (real prices, no key,
# nothing sent), then the library quickstart with fake models.
demo: $(STAMP)
	$(VENV)/bin/delegate run configs/market-brief.yaml -i market="home batteries" --simulate
	$(PY) examples/quickstart.py

bench: $(STAMP)
	$(PY) benchmarks/scheduler.py
	$(PY) benchmarks/ledger.py
	$(PY) benchmarks/budget_runs.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
