"""The component that runs a program kept outside the repository (``program /path/mydrv.py``).

Runs in the component's own process, started from a template like any
component: the kernel starts module ``minikern.external`` with the file's path
as its first argument (minikern/programs.py, ``component``).  It loads the
file by path under a module name of its own (the file's folder first on
``sys.path``, so the file's neighbours import too), then calls its
``main()``, which starts SEF as any component does.  A file that does not
load, or has no ``main``, is an exception at startup: SEF records it and RS
sees a crash with its traceback.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main() -> None:
    path = Path(sys.argv[1])
    sys.argv = [str(path), *sys.argv[2:]]  # the program sees its own name and arguments
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"external_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main()
