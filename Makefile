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

# The main job end to end on the built-in synthetic data: search -> analyze -> refit -> predict.
DEMO := runs/quickstart
demo: $(STAMP)
	$(PY) launch.py search spaces/quickstart.yaml --overwrite
	$(PY) launch.py analyze $(DEMO)
	$(PY) launch.py refit $(DEMO)
	$(PY) launch.py make-synthetic --out runs/demo-images --n-per-class 1 1 1 --seed 2026
	$(PY) launch.py predict --model $(DEMO)/refit/model.safetensors \
		--image "runs/demo-images/malignant/malignant (1).png" --out $(DEMO)/predict/malignant_1.png
	@echo
	@echo "Leaderboard:    $(DEMO)/analysis/leaderboard.md"
	@echo "Report:         $(DEMO)/analysis/report.md (plots in $(DEMO)/analysis/plots/)"
	@echo "Best config:    $(DEMO)/analysis/best_config.yaml"
	@echo "Model bundle:   $(DEMO)/refit/model.safetensors (test report: $(DEMO)/refit/test_report.json)"
	@echo "Visualization:  $(DEMO)/predict/malignant_1.png"

test: $(STAMP)
	$(PY) -m pytest -q --timeout=1500 --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --timeout=600

# Style, then the import rules of docs/architecture.md (a test that reads the source, ~1 s).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider tests/test_import_rules.py

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean-cache:
	$(PY) -c "from trainables.data.cache import clear_cache; print(clear_cache())"
