"""The node's topic names in one table, read by the node, the launch file and the recorder.

The node subscribes its inputs by these RELATIVE names (so a namespace applies to them) and
publishes its outputs under its private namespace (``~/action`` -> ``/<ns>/aura_mem/action``).
``launch/aura_mem.launch.py`` declares one argument per input, defaulting to the input's own
relative name, and remaps every input (an image input's ``/compressed`` variant follows the
image, the image_transport convention). ``aura-mem-record`` records ``node_topics()`` by
default, so a bag recorded next to a node started with the launch defaults holds everything
``aura-mem-eval`` replays; ``--namespace`` follows a namespaced launch, ``--follow-node`` any
remap. No rclpy here (the launch file imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_NAME = "aura_mem"
COMPRESSED_SUFFIX = "/compressed"


@dataclass(frozen=True)
class Input:
    name: str  # relative topic name the node subscribes (before remapping)
    launch_argument: str  # the launch argument that remaps it
    description: str
    image: bool = False  # has an image_transport ``/compressed`` variant


INPUTS: tuple[Input, ...] = (
    Input("image", "image_topic", "camera image (sensor_msgs/Image)", image=True),
    Input("wrist_image", "wrist_image_topic", "second camera (use_wrist_image)", image=True),
    Input("instruction", "instruction_topic", "task instruction (std_msgs/String, latched)"),
    Input("proprio", "proprio_topic", "joint states (sensor_msgs/JointState)"),
)
INPUT_BY_NAME = {i.name: i for i in INPUTS}

# Published under the node's private namespace.
OUTPUTS: tuple[str, ...] = (
    "action",
    "stats",
    "write_rate",
    "writes_total",
    "steps_total",
    "latency_p95_ms",
)
DIAGNOSTICS = "/diagnostics"
# Not the node's, but what eval and retraining read from a bag: teleoperation or simulator
# expert actions and the simulator's episode results.
COMPANIONS: tuple[str, ...] = ("teleop/action", "expert/action", "episode_result")


def input_names() -> list[str]:
    """Every topic name the node may subscribe (image inputs with their compressed variant)."""
    out = []
    for i in INPUTS:
        out.append(i.name)
        if i.image:
            out.append(i.name + COMPRESSED_SUFFIX)
    return out


def _absolute(name: str, namespace: str) -> str:
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


def node_topics(
    namespace: str = "", node_name: str = NODE_NAME, remaps: dict[str, str] | None = None
) -> list[str]:
    """Absolute names of every topic the node uses when started in ``namespace`` with the
    launch file's remaps (``remaps``: input name -> target, the launch defaults when None),
    plus the companion topics in the same namespace."""
    remaps = remaps or {}
    topics = []
    for i in INPUTS:
        target = remaps.get(i.name, i.name)
        topics.append(_absolute(target, namespace))
        if i.image:
            topics.append(_absolute(target + COMPRESSED_SUFFIX, namespace))
    private = _absolute(node_name, namespace)
    topics += [f"{private}/{o}" for o in OUTPUTS]
    topics.append(DIAGNOSTICS)
    topics += [_absolute(c, namespace) for c in COMPANIONS]
    return topics


def node_path(namespace: str = "", node_name: str = NODE_NAME) -> str:
    """``/<ns>/aura_mem``: where the node's parameter services live."""
    return _absolute(node_name, namespace)
