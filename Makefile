# The two commands of the README, plus lint and bench. Every target bootstraps .venv on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test chaos lint bench docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/surge run double11 --scale 0.25 --duration 80

test: $(STAMP)
	$(PY) -m pytest -m "not chaos" -n 2 --dist loadfile --durations 15

chaos: $(STAMP)
	$(PY) -m pytest -m chaos

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	$(PY) scripts/gen_reference.py

bench: $(STAMP)
	$(PY) scripts/bench_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
