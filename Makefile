# `make run` starts Opsflow; `make test` runs the test suite. Both create the virtualenv on first use.

VENV := .venv
# The newest Python >= 3.11 on this machine (pyenv installs included); override with `make PYTHON=...`.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3 $$HOME/.pyenv/versions/3.*/bin/python3; do \
	  v=$$($$p -c 'import sys; print("%d.%03d" % sys.version_info[:2]) if sys.version_info >= (3, 11) else None' 2>/dev/null) \
	  && [ -n "$$v" ] && [ "$$v" != None ] && echo "$$v $$(command -v $$p || echo $$p)"; \
	done | sort -r | head -n1 | cut -d' ' -f2)

.PHONY: run test test-system lint bench venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	@touch $@

run: venv
	$(VENV)/bin/python -m app.cli run

test: test-system venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The system packages the tests need: installed when root with apt, else named in one line.
test-system:
	@bash tests/system_packages.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
