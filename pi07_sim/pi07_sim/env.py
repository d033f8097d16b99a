"""TabletopEnv: the simulated robot as a plain Python object (no ROS).

    env = TabletopEnv('arm7', 'ordered_place', image_size=96, seed=0)
    obs = env.reset()                     # {'images': {'scene', 'wrist'}, 'state', 'time'}
    obs = env.step(action)                # one control step (0.1 s at 10 Hz); the physics substeps inside
    env.task.instruction, env.task.plan   # what to do, and the subtasks it takes
    env.progress(), env.success()         # (subtasks done in order, total), all done and still holding

Actions: arm7 = 7 absolute joint position targets (rad) + gripper (0 open .. 1 closed); gantry = tool target
x, y, z (m), yaw (rad) + gripper. Out-of-range actions are clipped here (the ROS node rejects them instead).
The ROS node drives the same object with ``set_target`` / ``advance`` / ``observe`` at its own rates.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from .kinematics import ArmIK, quaternion_to_yaw
from .scene import (
    ARM_JOINTS,
    ARM_LIMITS,
    BLOCK_COLORS,
    BLOCK_HALF,
    FINGER_OPEN,
    GANTRY_JOINTS,
    GANTRY_LIMITS,
    build_scene_xml,
)
from .tasks import FAMILIES, ProgressTracker, TaskSpec, make_task

EMBODIMENTS = ('arm7', 'gantry')
CAMERA_NAMES = ('scene', 'wrist')
GRIPPER_JOINT = 'gripper'
ARM_HOME_TCP = (np.array([0.0, 0.0, 0.24]), 0.0)  # tcp position and yaw of the arm's home posture
GANTRY_HOME = np.array([0.0, 0.0, 0.24, 0.0])
SETTLE_S = 0.1  # physics run at reset so the blocks come to rest before time 0


@dataclass(frozen=True)
class ActionSpec:
    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    control_mode: str  # 'joint' (arm7) or 'ee' (gantry)

    @property
    def dim(self) -> int:
        return len(self.names)


class TabletopEnv:
    def __init__(self, embodiment: str = 'arm7', task_family: str = 'ordered_place', image_size: int = 96,
                 seed: int = 0, render: bool = True, control_rate_hz: float = 10.0):
        if embodiment not in EMBODIMENTS:
            raise ValueError(f'unknown embodiment {embodiment!r}: expected one of {", ".join(EMBODIMENTS)}')
        if task_family not in FAMILIES:
            raise ValueError(f'unknown task family {task_family!r}: expected one of {", ".join(FAMILIES)}')
        self.embodiment = embodiment
        self.task_family = task_family
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.control_period = 1.0 / control_rate_hz
        self.camera_names = list(CAMERA_NAMES)
        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(embodiment, self.image_size))
        self.data = mujoco.MjData(self.model)
        self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size) if render else None

        robot_joints = ARM_JOINTS if embodiment == 'arm7' else GANTRY_JOINTS
        limits = ARM_LIMITS if embodiment == 'arm7' else GANTRY_LIMITS
        self.joint_names = [*robot_joints, GRIPPER_JOINT]
        self._robot_qpos = np.array([self.model.jnt_qposadr[self.model.joint(j).id] for j in robot_joints])
        self._finger_qpos = self.model.jnt_qposadr[self.model.joint('finger_left').id]
        self._n_robot = len(robot_joints)
        names = tuple(self.joint_names) if embodiment == 'arm7' else ('x', 'y', 'z', 'yaw', GRIPPER_JOINT)
        self.action_spec = ActionSpec(
            names=names,
            low=np.array([lim.low for lim in limits] + [0.0]),
            high=np.array([lim.high for lim in limits] + [1.0]),
            control_mode='joint' if embodiment == 'arm7' else 'ee',
        )
        self._block_body = {c: self.model.body(f'{c}_block').id for c in BLOCK_COLORS}
        self._block_qpos = {c: self.model.jnt_qposadr[self.model.joint(f'{c}_block').id] for c in BLOCK_COLORS}
        self._block_geom = {c: self.model.geom(f'{c}_block').id for c in BLOCK_COLORS}
        self._pad_geoms = {self.model.geom('pad_left').id, self.model.geom('pad_right').id}
        self._mocap = {name: self.model.body_mocapid[self.model.body(name).id] for name in ('bowl', 'tray')}
        self._tcp_site = self.model.site('tcp').id
        self.ik = None
        if embodiment == 'arm7':
            guess = np.array([0.0, 0.5, 0.0, 1.7, 0.0, 0.95, 0.0])
            self.ik = ArmIK(self.model, ARM_JOINTS, rest=guess)
            self.home = self.ik.solve(ARM_HOME_TCP[0], ARM_HOME_TCP[1], guess, iterations=200)
            self.ik.rest = self.home.copy()
        else:
            self.home = GANTRY_HOME.copy()
        self.task: TaskSpec | None = None
        self._tracker: ProgressTracker | None = None
        self._resets = 0

    # ----------------------------------------------------------------------------------------------- episode
    def reset(self, seed: int | None = None, task_family: str | None = None) -> dict:
        """New episode: layout, task and wording from ``seed`` (default: the constructor's seed, then +1 each)."""
        if seed is None:
            seed = self.seed + self._resets
        self._resets += 1
        if task_family is not None:
            if task_family not in FAMILIES:
                raise ValueError(f'unknown task family {task_family!r}: expected one of {", ".join(FAMILIES)}')
            self.task_family = task_family
        self.task = make_task(self.task_family, int(seed))
        self._tracker = ProgressTracker(self.task)
        mujoco.mj_resetData(self.model, self.data)
        layout = self.task.layout
        self.data.mocap_pos[self._mocap['bowl']] = [*layout.bowl_xy, 0.0]
        self.data.mocap_pos[self._mocap['tray']] = [*layout.tray_xy, 0.0]
        for colour, (x, y, yaw) in layout.blocks.items():
            adr = self._block_qpos[colour]
            self.data.qpos[adr:adr + 7] = [x, y, BLOCK_HALF, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qpos[self._robot_qpos] = self.home
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        self.data.qpos[self.model.jnt_qposadr[self.model.joint('finger_right').id]] = FINGER_OPEN
        self.set_target(np.concatenate([self._home_action(), [0.0]]))
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=int(round(SETTLE_S / self.model.opt.timestep)))
        self.data.time = 0.0
        return self.observe()

    def _home_action(self) -> np.ndarray:
        return self.home.copy()

    def step(self, action: np.ndarray) -> dict:
        self.set_target(action)
        self.advance(self.control_period)
        return self.observe()

    # ----------------------------------------------------------------------------------------------- control
    def set_target(self, action: np.ndarray) -> None:
        """Hold ``action`` (see the module docstring) as the controllers' target; clipped to the limits."""
        action = np.asarray(action, dtype=float).reshape(-1)
        if action.shape[0] != self.action_spec.dim:
            raise ValueError(f'action has {action.shape[0]} values, expected {self.action_spec.dim}')
        action = np.clip(action, self.action_spec.low, self.action_spec.high)
        self.data.ctrl[:self._n_robot] = action[:self._n_robot]
        self.data.ctrl[self._n_robot] = FINGER_OPEN * (1.0 - action[-1])

    def current_target(self) -> np.ndarray:
        """The action being held (same layout as an action)."""
        gripper = 1.0 - self.data.ctrl[self._n_robot] / FINGER_OPEN
        return np.concatenate([self.data.ctrl[:self._n_robot], [gripper]])

    def advance(self, seconds: float) -> None:
        """Run the physics for ``seconds`` (rounded to whole 2 ms steps) and update the task's progress."""
        steps = max(1, int(round(seconds / self.model.opt.timestep)))
        mujoco.mj_step(self.model, self.data, nstep=steps)
        if self._tracker is not None:
            self._tracker.update(self)

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def physics_timestep(self) -> float:
        return float(self.model.opt.timestep)

    # ----------------------------------------------------------------------------------------------- observation
    def state(self) -> np.ndarray:
        """arm7: 7 joint positions + gripper; gantry: x, y, z, yaw + gripper (0 open .. 1 closed), float32."""
        gripper = 1.0 - self.data.qpos[self._finger_qpos] / FINGER_OPEN
        return np.concatenate([self.data.qpos[self._robot_qpos], [gripper]]).astype(np.float32)

    def joint_velocities(self) -> np.ndarray:
        dof = [self.model.jnt_dofadr[self.model.joint(j).id] for j in self.joint_names[:-1]]
        finger = self.model.jnt_dofadr[self.model.joint('finger_left').id]
        return np.concatenate([self.data.qvel[dof], [-self.data.qvel[finger] / FINGER_OPEN]]).astype(np.float32)

    def render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            raise RuntimeError('this environment was created with render=False')
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()

    def observe(self, render: bool = True) -> dict:
        images = {}
        if render and self._renderer is not None:
            images = {name: self.render(name) for name in self.camera_names}
        return {'images': images, 'state': self.state(), 'time': self.time}

    # ----------------------------------------------------------------------------------------------- task
    def progress(self) -> tuple[int, int]:
        return self._tracker.done, self._tracker.total

    def success(self) -> bool:
        return self._tracker.success(self)

    def timed_out(self) -> bool:
        return self.time >= self.task.time_limit_s

    def done(self) -> bool:
        return self.success() or self.timed_out()

    # ----------------------------------------------------------------------------------------------- world (privileged)
    def block_position(self, name: str) -> np.ndarray:
        return self.data.xpos[self._block_body[name]].copy()

    def block_yaw(self, name: str) -> float:
        return quaternion_to_yaw(*self.data.xquat[self._block_body[name]])

    def fixture_position(self, name: str) -> np.ndarray:
        return self.data.mocap_pos[self._mocap[name]].copy()

    def block_grasped(self, name: str) -> bool:
        geom = self._block_geom[name]
        contacts = self.data.contact[:self.data.ncon]
        pairs = zip(contacts.geom1, contacts.geom2)
        return any((a == geom and b in self._pad_geoms) or (b == geom and a in self._pad_geoms) for a, b in pairs)

    def tcp_pose(self) -> tuple[np.ndarray, float]:
        """Tool-centre position (m) and yaw (rad, about world z)."""
        rot = self.data.site_xmat[self._tcp_site].reshape(3, 3)
        return self.data.site_xpos[self._tcp_site].copy(), float(np.arctan2(rot[1, 0], rot[0, 0]))

    def object_names(self) -> list[str]:
        """Order of the poses in ``object_poses`` (and on the sim node's ``sim/object_poses`` topic)."""
        return [f'{c}_block' for c in BLOCK_COLORS] + ['bowl', 'tray']

    def object_poses(self) -> np.ndarray:
        """(N, 7) array of x, y, z, qw, qx, qy, qz in ``object_names`` order."""
        rows = [np.concatenate([self.data.xpos[b], self.data.xquat[b]]) for b in self._block_body.values()]
        for name in ('bowl', 'tray'):
            mocap = self._mocap[name]
            rows.append(np.concatenate([self.data.mocap_pos[mocap], self.data.mocap_quat[mocap]]))
        return np.array(rows)

    def sync(self, state: np.ndarray, object_poses: np.ndarray | None = None, time: float | None = None) -> None:
        """Mirror another simulator's state (the ROS expert keeps a copy of the world this way)."""
        state = np.asarray(state, dtype=float)
        self.data.qpos[self._robot_qpos] = state[:self._n_robot]
        opening = FINGER_OPEN * (1.0 - state[self._n_robot])
        self.data.qpos[self._finger_qpos] = opening
        self.data.qpos[self.model.jnt_qposadr[self.model.joint('finger_right').id]] = opening
        if object_poses is not None:
            for colour, pose in zip(BLOCK_COLORS, object_poses[:len(BLOCK_COLORS)]):
                adr = self._block_qpos[colour]
                self.data.qpos[adr:adr + 7] = pose
            self.data.mocap_pos[self._mocap['bowl']] = object_poses[len(BLOCK_COLORS)][:3]
            self.data.mocap_pos[self._mocap['tray']] = object_poses[len(BLOCK_COLORS) + 1][:3]
        if time is not None:
            self.data.time = time
        mujoco.mj_forward(self.model, self.data)
        if self._tracker is not None:
            self._tracker.update(self)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
