"""Physics settings: the presets' minimum step reaches the integrator, bad values are
one-line errors."""
import math

import numpy as np
import pytest

from fastenv.env import ImitationEnv
from fastenv.envs import TASKS, resolve_options
from fastenv.sim import Simulation

TASK = "MuscleWalkingImitation2D-v0"


@pytest.mark.parametrize("value", [-1e-3, 0.01, "1ms", True])
def test_bad_min_step_is_a_one_line_error(value):
    with pytest.raises(ValueError, match=r"min_step must be .* got " + repr(value)[:3]):
        resolve_options(task=TASKS[TASK], min_step=value)


def test_simulation_checks_min_step(muscle2d_path):
    with pytest.raises(ValueError, match=r"min_step must be .*got 0\.02"):
        Simulation(muscle2d_path, min_step=0.02)


def test_explicit_min_step_wins_over_the_preset():
    opts = resolve_options(task=TASKS[TASK], physics="fast", min_step=0.0)
    assert (opts["accuracy"], opts["min_step"]) == (1e-2, 0.0)


def test_min_step_changes_the_integration():
    """The fast preset's minimum step (1.5 ms for muscles) is used: its run differs
    from the same integrator and accuracy without a minimum, and stays close to it."""
    runs = []
    for min_step in (0.0, None):
        env = ImitationEnv(TASK, physics="fast", min_step=min_step, mode="test")
        assert env.sim.min_step == (1.5e-3 if min_step is None else 0.0)
        env.reset(seed=0)
        for _ in range(10):
            env.step(np.full(env.action_space.shape, 0.2, np.float32))
        runs.append(env.sim.buf[env.sim.layout.slice("q")].copy())
    diff = np.abs(runs[0] - runs[1]).max()
    assert 0 < diff < np.radians(2)


class _Diverging:
    """Stands in for the Manager of one control step: fails like a diverged integration."""

    def integrate(self, t):
        raise RuntimeError("diverged")


def _stepped_from_start(min_step, diverge, start=None):
    """One step of 0.2 excitations after a test reset (from ``start``, a snapshot, if
    given: a settled start depends on the minimum step it was settled with)."""
    env = ImitationEnv(TASK, physics="fast", min_step=min_step, mode="test")
    env.reset(seed=0)
    if start is not None:
        env.sim.restore(start)
    if diverge:   # the real Manager owns sim.state: kept alive beside the stand-in
        env.kept_manager, env.sim._manager = env.sim._manager, _Diverging()
    _, _, terminated, truncated, info = env.step(np.full(env.action_space.shape, 0.2,
                                                         np.float32))
    return env, info, truncated


def test_a_diverged_step_is_integrated_again_without_the_minimum_step():
    """The retry starts where the step started and runs the step as an integrator
    without the minimum does, flagged, not truncated; the minimum stays off for the
    episode and is back after the reset."""
    env = ImitationEnv(TASK, physics="fast", min_step=1.5e-3, mode="test")
    env.reset(seed=0)
    start = env.sim.snapshot()
    retried, info, truncated = _stepped_from_start(1.5e-3, diverge=True)
    plain, plain_info, _ = _stepped_from_start(0.0, diverge=False, start=start)
    assert info["integrator_retry"] and not plain_info["integrator_retry"]
    assert not truncated and "sim_error" not in info
    assert retried.sim.retried_steps == 1
    np.testing.assert_allclose(retried.sim.buf, plain.sim.buf, rtol=1e-12, atol=1e-12)
    assert not retried.sim._min_step_on
    retried.reset(seed=0)
    assert retried.sim._min_step_on and retried.sim.retried_steps == 1


def test_without_a_minimum_step_a_failure_still_truncates():
    env, info, truncated = _stepped_from_start(0.0, diverge=True)
    assert truncated and "diverged" in info["sim_error"] and not info["integrator_retry"]
    assert env.sim.retried_steps == 0


def test_a_moved_episode_keeps_its_minimum_step_off(muscle2d_path):
    """recycle_every moves episodes between processes with export/import_state: one
    that diverged at the minimum step goes on without it there too."""
    sims = [Simulation(muscle2d_path, accuracy=1e-2, min_step=1.5e-3) for _ in range(3)]
    sims[0]._min_step_on = False    # as after a retried step
    sims[1].import_state(sims[0].export_state())
    sims[2].import_state(Simulation.export_state(sims[2]))
    assert not sims[1]._min_step_on and sims[2]._min_step_on
    sims[1].step()
    assert np.isfinite(sims[1].buf).all()


def test_an_acceleration_beyond_the_bound_at_the_minimum_step_is_integrated_again(
        muscle2d_path):
    """Fully excited muscles with the 1.5-ms minimum step: the step that swings a foot
    beyond the task's acceleration bound is integrated again without the minimum (the
    acceleration was the minimum step's, not the model's), so the episode goes on;
    without a bound (``Simulation``'s default) nothing is checked."""
    def episode(bounded):
        env = ImitationEnv(TASK, physics="fast", mode="test")
        assert env.sim.max_acceleration == env.spec_task.max_acceleration == 1e4
        if not bounded:
            env.sim.max_acceleration = math.inf
        env.reset(seed=0)
        for step in range(1, 101):  # noqa: B007 (the step it ended at)
            _, _, terminated, truncated, info = env.step(np.ones(env.n_actions, np.float32))
            if terminated or truncated:
                break
        return step, env.termination_causes(), env.sim.retried_steps

    steps, causes, retried = episode(bounded=False)
    assert steps < 30 and causes["acceleration"] and retried == 0, (steps, causes)
    steps, causes, retried = episode(bounded=True)
    assert steps > 50 and not causes["acceleration"] and retried == 1, (steps, causes, retried)
    with pytest.raises(ValueError, match="max_acceleration must be a positive number"):
        Simulation(muscle2d_path, max_acceleration=0)


def test_the_minimum_step_comes_back_after_a_hold_that_doubles(muscle2d_path):
    """After a retry the minimum stays off for MIN_STEP_HOLD, then comes back; a second
    retry in the episode keeps it off twice as long; a restore starts afresh."""
    from fastenv.sim.simulation import MIN_STEP_HOLD
    sim = Simulation(muscle2d_path, accuracy=1e-2, min_step=1.5e-3)
    hold_steps = round(MIN_STEP_HOLD / sim.control_dt)

    def diverge_once():
        kept, sim._manager = sim._manager, _Diverging()
        sim.step()
        del kept
        assert sim.last_step_retried

    for retry, hold in ((1, hold_steps), (2, 2 * hold_steps)):
        diverge_once()
        assert sim.retried_steps == retry
        for _ in range(hold):
            assert not sim._min_step_on
            sim.step()
        sim.step()
        assert sim._min_step_on, retry
    moved = Simulation(muscle2d_path, accuracy=1e-2, min_step=1.5e-3)
    diverge_once()
    moved.import_state(sim.export_state())      # recycle_every: the hold goes along
    assert not moved._min_step_on and moved._episode_retries == 3
    sim.restore(sim.default_state)
    assert sim._min_step_on and sim._min_step_back_at is None and sim._episode_retries == 0
