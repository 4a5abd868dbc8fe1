"""The Data Store's tables and rules, without IPC (runs inside the DS process; MINIX servers/ds/store.c).

Every argument comes straight off the wire, so every method validates what it
is given and refuses with a ``DsError`` carrying an ``Err`` code; nothing here
asserts on input.  services/ds/main.py turns a request into one call here and
the error into the reply.

Invariants:

* Identity is a **label**, never an endpoint: an entry belongs to the label that
  published it and a subscription to the label that made it, so both survive
  a restart of their owner under the same label.
* ``entries`` and ``subs`` are the only bookkeeping; each key is in ``entries``
  at most once and each label owns at most one subscription (as in MINIX,
  SUBSCRIBE with OVERWRITE replaces it; one regex can name many keys).
* An entry keeps its last ``MAX_VERSIONS`` values, newest first: version 0 is
  the current value, 1 the one before, ...
* A PRIVATE entry is seen only by its owner and by the operator (a tool
  admitted with the run directory's key that asks to, bin/ds): RETRIEVE by
  anyone else is EPERM, LIST leaves it out, and its changes are queued only
  on its owner's subscription.
* Every publication takes the next ``serial`` of the store, so a lister can
  tell which entries changed since it last looked (bin/ds watch).
* A subscription's pending changes hold one record per key (a newer change of
  the same key replaces the older one) and at most ``MAX_PENDING``; beyond
  that the oldest is dropped and counted in ``dropped``.
* Regular expressions match the **whole** key (``re.fullmatch``): MINIX's
  ``drv\\.net\\..*`` means the same here, but ``net`` alone does not match
  ``drv.net.x``.  Nested repetition such as ``(a+)+`` is refused (EINVAL): it
  can backtrack for hours on an 80-character key, and DS must never stall.
  (Overlapping alternatives under one repetition, ``(a|aa)*``, are not caught.)
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from minikern.const import DsFlag, Err

try:
    import re._parser as _sre_parse  # Python 3.11+
except ImportError:  # pragma: no cover (Python 3.10)
    import sre_parse as _sre_parse  # type: ignore[no-redef,unused-ignore]

MAX_KEY_LEN = 80  # characters in a key (MINIX DS_MAX_KEYLEN)
MAX_VALUE_SIZE = 4096  # bytes of a str (UTF-8) or mem value
MAX_KEYS = 1024  # entries in the store (MINIX NR_DS_KEYS is 128)
MAX_SUBS = 256  # subscriptions in the store (MINIX NR_DS_SUBS)
MAX_VERSIONS = 8  # values kept per key, the current one included
MAX_PENDING = 64  # changes queued per subscription before the oldest is dropped
MAX_REGEX_LEN = 256  # characters in a subscription's regular expression
MAX_LIST = 64  # entries in one LIST answer (64 of the largest fit in one message)
LIST_VALUE_MAX = 256  # bytes: a longer value is left out of LIST (RETRIEVE it)

TYPES = ("u32", "str", "mem", "label")  # value types, as named on the wire
PUBLISH_FLAGS = DsFlag.OVERWRITE | DsFlag.PRIVATE
SUBSCRIBE_FLAGS = DsFlag.OVERWRITE | DsFlag.INITIAL


class DsError(Exception):
    """A refused request; ``code`` is the Err the caller gets."""

    def __init__(self, code: Err, why: str) -> None:
        super().__init__(f"{code.name}: {why}")
        self.code = code


class Change(NamedTuple):
    """What CHECK tells a subscriber: a key that changed, and whether it is gone."""

    key: str
    type: str
    owner: str
    deleted: bool


@dataclass
class Entry:
    key: str
    owner: str
    private: bool
    versions: deque[tuple[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_VERSIONS))
    serial: int = 0  # the store's serial at this entry's last publication


@dataclass
class Subscription:
    owner: str
    regex: str
    pattern: re.Pattern[str]
    pending: OrderedDict[str, Change] = field(default_factory=OrderedDict)
    dropped: int = 0


def _label(owner: object) -> str:
    if type(owner) is not str or not owner:
        raise DsError(Err.EINVAL, "owner must be a non-empty label")
    return owner


def _key(key: object) -> str:
    if type(key) is not str or not key or not key.isprintable():
        raise DsError(Err.EINVAL, "key must be a non-empty printable string")
    if len(key) > MAX_KEY_LEN:
        raise DsError(Err.E2BIG, f"key longer than {MAX_KEY_LEN} characters")
    return key


def _flags(flags: object, allowed: DsFlag) -> DsFlag:
    # int(allowed): ~ on an IntFlag would keep only the enum's own bits
    if not isinstance(flags, int) or type(flags) is bool or flags & ~int(allowed):
        raise DsError(Err.EINVAL, f"flags must be an int within {allowed!r}")
    return DsFlag(flags)


def _value(vtype: object, value: object) -> tuple[str, Any]:
    """Check a value against its declared type; bool is never an integer here."""
    if vtype == "u32" and type(value) is int and 0 <= value < 1 << 32:
        return vtype, value
    if vtype == "label" and type(value) is int and -(1 << 31) <= value < 1 << 31:
        return vtype, value
    if vtype == "str" and type(value) is str:
        if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_SIZE:
            raise DsError(Err.E2BIG, f"string value over {MAX_VALUE_SIZE} bytes")
        return vtype, value
    if vtype == "mem" and type(value) is bytes:
        if len(value) > MAX_VALUE_SIZE:
            raise DsError(Err.E2BIG, f"mem value over {MAX_VALUE_SIZE} bytes")
        return vtype, value
    raise DsError(Err.EINVAL, f"value does not fit type {vtype!r} (types: {', '.join(TYPES)})")


def _nested_repeat(parsed: Any, inside: bool = False) -> bool:
    """True if a repetition contains another one: the shape of catastrophic backtracking."""
    for op, av in parsed:
        name, inner = str(op), inside
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, hi = av[0], av[1]  # MAXREPEAT (unbounded) is a large int
            if inside and lo != hi:  # a variable count inside a repetition: ambiguous
                return True
            repeats = hi > 1
            children, inner = [av[2]], inside or repeats
        elif name == "SUBPATTERN":
            children = [av[-1]]
        elif name == "BRANCH":
            children = av[1]
        elif name in ("ASSERT", "ASSERT_NOT", "GROUPREF_EXISTS"):
            children = [c for c in av[1:] if c is not None]
        else:
            continue
        if any(_nested_repeat(c, inner) for c in children):
            return True
    return False


def compile_regex(regex: object) -> re.Pattern[str]:
    if type(regex) is not str or not regex:
        raise DsError(Err.EINVAL, "regex must be a non-empty string")
    if len(regex) > MAX_REGEX_LEN:
        raise DsError(Err.E2BIG, f"regex longer than {MAX_REGEX_LEN} characters")
    try:
        pattern = re.compile(regex)
        nested = _nested_repeat(_sre_parse.parse(regex))
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        raise DsError(Err.EINVAL, f"bad regex: {e}") from None
    if nested:
        raise DsError(Err.EINVAL, "nested repetition in regex (catastrophic backtracking)")
    return pattern


class Store:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.subs: dict[str, Subscription] = {}  # by owner label
        self.counters: dict[str, int] = {}
        self.serial = 0  # publications so far

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    # -- requests ---------------------------------------------------------------------

    def publish(self, owner: object, key: object, vtype: object, value: object,
                flags: object = 0, *, from_rs: bool = False) -> set[str]:
        """Store a value; returns the labels whose subscriptions got a change to CHECK."""
        owner, key = _label(owner), _key(key)
        f = _flags(flags, PUBLISH_FLAGS)
        vtype, value = _value(vtype, value)
        if vtype == "label" and not from_rs:
            raise DsError(Err.EPERM, "only RS publishes label entries")
        e = self.entries.get(key)
        if e is not None:
            if e.owner != owner:
                raise DsError(Err.EPERM, f"{key} belongs to {e.owner}")
            if not f & DsFlag.OVERWRITE:
                raise DsError(Err.EEXIST, f"{key} exists (publish with OVERWRITE)")
        elif len(self.entries) >= MAX_KEYS:
            raise DsError(Err.ENOSPC, f"the store holds {MAX_KEYS} keys")
        else:
            e = self.entries[key] = Entry(key, owner, False)
        e.private = bool(f & DsFlag.PRIVATE)
        e.versions.appendleft((vtype, value))
        self.serial += 1
        e.serial = self.serial
        return self._changed(e, deleted=False)

    def retrieve(self, caller: object, key: object, version: object = 0,
                 vtype: object = None, *, operator: bool = False) -> tuple[str, Any, str]:
        """(type, value, owner) of ``key`` at ``version``; a type, if given, must match."""
        caller, key = _label(caller), _key(key)
        if type(version) is not int or not 0 <= version < MAX_VERSIONS:
            raise DsError(Err.EINVAL, f"version must be an int in 0..{MAX_VERSIONS - 1}")
        if vtype is not None and vtype not in TYPES:
            raise DsError(Err.EINVAL, f"type must be one of {', '.join(TYPES)}")
        e = self.entries.get(key)
        if e is None or vtype is not None and e.versions[0][0] != vtype:
            raise DsError(Err.ESRCH, f"no {vtype or 'entry'} {key}")
        if e.private and e.owner != caller and not operator:
            raise DsError(Err.EPERM, f"{key} is private to {e.owner}")
        if version >= len(e.versions):
            raise DsError(Err.ESRCH, f"{key} has {len(e.versions)} versions")
        t, v = e.versions[version]
        return t, v, e.owner

    def list(self, caller: object, regex: object = None, after: object = "", *,
             operator: bool = False) -> tuple[list[dict[str, Any]], bool]:
        """The entries ``caller`` may see whose keys match ``regex`` (all if None), in key
        order from the first after ``after``: at most MAX_LIST, and whether more follow."""
        caller = _label(caller)
        pattern = None if regex is None else compile_regex(regex)
        if type(after) is not str or len(after) > MAX_KEY_LEN:
            raise DsError(Err.EINVAL, "after must be a key (or \"\")")
        keys = sorted(k for k, e in self.entries.items() if k > after
                      and (not e.private or e.owner == caller or operator)
                      and (pattern is None or pattern.fullmatch(k)))
        page = []
        for k in keys[:MAX_LIST]:
            e = self.entries[k]
            vtype, value = e.versions[0]
            size = len(value) if isinstance(value, (bytes, str)) else 4
            row = {"key": k, "type": vtype, "owner": e.owner, "private": e.private,
                   "versions": len(e.versions), "serial": e.serial, "size": size}
            if size <= LIST_VALUE_MAX:
                row["value"] = value
            page.append(row)
        return page, len(keys) > MAX_LIST

    def delete(self, caller: object, key: object) -> set[str]:
        caller, key = _label(caller), _key(key)
        e = self.entries.get(key)
        if e is None:
            raise DsError(Err.ESRCH, f"no entry {key}")
        if e.owner != caller:
            raise DsError(Err.EPERM, f"{key} belongs to {e.owner}")
        del self.entries[key]
        return self._changed(e, deleted=True)

    def subscribe(self, owner: object, regex: object, flags: object = 0) -> set[str]:
        """Subscribe ``owner``; with INITIAL the keys that match now are queued at once."""
        owner = _label(owner)
        f = _flags(flags, SUBSCRIBE_FLAGS)
        pattern = compile_regex(regex)
        if owner in self.subs and not f & DsFlag.OVERWRITE:
            raise DsError(Err.EEXIST, f"{owner} has a subscription (subscribe with OVERWRITE)")
        if owner not in self.subs and len(self.subs) >= MAX_SUBS:
            raise DsError(Err.ENOSPC, f"the store holds {MAX_SUBS} subscriptions")
        sub = self.subs[owner] = Subscription(owner, pattern.pattern, pattern)
        if f & DsFlag.INITIAL:
            for e in self.entries.values():
                self._offer(sub, e, deleted=False)
        return {owner} if sub.pending else set()

    def check(self, owner: object) -> tuple[Change, int] | None:
        """The oldest pending change of ``owner``'s subscription and its drop count, or None."""
        sub = self.subs.get(_label(owner))
        if sub is None or not sub.pending:
            return None
        return sub.pending.popitem(last=False)[1], sub.dropped

    def purge(self, label: object) -> tuple[int, int, set[str]]:
        """Forget a label that is gone for good: its entries, its subscription, and the
        label entry naming it.  Returns (entries, subscriptions, labels to notify)."""
        label = _label(label)
        gone = [e for e in self.entries.values()
                if e.owner == label or e.key == label and e.versions[0][0] == "label"]
        nsubs = 1 if self.subs.pop(label, None) is not None else 0
        notify: set[str] = set()
        for e in gone:
            del self.entries[e.key]
            notify |= self._changed(e, deleted=True)
        return len(gone), nsubs, notify

    # -- change queues ----------------------------------------------------------------

    def _changed(self, e: Entry, deleted: bool) -> set[str]:
        return {sub.owner for sub in self.subs.values() if self._offer(sub, e, deleted)}

    def _offer(self, sub: Subscription, e: Entry, deleted: bool) -> bool:
        if e.private and e.owner != sub.owner or not sub.pattern.fullmatch(e.key):
            return False
        sub.pending.pop(e.key, None)  # one record per key: the newest change wins
        if len(sub.pending) >= MAX_PENDING:
            sub.pending.popitem(last=False)
            sub.dropped += 1
            self.count("changes_dropped")
        sub.pending[e.key] = Change(e.key, e.versions[0][0], e.owner, deleted)
        return True
