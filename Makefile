# Two commands a new user needs: `make demo` and `make test`. Everything else is a detail of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYDIRS := src tests benchmarks examples

.PHONY: demo test lint typecheck unit test-openai2 bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"

# Installed markers: re-run the install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[cli,httpx2]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . --group dev --group bench
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/xretry demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(PYDIRS)
	$(BIN)/ruff format --check $(PYDIRS)

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q

# openai 2.x runs on httpx (openai 3.x, in the dev group, on httpx2): the real-SDK tests again, in an
# environment of their own.
OPENAI2 := .venv-openai2

$(OPENAI2)/bin/python:
	$(PYTHON) -m venv $(OPENAI2)
	echo '*' > $(OPENAI2)/.gitignore
	$(OPENAI2)/bin/python -m pip install --quiet --upgrade "pip>=25.1"

$(OPENAI2)/.installed: pyproject.toml | $(OPENAI2)/bin/python
	$(OPENAI2)/bin/python -m pip install --quiet -e . 'openai>=2,<3' pytest anyio trio respx \
		hypothesis uvicorn httpx2
	touch $@

test-openai2: $(OPENAI2)/.installed
	$(OPENAI2)/bin/pytest -q tests/test_sdk_openai.py -p no:cacheprovider

test: lint typecheck unit test-openai2

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(OPENAI2) .mypy_cache .ruff_cache .hypothesis build dist
