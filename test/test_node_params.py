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


def test_parameter_services_answer_for_every_declared_name(make_rig) -> None:
    """What ``ros2 param list / dump / describe`` send: every name in ONE request."""
    from rcl_interfaces.srv import (
        DescribeParameters,
        GetParameters,
        GetParameterTypes,
        ListParameters,
    )

    rig: Rig = make_rig()
    rig.start()

    def call(srv_type, service: str, request):
        client = rig.client.create_client(srv_type, f"/aura_mem/{service}")
        assert rig.spin_until(client.service_is_ready), service
        future = client.call_async(request)
        assert rig.spin_until(future.done), service
        return future.result()

    listed = call(ListParameters, "list_parameters", ListParameters.Request()).result.names
    assert {s.name for s in parameters.SPECS} <= set(listed)
    got = call(GetParameters, "get_parameters", GetParameters.Request(names=listed))
    assert len(got.values) == len(listed)
    assert all(v.type != 0 for v in got.values)  # every one SET (0 = PARAMETER_NOT_SET)
    described = call(
        DescribeParameters, "describe_parameters", DescribeParameters.Request(names=listed)
    )
    assert [d.name for d in described.descriptors] == list(listed)
    types = call(GetParameterTypes, "get_parameter_types", GetParameterTypes.Request(names=listed))
    assert len(types.types) == len(listed) and 0 not in types.types
    by_name = dict(zip(listed, got.values, strict=True))
    assert by_name["action_min"].type == Parameter.Type.DOUBLE_ARRAY.value
    assert list(by_name["proprio_joint_names"].string_array_value) == []


def test_typed_empty_arrays_stay_read_only_and_take_start_up_values(ros_context) -> None:
    node = AuraMemNode(
        context=ros_context,
        parameter_overrides=[Parameter("action_min", value=[-1.0])],
    )
    try:
        assert list(node.get_parameter("action_min").value) == [-1.0]
        assert node.get_parameter("action_max").type_ == Parameter.Type.DOUBLE_ARRAY
        for name in ("action_min", "action_max", "proprio_joint_names"):
            assert node.describe_parameter(name).read_only
        assert not node.set_parameters([Parameter("action_max", value=[1.0])])[0].successful
    finally:
        node.destroy_node()
