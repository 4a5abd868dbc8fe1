# The two entry points of the README: `make boot` and `make test`.
# Both create a local virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: boot test lint bench clean host-tools bytecode

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "'$(PYTHON) -m venv' failed:" \
	    "on Debian or Ubuntu, install the python3-venv package and run make again" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Every component starts as a fresh Python process, and a template imports the libraries
# ahead of need (minikern/template.py): from source that is twice the CPU of a start from
# bytecode (0.26 against 0.11 s measured), paid on every restart.  pip compiles an installed
# package's bytecode; this tree runs from source, and hosts that set PYTHONDONTWRITEBYTECODE
# would never cache it, so it is compiled here (only what changed; about 0.3 s when current).
bytecode: $(STAMP)
	$(PY) -m compileall -q -j 0 minikern drivers services hw userland bench experiment tests

boot: $(STAMP) bytecode
	$(PY) bin/boot

# The Linux-peer tests use ping(8) and ip(8), the disk tests util-linux's mkfs.minix and
# fsck.minix, bin/mount and its tests fuse3's libfuse3 and fusermount3; as root, install
# them when missing.
host-tools:
	@PATH="$$PATH:/sbin:/usr/sbin"; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    ! { command -v ping && command -v ip && command -v mkfs.minix && \
	        command -v fusermount3; } >/dev/null; then \
	    echo "installing iputils-ping, iproute2, util-linux and fuse3 for the host-tool tests"; \
	    (timeout 300 apt-get update -qq && \
	     timeout 300 apt-get install -y -qq iputils-ping iproute2 util-linux fuse3) \
	     >/dev/null 2>&1 || \
	    echo "could not install them: those tests will be skipped"; \
	fi

test: $(STAMP) host-tools bytecode
	$(PY) -m pytest -q -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict minikern services drivers hw userland experiment bench

clean:
	rm -rf $(VENV) *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
