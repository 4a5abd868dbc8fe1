"""The campaign's plan: which fault goes where, derived from the seed alone.

``make_plan(seed, faults, drivers, types)`` is pure: the same arguments give
the same list of ``Injection``s on any machine (random.Random(seed) is
specified to be reproducible across platforms for the calls used here),
different seeds give different lists.  A trial runs a slice of the plan; how
the plan is cut into trials (--workers) never changes the plan.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from minikern.const import (CODE_KINDS, CORRUPTIONS, FAULTS, INTERFACE_KINDS, RESOURCE_KINDS)
from experiment.targets import TARGETS

TYPES: dict[str, tuple[str, ...]] = {"process": FAULTS, "code": CODE_KINDS,
                                     "interface": INTERFACE_KINDS, "resource": RESOURCE_KINDS}
MAX_NTH = {"code": 60, "interface": 12, "process": 1, "resource": 1}  # how late it may fire
CORRUPTING = {"corrupt", "field", "register"}  # kinds that take a corruption


@dataclass(frozen=True)
class Injection:
    index: int
    id: str  # names the activation record (run_dir/swifi/<id>.json)
    driver: str
    type: str  # a key of TYPES
    kind: str
    nth: int = 1
    pick: int = 0
    corrupt: str = ""
    offset: int = 0

    def spec(self) -> dict[str, Any]:
        """The ``spec`` of RsReq.CRASH for a SWIFI fault (minikern/swifi.py)."""
        spec: dict[str, Any] = {"id": self.id, "kind": self.kind, "nth": self.nth,
                                "pick": self.pick}
        if self.corrupt:
            spec["corrupt"] = self.corrupt
        if self.type == "code":
            spec["module"] = TARGETS[self.driver].module
        if self.kind == "dma":
            spec["offset"] = self.offset
        return spec

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(seed: int, faults: int, drivers: list[str], types: list[str]) -> list[Injection]:
    rng = random.Random(seed)
    plan = []
    for i in range(faults):
        driver = drivers[rng.randrange(len(drivers))]
        ftype = types[rng.randrange(len(types))]
        kinds = [k for k in TYPES[ftype] if k not in TARGETS[driver].no_kinds]
        kind = kinds[rng.randrange(len(kinds))]
        nth = rng.randint(1, MAX_NTH[ftype])
        pick = rng.randrange(1 << 16)
        how = CORRUPTIONS[rng.randrange(len(CORRUPTIONS))] if kind in CORRUPTING else ""
        lo, hi = TARGETS[driver].dma_area
        offset = rng.randrange(lo, hi) if kind == "dma" and hi > lo else 0
        plan.append(Injection(i, f"s{seed}-{i}", driver, ftype, kind, nth, pick, how, offset))
    return plan


def slices(plan: list[Injection], trials: int) -> list[list[Injection]]:
    """The plan cut into ``trials`` contiguous runs (fewer if the plan is shorter)."""
    trials = max(1, min(trials, len(plan)))
    size, extra = divmod(len(plan), trials)
    out, start = [], 0
    for t in range(trials):
        end = start + size + (1 if t < extra else 0)
        out.append(plan[start:end])
        start = end
    return out
