"""Actuation: muscle excitations and PD targets behind one interface."""
import dataclasses

import numpy as np
import pytest

import fastenv  # noqa: F401  (registers the tasks)
from fastenv import kernels, metabolic
from fastenv.actuation import MuscleActuation, PDActuation, make_actuation
from fastenv.env import ImitationEnv
from fastenv.envs import TASKS

MUSCLE, TORQUE = "MuscleWalkingImitation2D-v0", "TorqueWalkingImitation2D-v0"


@pytest.fixture(scope="module")
def muscle_env():
    e = ImitationEnv(MUSCLE)
    yield e
    e.close()


@pytest.fixture(scope="module")
def torque_env():
    e = ImitationEnv(TORQUE)
    yield e
    e.close()


def test_env_picks_the_task_actuation(muscle_env, torque_env):
    for env, cls, low in ((muscle_env, MuscleActuation, 0.0), (torque_env, PDActuation, -1.0)):
        act = env.actuation
        assert type(act) is cls
        assert env.action_space is act.action_space
        assert env.n_actions == act.n_actions == env.sim.n_controls
        assert (act.action_space.low == low).all() and (act.action_space.high == 1.0).all()


def test_unknown_actuation_is_refused(torque_env):
    spec = dataclasses.replace(TASKS[TORQUE], actuation="hydraulic")
    with pytest.raises(ValueError, match="unknown actuation 'hydraulic'"):
        make_actuation(torque_env.sim, spec, torque_env.options)


def test_muscle_actions_are_the_excitations(muscle_env):
    smoothed = np.linspace(0.0, 1.0, muscle_env.n_actions)[None, :]
    np.testing.assert_array_equal(muscle_env.actuation.controls(smoothed), smoothed[0])


def test_muscle_effort_is_the_metabolic_cost_of_transport(muscle_env):
    env = muscle_env
    env.reset(seed=0)
    env.action_space.seed(0)
    _, _, _, _, info = env.step(env.action_space.sample())
    sim, b, L = env.sim, env.sim.buf, env.sim.layout
    c = env.actuation.muscle_constants
    rows = [b[L.slice(k)][None, :] for k in ("excitation", "activation", "fiber_length",
                                             "fiber_velocity", "active_fiber_force",
                                             "active_fl_multiplier")]
    power, _ = metabolic.metabolic_rate_numpy(*rows, c.opt_fiber_length,
                                              c.max_contraction_velocity, c.muscle_mass,
                                              c.slow_twitch_ratio, c.basal_rate_W)
    speed = max(b[L.slice("com_vel")][env.spec_task.progress_axis], 0.1)
    assert info["effort_cost"] == env.actuation.effort_cost()
    assert info["effort_cost"] == power[0] / (sim.body_weight * speed)


def test_pd_targets_span_the_coordinate_range(torque_env):
    act = torque_env.actuation
    n = act.n_actions
    for a, bound in ((-1.0, act.lower), (1.0, act.upper)):
        act.controls(np.full((1, n), a))
        np.testing.assert_allclose(act.target[0], bound, rtol=1e-15, atol=1e-15)
    cn = torque_env.sim.coordinate_names
    np.testing.assert_array_equal(act.lower, torque_env.sim.coordinate_range[
        [cn.index(a) for a in torque_env.sim.actuator_names], 0])


def test_pd_controls_are_normalised_torques(torque_env):
    env = torque_env
    env.reset(seed=1)
    act = env.actuation
    rng = np.random.default_rng(0)
    smoothed = rng.uniform(-1, 1, (1, act.n_actions))
    controls = act.controls(smoothed)
    b, L = env.sim.buf, env.sim.layout
    torque, target = kernels.pd_control_numpy(
        smoothed, act.lower, act.upper, b[L.slice("q")][act.coordinates][None, :],
        b[L.slice("qdot")][act.coordinates][None, :], act.kp, act.kd, 200.0)
    np.testing.assert_array_equal(act.torque, torque)
    np.testing.assert_array_equal(act.target, target)
    np.testing.assert_array_equal(controls, torque[0] / 200.0)
    np.testing.assert_array_equal(act.effort_cost(), kernels.torque_cost_numpy(torque, 200.0)[0])


def test_env_step_sends_the_pd_torques_and_prices_them(torque_env):
    env = torque_env
    env.reset(seed=2)
    env.action_space.seed(2)
    _, _, _, _, info = env.step(env.action_space.sample())
    act, L = env.actuation, env.sim.layout
    np.testing.assert_array_equal(env.sim.buf[L.slice("controls")], act.torque[0] / 200.0)
    assert info["effort_cost"] == act.effort_cost()


def test_default_pd_gains_are_critically_damped_at_the_bandwidth(torque_env):
    act = torque_env.actuation
    w = 2 * np.pi * 3.0
    inertia = torque_env.sim.joint_inertia()[act.coordinates]
    np.testing.assert_array_equal(act.kp, w * w * inertia)
    np.testing.assert_array_equal(act.kd, 2 * w * inertia)


def test_pd_gain_options(torque_env):
    sim, spec = torque_env.sim, TASKS[TORQUE]
    n = sim.n_controls
    opts = {**torque_env.options, "kp": 300.0, "kd": list(range(n)), "max_actuation": 150.0}
    act = PDActuation(sim, spec, opts)
    np.testing.assert_array_equal(act.kp, np.full(n, 300.0))
    np.testing.assert_array_equal(act.kd, np.arange(n, dtype=float))
    assert act.max_actuation == 150.0
    for bad in ([1.0, 2.0], -1.0, np.nan):
        with pytest.raises(ValueError, match=f"kp must be a non-negative scalar or {n} values"):
            PDActuation(sim, spec, {**opts, "kp": bad})


def test_muscle_actuation_needs_an_all_muscle_model(torque_env):
    with pytest.raises(ValueError, match="needs a model whose actuators are all muscles"):
        MuscleActuation(torque_env.sim, TASKS[MUSCLE], torque_env.options)


@pytest.mark.parametrize("task", [TORQUE, "TorqueLockedKneeImitation3D-v0"])
def test_residual_targets_centre_on_the_reference(task):
    """pd_targets="residual": a zero action asks for the reference's angle at the end of
    the step, ±1 for that angle ± residual_range, on every actuated coordinate."""
    env = ImitationEnv(task, mode="test", pd_targets="residual", residual_range=0.3,
                       horizon=1)
    act = env.actuation
    env.reset(seed=0)
    for k, a in enumerate((0.0, 1.0, -1.0, 0.5)):
        q_next, _ = env.reference.coordinates_at(k + 1)
        env.step(np.full(env.n_actions, a, np.float32))
        np.testing.assert_allclose(act.target[0], q_next[act.coordinates] + 0.3 * a,
                                   rtol=0, atol=1e-12)
    range_env = ImitationEnv(task, mode="test", horizon=1)
    range_env.reset(seed=0)
    range_env.step(np.zeros(env.n_actions, np.float32))
    ra = range_env.actuation
    np.testing.assert_allclose(ra.target[0], 0.5 * (ra.lower + ra.upper), atol=1e-12)
    with pytest.raises(ValueError, match="pd_targets must be 'range' or 'residual'"):
        ImitationEnv(task, pd_targets="relative")
    with pytest.raises(ValueError, match="residual_range must be"):
        ImitationEnv(task, pd_targets="residual", residual_range=0)
