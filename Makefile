# The two entry points of the README: `make boot` and `make test`.
# Both create a local virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: boot test lint bench clean host-tools

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

boot: $(STAMP)
	$(PY) bin/boot

# The Linux-peer tests use ping(8) and ip(8); as root, install them when missing.
host-tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    ! { command -v ping >/dev/null && command -v ip >/dev/null; }; then \
	    echo "installing iputils-ping and iproute2 for the Linux-peer tests"; \
	    (timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq iputils-ping iproute2) \
	        >/dev/null 2>&1 || \
	    echo "could not install them: those tests will be skipped"; \
	fi

test: $(STAMP) host-tools
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict minikern services drivers hw userland

clean:
	rm -rf $(VENV) *.egg-info
