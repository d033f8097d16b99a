"""ROS 2 node ``expert``: the scripted expert driving the ``sim`` node through its controller topics.

It keeps a mirror of the simulated world (a render-less TabletopEnv of the same episode, rebuilt from the
Task's ``task_id`` = embodiment/family/seed/episode, then synchronised from ``joint_states`` and
``sim/object_poses``), asks the scripted expert for the next action at the control rate, and sends it the way
a policy would: ``forward_position_controller/commands``, ``joint_trajectory_controller/joint_trajectory`` or
``ee_target``. It publishes the subtask it works on (``subtask``, latched, on change, source "expert") and the
episode's metadata (``episode_metadata``, latched). With ``episodes`` > 0 it runs that many episodes by calling
``reset_episode``.
"""
from __future__ import annotations

import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from pi07_msgs.msg import EndEffectorTarget, EpisodeMetadata, Subtask, Task, TaskStatus
from pi07_msgs.srv import ResetEpisode

from . import ros_messages as rm
from .env import TabletopEnv
from .expert import VARIANTS, make_expert

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


class ExpertNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('expert', **kwargs)
        params = {
            'variant': ('expert', f'expert variant: {", ".join(VARIANTS)}'),
            'seed': (0, 'seed of the variant\'s noise and mistakes'),
            'episodes': (0, 'run this many episodes via reset_episode (0: follow the sim\'s episodes, never reset)'),
            'first_episode_seed': (0, 'seed of the first episode it starts (then +1 per episode)'),
            'task_family': ('', "task family of the episodes it starts ('' = the sim's default)"),
            'control_rate_hz': (10.0, 'commands per second'),
            'command_interface': ('auto', "'forward', 'trajectory' or 'ee' ('auto': forward for arm7, ee for "
                                          "gantry)"),
            'exit_when_done': (True, 'shut down after the last of `episodes`'),
            'linger_s': (1.0, 'before shutting down, keep serving the latched topics this long (wall seconds)'),
            'autostart': (True, 'configure and activate on start'),
        }
        for name, (default, description) in params.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self.mirror: TabletopEnv | None = None
        self.expert = None
        self.finished = False

    def param(self, name: str):
        return self.get_parameter(name).value

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.param('variant') not in VARIANTS:
            self.get_logger().error(f'unknown variant {self.param("variant")!r}')
            return TransitionCallbackReturn.FAILURE
        if VARIANTS[self.param('variant')].disturb_m > 0:
            # one command topic carries both what the robot runs and what a recorder keeps: sending the disturbed
            # command would record it as the label, so the disturbance is left to `collect`
            self.get_logger().warning(f'variant {self.param("variant")!r}: its execution disturbance is applied by '
                                      '`collect` only; this node sends the clean commands')
        self.task: Task | None = None
        self.joint_state: JointState | None = None
        self.object_poses: np.ndarray | None = None
        self.status: TaskStatus | None = None
        self.subtask_text, self.subtask_index = None, -1
        self.episodes_started = 0
        self.pending = None
        self.results = []
        self.pub_forward = self.create_lifecycle_publisher(Float64MultiArray,
                                                           'forward_position_controller/commands', 10)
        self.pub_trajectory = self.create_lifecycle_publisher(JointTrajectory,
                                                              'joint_trajectory_controller/joint_trajectory', 10)
        self.pub_ee = self.create_lifecycle_publisher(EndEffectorTarget, 'ee_target', 10)
        self.pub_subtask = self.create_lifecycle_publisher(Subtask, 'subtask', LATCHED)
        self.pub_metadata = self.create_lifecycle_publisher(EpisodeMetadata, 'episode_metadata', LATCHED)
        self.create_subscription(Task, 'task', self._on_task, LATCHED)
        self.create_subscription(JointState, 'joint_states', lambda m: setattr(self, 'joint_state', m), 10)
        self.create_subscription(PoseArray, 'sim/object_poses',
                                 lambda m: setattr(self, 'object_poses', rm.object_poses_array(m)), 10)
        self.create_subscription(TaskStatus, 'task_status', self._on_status, 10)
        self.reset_client = self.create_client(ResetEpisode, 'reset_episode')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self.timer = self.create_timer(1.0 / float(self.param('control_rate_hz')), self._tick)
        if int(self.param('episodes')) > 0:
            self._request_episode()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.destroy_timer(self.timer)
        return super().on_deactivate(state)

    # ------------------------------------------------------------------------------------------------ episodes
    def _request_episode(self) -> None:
        if not self.reset_client.wait_for_service(timeout_sec=0.0):
            self.create_timer_once = self.create_timer(0.5, self._retry_request)
            return
        request = ResetEpisode.Request(seed=int(self.param('first_episode_seed')) + self.episodes_started,
                                       task_family=self.param('task_family'))
        self.episodes_started += 1
        self.pending = self.reset_client.call_async(request)
        self.get_logger().info(f'requested episode seed {request.seed}')

    def _retry_request(self) -> None:
        self.destroy_timer(self.create_timer_once)
        self._request_episode()

    def _on_task(self, msg: Task) -> None:
        if int(self.param('episodes')) == 0:  # following the sim's episodes; otherwise ours come from the service
            self._adopt(msg)

    def _check_pending(self) -> None:
        if self.pending is None or not self.pending.done():
            return
        response, self.pending = self.pending.result(), None
        if response is None or not response.success:
            self.get_logger().error(f'reset_episode failed: {getattr(response, "message", "no response")}')
            self.finished = bool(self.param('exit_when_done'))
            return
        self._adopt(response.task)

    def _adopt(self, msg: Task) -> None:
        try:
            embodiment, family, seed, _ = rm.parse_task_id(msg.task_id)
        except ValueError:
            self.get_logger().error(f'task_id {msg.task_id!r} is not embodiment/family/seed/episode: '
                                    'the expert only drives pi07_sim episodes')
            return
        if self.task is not None and self.task.task_id == msg.task_id:
            return
        if self.mirror is None or self.mirror.embodiment != embodiment:
            self.mirror = TabletopEnv(embodiment, family, render=False)
        self.mirror.reset(seed=seed, task_family=family)
        self.expert = make_expert(self.mirror, self.param('variant'), int(self.param('seed')) + seed)
        self.task, self.status = msg, None
        self.subtask_text, self.subtask_index = None, -1
        interface = self.param('command_interface')
        self.interface = interface if interface != 'auto' else ('forward' if embodiment == 'arm7' else 'ee')
        meta = self.expert.metadata
        self.pub_metadata.publish(rm.metadata_msg(embodiment, self.mirror.action_spec.control_mode, meta['speed'],
                                                  meta['quality'], meta['mistake']))
        self.get_logger().info(f'episode {msg.task_id} ({self.param("variant")}): {msg.instruction}')

    def _on_status(self, msg: TaskStatus) -> None:
        if self.task is None or msg.task_id != self.task.task_id:
            return
        self.status = msg
        if msg.state in (TaskStatus.STATE_SUCCEEDED, TaskStatus.STATE_FAILED) and self.expert is not None:
            self.results.append(msg.state == TaskStatus.STATE_SUCCEEDED)
            self._publish_subtask('', done=True)
            self.get_logger().info(f'episode {msg.task_id}: {"success" if self.results[-1] else "failure"} '
                                   f'({sum(self.results)}/{len(self.results)} so far)')
            self.expert = None
            if int(self.param('episodes')) > 0:
                if self.episodes_started < int(self.param('episodes')):
                    self._request_episode()
                elif self.param('exit_when_done'):
                    self.finished = True

    # ------------------------------------------------------------------------------------------------ control
    def _state_vector(self) -> np.ndarray | None:
        js = self.joint_state
        if js is None:
            return None
        index = {name: i for i, name in enumerate(js.name)}
        if any(name not in index for name in self.mirror.joint_names):
            return None
        return np.array([js.position[index[name]] for name in self.mirror.joint_names])

    def _tick(self) -> None:
        self._check_pending()
        if self.expert is None or self.object_poses is None:
            return
        state = self._state_vector()
        if state is None:
            return
        self.mirror.sync(state, self.object_poses)
        action, text = self.expert.act()
        if self.interface == 'ee':
            ee = action if self.mirror.embodiment == 'gantry' else None
            if ee is None:  # arm7 asked for ee targets: send the expert's tool setpoint
                ee = np.array([*self.expert.setpoint, self.expert.setpoint_yaw, self.expert.gripper])
            self.pub_ee.publish(rm.ee_target_msg(ee))
        elif self.interface == 'trajectory':
            point = JointTrajectoryPoint(positions=[float(v) for v in action],
                                         time_from_start=Duration(sec=0, nanosec=int(1e9 / self.param(
                                             'control_rate_hz'))))
            self.pub_trajectory.publish(JointTrajectory(joint_names=self.mirror.joint_names, points=[point]))
        else:
            self.pub_forward.publish(rm.forward_command_msg(action))
        if text and text != self.subtask_text:
            self._publish_subtask(text)

    def _publish_subtask(self, text: str, done: bool = False) -> None:
        if text != self.subtask_text:
            self.subtask_index += 1
            self.subtask_text = text
            if text:
                self.get_logger().info(f'subtask {self.subtask_index}: {text}')
        now = self.get_clock().now().nanoseconds * 1e-9
        self.pub_subtask.publish(rm.subtask_msg(self.task.task_id, text, max(self.subtask_index, 0), now, done))


def main(args=None) -> None:
    rclpy.init(args=args)
    node = ExpertNode()
    try:
        if node.param('autostart'):
            node.trigger_configure()
            node.trigger_activate()
        while rclpy.ok() and not node.finished:
            rclpy.spin_once(node, timeout_sec=0.1)
        if node.results:
            node.get_logger().info(f'done: {sum(node.results)}/{len(node.results)} episodes succeeded')
        end = time.monotonic() + float(node.param('linger_s'))
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
