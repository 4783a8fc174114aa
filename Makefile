# jaxvis developer entry points (each works on a fresh Debian machine with Python 3.11):
#
#   make lab         .venv with .[demo], then JupyterLab on notebooks/01_tour.ipynb
#   make test        .venv with .[demo,test] (+ Debian's chromium when root), every test
#   make test-quick  the same without the slow tests (the Binder environment build)
#   make docs        .venv with .[docs], executes the notebooks, builds site/ (mkdocs --strict)
#   make bench       key press -> activation grid latency in JupyterLab (benchmarks/latency.py)
#   make lint        ruff check + ruff format --check
#   make clean       remove .venv and test artifacts
#
# Installs happen once per pyproject.toml: the stamp file's name carries its hash.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
KEY := $(shell sha256sum pyproject.toml | cut -c1-12)
DEMO_STAMP := $(VENV)/.jaxvis-demo-$(KEY)
TEST_STAMP := $(VENV)/.jaxvis-test-$(KEY)
DOCS_STAMP := $(VENV)/.jaxvis-docs-$(KEY)
CHROMIUM := /usr/bin/chromium
NOTEBOOK ?= notebooks/01_tour.ipynb
PYTEST_ARGS ?=
# Test processes: pytest-xdist workers, one test file each at a time (XLA:CPU was seen to crash
# inside a compile after most of the suite ran in one process; two workers also use both cores).
TEST_JOBS ?= 2
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-quick docs bench lint format venv install-demo install-test install-docs chromium clean

lab: $(DEMO_STAMP)
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_ARGS) $(NOTEBOOK)

test: $(TEST_STAMP) chromium
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

test-quick: $(TEST_STAMP) chromium
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# The notebooks run once per change of their source or jaxvis's (scripts/execute_notebooks.py
# keeps them in docs/notebooks/); the site goes to site/. Warnings (broken links) fail it.
docs: $(DOCS_STAMP)
	$(PY) scripts/execute_notebooks.py
	$(PY) -m mkdocs build --strict

bench: $(TEST_STAMP) chromium
	$(PY) benchmarks/latency.py

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(TEST_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

venv: $(PY)
install-demo: $(DEMO_STAMP)
install-test: $(TEST_STAMP)
install-docs: $(DOCS_STAMP)

# Debian ships python3.11 without ensurepip unless python3.11-venv is installed: as root,
# install it and retry.
$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (need Python 3.11)"; exit 1; }
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    rm -rf $(VENV); apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv && \
	    $(PYTHON) -m venv $(VENV); \
	  else rm -rf $(VENV); echo "error: '$(PYTHON) -m venv' failed; install python3.11-venv"; \
	    exit 1; fi; }

$(DEMO_STAMP): | $(PY)
	$(PY) -m pip install -e '.[demo]'
	rm -f $(VENV)/.jaxvis-demo-*
	touch $@

# The test extras include the demo ones, so this stamp also satisfies `make lab`.
$(TEST_STAMP): | $(PY)
	$(PY) -m pip install -e '.[demo,test]'
	$(PY) -m pip install --no-deps 'zennit==0.5.1'
	rm -f $(VENV)/.jaxvis-test-* $(VENV)/.jaxvis-demo-*
	touch $@ $(DEMO_STAMP)

$(DOCS_STAMP): | $(PY)
	$(PY) -m pip install -e '.[demo,docs]'
	rm -f $(VENV)/.jaxvis-docs-*
	touch $@

# Browser tests drive Debian's chromium (never `playwright install`). Without root and
# without chromium they skip, saying why.
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "note: $(CHROMIUM) is absent and we are not root: browser tests will skip"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache build dist site docs/notebooks *.egg-info
