"""The arm memory task: a cue at the start, a pick-and-place whose END depends on it.

Episode (control at 50 Hz, ``control_substeps`` physics steps of 2 ms each):

    t < cue_steps          the target pad lights green (the cue), then goes dark for good
    then                   pick the block up and put it on the pad that lit up
    distractor windows     other pads flicker red for a few steps; they mean nothing
    ends                   when the block rests on a pad with the gripper open and clear
                           (success iff that is the cued pad), or at ``max_steps``

The robot side gets what LIBERO gives OpenVLA-OFT: a third-person RGB camera, 8-D proprio
(end-effector xyz, end-effector axis-angle, 2 finger joints) and the instruction; it acts
with 7-D end-effector deltas in [-1, 1] (xyz * ``POS_STEP`` m, rotation axis-angle *
``ROT_STEP`` rad, gripper > 0 closes). The camera is rendered only when asked
(``render``): a chunked policy needs one frame per chunk, and rendering dominates the cost.

``cue_mode="persistent"`` keeps the target pad lit all episode: the memoryless variant of
the same skill, used only to train the frozen backbone (a VLA knows "the lit pad" from its
pre-training; it has no memory of one that went dark).

Everything prefixed ``true_`` or named ``privileged`` is simulator ground truth: only the
scripted expert and the evaluators read it, never a policy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from aura_mem_ros.sim.arm import scene

# Off-screen rendering without a display: EGL (software GL on CPU machines: Mesa llvmpipe)
# unless the user chose otherwise (MUJOCO_GL=osmesa needs libosmesa6). Must be set before
# mujoco is first imported anywhere in the process.
os.environ.setdefault("MUJOCO_GL", "egl")
GL_HELP = (
    "EGL needs the Debian packages libegl1 libopengl0 libegl-mesa0 libgbm1 libgl1-mesa-dri "
    "(software GL: llvmpipe); or install libosmesa6 and set MUJOCO_GL=osmesa before Python "
    "starts"
)

try:
    import mujoco
except (ImportError, AttributeError, OSError) as _exc:  # mujoco loads its GL backend here
    raise ImportError(
        f"mujoco could not load its GL backend (MUJOCO_GL={os.environ['MUJOCO_GL']}): {_exc}. "
        + GL_HELP
    ) from _exc

INSTRUCTION = "put the blue block on the pad that lights up"
ACTION_DIM = 7
PROPRIO_DIM = 8
PROPRIO_NAMES: tuple[str, ...] = (
    "eef_x",
    "eef_y",
    "eef_z",
    "eef_aa_x",
    "eef_aa_y",
    "eef_aa_z",
    "finger_l",
    "finger_r",
)
POS_STEP = 0.003  # metres per control step at action 1.0
ROT_STEP = 0.05  # radians per control step at action 1.0
# The hand's workspace (hand frame; fingertips hang FINGER_LENGTH below it).
HAND_LOW = np.array([-0.32, -0.26, 0.074])
HAND_HIGH = np.array([0.32, 0.3, 0.26])
MAX_TILT = 0.35  # rad: the hand may not tilt further from pointing down
HOME = np.array([0.0, -0.15, 0.2])


@dataclass(frozen=True)
class ArmTaskConfig:
    image_size: int = 64
    control_substeps: int = 10  # 10 x 2 ms = 50 Hz control
    max_steps: int = 400
    cue_steps: int = 16
    cue_mode: str = "flash"  # flash | persistent
    distractors: int = 2
    distractor_steps: int = 12
    distractor_window: tuple[int, int] = (24, 180)  # flicker start times are drawn in here

    def __post_init__(self) -> None:
        if self.cue_mode not in ("flash", "persistent"):
            raise ValueError(f"cue_mode must be flash or persistent, got {self.cue_mode!r}")
        if min(self.image_size, self.control_substeps, self.max_steps, self.cue_steps) <= 0:
            raise ValueError("image_size, control_substeps, max_steps, cue_steps must be > 0")
        if self.distractors < 0 or self.distractor_steps <= 0:
            raise ValueError("distractors >= 0 and distractor_steps > 0 required")
        lo, hi = self.distractor_window
        if not self.cue_steps <= lo < hi:
            raise ValueError("distractor_window must start after the cue and be non-empty")


@dataclass(frozen=True)
class ArmObs:
    """What the robot side receives (``image`` is None between rendered frames)."""

    image: np.ndarray | None  # uint8 (S, S, 3)
    proprio: np.ndarray  # float32 (8,)
    instruction: str


@dataclass
class EpisodeState:
    seed: int
    cue_pad: int
    flickers: list[tuple[int, int, int]] = field(default_factory=list)  # (pad, start, end)
    t: int = 0
    done: bool = False
    placed_pad: int | None = None  # pad the block ended on (None: not placed)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> axis * angle (the shortest rotation, angle <= pi)."""
    q = np.asarray(q, dtype=np.float64)
    if q[0] < 0:
        q = -q
    s = float(np.linalg.norm(q[1:]))
    if s < 1e-9:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(s, q[0])
    return q[1:] / s * angle


def axis_angle_to_quat(v: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = np.asarray(v) / angle
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


# The hand is modelled pointing down (fingers hang along its -z), so "down" is the identity.
def tilt_of(quat: np.ndarray) -> float:
    """Angle between the hand's z axis and the world's z axis."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    return float(np.arccos(np.clip(mat[8], -1.0, 1.0)))


class ArmEnv:
    """One MuJoCo model and (lazily) one off-screen renderer; ``reset(seed)`` then ``step``."""

    def __init__(self, config: ArmTaskConfig | None = None) -> None:
        self.config = config or ArmTaskConfig()
        self.model = mujoco.MjModel.from_xml_string(scene.scene_xml(self.config.image_size))
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        m = self.model
        self._pad_geoms = [
            mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"pad{i}")
            for i in range(len(scene.PAD_XS))
        ]
        self._block_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "block")
        self._block_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "block")
        self._finger_geoms = tuple(
            mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("finger_l", "finger_r")
        )
        self._finger_qpos = tuple(
            m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)]
            for n in ("finger_l", "finger_r")
        )
        self._block_qpos = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "block")]
        self._eef_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "eef")
        self._hand_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "hand")
        self._hand_qpos = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "hand")]
        self.state = EpisodeState(seed=0, cue_pad=0)
        self.gripper_closed = False
        self.renders = 0
        self.physics_steps = 0

    @property
    def num_pads(self) -> int:
        return len(scene.PAD_XS)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int) -> ArmObs:
        c = self.config
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        cue = int(rng.integers(self.num_pads))
        block_xy = np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.12, -0.04)])
        hand = HOME + np.array([rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03), 0.0])
        q = self._block_qpos
        self.data.qpos[q : q + 3] = [block_xy[0], block_xy[1], scene.BLOCK_HALF]
        self.data.qpos[q + 3 : q + 7] = [1.0, 0.0, 0.0, 0.0]
        for adr in self._finger_qpos:
            self.data.qpos[adr] = scene.FINGER_OPEN
        self.data.ctrl[:] = scene.FINGER_OPEN
        self.data.mocap_pos[0] = hand
        self.data.mocap_quat[0] = [1.0, 0.0, 0.0, 0.0]
        h = self._hand_qpos
        self.data.qpos[h : h + 3] = hand
        self.data.qpos[h + 3 : h + 7] = [1.0, 0.0, 0.0, 0.0]
        self.gripper_closed = False
        flickers = []
        lo, hi = c.distractor_window
        for _ in range(c.distractors):
            # Any pad, the cued one included: a flicker carries no information about the cue.
            start = int(rng.integers(lo, hi))
            flickers.append((int(rng.integers(self.num_pads)), start, start + c.distractor_steps))
        self.state = EpisodeState(seed=seed, cue_pad=cue, flickers=flickers)
        mujoco.mj_forward(self.model, self.data)
        # Let the block settle on the table (no control yet; it starts 0.0 mm above it).
        for _ in range(20):
            mujoco.mj_step(self.model, self.data)
        self.data.time = 0.0
        return self.observe(render=True)

    def step(self, action: np.ndarray) -> ArmObs:
        """Apply one 7-D action for one control step; the episode clock advances by one."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"action must have {ACTION_DIM} values, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action must be finite")
        if self.state.done:
            raise RuntimeError("episode is over: call reset()")
        a = np.clip(a, -1.0, 1.0)
        start_pos = self.data.mocap_pos[0].copy()
        goal_pos = np.clip(start_pos + a[:3] * POS_STEP, HAND_LOW, HAND_HIGH)
        quat = self.data.mocap_quat[0].copy()
        new_quat = np.zeros(4)
        mujoco.mju_mulQuat(new_quat, axis_angle_to_quat(a[3:6] * ROT_STEP), quat)
        if tilt_of(new_quat) <= MAX_TILT:
            quat = new_quat / np.linalg.norm(new_quat)
        self.gripper_closed = bool(a[6] > 0.0)
        self.data.ctrl[:] = 0.0 if self.gripper_closed else scene.FINGER_OPEN
        self.data.mocap_quat[0] = quat
        n = self.config.control_substeps
        for i in range(n):
            # Interpolate the hand's path: a 4 mm jump in one physics step would kick the block.
            self.data.mocap_pos[0] = start_pos + (goal_pos - start_pos) * (i + 1) / n
            mujoco.mj_step(self.model, self.data)
        self.physics_steps += n
        self.state.t += 1
        self._check_done()
        return self.observe(render=False)

    def _check_done(self) -> None:
        s = self.state
        pad = self.block_on_pad()
        if pad is not None and self.released_and_clear():
            s.done, s.placed_pad = True, pad
        elif s.t >= self.config.max_steps:
            s.done = True

    # ------------------------------------------------------------------ observation
    def observe(self, render: bool) -> ArmObs:
        return ArmObs(
            image=self.render() if render else None,
            proprio=self.proprio(),
            instruction=INSTRUCTION,
        )

    def proprio(self) -> np.ndarray:
        eef = self.data.site_xpos[self._eef_site]
        aa = quat_to_axis_angle(self.data.xquat[self._hand_body])
        fingers = [self.data.qpos[adr] for adr in self._finger_qpos]
        return np.concatenate([eef, aa, fingers]).astype(np.float32)

    def pad_colors(self) -> list[tuple[float, ...]]:
        """What each pad shows at the current time step."""
        s, c = self.state, self.config
        colors = [scene.PAD_DARK] * self.num_pads
        for pad, start, end in s.flickers:
            if start <= s.t < end:
                colors[pad] = scene.PAD_FLICKER
        if s.t < c.cue_steps or c.cue_mode == "persistent":
            colors[s.cue_pad] = scene.PAD_CUE
        return colors

    def cue_visible(self) -> bool:
        """Ground truth for plots: is the cue lit now (never an input to a policy)."""
        return self.state.t < self.config.cue_steps or self.config.cue_mode == "persistent"

    def flicker_visible(self) -> bool:
        return any(start <= self.state.t < end for _, start, end in self.state.flickers)

    def render(self) -> np.ndarray:
        if self._renderer is None:
            size = self.config.image_size
            try:
                self._renderer = mujoco.Renderer(self.model, size, size)
            except Exception as exc:  # mujoco.FatalError or a GL loader error
                raise RuntimeError(
                    f"off-screen rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')}"
                    f" ({exc}). {GL_HELP}"
                ) from exc
        for geom, rgba in zip(self._pad_geoms, self.pad_colors(), strict=True):
            self.model.geom_rgba[geom] = rgba
        self._renderer.update_scene(self.data, camera="front")
        self.renders += 1
        return np.ascontiguousarray(self._renderer.render(), dtype=np.uint8)

    # ------------------------------------------------------------------ privileged state
    @property
    def hand_pos(self) -> np.ndarray:
        """The commanded hand position (the weld keeps the real hand within ~1 mm of it)."""
        return self.data.mocap_pos[0].copy()

    @property
    def block_pos(self) -> np.ndarray:
        return self.data.xpos[self._block_body].copy()

    def finger_opening(self) -> float:
        return float(sum(self.data.qpos[adr] for adr in self._finger_qpos)) / 2.0

    def pad_xy(self, pad: int) -> np.ndarray:
        return np.array([scene.PAD_XS[pad], scene.PAD_Y])

    def fingers_touch_block(self) -> tuple[bool, bool]:
        touch = [False, False]
        d = self.data
        for i in range(d.ncon):
            con = d.contact[i]
            pair = {int(con.geom1), int(con.geom2)}
            if self._block_geom in pair:
                for k, g in enumerate(self._finger_geoms):
                    if g in pair:
                        touch[k] = True
        return touch[0], touch[1]

    def block_held(self) -> bool:
        left, right = self.fingers_touch_block()
        return left and right and self.gripper_closed

    def block_on_pad(self) -> int | None:
        """The pad the block rests on (centre within the pad, on the table), else None."""
        pos = self.block_pos
        if pos[2] > scene.BLOCK_HALF + 0.006:
            return None
        for i in range(self.num_pads):
            if np.linalg.norm(pos[:2] - self.pad_xy(i)) < scene.PAD_RADIUS:
                return i
        return None

    def released_and_clear(self) -> bool:
        """Gripper open and its fingertips above the block's top: the place is finished."""
        tips_z = self.hand_pos[2] - scene.FINGER_LENGTH
        return (
            not self.gripper_closed
            and self.finger_opening() > 0.6 * scene.FINGER_OPEN
            and tips_z > self.block_pos[2] + scene.BLOCK_HALF + 0.02
        )

    # ------------------------------------------------------------------ save / restore
    def get_state(self) -> tuple:
        """A snapshot for look-ahead labelling (the expert's next chunk from this state)."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, buf, spec)
        s = self.state
        return buf, (s.t, s.done, s.placed_pad), self.gripper_closed

    def set_state(self, snapshot: tuple) -> None:
        buf, (t, done, placed), closed = snapshot
        mujoco.mj_setState(self.model, self.data, buf, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        self.state.t, self.state.done, self.state.placed_pad = t, done, placed
        self.gripper_closed = closed

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
