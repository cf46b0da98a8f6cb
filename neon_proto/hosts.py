"""Which of several hosts to stay connected to: one sans-IO plan that every binding drives.

``host_plan`` walks ``connection_attempts`` (``load_balance_hosts``, ``prefer-standby``'s two
passes) and yields instructions: ``TryHost`` (connect to the one server these parameters
name; send back its ParameterStatus values, or throw the OperationalError the attempt
raised), ``AskSessionState`` (run ``SESSION_STATE_SQL``; send back its row) and ``DropHost``
(close that connection: another host follows). It returns the parameters of the host the
binding stays connected to, or raises OperationalError naming why each host was refused.
A single host with ``target_session_attrs=any`` is one ``TryHost`` that need not wait for
the login (a pipelined connect stays pipelined), and its error is raised as it is.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Mapping, Union

import attrs

from neon_proto.conninfo import (
    SESSION_STATE_SQL,
    ConnectionParams,
    HostTarget,
    connection_attempts,
    session_matches,
    session_state,
)
from neon_proto.errors import OperationalError

__all__ = ["TryHost", "AskSessionState", "DropHost", "HostStep", "host_plan"]


@attrs.frozen
class TryHost:
    """Connect to the one server ``params`` names; with ``wait`` finish the login first and
    send back the server's parameters (ParameterStatus); without, send back nothing."""

    params: ConnectionParams
    wait: bool = True


@attrs.frozen
class AskSessionState:
    """Run ``sql`` on the connection just made (a server before PostgreSQL 14 does not report
    ``in_hot_standby``); send back its one row: (in recovery, transaction_read_only) as text."""

    sql: str = SESSION_STATE_SQL


@attrs.frozen
class DropHost:
    """Close the connection just made (it failed, or its session does not fit)."""


HostStep = Union[TryHost, AskSessionState, DropHost]


def host_plan(
    params: ConnectionParams, shuffle: Callable[[list[HostTarget]], None] | None = None
) -> Generator[HostStep, Any, ConnectionParams]:
    """Connect to the first host whose session fits ``target_session_attrs``; see the module docstring."""
    attempts = connection_attempts(params, shuffle)
    if len(attempts) == 1 and attempts[0][1] == "any":
        yield TryHost(attempts[0][0], wait=False)
        return attempts[0][0]
    failures = []
    for one, wanted in attempts:
        try:
            reported: Mapping[str, str] = yield TryHost(one)
            state = session_state(reported)
            if state is None:
                standby, read_only = yield AskSessionState()
                state = standby == "true", read_only == "on" or standby == "true"
            if session_matches(wanted, *state):
                return one
            failures.append(f"{one.hosts[0]}: session is not {wanted}")
        except OperationalError as exc:
            failures.append(f"{one.hosts[0]}: {exc}")
        yield DropHost()
    raise OperationalError(
        f"no server matched (target_session_attrs={params.target_session_attrs}): " + "; ".join(failures)
    )
