"""Test rig for the aura_mem node: the node under test plus a client node that talks to it.

Not a test module itself (no tests); imported by test_node_*.py. Everything runs in-process
on the test's own Context with discovery off, and every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from aura_mem_ros.msg import AuraAction, MemoryStats
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import spin_for, spin_until
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32, String, UInt64
from std_srvs.srv import Trigger

from aura_mem_ros.ros import qos
from aura_mem_ros.ros.aura_node import AuraMemNode
from aura_mem_ros.ros.image_conversion import rgb_to_image

# Small, fast defaults: the toy backbone, a known instruction, frequent reports.
BASE_PARAMS: dict[str, Any] = {
    "backbone": "toy",
    "backbone_args": '{"d_model": 16}',
    "instruction": "pick up the cup",
    "gate": "always",
    "use_proprio": False,  # the toy takes no proprio unless told to
    "stats_rate_hz": 20.0,
    "diagnostics_period_s": 0.1,
    # A loaded test machine can take longer than the shipped 0.5 s from a frame's stamp to
    # the published action; the freshness tests set their own limits.
    "max_obs_age_s": 5.0,
}


def rgb(value: int = 0, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    """A deterministic test image; different ``value`` -> a visibly different image."""
    img = np.zeros((*shape, 3), np.uint8)
    img[..., 0] = value % 256
    img[: shape[0] // 2, :, 1] = (value * 7) % 256
    return img


class Rig:
    def __init__(self, context: Context, executor: Executor, **params: Any) -> None:
        self.executor = executor
        self.closed = False
        merged = {**BASE_PARAMS, **params}
        self.node = AuraMemNode(
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in merged.items()],
        )
        self.client = Node("rig_client", context=context)
        executor.add_node(self.node)
        executor.add_node(self.client)
        c = self.client
        self.actions: list[AuraAction] = []
        self.stats: list[MemoryStats] = []
        self.diags: list[DiagnosticArray] = []
        self.write_rates: list[Float32] = []
        self.writes_total: list[UInt64] = []
        c.create_subscription(
            AuraAction, "/aura_mem/action", self.actions.append, qos.reliable_qos()
        )
        c.create_subscription(MemoryStats, "/aura_mem/stats", self.stats.append, qos.reliable_qos())
        c.create_subscription(
            DiagnosticArray, "/diagnostics", self.diags.append, qos.reliable_qos()
        )
        c.create_subscription(
            Float32, "/aura_mem/write_rate", self.write_rates.append, qos.reliable_qos()
        )
        c.create_subscription(
            UInt64, "/aura_mem/writes_total", self.writes_total.append, qos.reliable_qos()
        )
        self.image_pub = c.create_publisher(Image, "/image", qos.sensor_qos())
        self.wrist_pub = c.create_publisher(Image, "/wrist_image", qos.sensor_qos())
        self.compressed_pub = c.create_publisher(
            CompressedImage, "/image/compressed", qos.sensor_qos()
        )
        self.instruction_pub = c.create_publisher(String, "/instruction", qos.instruction_qos())
        self.proprio_pub = c.create_publisher(JointState, "/proprio", qos.sensor_qos())
        self.reset_client = c.create_client(Trigger, "/aura_mem/reset_memory")

    # -- driving
    def start(self) -> None:
        assert self.node.autostart(), self.node.configure_error

    def now(self) -> Any:
        return self.client.get_clock().now().to_msg()

    def image(self, value: int = 0, shape: tuple[int, int] = (24, 32)) -> Image:
        return rgb_to_image(rgb(value, shape), stamp=self.now(), frame_id="cam")

    def processed(self) -> int:
        s = self.node.stats.snapshot()
        return s.steps + s.stale_frames + s.rejected_inputs + s.superseded

    def send(self, msg: Image | CompressedImage, expect_action: bool | None = None) -> None:
        """Publish one frame and wait until the worker has finished with it."""
        before_processed, before_actions = self.processed(), len(self.actions)
        pub = self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub
        pub.publish(msg)
        assert self.spin_until(lambda: self.processed() > before_processed), "frame not handled"
        assert self.spin_until(lambda: self.node._idle.is_set())
        if expect_action is True:
            assert self.spin_until(lambda: len(self.actions) > before_actions), "no action"
        elif expect_action is False:
            spin_for(self.executor, 0.15)
            assert len(self.actions) == before_actions, "unexpected action"

    def instruct(self, text: str) -> None:
        before = self.node.stats.snapshot().rejected_inputs
        self.instruction_pub.publish(String(data=text))
        self.spin_until(
            lambda: (
                self.node.pipeline.instruction == text
                or self.node.stats.snapshot().rejected_inputs > before
            ),
            timeout_s=3.0,
        )

    def state(self) -> bytes:
        return self.node.pipeline.runtime.state_bytes()

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        return spin_until(self.executor, predicate, timeout_s)

    def spin_for(self, seconds: float) -> None:
        spin_for(self.executor, seconds)

    def latest_status(
        self,
        name: str,
        timeout_s: float = 3.0,
        where: Callable[[DiagnosticStatus], bool] | None = None,
    ) -> DiagnosticStatus:
        """The newest /diagnostics status ``aura_mem: name`` received so far (optionally one
        satisfying ``where``), waiting for one if there is none yet."""
        found: list[DiagnosticStatus] = []

        def check() -> bool:
            found.clear()
            for array in self.diags:
                for st in array.status:
                    if st.name == f"aura_mem: {name}" and (where is None or where(st)):
                        found.append(st)
            return bool(found)

        assert self.spin_until(check, timeout_s), f"no diagnostics status {name!r}"
        return found[-1]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for node in (self.node, self.client):
            self.executor.remove_node(node)
        self.node.destroy_node()
        self.client.destroy_node()


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def rig_fixture(context: Context, executor: Executor) -> Iterator[Callable[..., Rig]]:
    """Body of a ``make_rig`` fixture: ``make_rig(**params)`` -> started-later Rig."""
    rigs: list[Rig] = []

    def make(**params: Any) -> Rig:
        rig = Rig(context, executor, **params)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()
