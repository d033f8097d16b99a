"""Tool orientation convention and inverse kinematics for the 7-joint arm (damped least squares)."""
from __future__ import annotations

import mujoco
import numpy as np


def tool_down_rotation(yaw: float) -> np.ndarray:
    """Rotation matrix of the tool frame pointing down, turned by ``yaw`` about world z: Rz(yaw) @ Rx(pi)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a rotation by ``yaw`` about world z: how EndEffectorTarget carries the tool's yaw."""
    return float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))


def quaternion_to_yaw(w: float, x: float, y: float, z: float) -> float:
    """Yaw (about world z) of a quaternion; the other two angles are ignored (the tool always points down)."""
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def wrap_angle(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class ArmIK:
    """Joint positions that put the ``tcp`` site at a position with a tool-down orientation.

    Works on a scratch MjData so the simulation's state is never touched. A null-space term pulls towards a rest
    posture so that consecutive solutions stay smooth and far from the joint limits.
    """

    def __init__(self, model: mujoco.MjModel, joint_names: tuple[str, ...], site: str = 'tcp',
                 rest: np.ndarray | None = None):
        self.model = model
        self.data = mujoco.MjData(model)
        joint_ids = [model.joint(name).id for name in joint_names]
        self.qpos_index = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self.dof_index = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self.low = model.jnt_range[joint_ids, 0].copy()
        self.high = model.jnt_range[joint_ids, 1].copy()
        self.site_id = model.site(site).id
        self.rest = np.zeros(len(joint_ids)) if rest is None else np.asarray(rest, dtype=float)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tcp position and rotation matrix for joint positions ``q``."""
        self.data.qpos[self.qpos_index] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site_id].copy(), self.data.site_xmat[self.site_id].reshape(3, 3).copy()

    def solve(self, position: np.ndarray, yaw: float, q_start: np.ndarray, iterations: int = 40,
              tolerance: float = 2e-4, damping: float = 1e-3, rest_gain: float = 0.05) -> np.ndarray:
        target_quat = np.zeros(4)
        mujoco.mju_mat2Quat(target_quat, tool_down_rotation(yaw).reshape(-1))
        quat, quat_inv, quat_err, rot_err = np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(3)
        q = np.clip(np.asarray(q_start, dtype=float).copy(), self.low, self.high)
        n = len(q)
        for _ in range(iterations):
            self.data.qpos[self.qpos_index] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            pos = self.data.site_xpos[self.site_id]
            pos_err = position - pos
            # Rotation error as an angular velocity (world frame) that takes the current frame to the target.
            mujoco.mju_mat2Quat(quat, self.data.site_xmat[self.site_id])
            mujoco.mju_negQuat(quat_inv, quat)
            mujoco.mju_mulQuat(quat_err, target_quat, quat_inv)
            if quat_err[0] < 0:  # the short way round
                quat_err *= -1
            mujoco.mju_quat2Vel(rot_err, quat_err, 1.0)
            err = np.concatenate([pos_err, rot_err])
            if np.linalg.norm(err) < tolerance:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp, self._jacr])[:, self.dof_index]  # (6, n)
            jjt = jac @ jac.T + damping * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            null = np.eye(n) - jac.T @ np.linalg.solve(jjt, jac)
            dq += null @ (rest_gain * (self.rest - q))
            q = np.clip(q + dq, self.low, self.high)
        return q
