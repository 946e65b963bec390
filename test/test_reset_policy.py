"""The reset policy by name, the legacy parameter of old bags, and the never-reset demo summary."""

from __future__ import annotations

import pytest

from aura_mem_ros import reset_policy
from aura_mem_ros.reset_policy import ResetPolicy


def test_policies_say_what_resets() -> None:
    table = {
        p: (p.resets_on_instruction, p.resets_on_request, p.memory_follows_instruction)
        for p in ResetPolicy
    }
    assert table == {
        ResetPolicy.INSTRUCTION_CHANGE: (True, True, True),
        ResetPolicy.SERVICE: (False, True, False),
        ResetPolicy.NEVER: (False, False, False),
    }
    assert reset_policy.DEFAULT_RESET_POLICY is ResetPolicy.INSTRUCTION_CHANGE


def test_from_params_reads_new_and_legacy_names() -> None:
    assert reset_policy.from_params({}) is ResetPolicy.INSTRUCTION_CHANGE
    assert reset_policy.from_params({"reset_policy": "never"}) is ResetPolicy.NEVER
    assert reset_policy.from_params({"on_instruction_change": "keep"}) is ResetPolicy.SERVICE
    assert (
        reset_policy.from_params({"on_instruction_change": "reset"})
        is ResetPolicy.INSTRUCTION_CHANGE
    )
    # the new name wins over a stale legacy one
    params = {"reset_policy": "never", "on_instruction_change": "reset"}
    assert reset_policy.from_params(params) is ResetPolicy.NEVER
    with pytest.raises(ValueError, match="instruction_change"):
        reset_policy.from_params({"reset_policy": "sometimes"})
    with pytest.raises(ValueError, match="keep"):
        reset_policy.from_params({"on_instruction_change": "forget"})


def test_demo_summary_counts_writes_at_new_cues() -> None:
    from aura_mem_ros.demo.runner import cue_writes

    def ep(i: int, cue: str, seen: int | None, writes: list[int]) -> dict:
        return {"episode": i, "cue": cue, "cue_first_seen": seen, "write_steps": writes}

    results = [
        ep(0, "key", 1, [1]),  # wrote at the cue
        ep(1, "ball", 2, [0]),  # new cue, but the write came before it was seen
        ep(2, "ball", 0, []),  # same cue: not a new one
        ep(3, "key", None, []),  # new cue never looked at (a stale memory was trusted)
        ep(4, "ball", 3, [5]),  # new cue, written after it was seen
    ]
    assert cue_writes(list(reversed(results))) == {
        "episodes_with_cue_write": 2,
        "new_cue_episodes": 3,
        "new_cue_episodes_seen": 2,
        "new_cue_episodes_with_write": 1,
    }
