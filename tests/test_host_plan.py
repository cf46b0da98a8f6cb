"""neon_proto.hosts.host_plan and neon_proto.plan.PlanSteps without any network: the choice
of host that neon_sync and the async clients both drive."""

from __future__ import annotations

from typing import Any

import pytest

from neon_proto.conninfo import parse_connection_string
from neon_proto.errors import LocalProtocolError, OperationalError
from neon_proto.hosts import AskSessionState, DropHost, TryHost, host_plan
from neon_proto.plan import PlanSteps

PRIMARY = {"in_hot_standby": "off", "default_transaction_read_only": "off"}
READ_ONLY = {"in_hot_standby": "off", "default_transaction_read_only": "on"}


def params(attrs: str = "any", hosts: str = "a,b") -> Any:
    return parse_connection_string(f"host={hosts} port=5432 user=u target_session_attrs={attrs}", env={})


def walk(plan: Any, answers: dict[str, Any]) -> tuple[list[str], Any]:
    """Drive a host plan: each host answers with its ParameterStatus, or an error to throw."""
    steps = PlanSteps(plan)
    seen: list[str] = []
    for step in steps:
        if isinstance(step, TryHost):
            host = step.params.host
            seen.append(host if step.wait else f"{host} (no wait)")
            answer = answers[host]
            if isinstance(answer, Exception):
                steps.fail(answer)
            else:
                steps.answer(answer)
        elif isinstance(step, AskSessionState):
            seen.append("ask")
            steps.answer(("false", "on"))
        else:
            assert isinstance(step, DropHost)
            seen.append("drop")
    return seen, steps.result


def test_one_host_for_any_session_is_one_attempt_that_need_not_wait() -> None:
    seen, chosen = walk(host_plan(params(hosts="a")), {"a": None})
    assert seen == ["a (no wait)"] and chosen.host == "a"


def test_one_host_raises_its_own_error_unchanged() -> None:
    error = OperationalError("password authentication failed")
    with pytest.raises(OperationalError) as info:
        walk(host_plan(params(hosts="a")), {"a": error})
    assert info.value is error


def test_a_dead_host_is_dropped_and_the_next_one_tried() -> None:
    seen, chosen = walk(host_plan(params()), {"a": OperationalError("could not connect"), "b": PRIMARY})
    assert seen == ["a", "drop", "b"] and chosen.host == "b"


def test_read_write_skips_a_read_only_session() -> None:
    seen, chosen = walk(host_plan(params("read-write")), {"a": READ_ONLY, "b": PRIMARY})
    assert seen == ["a", "drop", "b"] and chosen.host == "b"


def test_a_server_that_does_not_report_its_state_is_asked() -> None:
    seen, chosen = walk(host_plan(params("read-only")), {"a": {}, "b": PRIMARY})
    assert seen == ["a", "ask"] and chosen.host == "a"


def test_no_fitting_host_names_each_refusal() -> None:
    with pytest.raises(OperationalError, match=r"target_session_attrs=standby\): a:5432: session is not standby; b:5432: down"):
        walk(host_plan(params("standby")), {"a": PRIMARY, "b": OperationalError("down")})


def test_prefer_standby_falls_back_to_any_server() -> None:
    seen, chosen = walk(host_plan(params("prefer-standby")), {"a": PRIMARY, "b": PRIMARY})
    assert seen == ["a", "drop", "b", "drop", "a"] and chosen.host == "a"


def test_a_plan_result_before_the_end_is_a_local_error() -> None:
    steps = PlanSteps(host_plan(params()))
    next(steps)
    with pytest.raises(LocalProtocolError):
        steps.result
