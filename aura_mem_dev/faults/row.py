"""A row of the fault table: what was injected, what the node did, and NAMED checks.

Every pass criterion of a scenario is one named check (``row.check("no_step_consumed", ok,
"why it failed")``); the row passes when every check does. The tests assert the set of names
a scenario checks, so a reader sees there what each row of docs/results/reliability.md means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    passed: bool = True
    failures: list[str] = field(default_factory=list)  # one line per failed evaluation


@dataclass
class FaultRow:
    scenario: str
    injected: str = ""
    node_did: str = ""
    kept_running: bool = True
    memory_lost: str = ""  # starts with "no" when nothing the node should keep was lost
    diagnostics: str = ""
    checks: dict[str, Check] = field(default_factory=dict)
    seconds: float = 0.0

    def check(self, name: str, condition: bool, failure: str) -> bool:
        """Evaluate check ``name`` (again, for checks inside a loop: it passes only if every
        evaluation does); ``failure`` says what went wrong when ``condition`` is false."""
        c = self.checks.setdefault(name, Check(name))
        if not condition:
            c.passed = False
            c.failures.append(failure)
        return condition

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks.values())

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {f}" for c in self.checks.values() for f in c.failures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "injected": self.injected,
            "node_did": self.node_did,
            "kept_running": self.kept_running,
            "memory_lost": self.memory_lost,
            "diagnostics": self.diagnostics,
            "passed": self.passed,
            "checks": {c.name: c.passed for c in self.checks.values()},
            "failures": self.failures,
            "seconds": self.seconds,
        }
