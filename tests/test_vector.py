"""OsimVectorEnv: bitwise equal to single envs, Gymnasium vector API contract."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ClosedEnvironmentError
from gymnasium.vector import AutoresetMode

import fastenv.envs
from fastenv.env import ImitationEnv
from fastenv.errors import ClosedEnvError, EnvError, PendingCallError
from fastenv.vector import OsimVectorEnv

# Stiff uniform PD gains make random-action episodes end after a few steps, so a
# short run crosses many episode ends (terminations and resets).
TASK, KW = "TorqueWalkingImitation2D-v0", dict(kp=100.0, kd=10.0)
N, STEPS, SEED = 4, 40, 100


def actions(n_steps=STEPS, n_envs=N, n_act=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n_steps, n_envs, n_act)).astype(np.float32)


def single_env_rollout(i, A, mode):
    """What env i of the vector env must produce, from a plain loop (Gymnasium rules)."""
    env = ImitationEnv(TASK, **KW)
    obs, _ = env.reset(seed=SEED + i)
    out = [(obs, 0.0, False, False, None)]
    needs_reset = False
    for k in range(len(A)):
        if mode == AutoresetMode.NEXT_STEP and needs_reset:
            obs, _ = env.reset()
            out.append((obs, 0.0, False, False, None))
            needs_reset = False
            continue
        obs, r, te, tr, _ = env.step(A[k, i])
        final = None
        if mode == AutoresetMode.SAME_STEP and (te or tr):
            final = obs
            obs, _ = env.reset()
        out.append((obs, r, te, tr, final))
        needs_reset = te or tr
        if mode == AutoresetMode.DISABLED and needs_reset:
            break
    return out


@pytest.fixture(scope="module")
def expected():
    A = actions()
    return A, {m: [single_env_rollout(i, A, m) for i in range(N)]
               for m in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)}


# every worker count in NEXT_STEP; SAME_STEP at the default (one worker per core) in the
# default suite, its other worker counts in the slow one (the default suite's budget)
@pytest.mark.parametrize("mode,workers", [
    (AutoresetMode.NEXT_STEP, 1), (AutoresetMode.NEXT_STEP, 2), (AutoresetMode.NEXT_STEP, 4),
    (AutoresetMode.SAME_STEP, 2),
    pytest.param(AutoresetMode.SAME_STEP, 1, marks=pytest.mark.slow),
    pytest.param(AutoresetMode.SAME_STEP, 4, marks=pytest.mark.slow)])
def test_bitwise_equal_to_single_envs(expected, workers, mode):
    A, exp = expected[0], expected[1][mode]
    venv = OsimVectorEnv(TASK, N, num_workers=workers, autoreset_mode=mode, **KW)
    try:
        obs, _ = venv.reset(seed=SEED)
        # a worker's envs share one OpenSim model; the single envs have one each
        assert all(o["share_model"] for o in venv.get_attr("options"))
        for i in range(N):
            np.testing.assert_array_equal(obs[i], exp[i][0][0])
        ends = 0
        for k in range(STEPS):
            obs, rew, term, trunc, info = venv.step(A[k])
            for i in range(N):
                e_obs, e_r, e_te, e_tr, e_final = exp[i][k + 1]
                np.testing.assert_array_equal(obs[i], e_obs)
                assert (rew[i], term[i], trunc[i]) == (e_r, e_te, e_tr)
                if mode == AutoresetMode.SAME_STEP:
                    ended = info.get("_final_obs", np.zeros(N, bool))
                    assert ended[i] == (e_final is not None)
                    if e_final is not None:
                        np.testing.assert_array_equal(info["final_obs"][i], e_final)
                        assert info["final_info"]["_total"][i]
                        assert info["final_info"]["total"][i] == e_r
                ends += bool(e_te or e_tr)
        assert ends >= 3, "the rollout must cross episode ends"
    finally:
        venv.close()


def test_disabled_autoreset_needs_reset_mask(expected):
    A = expected[0]
    venv = OsimVectorEnv(TASK, N, num_workers=2, autoreset_mode="disabled", **KW)
    try:
        venv.reset(seed=SEED)
        for k in range(STEPS):
            obs, rew, term, trunc, info = venv.step(A[k])
            done = term | trunc
            if done.any():
                with pytest.raises(ValueError, match="autoreset is disabled"):
                    venv.step(A[k])
                obs2, info2 = venv.reset(options={"reset_mask": done})
                np.testing.assert_array_equal(obs2[~done], obs[~done])
                assert info2["_phase"].tolist() == done.tolist()
                break
        else:
            pytest.fail("no episode ended")
    finally:
        venv.close()


def test_disabled_autoreset_with_send_and_recv():
    """An episode that ends in ``recv`` is refused on the next ``send`` (or ``step``), as
    one that ends in ``step`` is; ``async_reset`` clears it."""
    venv = OsimVectorEnv(TASK, 2, num_workers=2, autoreset_mode="disabled",
                         episode_seconds=0.03, **KW)
    try:
        venv.async_reset(seed=SEED)
        venv.recv(batch_size=2)
        for _ in range(3):
            venv.send(np.zeros((2, 7)), [0, 1])
            *_, term, trunc, info = venv.recv(batch_size=2)
        assert (term | trunc).all()
        with pytest.raises(ValueError, match=r"envs \[0\] ended and autoreset is disabled"):
            venv.send(np.zeros((1, 7)), [0])
        with pytest.raises(ValueError, match="autoreset is disabled"):
            venv.step(np.zeros((2, 7)))
        assert venv._pool.pending == 0   # nothing was sent
        venv.async_reset(seed=SEED)
        venv.recv(batch_size=2)
        venv.step(np.zeros((2, 7)))
    finally:
        venv.close()


def test_a_partial_reset_reports_only_the_reset_envs():
    """``reset(options={"reset_mask": ...})`` returns the reset envs' infos only: no key of
    the last step left with an all-False mask, and no final observation of an env that
    ended in that step but was not reset (Gymnasium's SyncVectorEnv does the same)."""
    venv = OsimVectorEnv(TASK, 2, num_workers=2, autoreset_mode="same_step",
                         episode_seconds=0.03, **KW)
    try:
        venv.reset(seed=SEED)
        for _ in range(3):
            *_, term, trunc, info = venv.step(np.zeros((2, 7)))
        assert (term | trunc).all() and "final_obs" in info
        _, info = venv.reset(options={"reset_mask": np.array([True, False])})
        assert "final_obs" not in info and "final_info" not in info
        assert all(info[k].tolist() == [True, False] for k in info if k.startswith("_"))
    finally:
        venv.close()


def test_async_send_recv_equals_single_envs():
    """envpool-style loop: whichever envs finish first are stepped next; each env's own
    observations must still equal its single-env rollout with its own actions."""
    n_steps = 15
    A = actions(n_steps=n_steps)
    exp = [single_env_rollout(i, A, AutoresetMode.NEXT_STEP) for i in range(N)]
    venv = OsimVectorEnv(TASK, N, num_workers=2, batch_size=N // 2, **KW)
    try:
        venv.async_reset(seed=SEED)
        count = np.zeros(N, dtype=int)      # observations received per env
        while venv._pool.pending >= venv.batch_size:
            obs, rew, term, trunc, info = venv.recv()
            ids = info["env_id"]
            assert len(ids) == N // 2
            for row, i in enumerate(ids):
                e_obs, e_r, e_te, e_tr, _ = exp[i][count[i]]
                np.testing.assert_array_equal(obs[row], e_obs)
                assert (rew[row], term[row], trunc[row]) == (e_r, e_te, e_tr)
                count[i] += 1
            go = ids[count[ids] <= n_steps]   # envs with actions left
            if len(go):
                venv.send(np.stack([A[count[i] - 1, i] for i in go]), go)
        # all but the last incomplete batch got through their whole sequence
        assert count.sum() > N * (n_steps + 1) - venv.batch_size
    finally:
        venv.close()


def test_vector_api_contract():
    venv = gym.make_vec(TASK, num_envs=3, vectorization_mode="vector_entry_point",
                        num_workers=2, **KW)
    try:
        assert isinstance(venv, OsimVectorEnv)
        assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        assert venv.observation_space.shape == (3, *venv.single_observation_space.shape)
        assert venv.action_space.shape == (3, 7)
        obs, info = venv.reset(seed=[1, None, 3])
        assert obs.dtype == venv.single_observation_space.dtype and obs in venv.observation_space
        assert info["_phase"].all() and info["frame"].dtype == np.int64
        a = venv.action_space.sample()
        obs, rew, term, trunc, info = venv.step(a)
        assert rew.dtype == np.float64 and term.dtype == np.bool_ and trunc.dtype == np.bool_
        assert set(info) >= {"total", "_total", "imitation", "phase", "effort"}
        # infos in the dtypes the env declares in info_scalars
        assert info["nan_action"].dtype == np.bool_ and info["total"].dtype == np.float64
        assert venv.get_attr("mode") == ("train",) * 3
        venv.set_attr("mode", "test")
        assert venv.call("episode_steps")[0] > 0
        venv.set_attr("mode", ["test", "train", "test"])   # one value per env
        assert venv.get_attr("mode") == ("test", "train", "test")
        venv.set_attr("mode", "test")
        venv.step_async(a)
        out = venv.step_wait(timeout=60)
        assert len(out) == 5
        # same seeds, same rollouts whatever the number of workers
        other = OsimVectorEnv(TASK, 3, num_workers=1, **KW)
        try:
            venv.set_attr("mode", "train")
            o1, _ = venv.reset(seed=7)
            o2, _ = other.reset(seed=7)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(venv.step(a)[0], other.step(a)[0])
        finally:
            other.close()
    finally:
        venv.close()
        venv.close()  # idempotent


def test_copy_false_returns_views():
    venv = OsimVectorEnv(TASK, 2, num_workers=1, copy=False, **KW)
    try:
        venv.reset(seed=0)
        obs1 = venv.step(venv.action_space.sample())[0]
        snapshot = obs1.copy()
        obs2 = venv.step(venv.action_space.sample())[0]
        assert np.shares_memory(obs1, obs2)
        assert not np.array_equal(obs1, snapshot)   # overwritten by the next step
    finally:
        venv.close()


def test_step_before_reset_and_set_attr_of_options():
    """A step before any reset says so (it was an AttributeError from a worker), and
    set_attr checks an env option as gym.make does: it used to accept mode="bogus" and
    make start_noise an attribute nothing read."""
    venv = OsimVectorEnv(TASK, 3, num_workers=2, **KW)
    try:
        with pytest.raises(gym.error.ResetNeeded, match=r"step\(\) called on envs \[0, 1, "
                                                         r"2\], which have not been reset"):
            venv.step(np.zeros((3, 7), np.float32))
        with pytest.raises(gym.error.ResetNeeded, match=r"send\(\) called on envs \[2\]"):
            venv.send(np.zeros((1, 7), np.float32), [2])
        with pytest.raises(ValueError, match="mode must be one of"):
            venv.set_attr("mode", "bogus")
        with pytest.raises(ValueError, match="start_noise must be"):
            venv.set_attr("start_noise", -5.0)
        with pytest.raises(ValueError, match="option 'physics' is fixed when the envs are "
                                             "built"):
            venv.set_attr("physics", "fast")
        venv.set_attr("start_noise", [0.0, 0.05, 0.1])
        assert [o["start_noise"] for o in venv.call("options")] == [0.0, 0.05, 0.1]
        venv.set_attr("episode_seconds", 0.5)
        assert venv.call("episode_steps") == (50, 50, 50)
        # what set_attr sets, get_attr reads (it used to be an EnvAttributeError)
        assert venv.get_attr("episode_seconds") == (0.5, 0.5, 0.5)
        assert venv.get_attr("start_noise") == (0.0, 0.05, 0.1)
        venv.set_attr("anything", 3)   # not an option: set as Gymnasium's set_attr does
        assert venv.get_attr("anything") == (3, 3, 3)
        venv.reset(seed=0)
        venv.step(np.zeros((3, 7), np.float32))
    finally:
        venv.close()


def test_recycling_keeps_the_options_set_attr_changed():
    """A recycled worker's envs are rebuilt with the vector env's options: test mode set
    by set_attr used to revert to train mode there, silently (a train-mode start frame)."""
    with OsimVectorEnv(TASK, 1, num_workers=1, recycle_every=2, **KW) as venv:
        venv.reset(seed=0)
        venv.set_attr("mode", "test")
        for _ in range(3):
            venv.step(np.zeros((1, 7), np.float32))
        assert venv.recycles >= 1 and venv.get_attr("mode") == ("test",)
        assert venv.reset(seed=1)[1]["frame"].tolist() == [0]


def test_a_respawned_worker_keeps_the_options_set_attr_changed():
    """A worker killed mid-episode is respawned with envs built from the vector env's
    options; test mode set by set_attr reverted to train mode there (a train-mode start
    frame), silently."""
    with OsimVectorEnv(TASK, 1, num_workers=1, _faults=[("kill", 0, 2)], **KW) as venv:
        venv.reset(seed=0)
        venv.set_attr("mode", "test")
        venv.set_attr("episode_seconds", 0.5)
        restarted = False
        for _ in range(4):
            info = venv.step(np.zeros((1, 7), np.float32))[4]
            restarted |= bool(info.get("worker_restarted", [False])[0])
        assert restarted and venv.restarts == 1
        assert venv.get_attr("mode") == ("test",)
        assert venv.get_attr("options")[0]["episode_seconds"] == 0.5
        assert venv.reset(seed=1)[1]["frame"].tolist() == [0]


def test_bad_vector_input():
    venv = OsimVectorEnv(TASK, 2, num_workers=1, batch_size=1, **KW)
    try:
        with pytest.raises(ValueError, match=r"expected \(2, 7\)"):
            venv.step(np.zeros((3, 7)))
        # typed errors, still RuntimeErrors as before they had types
        with pytest.raises(PendingCallError, match="without step_async"):
            venv.step_wait()
        with pytest.raises(RuntimeError, match="call send\\(\\) first"):
            venv.recv()
        venv.reset(seed=0)
        venv.step_async(np.zeros((2, 7)))
        for call in (lambda: venv.reset(), lambda: venv.call("episode_steps"),
                     lambda: venv.step_async(np.zeros((2, 7))), lambda: venv.recv(),
                     lambda: venv.get_attr("mode")):
            with pytest.raises(PendingCallError, match="in flight"):
                call()
        venv.step_wait()
        venv.send(np.zeros((1, 7)), [0])
        with pytest.raises(PendingCallError, match=r"reset\(\) called while 1 envs are "
                                                   "in flight"):
            venv.reset()
        with pytest.raises(ValueError, match=r"envs \[0\] are still in flight"):
            venv.send(np.zeros((1, 7)), [0])
        venv.recv()
        with pytest.raises(ValueError, match=r"env_ids must be in \[0, 2\)"):
            venv.send(np.zeros((1, 7)), [5])
        with pytest.raises(ValueError, match="reset_mask"):
            venv.reset(options={"reset_mask": np.array([1, 0])})
        with pytest.raises(ValueError, match="unknown reset option"):
            venv.reset(options={"speed": 1})
        # async_reset takes its seed the same way: it used to truncate 1.5 to 1 and
        # send -1 to the workers
        for reset in (lambda seed: venv.reset(seed=seed), venv.async_reset):
            for seed in ("x", 1.5, True, [1, "a"], [True, 2]):
                with pytest.raises(ValueError,
                                   match="seed must be None, an int or a list of 2"):
                    reset(seed)
            for seed, match in ((-1, "got -1"), (2**70, "fit in int64"),
                                ([0, -3], r"got \[-3\]")):
                with pytest.raises(ValueError, match=match):
                    reset(seed)
        with pytest.raises(ValueError, match="must have 2 entries, got 3"):
            venv.reset(seed=[1, 2, 3])
        # a large seed in range is taken, not an OverflowError of the int32 env ids
        top = np.iinfo(np.int64).max - 2
        for seed in (2**31, top):
            venv.reset(seed=seed)
            assert venv.get_attr("np_random_seed") == (seed, seed + 1)
        for frame in (-5, 1.5):   # -5 read as the shared array's "none": a random start
            with pytest.raises(ValueError, match=f"start_frame must be None or an int >= 0, "
                                                 f"got {frame}"):
                venv.reset(options={"start_frame": frame})
    finally:
        venv.close()
    with pytest.raises(ClosedEnvError, match="closed"):
        venv.step(np.zeros((2, 7)))
    with pytest.raises(ClosedEnvironmentError):   # Gymnasium's type, for its users
        venv.reset()
    with pytest.raises(ValueError, match="unknown option"):
        OsimVectorEnv(TASK, 2, wings=2)
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        OsimVectorEnv(TASK, 2, autoreset_mode="sometimes")
    # each refused before any worker starts; a bool is not a count (True read as 1)
    for kwargs, match in ((dict(num_envs=2.0), "num_envs must be an int >= 1, got 2.0"),
                          (dict(num_envs=True), "num_envs must be an int >= 1, got True"),
                          (dict(num_envs=2, num_workers=1.5), "num_workers must be an int"),
                          (dict(num_envs=2, batch_size=True), r"batch_size must be an int in "
                                                              r"\[1, num_envs=2\], got True"),
                          (dict(num_envs=2, copy="yes"), "copy must be True or False, got 'yes'"),
                          (dict(num_envs=2, step_timeout="5"), "step_timeout must be > 0 "
                                                               "seconds or None, got '5'"),
                          (dict(num_envs=2, max_episode_steps=50), "max_episode_steps=50 is not "
                                                                   "supported: set the env option "
                                                                   "episode_seconds"),
                          # a vector option misspelt: the valid names include the vector's
                          (dict(num_envs=2, num_worker=2), r"unknown option\(s\) \['num_worker'\]; "
                                                           r"vector options: .*'num_workers'")):
        with pytest.raises(ValueError, match=match):
            OsimVectorEnv(TASK, **kwargs)


def test_values_that_cannot_be_pickled_leave_the_pool_usable():
    """A ``set_attr`` value, or a ``get_attr`` result, that cannot cross the pipe (an
    OpenSim object) is a one-line error naming it; no worker dies and no reply is left
    unread for the next command to take."""
    venv = OsimVectorEnv(TASK, 3, num_workers=2, **KW)
    try:
        venv.reset(seed=SEED)
        with pytest.raises(TypeError, match="set_attr: its arguments cannot be sent"):
            venv.set_attr("probe", [1, 2, lambda: 0])
        assert venv.get_attr("mode") == ("train",) * 3
        with pytest.raises(EnvError, match=r"env 2 .*get_attr\('sim'\).*the value is a "
                                           r"Simulation, which cannot be sent"):
            venv.get_attr("sim", env_ids=[2])
        assert venv.has_attr("sim") == (True,) * 3
        assert venv.has_attr("no_such_attribute", env_ids=[1]) == (False,)
        venv.step(np.zeros((3, 7)))
        assert venv.restarts == 0
    finally:
        venv.close()


def test_values_refused_inside_a_worker_are_value_errors():
    """An option only the loaded model can check, or a reset option out of range, is the
    ValueError gym.make raises for one env, and still the worker/env error it was."""
    from fastenv.errors import EnvError, WorkerError
    with pytest.raises(ValueError, match="worker 0 failed to build env 0: ValueError: "
                                         ".*kp") as err:
        OsimVectorEnv(TASK, 1, num_workers=1, kp=[1.0, 2.0])
    assert isinstance(err.value, WorkerError)
    with OsimVectorEnv(TASK, 2, num_workers=1) as venv:
        with pytest.raises(ValueError, match=r"env 0 raised in its worker.*start_frame must be "
                                             r"an int in \[0, ") as err:
            venv.reset(options={"start_frame": 10**6})
        assert isinstance(err.value, EnvError)



def test_a_reference_files_warning_is_raised_once_in_the_parent():
    """Each worker builds envs on the same motion file and catches its notes; the parent
    raises them once, at the caller's line, where filters and catch_warnings see them."""
    import importlib.resources
    import warnings
    ik_file = importlib.resources.files("fastenv.envs") / "references" / \
        "walking2d_coordinates.sto"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with OsimVectorEnv(TASK, 2, num_workers=2, reference=str(ik_file), **KW):
            pass
    notes = [w for w in caught if "walking2d_coordinates" in str(w.message)]
    assert len(notes) == 1, [str(w.message) for w in caught]
    assert notes[0].filename == __file__ and issubclass(notes[0].category, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="walking2d_coordinates"):
            OsimVectorEnv(TASK, 2, num_workers=2, reference=str(ik_file), **KW)


def _option_draw(task: str, rng) -> dict:
    """One seeded draw of env options for ``task``, among those that apply to it."""
    from fastenv.envs import TASKS as SPECS
    spec = SPECS[task]
    pick = lambda values: values[rng.integers(len(values))]   # noqa: E731
    o = dict(physics=pick(["default", "fast", "accurate"]), mode=pick(["train", "test"]),
             horizon=int(pick([1, 5, 20])), use_target_obs=bool(rng.random() < 0.7),
             use_GRF=bool(rng.random() < 0.7), apply_perturbations=bool(rng.random() < 0.3),
             obs_dtype=pick(["float32", "float64"]), reward=pick(["original", "tracking"]),
             start_noise=float(pick([0.0, 0.05])), episode_seconds=float(pick([0.3, 0.5])),
             contact_model=pick(["hunt_crossley", "smooth"]))
    if o["horizon"] > 1:
        o["observe_previous_actions"] = bool(rng.random() < 0.5)
    if spec.actuation == "muscle":
        o["muscle_model"] = pick(["thelen", "degroote"])
        feedforward = spec.reference in (
            "walking2d", "running2d", "lockedknee2d", "walking3d", "running3d",
            "lockedknee3d", "palsy3d")
        o["excitations"] = pick(["direct", "residual", "reflex"] if feedforward else ["direct"])
        if o["excitations"] != "direct":
            o["excitation_range"] = float(pick([0.2, 0.5]))
    else:
        o["pd_targets"] = pick(["range", "residual"])
        if o["pd_targets"] == "residual":
            o["residual_range"] = float(pick([0.2, 0.5]))
        o["pd_update"] = pick(["continuous", "step"])
    return o


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(fastenv.envs.TASKS))
def test_every_task_with_drawn_options_equals_single_envs(task):
    """Each task with a seeded draw of its options (physics, muscle and contact models,
    actuation, observation blocks, rewards, episode lengths): the vector env (2 workers,
    a worker's envs on one model) is bitwise the single envs, episode ends included
    (episodes of at most 0.5 s, so that every env autoresets within the 60 steps)."""
    rng = np.random.default_rng(sorted(fastenv.envs.TASKS).index(task))
    options = _option_draw(task, rng)
    n, steps = 3, 60
    singles = [ImitationEnv(task, **options) for _ in range(n)]
    venv = OsimVectorEnv(task, n, num_workers=2, **options)
    try:
        space = singles[0].action_space
        A = rng.uniform(space.low, space.high, (steps, n, space.shape[0])).astype(np.float32)
        obs, _ = venv.reset(seed=SEED)
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(obs[i], env.reset(seed=SEED + i)[0])
        needs_reset, ends = [False] * n, 0
        for k in range(steps):
            obs, rew, term, trunc, _ = venv.step(A[k])
            for i, env in enumerate(singles):
                if needs_reset[i]:   # NextStep: this step resets env i
                    expected = (env.reset()[0], 0.0, False, False)
                    needs_reset[i] = False
                else:
                    expected = env.step(A[k, i])[:4]
                    needs_reset[i] = expected[2] or expected[3]
                    ends += needs_reset[i]
                np.testing.assert_array_equal(obs[i], expected[0],
                                              err_msg=f"step {k}, env {i}: {options}")
                assert (rew[i], term[i], trunc[i]) == expected[1:], (k, i, options)
        assert ends >= 1, f"no episode ended: {options}"
    finally:
        venv.close()
        for env in singles:
            env.close()
