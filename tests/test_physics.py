"""Physics settings: the presets' minimum step reaches the integrator, bad values are
one-line errors."""
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
    """The fast preset's minimum step (1.25 ms for muscles) is used: its run differs
    from the same integrator and accuracy without a minimum, and stays close to it."""
    runs = []
    for min_step in (0.0, None):
        env = ImitationEnv(TASK, physics="fast", min_step=min_step, mode="test")
        assert env.sim.min_step == (1.25e-3 if min_step is None else 0.0)
        env.reset(seed=0)
        for _ in range(10):
            env.step(np.full(env.action_space.shape, 0.2, np.float32))
        runs.append(env.sim.buf[env.sim.layout.slice("q")].copy())
    diff = np.abs(runs[0] - runs[1]).max()
    assert 0 < diff < np.radians(2)
