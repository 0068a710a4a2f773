# The two commands of the README. Each sets up on first use (a .venv with requirements.txt), then runs.
#   make demo    the main job on the embedded dataset: results/quickstart/ (a results table + figures)
#   make test    the tests (notebooks at the smoke preset included)
# PRESET=smoke|demo|paper picks the quickstart's preset (default demo).
PYTHON ?= python3
VENV ?= .venv
PRESET ?= demo

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt
	touch $@

.PHONY: demo test setup
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/python -m kpsemi quickstart --preset $(PRESET)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest
