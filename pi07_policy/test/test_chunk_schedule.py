"""The executor's decisions without ROS: chunk selection by time, limits, hold, stop."""
import numpy as np
import pytest

from pi07_policy.control.chunk_schedule import ChunkError, ChunkExecutorCore, ExecutorState, Limits, make_chunk

DT = 0.1


def limits(dim=2, vmax=10.0):
    return Limits.from_lists([-1.0] * dim, [1.0] * dim, [vmax] * dim)


def ramp_chunk(start, value0, slope, horizon=10, sequence=0, dim=2):
    rows = [[value0 + slope * k * DT] * dim for k in range(horizon)]
    return make_chunk(start, DT, np.ravel(rows), horizon, dim, dim, sequence=sequence)


def test_make_chunk_rejects_bad_chunks():
    with pytest.raises(ChunkError, match='action_dim 3'):
        make_chunk(0.0, DT, [0.0] * 6, 2, 3, expected_dim=2)
    with pytest.raises(ChunkError, match='NaN'):
        make_chunk(0.0, DT, [0.0, float('nan')], 1, 2, expected_dim=2)
    with pytest.raises(ChunkError, match='values'):
        make_chunk(0.0, DT, [0.0] * 5, 3, 2, expected_dim=2)
    with pytest.raises(ChunkError, match='dt'):
        make_chunk(0.0, 0.0, [0.0] * 2, 1, 2, expected_dim=2)


def test_interpolates_by_time_and_switches_to_newest_covering_chunk():
    core = ChunkExecutorCore(limits(), control_dt=DT / 2)
    core.activate()
    assert core.tick(0.0).state is ExecutorState.WAITING
    core.add_chunk(ramp_chunk(0.0, 0.0, 1.0, sequence=1), now=0.0)
    result = core.tick(0.25)  # between rows 2 and 3
    assert result.state is ExecutorState.RUNNING and result.chunk_sequence == 1
    np.testing.assert_allclose(result.command, [0.25, 0.25])
    # A newer chunk that starts later is used only once it covers now.
    core.add_chunk(ramp_chunk(0.5, 0.5, 1.0, sequence=2), now=0.3)
    assert core.tick(0.4).chunk_sequence == 1
    assert core.tick(0.5).chunk_sequence == 2
    assert core.switches == 1
    # An older sequence arriving late is ignored.
    assert not core.add_chunk(ramp_chunk(0.5, 0.0, 0.0, sequence=1), now=0.5)


def test_limits_clamp_position_and_velocity():
    core = ChunkExecutorCore(limits(vmax=1.0), control_dt=DT)
    core.activate()
    core.add_chunk(make_chunk(0.0, DT, [5.0, -5.0] * 10, 10, 2, 2), now=0.0)
    first = core.tick(0.0)
    np.testing.assert_allclose(first.command, [1.0, -1.0])  # position bounds
    core.add_chunk(make_chunk(0.1, DT, [-1.0, 1.0] * 10, 10, 2, 2, sequence=1), now=0.1)
    second = core.tick(0.1)
    assert second.clamped
    np.testing.assert_allclose(second.command, [0.9, -0.9])  # at most velocity_max * dt per tick


def test_holds_when_stale_then_stops():
    core = ChunkExecutorCore(limits(), control_dt=DT, stop_after_s=0.5)
    core.activate()
    core.add_chunk(ramp_chunk(0.0, 0.0, 1.0, horizon=5), now=0.0)
    last = core.tick(0.4).command
    hold = core.tick(0.6)
    assert hold.state is ExecutorState.HOLDING
    np.testing.assert_allclose(hold.command, last)
    assert core.tick(1.0).state is ExecutorState.HOLDING
    stopped = core.tick(1.2)
    assert stopped.state is ExecutorState.STOPPED and 'no fresh chunk' in stopped.reason
    assert core.tick(1.3).command is None  # nothing more is commanded
    core.resume()
    assert core.tick(1.35).command is None  # resumed: waits for a chunk, never re-sends the old target
    core.add_chunk(ramp_chunk(1.4, 0.3, 0.0, sequence=5), now=1.4)
    assert core.tick(1.4).state is ExecutorState.RUNNING


def test_stop_commands_measured_position_once_then_nothing():
    core = ChunkExecutorCore(limits(), control_dt=DT)
    core.activate()
    core.add_chunk(ramp_chunk(0.0, 0.0, 1.0), now=0.0)
    core.tick(0.2)
    core.stop('stop topic', current_position=np.array([0.15, 0.15]))
    final = core.tick(0.3)
    assert final.state is ExecutorState.STOPPED
    np.testing.assert_allclose(final.command, [0.15, 0.15])
    assert core.tick(0.4).command is None
    # chunks are not accepted into motion while stopped
    core.add_chunk(ramp_chunk(0.4, 0.0, 1.0, sequence=9), now=0.4)
    assert core.tick(0.5).command is None


def test_inactive_commands_nothing():
    core = ChunkExecutorCore(limits(), control_dt=DT)
    core.add_chunk(ramp_chunk(0.0, 0.0, 1.0), now=0.0)
    assert core.tick(0.1).command is None
    core.activate()
    core.add_chunk(ramp_chunk(0.0, 0.0, 1.0, sequence=1), now=0.0)
    assert core.tick(0.1).command is not None
    core.deactivate()
    assert core.tick(0.2).command is None


def test_rtc_request_snaps_to_previous_grid_and_freezes_delay():
    from pi07_policy.control.rtc_planner import LatencyEstimator, PublishedChunk, plan_request

    prev = PublishedChunk(10.0, DT, np.arange(20, dtype=float)[:, None] * np.ones((1, 2)))
    request = plan_request(prev, t_obs=10.52, dt=DT, expected_delay_s=0.25, execution_horizon=8)
    assert request.start_time == pytest.approx(10.5)
    # it arrives 2.7 rows in (0.02 + 0.25 s), where the executor interpolates rows 2 and 3: rows 0..3 frozen
    assert request.delay_steps == 4
    # no delay: the row in progress at t_obs and the next
    assert plan_request(prev, t_obs=10.52, dt=DT, expected_delay_s=0.0, execution_horizon=8).delay_steps == 2
    np.testing.assert_allclose(request.prev_actions[0], [5.0, 5.0])
    assert request.execution_horizon == 8
    # nothing to join: from scratch
    assert plan_request(prev, t_obs=13.0, dt=DT, expected_delay_s=0.2, execution_horizon=8).prev_actions is None
    assert plan_request(None, t_obs=1.0, dt=DT, expected_delay_s=0.2, execution_horizon=8).delay_steps == 0
    estimator = LatencyEstimator(skip=1, window=3, initial_s=0.05)
    assert estimator.estimate() == 0.05
    for latency in (5.0, 0.1, 0.12, 0.11, 0.09):  # the 5 s cold start is left out
        estimator.add(latency)
    assert estimator.estimate() == pytest.approx(0.12)
