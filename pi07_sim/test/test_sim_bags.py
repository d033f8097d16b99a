"""Bags: record the live sim, read back with the independent mcap reader, replay every message; kill safely."""
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sim_probe
import yaml
from sim_probe import spin_until

probe = sim_probe.probe  # the shared fixture

pytestmark = pytest.mark.ros

TOPICS = ['camera/scene/image_raw', 'camera/wrist/image_raw', 'joint_states', 'task', 'task_status']


def read_with_mcap(bag: Path) -> tuple[Counter, dict]:
    """Decode every message with the mcap + mcap_ros2 reader (independent of rosbags and rclpy)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts, last = Counter(), {}
    (path,) = bag.glob('*.mcap')
    with open(path, 'rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        assert reader.get_summary() is not None  # the file was closed properly
        for _, channel, _, decoded in reader.iter_decoded_messages():
            counts[channel.topic] += 1
            last[channel.topic] = decoded
    return counts, last


def metadata_counts(bag: Path) -> Counter:
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert info['storage_identifier'] == 'mcap' and info['version'] == 9
    return Counter({t['topic_metadata']['name']: t['message_count'] for t in info['topics_with_message_count']
                    if t['message_count']})


def start_sim_and_recorder(spawn, bag: Path):
    sim = spawn([sys.executable, '-m', 'pi07_sim.sim_node', '--ros-args', '-p', 'embodiment:=gantry',
                 '-p', 'image_size:=32'], name='sim')
    recorder = spawn([sys.executable, '-m', 'pi07_sim.bag.recorder', '-o', str(bag), *TOPICS], name='record')
    for topic in TOPICS:
        assert recorder.wait_for_output(f'recording /{topic} ', 40), recorder.output()
    return sim, recorder


def test_record_read_back_and_replay_every_message(spawn, probe, tmp_path):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image, JointState

    from pi07_msgs.msg import Task, TaskStatus

    bag = tmp_path / 'live'
    sim, recorder = start_sim_and_recorder(spawn, bag)
    time.sleep(3.0)
    recorder.signal(signal.SIGINT)
    assert recorder.wait(15) == 0, recorder.output()
    sim.stop()

    counts, last = read_with_mcap(bag)
    assert counts == metadata_counts(bag)
    assert set(counts) == {f'/{t}' for t in TOPICS}
    assert counts['/joint_states'] >= 60 and counts['/camera/scene/image_raw'] >= 10 and counts['/task'] >= 1
    assert last['/task'].instruction and len(last['/task'].plan) == 4  # custom types decode
    assert last['/task_status'].subtasks_total == 4
    assert last['/camera/wrist/image_raw'].encoding == 'rgb8' and len(last['/camera/wrist/image_raw'].data) == 3072

    # Replay to a subscriber in this process: every recorded message arrives.
    node, executor = probe
    received = Counter()
    types = {'camera/scene/image_raw': Image, 'camera/wrist/image_raw': Image, 'joint_states': JointState,
             'task': Task, 'task_status': TaskStatus}
    for topic, cls in types.items():
        qos = QoSProfile(depth=500, durability=DurabilityPolicy.TRANSIENT_LOCAL if topic == 'task'
                         else DurabilityPolicy.VOLATILE)
        node.create_subscription(cls, topic, lambda data, t=f'/{topic}': received.update([t]), qos, raw=True)
    player = spawn([sys.executable, '-m', 'pi07_sim.bag.player', str(bag), '--wait-timeout', '30'], name='play')
    assert spin_until(executor, lambda: received == counts, 60), (received, counts, player.output())
    assert player.wait_for_output('[play] done', 20)


def test_sigterm_leaves_a_complete_bag(spawn, tmp_path):
    bag = tmp_path / 'killed'
    sim, recorder = start_sim_and_recorder(spawn, bag)
    time.sleep(1.5)
    recorder.signal(signal.SIGTERM)
    assert recorder.wait(15) == 0, recorder.output()
    sim.stop()
    counts, _ = read_with_mcap(bag)
    assert counts == metadata_counts(bag) and counts['/joint_states'] > 0 and counts['/task'] >= 1
    from rosbags.rosbag2 import Reader  # and rosbags (what rosbag2 tools read) agrees
    with Reader(bag) as reader:
        assert reader.message_count == sum(counts.values())
