"""The scripted expert: a state machine over the simulator's ground truth.

It reads what no policy has (block pose, finger contacts, which pad was cued) and returns
the 7-D action a teleoperator would give, from ANY state (so it can relabel the states a
learner visits, DAgger-style). It never rotates the hand (rotation deltas 0) and keeps the
block axis-aligned; it moves at most ``POS_STEP`` per axis per control step, slowing down
proportionally within ``SLOW_RADIUS`` of each waypoint.

    not holding            open, go up to the travel height, over the block, down, close
    holding                lift, carry to the staging point (above the middle pad), then
                           sideways and down to the cued pad, lower, open
    block on a pad, open   go up and wait (the episode ends when the fingers are clear)
"""

from __future__ import annotations

import numpy as np

from aura_mem_ros.sim.arm import scene
from aura_mem_ros.sim.arm.env import HAND_LOW, ArmEnv

TRAVEL_Z = 0.17  # hand height for moving sideways (fingertips 10 cm above the table)
GRASP_Z = float(HAND_LOW[2]) + 0.002  # fingertips ~6 mm above the table
PLACE_Z = GRASP_Z + 0.004  # release with the block ~4 mm above the pad
APPROACH_Z = 0.11  # routes from the staging point descend to this height while going sideways
RELEASE_XY = 0.025  # open when the hand is this close to the pad centre ...
RELEASE_Z_TOL = 0.008  # ... and this close to the place height
# Every carry goes through one staging point (above the middle pad at the travel height);
# only there do the routes to the pads part. From the staging point each route starts down
# and sideways (the middle one straight down), so a policy that cannot tell the pads apart
# (the per-dimension median of the three routes: straight down) still puts the block on a
# pad instead of hovering: it completes the task and picks the middle pad.
STAGING_X = 0.0
XY_TOL = 0.006
SLOW_RADIUS = 0.015  # metres
Z_TOL = 0.003
CLOSE, OPEN = 1.0, -1.0


def _move(hand: np.ndarray, target: np.ndarray, gripper: float) -> np.ndarray:
    # Full speed until SLOW_RADIUS from the target, then proportional: smooth labels are
    # easier to regress than bang-bang ones, and the last millimetres are not overshot.
    delta = np.clip((target - hand) / SLOW_RADIUS, -1.0, 1.0)
    return np.array([*delta, 0.0, 0.0, 0.0, gripper], dtype=np.float32)


def expert_action(env: ArmEnv, target_pad: int | None = None) -> np.ndarray:
    """The expert's next action; ``target_pad`` defaults to the cued pad."""
    pad = env.state.cue_pad if target_pad is None else target_pad
    hand, block = env.hand_pos, env.block_pos
    pad_xy = env.pad_xy(pad)
    on_pad = env.block_on_pad()
    if on_pad == pad and not env.block_held():
        # Placed: open and rise straight up (never drag the block off the pad).
        return _move(hand, np.array([hand[0], hand[1], TRAVEL_Z]), OPEN)
    if env.block_held():
        pad_err = float(np.linalg.norm(pad_xy - hand[:2]))
        if pad_err <= RELEASE_XY and hand[2] <= PLACE_Z + RELEASE_Z_TOL:
            return _move(hand, np.array([pad_xy[0], pad_xy[1], PLACE_Z]), OPEN)  # let go
        if hand[1] >= scene.PAD_Y - 0.02 or pad_err < 0.03:
            # At the pad row (past the staging point): towards the pad, down to a height
            # that shrinks with the distance left (the approach height 3 cm or more beyond
            # the release radius, the place height inside it). Every route thus leaves the
            # staging point downwards, and the end is a funnel, not a stop-then-descend
            # switch. The release tolerances are a pixel or more wide on purpose: a learner
            # cannot see millimetres, and the pad is 10 cm across.
            z = PLACE_Z + float(np.clip(pad_err - RELEASE_XY, 0.0, APPROACH_Z - PLACE_Z))
            return _move(hand, np.array([pad_xy[0], pad_xy[1], z]), CLOSE)
        # Lift, then carry to the staging point: sideways speed ramps up with the height
        # (no sideways drag at the table, no stop-and-go switch for a learner to dither on).
        action = _move(hand, np.array([STAGING_X, scene.PAD_Y, TRAVEL_Z]), CLOSE)
        action[:2] *= np.clip((hand[2] - GRASP_Z) / (TRAVEL_Z - 0.03 - GRASP_Z), 0.0, 1.0)
        return action
    # Not holding: grasp the block where it lies.
    xy_err = float(np.linalg.norm(block[:2] - hand[:2]))
    tips_z = hand[2] - scene.FINGER_LENGTH
    block_top = block[2] + scene.BLOCK_HALF
    if xy_err > XY_TOL:
        if xy_err > 0.03 and tips_z < block_top + 0.01:
            # Too low to pass over the block: rise first (opening), then go over it.
            return _move(hand, np.array([hand[0], hand[1], TRAVEL_Z]), OPEN)
        # Far: travel height. Close: keep aligning while descending no lower than a height
        # that grows with the misalignment (a smooth funnel, not a stop-and-go).
        z = TRAVEL_Z if xy_err > 0.03 else GRASP_Z + 3.0 * xy_err
        return _move(hand, np.array([block[0], block[1], z]), OPEN)
    if env.gripper_closed:
        if env.finger_opening() < 0.003:
            # Closed on nothing (a missed grasp): open before trying again.
            return _move(hand, hand, OPEN)
        if hand[2] <= GRASP_Z + Z_TOL:
            return _move(hand, hand, CLOSE)  # still closing on the block
    if hand[2] > GRASP_Z + Z_TOL:
        return _move(hand, np.array([block[0], block[1], GRASP_Z]), OPEN)
    return _move(hand, np.array([block[0], block[1], GRASP_Z]), CLOSE)


def expert_chunk(env: ArmEnv, chunk_size: int, target_pad: int | None = None) -> np.ndarray:
    """The expert's next ``chunk_size`` actions from the current state (look-ahead, restored).

    The simulator is stepped forward under the expert and put back exactly, so the label is
    what the expert WOULD do from here; steps past the episode's end repeat the last action.
    """
    snapshot = env.get_state()
    chunk = np.zeros((chunk_size, 7), dtype=np.float32)
    try:
        for i in range(chunk_size):
            if env.state.done:
                chunk[i:] = chunk[i - 1] if i else expert_action(env, target_pad)
                break
            chunk[i] = expert_action(env, target_pad)
            env.step(chunk[i])
    finally:
        env.set_state(snapshot)
    return chunk
