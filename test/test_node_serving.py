"""The aura_mem node serving the toy backbone in-process: actions, timing, safety, reports."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.parameter import Parameter
from test_node_support import Rig, rgb, rig_fixture, values

from aura_mem_ros.backbones import Observation

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


def test_action_carries_source_stamp_shape_and_memory_flags(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    msg = rig.image(10)
    rig.send(msg, expect_action=True)
    action = rig.actions[-1]
    assert action.header.stamp == msg.header.stamp
    assert action.header.frame_id == "cam"
    assert (action.chunk_size, action.action_dim) == (2, 3)
    assert len(action.action) == 6
    assert action.wrote is True and action.write_prob == pytest.approx(1.0)  # gate "always"
    assert action.step == 1
    assert action.latency_ms > 0


def test_untrained_memory_reproduces_the_backbone_action(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    rig.send(rig.image(3), expect_action=True)
    backbone = rig.node.pipeline.backbone
    base = backbone.step(Observation((rgb(3),), "pick up the cup")).action
    np.testing.assert_allclose(np.asarray(rig.actions[-1].action).reshape(2, 3), base, atol=1e-6)


def test_stale_and_unstamped_frames_give_no_action(make_rig) -> None:
    rig: Rig = make_rig(max_obs_age_s=0.5)
    rig.start()
    old = rig.image(1)
    old.header.stamp.sec -= 3
    rig.send(old, expect_action=False)
    unstamped = rig.image(2)
    unstamped.header.stamp = Time()
    rig.send(unstamped, expect_action=False)
    snap = rig.node.stats.snapshot()
    assert snap.stale_frames == 2 and snap.steps == 0
    status = rig.latest_status("inputs", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert "stale" in status.message
    rig.send(rig.image(3), expect_action=True)  # still serving


def test_frames_arriving_while_busy_are_dropped_not_queued(make_rig) -> None:
    rig: Rig = make_rig(backbone_args='{"d_model": 16, "delay_s": 0.6}', max_obs_age_s=5.0)
    rig.start()
    for value in range(4):
        rig.image_pub.publish(rig.image(value))
        rig.spin_for(0.05)
    assert rig.spin_until(lambda: rig.node._idle.is_set() and rig.node.stats.snapshot().steps)
    rig.spin_for(0.8)  # a queued frame would be processed now
    snap = rig.node.stats.snapshot()
    assert snap.steps == 1
    assert snap.dropped_frames == 3
    assert len(rig.actions) == 1


def test_clamp_bounds_actions_and_counts_clips(make_rig) -> None:
    rig: Rig = make_rig(action_min=[-0.01], action_max=[0.01])
    rig.start()
    rig.send(rig.image(5), expect_action=True)
    assert np.all(np.abs(np.asarray(rig.actions[-1].action)) <= 0.01 + 1e-7)
    assert rig.node.stats.snapshot().clipped_steps == 1
    # reported on /diagnostics too (raises if no report ever says so)
    rig.latest_status("inputs", where=lambda s: values(s)["clipped_steps"] == "1")


def test_dry_run_computes_but_publishes_nothing_and_is_live(make_rig) -> None:
    rig: Rig = make_rig(dry_run=True)
    rig.start()
    rig.send(rig.image(1), expect_action=False)
    assert rig.node.stats.snapshot().steps == 1
    result = rig.node.set_parameters([Parameter("dry_run", value=False)])[0]
    assert result.successful
    rig.send(rig.image(2), expect_action=True)


def test_first_inference_is_warmup_excluded_from_latency(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    for value in range(3):
        rig.send(rig.image(value), expect_action=True)
    snap = rig.node.stats.snapshot()
    assert snap.steps == 3 and snap.latency_samples == 2 and snap.warmup_left == 0


@pytest.mark.parametrize("mode", ["zero", "hold"])
def test_deactivate_publishes_safe_action(make_rig, mode: str) -> None:
    rig: Rig = make_rig(safe_action=mode)
    rig.start()
    rig.send(rig.image(9), expect_action=True)
    last = list(rig.actions[-1].action)
    rig.node.trigger_deactivate()
    assert rig.spin_until(lambda: len(rig.actions) == 2)
    safe = list(rig.actions[-1].action)
    assert safe == ([0.0] * 6 if mode == "zero" else last)
    rig.image_pub.publish(rig.image(1))
    rig.spin_for(0.2)
    assert len(rig.actions) == 2  # inactive: frames are ignored


def test_stats_and_plot_topics_report_counts(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    for value in range(2):
        rig.send(rig.image(value), expect_action=True)
    assert rig.spin_until(lambda: bool(rig.stats) and rig.stats[-1].steps == 2)
    stats = rig.stats[-1]
    assert stats.writes == 2 and stats.state_bytes == 4224
    assert stats.kv_equivalent_bytes == 2 * 256
    assert stats.writes_per_1k_steps == pytest.approx(1000.0)
    assert rig.spin_until(lambda: bool(rig.writes_total) and rig.writes_total[-1].data == 2)
    assert rig.spin_until(lambda: bool(rig.write_rates) and rig.write_rates[-1].data == 1.0)


def test_diagnostics_memory_keys_and_write_budget_warning(make_rig) -> None:
    rig: Rig = make_rig(write_rate_budget=0.5)
    rig.start()
    status = rig.latest_status("memory")
    assert status.level == DiagnosticStatus.OK
    for key in (
        "steps",
        "writes",
        "write_rate",
        "state_bytes",
        "kv_equivalent_bytes",
        "persisted_bytes",
        "projected_flash_lifetime_years",
        "always_write_flash_lifetime_years",
    ):
        assert key in values(status), key
    for value in range(20):  # gate "always": rate 1.0 > budget 0.5 once 20 steps are in
        rig.send(rig.image(value))
    status = rig.latest_status("memory", where=lambda s: values(s)["steps"] == "20")
    assert status.level == DiagnosticStatus.WARN
    assert "budget" in status.message


def test_latency_bound_warning(make_rig) -> None:
    rig: Rig = make_rig(max_latency_ms=0.01)
    rig.start()
    for value in range(2):
        rig.send(rig.image(value), expect_action=True)
    status = rig.latest_status("latency", where=lambda s: values(s)["samples"] == "1")
    assert status.level == DiagnosticStatus.WARN


def test_stale_wrist_image_blocks_the_action(make_rig) -> None:
    rig: Rig = make_rig(
        use_wrist_image=True, backbone_args='{"d_model": 16, "num_images": 2}', max_obs_age_s=0.5
    )
    rig.start()
    wrist = rig.image(4)
    wrist.header.stamp.sec -= 2  # the wrist camera died two seconds ago
    rig.wrist_pub.publish(wrist)
    assert rig.spin_until(lambda: rig.node._latest_wrist is not None)
    rig.send(rig.image(1), expect_action=False)
    assert rig.node.stats.snapshot().stale_frames == 1
    rig.wrist_pub.publish(rig.image(4))
    assert rig.spin_until(lambda: rig.node._latest_wrist.header.stamp.sec > wrist.header.stamp.sec)
    rig.send(rig.image(1), expect_action=True)


def test_lifecycle_cleanup_and_reconfigure(make_rig) -> None:
    rig: Rig = make_rig(autostart=False)
    assert not rig.node.autostart()  # autostart false: stays unconfigured
    assert rig.node.pipeline is None
    assert rig.node.trigger_configure() == Ret.SUCCESS
    rig.image_pub.publish(rig.image(0))
    rig.spin_for(0.2)
    assert rig.actions == []  # configured but not active: no actions
    assert rig.node.trigger_activate() == Ret.SUCCESS
    rig.send(rig.image(0), expect_action=True)
    assert rig.node.trigger_deactivate() == Ret.SUCCESS
    assert rig.node.trigger_cleanup() == Ret.SUCCESS
    assert rig.node.pipeline is None
    assert rig.node.trigger_configure() == Ret.SUCCESS
    assert rig.node.trigger_activate() == Ret.SUCCESS
    rig.send(rig.image(1), expect_action=True)
