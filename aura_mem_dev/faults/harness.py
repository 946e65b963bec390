"""The node under test as a real OS process, and a probe node that talks to it over DDS.

The node is started exactly as a user starts it (``python -m aura_mem_ros.node --ros-args
--params-file config/aura_mem.yaml -p ...``) so that what the fault table and the latency
benchmark report is the deployed behaviour, including process start, DDS transport and the
lifecycle. The probe spins in a background thread so that receive times are taken when a
message arrives, not when a test gets round to spinning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros.ros.parameters import shipped_params_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS_FILE = shipped_params_file()
NODE_MODULE = "aura_mem_ros.node"
# The same node entry point, with the fault-injection backbone registered first.
FAULT_NODE_MODULE = "aura_mem_dev.faults.node_with_faults"
NODE_NAME = "aura_mem"
MINI_INSTRUCTION = "go to the matching object at the end of the hallway"

# Overrides every harness run needs on top of the YAML. ``use_proprio`` works around the
# shipped YAML (mini needs the heading; see REQUESTS.md) and is redundant once that is fixed.
BASE_OVERRIDES: dict[str, Any] = {"use_proprio": True, "instruction": MINI_INSTRUCTION}


def _format_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # ``-p key:=value`` parses value as YAML; quote so text never turns into a number/bool.
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def node_command(
    overrides: dict[str, Any],
    params_file: Path | None = DEFAULT_PARAMS_FILE,
    module: str = NODE_MODULE,
) -> list[str]:
    cmd = [sys.executable, "-m", module, "--ros-args"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for key, value in overrides.items():
        cmd += ["-p", f"{key}:={_format_param(value)}"]
    return cmd


def ros_env(domain_id: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the node process: this run's domain, localhost discovery only."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    if extra:
        env.update(extra)
    return env


class NodeProcess:
    """One running ``aura_mem`` process; its output goes to a file (a full pipe would block it)."""

    def __init__(
        self,
        overrides: dict[str, Any],
        domain_id: int,
        params_file: Path | None = DEFAULT_PARAMS_FILE,
        module: str = NODE_MODULE,
        env_extra: dict[str, str] | None = None,
    ) -> None:
        self.overrides = {**BASE_OVERRIDES, **overrides}
        self.command = node_command(self.overrides, params_file, module)
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            mode="w+", prefix="aura_mem_node_", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=ros_env(domain_id, env_extra),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        """Resident set size from /proc (Linux); nan once the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return float("nan")

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> str:
        """SIGINT (the node publishes its safe action and flushes), SIGKILL if it hangs."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        self._log.close()
        text = self.log()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
        return text


@dataclass
class Received:
    """A message and the wall-clock time (ns, the clock image stamps use) it arrived."""

    t_ns: int
    msg: Any


@dataclass
class ProbeLog:
    actions: list[Received] = field(default_factory=list)
    stats: list[Received] = field(default_factory=list)
    diagnostics: list[Received] = field(default_factory=list)


def mini_frame(rng: np.random.Generator, size: int = 56) -> np.ndarray:
    """A random RGB frame of the simulator's size (mini's cost does not depend on content)."""
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


class Probe:
    """The outside world of the node: camera, proprio and instruction publishers, and
    subscribers to its actions, stats and /diagnostics. Owns its own rclpy Context."""

    def __init__(self, domain_id: int, name: str = "aura_probe") -> None:
        import rclpy
        from aura_mem_ros.msg import AuraAction, MemoryStats
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String

        from aura_mem_ros.ros import qos

        # Discovery must reach the node process (another process on this host), whatever
        # the calling test set for its own in-process contexts.
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.log = ProbeLog()
        self._lock = threading.Lock()
        n = self.node
        self.image_pub = n.create_publisher(Image, "/image", qos.sensor_qos())
        self.proprio_pub = n.create_publisher(JointState, "/proprio", qos.sensor_qos())
        self.instruction_pub = n.create_publisher(String, "/instruction", qos.instruction_qos())
        n.create_subscription(
            AuraAction, f"/{NODE_NAME}/action", self._keep(self.log.actions), qos.reliable_qos()
        )
        n.create_subscription(
            MemoryStats, f"/{NODE_NAME}/stats", self._keep(self.log.stats), qos.reliable_qos()
        )
        n.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            self._keep(self.log.diagnostics),
            qos.reliable_qos(),
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, name="probe_spin", daemon=True)
        self._thread.start()
        # Joint states stream on their own, as a robot's joint_state_publisher does: the node
        # pairs each frame with the newest one and refuses a stale one, and a frame's own
        # joint state published just before it may be handled after it (the executor serves
        # subscriptions in creation order, image first).
        self._proprio_on = threading.Event()
        self._proprio_stop = threading.Event()
        self.heading = 0.0
        self._proprio_thread = threading.Thread(
            target=self._proprio_loop, name="probe_proprio", daemon=True
        )
        self._proprio_on.set()
        self._proprio_thread.start()

    def _proprio_loop(self, rate_hz: float = 100.0) -> None:
        while not self._proprio_stop.is_set():
            if self._proprio_on.is_set():
                with contextlib.suppress(Exception):
                    self.proprio_pub.publish(self.proprio_msg(self.heading))
            time.sleep(1.0 / rate_hz)

    @contextlib.contextmanager
    def proprio_paused(self) -> Iterator[None]:
        """Stop the joint-state stream (to inject a bad one that must stay the newest)."""
        self._proprio_on.clear()
        time.sleep(0.03)  # let a publish in progress finish
        try:
            yield
        finally:
            self._proprio_on.set()

    def _spin(self) -> None:
        """Spin until close(). An exception (a callback, an entity destroyed while the wait
        set held it) must not end the probe's reception for every later row."""
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:
                time.sleep(0.01)  # the context is shut down under it at close(), or a blip

    def _keep(self, target: list[Received]) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            t_ns = time.time_ns()
            with self._lock:
                target.append(Received(t_ns, msg))

        return callback

    # -- publishing
    def now_msg(self) -> Any:
        return self.node.get_clock().now().to_msg()

    def image_msg(self, rgb: np.ndarray, stamp: Any = None) -> Any:
        from aura_mem_ros.ros.image_conversion import rgb_to_image

        return rgb_to_image(
            rgb, stamp=stamp if stamp is not None else self.now_msg(), frame_id="camera"
        )

    def proprio_msg(self, heading: float = 0.0) -> Any:
        from sensor_msgs.msg import JointState

        msg = JointState()
        msg.header.stamp = self.now_msg()
        msg.name = ["heading"]
        msg.position = [float(heading)]
        return msg

    def send_frame(self, rgb: np.ndarray) -> Any:
        """One camera frame (joint states stream in the background)."""
        msg = self.image_msg(rgb)
        self.image_pub.publish(msg)
        return msg

    def instruct(self, text: str) -> None:
        from std_msgs.msg import String

        self.instruction_pub.publish(String(data=text))

    # -- waiting and reading
    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.005)
        return predicate()

    def n_actions(self) -> int:
        with self._lock:
            return len(self.log.actions)

    def latest_stats(self) -> Any | None:
        with self._lock:
            return self.log.stats[-1].msg if self.log.stats else None

    def statuses(self, name: str, since: int = 0) -> list[Any]:
        """Every ``aura_mem: name`` DiagnosticStatus received since diagnostics index ``since``."""
        with self._lock:
            arrays = [r.msg for r in self.log.diagnostics[since:]]
        return [s for a in arrays for s in a.status if s.name == f"{NODE_NAME}: {name}"]

    def n_diagnostics(self) -> int:
        with self._lock:
            return len(self.log.diagnostics)

    def wait_status(
        self, name: str, predicate: Callable[[Any], bool], timeout_s: float, since: int = 0
    ) -> Any | None:
        found: list[Any] = []

        def check() -> bool:
            found[:] = [s for s in self.statuses(name, since) if predicate(s)]
            return bool(found)

        self.wait_for(check, timeout_s)
        return found[-1] if found else None

    def wait_ready(self, rng: np.random.Generator, timeout_s: float = 90.0) -> bool:
        """Send frames until the node answers: it is up, matched and active."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = self.n_actions()
            self.send_frame(mini_frame(rng))
            if self.wait_for(lambda b=before: self.n_actions() > b, 0.25):
                return True
        return False

    def close(self) -> None:
        import rclpy

        self._proprio_stop.set()
        self._proprio_thread.join(timeout=2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


def status_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def level_name(status: Any) -> str:
    level = status.level
    level = level[0] if isinstance(level, bytes) else int(level)
    return LEVEL_NAMES.get(level, str(level))


def describe_status(status: Any | None, keys: tuple[str, ...] = ()) -> str:
    """``WARN 'message' (k=v, ...)``: what an operator sees in rqt_robot_monitor."""
    if status is None:
        return "(no status received)"
    text = f"{level_name(status)} {status.message!r}"
    values = status_values(status)
    shown = [f"{k}={values[k]}" for k in keys if k in values]
    return text + (f" ({', '.join(shown)})" if shown else "")


@contextlib.contextmanager
def reserved_domain() -> Iterator[int]:
    """A DDS domain id nobody else on this machine uses right now (ros-domain-coordinator)."""
    from domain_coordinator import domain_id

    with domain_id() as domain:
        yield int(domain)
