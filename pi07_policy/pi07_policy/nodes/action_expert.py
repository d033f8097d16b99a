"""The `action_expert` lifecycle node: the VLA turning observations and prompt into ActionChunks.

It keeps the newest image per camera and joint state, the task (instruction + metadata), the subtask, subgoal
images and short-term visual memory; an inference thread assembles an observation (all inputs present, fresh and
within a stamp tolerance of each other), runs the policy with whatever prompt components are present, and
publishes an ActionChunk stamped with the time its first action is to run. In `rtc` mode (default) the chunk
joins the previous one by Real-Time Chunking, with a delay from a latency estimate that leaves out the cold
start; `sync` mode samples each chunk from scratch (openpi's behaviour). Topics and parameters:
docs/interfaces.md#action_expert.
"""
from __future__ import annotations

import math
import threading
import time
import zlib

import numpy as np
from pi07_common.diagnostics import ERROR, OK, WARN, Diagnostics
from pi07_common.images import ImageError, image_to_rgb, memory_frames_to_rgb, memory_of_another_task
from pi07_common.lifecycle import WorkerNode
from pi07_common.metadata import metadata_to_dict
from pi07_common.node_utils import (
    TORCH_THREADS_HELP,
    declare,
    param,
    run_node,
    sec_to_stamp,
    set_torch_threads,
    stamp_to_sec,
)
from pi07_common.observations import CameraBuffer, JointStateBuffer, ObservationError, assemble
from pi07_common.qos import LATCHED, SENSOR, STREAM
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState

from pi07_msgs.msg import ActionChunk, SubgoalImages, Subtask, Task, VisualMemory
from pi07_policy.control.gripper_confirm import GripperSwitchConfirm
from pi07_policy.control.rtc_planner import LatencyEstimator, PublishedChunk, plan_request

try:  # a full ROS 2 install: synchronise cameras and joint states with message_filters
    import message_filters
except ImportError:  # PyPI wheels: pi07_common.observations matches the newest samples by stamp instead
    message_filters = None


def subtask_of(task: Task | None, subtask: Subtask | None) -> Subtask | None:
    """The subtask to act on for `task`: one published for another task (it arrived before its Task, or late
    from the last one) is not this task's. A subtask without a task id (a person's `ros2 topic pub`) applies to
    whatever task runs."""
    if subtask is None or task is None or not subtask.task_id or subtask.task_id == task.task_id:
        return subtask
    return None


class ActionExpertNode(WorkerNode):
    def __init__(self, **kwargs):
        super().__init__('action_expert', **kwargs)
        declare(self, 'checkpoint', '', 'VLA checkpoint directory (config.json, model.safetensors, ...).')
        declare(self, 'embodiment', '', 'Embodiment of this robot; a checkpoint trained for another is refused.')
        declare(self, 'cameras', ['scene', 'wrist'], 'Camera names, in the checkpoint\'s order.')
        declare(self, 'image_size', 96, 'Image size the model sees (px, square).')
        declare(self, 'resize_images', False, 'Resize camera images to image_size (else other sizes are errors).')
        declare(self, 'joint_names', [''], 'joint_states names forming the state vector, in order.')
        declare(self, 'action_names', [''], 'Names of the action dimensions (ActionChunk.names).')
        declare(self, 'control_mode', 'joint', 'Action space: joint or ee.')
        declare(self, 'control_rate_hz', 10.0, 'Control rate: the chunk\'s dt is 1 / control_rate_hz.')
        declare(self, 'mode', 'rtc', 'rtc (Real-Time Chunking), sync (each chunk from scratch, switched to on '
                'arrival) or pause (synchronous: the robot holds while each chunk is computed, then plays its first '
                'execution_horizon rows).')
        declare(self, 'rtc_method', 'auto', 'RTC: guidance (inpainting, any flow model), frozen (a model trained '
                'with training-time RTC continues the frozen rows) or auto (frozen where the model was so trained).')
        declare(self, 'execution_horizon', 8, 'RTC guidance: rows of the previous chunk the new one is joined to '
                '(s); pause: rows played of each chunk.')
        declare(self, 'gripper_name', '', 'The binary gripper\'s action dimension (one of action_names; "" = none): '
                'what gripper_confirm_lead_s watches.')
        declare(self, 'gripper_threshold', 0.5, 'Gripper values above this are closed (the middle of its range).')
        declare(self, 'gripper_confirm_lead_s', 0.0, 'A chunk whose first row still to play was planned more '
                'than this long after its observation (a slow inference) makes no gripper switch: it is cut short of '
                'its first one, and the next chunk is computed with the robot standing still and plays its rows '
                'within this lead from its first row (synchronous at grasps and releases, `mode` elsewhere). '
                '0 = off. Can be changed while it runs.')
        declare(self, 'rtc_delay_margin_s', 0.05, 'RTC: added to the expected delay (transport, latency spikes).')
        declare(self, 'min_chunk_period_s', 0.0, 'Start inferences at most this often (0: back to back).')
        declare(self, 'stamp_tolerance_s', 0.25, 'Images and joint state must be at most this far apart.')
        declare(self, 'max_input_age_s', 1.0, 'Inputs older than this are stale: no chunk is computed.')
        declare(self, 'injected_delay_s', 0.0, 'Extra delay added to each inference (experiments on latency).')
        declare(self, 'num_flow_steps', 0, 'Euler steps of flow sampling (0: the checkpoint\'s default).')
        declare(self, 'use_metadata', True, 'Give the task\'s metadata (speed, quality, ...) to the model.')
        declare(self, 'use_subgoals', True, 'Give subgoal images (from the world model) to the model.')
        declare(self, 'use_visual_memory', True, 'Give short-term visual memory frames to the model.')
        declare(self, 'seed', 0, 'Seed of the flow-matching noise (-1: random); restarted from it and the task id '
                'on each new task.')
        declare(self, 'torch_threads', 1, TORCH_THREADS_HELP)
        declare(self, 'use_message_filters', True, 'Synchronise images and joint states with message_filters\' '
                'ApproximateTimeSynchronizer where it is installed (else: newest samples within the tolerance).')
        declare(self, 'metadata_speed', -1, 'Steering: speed 1..5 for every task (-1: the task\'s own metadata).')
        declare(self, 'metadata_quality', -1, 'Steering: quality 1..5 for every task (-1: the task\'s own).')
        declare(self, 'metadata_mistake', -1, 'Steering: 0 no mistake, 1 mistake (-1: the task\'s own).')
        self._policy = None
        self._reseed_to: int | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        set_torch_threads(int(param(self, 'torch_threads')))
        try:
            self._gate = self._gripper_gate()
        except ValueError as exc:  # nothing created yet: the node stays unconfigured, with the reason
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        try:
            self._load_policy()
        except Exception as exc:  # a bad checkpoint must leave the node unconfigured, with the reason
            self.get_logger().error(f'cannot load checkpoint {param(self, "checkpoint")!r}: {exc}')
            self._policy = None
            return TransitionCallbackReturn.FAILURE
        self._cameras = CameraBuffer(list(param(self, 'cameras')), int(param(self, 'image_size')),
                                     bool(param(self, 'resize_images')))
        self._state = JointStateBuffer([n for n in param(self, 'joint_names') if n])
        self._dt = 1.0 / param(self, 'control_rate_hz')
        self._task = None
        self._subtask = None
        self._subgoals = None
        self._memory = None
        self._lock = threading.Lock()
        self._chunk_pub = self.create_lifecycle_publisher(ActionChunk, 'action_chunk', STREAM)
        self._input_subs = []
        self._synchronizer = None
        if message_filters is not None and param(self, 'use_message_filters'):
            # Only time-matched sets of (every camera, joint state) reach the buffers.
            sources = [message_filters.Subscriber(self, Image, f'camera/{c}/image_raw', qos_profile=SENSOR)
                       for c in self._cameras.cameras]
            sources.append(message_filters.Subscriber(self, JointState, 'joint_states', qos_profile=SENSOR))
            self._synchronizer = message_filters.ApproximateTimeSynchronizer(
                sources, queue_size=10, slop=float(param(self, 'stamp_tolerance_s')))
            self._synchronizer.registerCallback(self._on_synchronized)
            self._filter_sources = sources
        else:
            self._input_subs += [
                self.create_subscription(Image, f'camera/{c}/image_raw', lambda m, c=c: self._on_image(c, m),
                                         SENSOR) for c in self._cameras.cameras]
            self._input_subs.append(self.create_subscription(JointState, 'joint_states', self._on_joint_state,
                                                             SENSOR))
        self._input_subs += [
            self.create_subscription(Task, 'task', self._on_task, LATCHED),
            self.create_subscription(Subtask, 'subtask', self._on_subtask, LATCHED),
            self.create_subscription(SubgoalImages, 'subgoal_images', self._on_subgoals, STREAM),
            self.create_subscription(VisualMemory, 'memory/visual', self._on_memory, STREAM),
        ]
        self._confirming = False   # a gripper switch is waiting for a chunk computed with the robot still
        self._confirmations = 0
        self._resume_at = -math.inf   # synchronous chunks: the next observation waits until the robot stands
        self._latency = LatencyEstimator(skip=1, window=5, initial_s=self._warmup_s)
        self._sequence = 0
        self._last_chunk = None
        self._last_frozen = 0
        self._last_error = ''
        self._chunk_times: list[float] = []
        self._inference_ms: list[float] = []
        self._diagnostics = Diagnostics(self, hardware_id='pi07_action_expert')
        self._diagnostics.add('inference', self._inference_status)
        self._diagnostics.add('inputs', self._input_status)
        return TransitionCallbackReturn.SUCCESS

    def _load_policy(self) -> None:
        from pi07_policy.models.vla.policy import VLAPolicy  # torch + transformers: import only when needed

        path = param(self, 'checkpoint')
        if not path:
            raise ValueError('no checkpoint given (parameter checkpoint)')
        seed = int(param(self, 'seed'))
        steps = int(param(self, 'num_flow_steps')) or None
        self._policy = VLAPolicy.from_checkpoint(path, expected_embodiment=param(self, 'embodiment') or None,
                                                 num_steps=steps, seed=None if seed < 0 else seed,
                                                 rtc_method=param(self, 'rtc_method'))
        robot = self._policy.processor.robot
        cameras = list(param(self, 'cameras'))
        actions = [n for n in param(self, 'action_names') if n]
        joints = [n for n in param(self, 'joint_names') if n]
        if list(robot.camera_names) != cameras:
            raise ValueError(f'checkpoint cameras {list(robot.camera_names)} != profile cameras {cameras}')
        if robot.action_dim != len(actions) or robot.state_dim != len(joints):
            raise ValueError(f'checkpoint action/state dims {robot.action_dim}/{robot.state_dim} != profile '
                             f'{len(actions)}/{len(joints)} (a checkpoint for another embodiment?)')
        size = int(param(self, 'image_size'))
        # Warm up (allocations, kernels): the cold start is not what the RTC delay estimate should see.
        t0 = time.perf_counter()
        self._policy.infer({'images': {c: np.zeros((size, size, 3), np.uint8) for c in cameras},
                            'state': np.zeros(len(joints), np.float32), 'task': 'warm up'})
        self._warmup_s = time.perf_counter() - t0
        self.get_logger().info(f'loaded {path}: H={self._policy.config.action_horizon}, D={robot.action_dim}, '
                               f'cameras {cameras}; first inference {self._warmup_s * 1e3:.0f} ms')

    def _gripper_gate(self) -> GripperSwitchConfirm | None:
        lead, name = param(self, 'gripper_confirm_lead_s'), param(self, 'gripper_name')
        if not (math.isfinite(lead) and lead >= 0):
            raise ValueError(f'gripper_confirm_lead_s must be a number >= 0, got {lead}')
        if lead == 0:
            return None
        actions = [n for n in param(self, 'action_names') if n]
        if name not in actions:
            raise ValueError(f'gripper_confirm_lead_s needs gripper_name, one of action_names {actions}; got {name!r}')
        return GripperSwitchConfirm(actions.index(name), float(param(self, 'gripper_threshold')), float(lead))

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._last_chunk = None  # never join a chunk from before the pause
        self._confirming, self._resume_at = False, -math.inf
        return super().on_activate(state)

    def release(self) -> None:
        if self._policy is None:
            return
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        for source in getattr(self, '_filter_sources', []):
            self.destroy_subscription(source.sub)
        self.destroy_lifecycle_publisher(self._chunk_pub)
        self._diagnostics.destroy()
        self._policy = None

    # --- inputs -----------------------------------------------------------------------------------------------
    def _on_synchronized(self, *msgs) -> None:
        *images, joint_state = msgs
        for camera, image in zip(self._cameras.cameras, images):
            self._on_image(camera, image)
        self._on_joint_state(joint_state)

    def _on_image(self, camera: str, msg: Image) -> None:
        error = self._cameras.add(camera, msg, stamp_to_sec(msg.header.stamp))
        if error:
            self._report(f'camera {camera}: {error}')

    def _on_joint_state(self, msg: JointState) -> None:
        error = self._state.add(msg.name, msg.position, stamp_to_sec(msg.header.stamp))
        if error:
            self._report(error)

    def _on_task(self, msg: Task) -> None:
        with self._lock:
            if self._task is None or msg.task_id != self._task.task_id:
                # Task (from the task giver) and Subtask (from the high-level policy) come from different writers:
                # the new task's first subtask may arrive first, and must not be dropped (it is only published
                # again at the next boundary: without it the policy has only the instruction for the whole task)
                if self._subtask is not None and self._subtask.task_id != msg.task_id:
                    self._subtask = None
                self._subgoals = None
                self._memory = None   # the last task's frames (and keyframe) show another scene
                self._last_chunk = None
                self._confirming, self._resume_at = False, -math.inf
                # the flow noise restarts from the task (applied by the worker, before its next chunk): a task's
                # draws then depend less on what the node computed before it
                self._reseed_to = zlib.crc32(msg.task_id.encode())
            self._task = msg

    def _on_subtask(self, msg: Subtask) -> None:
        with self._lock:
            changed = (self._subtask is None) != msg.task_done or \
                (self._subtask is not None and (self._subtask.text, self._subtask.task_id) != (msg.text, msg.task_id))
            self._subtask = None if msg.task_done else msg
        if changed:
            self.get_logger().info(f'task {msg.task_id!r}: ' + ('done' if msg.task_done else
                                                                f'subtask {msg.index} {msg.text!r}'))

    def _on_subgoals(self, msg: SubgoalImages) -> None:
        try:
            images = {name: image_to_rgb(img, size=self._cameras.image_size, resize=True)
                      for name, img in zip(msg.camera_names, msg.images)}
        except ImageError as exc:
            self._report(f'subgoal images: {exc}')
            return
        with self._lock:
            self._subgoals = (msg.subtask, images)

    def _on_memory(self, msg: VisualMemory) -> None:
        with self._lock:
            if memory_of_another_task(msg.task_id, self._task):
                return   # the last task's frames, arrived after the new task
        try:
            frames = memory_frames_to_rgb(msg.camera_names, msg.frames, msg.frames_per_camera,
                                          size=self._cameras.image_size)
        except ImageError as exc:
            self._report(f'visual memory: {exc}')
            return
        with self._lock:
            if not memory_of_another_task(msg.task_id, self._task):   # the task may have changed meanwhile
                self._memory = frames

    def _report(self, message: str) -> None:
        if message != self._last_error:
            self.get_logger().error(message, throttle_duration_sec=2.0)
            self._last_error = message
            self._diagnostics.force_update()

    # --- inference ----------------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _observation(self) -> tuple[dict, float]:
        images, state, stamp = assemble(self._cameras, self._state, self._now(),
                                        max_age_s=param(self, 'max_input_age_s'),
                                        stamp_tolerance_s=param(self, 'stamp_tolerance_s'))
        with self._lock:
            task, subtask, subgoals, memory = self._task, self._subtask, self._subgoals, self._memory
        subtask = subtask_of(task, subtask)
        obs = {'images': images, 'state': state, 'task': task.instruction if task else None,
               'subtask': subtask.text if subtask else None}
        if param(self, 'use_metadata'):
            metadata = dict(metadata_to_dict(task.metadata) or {}) if task is not None else {}
            for key in ('speed', 'quality'):
                if param(self, f'metadata_{key}') >= 1:
                    metadata[key] = int(param(self, f'metadata_{key}'))
            if param(self, 'metadata_mistake') >= 0:
                metadata['mistake'] = bool(param(self, 'metadata_mistake'))
            obs['metadata'] = metadata or None
        # Subgoals only for the subtask they were drawn for: a stale subgoal points the wrong way.
        if subgoals is not None and param(self, 'use_subgoals') and subtask is not None and \
                subgoals[0] == subtask.text:
            obs['subgoal_images'] = subgoals[1]
        if memory is not None and param(self, 'use_visual_memory'):
            obs['memory_images'] = memory
        return obs, stamp

    def work(self) -> None:  # the inference loop, while active
        last_start = 0.0
        while self.running:
            period = param(self, 'min_chunk_period_s')
            if time.monotonic() - last_start < period or self._waiting():
                time.sleep(0.01)
                continue
            try:
                obs, _ = self._observation()
            except ObservationError as exc:
                self._report(str(exc))
                time.sleep(0.05)
                continue
            last_start = time.monotonic()
            self._infer_and_publish(obs)

    def _waiting(self) -> bool:
        """Synchronous chunks (pause mode, or a gripper switch to confirm): the robot has not yet played the rows
        it stops after, so the next observation waits."""
        return (param(self, 'mode') == 'pause' or self._confirming) and self._now() < self._resume_at

    def _commanded_gripper(self, t: float, state: np.ndarray) -> float | None:
        """The gripper value the robot is commanded at t: the last chunk's row then, else the measured one."""
        index = self._gate.index
        last = self._last_chunk
        if last is not None:
            row = min(max(0, round((t - last.start_time) / last.dt)), len(last.actions) - 1)
            return float(last.actions[row, index])
        joints = [n for n in param(self, 'joint_names') if n]
        name = param(self, 'gripper_name')
        return float(state[joints.index(name)]) if name in joints else None

    def _infer_and_publish(self, obs: dict) -> None:
        t_obs = self._now()
        wall0 = time.monotonic()
        mode = param(self, 'mode')
        try:   # live, like mode: an evaluation switches it between runs
            self._gate = self._gripper_gate()
        except ValueError as exc:
            self._report(f'{exc}: gripper switches are not confirmed')
            self._gate = None
        if self._gate is None:
            self._confirming = False
        confirming = self._confirming
        synchronous = mode == 'pause' or confirming
        commanded = self._commanded_gripper(t_obs, obs['state']) if self._gate is not None else None
        injected = float(param(self, 'injected_delay_s'))
        request = plan_request(self._last_chunk if mode == 'rtc' and not synchronous else None, t_obs, self._dt,
                               self._latency.estimate() + injected + float(param(self, 'rtc_delay_margin_s')),
                               int(param(self, 'execution_horizon')))
        if request.prev_actions is not None:
            obs.update(prev_actions=request.prev_actions, delay_steps=request.delay_steps,
                       execution_horizon=request.execution_horizon, mode='rtc')
        else:
            obs['mode'] = 'sync'
        with self._lock:
            reseed, self._reseed_to = self._reseed_to, None
        if reseed is not None:
            self._policy.reseed(reseed)
        try:
            out = self._policy.infer(obs)
        except Exception as exc:  # report and keep the node alive; the executor holds, then stops
            self._report(f'inference failed: {type(exc).__name__}: {exc}')
            time.sleep(0.5)
            return
        # The estimator learns the model's own latency; the injected part is added once, when planning (measured
        # after the sleep, it was counted twice: RTC froze rows the robot had long left, session 13).
        self._latency.add(time.monotonic() - wall0)
        if injected > 0:
            time.sleep(injected)
        actions = np.asarray(out['actions'], dtype=np.float32)
        if not np.isfinite(actions).all():
            self._report('the model produced NaN actions: chunk dropped')
            return
        latency = time.monotonic() - wall0
        self._inference_ms = (self._inference_ms + [latency * 1e3])[-50:]
        if not self.running:
            return
        start_time = request.start_time
        held_at = None
        if synchronous:   # the robot held still meanwhile: the chunk's first rows play from now, then it holds
            start_time = self._now()
            rows = self._gate.trusted_rows(self._dt) if confirming else int(param(self, 'execution_horizon'))
            actions = actions[:max(1, min(rows, len(actions)))]
            self._resume_at = start_time + len(actions) * self._dt
        elif self._gate is not None:   # cut short of a gripper switch planned too far ahead of the observation
            now = self._now()
            first_row = max(0, math.floor((now - start_time) / self._dt))
            # the gripper as the robot commands it when this chunk takes over (the last chunk's, now)
            commanded = self._commanded_gripper(now, obs['state'])
            actions, held_at = self._gate.hold_before_switch(actions, commanded, first_row, start_time - t_obs,
                                                             self._dt)
            if held_at is not None:
                self._resume_at = start_time + held_at * self._dt
                self.get_logger().info(f'gripper switch planned {start_time + held_at * self._dt - t_obs:.2f} s '
                                       f'after its observation: stopping before row {held_at} to look again')
        msg = ActionChunk(sequence=self._sequence, names=[n for n in param(self, 'action_names') if n],
                          control_mode=param(self, 'control_mode'), horizon=actions.shape[0],
                          action_dim=actions.shape[1], dt=self._dt, frozen_prefix=int(out.get('frozen_steps', 0)),
                          inference_latency=float(latency),
                          mode='pause' if mode == 'pause' else out.get('mode', obs['mode']))
        msg.header.stamp = sec_to_stamp(start_time)
        msg.observation_stamp = sec_to_stamp(t_obs)
        msg.actions = actions.ravel().tolist()
        with self._lock:
            msg.task_id = self._task.task_id if self._task else ''
            subtask = subtask_of(self._task, self._subtask)
            msg.subtask = subtask.text if subtask else ''
        self._chunk_pub.publish(msg)
        self._sequence += 1
        self._last_chunk = PublishedChunk(start_time, self._dt, actions.astype(np.float64))
        if held_at is not None:
            self._confirming, self._confirmations = True, self._confirmations + 1
        elif confirming and (commanded is None or self._gate.switches(actions, commanded)):
            self._confirming = False   # this chunk makes the switch: asynchronous again
        self._last_frozen = msg.frozen_prefix
        self._chunk_times = [t for t in self._chunk_times if t > time.monotonic() - 10.0] + [time.monotonic()]
        self._last_error = ''

    # --- diagnostics ------------------------------------------------------------------------------------------
    def _inference_status(self):
        recent = [t for t in self._chunk_times if t > time.monotonic() - 10.0]
        values = {'chunks': self._sequence, 'chunk_rate_hz': f'{len(recent) / 10.0:.2f}',
                  'mode': param(self, 'mode'), 'rtc_method': self._policy.rtc_method if self._policy else '',
                  'rtc_delay_steps': self._last_frozen,
                  'latency_estimate_ms': f'{(self._latency.estimate() + param(self, "injected_delay_s")) * 1e3:.0f}'}
        if self._gate is not None:
            values['gripper_confirmations'] = self._confirmations
        if self._inference_ms:
            values['latency_p50_ms'] = f'{np.percentile(self._inference_ms, 50):.0f}'
            values['latency_max_ms'] = f'{max(self._inference_ms):.0f}'
        if self._last_error:
            return ERROR, self._last_error, values
        if not recent:
            return WARN, 'no chunk in the last 10 s', values
        return OK, 'running', values

    def _input_status(self):
        now = self._now()
        values = {f'age_{c}_s': f'{a:.2f}' for c, a in self._cameras.ages(now).items()}
        if self._state.latest is not None:
            values['age_joint_states_s'] = f'{now - self._state.latest.stamp:.2f}'
        try:
            assemble(self._cameras, self._state, now, max_age_s=param(self, 'max_input_age_s'),
                     stamp_tolerance_s=param(self, 'stamp_tolerance_s'))
        except ObservationError as exc:
            return ERROR, str(exc), values
        return OK, 'inputs fresh', values


def main(args=None):
    return run_node(ActionExpertNode, args)


if __name__ == '__main__':
    main()
