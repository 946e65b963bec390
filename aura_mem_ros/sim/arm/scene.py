"""The MuJoCo scene of the arm memory task, as MJCF text (no asset files to ship or find).

A table, three pads in a row at the back, one 4 cm block, and a floating parallel gripper:
a mocap target (an ideal end-effector controller moves it; OSC on a real arm plays that
role) is welded to the dynamic hand, and the two fingers are slide joints driven by
force-limited position actuators, so a grasp holds the block by friction, and a badly placed
grasp really slips.

Frames: x to the right (as the camera sees it), y away from the camera, z up; the table top
is z = 0. All lengths in metres.
"""

from __future__ import annotations

# Pads: centres in a row at the back of the table (the cue lights one of them).
PAD_Y = 0.14
PAD_XS: tuple[float, ...] = (-0.18, 0.0, 0.18)
PAD_RADIUS = 0.05
# The block: a cube of half-size BLOCK_HALF, started in front of the pads.
BLOCK_HALF = 0.02
# Fingers hang FINGER_LENGTH below the hand frame; the end-effector site sits 5 cm below it.
FINGER_LENGTH = 0.07
EEF_OFFSET = 0.05
FINGER_OPEN = 0.04  # per-finger opening (joint position) when fully open
TIMESTEP = 0.002

PAD_DARK = (0.22, 0.22, 0.25, 1.0)
PAD_CUE = (0.15, 1.0, 0.15, 1.0)  # the cue: the target pad lights green
PAD_FLICKER = (1.0, 0.25, 0.1, 1.0)  # distractors: other pads flicker red


def scene_xml(image_size: int) -> str:
    """MJCF of the scene; ``image_size`` sizes the off-screen buffer for the camera."""
    pads = "\n".join(
        f'    <geom name="pad{i}" type="cylinder" pos="{x} {PAD_Y} 0.0015" '
        f'size="{PAD_RADIUS} 0.0015" contype="0" conaffinity="0" '
        f'rgba="{" ".join(map(str, PAD_DARK))}"/>'
        for i, x in enumerate(PAD_XS)
    )
    half_len = FINGER_LENGTH / 2
    size = max(64, image_size)
    return f"""
<mujoco model="aura_arm_pads">
  <option timestep="{TIMESTEP}" cone="elliptic" impratio="10"/>
  <!-- no shadow map and no multisampling: with software GL the default 4096^2 shadow map
       alone costs ~140 ms a frame, whatever the image size -->
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{size}" offheight="{size}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5"/>
  </visual>
  <default>
    <geom friction="1.0 0.005 0.0001" solref="0.005 1"/>
  </default>
  <worldbody>
    <light pos="0 -0.3 1.2" dir="0 0.25 -1" directional="true" castshadow="false"/>
    <geom name="table" type="box" pos="0 0 -0.02" size="0.45 0.4 0.02" rgba="0.62 0.5 0.38 1"/>
{pads}
    <body name="block" pos="0 -0.08 {BLOCK_HALF}">
      <freejoint name="block"/>
      <geom name="block" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" mass="0.05"
            friction="1.5 0.005 0.0001" rgba="0.15 0.35 0.95 1"/>
    </body>
    <!-- the controller's target: a mocap body, welded to the dynamic hand (a teleported
         mocap hand has zero velocity, so friction could never lift the block) -->
    <body name="hand_target" mocap="true" pos="0 -0.15 0.2"/>
    <body name="hand" pos="0 -0.15 0.2" gravcomp="1">
      <freejoint name="hand"/>
      <geom name="palm" type="box" size="0.05 0.016 0.01" pos="0 0 0.01"
            mass="0.3" contype="0" conaffinity="0" rgba="0.75 0.75 0.78 1"/>
      <site name="eef" pos="0 0 -{EEF_OFFSET}" size="0.004" rgba="1 1 0 0"/>
      <body name="finger_l" pos="-0.016 0 0" gravcomp="1">
        <joint name="finger_l" type="slide" axis="-1 0 0" range="0 {FINGER_OPEN}" damping="2"/>
        <geom name="finger_l" type="box" size="0.006 0.012 {half_len}" pos="0 0 -{half_len}"
              mass="0.02" friction="1.5 0.005 0.0001" rgba="0.3 0.3 0.32 1"/>
      </body>
      <body name="finger_r" pos="0.016 0 0" gravcomp="1">
        <joint name="finger_r" type="slide" axis="1 0 0" range="0 {FINGER_OPEN}" damping="2"/>
        <geom name="finger_r" type="box" size="0.006 0.012 {half_len}" pos="0 0 -{half_len}"
              mass="0.02" friction="1.5 0.005 0.0001" rgba="0.3 0.3 0.32 1"/>
      </body>
    </body>
    <camera name="front" pos="0 -0.31 0.6" xyaxes="1 0 0 0 0.87 0.5" fovy="45"/>
  </worldbody>
  <equality>
    <weld body1="hand_target" body2="hand" solref="0.004 1"/>
  </equality>
  <actuator>
    <position name="finger_l" joint="finger_l" kp="300" ctrlrange="0 {FINGER_OPEN}"
              forcerange="-6 6"/>
    <position name="finger_r" joint="finger_r" kp="300" ctrlrange="0 {FINGER_OPEN}"
              forcerange="-6 6"/>
  </actuator>
</mujoco>
"""
