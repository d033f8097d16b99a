"""ROS 2 node ``sim``: the MuJoCo tabletop robot behind standard robot interfaces.

A lifecycle node (configure: build the simulator and interfaces; activate: run the physics; cleanup: release).
With ``autostart`` (default) it configures and activates itself, since a plain ``ros2 run`` has no lifecycle
manager. All names are relative, so a namespace per robot works. docs/sim.md lists topics and parameters.
"""
from __future__ import annotations

import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from pi07_msgs.msg import EndEffectorTarget, Task, TaskStatus
from pi07_msgs.srv import ResetEpisode

from . import ros_messages as rm
from .commands import CommandRejected, CommandState, check_values
from .env import TabletopEnv
from .kinematics import quaternion_to_yaw

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
MAX_CATCH_UP_S = 0.1  # a late tick advances at most this much simulated time (no spiral when overloaded)
IK_TOLERANCE = 0.01  # m: an end-effector target the arm cannot reach closer than this is rejected


def to_stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class SimNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('sim', **kwargs)
        params = {
            'embodiment': ('arm7', "robot: 'arm7' (7 joints, joint commands) or 'gantry' (x, y, z, yaw)"),
            'task_family': ('ordered_place', "task family of the first episode: 'ordered_place', 'restore_layout', "
                                              "'middle_place'"),
            'seed': (0, 'seed of the first episode (layout, task and wording)'),
            'image_size': (96, 'camera images are image_size x image_size pixels (rgb8)'),
            'camera_rate_hz': (10.0, 'rate of camera/<name>/image_raw, in simulated time'),
            'joint_state_rate_hz': (50.0, 'rate of joint_states and sim/object_poses, in simulated time'),
            'status_rate_hz': (2.0, 'rate of task_status (also published when progress changes)'),
            'tick_rate_hz': (100.0, 'physics ticks per simulated second: commands are sampled at this rate'),
            'real_time': (True, 'pace the simulation to the wall clock; false runs it as fast as it goes'),
            'publish_clock': (False, 'publish /clock (simulated time) and stamp everything with it; combine '
                                     'with real_time:=false and use_sim_time:=true on the other nodes'),
            'subtask_source': ('plan', "Task.subtask_source: 'plan' (the Task carries the plan), 'policy', "
                                       "'topic'"),
            'autostart': (True, 'configure and activate on start (no lifecycle manager needed)'),
        }
        for name, (default, description) in params.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self.env: TabletopEnv | None = None
        self._timer = None
        self._pubs = {}
        self._subs = []
        self._service = None
        self._episode = 0

    def param(self, name: str):
        return self.get_parameter(name).value

    # ------------------------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.env = TabletopEnv(self.param('embodiment'), self.param('task_family'),
                                   image_size=int(self.param('image_size')), seed=int(self.param('seed')))
        except ValueError as error:
            self.get_logger().error(f'cannot configure: {error}')
            return TransitionCallbackReturn.FAILURE
        env = self.env
        spec = env.action_spec
        self.commands = CommandState(env.joint_names, spec.low, spec.high, env.current_target())
        self.real_time = bool(self.param('real_time'))
        self.publish_clock = bool(self.param('publish_clock'))
        self.tick_s = 1.0 / float(self.param('tick_rate_hz'))
        self.periods = {'camera': 1.0 / float(self.param('camera_rate_hz')),
                        'joints': 1.0 / float(self.param('joint_state_rate_hz')),
                        'status': 1.0 / float(self.param('status_rate_hz'))}
        pub = self.create_lifecycle_publisher
        self._pubs = {f'camera/{c}': pub(Image, f'camera/{c}/image_raw', 2) for c in env.camera_names}
        self._pubs.update({
            'joints': pub(JointState, 'joint_states', 10),
            'objects': pub(PoseArray, 'sim/object_poses', 10),
            'task': pub(Task, 'task', LATCHED),
            'status': pub(TaskStatus, 'task_status', 10),
        })
        if self.publish_clock:
            self._pubs['clock'] = pub(Clock, '/clock', 10)
        self._subs = [
            self.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                                     self._on_trajectory, 10),
            self.create_subscription(Float64MultiArray, 'forward_position_controller/commands',
                                     self._on_forward, 10),
            self.create_subscription(EndEffectorTarget, 'ee_target', self._on_ee_target, 10),
        ]
        self._service = self.create_service(ResetEpisode, 'reset_episode', self._on_reset)
        self.clock_offset = 0.0  # simulated seconds of earlier episodes (the published clock never goes back)
        self._start_episode(int(self.param('seed')), None)
        self.get_logger().info(f'configured: {env.embodiment}, {env.task_family}, {env.image_size} px, '
                               f'real_time={self.real_time}, publish_clock={self.publish_clock}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._wall_anchor = time.monotonic() - self.env.time
        self._timer = self.create_timer(self.tick_s if self.real_time else 1e-4, self._tick)
        self._publish_task()
        self.get_logger().info('active')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for publisher in self._pubs.values():
            self.destroy_publisher(publisher)
        for subscription in self._subs:
            self.destroy_subscription(subscription)
        if self._service is not None:
            self.destroy_service(self._service)
        self._pubs, self._subs, self._service = {}, [], None
        if self.env is not None:
            self.env.close()
            self.env = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.env is not None:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------------------------------------ time
    def now_s(self) -> float:
        """Stamp time of the current simulated instant: /clock time, or wall time when paced in real time."""
        if self.publish_clock:
            return self.clock_offset + self.env.time
        return self._episode_wall_start + self.env.time

    def _active(self) -> bool:
        return self._timer is not None

    # ------------------------------------------------------------------------------------------------ episodes
    def _start_episode(self, seed: int, family: str | None) -> None:
        env = self.env
        if self.publish_clock:
            self.clock_offset += env.time if env.task is not None else 0.0
        env.reset(seed=seed, task_family=family or None)
        self._episode += 1
        self._episode_wall_start = time.time()
        self._wall_anchor = time.monotonic()
        self.commands.reset(env.current_target())
        self.task_id = rm.task_id(env.embodiment, env.task_family, seed, self._episode)
        self.state = TaskStatus.STATE_RUNNING
        self._last_progress = -1
        self._due = dict.fromkeys(self.periods, 0.0)
        metadata = rm.metadata_msg(env.embodiment, env.action_spec.control_mode)
        self.task = rm.task_msg(env.task, self.task_id, self.now_s(), metadata, self.param('subtask_source'))

    def _publish_task(self) -> None:
        self._pubs['task'].publish(self.task)

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        try:
            self._start_episode(int(request.seed), request.task_family or None)
        except ValueError as error:
            response.success, response.message = False, str(error)
            self.get_logger().warning(f'reset_episode refused: {error}')
            return response
        self._publish_task()
        self._publish_due(force=True)
        response.success, response.message, response.task = True, f'episode {self.task_id}', self.task
        self.get_logger().info(f'episode {self.task_id}: {self.task.instruction}')
        return response

    # ------------------------------------------------------------------------------------------------ commands
    def _reject(self, topic: str, reason: str) -> None:
        self.get_logger().warning(f'rejected command on {topic}: {reason}; holding the previous target')

    def _on_forward(self, msg: Float64MultiArray) -> None:
        if not self._active():
            return
        try:
            self.commands.forward(list(msg.data))
        except CommandRejected as error:
            self._reject('forward_position_controller/commands', str(error))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not self._active():
            return
        now = self.now_s()
        start = to_stamp_seconds(msg.header.stamp) or now
        times = [to_stamp_seconds(p.time_from_start) for p in msg.points]
        try:
            self.commands.follow(list(msg.joint_names), times, [list(p.positions) for p in msg.points], start, now)
        except CommandRejected as error:
            self._reject('joint_trajectory_controller/joint_trajectory', str(error))

    def _on_ee_target(self, msg: EndEffectorTarget) -> None:
        if not self._active():
            return
        env = self.env
        p, q = msg.pose.position, msg.pose.orientation
        try:
            if not np.all(np.isfinite([p.x, p.y, p.z, q.w, q.x, q.y, q.z, msg.gripper])):
                raise CommandRejected('end-effector target: non-finite value')
            if abs(np.linalg.norm([q.w, q.x, q.y, q.z]) - 1.0) > 1e-3:
                raise CommandRejected('end-effector target: orientation is not a unit quaternion')
            ee = np.array([p.x, p.y, p.z, quaternion_to_yaw(q.w, q.x, q.y, q.z), msg.gripper])
            if env.embodiment == 'gantry':
                self.commands.forward(ee)
                return
            names = ['x', 'y', 'z', 'yaw', 'gripper']
            low = np.array([-np.inf, -np.inf, -np.inf, -np.pi, 0.0])
            high = np.array([np.inf, np.inf, np.inf, np.pi, 1.0])
            check_values(ee, names, low, high, 'end-effector target')
            joints = env.ik.solve(ee[:3], ee[3], self.commands.sample(self.now_s())[:-1], iterations=100)
            reached, _ = env.ik.forward(joints)
            if np.linalg.norm(reached - ee[:3]) > IK_TOLERANCE:
                raise CommandRejected(f'end-effector target: ({p.x:.3f}, {p.y:.3f}, {p.z:.3f}) is out of reach')
            self.commands.forward(np.concatenate([joints, [ee[4]]]))
        except CommandRejected as error:
            self._reject('ee_target', str(error))

    # ------------------------------------------------------------------------------------------------ stepping
    def _tick(self) -> None:
        env = self.env
        if self.real_time:
            lag = (time.monotonic() - self._wall_anchor) - env.time
            if lag < self.tick_s * 0.5:
                return
            if lag > MAX_CATCH_UP_S:  # overloaded: let simulated time slip rather than pile up work
                slip = lag - MAX_CATCH_UP_S
                self._wall_anchor += slip
                self._episode_wall_start += slip  # stamps stay wall time, as a driver's would
                lag = MAX_CATCH_UP_S
            ticks = max(1, int(lag / self.tick_s))
        else:
            ticks = 1
        for _ in range(ticks):
            env.set_target(self.commands.sample(self.now_s()))
            env.advance(self.tick_s)
        self._update_task_state()
        self._publish_due()

    def _update_task_state(self) -> None:
        if self.state != TaskStatus.STATE_RUNNING:
            return
        if self.env.success():
            self.state = TaskStatus.STATE_SUCCEEDED
            self.get_logger().info(f'episode {self.task_id} succeeded at {self.env.time:.1f} s')
        elif self.env.timed_out():
            self.state = TaskStatus.STATE_FAILED
            self.get_logger().info(f'episode {self.task_id} failed: time limit')

    def _publish_due(self, force: bool = False) -> None:
        env = self.env
        t, stamp = env.time, self.now_s()
        if self.publish_clock:
            self._pubs['clock'].publish(Clock(clock=rm.to_time(stamp)))
        due = {k for k, when in self._due.items() if force or t + 1e-9 >= when}
        for key in due:
            self._due[key] = t + self.periods[key] if force else max(self._due[key] + self.periods[key], t)
        if 'joints' in due:
            self._pubs['joints'].publish(rm.joint_state_msg(env.joint_names, env.state(), env.joint_velocities(),
                                                            stamp))
            self._pubs['objects'].publish(rm.object_poses_msg(env.object_poses(), stamp))
        if 'camera' in due:
            for camera in env.camera_names:
                try:
                    self._pubs[f'camera/{camera}'].publish(rm.image_msg(env.render(camera), stamp, camera))
                except Exception as error:  # an overloaded RELIABLE link can raise; the camera keeps going
                    self.get_logger().warning(f'camera {camera}: publish failed: {error}', throttle_duration_sec=5)
        done, total = env.progress()
        if 'status' in due or done != self._last_progress:
            self._last_progress = done
            current = env.task.plan[done] if done < total else ''
            message = {TaskStatus.STATE_SUCCEEDED: 'success', TaskStatus.STATE_FAILED: 'time limit reached'}
            self._pubs['status'].publish(rm.task_status_msg(
                self.task_id, env.task.instruction, self.state, done, total, current, t, stamp,
                message.get(self.state, '')))


def main(args=None) -> None:
    rclpy.init(args=args)
    node = SimNode()
    try:
        if node.param('autostart'):
            node.trigger_configure()
            node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
