"""Worker launch: scripts without a ``__main__`` guard, ``python -`` and ``exec`` (the
notebook case) all work; the pool is independent of the env (any picklable factory,
the env's own ``info_scalars``); its start-up errors say what to do."""
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from fastenv.errors import ClosedEnvError, EnvError, PendingCallError, WorkerError
from fastenv.pool import EnvFactory, Pool

ROOT = Path(__file__).resolve().parents[1]

# No `if __name__ == "__main__":` guard, on purpose.
NO_GUARD = textwrap.dedent("""
    import sys
    import gymnasium as gym
    import numpy as np
    import fastenv
    venv = gym.make_vec("MuscleWalkingImitation2D-v0", num_envs=4,
                        vectorization_mode="vector_entry_point", num_workers=2{extra})
    obs, info = venv.reset(seed=0)
    for _ in range(20):
        obs, rew, term, trunc, info = venv.step(np.full((4, 18), 0.2, np.float32))
    assert obs.shape == (4, 152) and np.isfinite(obs).all()
    print("segment", venv._pool.arrays.name, "opensim" in sys.modules, flush=True)
    venv.close()
""")


def run_three_ways(tmp_path, how, extra=""):
    script = tmp_path / "no_guard.py"
    script.write_text(NO_GUARD.format(extra=extra))
    cmd = {"file": [sys.executable, str(script)],
           "stdin": [sys.executable, "-"],
           "exec": [sys.executable, "-c", f"exec(open({str(script)!r}).read())"]}[how]
    stdin = script.open() if how == "stdin" else subprocess.DEVNULL
    try:
        return subprocess.run(cmd, stdin=stdin, capture_output=True, text=True,
                              cwd=tmp_path, timeout=240)
    finally:
        if how == "stdin":
            stdin.close()


def error_line(stderr: str) -> str:
    """The line naming the exception (notes with the worker's traceback follow it)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("fastenv.errors.")]
    assert lines, stderr
    return lines[-1]


@pytest.mark.parametrize("how", ["file", "stdin", "exec"])
def test_script_without_main_guard_runs(tmp_path, how):
    proc = run_three_ways(tmp_path, how)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    _, name, opensim_loaded = proc.stdout.split()
    assert opensim_loaded == "False"   # the parent never imports OpenSim
    assert not (Path("/dev/shm") / name).exists()


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_multiprocessing_start_method_says_how_to_fix_a_missing_guard(tmp_path, how):
    proc = run_three_ways(tmp_path, how, extra=', start_method="forkserver"')
    assert proc.returncode != 0
    last = error_line(proc.stderr)
    assert last.startswith("fastenv.errors.WorkerError: worker 0 exited with code"), last
    assert 'if __name__ == "__main__":' in last and "start_method='subprocess'" in last


def test_pool_imports_no_env_module():
    for path in (ROOT / "fastenv" / "pool").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert not any(w.rstrip(",") in ("fastenv.env", "fastenv.envs", "opensim")
                               or w.startswith(("fastenv.env.", "fastenv.envs."))
                               for w in words), f"{path.name}: {line}"


TOY = textwrap.dedent("""
    import gymnasium as gym
    import numpy as np

    class ToyEnv(gym.Env):
        info_scalars = {"count": np.int64, "flag": np.bool_, "value": np.float32}

        def __init__(self, horizon=3):
            self.horizon = horizon
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
            self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return np.array([0.0, float(seed or 0)]), {"count": 0, "flag": False}

        def step(self, action):
            self.t += 1
            info = {"count": 2**53 + self.t, "flag": self.t % 2 == 1, "value": 0.5,
                    "note": f"t={self.t}"}
            return (np.array([self.t, float(action[0])]), float(self.t),
                    self.t >= self.horizon, False, info)
""")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A pure-Python env in a module the workers import through the parent's sys.path."""
    (tmp_path / "toy_env_mod.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return EnvFactory("toy_env_mod:ToyEnv", {"horizon": 3})


def _step(pool, ids, action):
    pool.arrays.actions[ids] = action
    pool.send(b"S", ids)
    return dict(pool.collect(len(ids)))


@pytest.mark.parametrize("start_method", ["subprocess", "fork", "forkserver", "spawn"])
def test_any_env_factory_and_its_info_scalars(toy, start_method):
    pool = Pool(toy, 3, 2, AutoresetMode.SAME_STEP, start_method=start_method)
    try:
        assert pool.info_scalars == {"count": np.dtype(np.int64), "flag": np.dtype(bool),
                                     "value": np.dtype(np.float32)}
        ids = np.arange(3, dtype=np.int32)
        a = pool.arrays
        a.seed[ids], a.seed_set[ids] = [5, 6, 7], True
        pool.send(b"R", ids)
        pool.collect(3)
        np.testing.assert_array_equal(a.obs[:, 1], [5, 6, 7])
        assert a.info_present[:, :2].all() and not a.info_present[:, 2].any()
        extras = _step(pool, ids, 0.25)
        assert a.info["count"].tolist() == [2**53 + 1] * 3   # exact: int64 stays int64
        assert a.info["flag"].all() and a.info["value"].dtype == np.float32
        assert [extras[i] for i in ids] == [{"note": "t=1"}] * 3   # non-scalars travel
        _step(pool, ids, 0.0)
        extras = _step(pool, ids, 0.0)   # SAME_STEP: the third step ends and resets
        assert a.final.all() and a.terminated.all() and (a.obs[:, 0] == 0).all()
        assert a.final_info["count"].tolist() == [2**53 + 3] * 3
        assert extras[0]["final_info_extra"] == {"note": "t=3"}
    finally:
        pool.close()


def test_env_without_info_scalars():
    pool = Pool(EnvFactory("gymnasium.envs.classic_control.pendulum:PendulumEnv"), 2, 1)
    try:
        assert pool.info_scalars == {} and pool.arrays.info_present.shape == (2, 0)
        pool.send(b"R", np.arange(2, dtype=np.int32))
        pool.collect(2)
        assert np.isfinite(pool.arrays.obs).all()
    finally:
        pool.close()


def test_factory_from_main_module_is_explained(tmp_path):
    script = tmp_path / "main_factory.py"
    script.write_text(textwrap.dedent("""
        from fastenv.pool import Pool
        class Make:
            def __call__(self):
                raise AssertionError("never built")
        Pool(Make(), 1, 1)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    last = error_line(proc.stderr)
    assert "WorkerError: worker 0 could not load its env factory: AttributeError" in last, last
    assert "define the env factory in an importable module" in last


def test_bad_pool_arguments(toy):
    with pytest.raises(ValueError, match="start_method must be one of .* got 'thread'"):
        Pool(toy, 2, 1, start_method="thread")
    with pytest.raises(ValueError, match=r"num_workers must be in \[1, num_envs=2\], got 3"):
        Pool(toy, 2, 3)
    with pytest.raises(TypeError, match="env_fn must be picklable"):
        Pool(lambda: None, 2, 1)
    with pytest.raises(ValueError, match="entry_point must be 'module:attribute'"):
        EnvFactory("toy_env_mod.ToyEnv")
    with pytest.raises(WorkerError, match="worker 0 failed to build env 0: ModuleNotFound"):
        Pool(EnvFactory("no_such_module_xyz:Env"), 2, 1)


def test_pool_started_from_a_thread_outlives_the_thread(toy):
    """PR_SET_PDEATHSIG follows the starting thread, so it is only used from the main
    thread: a pool built in a short-lived thread keeps its workers."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("pool", Pool(toy, 2, 2)))
    t.start()
    t.join()
    pool = out["pool"]
    try:
        time.sleep(0.3)
        assert all(p.is_alive() for p in pool.procs)
        pool.send(b"R", np.arange(2, dtype=np.int32))
        assert len(pool.collect(2)) == 2
    finally:
        pool.close()


def test_errors_are_runtime_errors_and_pickle():
    import pickle
    errors = [ClosedEnvError("step() called on a closed OsimVectorEnv"),
              PendingCallError("step_wait() called without step_async()"),
              WorkerError("worker 1 exited with code -9", "Traceback ...\n"),
              EnvError(3, "ValueError", "bad\nvalue", "Traceback ...\n", "call('x')")]
    for exc in errors:
        assert isinstance(exc, RuntimeError)
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    assert str(errors[3]) == "env 3 raised in its worker in call('x'): ValueError: bad value"
    assert errors[3].__notes__ == ["worker traceback:\nTraceback ..."]
