"""bin/experiment with stand-in trials that each take a minute, for test_resume's Ctrl-C test:
spawned workers import this file as their main module, so the stand-in is theirs too."""
import os
import sys
import time
from typing import Any

import experiment.trial
from experiment import main as exp


def long_trial(*args: Any) -> dict[str, Any]:
    os.write(1, b"started\n")  # one write: two workers' lines never interleave
    time.sleep(60)
    return {"injections": []}


experiment.trial.run_trial = long_trial  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(exp.main(["--faults", "6", "--chunks", "6", "--workers", "2", "--drivers", "hello",
                       "--out", sys.argv[1]]))
