"""A small diagnostic updater in the style of ROS's diagnostic_updater (no wheel of it here).

    updater = DiagnosticUpdater(node, hardware_id="robot1/aura_mem/mini")
    updater.add("inputs", check)        # check(stat: StatusWrapper) -> None, fills stat
    updater.update()                    # run every check, publish one DiagnosticArray
    updater.broadcast(WARN, "finalized")  # the same message on every status (shutdown)

Like diagnostic_updater, status names are ``<node's fully qualified name without the leading
slash>: <check name>`` (``robot1/aura_mem: inputs``), so two nodes in two namespaces never
share a status in rqt_robot_monitor or the aggregator. A check that raises becomes an ERROR
status naming the exception instead of taking the timer (and every other status) down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


@dataclass
class StatusWrapper:
    """One status being filled by a check (diagnostic_updater's DiagnosticStatusWrapper)."""

    name: str
    level: bytes = ERROR
    message: str = "No message was set"
    values: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, level: bytes, message: str) -> None:
        self.level, self.message = level, message

    def add(self, key: str, value: Any) -> None:
        self.values.append((key, str(value)))


Check = Callable[[StatusWrapper], None]


def status_prefix(fully_qualified_name: str) -> str:
    """``/robot1/aura_mem`` -> ``robot1/aura_mem`` (what diagnostic_updater prefixes)."""
    return fully_qualified_name.lstrip("/")


class DiagnosticUpdater:
    """Named checks, run together, published as one DiagnosticArray on ``/diagnostics``."""

    def __init__(
        self,
        node: Any,
        publisher: Any,
        hardware_id: str = "",
        clock: Callable[[], TimeMsg] | None = None,
    ) -> None:
        self._node = node
        self._publisher = publisher
        self.hardware_id = hardware_id
        self._clock = clock or (lambda: node.get_clock().now().to_msg())
        self._checks: list[tuple[str, Check]] = []

    @property
    def prefix(self) -> str:
        return status_prefix(self._node.get_fully_qualified_name())

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._checks]

    def add(self, name: str, check: Check) -> None:
        if name in self.names:
            raise ValueError(f"diagnostic check {name!r} is already registered")
        self._checks.append((name, check))

    def remove(self, name: str) -> bool:
        before = len(self._checks)
        self._checks = [(n, c) for n, c in self._checks if n != name]
        return len(self._checks) < before

    def run(self) -> list[StatusWrapper]:
        """Every check's status (unpublished)."""
        out = []
        for name, check in self._checks:
            stat = StatusWrapper(name)
            try:
                check(stat)
            except Exception as exc:  # one broken check must not silence the others
                stat.summary(ERROR, f"diagnostic check failed: {type(exc).__name__}: {exc}")
            out.append(stat)
        return out

    def update(self) -> DiagnosticArray:
        return self.publish(self.run())

    def broadcast(self, level: bytes, message: str) -> DiagnosticArray:
        """The same level and message on every status: the node is not operating normally
        (finalized, shutting down) and no check's usual verdict applies."""
        statuses = []
        for name, _ in self._checks:
            stat = StatusWrapper(name)
            stat.summary(level, message)
            statuses.append(stat)
        return self.publish(statuses)

    def publish(self, statuses: list[StatusWrapper]) -> DiagnosticArray:
        array = DiagnosticArray()
        array.header.stamp = self._clock()
        prefix = self.prefix
        for st in statuses:
            msg = DiagnosticStatus()
            msg.level = st.level
            msg.name = f"{prefix}: {st.name}"
            msg.message = st.message
            msg.hardware_id = self.hardware_id
            msg.values = [KeyValue(key=k, value=v) for k, v in st.values]
            array.status.append(msg)
        self._publisher.publish(array)
        return array
