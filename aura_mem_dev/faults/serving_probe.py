"""Driving the node from outside for the serving rows: service calls (parameters, lifecycle
transitions), waiting, reading what the probe received, a node of its own for a row.

Shared by the issue-13 rows in ``freshness``, ``inputs``, ``transport``, ``stopping`` and
``tooling``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aura_mem_dev.faults.harness import NODE_MODULE, Probe, Received
from aura_mem_dev.faults.session import Session

STOP_BOUND_MS = 100.0  # safe action after a stop request; a transition's executor time
SLOW_STEP_S = 2.0  # the slow backbone of the timing rows (an inference "in flight")
TOY = {"backbone": "toy", "use_proprio": False, "aura_checkpoint": ""}

# Lifecycle transition ids (lifecycle_msgs/Transition).
CONFIGURE, CLEANUP, ACTIVATE, DEACTIVATE = 1, 2, 3, 4
SHUTDOWN_FROM = {"unconfigured": 5, "inactive": 6, "active": 7}


def stamp_ns_of(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return predicate()


def call_service(probe: Probe, srv_type: Any, service: str, request: Any, timeout_s: float = 10.0):
    """A service call from outside; returns (response or None, seconds from call to reply)."""
    client = probe.node.create_client(srv_type, service)
    try:
        if not wait_until(client.service_is_ready, timeout_s):
            return None, float("nan")
        t0 = time.monotonic()
        future = client.call_async(request)
        done = wait_until(future.done, timeout_s)
        took = time.monotonic() - t0
        return (future.result() if done else None), took
    finally:
        probe.node.destroy_client(client)


def set_param(probe: Probe, name: str, value: Any, node: str = "/aura_mem") -> bool:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    response, _ = call_service(probe, SetParameters, f"{node}/set_parameters", request)
    return response is not None and all(r.successful for r in response.results)


def transition(probe: Probe, transition_id: int, node: str = "/aura_mem") -> tuple[bool, float]:
    """ChangeState from outside: (accepted, seconds until the reply)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition_id))
    response, took = call_service(probe, ChangeState, f"{node}/change_state", request)
    return (response is not None and response.success), took


def actions_since(probe: Probe, index: int) -> list[Received]:
    with probe._lock:
        return list(probe.log.actions[index:])


def node_session(
    probe: Probe, domain: int, workdir: Path, name: str, overrides: dict[str, Any]
) -> Session:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    return Session(probe, domain, d, overrides, module=NODE_MODULE)


def inputs_delta(before: dict[str, str], after: dict[str, str], key: str) -> int:
    return int(after.get(key, 0)) - int(before.get(key, 0))


def latest_status(probe: Probe, name: str, since: int) -> Any | None:
    statuses = probe.statuses(name, since)
    return statuses[-1] if statuses else None
