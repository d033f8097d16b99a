"""The `memory` lifecycle node: short-term visual memory and long-term language memory (MEM).

Topics, QoS and parameters: docs/interfaces.md#memory.
"""
from __future__ import annotations

import os
from pathlib import Path

from pi07_common.diagnostics import ERROR, OK, WARN, Diagnostics
from pi07_common.images import ImageError, image_to_rgb, rgb_to_image
from pi07_common.lifecycle import ManagedNode
from pi07_common.node_utils import declare, param, run_node, sec_to_stamp, stamp_to_sec
from pi07_common.qos import IMAGE_OUT, LATCHED, SENSOR, STREAM
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image

from pi07_memory.store import LanguageMemoryStore, VisualMemory
from pi07_msgs.msg import LanguageMemory, Task
from pi07_msgs.msg import VisualMemory as VisualMemoryMsg
from pi07_msgs.srv import ResetMemory


def default_storage_dir() -> str:
    return str(Path(os.environ.get('PI07_STATE_DIR', Path.home() / '.pi07')) / 'memory')


class MemoryNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__('memory', **kwargs)
        declare(self, 'cameras', ['scene', 'wrist'], 'Camera names; images come from camera/<name>/image_raw.')
        declare(self, 'frames_per_camera', 6, 'Frames kept per camera in short-term visual memory (MEM: 6).')
        declare(self, 'stride_s', 1.0, 'Seconds between kept frames (MEM: 1 s).')
        declare(self, 'keep_first_frame', False,
                "Keep each task's first frame in the oldest memory slot (a MEM keyframe); set it for VLAs trained "
                'with --memory-keyframe (their config has memory_keeps_first_frame).')
        declare(self, 'image_size', 96, 'Frames are stored at this size (pixels, square).')
        declare(self, 'resize_images', True, 'Resize incoming images to image_size (else reject other sizes).')
        declare(self, 'storage_dir', default_storage_dir(),
                'Directory where language memory is persisted (one JSON file per task, every revision kept).')
        declare(self, 'publish_rate_hz', 2.0, 'Rate of memory/visual.')
        self._store = None
        self._visual = None
        self._task_id = ''
        self._image_errors: dict[str, str] = {}

    # --- lifecycle --------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._store = LanguageMemoryStore(param(self, 'storage_dir'))
        except OSError as exc:
            self.get_logger().error(f'cannot use storage_dir {param(self, "storage_dir")!r}: {exc}')
            return TransitionCallbackReturn.FAILURE
        for problem in self._store.problems:
            self.get_logger().error(f'language memory: {problem}')
        self._cameras = list(param(self, 'cameras'))
        self._visual = VisualMemory(self._cameras, param(self, 'frames_per_camera'), param(self, 'stride_s'),
                                    keep_first=bool(param(self, 'keep_first_frame')))
        self._size = int(param(self, 'image_size'))
        self._visual_pub = self.create_lifecycle_publisher(VisualMemoryMsg, 'memory/visual', IMAGE_OUT)
        self._language_pub = self.create_lifecycle_publisher(LanguageMemory, 'memory/language', LATCHED)
        self._input_subs = [
            self.create_subscription(Image, f'camera/{c}/image_raw', lambda m, c=c: self._on_image(c, m), SENSOR)
            for c in self._cameras]
        self._input_subs.append(self.create_subscription(Task, 'task', self._on_task, LATCHED))
        self._input_subs.append(
            self.create_subscription(LanguageMemory, 'memory/language_update', self._on_language_update, STREAM))
        self._reset_srv = self.create_service(ResetMemory, 'memory/reset', self._on_reset)
        self._timer = self.create_timer(1.0 / param(self, 'publish_rate_hz'), self._publish_visual)
        self._diagnostics = Diagnostics(self, hardware_id='pi07_memory')
        self._diagnostics.add('visual memory', self._visual_status)
        self._diagnostics.add('language memory', self._language_status)
        self.get_logger().info(f'configured: {len(self._store.tasks())} task(s) in {self._store.storage_dir}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._publish_language()  # restored memory of the current task, for late joiners (latched)
        return result

    def release(self) -> None:
        if self._visual is None:
            return
        self.destroy_timer(self._timer)
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self.destroy_service(self._reset_srv)
        self.destroy_lifecycle_publisher(self._visual_pub)
        self.destroy_lifecycle_publisher(self._language_pub)
        self._diagnostics.destroy()
        self._visual = None
        self._store = None

    # --- callbacks --------------------------------------------------------------------------------------------
    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg, size=self._size, resize=param(self, 'resize_images'))
        except ImageError as exc:
            if self._image_errors.get(camera) != str(exc):
                self.get_logger().error(f'camera {camera}: {exc}')
                self._image_errors[camera] = str(exc)
                self._diagnostics.force_update()
            return
        self._image_errors.pop(camera, None)
        dropped = self._visual.stale_dropped
        self._visual.offer(camera, stamp_to_sec(msg.header.stamp), frame)
        if self._visual.stale_dropped > dropped:
            self.get_logger().info(f'camera {camera}: dropped a frame from before task {self._task_id!r} began')

    def _on_task(self, msg: Task) -> None:
        if msg.task_id != self._task_id:
            self._task_id = msg.task_id
            # frames older than the task (still queued when it arrived) show the scene before it began
            self._visual.reset(since_s=stamp_to_sec(msg.header.stamp))
            self._publish_language()

    def _on_language_update(self, msg: LanguageMemory) -> None:
        task_id = msg.task_id or self._task_id
        revision = self._store.update(task_id, msg.summary, msg.subtask_index, stamp_to_sec(msg.header.stamp))
        self.get_logger().info(f'language memory of {task_id!r} rev {revision.revision}: {revision.summary!r}')
        if task_id == self._task_id:
            self._publish_language()

    def _on_reset(self, request: ResetMemory.Request, response: ResetMemory.Response) -> ResetMemory.Response:
        done = []
        if request.visual:
            self._visual.reset()
            done.append('visual')
        if request.language:
            tasks = self._store.reset(request.task_id)
            done.append(f'language of {tasks or "no task"}')
            self._publish_language()
        response.success = bool(done)
        response.message = 'reset ' + ', '.join(done) if done else 'nothing asked to reset'
        return response

    # --- publishing -------------------------------------------------------------------------------------------
    def _publish_language(self) -> None:
        if self._store is None:
            return
        latest = self._store.latest(self._task_id)
        msg = LanguageMemory(task_id=self._task_id)
        msg.header.stamp = self.get_clock().now().to_msg()
        if latest is not None:
            msg.summary, msg.revision, msg.subtask_index = latest.summary, latest.revision, latest.subtask_index
        self._language_pub.publish(msg)

    def _publish_visual(self) -> None:
        snapshot = self._visual.snapshot()
        if not snapshot:
            return
        msg = VisualMemoryMsg(task_id=self._task_id, frames_per_camera=self._visual.frames_per_camera,
                              stride_s=self._visual.stride_s)
        newest = 0.0
        for camera in self._cameras:
            if camera not in snapshot:
                continue
            msg.camera_names.append(camera)
            for stamp, frame in snapshot[camera]:
                msg.frames.append(rgb_to_image(frame, stamp=sec_to_stamp(stamp), frame_id=camera))
                newest = max(newest, stamp)
        msg.header.stamp = sec_to_stamp(newest)
        self._visual_pub.publish(msg)

    # --- diagnostics ------------------------------------------------------------------------------------------
    def _visual_status(self):
        if self._image_errors:
            return ERROR, '; '.join(f'{c}: {e}' for c, e in self._image_errors.items()), {}
        missing = [c for c in self._cameras if c not in self._visual.snapshot()]
        if missing:
            return WARN, f'no frames yet from {", ".join(missing)}', {}
        return OK, 'ok', {'frames_per_camera': self._visual.frames_per_camera,
                          'frames_from_before_the_task_dropped': self._visual.stale_dropped}

    def _language_status(self):
        values = {'task_id': self._task_id, 'tasks_stored': len(self._store.tasks())}
        latest = self._store.latest(self._task_id)
        values['revision'] = latest.revision if latest else 0
        if self._store.problems:
            return WARN, '; '.join(self._store.problems), values
        return OK, 'ok', values


def main(args=None):
    return run_node(MemoryNode, args)


if __name__ == '__main__':
    main()
