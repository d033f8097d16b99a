"""sensor_msgs/Image <-> numpy with checks: a wrong encoding, size or buffer gives a clear ImageError."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

# Encodings we can turn into rgb8, and how many channels each has.
_CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


class ImageError(ValueError):
    """An image that cannot be used as it is (encoding, size, truncated buffer)."""


def image_to_rgb(msg: Image, *, size: int | tuple[int, int] | None = None, resize: bool = False) -> np.ndarray:
    """Return the image as an (H, W, 3) uint8 RGB array.

    ``size``: expected (height, width) (an int means square). A different size raises ImageError unless
    ``resize`` is true, in which case the image is resized (area-average when shrinking, nearest otherwise).
    """
    encoding = msg.encoding.lower()
    if encoding not in _CHANNELS:
        raise ImageError(f'unsupported image encoding {msg.encoding!r} (expected one of {", ".join(_CHANNELS)})')
    channels = _CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f'empty image {width}x{height}')
    if step < width * channels:
        raise ImageError(f'step {step} is smaller than width*channels = {width * channels}')
    if len(msg.data) < step * height:
        raise ImageError(f'truncated image: {len(msg.data)} bytes for {height} rows of {step}')
    buffer = np.frombuffer(memoryview(msg.data), dtype=np.uint8, count=step * height)
    pixels = buffer.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding == 'mono8':
        rgb = np.repeat(pixels, 3, axis=2)
    elif encoding in ('bgr8', 'bgra8'):
        rgb = pixels[:, :, 2::-1]
    else:
        rgb = pixels[:, :, :3]
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if (height, width) != want:
            if not resize:
                raise ImageError(f'image is {width}x{height}, expected {want[1]}x{want[0]} (set resize_images to '
                                 'resize on input)')
            rgb = resize_rgb(rgb, want)
    return np.ascontiguousarray(rgb)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, C) uint8 to ``size`` = (height, width): area average for integer shrink, else nearest."""
    height, width = image.shape[:2]
    out_h, out_w = size
    if height % out_h == 0 and width % out_w == 0:
        fy, fx = height // out_h, width // out_w
        blocks = image.reshape(out_h, fy, out_w, fx, -1).astype(np.float32)
        return blocks.mean(axis=(1, 3)).round().astype(np.uint8)
    rows = (np.arange(out_h) * height / out_h).astype(int)
    cols = (np.arange(out_w) * width / out_w).astype(int)
    return image[rows][:, cols]


def rgb_to_image(array: np.ndarray, *, stamp=None, frame_id: str = '') -> Image:
    """An (H, W, 3) uint8 array as an rgb8 sensor_msgs/Image (one copy, no per-pixel Python)."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f'expected an (H, W, 3) uint8 array, got {array.dtype} {array.shape}')
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def memory_frames_to_rgb(camera_names, frames, frames_per_camera: int, *, size: int,
                         oldest_only: bool = False) -> dict[str, list[np.ndarray]]:
    """A pi07_msgs/VisualMemory's frames (camera-major, oldest first) as {camera: [(size, size, 3) uint8, ...]},
    each resized to `size` (with `oldest_only`, only each camera's frame 0 is decoded: a keyframe reader needs no
    more); ImageError for a frame that cannot be read or a frame count that does not match the cameras."""
    k = int(frames_per_camera)
    if len(frames) != len(camera_names) * k:
        raise ImageError(f'{len(frames)} frames for {len(camera_names)} camera(s) x {k} frames per camera')
    last = 1 if oldest_only else k
    return {name: [image_to_rgb(img, size=size, resize=True) for img in frames[i * k:i * k + min(last, k)]]
            for i, name in enumerate(camera_names)}


def memory_of_another_task(memory_task_id: str, task) -> bool:
    """Whether a VisualMemory taken in task `memory_task_id` belongs to a task other than `task` (a pi07_msgs/Task
    or None): it can arrive after the new Task and shows another scene. An empty id (a memory node that has seen
    no task) is taken as the current task's."""
    return task is not None and bool(memory_task_id) and memory_task_id != task.task_id
