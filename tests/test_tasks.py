"""The task suite: every registered ID steps on its real model and reference."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import fastenv  # noqa: F401
from fastenv.envs import TASKS
from fastenv.references import REFERENCE_DIR

SHIPPED = sorted(t for t, spec in TASKS.items()
                 if (REFERENCE_DIR / f"{spec.reference}.npz").exists())
MISSING = sorted(set(TASKS) - set(SHIPPED))


def test_all_seventeen_ids_are_registered():
    assert len(TASKS) == 17
    for task in TASKS:
        assert task in gym.registry


@pytest.mark.parametrize("task", SHIPPED)
def test_task_checks_and_steps(task):
    env = gym.make(task)
    check_env(env.unwrapped, skip_render_check=True)
    _random_steps(env, 200)


def _random_steps(env, n):
    """n random-action steps with autoreset; every observation and reward finite."""
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(n):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward)
        if term or trunc:
            env.reset()
    env.close()


def _double_support_frame(env):
    """The frame of the reference's first double-support phase where the two feet share
    the load most evenly (static contact forces): the weight-transfer instant. Later in
    double support the loading response legitimately exceeds body weight (the walking
    reference peaks at about 1.5 BW there)."""
    sim, ref = env.sim, env.reference
    feet = []
    for k in range(ref.n_frames):
        s = sim.state_from_coordinates(*ref.coordinates_at(k), equilibrate=False)
        sim.model.realizeDynamics(s)
        feet.append([sum(f.getRecordValues(s).get(int(i)) for i in idx[:, 1])
                     for f, idx in zip(sim.contact_forces, sim._contact_idx)])
    feet = np.array(feet) / sim.body_weight
    both = feet.min(axis=1) > 0.1
    assert both.any(), "the reference has no double support"
    start = int(np.argmax(both))
    end = start + int(np.argmax(~both[start:])) if (~both[start:]).any() else len(both)
    share = np.abs(feet[start:end, 0] - feet[start:end, 1])
    return start + int(np.argmin(share))


@pytest.mark.parametrize("task", [t for t in SHIPPED
                                  if "Walking" in t or "LockedKnee" in t or "Palsy" in t])
def test_reference_state_initialisation_on_the_ground(task):
    env = gym.make(task).unwrapped
    k = _double_support_frame(env)
    env.reset(seed=0, options={"start_frame": k})
    sim = env.sim
    vgrf = sim.buf[sim.layout.slice("grf")].reshape(-1, 6)[:, 1].sum() / sim.body_weight
    print(f"{task}: vertical GRF at reset (frame {k}, double support) = {vgrf:.2f} BW")
    assert 0.7 <= vgrf <= 1.3


@pytest.mark.parametrize("task", MISSING)
def test_task_without_generated_reference_says_how_to_generate_it(task):
    with pytest.raises(ValueError, match="python -m fastenv.references generate"):
        gym.make(task)


def test_palsy_task_with_user_crouch_gait_reference():
    """A user's IK file as the reference: the public crouch-gait trial (gait2392 names;
    no pelvis_tx, its lumbar columns absent from the model, both reported)."""
    import warnings

    from conftest import shared_motion
    path = shared_motion("tutorial_gait2392_crouch2.mot")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make("MusclePalsyImitation3D-v0", reference=str(path))
    text = " ".join(str(w.message) for w in caught)
    assert "lumbar_bending" in text and "pelvis_tx" in text
    check_env(env.unwrapped, skip_render_check=True)
    ref = env.unwrapped.reference
    assert ref.n_frames > 50 and np.isfinite(ref.q).all()
    _random_steps(env, 100)
