"""The `high_level_policy` lifecycle node: the next subtask (π0.5 / Hi-Robot) and language memory (MEM).

Subtasks come from one of three sources, chosen per task (Task.subtask_source):
- policy: the high-level model decodes the next subtask from images + task + language memory + metadata at
  `rate_hz`; a change of subtask is a boundary;
- plan: the Task's plan, following `task_status` (subtasks_done; back to an earlier step when it drops) or,
  without a task monitor, when the model decodes the next step of the plan;
- topic: a person publishes subtasks on `subtask_command`.
At each boundary the model writes an updated language-memory summary (memory/language_update). A person can
interject (service ~/interject); ExecuteTask runs a task to the end with feedback. Topics and parameters:
docs/interfaces.md#high_level_policy.
"""
from __future__ import annotations

import math
import threading
import time
import uuid

from pi07_common.diagnostics import ERROR, OK, WARN, Diagnostics
from pi07_common.lifecycle import WorkerNode
from pi07_common.metadata import metadata_to_dict
from pi07_common.node_utils import (
    TORCH_THREADS_HELP,
    SpunNode,
    declare,
    param,
    run_node,
    set_torch_threads,
    stamp_to_sec,
)
from pi07_common.observations import CameraBuffer, ObservationError, assemble
from pi07_common.qos import LATCHED, SENSOR, STREAM
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image

from pi07_msgs.action import ExecuteTask
from pi07_msgs.msg import LanguageMemory, Subtask, Task, TaskStatus
from pi07_msgs.srv import Interject


class HighLevelPolicyNode(WorkerNode):
    def __init__(self, **kwargs):
        super().__init__('high_level_policy', **kwargs)
        declare(self, 'checkpoint', '', 'High-level checkpoint directory ("" only works with plan/topic tasks).')
        declare(self, 'embodiment', '', 'Embodiment of this robot; a checkpoint trained for another is refused.')
        declare(self, 'cameras', ['scene', 'wrist'], 'Camera names, in the checkpoint\'s order.')
        declare(self, 'image_size', 96, 'Image size the model sees (px, square).')
        declare(self, 'resize_images', False, 'Resize camera images to image_size (else other sizes are errors).')
        declare(self, 'rate_hz', 1.0, 'How often the next subtask is decoded.')
        declare(self, 'boundary_confirmations', 1, 'A new subtask must be decoded this many times in a row.')
        declare(self, 'max_input_age_s', 2.0, 'Images older than this are stale: no decision is taken.')
        declare(self, 'status_grace_s', 2.0, 'Plan tasks: the decoder moves the plan on only if no task_status for '
                'the task arrived within this long of its start (a task monitor such as the sim reports the '
                'boundaries; until its first status, a decoded later step must not skip the plan ahead).')
        declare(self, 'max_subtasks', 20, 'Give up a task after this many subtasks.')
        declare(self, 'torch_threads', 1, TORCH_THREADS_HELP)
        self._policy = None

    # --- lifecycle --------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        path = param(self, 'checkpoint')
        set_torch_threads(int(param(self, 'torch_threads')))
        grace = param(self, 'status_grace_s')
        if not (math.isfinite(grace) and grace >= 0):   # NaN: a plan would never move on without a monitor
            self.get_logger().error(f'status_grace_s must be a number >= 0, got {grace}')
            return TransitionCallbackReturn.FAILURE
        if path:
            try:
                from pi07_policy.models.high_level.policy import HighLevelPolicy

                self._policy = HighLevelPolicy.from_checkpoint(path, param(self, 'embodiment') or None)
            except Exception as exc:
                self.get_logger().error(f'cannot load checkpoint {path!r}: {exc}')
                return TransitionCallbackReturn.FAILURE
        else:
            self.get_logger().warning('no checkpoint: only tasks with a plan or subtasks on a topic can run')
        self._cameras = CameraBuffer(list(param(self, 'cameras')), int(param(self, 'image_size')),
                                     bool(param(self, 'resize_images')))
        self._lock = threading.RLock()
        self._subtask_pub = self.create_lifecycle_publisher(Subtask, 'subtask', LATCHED)
        self._memory_pub = self.create_lifecycle_publisher(LanguageMemory, 'memory/language_update', STREAM)
        self._task_pub = self.create_lifecycle_publisher(Task, 'task', LATCHED)
        self._input_subs = [
            self.create_subscription(Image, f'camera/{c}/image_raw', lambda m, c=c: self._cameras.add(
                c, m, stamp_to_sec(m.header.stamp)), SENSOR) for c in self._cameras.cameras]
        self._input_subs += [
            self.create_subscription(Task, 'task', self._on_task, LATCHED),
            self.create_subscription(LanguageMemory, 'memory/language', self._on_memory, LATCHED),
            self.create_subscription(Subtask, 'subtask_command', self._on_subtask_command, STREAM),
            self.create_subscription(TaskStatus, 'task_status', self._on_status, STREAM),
        ]
        self._interject_srv = self.create_service(Interject, '~/interject', self._on_interject)
        # ExecuteTask's execute callback lasts the whole task: it runs on a node of its own, spun apart.
        self._task_server = SpunNode(self, f'{self.get_name()}_task_server')
        self._action = ActionServer(self._task_server.node, ExecuteTask, 'execute_task', self._execute,
                                    goal_callback=lambda _: GoalResponse.ACCEPT,
                                    cancel_callback=lambda _: CancelResponse.ACCEPT)
        self._reset_task(None)
        self._last_error = ''
        self._decisions = 0
        self._diagnostics = Diagnostics(self, hardware_id='pi07_high_level_policy')
        self._diagnostics.add('subtasks', self._status)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if self._task is not None:
            self._start_task()
        return result

    def release(self) -> None:
        if not hasattr(self, '_input_subs'):
            return
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self.destroy_service(self._interject_srv)
        self._task_server.stop()   # a running ExecuteTask sees the node inactive and returns first
        self._action.destroy()
        self._task_server.destroy()
        for pub in (self._subtask_pub, self._memory_pub, self._task_pub):
            self.destroy_lifecycle_publisher(pub)
        self._diagnostics.destroy()
        del self._input_subs
        self._policy = None

    # --- task state -------------------------------------------------------------------------------------------
    def _reset_task(self, task: Task | None) -> None:
        with self._lock:
            self._task = task
            self._index = -1
            self._plan_step = -1    # plan tasks: the plan step worked on (interjected subtasks do not count)
            self._transitions: list[tuple[int, str]] = []  # every (index, subtask), for ExecuteTask feedback
            self._current = ''
            self._history: list[str] = []
            self._memory = ''
            self._interjection = ''
            self._done = False
            self._pending: tuple[str, int] = ('', 0)
            self._status_msg: TaskStatus | None = None
            self._started = time.monotonic()

    def _on_task(self, msg: Task) -> None:
        with self._lock:
            if self._task is not None and msg.task_id == self._task.task_id:
                return
            self._reset_task(msg)
        self.get_logger().info(f'task {msg.task_id!r}: {msg.instruction!r} (subtasks from '
                               f'{["policy", "plan", "topic"][min(msg.subtask_source, 2)]})')
        if self.running:
            self._start_task()

    def _start_task(self) -> None:
        with self._lock:
            task = self._task
            self._started = time.monotonic()   # worked on from now (it may have arrived while inactive)
            if task.subtask_source == Task.SUBTASKS_FROM_PLAN and task.plan and self._plan_step < 0:
                self._plan_step = 0
                self._advance(task.plan[0], Subtask.SOURCE_PLAN)
            elif self._current:  # re-activated mid-task: tell late joiners where we are
                self._publish_subtask(self._current, Subtask.SOURCE_POLICY, 1.0, False)

    def _on_memory(self, msg: LanguageMemory) -> None:
        with self._lock:
            if self._task is not None and msg.task_id == self._task.task_id and msg.revision > 0:
                self._memory = msg.summary  # restored after a restart, or our own update echoed back

    def _on_status(self, msg: TaskStatus) -> None:
        with self._lock:
            if not self.running or self._task is None or (msg.task_id and msg.task_id != self._task.task_id):
                return
            self._status_msg = msg
            task = self._task
            if task.subtask_source == Task.SUBTASKS_FROM_PLAN and task.plan and not self._done:
                done = int(msg.subtasks_done)
                if done >= len(task.plan):
                    self._finish()
                elif done != self._plan_step:   # forward, or back (a dropped block must be picked again)
                    back = done < self._plan_step
                    self._plan_step = done
                    self._advance(task.plan[done], Subtask.SOURCE_PLAN, finished=not back)

    def _on_subtask_command(self, msg: Subtask) -> None:
        with self._lock:
            if not self.running:
                return
            if self._task is None or self._task.subtask_source != Task.SUBTASKS_FROM_TOPIC:
                self.get_logger().warning('subtask_command ignored: the current task does not take subtasks from '
                                          'the topic', throttle_duration_sec=5.0)
                return
            if msg.task_done:
                self._finish()
            else:
                self._advance(msg.text, Subtask.SOURCE_HUMAN)

    def _on_interject(self, request: Interject.Request, response: Interject.Response) -> Interject.Response:
        with self._lock:
            if self._task is None:
                response.accepted, response.message = False, 'no task is running'
                return response
            if request.as_subtask:
                self._advance(request.text, Subtask.SOURCE_HUMAN)
                response.message = 'subtask set'
            else:
                # The model has no separate slot for it: it reads the interjection with its memory.
                self._interjection = request.text
                response.message = 'given to the policy with the language memory'
            response.accepted = True
            response.subtask = self._current
        self.get_logger().info(f'interjection: {request.text!r} ({response.message})')
        return response

    # --- boundaries -------------------------------------------------------------------------------------------
    def _advance(self, text: str, source: str, confidence: float = 1.0, finished: bool = True) -> None:
        """A subtask boundary: write memory for the finished subtask (not for an abandoned one: `finished`
        False), then publish the new one."""
        with self._lock:
            if text == self._current:
                return
            if self._current and finished:
                self._history.append(self._current)
                self._update_memory(self._current)
            self._index += 1
            self._current = text
            self._transitions.append((self._index, text))
            self._pending = ('', 0)
            if self._index >= param(self, 'max_subtasks'):
                self._last_error = f'gave up after {self._index} subtasks'
                self._finish()
                return
            self._publish_subtask(text, source, confidence, False)

    def _finish(self) -> None:
        with self._lock:
            if self._done:
                return
            if self._current:
                self._history.append(self._current)
                self._update_memory(self._current)
            self._done = True
            self._current = ''
            self._publish_subtask('', Subtask.SOURCE_POLICY, 1.0, True)

    def _publish_subtask(self, text: str, source: str, confidence: float, done: bool) -> None:
        msg = Subtask(task_id=self._task.task_id, text=text, index=max(self._index, 0), source=source,
                      confidence=float(confidence), task_done=done)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._subtask_pub.publish(msg)
        self.get_logger().info(f'subtask {msg.index}: {"(task done)" if done else repr(text)} [{source}]')

    def _update_memory(self, completed: str) -> None:
        summary = f'{self._memory} Done: {completed}.'.strip()
        if self._policy is not None:
            try:
                images = self._images()
                summary = self._policy.update_memory({'images': images, 'task': self._task.instruction,
                                                      'memory': self._memory, 'completed_subtask': completed})['memory']
            except ObservationError as exc:
                self.get_logger().warning(f'memory update without images: {exc}')
            except Exception as exc:
                self._last_error = f'memory update failed: {exc}'
                self.get_logger().error(self._last_error)
        self._memory = summary
        msg = LanguageMemory(task_id=self._task.task_id, summary=summary, subtask_index=max(self._index, 0))
        msg.header.stamp = self.get_clock().now().to_msg()
        self._memory_pub.publish(msg)

    def _images(self) -> dict:
        images, _, _ = assemble(self._cameras, None, self.get_clock().now().nanoseconds * 1e-9,
                                max_age_s=param(self, 'max_input_age_s'), stamp_tolerance_s=1e9)
        return images

    # --- the decision loop --------------------------------------------------------------------------------------
    def work(self) -> None:  # the decision loop, while active
        next_time = time.monotonic()
        while self.running:
            time.sleep(max(0.0, next_time - time.monotonic()))
            next_time = max(next_time + 1.0 / param(self, 'rate_hz'), time.monotonic())
            with self._lock:
                task, done = self._task, self._done
            if task is None or done or self._policy is None:
                continue
            if task.subtask_source == Task.SUBTASKS_FROM_TOPIC:
                continue
            try:
                self._decide(task)
            except ObservationError as exc:
                self._last_error = str(exc)
            except Exception as exc:  # report, keep deciding
                self._last_error = f'decoding failed: {type(exc).__name__}: {exc}'
                self.get_logger().error(self._last_error, throttle_duration_sec=5.0)

    def _decide(self, task: Task) -> None:
        images = self._images()
        with self._lock:
            memory = f'{self._memory} Human: {self._interjection}'.strip() if self._interjection else self._memory
            obs = {'images': images, 'task': task.instruction, 'memory': memory,
                   'metadata': metadata_to_dict(task.metadata), 'subtask_history': list(self._history)}
        out = self._policy.infer(obs)
        self._decisions += 1
        self._last_error = ''
        with self._lock:
            if self._task is not task or self._done:
                return
            if task.subtask_source == Task.SUBTASKS_FROM_PLAN:
                # Boundary detection without a task monitor: the model moved on to a later plan step. Not before
                # a monitor had time to report (its first status may come a status period after the task), and
                # confirmed as a policy boundary is: one wrong decode must not skip a step.
                later = list(task.plan[self._plan_step + 1:])
                no_monitor = self._status_msg is None and \
                    time.monotonic() - self._started >= float(param(self, 'status_grace_s'))
                if out['subtask'] in later and no_monitor:
                    seen = self._pending[1] + 1 if self._pending[0] == out['subtask'] else 1
                    self._pending = (out['subtask'], seen)
                    if seen >= param(self, 'boundary_confirmations'):
                        self._pending = ('', 0)
                        self._plan_step = task.plan.index(out['subtask'], self._plan_step + 1)
                        self._advance(out['subtask'], Subtask.SOURCE_PLAN)
                else:
                    self._pending = ('', 0)
                return
            if out['task_done']:
                self._finish()
                return
            text = out['subtask']
            if not text or text == self._current:
                self._pending = ('', 0)
                return
            seen = self._pending[1] + 1 if self._pending[0] == text else 1
            self._pending = (text, seen)
            if seen >= param(self, 'boundary_confirmations'):
                self._interjection = ''
                self._advance(text, Subtask.SOURCE_POLICY)

    # --- ExecuteTask ------------------------------------------------------------------------------------------
    def _progress(self) -> float:
        with self._lock:
            if self._done:
                return 1.0
            if self._status_msg is not None and self._status_msg.subtasks_total:
                return float(self._status_msg.progress)
            if self._task is not None and self._task.plan:
                return max(0, self._plan_step) / len(self._task.plan)
            return 0.0

    def _execute(self, goal_handle):
        request = goal_handle.request
        task = request.task
        task.task_id = task.task_id or f'task-{uuid.uuid4().hex[:8]}'
        task.header.stamp = self.get_clock().now().to_msg()
        self._task_pub.publish(task)  # every node follows the task topic
        self._on_task(task)
        start = time.monotonic()
        sent = 0
        result = ExecuteTask.Result()
        # Feedback sent before the client's feedback reader is discovered is lost (discovery runs apart from
        # goal acceptance): wait for it, a few seconds at most. Transitions are queued meanwhile.
        feedback_topic = self.resolve_topic_name('execute_task') + '/_action/feedback'
        wait_end = time.monotonic() + 5.0
        while self.count_subscribers(feedback_topic) == 0 and time.monotonic() < wait_end:
            time.sleep(0.05)
        while True:
            time.sleep(0.1)
            with self._lock:
                memory, done = self._memory, self._done
                mine = self._task is not None and self._task.task_id == task.task_id
                new = self._transitions[sent:] if mine else []
            for index, subtask in new:  # one feedback per subtask, none skipped however fast they change
                goal_handle.publish_feedback(ExecuteTask.Feedback(subtask=subtask, subtask_index=index,
                                                                  progress=self._progress(), memory_summary=memory))
            sent += len(new)
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.message = 'canceled'
                break
            if not mine:
                goal_handle.abort()
                result.message = 'replaced by another task'
                break
            if done:
                result.success = not self._last_error.startswith('gave up')
                result.message = 'done' if result.success else self._last_error
                goal_handle.succeed() if result.success else goal_handle.abort()
                break
            if request.timeout_s > 0 and time.monotonic() - start > request.timeout_s:
                goal_handle.abort()
                result.message = 'timeout'
                break
            if not self.running:
                goal_handle.abort()
                result.message = 'node deactivated'
                break
        with self._lock:
            result.summary = self._memory
            result.subtasks_done = len(self._history)
        result.progress = self._progress()
        result.duration_s = time.monotonic() - start
        return result

    # --- diagnostics ------------------------------------------------------------------------------------------
    def _status(self):
        with self._lock:
            values = {'task_id': self._task.task_id if self._task else '', 'subtask_index': self._index,
                      'subtask': self._current, 'decisions': self._decisions, 'done': self._done}
        if self._cameras.errors:
            return ERROR, '; '.join(f'camera {c}: {e}' for c, e in self._cameras.errors.items()), values
        if self._last_error:
            return WARN, self._last_error, values
        return OK, 'ok' if self._task else 'waiting for a task', values


def main(args=None):
    return run_node(HighLevelPolicyNode, args)


if __name__ == '__main__':
    main()
