"""Parameter declarations: descriptions, ranges, read-only and choices are enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter
from test_node_support import Rig, rig_fixture

from aura_mem_ros.ros import parameters
from aura_mem_ros.ros.aura_node import AuraMemNode

pytestmark = pytest.mark.timeout(60)
CONFIG = Path(__file__).resolve().parents[1] / "config" / "aura_mem.yaml"


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


def test_every_parameter_is_described(make_rig) -> None:
    rig: Rig = make_rig()
    for spec in parameters.SPECS:
        desc = rig.node.describe_parameter(spec.name)
        assert desc.description, spec.name
        assert desc.read_only is spec.read_only


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("backbone", "openvla_oft"),  # read-only
        ("state_file", "/tmp/x"),  # read-only
        ("max_obs_age_s", -1.0),  # out of range
        ("write_rate_budget", 1.5),  # out of range
        ("reset_policy", "never"),  # read-only: it also decides what the state file is bound to
        ("safe_action", "wiggle"),  # not a choice
    ],
)
def test_unsafe_or_invalid_live_changes_are_refused(make_rig, name: str, value) -> None:
    rig: Rig = make_rig()
    before = rig.node.get_parameter(name).value
    result = rig.node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful
    assert rig.node.get_parameter(name).value == before


def test_live_change_takes_effect(make_rig) -> None:
    rig: Rig = make_rig()
    assert rig.node.set_parameters([Parameter("max_obs_age_s", value=2.0)])[0].successful
    assert rig.node.params.max_obs_age_s == 2.0


def test_invalid_choice_at_startup_is_refused(ros_context) -> None:
    with pytest.raises(ValueError, match="safe_action"):
        AuraMemNode(
            context=ros_context, parameter_overrides=[Parameter("safe_action", value="wiggle")]
        )


def test_yaml_defaults_match_declared_defaults() -> None:
    data = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    for name, value in data.items():
        assert name in parameters.SPEC_BY_NAME, name
        assert value == parameters.SPEC_BY_NAME[name].default, name
    missing = {s.name for s in parameters.SPECS if s.type_ is None} - set(data)
    assert not missing, f"declared but not in the YAML: {missing}"


def test_markdown_table_lists_every_parameter() -> None:
    table = parameters.markdown_table()
    for spec in parameters.SPECS:
        assert f"| `{spec.name}` |" in table
