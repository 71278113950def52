"""Micro-benchmarks (pytest-benchmark): each kernel, compiled and NumPy twin, at the
sizes of a 16-env batch of MuscleWalkingImitation2D-v0 / TorqueWalkingImitation2D-v0,
and the per-step cost of an env step outside ``Manager.integrate``.

    pytest bench/test_micro.py --benchmark-enable [--benchmark-json=out.json]

(The default test run collects ``tests/`` only; ``tests/test_benchmark.py`` runs this
file once with benchmarks disabled, so it cannot rot.)
"""
import numpy as np
import pytest

from fastenv import kernels as K
from fastenv import metabolic as M

ENVS = 16
N_OBS = 131        # MuscleWalkingImitation2D-v0 observation size
N_BUF = 400        # flat simulation buffer entries gathered from
N_COORD = 9        # gait9dof18musc coordinates
N_MUSCLE = 18
N_TORQUE = 6       # TorqueWalkingImitation2D-v0 actuated joints
HORIZON = 5

rng = np.random.default_rng(0)


def _a(*shape, scale=1.0):
    return np.ascontiguousarray(rng.normal(size=shape) * scale)


@pytest.fixture(scope="module")
def gather():
    buf = _a(ENVS, N_BUF, scale=10)
    src = rng.integers(0, N_BUF, N_OBS).astype(np.intp)
    ref = rng.integers(0, N_BUF, N_OBS).astype(np.intp)
    return buf, src, ref, _a(N_OBS)


@pytest.mark.benchmark(group="gather_observation")
def test_gather_observation_compiled(benchmark, gather):
    out = np.empty((ENVS, N_OBS), np.float32)
    benchmark(K.gather_observation, *gather, out)


@pytest.mark.benchmark(group="gather_observation")
def test_gather_observation_numpy(benchmark, gather):
    benchmark(K.gather_observation_numpy, *gather)


@pytest.mark.benchmark(group="smooth_action")
def test_smooth_action_compiled(benchmark):
    hist, count = np.zeros((ENVS, HORIZON, N_MUSCLE)), np.full(ENVS, 7, np.intp)
    a, out = _a(ENVS, N_MUSCLE), np.empty((ENVS, N_MUSCLE))
    benchmark(K.smooth_action, hist, count, a, out)


@pytest.mark.benchmark(group="smooth_action")
def test_smooth_action_numpy(benchmark):
    hist, count = np.zeros((ENVS, HORIZON, N_MUSCLE)), np.full(ENVS, 7, np.intp)
    benchmark(K.smooth_action_numpy, hist, count, _a(ENVS, N_MUSCLE))


def _pd_args():
    lower, upper = -np.ones(N_TORQUE), np.ones(N_TORQUE)
    return (np.clip(_a(ENVS, N_TORQUE), -1, 1), lower, upper, _a(ENVS, N_TORQUE),
            _a(ENVS, N_TORQUE), np.abs(_a(N_TORQUE, scale=100)),
            np.abs(_a(N_TORQUE, scale=10)), 200.0)


@pytest.mark.benchmark(group="pd_control")
def test_pd_control_compiled(benchmark):
    torque, target = np.empty((ENVS, N_TORQUE)), np.empty((ENVS, N_TORQUE))
    benchmark(K.pd_control, *_pd_args(), torque, target)


@pytest.mark.benchmark(group="pd_control")
def test_pd_control_numpy(benchmark):
    benchmark(K.pd_control_numpy, *_pd_args())


def _reward_args():
    return (_a(ENVS, N_COORD), _a(ENVS, N_COORD), _a(ENVS, 2), _a(ENVS, 2),
            _a(ENVS, N_MUSCLE), _a(ENVS, N_MUSCLE), np.abs(_a(ENVS)), 0.8, 0.2, 0.1)


@pytest.mark.benchmark(group="imitation_reward")
def test_imitation_reward_compiled(benchmark):
    terms = np.empty((ENVS, len(K.REWARD_TERMS)))
    benchmark(K.imitation_reward, *_reward_args(), terms)


@pytest.mark.benchmark(group="imitation_reward")
def test_imitation_reward_numpy(benchmark):
    benchmark(K.imitation_reward_numpy, *_reward_args())


def _tracking_args():
    return (_a(ENVS, N_COORD), _a(ENVS, N_COORD), _a(ENVS, N_COORD), _a(ENVS, N_COORD),
            _a(ENVS, 2), _a(ENVS, 2), _a(ENVS, 2), _a(ENVS, 2), _a(ENVS, N_MUSCLE),
            _a(ENVS, N_MUSCLE), np.abs(_a(ENVS)), 0.8, 0.2, 0.1)


@pytest.mark.benchmark(group="tracking_reward")
def test_tracking_reward_compiled(benchmark):
    terms = np.empty((ENVS, len(K.TRACKING_REWARD_TERMS)))
    benchmark(K.tracking_reward, *_tracking_args(), terms)


@pytest.mark.benchmark(group="tracking_reward")
def test_tracking_reward_numpy(benchmark):
    benchmark(K.tracking_reward_numpy, *_tracking_args())


@pytest.mark.benchmark(group="torque_cost")
def test_torque_cost_compiled(benchmark):
    torque, out = _a(ENVS, N_TORQUE, scale=100), np.empty(ENVS)
    benchmark(K.torque_cost, torque, 200.0, out)


@pytest.mark.benchmark(group="torque_cost")
def test_torque_cost_numpy(benchmark):
    benchmark(K.torque_cost_numpy, _a(ENVS, N_TORQUE, scale=100), 200.0)


def _metabolic_args():
    pos = lambda *s: np.abs(_a(*s)) + 0.01  # noqa: E731
    rows = (np.clip(pos(ENVS, N_MUSCLE), 0, 1), np.clip(pos(ENVS, N_MUSCLE), 0, 1),
            pos(ENVS, N_MUSCLE) * 0.1, _a(ENVS, N_MUSCLE) * 0.1,
            pos(ENVS, N_MUSCLE) * 500, np.clip(pos(ENVS, N_MUSCLE), 0, 1))
    return (*rows, pos(N_MUSCLE) * 0.1, np.full(N_MUSCLE, 10.0), pos(N_MUSCLE),
            np.full(N_MUSCLE, 0.5), 80.0)


@pytest.mark.benchmark(group="metabolic_rate")
def test_metabolic_rate_compiled(benchmark):
    benchmark(K.metabolic_rate, *_metabolic_args(), np.empty(ENVS))


@pytest.mark.benchmark(group="metabolic_rate")
def test_metabolic_rate_numpy(benchmark):
    benchmark(M.metabolic_rate_numpy, *_metabolic_args())


# ----------------------------------------------------------- per-step overhead
class _NoIntegrate:
    """Stands in for the Manager: advances time and realizes the state as the
    integrator leaves it (accelerations), so that what is timed is everything of an
    env step except the integration itself."""

    def __init__(self, sim):
        self.sim = sim
        self.manager = sim._manager   # sim.state lives in the Manager: keep it alive

    def integrate(self, t):
        state = self.sim.state
        state.setTime(t)
        self.sim.model.realizeAcceleration(state)
        return state


@pytest.fixture(params=["MuscleWalkingImitation2D-v0", "TorqueWalkingImitation2D-v0"])
def env(request):
    from fastenv.env import ImitationEnv

    e = ImitationEnv(request.param)
    e.reset(seed=0)
    e.build_start_states()   # so that resets time the restore, not a start state's build
    return e


@pytest.mark.benchmark(group="env_step")
def test_env_step_outside_integrate(benchmark, env):
    """Everything of ``env.step`` but ``Manager.integrate`` (compare with a full step)."""
    env.sim._manager = _NoIntegrate(env.sim)
    action = env.action_space.sample()
    benchmark(env.step, action)


@pytest.mark.benchmark(group="env_step")
def test_env_step_full(benchmark, env):
    """A whole env step in a random-action rollout (resets after falls included)."""
    env.action_space.seed(0)

    def step():
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    benchmark(step)


@pytest.mark.benchmark(group="env_step")
def test_env_first_step_after_reset(benchmark, env):
    """The first step after a reset (the rest of what a reset costs). It no longer
    pays the muscle models' start transient (settled start states,
    ``bench/first_step.py``); a fresh integrator itself costs no extra steps."""
    action = env.action_space.sample()

    def step():
        env.step(action)

    def restart():
        env.reset()

    benchmark.pedantic(step, setup=restart, rounds=30, iterations=1)


@pytest.mark.benchmark(group="env_step")
def test_env_autoreset(benchmark, env):
    """A reset to a random reference frame from its snapshot (what an autoreset costs)."""
    benchmark(env.reset)
