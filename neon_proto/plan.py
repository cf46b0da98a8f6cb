"""Walking a sans-IO plan: the send-and-throw loop every binding would otherwise write.

A plan (``neon_proto.connect.connect_plan``, ``neon_proto.hosts.host_plan``) is a generator
of instructions. ``PlanSteps`` turns it into an iterator for a binding's ``for`` loop: the
binding performs each step, then ``answer``s what it produced or ``fail``s with the error
the plan may handle; once the plan returns, ``result`` holds its value.
"""

from __future__ import annotations

from typing import Any, Generator, Generic, TypeVar

from neon_proto.errors import LocalProtocolError

__all__ = ["PlanSteps"]

S = TypeVar("S")
R = TypeVar("R")


class PlanSteps(Generic[S, R]):
    """The steps of ``plan``, one per iteration; see the module docstring."""

    __slots__ = ("_plan", "_value", "_error", "_result", "_done")

    def __init__(self, plan: Generator[S, Any, R]) -> None:
        self._plan = plan
        self._value: Any = None
        self._error: BaseException | None = None
        self._result: R | None = None
        self._done = False

    def __iter__(self) -> PlanSteps[S, R]:
        return self

    def __next__(self) -> S:
        value, error = self._value, self._error
        self._value = self._error = None
        try:
            return self._plan.throw(error) if error is not None else self._plan.send(value)
        except StopIteration as stop:
            self._result = stop.value
            self._done = True
            raise StopIteration from None

    def answer(self, value: Any) -> None:
        """What the step just performed produced (the plan receives it at the next step)."""
        self._value = value

    def fail(self, error: BaseException) -> None:
        """The step failed: the error is thrown into the plan at the next step."""
        self._error = error

    def close(self) -> None:
        """Abandon the plan (a cancellation, an error it was not given)."""
        self._plan.close()

    @property
    def result(self) -> R:
        """What the plan returned."""
        if not self._done:
            raise LocalProtocolError("the plan has not finished")
        return self._result  # type: ignore[return-value]
