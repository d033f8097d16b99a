"""The `chunk_executor` lifecycle node: the only node that commands the robot.

At each control tick it takes the newest ActionChunk that covers now (pi07_policy.control.chunk_schedule), clamps
it to the profile's position and velocity limits and sends it to the configured controller interface. It holds
the last command when chunks go stale, then stops; a `stop` message stops it at once; NaN or stale joint states
stop it; it commands nothing unless active. Topics and parameters: docs/interfaces.md#chunk_executor.
"""
from __future__ import annotations

import math
import time

import numpy as np
from builtin_interfaces.msg import Duration
from pi07_common.diagnostics import ERROR, OK, WARN, Diagnostics
from pi07_common.lifecycle import ManagedNode
from pi07_common.node_utils import declare, param, run_node, stamp_to_sec
from pi07_common.qos import SENSOR, STREAM
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from pi07_msgs.msg import ActionChunk, EndEffectorTarget
from pi07_policy.control.chunk_schedule import ChunkError, ChunkExecutorCore, ExecutorState, Limits, make_chunk
from pi07_policy.control.gripper_dwell import GripperDwell

INTERFACES = {
    'joint_trajectory': (JointTrajectory, 'joint_trajectory_controller/joint_trajectory'),
    'forward_position': (Float64MultiArray, 'forward_position_controller/commands'),
    'ee_target': (EndEffectorTarget, 'ee_target'),
}


class ChunkExecutorNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__('chunk_executor', **kwargs)
        declare(self, 'control_rate_hz', 10.0, 'Rate at which commands are sent to the controller (Hz).')
        declare(self, 'interface', 'forward_position',
                'Controller interface: joint_trajectory (joint_trajectory_controller), forward_position '
                '(forward position controller, Float64MultiArray) or ee_target (pi07_msgs/EndEffectorTarget).')
        declare(self, 'command_topic', '', 'Topic to command; "" = the interface\'s default (docs/interfaces.md).')
        declare(self, 'joint_names', [''], 'Names of the action dimensions, in chunk order (joint or EE axes).')
        declare(self, 'state_names', [''], 'joint_states names measuring each action dimension, in chunk order '
                '("" or empty = joint_names); used to hold the measured position on stop and to check NaN.')
        declare(self, 'position_min', [0.0], 'Lower position limit per action dimension (rad, m, or 0..1).')
        declare(self, 'position_max', [0.0], 'Upper position limit per action dimension.')
        declare(self, 'velocity_max', [0.0], 'Largest speed per action dimension (units/s).')
        declare(self, 'stop_after_s', 1.0, 'Hold the last command this long when no chunk covers now, then stop.')
        declare(self, 'joint_state_timeout_s', 1.0, 'Stop when joint_states are older than this (0 = no check).')
        declare(self, 'gripper_name', '', 'The binary gripper\'s action dimension (one of joint_names; "" = none). '
                'Closed above the midpoint of its position range.')
        declare(self, 'gripper_min_dwell_s', 0.0, 'After the gripper switches, obey the opposite command only this '
                'much later (s; 0 = off; negative or NaN fails configure): removes open/close chatter between '
                're-planned chunks.')
        declare(self, 'ee_frame_id', 'world', 'Frame of end-effector targets (interface ee_target).')
        self._core = None
        self._timer = None

    # --- lifecycle --------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        names = [n for n in param(self, 'joint_names') if n]
        try:
            limits = Limits.from_lists(param(self, 'position_min'), param(self, 'position_max'),
                                       param(self, 'velocity_max'))
            if limits.dim != len(names):
                raise ValueError(f'{len(names)} joint_names but limits for {limits.dim} dimensions')
            interface = param(self, 'interface')
            if interface not in INTERFACES:
                raise ValueError(f'interface {interface!r} is not one of {", ".join(INTERFACES)}')
            if interface == 'ee_target' and len(names) != 5:
                raise ValueError('interface ee_target expects 5 dimensions: x, y, z, yaw, gripper')
            gripper_dwell = self._gripper_dwell(names, limits)
        except ValueError as exc:
            self.get_logger().error(f'bad configuration: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._names = names
        state_names = [n for n in param(self, 'state_names') if n]
        self._state_names = state_names if len(state_names) == len(names) else names
        self._interface = interface
        self._period = 1.0 / param(self, 'control_rate_hz')
        self._core = ChunkExecutorCore(limits, control_dt=self._period, stop_after_s=param(self, 'stop_after_s'),
                                       gripper_dwell=gripper_dwell)
        msg_type, default_topic = INTERFACES[interface]
        self._command_pub = self.create_lifecycle_publisher(msg_type, param(self, 'command_topic') or default_topic,
                                                            STREAM)
        self._input_subs = [
            self.create_subscription(ActionChunk, 'action_chunk', self._on_chunk, STREAM),
            self.create_subscription(JointState, 'joint_states', self._on_joint_state, SENSOR),
            self.create_subscription(Bool, 'stop', self._on_stop, STREAM),
        ]
        self._position = None           # measured, in action order; None until all names are seen
        self._state_time = None         # monotonic time of the last good joint state
        self._joint_state_fault = ''    # what is wrong with the latest joint state ('' when it is valid)
        self._stats = {'chunks': 0, 'rejected': 0, 'clamped_ticks': 0, 'ticks': 0, 'late_ticks': 0}
        self._chunk_times: list[float] = []
        self._last_error = ''
        self._stop_requested = False
        self._last_tick_wall = None
        self._timer = self.create_timer(self._period, self._on_tick)
        self._diagnostics = Diagnostics(self, hardware_id='pi07_chunk_executor')
        self._diagnostics.add('executor', self._status)
        self.get_logger().info(f'configured: {interface} on {self._command_pub.topic_name}, {len(names)} dims, '
                               f'{1 / self._period:.1f} Hz')
        return TransitionCallbackReturn.SUCCESS

    def _gripper_dwell(self, names: list[str], limits: Limits) -> GripperDwell | None:
        gripper, dwell = param(self, 'gripper_name'), param(self, 'gripper_min_dwell_s')
        if not (math.isfinite(dwell) and dwell >= 0):   # a NaN dwell would never let the gripper switch again
            raise ValueError(f'gripper_min_dwell_s must be a number >= 0, got {dwell}')
        if not gripper or dwell == 0:
            return None
        if gripper not in names:
            raise ValueError(f'gripper_name {gripper!r} is not one of joint_names {names}')
        i = names.index(gripper)
        return GripperDwell(i, 0.5 * (limits.position_min[i] + limits.position_max[i]), dwell)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._core.activate()
        if self._stop_requested:
            self._core.stop('stop requested on the stop topic', self._position)
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._core.deactivate()
        return super().on_deactivate(state)

    def release(self) -> None:
        if self._core is None:
            return
        self._core.deactivate()
        self.destroy_timer(self._timer)
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self.destroy_lifecycle_publisher(self._command_pub)
        self._diagnostics.destroy()
        self._core = None

    # --- inputs -----------------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            if msg.names and list(msg.names) != self._names:
                raise ChunkError(f'chunk dimensions {list(msg.names)} do not match this robot {self._names} '
                                 '(a checkpoint for another embodiment?)')
            chunk = make_chunk(stamp_to_sec(msg.header.stamp), msg.dt, msg.actions, msg.horizon, msg.action_dim,
                               len(self._names), sequence=msg.sequence, frozen_prefix=msg.frozen_prefix,
                               observation_time=stamp_to_sec(msg.observation_stamp))
            accepted = self._core.add_chunk(chunk, self._now())
        except ChunkError as exc:
            self._stats['rejected'] += 1
            self._error(f'rejected chunk {msg.sequence}: {exc}')
            return
        if accepted:
            self._stats['chunks'] += 1
            self._chunk_times = [t for t in self._chunk_times if t > time.monotonic() - 5.0] + [time.monotonic()]
        else:
            self._stats['rejected'] += 1
            self.get_logger().warning(f'chunk {msg.sequence} dropped: already over or older than the newest',
                                      throttle_duration_sec=2.0)

    def _on_joint_state(self, msg: JointState) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        if not all(name in index for name in self._state_names):
            return  # another robot part's joint states; the names we need are elsewhere
        if len(msg.position) != len(msg.name):
            self._joint_state_fault = f'joint_states has {len(msg.position)} positions for {len(msg.name)} names'
            self._fault(self._joint_state_fault)
            return
        position = np.array([msg.position[index[n]] for n in self._state_names], dtype=np.float64)
        if not np.isfinite(position).all():
            bad = [n for n, v in zip(self._names, position) if not math.isfinite(v)]
            self._joint_state_fault = f'joint_states has NaN/inf for {bad}'
            self._fault(self._joint_state_fault)
            return
        self._joint_state_fault = ''
        self._position = position
        self._state_time = time.monotonic()

    def _on_stop(self, msg: Bool) -> None:
        self._stop_requested = bool(msg.data)
        if msg.data:
            self._core.stop('stop requested on the stop topic', self._position)
            self._on_tick()  # send the final hold command now, not at the next tick
            self._diagnostics.force_update()
            self.get_logger().warning('STOP requested: holding position, commanding nothing more')
        elif self._core.state is ExecutorState.STOPPED:
            self._core.resume()
            self.get_logger().info('stop released: waiting for a fresh chunk')

    def _fault(self, reason: str) -> None:
        if self._core.state not in (ExecutorState.STOPPED, ExecutorState.INACTIVE):
            self._core.stop(reason, None)  # the measured position is not trustworthy: hold the last command
        if reason != self._last_error:
            self._diagnostics.force_update()  # a new fault is reported now, also when already stopped
        self._error(reason)

    def _error(self, message: str) -> None:
        if message != self._last_error:
            self.get_logger().error(message)
        self._last_error = message

    # --- the control tick -------------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        if self._core is None:
            return
        timeout = param(self, 'joint_state_timeout_s')
        if (timeout > 0 and self._core.state in (ExecutorState.RUNNING, ExecutorState.HOLDING)
                and (self._state_time is None or time.monotonic() - self._state_time > timeout)):
            self._fault(f'no valid joint_states for more than {timeout:.1f} s')
        result = self._core.tick(self._now())
        wall = time.monotonic()
        if self._last_tick_wall is not None and wall - self._last_tick_wall > 1.5 * self._period:
            self._stats['late_ticks'] += 1
        self._last_tick_wall = wall
        if result.command is None:
            return
        self._stats['ticks'] += 1
        self._stats['clamped_ticks'] += int(result.clamped)
        self._command_pub.publish(self._command_message(result.command))

    def _command_message(self, command: np.ndarray):
        values = [float(v) for v in command]
        if self._interface == 'forward_position':
            return Float64MultiArray(data=values)
        if self._interface == 'joint_trajectory':
            period_ns = int(self._period * 1e9)
            point = JointTrajectoryPoint(positions=values,
                                         time_from_start=Duration(sec=period_ns // 10**9, nanosec=period_ns % 10**9))
            return JointTrajectory(joint_names=self._names, points=[point])
        target = EndEffectorTarget(gripper=values[4])
        target.header.frame_id = param(self, 'ee_frame_id')
        target.pose.position.x, target.pose.position.y, target.pose.position.z = values[:3]
        target.pose.orientation.z, target.pose.orientation.w = math.sin(values[3] / 2), math.cos(values[3] / 2)
        return target

    # --- diagnostics ------------------------------------------------------------------------------------------
    def _status(self):
        state = self._core.state
        recent = [t for t in self._chunk_times if t > time.monotonic() - 5.0]
        values = dict(self._stats, state=state.value, chunk_rate_hz=f'{len(recent) / 5.0:.2f}',
                      switches=self._core.switches, stop_reason=self._core.stop_reason)
        if self._core.gripper_dwell is not None:
            values['gripper_ticks_held'] = self._core.gripper_dwell.suppressed
        if state is ExecutorState.STOPPED:
            reason = self._core.stop_reason
            # A stop for one reason (e.g. a late joint state) must not hide a fault that came after it (NaN).
            if self._joint_state_fault and self._joint_state_fault != reason:
                reason = f'{reason}; now {self._joint_state_fault}'
            faulted = self._joint_state_fault or self._core.stop_reason.startswith(('joint_states', 'no valid'))
            return ERROR if faulted else WARN, f'stopped: {reason}', values
        if state is ExecutorState.HOLDING:
            return WARN, 'chunks stale: holding', values
        if self._last_error and self._stats['rejected']:
            return WARN, self._last_error, values
        return OK, state.value, values


def main(args=None):
    return run_node(ChunkExecutorNode, args)


if __name__ == '__main__':
    main()
