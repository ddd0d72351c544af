VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test unit bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[dev]'
	touch $(STAMP)

## Run the service on the embedded PostgreSQL and broker (Ctrl-C stops it).
dev: $(STAMP)
	$(VENV)/bin/schedule-consumer dev

## Run the whole test suite against the embedded services.
test: $(STAMP)
	$(PY) -m pytest

## Measure the service against the database's own ceiling (7 to 16 minutes on 2 cores).
bench: $(STAMP)
	$(VENV)/bin/schedule-consumer bench

unit: $(STAMP)
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) .dev
