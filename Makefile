# Two commands a new user needs: `make demo` and `make test`. Everything else is a detail of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYDIRS := src tests benchmarks examples

.PHONY: demo test quick lint typecheck unit test-openai2 package bench clean

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

# The loop while working: the tests not marked slow (pytest -m "not slow"), no lint, no packaging.
quick: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m "not slow"

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

# What `pip install xretry` gives a user: the sdist and the wheel built from it (in build's isolated
# environment, as a release would be), their metadata checked, and the wheel installed with no
# extras into a throwaway venv outside the tree, where `import xretry` must come from the wheel
# (py.typed inside it), `xretry --help` must run, and `xretry demo` must name the extra it needs.
DIST := dist
DEMO_HINT := xretry: \`xretry demo\` needs rich, which is not installed: pip install 'xretry[cli]'

# The tools get an environment of their own: the dev group's xai-sdk pins packaging below 26, the
# first release that reads the Metadata 2.5 hatchling now writes.
PACKAGING := .venv-package

$(PACKAGING)/bin/python:
	$(PYTHON) -m venv $(PACKAGING)
	echo '*' > $(PACKAGING)/.gitignore
	$(PACKAGING)/bin/python -m pip install --quiet --upgrade "pip>=25.1"

$(PACKAGING)/.installed: pyproject.toml | $(PACKAGING)/bin/python
	$(PACKAGING)/bin/python -m pip install --quiet --group package
	touch $@

package: $(PACKAGING)/.installed
	rm -rf $(DIST)
	$(PACKAGING)/bin/python -m build --quiet --outdir $(DIST) .
	$(PACKAGING)/bin/twine check --strict $(DIST)/*
	$(PACKAGING)/bin/python -m zipfile -l $(DIST)/*.whl | grep '^xretry/py.typed '
	@set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv --without-pip "$$tmp/venv"; \
	$(PACKAGING)/bin/python -m pip --python "$$tmp/venv/bin/python" install --quiet $(DIST)/*.whl; \
	cd "$$tmp"; \
	venv/bin/python -c 'import pathlib, sys, xretry; \
	    assert pathlib.Path(xretry.__file__).is_relative_to(sys.prefix), xretry.__file__; \
	    assert (pathlib.Path(xretry.__file__).parent / "py.typed").is_file()'; \
	venv/bin/xretry --help > /dev/null; \
	status=0; venv/bin/xretry demo > out 2> err || status=$$?; \
	if [ $$status -ne 2 ] || [ -s out ] || [ "$$(cat err)" != "$(DEMO_HINT)" ]; then \
	    echo "make package: xretry demo without extras exited $$status, printing:" >&2; \
	    cat out err >&2; exit 1; \
	fi; \
	echo "package: $$(cd $(CURDIR)/$(DIST) && ls | tr '\n' ' ')built, checked, installed and run"

test: lint typecheck unit test-openai2 package

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(OPENAI2) $(PACKAGING) .mypy_cache .ruff_cache .hypothesis build $(DIST)
