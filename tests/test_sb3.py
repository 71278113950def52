"""The Stable-Baselines3 adapter: identical transitions to SB3's DummyVecEnv over single
envs with the same seeds, SB3's wrappers and checks, env access with indices."""
import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import (  # noqa: E402
    DummyVecEnv,
    VecCheckNan,
    VecMonitor,
    VecNormalize,
)

import fastenv  # noqa: E402,F401
from fastenv.adapters.sb3 import make_vec_env  # noqa: E402

TASK = "TorqueWalkingImitation2D-v0"
# short episodes: both time limits (truncation) and falls (termination) happen (weak,
# held PD torques under random targets fall in about 0.3 s, as in test_collect)
OPTIONS = dict(episode_seconds=0.3, pd_update="step", kp=20.0, kd=2.0)


def test_identical_to_dummy_vec_env():
    n, steps = 3, 90
    ours = make_vec_env(TASK, n, seed=7, num_workers=2, **OPTIONS)
    ref = DummyVecEnv([lambda: gym.make(TASK, **OPTIONS) for _ in range(n)])
    ref.seed(7)
    try:
        np.testing.assert_array_equal(ours.reset(), ref.reset())
        assert ours.reset_infos == ref.reset_infos
        rng = np.random.default_rng(0)
        ends = {"TimeLimit.truncated": 0, "terminated": 0}
        for _ in range(steps):
            actions = rng.uniform(-1, 1, (n, 7)).astype(np.float32) * 3  # falls too
            o1, r1, d1, i1 = ours.step(actions)
            o2, r2, d2, i2 = ref.step(actions)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(d1, d2)
            assert r1.dtype == r2.dtype and d1.dtype == d2.dtype
            for a, b in zip(i1, i2):
                assert a.keys() == b.keys()
                for key in a:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
                if "terminal_observation" in a:
                    ends["TimeLimit.truncated" if a["TimeLimit.truncated"] else "terminated"] += 1
            assert ours.reset_infos == ref.reset_infos
        assert ends["TimeLimit.truncated"] > 0 and ends["terminated"] > 0, ends
    finally:
        ours.close()
        ref.close()


def test_sb3_wrappers_and_checks():
    env = VecCheckNan(VecNormalize(VecMonitor(make_vec_env(TASK, 2, seed=0, **OPTIONS))),
                      raise_exception=True)
    try:
        obs = env.reset()
        assert obs.shape == (2, env.observation_space.shape[0])
        episodes = 0
        for _ in range(40):
            obs, rew, done, infos = env.step(np.zeros((2, 7), np.float32))
            episodes += sum("episode" in info for info in infos)
        assert episodes >= 2   # VecMonitor saw the time limits
    finally:
        env.close()


def test_env_access_with_indices():
    env = make_vec_env(TASK, 3, seed=0)
    try:
        assert env.get_attr("mode") == ["train"] * 3
        env.set_attr("mode", "test", indices=[0, 2])
        assert env.get_attr("mode") == ["test", "train", "test"]
        assert env.get_attr("mode", indices=1) == ["train"]
        assert env.env_method("get_wrapper_attr", "n_actions", indices=[1, 2]) == [7, 7]
        assert env.env_is_wrapped(Monitor) == [False] * 3
        with pytest.raises(ValueError, match="index 5 out of range for 3 envs"):
            env.get_attr("mode", indices=[5])
        assert env.get_attr("mode", indices=[-1]) == ["test"]   # from the end, as SB3's
        # every keyword goes to the method, Gymnasium's get_wrapper_attr(name=...) too
        assert env.env_method("get_wrapper_attr", name="n_actions", indices=[0]) == [7]
        assert env.render_mode is None
        # SB3's contract: a missing attribute is an AttributeError, so has_attr is False
        assert not env.has_attr("no_such_attribute") and env.has_attr("mode")
        # an attribute whose value cannot leave its worker (an OpenSim object) is there too
        assert env.has_attr("sim") and env.get_attr("mode") == ["test", "train", "test"]
        with pytest.raises(AttributeError, match="no_such_attribute"):
            env.get_attr("no_such_attribute")
    finally:
        env.close()


def test_no_indices_is_no_env_and_bad_ones_are_named():
    """SB3's VecEnvs answer ``indices=[]`` with ``[]``; the pool refused empty ids, and a
    non-int index was called "out of range"."""
    env = make_vec_env(TASK, 2, seed=0, num_workers=1)
    try:
        assert env.get_attr("mode", indices=[]) == []
        assert env.env_method("get_wrapper_attr", "n_actions", indices=[]) == []
        env.set_attr("mode", "test", indices=[])
        assert env.get_attr("mode") == ["train"] * 2
        with pytest.raises(ValueError, match="index 1.5 is not an int"):
            env.get_attr("mode", indices=[1.5])
        with pytest.raises(ValueError, match="indices must be None, an int or a list"):
            env.get_attr("mode", indices="01")
        with pytest.raises(ValueError, match=r"indices \[0, -2\] name an env more than once"):
            env.get_attr("mode", indices=[0, -2])
    finally:
        env.close()


def test_reset_cancels_a_step_in_flight():
    """SB3's ``reset`` cancels a ``step_async`` not waited for (and Ctrl-C in
    ``step_wait`` leaves one); the pool refused to reset with steps in flight."""
    env = make_vec_env(TASK, 2, seed=0, num_workers=2)
    try:
        first = env.reset()
        env.seed(0)
        env.step_async(np.ones((2, 7), np.float32))
        np.testing.assert_array_equal(env.reset(), first)   # the step is dropped
        obs, *_ = env.step(np.zeros((2, 7), np.float32))
        assert obs.shape == first.shape
    finally:
        env.close()


def test_render_tiles_every_envs_frame():
    """get_images returned None per env, so SB3's render (and VecVideoRecorder) failed."""
    env = make_vec_env(TASK, 2, seed=0, num_workers=1, render_mode="rgb_array",
                       render_size=(64, 48))
    try:
        env.reset()
        frames = env.get_images()
        assert [f.shape for f in frames] == [(48, 64, 3)] * 2
        tiled = env.render()
        assert tiled.shape == (96, 64, 3) and tiled.dtype == np.uint8
        assert env.metadata["render_fps"] == 100
    finally:
        env.close()


def test_other_autoreset_modes_are_refused():
    with pytest.raises(ValueError, match="SB3 needs autoreset_mode='SameStep', got 'NextStep'"):
        make_vec_env(TASK, 1, autoreset_mode="NextStep")
    # SB3's buffers keep what step_wait returns: views of shared memory would change
    with pytest.raises(ValueError, match="copy=False: SB3 stores the arrays"):
        make_vec_env(TASK, 1, copy=False)
    # gym.make_vec's name for the count collided with n_envs in a TypeError
    with pytest.raises(ValueError, match="num_envs=2: make_vec_env takes SB3's n_envs"):
        make_vec_env(TASK, num_envs=2)
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        make_vec_env(TASK, 1, autoreset_mode="bogus")


def test_same_step_in_any_spelling_is_accepted():
    """"same_step" (a spelling OsimVectorEnv accepts) was refused as not SameStep."""
    env = make_vec_env(TASK, 1, num_workers=1, autoreset_mode="same_step")
    env.close()


def test_a_worker_restart_is_flagged_in_the_ended_steps_info():
    """The env of a killed worker ends with a stand-in terminal observation; SB3 and
    callbacks read infos[i], so the restart is said there, not only in reset_infos."""
    env = make_vec_env(TASK, 2, seed=0, num_workers=2, _faults=[("kill", 1, 3)])
    try:
        env.reset()
        for _ in range(6):
            _, _, dones, infos = env.step(np.zeros((2, 7), np.float32))
            if dones[1] and infos[1].get("worker_restarted"):
                break
        else:
            pytest.fail("the killed worker's env never ended flagged")
        assert "terminal_observation" in infos[1] and infos[1]["worker_error"]
        assert not infos[0].get("worker_restarted")
    finally:
        env.close()


def test_bad_seed_is_refused_when_given():
    """SB3's own ``seed`` failed with a TypeError for a string and let -1 through to
    the first reset; the pool of a refused ``make_vec_env`` is closed."""
    for seed in ("a", -1, True, 1.5):
        with pytest.raises(ValueError, match="seed must be None or an int >= 0"):
            make_vec_env(TASK, 1, seed=seed)
    env = make_vec_env(TASK, 2, seed=3)
    try:
        assert env.seed(7) == [7, 8]
        with pytest.raises(ValueError, match="got -2"):
            env.seed(-2)
        # env 1's seed + 1 would not fit the pool's int64 seeds: refused here, not at reset
        with pytest.raises(ValueError, match=f"got {2**63 - 1}"):
            env.seed(2**63 - 1)
    finally:
        env.close()
