"""Every parameter of the ``aura_mem`` node: one table, declared with descriptors.

Read-only parameters are the ones that are unsafe or meaningless to change while serving
(which model, which memory, safety bounds, topic wiring); they can still be set at start-up
from YAML or ``-p``. Choices (string enums) are checked in a pre-set callback because a
descriptor cannot express them. ``config/aura_mem.yaml`` carries the same defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from aura_mem_ros.reset_policy import DEFAULT_RESET_POLICY, RESET_POLICIES

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    type_: Parameter.Type | None = None  # needed where the default cannot say (empty arrays)


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "autostart",
        True,
        "Walk configure -> activate at start-up (no lifecycle manager needed).",
        read_only=True,
    ),
    ParamSpec(
        "backbone", "mini", "Registered backbone name: mini | toy | openvla_oft.", read_only=True
    ),
    ParamSpec(
        "backbone_args",
        "{}",
        "JSON object of keyword arguments for the backbone "
        '(e.g. {"model_dir": "/models/oft"} for openvla_oft).',
        read_only=True,
    ),
    ParamSpec(
        "aura_checkpoint",
        "bundled",
        "Directory with aura.safetensors + aura_config.json; 'bundled' = the layer shipped "
        "with the backbone (mini has one; others fall back to untrained); empty = untrained "
        "layer (its residual is zero, so actions equal the backbone's).",
        read_only=True,
    ),
    ParamSpec(
        "gate",
        "learned",
        "Write gate: learned | always | never (or another gate the core runtime registers).",
        read_only=True,
    ),
    ParamSpec(
        "gate_threshold",
        -1.0,
        "Write threshold on the gate probability; -1 = the checkpoint's own.",
        read_only=True,
        range=(-1.0, 1.0e6),
    ),
    ParamSpec(
        "seed",
        0,
        "Seed of the untrained layer and of stochastic gates.",
        read_only=True,
        range=(0, 2**31 - 1),
    ),
    ParamSpec(
        "torch_threads",
        1,
        "CPU threads for torch inference. Batch-1 steps are fastest on 1 (more threads only "
        "add synchronisation); raise it for a large CPU backbone on a dedicated machine.",
        read_only=True,
        range=(1, 256),
    ),
    ParamSpec(
        "fused_step",
        True,
        "Run the AURA step (learned/always/never gates) as one compiled kernel: ~6x faster "
        "per step (at d_model 4096 ~80 us instead of ~570 us on a quiet core) for ~130 MB "
        "more resident memory (numba + LLVM). false = the reference torch path, the same "
        "function.",
        read_only=True,
    ),
    ParamSpec(
        "instruction",
        "",
        "Instruction to use until one arrives on the instruction "
        "topic; empty = wait for the topic.",
        read_only=True,
    ),
    ParamSpec(
        "max_instruction_bytes",
        1024,
        "Longer instructions (UTF-8 bytes) are rejected and the current one is kept; logs and "
        "/diagnostics only ever show a short prefix of an instruction.",
        range=(1, 1024 * 1024),
    ),
    ParamSpec(
        "reset_policy",
        DEFAULT_RESET_POLICY.value,
        "What clears memory: instruction_change = a new instruction or ~/reset_memory; "
        "service = only ~/reset_memory (memory carries across instructions); never = "
        "nothing (~/reset_memory refuses). The state file is bound to the instruction only "
        "under instruction_change. Replaces on_instruction_change (reset -> "
        "instruction_change, keep -> service).",
        read_only=True,
        choices=RESET_POLICIES,
    ),
    ParamSpec(
        "use_wrist_image",
        False,
        "Subscribe wrist_image and pass it as the second image.",
        read_only=True,
    ),
    ParamSpec(
        "use_compressed",
        False,
        "Subscribe image/compressed (and wrist_image/compressed) instead of raw images.",
        read_only=True,
    ),
    ParamSpec(
        "use_proprio",
        True,
        "Subscribe proprio (sensor_msgs/JointState); must match the backbone (mini: yes, "
        "heading in radians as one joint position; toy: no unless proprio_dim is given).",
        read_only=True,
    ),
    ParamSpec(
        "proprio_joint_names",
        [],
        "Joint order of the proprio vector; empty = the message's order.",
        read_only=True,
        type_=Parameter.Type.STRING_ARRAY,
    ),
    ParamSpec(
        "proprio_fields",
        "position",
        "JointState fields concatenated into proprio: "
        "position | position_velocity | position_velocity_effort.",
        read_only=True,
        choices=("position", "position_velocity", "position_velocity_effort"),
    ),
    ParamSpec(
        "max_obs_age_s",
        0.5,
        "A frame (and wrist frame) older than this (node clock minus header stamp) gives no "
        "action: checked before inference (counted stale) and again when the action would be "
        "published (counted as a stale result, dropped).",
        range=(0.001, 3600.0),
    ),
    ParamSpec(
        "max_proprio_age_s",
        0.25,
        "The joint state paired with a frame must be younger than this (node clock minus its "
        "stamp, or minus its arrival time when unstamped), before inference and at publish "
        "time, and no further than this from the frame's stamp; else the step is rejected "
        "(stale_proprio).",
        range=(0.001, 3600.0),
    ),
    ParamSpec(
        "proprio_sync_s",
        0.05,
        "A frame is paired with the joint state whose stamp is nearest its own; when none at "
        "or after the frame's stamp has arrived yet, wait up to this long for it (0 = no wait).",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "camera_rate_hz",
        0.0,
        "The camera's frame rate, to detect frames lost in transport (stamp gaps; WARN on "
        "/diagnostics 'transport'); 0 = the rate the camera publisher advertises as its QoS "
        "deadline, if any, else not checked.",
        range=(0.0, 10000.0),
    ),
    ParamSpec(
        "max_frame_loss",
        0.2,
        "WARN when more than this fraction of the camera's frames is lost before the node "
        "(or the rate seen is that far below camera_rate_hz).",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "camera_timeout_s",
        1.0,
        "WARN on /diagnostics when no camera frame arrived for this long while active "
        "(camera dropout, or frames too large for the transport); 0 = off.",
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "max_image_pixels",
        3840 * 2160,
        "Images with more pixels (width x height) are rejected.",
        range=(1, 2**31 - 1),
    ),
    ParamSpec("dry_run", False, "Compute everything but publish nothing on ~/action."),
    ParamSpec(
        "action_min",
        [],
        "Lower clamp bound: one value for all dims or one per dim; "
        "empty = no clamp. Not applied to discrete logits.",
        read_only=True,
        type_=Parameter.Type.DOUBLE_ARRAY,
    ),
    ParamSpec(
        "action_max",
        [],
        "Upper clamp bound, like action_min.",
        read_only=True,
        type_=Parameter.Type.DOUBLE_ARRAY,
    ),
    ParamSpec(
        "safe_action",
        "zero",
        "Published on deactivate: zero | hold (repeat the last action).",
        choices=("zero", "hold"),
    ),
    ParamSpec(
        "warmup_steps",
        1,
        "First inferences left out of latency statistics (cold start).",
        read_only=True,
        range=(0, 1000),
    ),
    ParamSpec(
        "latency_window",
        200,
        "Inferences in the latency percentiles and the recent write rate.",
        read_only=True,
        range=(10, 100000),
    ),
    ParamSpec(
        "stats_rate_hz",
        1.0,
        "Rate of ~/stats and the numeric topics (~/write_rate, ~/writes_total, "
        "~/steps_total, ~/latency_p95_ms).",
        read_only=True,
        range=(0.01, 100.0),
    ),
    ParamSpec(
        "diagnostics_period_s", 1.0, "Period of /diagnostics.", read_only=True, range=(0.1, 60.0)
    ),
    ParamSpec(
        "write_rate_budget",
        0.25,
        "WARN when the recent write rate (writes/step) exceeds this.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "max_latency_ms",
        250.0,
        "WARN when the p95 inference latency exceeds this.",
        range=(0.01, 1.0e6),
    ),
    ParamSpec(
        "state_file",
        "",
        "Where memory is persisted (only when the gate writes); empty = no persistence.",
        read_only=True,
    ),
    ParamSpec(
        "persist_min_interval_s",
        0.0,
        "Coalesce flushes to at most one per this many seconds (0 = flush on every gate write).",
        read_only=True,
        range=(0.0, 86400.0),
    ),
    ParamSpec(
        "flash_size_bytes",
        8 * 1024**3,
        "Flash device size for the lifetime projection.",
        range=(1, INT64_MAX),
    ),
    ParamSpec(
        "flash_pe_cycles", 3000, "Rated program/erase cycles of that flash.", range=(1, 10**9)
    ),
    ParamSpec(
        "flash_write_amplification",
        1.0,
        "Device bytes written per file byte (page rounding, file-system journal).",
        range=(1.0, 1000.0),
    ),
)

SPEC_BY_NAME = {s.name: s for s in SPECS}


def shipped_params_file() -> Path:
    """``config/aura_mem.yaml``: this checkout's when run from one, else the installed
    package's (``share/aura_mem_ros/config``, found through the ament index)."""
    in_tree = Path(__file__).resolve().parents[2] / "config" / "aura_mem.yaml"
    if in_tree.is_file():
        return in_tree
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("aura_mem_ros")) / "config" / "aura_mem.yaml"


@dataclass(frozen=True)
class NodeParams:
    """A typed snapshot of the parameters (field names = parameter names)."""

    autostart: bool
    backbone: str
    backbone_args: str
    aura_checkpoint: str
    gate: str
    gate_threshold: float
    seed: int
    torch_threads: int
    fused_step: bool
    instruction: str
    max_instruction_bytes: int
    reset_policy: str
    use_wrist_image: bool
    use_compressed: bool
    use_proprio: bool
    proprio_joint_names: list[str]
    proprio_fields: str
    max_obs_age_s: float
    max_proprio_age_s: float
    camera_timeout_s: float
    proprio_sync_s: float
    camera_rate_hz: float
    max_frame_loss: float
    max_image_pixels: int
    dry_run: bool
    action_min: list[float]
    action_max: list[float]
    safe_action: str
    warmup_steps: int
    latency_window: int
    stats_rate_hz: float
    diagnostics_period_s: float
    write_rate_budget: float
    max_latency_ms: float
    state_file: str
    persist_min_interval_s: float
    flash_size_bytes: int
    flash_pe_cycles: int
    flash_write_amplification: float


assert {f.name for f in fields(NodeParams)} == set(SPEC_BY_NAME), "SPECS and NodeParams differ"


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    text = spec.description
    if spec.choices:
        text += f" One of {list(spec.choices)}."
    desc = ParameterDescriptor(description=text, read_only=spec.read_only)
    if spec.range is not None:
        lo, hi = spec.range
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
            ]
    return desc


def declare_all(node: Node) -> None:
    """Declare every parameter and install the choice check for live changes."""
    for spec in SPECS:
        if spec.type_ is None:
            node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        else:
            _declare_typed_empty(node, spec)
    node.add_on_set_parameters_callback(_check_choices)
    # Choices given at start-up (YAML, -p) bypass the set callback: check them here.
    for spec in SPECS:
        if spec.choices:
            value = node.get_parameter(spec.name).value
            if value not in spec.choices:
                raise ValueError(f"parameter {spec.name}={value!r} not in {list(spec.choices)}")


def _declare_typed_empty(node: Node, spec: ParamSpec) -> None:
    """Declare an array parameter whose default is empty, SET to a typed empty array.

    An empty list cannot tell rclpy its element type (it would take it for a byte array), and
    a parameter declared by type alone stays UNSET: rclpy's GetParameters then answers any
    request naming it with no values at all, which is what ``ros2 param dump`` sends. So: declare
    by type, give it the typed empty value (unless the user set one), and only then make it
    read-only (rclpy keeps the descriptor object it was given; a test checks read_only holds).
    """
    desc = _descriptor(spec)
    desc.read_only = False
    value = node.declare_parameter(spec.name, spec.type_, desc).value
    if value is None:
        node.set_parameters([Parameter(spec.name, spec.type_, list(spec.default))])
    desc.read_only = spec.read_only


def _check_choices(params: list[Parameter]) -> SetParametersResult:
    """Reject a live change of a string parameter to a value outside its choices."""
    for p in params:
        spec = SPEC_BY_NAME.get(p.name)
        if spec is not None and spec.choices and p.value not in spec.choices:
            return SetParametersResult(
                successful=False, reason=f"{p.name} must be one of {list(spec.choices)}"
            )
    return SetParametersResult(successful=True)


def read_all(node: Node) -> NodeParams:
    values = {}
    for spec in SPECS:
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            value = spec.default
        if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
            value = list(value)
        values[spec.name] = value
    return NodeParams(**values)


def markdown_table() -> str:
    """The parameter table for the README, generated so it cannot drift from the code."""
    rows = ["| parameter | default | live | description |", "|---|---|---|---|"]
    for s in SPECS:
        extra = f" One of {', '.join(s.choices)}." if s.choices else ""
        if s.range is not None and not isinstance(s.default, bool):
            lo, hi = s.range
            if isinstance(s.default, int):
                extra += f" Range [{int(lo)}, {int(hi)}]."
            else:
                extra += f" Range [{lo:g}, {hi:g}]."
        rows.append(
            f"| `{s.name}` | `{json.dumps(s.default)}` | "
            f"{'no' if s.read_only else 'yes'} | {(s.description + extra).replace('|', '/')} |"
        )
    return "\n".join(rows)
