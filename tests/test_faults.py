"""Fault injection: simulator failures, killed and hung workers, recycling, bad input,
shared-memory hygiene. Every test is bounded in time; unaffected envs must be bitwise
equal to a fault-free run with the same seeds and actions."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fastenv.errors import EnvError, WorkerError
from fastenv.vector import OsimVectorEnv

TASK = "MuscleWalkingImitation2D-v0"
N, STEPS = 4, 10


def rollout(faults=(), n_steps=STEPS, **kw):
    A = np.random.default_rng(0).random((n_steps, N, 18)).astype(np.float32) * 0.3
    v = OsimVectorEnv(TASK, N, num_workers=2, _faults=faults, **kw)
    try:
        obs, _ = v.reset(seed=0)
        out = {"obs": [obs], "rew": [], "trunc": [], "info": []}
        t0 = time.monotonic()
        for k in range(n_steps):
            o, r, te, tr, info = v.step(A[k])
            out["obs"].append(o), out["rew"].append(r), out["trunc"].append(tr)
            out["info"].append(info)
        out["wall"] = time.monotonic() - t0
        out["restarts"], out["recycles"] = v.restarts, v.recycles
    finally:
        v.close()
    out["obs"] = np.array(out["obs"])
    out["rew"] = np.array(out["rew"])
    return out


@pytest.fixture(scope="module")
def clean():
    return rollout()


def assert_unaffected_equal(run, clean, envs):
    np.testing.assert_array_equal(run["obs"][:, envs], clean["obs"][:, envs])
    np.testing.assert_array_equal(run["rew"][:, envs], clean["rew"][:, envs])


def test_sim_error_truncates_only_that_env(clean):
    run = rollout([("sim_error", 1, 4)])
    info = run["info"][4]
    assert info["_sim_error"].tolist() == [False, True, False, False]
    assert "non-finite" in info["sim_error"][1] or "integrator" in info["sim_error"][1]
    assert run["trunc"][4].tolist() == [False, True, False, False]
    assert run["restarts"] == 0
    assert np.isfinite(run["obs"]).all()
    assert_unaffected_equal(run, clean, [0, 2, 3])
    # NEXT_STEP: the following step resets env 1 (reward 0, episode continues afresh)
    assert run["rew"][5, 1] == 0.0 and not run["trunc"][5][1]


@pytest.mark.parametrize("failure", ["integrator", "non-finite state"])
def test_a_simulator_failure_returns_the_last_valid_observation(failure, monkeypatch):
    """The failed step's observation is the previous step's, bitwise (the failed state's
    non-finite values had been zeroed into it), with reward 0 and truncated."""
    from fastenv.env import ImitationEnv
    from fastenv.vector import _nan_state
    env = ImitationEnv(TASK)
    try:
        env.reset(seed=0)
        action = np.full(18, 0.3, np.float32)
        prev = env.step(action)[0]
        if failure == "integrator":
            _nan_state(env)
        else:   # the integrator succeeds, the state it ends in is not finite
            read = env.sim.read

            def nan_read():
                read()
                env.sim.buf[::7] = np.nan
            monkeypatch.setattr(env.sim, "read", nan_read)
        obs, reward, terminated, truncated, info = env.step(action)
        assert failure in info["sim_error"]
        np.testing.assert_array_equal(obs, prev)
        assert reward == 0.0 and truncated and not terminated
    finally:
        env.close()


def test_killed_worker_is_respawned(clean):
    run = rollout([("kill", 2, 3)])
    assert run["restarts"] == 1
    info = run["info"][3]
    assert info["_worker_restarted"].tolist() == [False, False, True, True]
    assert run["trunc"][3].tolist() == [False, False, True, True]
    assert_unaffected_equal(run, clean, [0, 1])
    assert run["wall"] < 60


def test_hung_worker_is_killed_after_step_timeout(clean):
    run = rollout([("hang", 0, 2)], step_timeout=3.0)
    assert run["restarts"] == 1
    assert run["info"][2]["_worker_restarted"].tolist() == [True, True, False, False]
    assert "step_timeout" in run["info"][2]["worker_error"][0]
    assert_unaffected_equal(run, clean, [2, 3])
    assert run["wall"] < 60


def test_a_wait_that_times_out_loses_nothing(clean):
    """A ``step_wait``/``recv`` timeout leaves the envs that did finish to the next call,
    with their infos (env 0's sim_error), instead of dropping them."""
    A = np.random.default_rng(0).random((STEPS, N, 18)).astype(np.float32) * 0.3
    v = OsimVectorEnv(TASK, N, num_workers=2, step_timeout=3.0,
                      _faults=[("sim_error", 0, 2), ("hang", 3, 2)])
    try:
        v.reset(seed=0)
        for k in range(2):
            v.step(A[k])
        v.step_async(A[2])
        with pytest.raises(TimeoutError, match="2 of 4 envs did not finish.*the 2 that did"):
            v.step_wait(timeout=1.0)
        obs, _, _, trunc, info = v.step_wait()
        assert trunc.tolist() == [True, False, True, True]
        assert info["_sim_error"].tolist() == [True, False, False, False]
        assert info["_worker_restarted"].tolist() == [False, False, True, True]
        np.testing.assert_array_equal(obs[1], clean["obs"][3, 1])
        # recv: the same with the envpool-style loop
        v.async_reset(seed=0)
        v.recv(batch_size=N)
        v.send(A[0], np.arange(N))
        with pytest.raises(TimeoutError, match="did not finish"):
            v.recv(timeout=1e-4, batch_size=N)
        assert v._pool.pending == N
        ids = v.recv(batch_size=N)[4]["env_id"]
        assert sorted(ids.tolist()) == list(range(N))
    finally:
        v.close()


def test_exception_in_env_raises_in_parent_with_its_message():
    v = OsimVectorEnv(TASK, 2, num_workers=1, _faults=[("exception", 1, 1)])
    try:
        v.reset(seed=0)
        v.step(np.zeros((2, 18), np.float32))
        with pytest.raises(EnvError, match="env 1 raised in its worker: RuntimeError: "
                                           "injected exception in env 1") as exc:
            v.step(np.zeros((2, 18), np.float32))
        assert isinstance(exc.value, RuntimeError)   # what was raised before EnvError
        assert (exc.value.env_id, exc.value.exc_type) == (1, "RuntimeError")
        assert "_inject" in exc.value.remote_traceback   # the worker's own traceback
        assert "\n" not in str(exc.value)
        with pytest.raises(EnvError, match=r"env 0 raised in its worker in "
                                           r"call\('no_such_method'\): AttributeError") as missing:
            v.call("no_such_method")
        assert isinstance(missing.value, AttributeError)   # as a local env's (SB3's has_attr)
    finally:
        v.close()


def test_recycling_is_transparent(clean):
    run = rollout(recycle_every=8)
    assert run["recycles"] >= 2 and run["restarts"] == 0
    assert not np.any(run["trunc"])
    # episodes continue: positions stay within integrator accuracy of the clean run
    q = [i for i, n in enumerate(_names()) if n.startswith("q/")]
    np.testing.assert_allclose(run["obs"][:, :, q], clean["obs"][:, :, q], atol=0.05)



def test_recycling_under_pipelined_send_recv(clean):
    """With send/recv one env at a time a worker always has an env in flight, so a due
    worker's commands are held until its steps are in: it is recycled all the same, and
    each env's episode continues as in the synchronous clean run."""
    A = np.random.default_rng(0).random((STEPS, N, 18)).astype(np.float32) * 0.3
    obs = np.zeros_like(clean["obs"])
    with OsimVectorEnv(TASK, N, num_workers=2, recycle_every=8) as v:
        obs[0], _ = v.reset(seed=0)
        k, in_flight = np.zeros(N, dtype=int), N
        v.send(A[0], np.arange(N))
        while in_flight:
            o, _, _, tr, info = v.recv(batch_size=1)
            i = int(info["env_id"][0])
            assert not tr[0]
            k[i] += 1
            obs[k[i], i] = o[0]
            in_flight -= 1
            if k[i] < STEPS:
                v.send(A[k[i], i][None], [i])
                in_flight += 1
        # each worker steps 20 env steps: due at 8 and at 16 (held back: only at the end)
        assert v.recycles >= 4 and v.restarts == 0
    q = [i for i, n in enumerate(_names()) if n.startswith("q/")]
    np.testing.assert_allclose(obs[:, :, q], clean["obs"][:, :, q], atol=0.05)

def _names():
    from fastenv.env import ImitationEnv
    return ImitationEnv(TASK).observation_names


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_actions_raise_naming_the_env(bad):
    v = OsimVectorEnv(TASK, 2, num_workers=1)
    try:
        v.reset(seed=0)
        a = np.zeros((2, 18), np.float32)
        a[1, 3] = bad
        with pytest.raises(ValueError, match=r"env 1 has non-finite values at indices \[3\]"):
            v.step(a)
        v.step(np.zeros((2, 18), np.float32))   # still usable afterwards
    finally:
        v.close()


def test_malformed_actions_are_one_line_and_leave_the_pool_usable():
    """Wrong shape, wrong dtype, a ragged list (NumPy's own message named no shape)."""
    v = OsimVectorEnv(TASK, 2, num_workers=1)
    try:
        v.reset(seed=0)
        for actions, expected in [
                (np.zeros((2, 17)), r"actions have shape \(2, 17\); expected \(2, 18\)"),
                (np.full((2, 18), "a"), r"actions have dtype <U1; expected a real number"),
                ([[0.0] * 18, [0.0] * 17], r"actions are not one array of shape \(2, 18\)")]:
            with pytest.raises(ValueError, match=expected):
                v.step(actions)
        v.step(np.zeros((2, 18), np.float32))   # still usable afterwards
    finally:
        v.close()


def test_fuzz_adversarial_actions_never_break_the_pool():
    rng = np.random.default_rng(1)
    v = OsimVectorEnv(TASK, 2, num_workers=2, nan_actions="zero")
    try:
        v.reset(seed=0)
        batches = [np.full((2, 18), 1e300), np.full((2, 18), -1e300),
                   np.full((2, 18), 5e-324), np.full((2, 18), np.nan),
                   np.full((2, 18), np.inf), rng.normal(0, 1e6, (2, 18)),
                   np.zeros((2, 18), np.int64), np.ones((2, 18), np.float16),
                   rng.random((2, 18)).astype(np.float32)]
        for _ in range(2):
            for a in batches:
                obs, rew, term, trunc, info = v.step(a)
                assert np.isfinite(obs).all() and np.isfinite(rew).all()
                outside = np.nan_to_num(np.asarray(a, float), nan=0.5, posinf=0.5, neginf=0.5)
                outside = ((outside < 0) | (outside > 1)).sum(axis=1)
                np.testing.assert_array_equal(info["action_clipped"], outside)
        for bad in (np.zeros((2, 17)), np.zeros((3, 18)), np.array([["x"] * 18] * 2),
                    np.zeros((2, 18), complex)):
            with pytest.raises(ValueError):
                v.step(bad)
    finally:
        v.close()


def test_unreadable_model_and_reference_files(tmp_path):
    bad = tmp_path / "broken.osim"
    bad.write_text("<OpenSimDocument><Model>")
    with pytest.raises(Exception, match="cannot load OpenSim model"):
        OsimVectorEnv(TASK, 1, num_workers=1, model=str(bad))
    corrupt = tmp_path / "ref.npz"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="cannot read reference"):
        OsimVectorEnv(TASK, 1, num_workers=1, reference=str(corrupt))


SCRIPT = textwrap.dedent("""
    import sys, time
    from fastenv.vector import OsimVectorEnv
    if __name__ == "__main__":
        busy = sys.argv[1].startswith("sigkill_busy")   # worker 0 hangs in its first step
        method = "forkserver" if sys.argv[1].endswith("forkserver") else "subprocess"
        v = OsimVectorEnv("TorqueWalkingImitation2D-v0", 2, num_workers=2,
                          start_method=method, _faults=[("hang", 0, 0)] if busy else [])
        if busy:
            v.reset(seed=0)
            v.step_async(v.action_space.sample())
            time.sleep(0.5)
        print(v._pool.arrays.name, *v._pool.pids, flush=True)
        if sys.argv[1] == "kbint":
            raise KeyboardInterrupt
        if sys.argv[1] == "close":
            v.close()
            sys.exit(0)
        time.sleep(120)
""")


def _gone(path: Path, pids, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists()
                 and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
        if not path.exists() and not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("how", ["close", "kbint", "sigterm", "sigkill", "sigkill_busy",
                                 "sigkill_busy_forkserver", "worker_crash"])
def test_no_shared_memory_left(tmp_path, how):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), how], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        name, *pids = proc.stdout.readline().split()
        seg = Path("/dev/shm") / name
        assert seg.exists()
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        elif how.startswith("sigkill"):
            proc.kill()   # busy: a worker stuck in a step must die with its parent too
        elif how == "worker_crash":
            os.kill(int(pids[0]), signal.SIGKILL)
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert _gone(seg, [int(p) for p in pids]), f"{seg} or a worker outlived the parent"
        if how in ("close", "kbint"):
            assert "leaked" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("how", ["send", "send_recv_half", "step_async", "hung_step"])
def test_close_with_steps_in_flight_is_prompt(how):
    """Busy workers are killed at once (their results would be thrown away) instead of
    being waited for; this bounds a hang, it is not a benchmark."""
    faults = [("hang", 0, 0)] if how == "hung_step" else []
    v = OsimVectorEnv(TASK, N, num_workers=2, batch_size=2, _faults=faults)
    v.reset(seed=0)
    pids, seg = list(v._pool.pids), Path("/dev/shm") / v._pool.arrays.name
    a = np.zeros((N, 18), np.float32)
    if how.startswith("send"):
        v.send(a, np.arange(N))
        if how == "send_recv_half":
            v.recv()
    else:
        v.step_async(a)
    t0 = time.monotonic()
    v.close()
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"close() took {elapsed:.2f} s with steps in flight"
    assert not seg.exists()
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "a worker outlived close()"


# ------------------------------------------------------------- workers dying while idle
TORQUE = "TorqueWalkingImitation2D-v0"


def _kill(venv, w):
    os.kill(venv._pool.pids[w], signal.SIGKILL)
    venv._pool.procs[w].join(5.0)


def test_a_recycle_that_finds_its_worker_dead_recovers_it():
    """With recycle_every, a due worker killed from outside after its envs finished (the
    OOM killer): the recycle is a worker failure like any other, its envs come back
    truncated with worker_restarted, and no env's row is lost (a BrokenPipeError had
    escaped, dropping the rows read before it)."""
    venv = OsimVectorEnv(TORQUE, 4, num_workers=2, recycle_every=3)
    try:
        zeros = np.zeros((4, 7), np.float32)
        venv.async_reset(seed=0)
        venv.recv(batch_size=4)
        venv.send(zeros[2:], [2, 3])
        venv.recv(batch_size=2)
        venv.send(zeros[:2], [0, 1])
        venv.send(zeros[2:], [2, 3])   # worker 1 (envs 2, 3) is due once these are in
        while venv._pool.conns[1].poll(0) is False:
            time.sleep(0.05)
        time.sleep(0.2)
        _kill(venv, 1)
        ids = []
        while venv.pending:
            ids += venv.recv(batch_size=min(2, venv.pending), timeout=30)[4]["env_id"].tolist()
        assert sorted(ids) == [0, 1, 2, 3]
        venv.send(zeros, np.arange(4))
        *_, trunc, info = venv.recv(batch_size=4, timeout=30)
        restarted = info["env_id"][info["_worker_restarted"]]
        assert sorted(restarted.tolist()) == [2, 3] and trunc[info["_worker_restarted"]].all()
    finally:
        venv.close()


def test_a_balanced_pool_recovers_a_due_worker_killed_while_idle():
    """Load balancing with recycle_every: a due worker killed while idle is recovered
    when the dispatcher picks it (its BrokenPipeError had left the step stuck)."""
    venv = OsimVectorEnv(TORQUE, 4, num_workers=3, active_workers=1, recycle_every=4)
    try:
        zeros = np.zeros((4, 7), np.float32)
        venv.reset(seed=0)
        for _ in range(3):
            venv.step(zeros)
        victim = int(venv._pool.owner[3])
        _kill(venv, victim)
        *_, trunc, info = venv.step(zeros)
        mine = venv._pool.owner == victim
        assert info["_worker_restarted"].tolist() == mine.tolist() and trunc[mine].all()
        venv.step(zeros)
    finally:
        venv.close()


def test_a_rare_command_to_a_dead_worker_is_one_line_and_leaves_no_reply_behind():
    """get_attr after the last of three workers died while idle: a one-line WorkerError,
    the other workers' replies read (one had been left in a pipe and read by the next
    step as a step's reply); the next step respawns the worker."""
    venv = OsimVectorEnv(TORQUE, 6, num_workers=3)
    try:
        venv.reset(seed=0)
        zeros = np.zeros((6, 7), np.float32)
        venv.step(zeros)
        _kill(venv, 2)
        with pytest.raises(WorkerError, match=r"^worker 2 died before get_attr \(exit code "
                                              r"-9\); its envs restart on the next step"):
            venv.get_attr("n_actions")
        *_, trunc, info = venv.step(zeros)
        assert trunc.tolist() == [False] * 4 + [True] * 2
        assert info["_worker_restarted"].tolist() == [False] * 4 + [True] * 2
        assert venv.get_attr("n_actions") == (7,) * 6
    finally:
        venv.close()


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_a_reset_that_finds_its_worker_dead_is_made_as_asked(mode):
    """reset(seed=..., start_frame) after a worker died while idle: the respawned worker's
    envs start from the asked seeds and frame (they had got recovery seeds), flagged
    worker_restarted, and their next step is a step, not another reset."""
    seeds_and_frames = dict(seed=7, options={"start_frame": 5})
    clean = OsimVectorEnv(TORQUE, 4, num_workers=2, autoreset_mode=mode)
    venv = OsimVectorEnv(TORQUE, 4, num_workers=2, autoreset_mode=mode)
    try:
        zeros = np.zeros((4, 7), np.float32)
        want, _ = clean.reset(**seeds_and_frames)
        want_next = clean.step(zeros)
        venv.reset(seed=0)
        venv.step(zeros)
        _kill(venv, 1)
        obs, info = venv.reset(**seeds_and_frames)
        assert info["_worker_restarted"].tolist() == [False, False, True, True]
        assert venv.restarts == 1
        np.testing.assert_array_equal(obs, want)
        got_next = venv.step(zeros)
        for got, expected in zip(got_next[:4], want_next[:4]):
            np.testing.assert_array_equal(got, expected)
    finally:
        venv.close()
        clean.close()


@pytest.mark.parametrize("where", ["recover", "recycle"])
def test_an_interrupted_respawn_or_recycle_is_redone(where, monkeypatch):
    """Ctrl-C while a worker is being started (recovering from a crash, or recycled):
    drop_in_flight() recovers it and the pool goes on (the new worker's start-up
    messages had been read as step replies, and reset refused for good)."""
    from fastenv.pool.pool import Pool
    venv = OsimVectorEnv(TORQUE, 4, num_workers=2,
                         recycle_every=3 if where == "recycle" else None)
    try:
        venv.reset(seed=0)
        zeros = np.zeros((4, 7), np.float32)
        for _ in range(2 if where == "recycle" else 1):
            venv.step(zeros)
        if where == "recover":
            _kill(venv, 1)
        expect, calls = Pool._expect, []

        def interrupted(pool, w, what):
            calls.append(what)
            if what == "spaces" and len(calls) == 2:   # once, inside the first respawn
                raise KeyboardInterrupt
            return expect(pool, w, what)
        monkeypatch.setattr(Pool, "_expect", interrupted)
        with pytest.raises(KeyboardInterrupt):
            venv.step(zeros)   # due (recycle), or finds worker 1 dead (recover)
            venv.step(zeros)
        venv.drop_in_flight()
        obs, _ = venv.reset(seed=0)
        *_, trunc, info = venv.step(zeros)
        assert not trunc.any() and np.isfinite(obs).all()
    finally:
        venv.close()


def test_an_interrupted_recv_loses_no_row():
    """A KeyboardInterrupt inside recv (a signal handler's) puts back what it had taken:
    every env sent is returned once."""
    venv = OsimVectorEnv(TORQUE, 4, num_workers=2, batch_size=2)
    calls = {"n": 0}
    infos = venv._infos

    def flaky(*args, **kwargs):   # every third recv is interrupted after its collect
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise KeyboardInterrupt
        return infos(*args, **kwargs)
    try:
        venv.async_reset(seed=0)
        venv.recv(batch_size=4)
        venv._infos = flaky
        zeros = np.zeros((4, 7), np.float32)
        sent, returned = np.ones(4, int), np.zeros(4, int)
        venv.send(zeros, np.arange(4))
        for _ in range(30):
            try:
                *_, info = venv.recv()
            except KeyboardInterrupt:
                continue
            ids = info["env_id"]
            returned[ids] += 1
            venv.send(zeros[ids], ids)
            sent[ids] += 1
        venv._infos = infos
        while venv.pending:
            returned[venv.recv(batch_size=min(2, venv.pending))[4]["env_id"]] += 1
        assert (sent == returned).all(), (sent, returned)
    finally:
        venv.close()
