# The two set-up commands of the README, `make demo` and `make test`, work on a fresh machine:
# each creates .venv and installs delegate (editable, with the dev extra) the first time, and
# reinstalls only when pyproject.toml or the lock file changes (the stamp file below).
#
# Every dependency is installed at the version pinned in requirements/dev.lock, so a release of
# one cannot turn a fresh clone red overnight; `make lock` regenerates the lock from
# pyproject.toml (whose ranges are what `pip install delegate` gives users).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.delegate-installed
LOCK := requirements/dev.lock
# The tool `make lock` resolves with, itself pinned so the lock's format does not drift.
UV_VERSION := 0.13.10
# Extra flags for `make lock`: --upgrade moves every pin to the newest release the ranges allow,
# --upgrade-package NAME one of them; without them pins stay unless pyproject.toml rules them out.
LOCK_FLAGS ?=
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x tests/test_cli.py"`.
PYTEST_ARGS ?=

# litellm fetches its cost map and Anthropic beta headers from the internet unless told to use
# the copies it ships; CI has no internet and runs must not depend on it.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS := True
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv lock test lint demo quickstart bench clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# -c: the lock constrains versions without adding anything pyproject.toml does not ask for; the
# check then fails if something was installed that the lock does not pin (run `make lock`).
$(STAMP): pyproject.toml $(LOCK) requirements/check_lock.py | $(PY)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev]"
	$(PY) requirements/check_lock.py $(LOCK)
	touch $@

# Resolves the dev extra for Python 3.11+ on every platform (--universal) from PyPI, preferring
# the versions already in the lock. `make lock LOCK_FLAGS=--upgrade` refreshes all of them.
lock: | $(PY)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--custom-compile-command "make lock" --output-file $(LOCK) --quiet $(LOCK_FLAGS)

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
