import sys
from pathlib import Path

from minikern import events, sched
from minikern.kernel.main import main

events.run_boot(Path(sys.argv[1]), sched.bounded(main))
