# The two entry points of the README: `make boot` and `make test`.
# Both create a local virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: boot test lint bench clean host-tools

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "'$(PYTHON) -m venv' failed:" \
	    "on Debian or Ubuntu, install the python3-venv package and run make again" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

boot: $(STAMP)
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

test: $(STAMP) host-tools
	$(PY) -m pytest -q -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict minikern services drivers hw userland experiment bench

clean:
	rm -rf $(VENV) *.egg-info
