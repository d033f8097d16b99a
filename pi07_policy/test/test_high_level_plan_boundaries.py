"""The high-level policy on a plan task: the decoder moves the plan on only where no task monitor reports.

At the start of a task the monitor's first status may be a status period away; a single decode of a later plan
step then must not skip the plan ahead (it did at every bring-up of the arm's stack: "pick up the blue block"
0.1 s after "pick up the red block", taken back when the first status came). The node runs in this process,
configured with a small random checkpoint; the tests call its task, status and decision steps directly, with the
decoder's output fixed."""
import numpy as np
import pytest

pytestmark = [pytest.mark.ros]

PLAN = ['pick up the red block', 'place the red block in the bowl', 'pick up the blue block',
        'place the blue block in the bowl']


class LaterStep:
    """Always decodes the third plan step."""

    def infer(self, obs):
        return {'subtask': PLAN[2], 'task_done': False}

    def update_memory(self, request):
        return {'memory': f"Done: {request['completed_subtask']}."}


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    from inprocess_node import configured_node

    from pi07_policy.nodes.high_level_policy import HighLevelPolicyNode

    hl = configured_node(HighLevelPolicyNode, 'high_level_policy', tmp_path_factory.mktemp('checkpoints'))
    assert hl._policy is not None
    hl._policy = LaterStep()
    hl._images = lambda: {}
    yield hl
    hl.trigger_cleanup()
    hl.destroy_node()


def start(node, task_id):
    from pi07_msgs.msg import Task

    node._on_task(Task(task_id=task_id, instruction='put the red block and then the blue block in the bowl',
                       subtask_source=Task.SUBTASKS_FROM_PLAN, plan=PLAN))
    node._start_task()   # what activation does (the node stays inactive here: no decision thread)
    assert node._current == PLAN[0]
    return node._task


def test_no_skip_before_a_monitor_could_report(node):
    task = start(node, 'grace')
    node._decide(task)
    assert node._current == PLAN[0]            # within status_grace_s: a monitor may still report
    node._started -= 3.0                       # no status came in 3 s: no monitor, the decoder decides
    node._decide(task)
    assert node._current == PLAN[2]


def test_no_skip_where_a_monitor_reports(node):
    from pi07_msgs.msg import TaskStatus

    task = start(node, 'monitored')
    node._running = True                       # statuses count only while active
    try:
        node._on_status(TaskStatus(task_id='monitored', state=TaskStatus.STATE_RUNNING, subtasks_done=0,
                                   subtasks_total=len(PLAN)))
    finally:
        node._running = False
    node._started -= 3.0
    node._decide(task)
    assert node._current == PLAN[0]
    assert np.isclose(node._status_msg.subtasks_done, 0)


def test_a_grace_that_is_not_a_number_fails_configure(tmp_path):
    from inprocess_node import configured_node
    from lifecycle_msgs.msg import State

    from pi07_policy.nodes.high_level_policy import HighLevelPolicyNode

    hl = configured_node(HighLevelPolicyNode, 'high_level_policy', tmp_path, overrides={'status_grace_s': float('nan')})
    try:
        assert hl._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        hl.destroy_node()
