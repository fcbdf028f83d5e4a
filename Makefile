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

# Two workers, one test module each at a time (tests/conftest.py keeps the modules that read the
# tiny workflow run together): while it waits on SLURM's status checks, the other runs the rest.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile rules
