# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,torch,dask]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m squirrel.demo

# pytest exits 5 when it collected no test: that is a broken suite, never a pass.
test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy squirrel

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m benchmarks

# The documentation site, from docs/ and the docstrings, into site/; any warning fails the build.
docs: install
	$(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
