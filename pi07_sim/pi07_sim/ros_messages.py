"""ROS 2 messages from simulator data (shared by the sim node, the expert node and ``collect``).

Only message packages are imported here, never rclpy's node machinery, so ``collect`` can build and serialise
the exact messages a live sim would publish without starting DDS.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension

from pi07_msgs.msg import EndEffectorTarget, EpisodeMetadata, Subtask, Task, TaskStatus

from .kinematics import yaw_to_quaternion

TOPIC_TYPES = {
    'camera/scene/image_raw': 'sensor_msgs/msg/Image',
    'camera/wrist/image_raw': 'sensor_msgs/msg/Image',
    'joint_states': 'sensor_msgs/msg/JointState',
    'task': 'pi07_msgs/msg/Task',
    'task_status': 'pi07_msgs/msg/TaskStatus',
    'subtask': 'pi07_msgs/msg/Subtask',
    'episode_metadata': 'pi07_msgs/msg/EpisodeMetadata',
    'sim/object_poses': 'geometry_msgs/msg/PoseArray',
    'joint_trajectory_controller/joint_trajectory': 'trajectory_msgs/msg/JointTrajectory',
    'forward_position_controller/commands': 'std_msgs/msg/Float64MultiArray',
    'ee_target': 'pi07_msgs/msg/EndEffectorTarget',
}
SUBTASK_SOURCES = {'policy': Task.SUBTASKS_FROM_POLICY, 'plan': Task.SUBTASKS_FROM_PLAN,
                   'topic': Task.SUBTASKS_FROM_TOPIC}


def camera_frame(name: str) -> str:
    return f'{name}_camera_optical'


def to_time(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def header(seconds: float, frame_id: str = '') -> Header:
    return Header(stamp=to_time(seconds), frame_id=frame_id)


def image_msg(pixels: np.ndarray, seconds: float, camera: str) -> Image:
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    msg = Image(header=header(seconds, camera_frame(camera)), height=height, width=width, encoding='rgb8',
                is_bigendian=0, step=width * 3)
    msg.data = pixels.tobytes()
    return msg


def image_to_array(msg: Image) -> np.ndarray:
    """rgb8 Image -> (H, W, 3) uint8 (honours ``step``)."""
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    return rows[:, :msg.width * 3].reshape(msg.height, msg.width, 3)


def joint_state_msg(names: list[str], positions: np.ndarray, velocities: np.ndarray, seconds: float) -> JointState:
    return JointState(header=header(seconds), name=list(names), position=[float(v) for v in positions],
                      velocity=[float(v) for v in velocities], effort=[])


def object_poses_msg(poses: np.ndarray, seconds: float) -> PoseArray:
    msg = PoseArray(header=header(seconds, 'world'))
    for x, y, z, qw, qx, qy, qz in poses:
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
        pose.orientation.w, pose.orientation.x = float(qw), float(qx)
        pose.orientation.y, pose.orientation.z = float(qy), float(qz)
        msg.poses.append(pose)
    return msg


def object_poses_array(msg: PoseArray) -> np.ndarray:
    return np.array([[p.position.x, p.position.y, p.position.z, p.orientation.w, p.orientation.x,
                      p.orientation.y, p.orientation.z] for p in msg.poses])


def metadata_msg(embodiment: str, control_mode: str, speed: int = 0, quality: int = 0,
                 mistake: bool | None = None) -> EpisodeMetadata:
    return EpisodeMetadata(
        speed=int(speed), quality=int(quality),
        mistake=EpisodeMetadata.MISTAKE_UNSPECIFIED if mistake is None else int(bool(mistake)),
        control_mode=control_mode, has_advantage=False, advantage=0.0, embodiment=f'sim_{embodiment}')


def task_id(embodiment: str, family: str, seed: int, episode: int) -> str:
    """``<embodiment>/<family>/<seed>/<episode>``: the expert node rebuilds the episode from it."""
    return f'{embodiment}/{family}/{seed}/{episode}'


def parse_task_id(text: str) -> tuple[str, str, int, int]:
    embodiment, family, seed, episode = text.split('/')
    return embodiment, family, int(seed), int(episode)


def task_msg(spec, tid: str, seconds: float, metadata: EpisodeMetadata, subtask_source: str = 'plan') -> Task:
    source = SUBTASK_SOURCES[subtask_source]
    return Task(header=header(seconds), task_id=tid, instruction=spec.instruction, metadata=metadata,
                subtask_source=source, plan=list(spec.plan) if source == Task.SUBTASKS_FROM_PLAN else [])


def task_status_msg(tid: str, instruction: str, state: int, done: int, total: int, current: str, elapsed: float,
                    seconds: float, message: str = '') -> TaskStatus:
    return TaskStatus(header=header(seconds), task_id=tid, instruction=instruction, state=state,
                      subtasks_done=done, subtasks_total=total, progress=float(done) / total if total else 0.0,
                      current_subtask=current, elapsed_s=float(elapsed), message=message)


def subtask_msg(tid: str, text: str, index: int, seconds: float, done: bool = False) -> Subtask:
    return Subtask(header=header(seconds), task_id=tid, text=text, index=index, source=Subtask.SOURCE_EXPERT,
                   confidence=1.0, task_done=done)


def forward_command_msg(values: np.ndarray) -> Float64MultiArray:
    msg = Float64MultiArray(data=[float(v) for v in values])
    msg.layout.dim.append(MultiArrayDimension(label='joints', size=len(values), stride=len(values)))
    return msg


def ee_target_msg(action: np.ndarray, seconds: float = 0.0) -> EndEffectorTarget:
    """x, y, z, yaw, gripper -> EndEffectorTarget (frame 'world', tool pointing down turned by yaw)."""
    msg = EndEffectorTarget(header=header(seconds, 'world'), gripper=float(action[4]))
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in action[:3])
    w, x, y, z = yaw_to_quaternion(float(action[3]))
    msg.pose.orientation.w, msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z = w, x, y, z
    return msg
