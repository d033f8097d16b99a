"""pi07_common without DDS: checked image conversion and observation assembly."""
import math

import numpy as np
import pytest
from pi07_common.images import (
    ImageError,
    image_to_rgb,
    memory_frames_to_rgb,
    memory_of_another_task,
    resize_rgb,
    rgb_to_image,
)
from pi07_common.observations import CameraBuffer, JointStateBuffer, ObservationError, assemble
from sensor_msgs.msg import Image


def test_rgb_round_trip_and_encodings():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image(rgb)), rgb)
    bgr = rgb_to_image(rgb[:, :, ::-1].copy())
    bgr.encoding = 'bgr8'
    np.testing.assert_array_equal(image_to_rgb(bgr), rgb)
    padded = Image(height=6, width=8, encoding='rgb8', step=8 * 3 + 4,
                   data=np.concatenate([rgb.reshape(6, -1), np.zeros((6, 4), np.uint8)], axis=1).tobytes())
    np.testing.assert_array_equal(image_to_rgb(padded), rgb)  # honours step


@pytest.mark.parametrize('change, message', [
    (dict(encoding='yuv422'), 'unsupported image encoding'),
    (dict(step=3), 'step'),
    (dict(data=b'\0' * 10), 'truncated'),
])
def test_bad_images_are_refused_with_a_reason(change, message):
    msg = rgb_to_image(np.zeros((6, 8, 3), np.uint8))
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=message):
        image_to_rgb(msg)


def test_size_checked_or_resized():
    msg = rgb_to_image(np.full((8, 8, 3), 7, np.uint8))
    with pytest.raises(ImageError, match='expected 4x4'):
        image_to_rgb(msg, size=4)
    assert image_to_rgb(msg, size=4, resize=True).shape == (4, 4, 3)
    assert resize_rgb(np.zeros((4, 4, 3), np.uint8), (6, 6)).shape == (6, 6, 3)


def test_assemble_checks_presence_age_spread_and_nan():
    cameras = CameraBuffer(['scene', 'wrist'], 4, False)
    state = JointStateBuffer(['a', 'b'])
    image = rgb_to_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ObservationError, match='no image yet from camera'):
        assemble(cameras, state, 10.0, max_age_s=1.0, stamp_tolerance_s=0.1)
    cameras.add('scene', image, 10.0)
    cameras.add('wrist', image, 10.0)
    with pytest.raises(ObservationError, match='no joint_states'):
        assemble(cameras, state, 10.0, max_age_s=1.0, stamp_tolerance_s=0.1)
    assert state.add(['b', 'a', 'c'], [2.0, 1.0, 0.0], 10.05) is None
    images, vector, stamp = assemble(cameras, state, 10.1, max_age_s=1.0, stamp_tolerance_s=0.1)
    assert set(images) == {'scene', 'wrist'} and vector.tolist() == [1.0, 2.0] and stamp == 10.05
    with pytest.raises(ObservationError, match='stale input'):
        assemble(cameras, state, 12.0, max_age_s=1.0, stamp_tolerance_s=0.1)
    state.add(['a', 'b'], [0.0, 0.0], 10.5)
    with pytest.raises(ObservationError, match='apart'):
        assemble(cameras, state, 10.6, max_age_s=1.0, stamp_tolerance_s=0.1)
    assert 'NaN' in state.add(['a', 'b'], [math.nan, 0.0], 10.6)
    with pytest.raises(ObservationError, match='NaN'):
        assemble(cameras, state, 10.6, max_age_s=1.0, stamp_tolerance_s=1.0)
    bad = rgb_to_image(np.zeros((4, 4, 3), np.uint8))
    bad.encoding = 'yuv422'
    assert cameras.add('wrist', bad, 10.7)
    with pytest.raises(ObservationError, match='camera wrist'):
        assemble(cameras, None, 10.7, max_age_s=1.0, stamp_tolerance_s=1.0)


def test_memory_frames_camera_major_oldest_only_and_a_wrong_count():
    from pi07_msgs.msg import Task

    frames = [rgb_to_image(np.full((8, 8, 3), 10 * c + k, np.uint8)) for c in range(2) for k in range(3)]
    out = memory_frames_to_rgb(['scene', 'wrist'], frames, 3, size=4)
    assert {c: [int(f[0, 0, 0]) for f in v] for c, v in out.items()} == {'scene': [0, 1, 2], 'wrist': [10, 11, 12]}
    assert out['scene'][0].shape == (4, 4, 3)
    oldest = memory_frames_to_rgb(['scene', 'wrist'], frames, 3, size=4, oldest_only=True)
    assert {c: [int(f[0, 0, 0]) for f in v] for c, v in oldest.items()} == {'scene': [0], 'wrist': [10]}
    with pytest.raises(ImageError, match='5 frames for 2 camera'):
        memory_frames_to_rgb(['scene', 'wrist'], frames[:5], 3, size=4)
    # whose memory: another task's is refused, an unnamed one (no task seen yet) is not
    assert memory_of_another_task('t1', Task(task_id='t2'))
    assert not memory_of_another_task('t2', Task(task_id='t2'))
    assert not memory_of_another_task('', Task(task_id='t2'))
    assert not memory_of_another_task('t1', None)
