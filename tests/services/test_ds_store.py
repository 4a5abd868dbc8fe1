"""The Data Store's rules without IPC: ownership, privacy, versions, limits, subscriptions."""
from __future__ import annotations


import pytest

from minikern.const import DsFlag, Err
from services.ds import store
from services.ds.store import Change, DsError, Store

OVER, PRIV, INIT = DsFlag.OVERWRITE, DsFlag.PRIVATE, DsFlag.INITIAL


def refused(code: Err, fn: object, *args: object, **kw: object) -> None:
    with pytest.raises(DsError) as e:
        fn(*args, **kw)  # type: ignore[operator]
    assert e.value.code == code, e.value


def drain(s: Store, owner: str) -> list[Change]:
    out = []
    while (got := s.check(owner)) is not None:
        out.append(got[0])
    return out


def test_every_type_round_trips_with_its_owner() -> None:
    s = Store()
    s.publish("net", "drv.net.rtl8139", "u32", 7)
    s.publish("net", "drv.net.name", "str", "eth0")
    s.publish("net", "drv.net.mac", "mem", b"\x00\x01\x02")
    s.publish("rs", "rtl8139", "label", 40, from_rs=True)
    assert s.retrieve("other", "drv.net.rtl8139") == ("u32", 7, "net")
    assert s.retrieve("other", "drv.net.name") == ("str", "eth0", "net")
    assert s.retrieve("other", "drv.net.mac") == ("mem", b"\x00\x01\x02", "net")
    assert s.retrieve("other", "rtl8139", vtype="label") == ("label", 40, "rs")
    refused(Err.ESRCH, s.retrieve, "other", "rtl8139", vtype="u32")
    refused(Err.ESRCH, s.retrieve, "other", "no.such.key")


@pytest.mark.parametrize("vtype, value", [("u32", -1), ("u32", 1 << 32), ("u32", True),
                                          ("u32", "7"), ("str", b"x"), ("mem", "x"),
                                          ("label", 1 << 31), ("float", 1.0), (None, 1)])
def test_a_value_must_fit_its_type(vtype: object, value: object) -> None:
    refused(Err.EINVAL, Store().publish, "a", "k", vtype, value)


def test_only_the_owner_overwrites_and_only_with_overwrite() -> None:
    s = Store()
    s.publish("a", "k", "u32", 1)
    refused(Err.EEXIST, s.publish, "a", "k", "u32", 2)
    refused(Err.EPERM, s.publish, "b", "k", "u32", 3, OVER)
    s.publish("a", "k", "u32", 4, OVER)
    assert s.retrieve("b", "k") == ("u32", 4, "a")


def test_only_the_owner_deletes() -> None:
    s = Store()
    s.publish("a", "k", "str", "v")
    refused(Err.EPERM, s.delete, "b", "k")
    s.delete("a", "k")
    refused(Err.ESRCH, s.delete, "a", "k")
    s.publish("b", "k", "str", "mine now")  # a deleted key is free for anyone
    assert s.retrieve("a", "k")[2] == "b"


def test_private_entries_are_only_for_their_owner() -> None:
    s = Store()
    s.publish("hello", "hello.open_counter", "u32", 3, PRIV)
    assert s.retrieve("hello", "hello.open_counter") == ("u32", 3, "hello")
    refused(Err.EPERM, s.retrieve, "other", "hello.open_counter")
    s.publish("hello", "hello.open_counter", "u32", 4, OVER)  # publishing again sets the flags
    assert s.retrieve("other", "hello.open_counter")[1] == 4


def test_only_rs_publishes_labels() -> None:
    refused(Err.EPERM, Store().publish, "evil", "vfs", "label", 5)


def test_versions_keep_the_last_eight_values() -> None:
    s = Store()
    s.publish("a", "k", "u32", 0)
    for v in range(1, 12):
        s.publish("a", "k", "u32", v, OVER)
    assert [s.retrieve("a", "k", n)[1] for n in range(store.MAX_VERSIONS)] == list(
        range(11, 3, -1))
    refused(Err.EINVAL, s.retrieve, "a", "k", store.MAX_VERSIONS)
    refused(Err.EINVAL, s.retrieve, "a", "k", -1)
    refused(Err.EINVAL, s.retrieve, "a", "k", "1")
    s.publish("a", "fresh", "str", "only")
    refused(Err.ESRCH, s.retrieve, "a", "fresh", 1)


def test_limits_have_clear_errors() -> None:
    s = Store()
    s.publish("a", "k" * store.MAX_KEY_LEN, "u32", 1)
    refused(Err.E2BIG, s.publish, "a", "k" * (store.MAX_KEY_LEN + 1), "u32", 1)
    refused(Err.EINVAL, s.publish, "a", "", "u32", 1)
    refused(Err.EINVAL, s.publish, "a", "bad\nkey", "u32", 1)
    s.publish("a", "m", "mem", bytes(store.MAX_VALUE_SIZE))
    refused(Err.E2BIG, s.publish, "a", "m2", "mem", bytes(store.MAX_VALUE_SIZE + 1))
    refused(Err.E2BIG, s.publish, "a", "s2", "str", "é" * (store.MAX_VALUE_SIZE // 2 + 1))
    refused(Err.EINVAL, s.publish, "a", "f", "u32", 1, 0x100)
    refused(Err.EINVAL, s.publish, "a", "f", "u32", 1, INIT)


def test_the_store_holds_a_bounded_number_of_keys() -> None:
    s = Store()
    for i in range(store.MAX_KEYS - len(s.entries)):
        s.publish("a", f"k{i}", "u32", i)
    refused(Err.ENOSPC, s.publish, "a", "one.more", "u32", 1)
    s.publish("a", "k0", "u32", 5, OVER)  # overwriting needs no new room
    s.delete("a", "k1")
    s.publish("a", "one.more", "u32", 1)


def test_subscription_queues_matching_changes_once_per_key() -> None:
    s = Store()
    assert s.subscribe("inet", r"drv\.net\..*") == set()
    assert s.publish("net", "drv.net.rtl8139", "str", "up") == {"inet"}
    assert s.publish("blk", "drv.blk.ata", "str", "up") == set()
    assert s.publish("net", "xdrv.net.y", "str", "up") == set()  # the whole key must match
    s.publish("net", "drv.net.rtl8139", "str", "down", OVER)
    s.publish("net", "drv.net.e1000", "u32", 1)
    s.delete("net", "drv.net.e1000")
    assert drain(s, "inet") == [Change("drv.net.rtl8139", "str", "net", False),
                                Change("drv.net.e1000", "u32", "net", True)]
    assert s.check("inet") is None and s.check("nobody") is None


def test_initial_queues_existing_keys_and_hides_others_private_ones() -> None:
    s = Store()
    s.publish("net", "drv.net.a", "str", "up")
    s.publish("net", "drv.net.secret", "u32", 1, PRIV)
    s.publish("vfs", "vfs.x", "u32", 1)
    assert s.subscribe("inet", r"drv\.net\..*", INIT) == {"inet"}
    assert [c.key for c in drain(s, "inet")] == ["drv.net.a"]
    s.publish("net", "drv.net.secret", "u32", 2, PRIV | OVER)
    assert s.check("inet") is None
    s.subscribe("net", r"drv\..*", INIT)
    assert {c.key for c in drain(s, "net")} == {"drv.net.a", "drv.net.secret"}


def test_one_subscription_per_label_replaced_with_overwrite() -> None:
    s = Store()
    s.subscribe("vfs", r"drv\.blk\..*")
    refused(Err.EEXIST, s.subscribe, "vfs", r"drv\.chr\..*")
    s.subscribe("vfs", r"drv\.chr\..*", OVER)
    assert s.publish("hello", "drv.chr.hello", "str", "up") == {"vfs"}
    assert s.publish("ata", "drv.blk.ata", "str", "up") == set()


@pytest.mark.parametrize("regex, code", [("(", Err.EINVAL), ("", Err.EINVAL), (5, Err.EINVAL),
                                         ("a" * 257, Err.E2BIG), ("(a+)+b", Err.EINVAL),
                                         ("(x*)*", Err.EINVAL), ("((a|b)*c)*", Err.EINVAL)])
def test_bad_regexes_are_refused(regex: object, code: Err) -> None:
    refused(code, Store().subscribe, "a", regex)


@pytest.mark.parametrize("regex", [r"(a+)+b", r"(a*)*", r"(a|b+)*c", r"((ab)+)+", r"(a{2,})+"])
def test_a_repetition_of_a_repetition_is_refused(regex: str) -> None:
    """The documented rule: no group that repeats may hold a repetition (backtracking in
    CPython's ``re`` grows exponentially with the key's length on such a pattern)."""
    refused(Err.EINVAL, Store().subscribe, "a", regex)


@pytest.mark.parametrize("regex", [r"drv\.(blk|chr)\.[a-z0-9]+(\.[a-z]+)?", r"(ab){2}\..*",
                                   r"(x{2})*", r"a+b*c?"])
def test_repetitions_that_do_not_nest_are_accepted(regex: str) -> None:
    Store().subscribe("a", regex)


def test_subscriptions_are_bounded() -> None:
    s = Store()
    for i in range(store.MAX_SUBS):
        s.subscribe(f"svc{i}", "x")
    refused(Err.ENOSPC, s.subscribe, "one.more", "x")
    s.subscribe("svc0", "y", OVER)  # replacing needs no new room


def test_pending_changes_are_bounded_dropping_the_oldest() -> None:
    s = Store()
    s.subscribe("slow", r"k\d+")
    n = store.MAX_PENDING + 5
    for i in range(n):
        s.publish("a", f"k{i}", "u32", i)
    first = s.check("slow")
    assert first is not None and first[0].key == "k5" and first[1] == 5
    assert len(drain(s, "slow")) == store.MAX_PENDING - 1
    assert s.counters["changes_dropped"] == 5


def test_purge_forgets_a_label_and_tells_subscribers() -> None:
    s = Store()
    s.publish("rs", "net", "label", 40, from_rs=True)
    s.publish("net", "drv.net.x", "str", "up")
    s.publish("net", "net.state", "mem", b"s", PRIV)
    s.publish("other", "drv.net.y", "str", "up")
    s.subscribe("net", ".*")
    s.subscribe("inet", r"drv\.net\..*")
    entries, subs, notify = s.purge("net")
    assert (entries, subs, notify) == (3, 1, {"inet"})
    assert sorted(s.entries) == ["drv.net.y"] and sorted(s.subs) == ["inet"]
    assert drain(s, "inet") == [Change("drv.net.x", "str", "net", True)]
    refused(Err.EINVAL, s.purge, None)


def test_list_shows_what_the_caller_may_see_by_key_with_serials() -> None:
    s = Store()
    s.publish("net", "b.public", "u32", 1)
    s.publish("net", "a.secret", "str", "x", PRIV)
    s.publish("disk", "c.long", "mem", b"\0" * (store.LIST_VALUE_MAX + 1))
    page, more = s.list("other")
    assert [e["key"] for e in page] == ["b.public", "c.long"] and not more
    assert page[0] == {"key": "b.public", "type": "u32", "owner": "net", "private": False,
                       "versions": 1, "serial": 1, "size": 4, "value": 1}
    assert "value" not in page[1] and page[1]["size"] == store.LIST_VALUE_MAX + 1
    assert [e["key"] for e in s.list("net")[0]] == ["a.secret", "b.public", "c.long"]
    assert [e["key"] for e in s.list("other", operator=True)[0]][0] == "a.secret"
    assert [e["key"] for e in s.list("other", r"[ab]\..*")[0]] == ["b.public"]
    s.publish("net", "b.public", "u32", 2, OVER)
    row = s.list("other", "b.public")[0][0]
    assert (row["serial"], row["versions"], row["value"]) == (4, 2, 2)
    refused(Err.EINVAL, s.list, "other", "(a+)+")
    refused(Err.EINVAL, s.list, "other", None, 5)
    refused(Err.EPERM, s.retrieve, "other", "a.secret")
    assert s.retrieve("other", "a.secret", operator=True) == ("str", "x", "net")


def test_list_pages_through_a_full_store() -> None:
    s = Store()
    keys = [f"k{i:04d}" for i in range(store.MAX_LIST * 2 + 3)]
    for k in keys:
        s.publish("x", k, "u32", 0)
    seen, after, pages = [], "", 0
    while True:
        page, more = s.list("x", None, after)
        seen += [e["key"] for e in page]
        pages += 1
        assert len(page) <= store.MAX_LIST
        if not more:
            break
        after = page[-1]["key"]
    assert seen == keys and pages == 3
