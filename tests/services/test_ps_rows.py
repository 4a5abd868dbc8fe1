"""bin/ps lists user programs started from the shell, never operator tools, and names RS as
the manager of what it manages (RS's endpoint is 0, which must not read as "none")."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from minikern.commands import ps
from minikern.const import RS
from tests.conftest import SystemUnderTest
from tests.services.rs_helpers import boot_rs

pytestmark = pytest.mark.timeout(60)


def test_user_programs_are_listed_and_operator_tools_are_not(
        make_system: Callable[..., SystemUnderTest]) -> None:
    s = boot_rs(make_system)
    s.connect("nc", "user")  # what bin/nc is: the operator key, user privileges
    tool = s.connect("ps", "operator")
    rows = {r["label"]: r for r in ps.collect(tool)}
    assert rows["nc"]["user"] is True and rows["nc"]["state"] == "up"
    assert "ps" not in rows  # the tool asking is not part of the system
    assert rows["hello"]["user"] is False and rows["hello"]["manager"] == RS
    assert rows["rs"]["manager"] is None
