# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BIN)/promtool $(BIN)/prometheus:
	bash scripts/install-promtool.sh $(BIN)

demo: $(STAMP)
	$(BIN)/otel-telemetry demo $(ARGS)

test: $(STAMP) $(BIN)/promtool $(BIN)/prometheus
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check otel_telemetry instrumentations tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/hot_path.py

docs: $(STAMP)
	$(BIN)/otel-telemetry catalog --format markdown > docs/metrics.md
	$(BIN)/otel-telemetry config-docs --write docs/configuration.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
