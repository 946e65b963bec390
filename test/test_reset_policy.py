"""The reset policy by name, and the legacy parameter of bags recorded before it existed."""

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
