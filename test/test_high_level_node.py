"""The high_level_policy node as a real process: ExecuteTask with a plan, boundaries from task_status, memory
updates at boundaries, human interjections, and subtasks from a person on a topic."""
import time

import pytest

pytestmark = [pytest.mark.ros]


@pytest.fixture
def high_level(tmp_path):
    from ros_graph import Probe

    from pi07_bringup.graph import build_graph
    from pi07_bringup.profile import load_profile
    from pi07_bringup.runner import EmbeddedRunner

    specs = build_graph(load_profile('sim_arm7'), nodes=['high_level_policy'],
                        checkpoints={'high_level_policy': ''}, parameter_overrides={
                            'high_level_policy': {'checkpoint': ''}})
    runner = EmbeddedRunner(specs, log_dir=str(tmp_path / 'logs'), echo=False)
    probe = Probe('high_level_test')
    runner.start()
    try:
        runner.bring_up(timeout=60)
        yield runner, probe
    finally:
        probe.stop()
        runner.shutdown()


def test_execute_task_with_plan_feedback_memory_and_interjection(high_level):
    from pi07_common.qos import LATCHED

    from pi07_msgs.action import ExecuteTask
    from pi07_msgs.msg import LanguageMemory, Subtask, Task, TaskStatus
    from pi07_msgs.srv import Interject

    runner, probe = high_level
    node = probe.node
    subtasks = probe.record(Subtask, 'subtask', LATCHED)
    updates = probe.record(LanguageMemory, 'memory/language_update')
    tasks = probe.record(Task, 'task', LATCHED)
    status_pub = node.create_publisher(TaskStatus, 'task_status', 10)
    client = probe.action_client(ExecuteTask, 'execute_task')
    assert client.wait_for_server(timeout_sec=30)
    # the volatile memory updates are counted below: the recording must have matched before the first one
    assert probe.wait_for(lambda: probe.publisher_count(updates) > 0 and status_pub.get_subscription_count() > 0, 10)
    plan = ['pick up the red block', 'place the red block in the bowl']
    goal = ExecuteTask.Goal(task=Task(task_id='t-plan', instruction='put the red block in the bowl',
                                      subtask_source=Task.SUBTASKS_FROM_PLAN, plan=plan), timeout_s=30.0)
    feedback = []
    future = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
    assert probe.wait_for(future.done, 10) and future.result().accepted
    assert probe.wait_for(lambda: probe.messages(tasks) and probe.messages(tasks)[-1].task_id == 't-plan', 10)
    assert probe.wait_for(lambda: [m.text for m in probe.messages(subtasks)][-1:] == [plan[0]], 10)

    # A human interjection with a new subtask takes over at once.
    interject = node.create_client(Interject, 'high_level_policy/interject')
    assert interject.wait_for_service(timeout_sec=10)
    reply = interject.call_async(Interject.Request(text='look at the red block first', as_subtask=True))
    assert probe.wait_for(reply.done, 10) and reply.result().accepted
    assert reply.result().subtask == 'look at the red block first'
    assert probe.wait_for(lambda: probe.messages(subtasks)[-1].source == Subtask.SOURCE_HUMAN, 10)

    def report(done):
        status = TaskStatus(task_id='t-plan', state=TaskStatus.STATE_RUNNING, subtasks_done=done,
                            subtasks_total=len(plan), progress=done / len(plan))
        status_pub.publish(status)

    # The robot side reports the first subtask done: a boundary (memory update), then the second subtask.
    report(1)
    assert probe.wait_for(lambda: probe.messages(subtasks)[-1].text == plan[1], 10)
    assert probe.wait_for(lambda: len(probe.messages(updates)) >= 2, 10)  # after the interjected and the first
    assert all(u.task_id == 't-plan' for u in probe.messages(updates))
    # The block is dropped: the task monitor takes progress back, the plan asks for its first step again, and
    # the abandoned step is not written to memory as done; redoing it is.
    n_updates = len(probe.messages(updates))
    report(0)
    assert probe.wait_for(lambda: probe.messages(subtasks)[-1].text == plan[0], 10)
    report(1)
    assert probe.wait_for(lambda: probe.messages(subtasks)[-1].text == plan[1], 10)
    assert probe.wait_for(lambda: len(probe.messages(updates)) >= n_updates + 1, 10)
    time.sleep(0.5)
    assert len(probe.messages(updates)) == n_updates + 1
    report(2)
    assert probe.wait_for(lambda: probe.messages(subtasks)[-1].task_done, 10)
    result_future = future.result().get_result_async()
    assert probe.wait_for(result_future.done, 15)
    result = result_future.result().result
    assert result.success and result.progress == pytest.approx(1.0)
    assert result.subtasks_done == 4 and plan[1] in result.summary   # interjection, plan[0] twice, plan[1]
    # every subtask in order (the first may precede the client's discovery on a loaded machine); the
    # result and the last feedback travel on different topics, so wait for the feedback to arrive too
    assert probe.wait_for(lambda: [f.subtask for f in feedback][-2:] == [plan[0], plan[1]], 15)
    sent = [f.subtask for f in feedback]
    assert sent in ([plan[0], 'look at the red block first', plan[1], plan[0], plan[1]],
                    ['look at the red block first', plan[1], plan[0], plan[1]])
    client.destroy()


def test_subtasks_from_a_person_on_a_topic(high_level):
    from pi07_common.qos import LATCHED

    from pi07_msgs.msg import Subtask, Task

    runner, probe = high_level
    node = probe.node
    subtasks = probe.record(Subtask, 'subtask', LATCHED)
    task_pub = node.create_publisher(Task, 'task', LATCHED)
    command_pub = node.create_publisher(Subtask, 'subtask_command', 10)
    task_pub.publish(Task(task_id='t-topic', instruction='tidy up', subtask_source=Task.SUBTASKS_FROM_TOPIC))
    assert probe.wait_for(lambda: command_pub.get_subscription_count() > 0, 10)
    time.sleep(0.5)
    command_pub.publish(Subtask(text='pick up the blue block'))
    assert probe.wait_for(lambda: any(m.text == 'pick up the blue block' and m.source == Subtask.SOURCE_HUMAN
                                      for m in probe.messages(subtasks)), 10)
    command_pub.publish(Subtask(task_done=True))
    assert probe.wait_for(lambda: probe.messages(subtasks)[-1].task_done, 10)
