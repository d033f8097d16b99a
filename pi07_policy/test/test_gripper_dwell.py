"""The gripper's minimum dwell: chatter between re-planned chunks is held, a real switch after the dwell is obeyed."""
import numpy as np

from pi07_policy.control.chunk_schedule import ChunkExecutorCore, Limits, make_chunk
from pi07_policy.control.gripper_dwell import GripperDwell

DT = 0.1


def test_a_switch_back_waits_for_the_dwell_then_is_obeyed():
    dwell = GripperDwell(index=1, threshold=0.5, min_dwell_s=1.0)
    # The first command is obeyed and starts a dwell, as a switch does.
    out, held = dwell.apply(np.array([0.3, 0.0]), -1.0)
    assert not held and out[1] == 0.0
    assert dwell.apply(np.array([0.3, 1.0]), -0.5)[1]
    out, held = dwell.apply(np.array([0.3, 0.97]), 0.1)
    assert not held and out[1] == 0.97
    # An open 0.3 s later is chatter: the gripper stays closed, the other dimensions follow the command.
    out, held = dwell.apply(np.array([0.4, 0.0]), 0.4)
    assert held and out[1] == 0.97 and out[0] == 0.4
    # Re-asking to close is not a switch; an open once the dwell is over is obeyed.
    assert not dwell.apply(np.array([0.4, 1.0]), 0.6)[1]
    out, held = dwell.apply(np.array([0.4, 0.0]), 1.1)
    assert not held and out[1] == 0.0
    # ... and starts a new dwell.
    assert dwell.apply(np.array([0.4, 1.0]), 1.5)[1]
    assert dwell.suppressed == 3
    dwell.reset()
    assert not dwell.apply(np.array([0.4, 1.0]), 1.6)[1]


def test_the_executor_holds_the_gripper_across_a_flipping_chunk():
    limits = Limits.from_lists([-1.0, 0.0], [1.0, 1.0], [10.0, 10.0])
    core = ChunkExecutorCore(limits, control_dt=DT, gripper_dwell=GripperDwell(1, 0.5, 1.2))
    core.activate()
    core.add_chunk(make_chunk(0.0, DT, [0.0, 1.0] * 5, 5, 2, 2, sequence=1), now=0.0)
    assert core.tick(0.0).command[1] == 1.0
    # The next chunk, 0.2 s later, wants the gripper open: held closed until 1.2 s after the first close.
    core.add_chunk(make_chunk(0.2, DT, [0.5, 0.0] * 20, 20, 2, 2, sequence=2), now=0.2)
    commands = [core.tick(t).command for t in np.arange(0.2, 1.6, DT)]
    gripper = [c[1] for c in commands]
    assert gripper[:10] == [1.0] * 10 and gripper[-2:] == [0.0, 0.0]
    np.testing.assert_allclose([c[0] for c in commands], 0.5)   # the arm follows the new chunk meanwhile
    # Without a dwell the executor obeys the flip at once.
    plain = ChunkExecutorCore(limits, control_dt=DT)
    plain.activate()
    plain.add_chunk(make_chunk(0.0, DT, [0.0, 1.0] * 5, 5, 2, 2, sequence=1), now=0.0)
    plain.tick(0.0)
    plain.add_chunk(make_chunk(0.2, DT, [0.5, 0.0] * 20, 20, 2, 2, sequence=2), now=0.2)
    assert plain.tick(0.2).command[1] == 0.0


def test_the_executor_node_builds_its_dwell_from_parameters():
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from pi07_policy.nodes.chunk_executor import ChunkExecutorNode

    names = ['j1', 'finger']
    owns = not rclpy.ok()
    if owns:
        rclpy.init()
    try:
        for gripper, dwell_s, ok in (('finger', 1.5, True), ('thumb', 1.5, False), ('finger', float('nan'), False),
                                     ('finger', -1.0, False)):
            node = ChunkExecutorNode(parameter_overrides=[
                Parameter('joint_names', value=names), Parameter('position_min', value=[-1.0, 0.0]),
                Parameter('position_max', value=[1.0, 0.8]), Parameter('velocity_max', value=[1.0, 1.0]),
                Parameter('gripper_name', value=gripper), Parameter('gripper_min_dwell_s', value=dwell_s)])
            try:
                result = node.on_configure(None)
                assert (result == TransitionCallbackReturn.SUCCESS) == ok
                if ok:
                    dwell = node._core.gripper_dwell
                    assert (dwell.index, dwell.threshold, dwell.min_dwell_s) == (1, 0.4, 1.5)
                    node.release()
            finally:
                node.destroy_node()
    finally:
        if owns:
            rclpy.try_shutdown()
