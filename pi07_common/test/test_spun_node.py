"""SpunNode: a callback that blocks for long on the companion node does not hold up its owner's callbacks, and
destroy() stops its thread (the high-level policy serves ExecuteTask this way)."""
import threading
import time

import pytest

pytestmark = pytest.mark.ros


def test_a_blocking_callback_on_the_companion_leaves_the_owner_running():
    import rclpy
    from pi07_common.node_utils import SpunNode
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    owner = rclpy.create_node('owner', namespace='/spun_test', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(owner)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        owner_ticks: list[float] = []
        owner.create_timer(0.05, lambda: owner_ticks.append(time.monotonic()))
        companion = SpunNode(owner, 'owner_side')
        assert companion.node.get_namespace() == '/spun_test'
        blocked = {'start': None, 'end': None}

        def block_once():
            if blocked['start'] is None:
                blocked['start'] = time.monotonic()
                time.sleep(1.0)   # an action's execute callback, waiting for its task
                blocked['end'] = time.monotonic()
        companion.node.create_timer(0.05, block_once)
        deadline = time.monotonic() + 10.0
        while blocked['end'] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blocked['end'] is not None, 'the companion never ran its callback'
        during = [t for t in owner_ticks if blocked['start'] <= t <= blocked['end']]
        assert len(during) >= 12, f'the owner ticked {len(during)} times in the 1 s the companion was blocked'
        thread = companion._thread
        companion.destroy()
        assert not thread.is_alive()
    finally:
        executor.shutdown()
        owner.destroy_node()
        rclpy.shutdown(context=context)
