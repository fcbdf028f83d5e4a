# The two commands of the README: `make demo` and `make test`. Both create .venv if missing.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.thincam-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint install

install: $(STAMP)

# One pip command resolves everything together (docs/traps.md: step by step breaks pins).
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/default --cores all

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile rules
