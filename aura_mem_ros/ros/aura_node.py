"""The ``aura_mem`` lifecycle node: camera + instruction in, gated-memory actions out.

configure: load the backbone and the AURA layer, restore memory, create the endpoints.
activate: start serving frames. deactivate: publish the safe action, stop serving.
cleanup: drop the model. /diagnostics runs in every state, so a failed configure is visible;
after shutdown every status says the node is finalized.

Threading: executor callbacks only copy messages and hand the newest frame to ONE worker
thread; a frame that arrives while the worker is busy is counted as dropped, never queued
(a queue would only make the robot act on ever older images).

Stopping never waits for an inference: deactivate/shutdown publish the safe action at once
(within the transition, under the same lock every action is published under), and the
inference in flight ends discarded (its step is superseded before it touches memory, or its
action is refused at the publish gate). The ``~/action`` publisher is a lifecycle publisher:
it only publishes while the node is active.

The publish gate (``_publish_result``) is the only way a computed action leaves the node: it
checks, at that moment, that the serving session is the one the frame arrived in and that
every input behind the action is still younger than its maximum age (``freshness.py``).

Why one ~700-line class: it is the wiring (lifecycle, endpoints, callbacks, the worker's
sequence, the publish gate); every rule it applies lives in a small rclpy-free sibling
(pipeline, freshness, frame_rate, worker, stats, diagnostics, topics) with its own tests.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import (
    PublisherEventCallbacks,
    QoSOfferedIncompatibleQoSInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle.publisher import LifecyclePublisher
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
from aura_mem_ros.ros import diagnostics, outputs, parameters, qos, topics
from aura_mem_ros.ros.diag_updater import WARN, DiagnosticUpdater, status_prefix
from aura_mem_ros.ros.frame_rate import FrameRateMonitor
from aura_mem_ros.ros.freshness import ProprioBuffer, SourceTimes, stamp_ns
from aura_mem_ros.ros.inputs import (
    check_instruction,
    joint_state_to_proprio,
    message_to_rgb,
    short_text,
)
from aura_mem_ros.ros.pipeline import AuraPipeline, InputRejectedError, StepResult, SupersededError
from aura_mem_ros.ros.stats import NodeStats
from aura_mem_ros.ros.worker import LatestOnlyWorker
from aura_mem_ros.serving import ServingSpec

NODE_NAME = topics.NODE_NAME
LOG_EVERY_S = 1.0  # per rejection reason, so a broken camera cannot flood the log
FINALIZED = "finalized: the node was shut down and serves nothing"


def _timed_transition(
    callback: Callable[[AuraMemNode, LifecycleState], TransitionCallbackReturn],
) -> Callable[[AuraMemNode, LifecycleState], TransitionCallbackReturn]:
    """Log how long a transition held the executor (configure loads the model; the others
    must stay well under 100 ms: they never wait for an inference)."""

    name = callback.__name__[3:]

    @functools.wraps(callback)
    def timed(node: AuraMemNode, state: LifecycleState) -> TransitionCallbackReturn:
        if name == "configure":  # may take long: say that it started
            node.get_logger().info("transition configure started (loading the backbone)")
        t0 = time.perf_counter()
        try:
            return callback(node, state)
        finally:
            ms = (time.perf_counter() - t0) * 1e3
            node.get_logger().info(f"transition {name} took {ms:.1f} ms")

    return timed


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
        # Every computed action and the safe action are published under this lock, and
        # deactivation happens under it: nothing computed can follow the safe action.
        self._publish_lock = threading.Lock()
        self._session = 0  # +1 per activation; a frame's result only serves its own session
        self._worker = LatestOnlyWorker(self._infer)
        self._idle = self._worker.idle
        self._latest_wrist: Image | CompressedImage | None = None
        self._proprio = ProprioBuffer()
        self._frames = FrameRateMonitor(dropout_s=self.params.camera_timeout_s or 1.0)
        self._last_log: dict[str, float] = {}
        self._last_frame_monotonic = time.monotonic()
        self._qos_problems: list[str] = []  # "topic: POLICY", reported on /diagnostics
        self._prev_snapshot = None
        self._diag_input: diagnostics.DiagInput | None = None
        self._entities: list[Any] = []  # created in configure, destroyed in cleanup
        self._image_sub: Subscription | None = None
        self._stats_timer = None
        self._action_pub: LifecyclePublisher | None = None
        diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.reliable_qos())
        # Status names and hardware_id carry the node's namespace (robot1/aura_mem: inputs).
        self._diag = DiagnosticUpdater(
            self,
            diag_pub,
            hardware_id=f"{status_prefix(self.get_fully_qualified_name())}/{self.params.backbone}",
        )
        for name, rule in diagnostics.CHECKS:
            self._diag.add(name, diagnostics.as_check(rule, self._current_diag_input))
        self._diag_timer = self.create_timer(
            self.params.diagnostics_period_s, self._on_diagnostics_timer
        )

    # ------------------------------------------------------------------ lifecycle
    @_timed_transition
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
        if spec.never_reset_fallback(backbone):
            self.get_logger().warning(
                f"reset_policy never, but backbone {p.backbone} ships no never-reset AURA "
                "layer: serving its per-episode layer, which was trained with a reset before "
                "every episode and may keep acting on the first cue it stores"
            )
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

    @_timed_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start serving frames: the lifecycle publishers open, a new serving session begins."""
        with self._publish_lock:
            self._session += 1
        now = time.monotonic()
        self._last_frame_monotonic = now  # the dropout clock starts at activation
        self._frames.restart(now)
        self._frames.set_expected_rate(self._camera_rate_hz())
        self._state_label = "active"
        self.stats.set_active(True)
        self.get_logger().info(
            "active: serving actions"
            + (" (dry_run: not publishing ~/action)" if self.params.dry_run else "")
        )
        return super().on_activate(state)

    @_timed_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Publish the safe action now and stop serving; an inference in flight is not waited
        for, its result is discarded."""
        ret = self._stop_serving(state)
        self._flush_state()
        self._state_label = "inactive"
        return ret

    @_timed_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop model, memory and endpoints (configure may then run again)."""
        self._teardown()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    @_timed_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Final stop from any state: safe action if serving, flush memory, release all, and
        say so on /diagnostics (every status: finalized)."""
        if self._serving():
            self._stop_serving(state)
        self._teardown()
        self._state_label = "finalized"
        self._diag.broadcast(WARN, FINALIZED)
        return TransitionCallbackReturn.SUCCESS

    @_timed_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop serving and drop everything; the node stays alive."""
        if self._serving():
            self._stop_serving(state)
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
        """Stop the worker (never waiting for it) and flush memory; safe on a node whose
        constructor failed."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            with self._publish_lock:
                self._action_pub = None  # an inference still running can publish nothing
            worker.close()
            self._flush_state()
        super().destroy_node()

    def safe_stop(self) -> None:
        """The safe action and an end to serving, outside any transition: for a start-up cut
        short by a signal mid-transition (no transition can start then)."""
        if self._serving():
            self._stop_serving(None)

    def _serving(self) -> bool:
        pub = self._action_pub
        return pub is not None and pub.is_activated

    def _stop_serving(self, state: LifecycleState | None) -> TransitionCallbackReturn:
        """Safe action first, then the lifecycle publishers close; no waiting on the worker.

        The step in flight is superseded (it cannot write memory any more unless it already
        has), and whatever it computes is refused at the publish gate: its session is over.
        """
        with self._publish_lock:
            if self.pipeline is not None:
                self.pipeline.discard_in_flight()
            self._publish_safe_action()
            ret = super().on_deactivate(state)  # lifecycle publishers stop publishing here
        self.stats.set_active(False)
        return ret

    # ------------------------------------------------------------------ endpoints
    def _create_endpoints(self) -> None:
        p = self.params
        image_type = CompressedImage if p.use_compressed else Image
        suffix = topics.COMPRESSED_SUFFIX if p.use_compressed else ""
        cam = qos.sensor_qos()
        events = self._qos_event_callbacks
        image_topic = topics.INPUT_BY_NAME["image"].name + suffix
        self._image_sub = self.create_subscription(
            image_type, image_topic, self._on_image, cam, event_callbacks=events(image_topic)
        )
        instruction_topic = topics.INPUT_BY_NAME["instruction"].name
        subs = [
            self._image_sub,
            self.create_subscription(
                String,
                instruction_topic,
                self._on_instruction,
                qos.instruction_qos(),
                event_callbacks=events(instruction_topic),
            ),
        ]
        if p.use_wrist_image:
            wrist_topic = topics.INPUT_BY_NAME["wrist_image"].name + suffix
            subs.append(
                self.create_subscription(
                    image_type,
                    wrist_topic,
                    self._on_wrist_image,
                    cam,
                    event_callbacks=events(wrist_topic),
                )
            )
        if p.use_proprio:
            proprio_topic = topics.INPUT_BY_NAME["proprio"].name
            subs.append(
                self.create_subscription(
                    JointState,
                    proprio_topic,
                    self._on_proprio,
                    qos.proprio_qos(),
                    event_callbacks=events(proprio_topic),
                )
            )
        self._action_pub = self.create_lifecycle_publisher(
            AuraAction,
            "~/action",
            qos.reliable_qos(),
            event_callbacks=PublisherEventCallbacks(
                incompatible_qos=lambda info: self._on_incompatible_qos("~/action", info)
            ),
        )
        stats_qos = qos.reliable_qos()
        self._stats_pub = self.create_lifecycle_publisher(MemoryStats, "~/stats", stats_qos)
        self._rate_pub = self.create_lifecycle_publisher(Float32, "~/write_rate", stats_qos)
        self._writes_pub = self.create_lifecycle_publisher(UInt64, "~/writes_total", stats_qos)
        self._steps_pub = self.create_lifecycle_publisher(UInt64, "~/steps_total", stats_qos)
        self._latency_pub = self.create_lifecycle_publisher(Float32, "~/latency_p95_ms", stats_qos)
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
        """Release endpoints and the model without waiting for an inference in flight."""
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.discard_in_flight()
        self._flush_state()
        with self._publish_lock:  # the worker publishes under this lock: never on a dead pub
            self._action_pub = None
            for entity in self._entities:
                if isinstance(entity, LifecyclePublisher):
                    self.destroy_lifecycle_publisher(entity)
                elif isinstance(entity, Publisher):
                    self.destroy_publisher(entity)
                elif isinstance(entity, Subscription):
                    self.destroy_subscription(entity)
                elif isinstance(entity, Service):
                    self.destroy_service(entity)
                elif isinstance(entity, Timer):
                    self.destroy_timer(entity)
            self._entities = []
        self._image_sub = None
        self._stats_timer = None
        self.pipeline = None
        self._latest_wrist = None
        self._proprio.clear()

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Hand the newest frame to the worker, or count it as dropped if the worker is busy."""
        if not self._serving() or self.pipeline is None:
            return
        self._last_frame_monotonic = now = time.monotonic()
        self._frames.observe(stamp_ns(msg.header.stamp), now)
        # The memory epoch at arrival: a frame accepted before a stop, reset or task change
        # must not write memory after it, even if its inference only starts then.
        epoch = self.pipeline.epoch
        if not self._worker.offer(msg, self._latest_wrist, self._session, epoch):
            self.stats.record_dropped()

    def _on_wrist_image(self, msg: Image | CompressedImage) -> None:
        """Keep only the newest wrist frame; it is paired with the next primary frame."""
        self._latest_wrist = msg

    def _on_proprio(self, msg: JointState) -> None:
        """Buffer the joint state (with its arrival time, for unstamped ones); the worker pairs
        each frame with the nearest one and validates it then."""
        self._proprio.add(msg, stamp_ns(msg.header.stamp), self.get_clock().now().nanoseconds)

    @property
    def latest_proprio(self) -> JointState | None:
        newest = self._proprio.newest()
        return newest.msg if newest is not None else None

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
        if self._serving():
            self._frames.set_expected_rate(self._camera_rate_hz())

    def _on_stats_timer(self) -> None:
        """Publish ~/stats and the rqt_plot-friendly numeric topics (lifecycle publishers:
        silent unless active)."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        snap = self.stats.snapshot()
        msg = outputs.stats_msg(snap, pipeline, self.get_clock().now().to_msg())
        msg.frames_lost = self._frames.lost_total
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
        if self._state_label == "finalized":
            self._diag.broadcast(WARN, FINALIZED)
            return
        serving = self._serving()
        self._frames.set_expected_rate(self._camera_rate_hz() if serving else 0.0)
        snap = self.stats.snapshot()
        now = time.monotonic()
        self._diag_input = diagnostics.collect(
            snap,
            self._prev_snapshot,
            pipeline,
            self.params,
            self._state_label,
            self.configure_error,
            camera_silence_s=now - self._last_frame_monotonic if serving else None,
            qos_problems=tuple(self._qos_problems),
            frames=self._frames.window(now) if serving else None,
            frames_lost_total=self._frames.lost_total,
        )
        self._prev_snapshot = snap
        self._diag.update()

    def _current_diag_input(self) -> diagnostics.DiagInput:
        if self._diag_input is None:  # before the first timer tick
            self._diag_input = diagnostics.collect(
                self.stats.snapshot(),
                None,
                self.pipeline,
                self.params,
                self._state_label,
                self.configure_error,
            )
        return self._diag_input

    def _camera_rate_hz(self) -> float:
        """``camera_rate_hz``, else the rate the camera advertises as its QoS deadline."""
        if self.params.camera_rate_hz > 0:
            return self.params.camera_rate_hz
        sub = self._image_sub
        if sub is None:
            return 0.0
        periods = [
            info.qos_profile.deadline.nanoseconds
            for info in self.get_publishers_info_by_topic(sub.topic_name)
        ]
        # Unset deadlines read as 0 or "infinite"; anything above a minute is no frame rate.
        periods = [ns for ns in periods if 0 < ns < 60 * 1_000_000_000]
        return 1e9 / min(periods) if periods else 0.0

    # ------------------------------------------------------------------ worker
    def _infer(
        self,
        msg: Image | CompressedImage,
        wrist: Image | CompressedImage | None,
        session: int,
        epoch: int,
    ) -> None:
        """Worker thread: check freshness, convert, infer, publish, persist. Never raises."""
        started = time.perf_counter()
        pipeline = self.pipeline
        if pipeline is None:
            return
        p = self.params
        times = SourceTimes(stamp_ns(msg.header.stamp))
        try:
            if p.use_wrist_image:
                if wrist is None:
                    raise InputRejectedError(
                        "image_count", "no wrist image received yet; the backbone needs 2 images"
                    )
                # A dead wrist camera must not leave the policy looking at its last frame.
                times = replace(times, wrist_ns=stamp_ns(wrist.header.stamp))
            if not self._fresh(times):  # before spending an inference on it
                return
            images = [message_to_rgb(msg, p.max_image_pixels)]
            if wrist is not None and p.use_wrist_image:
                images.append(message_to_rgb(wrist, p.max_image_pixels))
            proprio = None
            if p.use_proprio:
                joints = self._proprio.pair(times.image_ns, p.proprio_sync_s)
                if joints is None:
                    raise InputRejectedError("missing_proprio", "no JointState received on proprio")
                times = replace(times, proprio_ns=joints.time_ns)
                if not self._fresh(times):
                    return
                if times.proprio_gap_s > p.max_proprio_age_s:
                    raise InputRejectedError(
                        "stale_proprio",
                        f"the nearest joint state is {times.proprio_gap_s:.3f} s from the "
                        f"frame's stamp (max_proprio_age_s={p.max_proprio_age_s}); no action",
                    )
                proprio = joint_state_to_proprio(
                    joints.msg,
                    p.proprio_joint_names,
                    p.proprio_fields,
                    pipeline.backbone.proprio_dim,
                )
            result = pipeline.step(images, proprio, started, epoch)
            self._publish_result(result, msg, times, session)
            pipeline.persist(result)
        except InputRejectedError as rej:
            self.stats.record_rejected(rej.reason, rej.message)
            self._log_throttled(rej.reason, f"input rejected ({rej.reason}): {rej.message}")
        except SupersededError:
            pass  # memory was reset, or serving stopped, mid-step: the result is not wanted
        except Exception as exc:  # a bug here must not kill the worker or the node
            self.stats.record_rejected("memory_error", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(f"inference failed: {exc}\n{traceback.format_exc()}")

    def _fresh(self, times: SourceTimes) -> bool:
        """Before inference: False (counted, logged) for a stale or unstamped frame; raises
        InputRejectedError('stale_proprio') for a joint state older than its maximum age."""
        p = self.params
        stale = times.stale_input(
            self.get_clock().now().nanoseconds, p.max_obs_age_s, p.max_proprio_age_s
        )
        if stale is None:
            return True
        what, age = stale
        if what == "proprio":
            raise InputRejectedError(
                "stale_proprio",
                f"joint state is {age:.3f} s old (max_proprio_age_s={p.max_proprio_age_s}); "
                "no action",
            )
        self.stats.record_stale()
        if math.isinf(age):
            self._log_throttled(
                f"unstamped {what}",
                f"{what} has a zero header.stamp, so its age is unknown; no action",
            )
        else:
            self._log_throttled(
                f"stale {what}",
                f"{what} is {age:.3f} s old (max_obs_age_s={p.max_obs_age_s}); no action",
            )
        return False

    def _publish_result(
        self,
        result: StepResult,
        source: Image | CompressedImage,
        times: SourceTimes,
        session: int,
    ) -> None:
        """The publish gate: the only way a computed action leaves the node.

        Under the publish lock: the node must still be serving the session the frame arrived
        in (else discarded_at_stop), and every input behind the action must still be younger
        than its maximum age NOW (else a stale result: dropped, counted, WARN).
        """
        p = self.params
        with self._publish_lock:
            pub = self._action_pub
            if pub is None or not pub.is_activated or session != self._session:
                self.stats.record_discarded_at_stop()
                return
            stale = times.stale_input(
                self.get_clock().now().nanoseconds, p.max_obs_age_s, p.max_proprio_age_s
            )
            if stale is not None:
                self.stats.record_stale_result()
                what, age = stale
                limit = p.max_proprio_age_s if what == "proprio" else p.max_obs_age_s
                self._log_throttled(
                    "stale result",
                    f"action dropped: its {what} was {age:.3f} s old when inference finished "
                    f"(limit {limit} s; inference took {result.latency_ms:.0f} ms)",
                )
                return
            if not p.dry_run:
                pub.publish(outputs.action_msg(result, source.header))

    def _publish_safe_action(self) -> None:
        """On stop: zeros, or the last action held ('hold'), marked is_safe_action; skipped in
        dry_run. Called under the publish lock, before the publisher deactivates."""
        pipeline, pub = self.pipeline, self._action_pub
        if pipeline is None or pub is None or not pub.is_activated or self.params.dry_run:
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
            check_instruction(text, self.params.max_instruction_bytes)
            what = self.pipeline.set_instruction(text)
        except InputRejectedError as rej:
            self.stats.record_rejected(rej.reason, rej.message)
            self._log_throttled(rej.reason, f"input rejected ({rej.reason}): {rej.message}")
            return
        if what != "unchanged":
            # Throttled: a publisher flooding alternating instructions must not flood the log.
            self._log_throttled(
                "instruction", f"instruction {short_text(text)!r} ({what})", info=True
            )

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
