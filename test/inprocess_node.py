"""A pi07 node built in the test process from a profile's graph, with small random checkpoints, and configured:
for tests that call its callbacks directly (the node logic, without waiting on DDS delivery)."""
from __future__ import annotations

from pathlib import Path


def configured_node(node_cls, name: str, checkpoint_dir: Path, profile_name: str = 'sim_arm7',
                    overrides: dict | None = None):
    """`node_cls` with the parameters `build_graph` gives node `name` for the profile (then `overrides`),
    configured."""
    import rclpy
    from rclpy.parameter import Parameter
    from stack_checkpoints import make_checkpoints

    from pi07_bringup.graph import build_graph
    from pi07_bringup.profile import load_profile

    profile = load_profile(profile_name)
    checkpoints = make_checkpoints(profile, checkpoint_dir)
    spec = next(s for s in build_graph(profile, nodes=[name], checkpoints=checkpoints,
                                       parameter_overrides={name: dict(overrides or {})}) if s.name == name)
    if not rclpy.ok():
        rclpy.init(args=[])
    node = node_cls(parameter_overrides=[Parameter(k, value=v) for k, v in spec.parameters.items()])
    node.trigger_configure()
    return node
