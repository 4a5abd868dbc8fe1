"""Fuzzing the kernel's and the board's sockets with Hypothesis (tests/fuzzer.py): every
frame kind (each trap, kernel call, bus verb, fast-path op, control line), its fields well
formed but wrong, of wrong types, huge, truncated, with extra parts.  After each example
the kernel and the board serve a legitimate round trip; after the run every kind was sent
and refused frames were counted, never answered by a crash.

A modest number of examples here (MINIKERN_FUZZ_EXAMPLES per kind, 4 by default: about
150 in all); ``bin/bench fuzz`` runs longer and reports the figures.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import psutil
import pytest

from tests.conftest import SystemUnderTest
from tests.fuzzer import FUZZ_CONF, KINDS, Fuzzer, run_examples
from tests.hw.test_board import BOARD_CONF, booted

pytestmark = pytest.mark.timeout(240)

EXAMPLES = int(os.environ.get("MINIKERN_FUZZ_EXAMPLES", "4"))  # per kind
MEMORY_SLACK = 50 << 20  # bytes the kernel may grow by over the run


@pytest.mark.timeout(240)
def test_every_frame_kind_fuzzed_leaves_the_system_serving(
        make_system: Callable[..., SystemUnderTest]) -> None:
    with booted(make_system, BOARD_CONF + FUZZ_CONF.replace("{", "{{").replace("}", "}}")) as m:
        kernel = psutil.Process(m.system.system.kernel.pid)
        start = kernel.memory_info().rss
        fuzzer = Fuzzer(m.system.run_dir)
        try:
            for kind in KINDS:  # kind by kind: each gets its share of examples
                run_examples(fuzzer, EXAMPLES, kind=kind)
            state = fuzzer.state()
        finally:
            fuzzer.close()
        assert set(state["sent"]) == set(KINDS)
        assert state["alive"] and sum(state["refused"]["kernel"].values()) > 0
        assert "kernel_bug" not in state["refused"]["kernel"], "a frame raised in the kernel"
        assert sum(state["refused"]["board"].values()) > 0
        assert kernel.memory_info().rss <= start + MEMORY_SLACK
        assert any(p["label"] == "hw" for p in m.system.info()["procs"])
