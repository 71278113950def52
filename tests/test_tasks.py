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


# Random full-range PD targets on the 2D running model take ~0.3 s a step (stiff springs
# thrown around: the integrator's steps shrink), a minute for this test: slow. Its
# default-suite coverage is test_actuation's reference-as-target run on the same task.
SLOW_UNDER_RANDOM_ACTIONS = {"TorqueRunningImitation2D-v0"}


@pytest.mark.parametrize("task", [
    pytest.param(t, marks=pytest.mark.slow) if t in SLOW_UNDER_RANDOM_ACTIONS else t
    for t in SHIPPED])
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


@pytest.mark.parametrize("task", [t for t in SHIPPED
                                  if "Walking" in t or "LockedKnee" in t or "Palsy" in t])
def test_reference_state_initialisation_on_the_ground(task):
    """The reference state at the test-mode start (the reference's first frame: right
    heel strike, where double support begins) has both feet on the ground and a
    vertical GRF of body weight within 30%: the reference sits on the model's ground.
    (Muscle tasks start settled, 2 ms later in physics: ``test_env.py``.)

    Other double-support frames of a dynamic gait legitimately carry 0.5-1.6 body
    weights (weight acceptance, unloading before the other heel strike), so the
    check is made where every evaluation episode starts."""
    env = gym.make(task, mode="test", start_settle=0).unwrapped
    env.reset(seed=0)
    sim = env.sim
    vertical = sim.buf[sim.layout.slice("grf")].reshape(-1, 6)[:, 1] / sim.body_weight
    feet = {side: sum(v for name, v in zip(sim.contact_names, vertical) if name.endswith(side))
            for side in ("_r", "_l")}
    print(f"{task}: vertical GRF at the test-mode reset = {sum(feet.values()):.2f} BW "
          f"(right {feet['_r']:.2f}, left {feet['_l']:.2f})")
    assert 0.7 <= sum(feet.values()) <= 1.3
    if min(feet.values()) > 0.01:             # both feet on the ground (the heel just struck)
        return
    # a heel that has just struck may carry next to nothing at the first frame (the
    # locked-knee gaits' right heel: 0.00 BW): it must carry load by the second or third
    loads = [sim.contact_loads(sim.posed_state(*env.reference.coordinates_at(k)))[:, 1]
             / sim.body_weight for k in (1, 2)]
    later = [min(sum(v for name, v in zip(sim.contact_names, load) if name.endswith(side))
                 for side in ("_r", "_l")) for load in loads]
    assert max(later) > 0.01, later


@pytest.mark.parametrize("task", MISSING)
def test_task_without_generated_reference_says_how_to_generate_it(task):
    with pytest.raises(ValueError, match="python -m refgen generate"):
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
