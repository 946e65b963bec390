"""When the memory resets: the ``aura_mem`` node's ``reset_policy`` (rclpy-free).

A robot announces no episodes. What can clear the 4,224-byte memory is a new instruction
(the one task boundary a robot's task layer publishes) or an explicit ``~/reset_memory``
call (an operator, a test harness, the simulator between episodes):

    instruction_change   a new instruction resets; ~/reset_memory resets      (the default)
    service              only ~/reset_memory resets; memory carries across instructions
    never                nothing resets: instructions keep memory, ~/reset_memory refuses

Within one instruction the node never resets under any policy: a task may run for hours.

Why ``instruction_change`` is the default: it is safe with every layer. A backbone's
per-episode layer (every backbone ships one) was trained on episodes that start from empty
memory and cannot replace a stale cue with a new one (never reset on MiniGrid-Memory it falls
to chance, ``docs/results/never_reset_episodic.md``). A new instruction is exactly where a
stale cue would mislead it, it is the one task boundary a robot announces, and resetting
there costs nothing within a task. ``never`` serves the backbone's never-reset layer
(``aura_checkpoint: bundled`` -> ``aura_never_reset/``; ``mini`` and ``arm_mini`` ship
one, trained on streams of consecutive episodes: ``docs/results/never_reset.md``,
``docs/results/arm.md``); choose it for a robot
whose tasks follow one another without instructions that mark them, and expect about twice
the writes (the never-reset layer also marks the end of each use of a cue). Where a backbone
ships no never-reset layer the node warns and serves the per-episode one. ``service`` is for
a deployment whose supervisor knows better than the instruction stream when a task begins.

Persistence follows the policy: under ``instruction_change`` the state file is bound to the
model AND the instruction (a restart under another instruction starts fresh, as an
instruction change would); under ``service`` and ``never`` memory outlives instructions, so
the file is bound to the model only and a restart resumes it whatever the instruction.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ResetPolicy(StrEnum):
    INSTRUCTION_CHANGE = "instruction_change"
    SERVICE = "service"
    NEVER = "never"

    @property
    def resets_on_instruction(self) -> bool:
        return self is ResetPolicy.INSTRUCTION_CHANGE

    @property
    def resets_on_request(self) -> bool:
        """Does ``~/reset_memory`` clear memory (and the state file)?"""
        return self is not ResetPolicy.NEVER

    @property
    def memory_follows_instruction(self) -> bool:
        """Is memory bound to one instruction (and so is its state file)?"""
        return self.resets_on_instruction


DEFAULT_RESET_POLICY = ResetPolicy.INSTRUCTION_CHANGE
RESET_POLICIES: tuple[str, ...] = tuple(p.value for p in ResetPolicy)
# The parameter before reset_policy existed (bags recorded then still carry it).
LEGACY_PARAMETER = "on_instruction_change"
LEGACY_VALUES = {"reset": ResetPolicy.INSTRUCTION_CHANGE, "keep": ResetPolicy.SERVICE}


def parse(value: str) -> ResetPolicy:
    """``"never"`` -> ResetPolicy.NEVER; ValueError naming the choices otherwise."""
    try:
        return ResetPolicy(value)
    except ValueError:
        raise ValueError(f"reset_policy {value!r} is not one of {list(RESET_POLICIES)}") from None


def from_params(params: Mapping[str, Any]) -> ResetPolicy:
    """The policy of a node's (or a bag's stored) parameters. A bag recorded before
    ``reset_policy`` existed has ``on_instruction_change``: reset -> instruction_change,
    keep -> service (the node always honoured ``~/reset_memory`` then)."""
    if "reset_policy" in params:
        return parse(str(params["reset_policy"]))
    legacy = params.get(LEGACY_PARAMETER)
    if legacy is not None:
        if legacy not in LEGACY_VALUES:
            raise ValueError(f"{LEGACY_PARAMETER} {legacy!r} is not one of {list(LEGACY_VALUES)}")
        return LEGACY_VALUES[legacy]
    return DEFAULT_RESET_POLICY
