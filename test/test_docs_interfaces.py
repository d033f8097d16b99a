"""docs/interfaces.md stays true: every parameter each pi07 node declares is listed in that node's section."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'interfaces.md'
NODES = {
    'high_level_policy': 'pi07_policy.nodes.high_level_policy:HighLevelPolicyNode',
    'world_model': 'pi07_world_model.world_model_node:WorldModelNode',
    'action_expert': 'pi07_policy.nodes.action_expert:ActionExpertNode',
    'chunk_executor': 'pi07_policy.nodes.chunk_executor:ChunkExecutorNode',
    'memory': 'pi07_memory.memory_node:MemoryNode',
}
BUILT_IN = {'use_sim_time', 'start_type_description_service'}


def section(name: str) -> str:
    text = DOC.read_text()
    match = re.search(rf'^### `{name}`.*?(?=^### |\Z)', text, flags=re.S | re.M)
    assert match, f'docs/interfaces.md has no section for {name}'
    return match.group(0)


@pytest.fixture(scope='module')
def rclpy_context():
    import rclpy

    owns = not rclpy.ok()
    if owns:
        rclpy.init()
    yield
    if owns:
        rclpy.try_shutdown()


@pytest.mark.parametrize('name', NODES)
def test_every_declared_parameter_is_documented(name, rclpy_context):
    import importlib

    module, cls = NODES[name].split(':')
    node = getattr(importlib.import_module(module), cls)()
    try:
        declared = set(node._parameters) - BUILT_IN
        assert node.get_name() == name
    finally:
        node.destroy_node()
    documented = set(re.findall(r'^\| `([a-z_]+)` \|', section(name), flags=re.M))
    assert declared - documented == set(), f'undocumented parameters of {name}'
    assert documented - declared == set(), f'documented parameters {name} does not declare'
