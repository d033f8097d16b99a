"""The world-model node's logic, in process (callbacks called directly): a checkpoint that reads keyframes gets
each camera's oldest visual-memory frame with every request, and a new task forgets the last task's (also when
the last task's memory arrives after it)."""
from __future__ import annotations

import dataclasses

import numpy as np


def test_a_keyframe_world_model_gets_the_oldest_memory_frame_and_forgets_it_on_a_new_task(tmp_path):
    from inprocess_node import configured_node
    from pi07_common.images import rgb_to_image

    from pi07_msgs.msg import Subtask, Task, VisualMemory
    from pi07_world_model.configuration_world_model import micro
    from pi07_world_model.modeling_world_model import WorldModel
    from pi07_world_model.processing_world_model import WorldModelProcessor
    from pi07_world_model.world_model_node import WorldModelNode

    cameras = ('scene', 'wrist')
    config = dataclasses.replace(micro(image_size=32, camera_names=cameras), reads_keyframe=True)
    model = WorldModel(config, WorldModelProcessor.from_texts(config, ['pick up the red block']))
    path = model.save_pretrained(tmp_path / 'wm_keyframe', embodiment='arm7')
    node = configured_node(WorldModelNode, 'world_model', tmp_path / 'stack', overrides={'checkpoint': str(path)})
    try:
        assert node._model.config.reads_keyframe
        size = node._cameras.image_size
        frame = lambda value: np.full((size, size, 3), value, np.uint8)
        requests, published = [], []
        node._model.generate = lambda obs, **kw: (requests.append(obs), {
            'subgoal_images': {c: frame(7) for c in obs['images']}})[1]
        node._running = True
        node._pub = type('Recorder', (), {'publish': lambda self, msg: published.append(msg)})()
        node._on_task(Task(task_id='t1', instruction='put the red block in the bowl'))
        memory = VisualMemory(task_id='t1', camera_names=list(cameras), frames_per_camera=3, stride_s=1.0)
        memory.frames = [rgb_to_image(frame(10 * c + k)) for c in range(len(cameras)) for k in range(3)]
        node._on_memory(memory)

        def generate():
            now = node.get_clock().now()
            for c in cameras:
                image = rgb_to_image(frame(200))
                image.header.stamp = now.to_msg()
                node._cameras.add(c, image, now.nanoseconds * 1e-9)
            with node._lock:
                task, keyframe = node._task, node._keyframe
            node._generate(task, Subtask(task_id=task.task_id, text='pick up the red block'), keyframe)

        generate()
        keyframe = requests[-1]['keyframe_images']
        assert {c: int(keyframe[c][0, 0, 0]) for c in cameras} == {'scene': 0, 'wrist': 10}   # frame 0 of each
        assert len(published) == 1 and node._status()[2]['keyframe'] == 'yes'
        node._on_task(Task(task_id='t2', instruction='put the red block in the bowl'))   # another task
        generate()
        assert requests[-1]['keyframe_images'] is None and node._status()[2]['keyframe'] == 'none yet'
        node._on_memory(memory)   # t1's memory, delivered after t2 began: another scene's first frame
        generate()
        assert requests[-1]['keyframe_images'] is None
        memory.task_id = 't2'
        memory.frames = [rgb_to_image(frame(50 + 10 * c + k)) for c in range(len(cameras)) for k in range(3)]
        node._on_memory(memory)
        generate()
        assert {c: int(requests[-1]['keyframe_images'][c][0, 0, 0]) for c in cameras} == {'scene': 50, 'wrist': 60}
    finally:
        node.destroy_node()
