"""A service defined by the operator at run time (``bin/service up PROGRAM ...``).  Runs inside RS.

UP may carry ``service``: the service's system.conf entry as a map of key to a
list of words, exactly as the file would give them (``{"program":
["/opt/mydrv.py"], "period": ["500ms"], "ipc": ["SYSTEM", "rs", "ds"]}``).
Nothing in it is trusted: ``entry`` checks the label, every key and word
against system.conf's own rules (minikern/sysconf.py), the policy
(services/rs/policy.py), and that the program and the recovery script are
there (minikern/programs.py), and answers the entry or why not, in words
an operator can act on.
"""
from __future__ import annotations

import re

from minikern import programs
from minikern.sysconf import KNOWN_KEYS, ConfError, Service
from services.rs.policy import Policy

LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
MAX_WORDS = 64  # words in one key (args, ipc, io, ...)
MAX_WORD = 4096  # characters in one word (a path)
NOT_HERE = {"user", "slot", "control"}  # a supervised service, placed by the kernel


def entry(label: object, keys: object) -> Service | str:
    """The system.conf entry UP's ``service`` field describes, or why it cannot be run."""
    if type(label) is not str or not LABEL.fullmatch(label) or label == "rs":
        return "label: a name of letters, digits, - and _ (at most 32), not rs"
    if type(keys) is not dict or not keys:
        return "service: a map of system.conf keys to lists of words"
    words: dict[str, list[str]] = {}
    for key, value in keys.items():
        if type(key) is not str or key not in KNOWN_KEYS or key in NOT_HERE:
            return f"service: {key!r} is not a key service up takes"
        if (type(value) is not list or len(value) > MAX_WORDS
                or not all(type(w) is str and 0 < len(w) <= MAX_WORD and w.isprintable()
                           for w in value)):
            return f"service: {key}: a list of at most {MAX_WORDS} printable words"
        words[key] = list(value)
    svc = Service(label, words)
    program = svc.get("program")
    if program is None:
        return "service: no program"
    try:
        svc.priv()
        policy = Policy.from_conf(svc)
    except ConfError as e:
        return str(e)
    why = programs.check_program(program)
    if why is None and policy.script is not None:
        why = programs.check_script(policy.script)
    return svc if why is None else why
