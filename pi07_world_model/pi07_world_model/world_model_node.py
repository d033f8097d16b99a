"""The `world_model` lifecycle node: subgoal images (π0.7), one per camera, for the current subtask.

On each new subtask, and every `period_s` while it lasts, it generates from the newest images, the subtask text
and the task's metadata the images the cameras should show when the subtask is done, and publishes them as
SubgoalImages (stamped with the observation they come from). A checkpoint trained with keyframes
(`train world_model --keyframe`) also gets each camera's oldest visual-memory frame: the task's first frame where
the memory node keeps it (keep_first_frame), which shows where things stood before they were moved. Topics and
parameters: docs/interfaces.md#world_model.
"""
from __future__ import annotations

import threading
import time

from pi07_common.diagnostics import ERROR, OK, WARN, Diagnostics
from pi07_common.images import ImageError, memory_frames_to_rgb, memory_of_another_task, resize_rgb, rgb_to_image
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
from pi07_common.observations import CameraBuffer, ObservationError, assemble
from pi07_common.qos import IMAGE_OUT, LATCHED, SENSOR, STREAM
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image

from pi07_msgs.msg import SubgoalImages, Subtask, Task, VisualMemory


class WorldModelNode(WorkerNode):
    def __init__(self, **kwargs):
        super().__init__('world_model', **kwargs)
        declare(self, 'checkpoint', '', 'World-model checkpoint directory.')
        declare(self, 'embodiment', '', 'Embodiment of this robot; a checkpoint trained for another is refused.')
        declare(self, 'cameras', ['scene', 'wrist'], 'Cameras to draw subgoals for.')
        declare(self, 'image_size', 96, 'Image size (px, square).')
        declare(self, 'resize_images', False, 'Resize camera images to image_size (else other sizes are errors).')
        declare(self, 'period_s', 3.0, 'Regenerate this often while a subtask lasts (and on each new subtask).')
        declare(self, 'flow_steps', 0, 'Euler steps of the generator (0: the checkpoint\'s default).')
        declare(self, 'max_input_age_s', 1.0, 'Images older than this are stale: nothing is generated.')
        declare(self, 'seed', 0, 'Seed of the generator noise (-1: random).')
        declare(self, 'use_memory_keyframe', True, 'Where the checkpoint reads a keyframe, give it each camera\'s '
                'oldest frame of memory/visual (the task\'s first frame with the memory node\'s keep_first_frame).')
        declare(self, 'torch_threads', 1, TORCH_THREADS_HELP)
        self._model = None

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        path = param(self, 'checkpoint')
        set_torch_threads(int(param(self, 'torch_threads')))
        try:
            from pi07_policy.checkpoint import load_checkpoint
            from pi07_world_model.modeling_world_model import WorldModel

            if not path:
                raise ValueError('no checkpoint given (parameter checkpoint)')
            load_checkpoint(path, expected_embodiment=param(self, 'embodiment') or None, check_hash=False)
            self._model = WorldModel.from_pretrained(path)
            known = list(self._model.config.camera_names)
            missing = [c for c in param(self, 'cameras') if c not in known]
            if missing:
                raise ValueError(f'checkpoint has no camera(s) {missing} (it knows {known})')
        except Exception as exc:
            self.get_logger().error(f'cannot load checkpoint {path!r}: {exc}')
            self._model = None
            return TransitionCallbackReturn.FAILURE
        self._cameras = CameraBuffer(list(param(self, 'cameras')), int(param(self, 'image_size')),
                                     bool(param(self, 'resize_images')))
        self._lock = threading.Lock()
        self._task = None
        self._subtask = None
        self._wake = threading.Event()
        self._pub = self.create_lifecycle_publisher(SubgoalImages, 'subgoal_images', IMAGE_OUT)
        self._input_subs = [
            self.create_subscription(Image, f'camera/{c}/image_raw', lambda m, c=c: self._cameras.add(
                c, m, stamp_to_sec(m.header.stamp)), SENSOR) for c in self._cameras.cameras]
        self._keyframe = None
        self._input_subs += [self.create_subscription(Task, 'task', self._on_task, LATCHED),
                             self.create_subscription(Subtask, 'subtask', self._on_subtask, LATCHED)]
        if self._model.config.reads_keyframe and param(self, 'use_memory_keyframe'):
            self._input_subs.append(self.create_subscription(VisualMemory, 'memory/visual', self._on_memory, STREAM))
        self._generated = 0
        self._last_time_s = 0.0
        self._last_error = ''
        self._diagnostics = Diagnostics(self, hardware_id='pi07_world_model')
        self._diagnostics.add('subgoals', self._status)
        return TransitionCallbackReturn.SUCCESS

    def stop_work(self, timeout: float = 30.0) -> None:
        if hasattr(self, '_wake'):
            self._wake.set()
        super().stop_work(timeout)

    def release(self) -> None:
        if self._model is None:
            return
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self.destroy_lifecycle_publisher(self._pub)
        self._diagnostics.destroy()
        self._model = None

    def _on_task(self, msg: Task) -> None:
        with self._lock:
            if self._task is None or msg.task_id != self._task.task_id:
                self._keyframe = None   # the last task's first frame shows another scene
            self._task = msg

    def _on_memory(self, msg: VisualMemory) -> None:
        with self._lock:
            if memory_of_another_task(msg.task_id, self._task):
                return   # the last task's memory, arrived after the new task: another scene's first frame
        try:   # oldest first: frame 0 of each camera
            frames = memory_frames_to_rgb(msg.camera_names, msg.frames, msg.frames_per_camera,
                                          size=self._cameras.image_size, oldest_only=True)
            keyframe = {name: f[0] for name, f in frames.items() if f and name in self._cameras.cameras}
        except ImageError as exc:
            self._last_error = f'visual memory: {exc}'
            return
        with self._lock:
            if not memory_of_another_task(msg.task_id, self._task):   # the task may have changed meanwhile
                self._keyframe = keyframe or None

    def _on_subtask(self, msg: Subtask) -> None:
        with self._lock:
            changed = self._subtask is None or msg.text != self._subtask.text
            self._subtask = None if msg.task_done else msg
        if changed:
            self._wake.set()  # a new subtask: new subgoals now

    def work(self) -> None:
        while self.running:
            self._wake.wait(timeout=param(self, 'period_s'))
            self._wake.clear()
            if not self.running:
                break
            with self._lock:
                task, subtask, keyframe = self._task, self._subtask, self._keyframe
            if subtask is None or not subtask.text:
                continue
            try:
                self._generate(task, subtask, keyframe)
            except ObservationError as exc:
                self._last_error = str(exc)
            except Exception as exc:
                self._last_error = f'generation failed: {type(exc).__name__}: {exc}'
                self.get_logger().error(self._last_error, throttle_duration_sec=5.0)

    def _generate(self, task: Task | None, subtask: Subtask, keyframe: dict | None) -> None:
        images, _, stamp = assemble(self._cameras, None, self.get_clock().now().nanoseconds * 1e-9,
                                    max_age_s=param(self, 'max_input_age_s'), stamp_tolerance_s=1e9)
        t0 = time.perf_counter()
        seed = int(param(self, 'seed'))
        out = self._model.generate({'images': images, 'subtask': subtask.text,
                                    'task': task.instruction if task else None,
                                    'metadata': metadata_to_dict(task.metadata) if task else None,
                                    'keyframe_images': keyframe},
                                   num_steps=int(param(self, 'flow_steps')) or None, seed=None if seed < 0 else seed)
        self._last_time_s = time.perf_counter() - t0
        msg = SubgoalImages(task_id=task.task_id if task else '', subtask=subtask.text,
                            generation_time_s=float(self._last_time_s))
        msg.header.stamp = sec_to_stamp(stamp)
        size = self._cameras.image_size
        for camera in self._cameras.cameras:
            image = out['subgoal_images'][camera]
            if image.shape[:2] != (size, size):  # a model trained at another resolution: publish at the profile's
                image = resize_rgb(image, (size, size))
            msg.camera_names.append(camera)
            msg.images.append(rgb_to_image(image, stamp=msg.header.stamp, frame_id=f'{camera}_subgoal'))
        if self.running:
            self._pub.publish(msg)
            self._generated += 1
            self._last_error = ''

    def _status(self):
        values = {'generated': self._generated, 'last_generation_s': f'{self._last_time_s:.3f}'}
        if self._model is not None and self._model.config.reads_keyframe:
            values['keyframe'] = 'yes' if self._keyframe else 'none yet'
        if self._cameras.errors:
            return ERROR, '; '.join(f'camera {c}: {e}' for c, e in self._cameras.errors.items()), values
        if self._last_error:
            return WARN, self._last_error, values
        return OK, 'ok', values


def main(args=None):
    return run_node(WorldModelNode, args)


if __name__ == '__main__':
    main()
