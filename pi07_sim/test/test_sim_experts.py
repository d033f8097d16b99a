"""Scripted experts: success over seeds on both embodiments, and the labelled degraded variants."""
import numpy as np
import pytest

from pi07_sim.env import TabletopEnv
from pi07_sim.expert import VARIANTS, make_expert, run_episode, variant_metadata
from pi07_sim.scene import BLOCK_HALF
from pi07_sim.tasks import FAMILIES


@pytest.mark.parametrize('embodiment', ['arm7', 'gantry'])
def test_expert_succeeds_on_20_seeds(embodiment):
    results = []
    for family in FAMILIES:  # 10 seeds of each family = 30 episodes per embodiment
        env = TabletopEnv(embodiment, family, render=False)
        results += [run_episode(env, 'expert', seed=seed) for seed in range(100, 110)]
    successes = sum(r['success'] for r in results)
    assert successes / len(results) >= 0.95, [r for r in results if not r['success']]
    assert all(r['time'] < 30.0 for r in results if r['success'])


def test_variants_are_labelled_and_recover():
    assert variant_metadata('expert') == {'speed': 4, 'quality': 5, 'mistake': False, 'variant': 'expert'}
    assert variant_metadata('slow')['speed'] < variant_metadata('expert')['speed']
    assert variant_metadata('noisy')['quality'] < 5 and variant_metadata('mistake')['mistake'] is True
    assert all(1 <= v.speed <= 5 and 1 <= v.quality <= 5 for v in VARIANTS.values())
    env = TabletopEnv('gantry', 'ordered_place', render=False)
    times = {}
    for variant in ('expert', 'slow', 'noisy', 'mistake'):
        result = run_episode(env, variant, seed=7)
        assert result['success'], result
        times[variant] = result['time']
    assert times['slow'] > 1.3 * times['expert']
    assert times['mistake'] > times['expert']
    # The mistake variant misses its first grasp on purpose, labels it as the same subtask, and tries again.
    env.reset(seed=7)
    expert = make_expert(env, 'mistake', seed=7)
    labels = []
    while expert.subtask is not None and not env.timed_out():
        action, text = expert.act()
        labels.append(text)
        env.step(action)
    assert expert.grasp_attempts == 3  # two picks in the task, one of them repeated
    assert env.success()
    plan = env.task.plan
    assert [t for i, t in enumerate(labels) if i == 0 or t != labels[i - 1]] == plan


def test_noisy_variant_changes_the_commands():
    env = TabletopEnv('gantry', 'restore_layout', render=False)
    actions = {}
    for variant in ('expert', 'noisy'):
        env.reset(seed=1)
        expert = make_expert(env, variant, seed=1)
        actions[variant] = np.array([env.step(expert.act()[0]) is not None and expert._action() for _ in range(20)])
    assert np.abs(actions['expert'] - actions['noisy'])[:, :3].max() > 0.003


def test_recover_variant_is_pushed_off_course_and_still_succeeds():
    env = TabletopEnv('gantry', 'ordered_place', render=False)
    env.reset(seed=3)
    expert = make_expert(env, 'recover', seed=3)
    setpoints, pushes = [], 0
    while expert.subtask is not None and not env.timed_out():
        before = expert.setpoint.copy()
        env.step(expert.act()[0])
        step = np.linalg.norm(expert.setpoint - before)
        pushes += step > 1.5 * expert.NOMINAL_SPEED * expert.dt   # faster than the expert ever moves: a push
        setpoints.append(expert.setpoint.copy())
    assert pushes >= 2 and env.success()
    assert variant_metadata('recover')['quality'] < 5


@pytest.mark.parametrize('embodiment', ['arm7', 'gantry'])
def test_dart_variant_disturbs_the_execution_not_the_commands(embodiment):
    """dart: the robot runs off the expert's path by a few cm while the recorded commands stay the clean expert's
    (the same as the plain expert's wherever the tool is: relative to the state they point back to the path);
    no offset while the gripper closes or opens, and the task still succeeds."""
    env = TabletopEnv(embodiment, 'ordered_place', render=False)
    env.reset(seed=5)
    expert = make_expert(env, 'dart', seed=5)
    offsets, tool_errors, hold_offsets = [], [], []
    while not env.timed_out() and not (expert.subtask is None and env.success()):
        action, _ = expert.act()
        executed = expert.executed_action(action)
        if embodiment == 'gantry':   # the command is the expert's tool setpoint; the executed one is moved off it
            clean = expert.setpoint.copy()
            clean[2] = max(clean[2], BLOCK_HALF)
            assert np.allclose(action[:3], clean)
            offsets.append(np.linalg.norm(executed[:2] - action[:2]))
        else:
            offsets.append(np.linalg.norm(executed[:7] - action[:7]))
        if expert.waypoints and expert.waypoints[0].hold_s > 0:
            hold_offsets.append(np.abs(executed - action).max())
        env.set_target(executed)
        env.advance(env.control_period)
        tool_errors.append(np.linalg.norm(env.tcp_pose()[0][:2] - expert.setpoint[:2]))
    assert env.success()
    assert np.percentile(offsets, 90) > (0.02 if embodiment == 'gantry' else 0.01)
    assert np.percentile(tool_errors, 90) > 0.015       # the robot really is off the expert's path
    assert hold_offsets and max(hold_offsets) == 0.0   # grasps and releases are the expert's own
    assert variant_metadata('dart') == {**variant_metadata('expert'), 'variant': 'dart'}
    plain = make_expert(env, 'expert', seed=5)
    assert np.array_equal(plain.executed_action(np.ones(3)), np.ones(3))   # other variants execute what they say


def _finish(env, expert) -> dict:
    while not env.timed_out() and not (expert.subtask is None and env.success()):
        env.set_target(expert.act()[0])
        env.advance(env.control_period)
    return {'success': env.success(), 'progress': env.progress()}


@pytest.mark.parametrize('embodiment', ['arm7', 'gantry'])
def test_expert_takes_over_mid_task_holding_the_block(embodiment):
    """DAgger labels: a new expert that takes over while the first block is held goes on with its placement
    (it does not let go and start again) and finishes the task."""
    env = TabletopEnv(embodiment, 'ordered_place', render=False)
    env.reset(seed=11)
    first = make_expert(env, 'expert', seed=11)
    while first.index < 1 and not env.timed_out():
        env.set_target(first.act()[0])
        env.advance(env.control_period)
    held = first.spec.subtasks[0].obj
    assert env.block_grasped(held)
    expert = make_expert(env, 'expert', seed=0)
    expert.take_over()
    assert expert.index == 1 and expert.subtask.kind == 'place' and expert.gripper == 1.0
    assert _finish(env, expert)['success']


def test_expert_takes_over_from_a_lost_policy():
    """A policy left the gantry's tool low, off to the side and closed on nothing: the expert climbs first
    (opening the gripper), then picks and places as usual."""
    env = TabletopEnv('gantry', 'ordered_place', render=False)
    env.reset(seed=12)
    tcp, yaw = env.tcp_pose()
    env.set_target(np.array([0.15, 0.0, 0.05, yaw, 1.0]))
    env.advance(2.0)
    expert = make_expert(env, 'expert', seed=0)
    expert.take_over()
    assert expert.index == 0 and expert.waypoints[0].position[2] > env.tcp_pose()[0][2] + 0.03
    assert expert.waypoints[0].gripper == 0.0
    assert _finish(env, expert)['success']
