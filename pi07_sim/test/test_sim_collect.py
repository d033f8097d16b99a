"""``collect``: one bag per expert episode, with the topics and types of a live recording."""
import json

import yaml

from pi07_sim.collect import main as collect_main


def decode_all(bag):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (path,) = bag.glob('*.mcap')
    messages = []
    with open(path, 'rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            messages.append((channel.topic, schema.name, message.log_time, decoded))
    return messages


def test_collect_writes_complete_episode_bags(tmp_path, capsys):
    out = tmp_path / 'demos'
    assert collect_main(['-o', str(out), '--episodes', '1', '--embodiments', 'gantry', '--families',
                         'restore_layout', '--variants', 'expert', 'mistake', '--image-size', '32']) == 0
    assert collect_main(['-o', str(out), '--episodes', '1', '--embodiments', 'arm7', '--families',
                         'ordered_place', '--variants', 'slow', '--image-size', '32', '--seed', '3']) == 0
    assert '1 episodes, 1 succeeded' in capsys.readouterr().out
    summary = json.loads((out / 'summary.json').read_text())
    assert [s['bag'] for s in summary] == ['gantry_restore_layout_expert_s0000', 'gantry_restore_layout_mistake_s0000',
                                           'arm7_ordered_place_slow_s0003']
    assert all(s['success'] for s in summary)

    for entry in summary:
        bag = out / entry['bag']
        custom = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']['custom_data']
        assert json.loads(custom['pi07.episode'])['success'] is True
        messages = decode_all(bag)
        topics = {t for t, *_ in messages}
        command = '/ee_target' if entry['embodiment'] == 'gantry' else '/forward_position_controller/commands'
        assert topics == {'/camera/scene/image_raw', '/camera/wrist/image_raw', '/joint_states', '/sim/object_poses',
                          '/task', '/task_status', '/subtask', '/episode_metadata', command}
        schemas = {t: s for t, s, *_ in messages}
        assert schemas['/task'] == 'pi07_msgs/msg/Task' and schemas['/joint_states'] == 'sensor_msgs/msg/JointState'
        by_topic = {}
        for topic, _, log_time, decoded in messages:
            by_topic.setdefault(topic, []).append((log_time, decoded))
        task = by_topic['/task'][0][1]
        assert task.metadata.speed == entry['speed'] and task.metadata.quality == entry['quality']
        assert task.metadata.mistake == int(entry['mistake'])
        assert task.metadata.embodiment == f'sim_{entry["embodiment"]}'
        texts = [m.text for _, m in by_topic['/subtask']]
        changes = [t for i, t in enumerate(texts) if i == 0 or t != texts[i - 1]]
        assert changes == list(task.plan) + ['']  # labelled in plan order, then "done"
        assert by_topic['/subtask'][-1][1].task_done and all(m.source == 'expert' for _, m in by_topic['/subtask'])
        assert by_topic['/task_status'][-1][1].state == 2  # SUCCEEDED
        n_images = len(by_topic['/camera/scene/image_raw'])
        assert n_images == len(by_topic[command]) and len(by_topic['/joint_states']) == 5 * n_images
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for _, m in by_topic['/camera/scene/image_raw']]
        assert abs(stamps[1] - stamps[0] - 0.1) < 1e-6  # 10 Hz in simulated time
        log_times = [t for t, _ in by_topic['/joint_states']]
        assert log_times == sorted(log_times)
