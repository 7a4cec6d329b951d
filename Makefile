# Two commands for a newcomer: `make demo` and `make test`. Both create .venv from requirements.txt
# when it is missing or older than requirements.txt.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench venv clean-cache

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) launch.py demo

test: $(STAMP)
	$(PY) -m pytest -q --timeout=1500

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --timeout=600

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean-cache:
	$(PY) -c "from trainables.data.cache import clear_cache; print(clear_cache())"
