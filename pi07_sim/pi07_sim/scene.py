"""The tabletop scene as MJCF text, built from an embodiment's description.

The world: a table whose top is the plane z = 0, three coloured blocks (free bodies), a bowl, a tray (the extra
fixture, used by the memory task) and a scene camera; plus one robot carrying a parallel gripper with a wrist
camera. Both robots share the gripper, whose tool-centre site ``tcp`` lies between the finger pads; its frame is
Rz(yaw) @ Rx(pi) when the tool points down, so "yaw" means the same thing on both robots.

Rendering is kept cheap for software GL: no shadows, no multisampling, no reflections (ros-wheels.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

BLOCK_HALF = 0.02  # m: blocks are 4 cm cubes
BLOCK_COLORS = {
    'red': (0.85, 0.12, 0.10),
    'green': (0.10, 0.65, 0.15),
    'blue': (0.10, 0.25, 0.90),
}
BOWL_RADIUS = 0.085  # m, inner radius of the rim
BOWL_HEIGHT = 0.045
TRAY_HALF = (0.08, 0.065)  # m, inner half extents (x, y)
TRAY_FLOOR = 0.008  # m, height of the tray's floor above the table
FINGER_OPEN = 0.04  # m, finger travel: gap between pads = 2 * opening
ARM_JOINTS = tuple(f'arm_joint{i}' for i in range(1, 8))
GANTRY_JOINTS = ('gantry_x', 'gantry_y', 'gantry_z', 'gantry_yaw')
ARM_BASE = (-0.45, 0.0, 0.0)


@dataclass(frozen=True)
class JointLimits:
    name: str
    low: float
    high: float


ARM_LIMITS = (
    JointLimits('arm_joint1', -2.8, 2.8),
    JointLimits('arm_joint2', -1.7, 1.7),
    JointLimits('arm_joint3', -2.8, 2.8),
    JointLimits('arm_joint4', -0.05, 2.9),
    JointLimits('arm_joint5', -2.8, 2.8),
    JointLimits('arm_joint6', -1.9, 1.9),
    JointLimits('arm_joint7', -2.9, 2.9),
)
# The gantry's joints are laid out so that their positions *are* the tool's x, y, z (m) and yaw (rad).
GANTRY_LIMITS = (
    JointLimits('gantry_x', -0.32, 0.38),
    JointLimits('gantry_y', -0.38, 0.38),
    JointLimits('gantry_z', 0.005, 0.42),
    JointLimits('gantry_yaw', -math.pi, math.pi),
)


def _rgba(rgb: tuple[float, float, float], alpha: float = 1.0) -> str:
    return f'{rgb[0]} {rgb[1]} {rgb[2]} {alpha}'


def _gripper(hand_pos: str, hand_euler: str) -> str:
    """The hand: palm, two coupled sliding fingers, the tcp site and the wrist camera (looking along +z)."""
    pad = ('type="box" size="0.012 0.005 0.022" contype="1" conaffinity="1" friction="2 0.05 0.001" condim="4" '
           'mass="0.04"')
    return f"""
<body name="hand" gravcomp="1" pos="{hand_pos}" euler="{hand_euler}">
  <geom name="palm" type="box" size="0.022 0.055 0.012" rgba="0.25 0.25 0.28 1" mass="0.3" contype="1"
        conaffinity="1"/>
  <geom type="cylinder" size="0.03 0.012" pos="0 0 -0.022" rgba="0.35 0.35 0.38 1" contype="0" conaffinity="0"/>
  <camera name="wrist" pos="0.055 0 0.005" xyaxes="0 1 0 1 0 0.35" fovy="80"/>
  <site name="tcp" pos="0 0 0.066" size="0.004" rgba="1 0 1 0"/>
  <body name="finger_left" gravcomp="1" pos="0 0 0.045">
    <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}" damping="4"/>
    <geom name="pad_left" {pad} pos="0 0.005 0.02" rgba="0.15 0.15 0.15 1"/>
  </body>
  <body name="finger_right" gravcomp="1" pos="0 0 0.045">
    <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}" damping="4"/>
    <geom name="pad_right" {pad} pos="0 -0.005 0.02" rgba="0.15 0.15 0.15 1"/>
  </body>
</body>"""


def _arm_body() -> str:
    """A 7-joint arm (alternating roll/pitch axes), mounted at the back edge of the table."""
    ranges = {lim.name: f'{lim.low} {lim.high}' for lim in ARM_LIMITS}
    white, grey = 'rgba="0.92 0.92 0.9 1"', 'rgba="0.55 0.57 0.6 1"'
    return f"""
<body name="arm_base" pos="{ARM_BASE[0]} {ARM_BASE[1]} {ARM_BASE[2]}" childclass="arm">
  <geom type="cylinder" size="0.07 0.04" pos="0 0 0.04" {grey}/>
  <body name="arm_link1" gravcomp="1" pos="0 0 0.08">
    <joint name="arm_joint1" axis="0 0 1" range="{ranges['arm_joint1']}"/>
    <geom type="capsule" fromto="0 0 0 0 0 0.22" size="0.055" {white}/>
    <body name="arm_link2" gravcomp="1" pos="0 0 0.22">
      <joint name="arm_joint2" axis="0 1 0" range="{ranges['arm_joint2']}"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.2" size="0.05" {grey}/>
      <body name="arm_link3" gravcomp="1" pos="0 0 0.2">
        <joint name="arm_joint3" axis="0 0 1" range="{ranges['arm_joint3']}"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.2" size="0.048" {white}/>
        <body name="arm_link4" gravcomp="1" pos="0 0 0.2">
          <joint name="arm_joint4" axis="0 1 0" range="{ranges['arm_joint4']}"/>
          <geom type="capsule" fromto="0 0 0 0 0 0.2" size="0.042" {grey}/>
          <body name="arm_link5" gravcomp="1" pos="0 0 0.2">
            <joint name="arm_joint5" axis="0 0 1" range="{ranges['arm_joint5']}"/>
            <geom type="capsule" fromto="0 0 0 0 0 0.16" size="0.04" {white}/>
            <body name="arm_link6" gravcomp="1" pos="0 0 0.16">
              <joint name="arm_joint6" axis="0 1 0" range="{ranges['arm_joint6']}"/>
              <geom type="capsule" fromto="0 0 0 0 0 0.06" size="0.036" {grey}/>
              <body name="arm_link7" gravcomp="1" pos="0 0 0.06">
                <joint name="arm_joint7" axis="0 0 1" range="{ranges['arm_joint7']}"/>
                <geom type="cylinder" size="0.032 0.01" pos="0 0 0.01" rgba="0.3 0.3 0.32 1"/>
                {_gripper('0 0 0.032', '0 0 3.14159265358979')}
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
  </body>
</body>"""


def _gantry_body() -> str:
    """A Cartesian gantry: x bridge, y carriage, z column, yaw wrist; joint positions equal the tcp pose."""
    lim = {limit.name: f'{limit.low} {limit.high}' for limit in GANTRY_LIMITS}
    frame = 'contype="0" conaffinity="0" rgba="0.45 0.47 0.5 1"'
    return f"""
<body name="gantry_frame" pos="0 0 0">
  <geom type="box" size="0.02 0.02 0.36" pos="0.03 -0.5 0.36" {frame}/>
  <geom type="box" size="0.02 0.02 0.36" pos="0.03 0.5 0.36" {frame}/>
  <geom type="box" size="0.42 0.015 0.015" pos="0.03 -0.5 0.73" {frame}/>
  <geom type="box" size="0.42 0.015 0.015" pos="0.03 0.5 0.73" {frame}/>
</body>
<body name="gantry_bridge" gravcomp="1" pos="0 0 0" childclass="gantry">
  <joint name="gantry_x" type="slide" axis="1 0 0" range="{lim['gantry_x']}"/>
  <geom type="box" size="0.025 0.52 0.02" pos="0 0 0.76" {frame}/>
  <body name="gantry_carriage" gravcomp="1">
    <joint name="gantry_y" type="slide" axis="0 1 0" range="{lim['gantry_y']}"/>
    <geom type="box" size="0.05 0.05 0.03" pos="0 0 0.72" rgba="0.3 0.3 0.33 1" contype="0" conaffinity="0"/>
    <body name="gantry_column" gravcomp="1">
      <joint name="gantry_z" type="slide" axis="0 0 1" range="{lim['gantry_z']}"/>
      <geom type="cylinder" size="0.018 0.3" pos="0 0 0.4" rgba="0.8 0.8 0.8 1" contype="0" conaffinity="0"/>
      <body name="gantry_wrist" gravcomp="1">
        <joint name="gantry_yaw" type="hinge" axis="0 0 1" range="{lim['gantry_yaw']}" damping="2"/>
        {_gripper('0 0 0.066', '3.14159265358979 0 0')}
      </body>
    </body>
  </body>
</body>"""


def _bowl(segments: int = 16) -> str:
    r, h = BOWL_RADIUS, BOWL_HEIGHT
    color = 'rgba="0.95 0.85 0.55 1"'
    parts = [f'<geom name="bowl_floor" type="cylinder" size="{r + 0.006} 0.004" pos="0 0 0.004" {color}/>']
    half_width = r * math.tan(math.pi / segments) + 0.004
    for i in range(segments):
        a = 2 * math.pi * i / segments
        parts.append(f'<geom type="box" size="0.005 {half_width:.4f} {h / 2}" pos="{(r + 0.005) * math.cos(a):.4f} '
                     f'{(r + 0.005) * math.sin(a):.4f} {h / 2}" euler="0 0 {a:.4f}" {color}/>')
    return '<body name="bowl" mocap="true" pos="0.1 -0.2 0">' + '\n'.join(parts) + '</body>'


def _tray() -> str:
    hx, hy = TRAY_HALF
    color = 'rgba="0.35 0.35 0.4 1"'
    rim = 0.006
    return f"""
<body name="tray" mocap="true" pos="0.1 0.2 0">
  <geom name="tray_floor" type="box" size="{hx + rim} {hy + rim} {TRAY_FLOOR / 2}" pos="0 0 {TRAY_FLOOR / 2}" {color}/>
  <geom type="box" size="{rim / 2} {hy + rim} 0.012" pos="{hx + rim / 2} 0 0.012" {color}/>
  <geom type="box" size="{rim / 2} {hy + rim} 0.012" pos="{-hx - rim / 2} 0 0.012" {color}/>
  <geom type="box" size="{hx} {rim / 2} 0.012" pos="0 {hy + rim / 2} 0.012" {color}/>
  <geom type="box" size="{hx} {rim / 2} 0.012" pos="0 {-hy - rim / 2} 0.012" {color}/>
</body>"""


def _blocks() -> str:
    bodies = []
    for i, (name, rgb) in enumerate(BLOCK_COLORS.items()):
        bodies.append(
            f'<body name="{name}_block" pos="0 {0.1 * i} {BLOCK_HALF}"><freejoint name="{name}_block"/>'
            f'<geom name="{name}_block" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" '
            f'rgba="{_rgba(rgb)}" mass="0.05" friction="1.5 0.05 0.001" condim="4"/></body>')
    return '\n'.join(bodies)


def _actuators(embodiment: str) -> str:
    if embodiment == 'arm7':
        gains = [(500, 50)] * 4 + [(200, 20)] * 3
        robot = '\n'.join(f'<position name="{lim.name}" joint="{lim.name}" kp="{kp}" kv="{kv}" '
                          f'ctrlrange="{lim.low} {lim.high}"/>' for lim, (kp, kv) in zip(ARM_LIMITS, gains))
    else:
        gains = [(3000, 300)] * 3 + [(80, 4)]
        robot = '\n'.join(f'<position name="{lim.name}" joint="{lim.name}" kp="{kp}" kv="{kv}" '
                          f'ctrlrange="{lim.low} {lim.high}"/>' for lim, (kp, kv) in zip(GANTRY_LIMITS, gains))
    grip = (f'<position name="gripper" joint="finger_left" kp="300" kv="10" ctrlrange="0 {FINGER_OPEN}" '
            f'forcerange="-15 15"/>')
    return robot + '\n' + grip


def build_scene_xml(embodiment: str, image_size: int = 96) -> str:
    """MJCF for ``embodiment`` ('arm7' or 'gantry'); the offscreen buffer fits ``image_size`` square images."""
    if embodiment not in ('arm7', 'gantry'):
        raise ValueError(f'unknown embodiment {embodiment!r}: expected arm7 or gantry')
    robot = _arm_body() if embodiment == 'arm7' else _gantry_body()
    buffer = max(image_size, 64)
    return f"""
<mujoco model="pi07_tabletop_{embodiment}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{buffer}" offheight="{buffer}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5"/>
  </visual>
  <default>
    <geom solref="0.004 1"/>
    <default class="arm">
      <joint damping="3" armature="0.1"/>
      <geom contype="0" conaffinity="0" density="400"/>
    </default>
    <default class="gantry">
      <joint damping="30" armature="0.1"/>
    </default>
  </default>
  <worldbody>
    <light pos="0.2 0 1.8" dir="-0.1 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.05" pos="0 0 -0.76" rgba="0.3 0.32 0.35 1" contype="0"
          conaffinity="0"/>
    <geom name="table" type="box" size="0.62 0.5 0.02" pos="-0.08 0 -0.02" rgba="0.72 0.58 0.42 1"/>
    <camera name="scene" pos="0.55 0 0.62" xyaxes="0 1 0 -0.74 0 0.67" fovy="60"/>
    {_bowl()}
    {_tray()}
    {_blocks()}
    {robot}
  </worldbody>
  <equality><joint joint1="finger_left" joint2="finger_right" polycoef="0 1 0 0 0"/></equality>
  <actuator>
    {_actuators(embodiment)}
  </actuator>
</mujoco>"""
