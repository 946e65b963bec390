"""The ``aura_mem`` lifecycle node: camera + instruction in, gated-memory actions out.

configure: load the backbone and the AURA layer, restore memory, create the endpoints.
activate: start serving frames. deactivate: publish the safe action, stop serving.
cleanup: drop the model. /diagnostics runs in every state, so a failed configure is visible.

Threading: executor callbacks only copy messages and hand the newest frame to ONE worker
thread; a frame that arrives while the worker is busy is counted as dropped, never queued
(a queue would only make the robot act on ever older images).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import (
    PublisherEventCallbacks,
    QoSOfferedIncompatibleQoSInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSPolicyKind
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32, String, UInt64
from std_srvs.srv import Trigger

from aura_mem_ros.msg import AuraAction, MemoryStats
from aura_mem_ros.persistence import MemoryStore
from aura_mem_ros.ros import diagnostics, outputs, parameters, qos
from aura_mem_ros.ros.inputs import joint_state_to_proprio, message_to_rgb, stamp_age_s
from aura_mem_ros.ros.pipeline import AuraPipeline, InputRejectedError, StepResult, SupersededError
from aura_mem_ros.ros.stats import NodeStats
from aura_mem_ros.serving import ServingSpec

NODE_NAME = "aura_mem"
LOG_EVERY_S = 1.0  # per rejection reason, so a broken camera cannot flood the log


def _stamp_ns(stamp: TimeMsg) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class AuraMemNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        parameters.declare_all(self)
        self.params = parameters.read_all(self)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self.stats = NodeStats(self.params.latency_window, self.params.warmup_steps)
        self.pipeline: AuraPipeline | None = None
        self.configure_error = ""
        self._state_label = "unconfigured"
        self._active = False
        self._busy = False
        self._busy_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aura_infer")
        self._latest_wrist: Image | CompressedImage | None = None
        self._latest_proprio: JointState | None = None
        self._proprio_arrived = threading.Condition()
        self._last_log: dict[str, float] = {}
        self._last_frame_monotonic = time.monotonic()
        self._qos_problems: list[str] = []  # "topic: POLICY", reported on /diagnostics
        self._prev_snapshot = None
        self._entities: list[Any] = []  # created in configure, destroyed in cleanup
        self._stats_timer = None
        self._action_pub = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.reliable_qos())
        self._diag_timer = self.create_timer(
            self.params.diagnostics_period_s, self._on_diagnostics_timer
        )

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load backbone + memory and create endpoints; FAILURE (with ERROR diagnostics) on any
        problem, leaving the node unconfigured and alive so it can be fixed and retried."""
        p = self.params
        try:
            torch.set_num_threads(p.torch_threads)
            spec = ServingSpec.from_params(dataclasses.asdict(p))
            backbone = spec.build_backbone()
            runtime, model_id = spec.build_runtime(backbone)
            clamp = spec.clamp(backbone)
            if p.use_wrist_image != (backbone.num_images >= 2):
                raise ValueError(
                    f"backbone {p.backbone} takes {backbone.num_images} image(s) but "
                    f"use_wrist_image={p.use_wrist_image}"
                )
            if p.use_proprio != (backbone.proprio_dim is not None):
                raise ValueError(
                    f"backbone {p.backbone} has proprio_dim={backbone.proprio_dim} "
                    f"but use_proprio={p.use_proprio}"
                )
            store = (
                MemoryStore(p.state_file, runtime.state_nbytes, p.persist_min_interval_s)
                if p.state_file
                else None
            )
        except Exception as exc:  # configure must fail cleanly, whatever the backbone raises
            self.configure_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed: {self.configure_error}")
            return TransitionCallbackReturn.FAILURE
        if clamp.enabled and backbone.discrete:
            self.get_logger().warning(
                "action_min/max ignored: the backbone outputs discrete "
                "logits, and clamping logits would change the argmax"
            )
        self.configure_error = ""
        self.stats.reset_counters()
        self.pipeline = AuraPipeline(
            backbone,
            runtime,
            model_id,
            self.stats,
            clamp,
            store,
            log=self.get_logger().info,
            reset_policy=p.reset_policy,
        )
        if p.instruction:
            self._apply_instruction(p.instruction)
        self._create_endpoints()
        self._state_label = "inactive"
        self.get_logger().info(
            f"configured: backbone={p.backbone} aura_checkpoint={p.aura_checkpoint!r} "
            f"model_id={model_id} gate={p.gate} "
            f"state={runtime.state_nbytes} B d_model={backbone.d_model} "
            f"action={backbone.chunk_size}x{backbone.action_dim} aura_step={runtime.step_path}"
        )
        self.get_logger().info(backbone.describe())  # the backbone's active conventions
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start serving frames (subscriptions exist since configure; callbacks check this)."""
        self._active = True
        self._last_frame_monotonic = time.monotonic()  # the dropout clock starts at activation
        self._state_label = "active"
        self.stats.set_active(True)
        self.get_logger().info(
            "active: serving actions"
            + (" (dry_run: not publishing ~/action)" if self.params.dry_run else "")
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop serving, let the in-flight inference finish, then publish the safe action."""
        self._active = False
        self._idle.wait(timeout=5.0)
        self._publish_safe_action()
        self.stats.set_active(False)
        self._flush_state()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop model, memory and endpoints (configure may then run again)."""
        self._teardown()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Final stop from any state: safe action if serving, flush memory, release all."""
        if self._active:
            self._active = False
            self._idle.wait(timeout=5.0)
            self._publish_safe_action()
            self.stats.set_active(False)
        self._teardown()
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop serving and drop everything; the node stays alive."""
        self._active = False
        self.get_logger().error("lifecycle error: releasing the model")
        self._teardown()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def autostart(self) -> bool:
        """configure + activate when the ``autostart`` parameter is true; True if active."""
        if not self.params.autostart:
            return False
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the worker and flush memory; safe on a node whose constructor failed."""
        self._active = False
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)
            self._flush_state()
        super().destroy_node()

    # ------------------------------------------------------------------ endpoints
    def _create_endpoints(self) -> None:
        p = self.params
        image_type = CompressedImage if p.use_compressed else Image
        suffix = "/compressed" if p.use_compressed else ""
        cam = qos.sensor_qos()
        events = self._qos_event_callbacks
        subs = [
            self.create_subscription(
                image_type,
                "image" + suffix,
                self._on_image,
                cam,
                event_callbacks=events("image" + suffix),
            ),
            self.create_subscription(
                String,
                "instruction",
                self._on_instruction,
                qos.instruction_qos(),
                event_callbacks=events("instruction"),
            ),
        ]
        if p.use_wrist_image:
            subs.append(
                self.create_subscription(
                    image_type,
                    "wrist_image" + suffix,
                    self._on_wrist_image,
                    cam,
                    event_callbacks=events("wrist_image" + suffix),
                )
            )
        if p.use_proprio:
            subs.append(
                self.create_subscription(
                    JointState,
                    "proprio",
                    self._on_proprio,
                    qos.sensor_qos(),
                    event_callbacks=events("proprio"),
                )
            )
        self._action_pub = self.create_publisher(
            AuraAction,
            "~/action",
            qos.reliable_qos(),
            event_callbacks=PublisherEventCallbacks(
                incompatible_qos=lambda info: self._on_incompatible_qos("~/action", info)
            ),
        )
        self._stats_pub = self.create_publisher(MemoryStats, "~/stats", qos.reliable_qos())
        self._rate_pub = self.create_publisher(Float32, "~/write_rate", qos.reliable_qos())
        self._writes_pub = self.create_publisher(UInt64, "~/writes_total", qos.reliable_qos())
        self._steps_pub = self.create_publisher(UInt64, "~/steps_total", qos.reliable_qos())
        self._latency_pub = self.create_publisher(Float32, "~/latency_p95_ms", qos.reliable_qos())
        self._reset_srv = self.create_service(Trigger, "~/reset_memory", self._on_reset_memory)
        self._stats_timer = self.create_timer(1.0 / p.stats_rate_hz, self._on_stats_timer)
        self._entities = [
            *subs,
            self._action_pub,
            self._stats_pub,
            self._rate_pub,
            self._writes_pub,
            self._steps_pub,
            self._latency_pub,
            self._reset_srv,
            self._stats_timer,
        ]

    def _qos_event_callbacks(self, topic: str) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(
            incompatible_qos=lambda info: self._on_incompatible_qos(topic, info)
        )

    def _on_incompatible_qos(
        self, topic: str, info: QoSRequestedIncompatibleQoSInfo | QoSOfferedIncompatibleQoSInfo
    ) -> None:
        """A peer on ``topic`` has QoS we cannot talk to: nothing will flow, so say it loudly
        (logged once per topic and policy, WARN on /diagnostics while the node lives)."""
        policy = QoSPolicyKind(info.last_policy_kind).name
        text = f"{topic}: {policy}"
        if text not in self._qos_problems:
            self._qos_problems.append(text)
            self.get_logger().warning(
                f"a peer on '{topic}' has incompatible QoS ({policy}); no messages will flow "
                "between them"
            )

    def _teardown(self) -> None:
        self._idle.wait(timeout=5.0)
        self._flush_state()
        for entity in self._entities:
            if isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            elif isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            elif isinstance(entity, Service):
                self.destroy_service(entity)
            elif isinstance(entity, Timer):
                self.destroy_timer(entity)
        self._entities = []
        self._action_pub = None
        self._stats_timer = None
        self.pipeline = None
        self._latest_wrist = None
        self._latest_proprio = None

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Hand the newest frame to the worker, or count it as dropped if the worker is busy."""
        if not self._active or self.pipeline is None:
            return
        self._last_frame_monotonic = time.monotonic()
        with self._busy_lock:
            if self._busy:
                self.stats.record_dropped()
                return
            self._busy = True
            self._idle.clear()
        try:
            self._worker.submit(self._infer, msg, self._latest_wrist, self._latest_proprio)
        except RuntimeError:  # worker already shut down (node being destroyed)
            with self._busy_lock:
                self._busy = False
                self._idle.set()

    def _on_wrist_image(self, msg: Image | CompressedImage) -> None:
        """Keep only the newest wrist frame; it is paired with the next primary frame."""
        self._latest_wrist = msg

    def _on_proprio(self, msg: JointState) -> None:
        """Keep only the newest joint state; converted (and validated) with the next frame."""
        with self._proprio_arrived:
            self._latest_proprio = msg
            self._proprio_arrived.notify_all()

    def _on_instruction(self, msg: String) -> None:
        """A new task: reset or keep memory per ``reset_policy``."""
        if self.pipeline is not None:
            self._apply_instruction(msg.data)

    def _on_reset_memory(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        """std_srvs/Trigger: clear memory (and the state file) now, unless reset_policy is
        never (then success is false and memory is kept)."""
        if self.pipeline is None:
            response.success = False
            response.message = "not configured"
            return response
        if not self.pipeline.request_reset():
            self.get_logger().info("~/reset_memory refused: reset_policy is never")
            response.success = False
            response.message = "memory kept: reset_policy is never"
            return response
        self.get_logger().info("memory reset by ~/reset_memory")
        response.success = True
        response.message = f"memory reset ({self.pipeline.runtime.state_nbytes} bytes cleared)"
        return response

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        """Refresh the snapshot so live parameters (dry_run, limits, ...) take effect now."""
        self.params = parameters.read_all(self)

    def _on_stats_timer(self) -> None:
        """Publish ~/stats and the rqt_plot-friendly numeric topics."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        snap = self.stats.snapshot()
        msg = outputs.stats_msg(snap, pipeline, self.get_clock().now().to_msg())
        self._stats_pub.publish(msg)
        self._rate_pub.publish(Float32(data=msg.write_rate))
        self._writes_pub.publish(UInt64(data=snap.writes))
        self._steps_pub.publish(UInt64(data=snap.steps))
        self._latency_pub.publish(Float32(data=msg.latency_p95_ms))

    def _on_diagnostics_timer(self) -> None:
        """Publish /diagnostics (every state) and flush a coalesced memory state when due."""
        pipeline = self.pipeline
        if pipeline is not None and pipeline.store is not None:
            pipeline.store.poll()
        snap = self.stats.snapshot()
        p = self.params
        silence = time.monotonic() - self._last_frame_monotonic if self._active else None
        d = diagnostics.collect(
            snap,
            self._prev_snapshot,
            pipeline,
            p,
            self._state_label,
            self.configure_error,
            camera_silence_s=silence,
            qos_problems=tuple(self._qos_problems),
        )
        self._prev_snapshot = snap
        statuses = diagnostics.run_tasks(d)
        self._diag_pub.publish(
            diagnostics.build_array(
                statuses,
                self.get_name(),
                f"{self.get_name()}/{p.backbone}",
                self.get_clock().now().to_msg(),
            )
        )

    # ------------------------------------------------------------------ worker
    def _infer(
        self,
        msg: Image | CompressedImage,
        wrist: Image | CompressedImage | None,
        proprio_msg: JointState | None,
    ) -> None:
        """Worker thread: check freshness, convert, infer, publish, persist. Never raises."""
        started = time.perf_counter()
        pipeline = self.pipeline
        try:
            if pipeline is None:
                return
            p = self.params
            now_ns = self.get_clock().now().nanoseconds
            if self._is_stale("frame", msg.header.stamp, now_ns):
                return
            images = [message_to_rgb(msg, p.max_image_pixels)]
            if p.use_wrist_image:
                if wrist is None:
                    raise InputRejectedError(
                        "image_count", "no wrist image received yet; the backbone needs 2 images"
                    )
                # A dead wrist camera must not leave the policy looking at its last frame.
                if self._is_stale("wrist image", wrist.header.stamp, now_ns):
                    return
                images.append(message_to_rgb(wrist, p.max_image_pixels))
            proprio = None
            if p.use_proprio:
                proprio_msg = self._await_proprio(proprio_msg, msg.header.stamp)
                if proprio_msg is None:
                    raise InputRejectedError("missing_proprio", "no JointState received on proprio")
                # Many joint-state publishers leave the stamp unset: only a set one is checked.
                stamp = proprio_msg.header.stamp
                if (stamp.sec or stamp.nanosec) and self._is_stale("proprio", stamp, now_ns):
                    return
                proprio = joint_state_to_proprio(
                    proprio_msg,
                    p.proprio_joint_names,
                    p.proprio_fields,
                    pipeline.backbone.proprio_dim,
                )
            result = pipeline.step(images, proprio, started)
            if self._active and not self.params.dry_run:
                self._publish_action(result, msg)
            pipeline.persist(result)
        except InputRejectedError as rej:
            self.stats.record_rejected(rej.reason, rej.message)
            self._log_throttled(rej.reason, f"input rejected ({rej.reason}): {rej.message}")
        except SupersededError:
            pass  # memory was reset mid-step; the result belongs to the old task
        except Exception as exc:  # a bug here must not kill the worker or the node
            self.stats.record_rejected("memory_error", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(f"inference failed: {exc}\n{traceback.format_exc()}")
        finally:
            with self._busy_lock:
                self._busy = False
                self._idle.set()

    def _await_proprio(self, current: JointState | None, frame_stamp: TimeMsg) -> JointState | None:
        """The joint state that goes with a frame: when both are stamped and the newest joint
        state is older than the frame, wait up to ``proprio_sync_s`` for a newer one.

        The executor delivers the image and the joint state of one instant in subscription
        order, so without this the policy would often see the PREVIOUS step's joints.
        """
        deadline = time.monotonic() + self.params.proprio_sync_s
        frame_ns = _stamp_ns(frame_stamp)
        with self._proprio_arrived:
            while current is not None and frame_ns > 0:
                joint_ns = _stamp_ns(current.header.stamp)
                remaining = deadline - time.monotonic()
                if joint_ns == 0 or joint_ns >= frame_ns or remaining <= 0:
                    break
                self._proprio_arrived.wait(remaining)  # woken by _on_proprio, no polling
                current = self._latest_proprio
        return current

    def _is_stale(self, what: str, stamp: TimeMsg, now_ns: int) -> bool:
        """Count and log an input older than ``max_obs_age_s`` (or unstamped); True if so."""
        limit = self.params.max_obs_age_s
        age = stamp_age_s(stamp, now_ns)
        if abs(age) <= limit:
            return False
        self.stats.record_stale()
        if math.isinf(age):
            self._log_throttled(
                f"unstamped {what}",
                f"{what} has a zero header.stamp, so its age is unknown; no action",
            )
        else:
            self._log_throttled(
                f"stale {what}", f"{what} is {age:.3f} s old (max_obs_age_s={limit}); no action"
            )
        return True

    def _publish_action(self, result: StepResult, source: Image | CompressedImage) -> None:
        pub = self._action_pub
        if pub is None:
            return
        pub.publish(outputs.action_msg(result, source.header))

    def _publish_safe_action(self) -> None:
        """On stop: zeros, or the last action held ('hold'); skipped in dry_run."""
        pipeline, pub = self.pipeline, self._action_pub
        if pipeline is None or pub is None or self.params.dry_run:
            return
        b = pipeline.backbone
        action = np.zeros((b.chunk_size, b.action_dim), np.float32)
        if self.params.safe_action == "hold" and pipeline.last_action is not None:
            action = pipeline.last_action
        stamp = self.get_clock().now().to_msg()
        pub.publish(outputs.safe_action_msg(action, self.stats.snapshot().steps, stamp))
        self.get_logger().info(f"published safe action ({self.params.safe_action})")

    # ------------------------------------------------------------------ helpers
    def _apply_instruction(self, text: str) -> None:
        assert self.pipeline is not None
        try:
            what = self.pipeline.set_instruction(text)
        except InputRejectedError as rej:
            self.stats.record_rejected(rej.reason, rej.message)
            self._log_throttled(rej.reason, f"input rejected ({rej.reason}): {rej.message}")
            return
        if what != "unchanged":
            # Throttled: a publisher flooding alternating instructions must not flood the log.
            self._log_throttled("instruction", f"instruction {text!r} ({what})", info=True)

    def _flush_state(self) -> None:
        pipeline = self.pipeline
        if pipeline is not None and pipeline.store is not None:
            pipeline.store.flush()

    def _log_throttled(self, key: str, text: str, info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last_log[key] = now
            # rclpy refuses two severities from one call site, hence two calls.
            if info:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)
