"""Scheduling in the pool. Load balancing (``active_workers < num_workers``): the parent
dispatches env steps one at a time to at most ``active_workers`` workers, the free core
to the worker with the most predicted work left. Envs never change workers, so results
must be bit-identical to unbalanced stepping. Batched replies (a synchronous step): one
message per worker, and a long batch is not mistaken for a hung worker."""
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from fastenv.pool import EnvFactory, Pool
from fastenv.vector import OsimVectorEnv

TOY = '''
import os, time
import gymnasium as gym
import numpy as np


class TimedEnv(gym.Env):
    """Env ``seed`` sleeps ``costs[seed]`` seconds per step; its info says when its
    step ran (CLOCK_MONOTONIC: comparable across processes) and in which process."""
    info_scalars = {"t0": np.float64, "t1": np.float64, "pid": np.int64}

    def __init__(self, costs=(0.001,), horizon=1000):
        # a respawned worker's build (a recycle) takes this long: the other workers'
        # replies wait in their pipes meanwhile
        time.sleep(float(os.environ.get("TIMED_ENV_BUILD_S", "0")))
        self.costs, self.horizon = costs, horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.id = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.id = seed
        self.t = 0
        return np.array([self.id, 0.0]), {}

    def step(self, action):
        t0 = time.monotonic()
        time.sleep(self.costs[self.id % len(self.costs)])
        self.t += 1
        info = {"t0": t0, "t1": time.monotonic(), "pid": os.getpid()}
        return np.array([self.id, self.t]), 1.0, self.t >= self.horizon, False, info

    def get_state(self):   # recycle_every moves it to a fresh process
        return self.id, self.t

    def set_state(self, state):
        self.id, self.t = state
'''


@pytest.fixture
def timed(tmp_path, monkeypatch):
    (tmp_path / "timed_env_mod.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return lambda **kw: EnvFactory("timed_env_mod:TimedEnv", kw)


def _reset(pool, n):
    ids = np.arange(n, dtype=np.int32)
    pool.arrays.seed[ids], pool.arrays.seed_set[ids] = ids, True
    pool.send(b"R", ids)
    pool.collect(n)
    return ids


def _step(pool, ids):
    pool.send(b"S", ids)
    done = pool.collect(len(ids))
    info = pool.arrays.info
    return [i for i, _ in done], info["t0"][ids].copy(), info["t1"][ids].copy()


def test_at_most_active_workers_step_at_once(timed):
    pool = Pool(timed(costs=(0.01,)), 8, 4, active_workers=2)
    try:
        ids = _reset(pool, 8)
        for _ in range(3):
            _, t0, t1 = _step(pool, ids)
            events = sorted([(t, 1) for t in t0] + [(t, -1) for t in t1],
                            key=lambda e: (e[0], e[1]))
            assert max(np.cumsum([d for _, d in events])) <= 2
        assert pool.balanced and not pool._outstanding.any() and not pool._queued_work.any()
        pids = pool.arrays.info["pid"]
        assert [len(set(pids[pool.worker_envs[w]])) for w in range(4)] == [1] * 4
    finally:
        pool.close()


def test_the_worker_with_most_work_left_goes_first(timed):
    """Worker 0 holds envs of 30 + 30 ms, worker 1 envs of 200 + 1 ms; one core. Once the
    costs are measured, worker 1's 200-ms env runs first, then worker 0's envs (60 ms
    queued against 1), and worker 1's cheap env last. (The margins, 140 ms and 29 ms,
    are wide so that a loaded machine's late wake-ups do not reorder the measured
    costs.)"""
    pool = Pool(timed(costs=(0.03, 0.03, 0.2, 0.001)), 4, 2, active_workers=1)
    try:
        ids = _reset(pool, 4)
        _step(pool, ids)   # measures every env's cost
        order, t0, _ = _step(pool, ids)
        assert order[0] == 2 and order[-1] == 3 and sorted(order[1:3]) == [0, 1]
        assert list(np.argsort(t0)) == order
    finally:
        pool.close()


def test_balanced_pool_recovers_a_killed_worker(timed):
    pool = Pool(timed(costs=(0.002,)), 6, 3, AutoresetMode.SAME_STEP,
                active_workers=2, faults=[("kill", 4, 0)])
    try:
        ids = _reset(pool, 6)
        pool.send(b"S", ids)
        done = dict(pool.collect(6))
        assert pool.restarts == 1 and done[4]["worker_restarted"]
        pool.send(b"S", ids)
        done = dict(pool.collect(6))
        assert not any(done.values()) and not pool._outstanding.any()
    finally:
        pool.close()


def test_bad_active_workers(timed):
    with pytest.raises(ValueError, match=r"active_workers must be an int in \[1, "
                                         r"num_workers=2\] or None, got 3"):
        Pool(timed(), 4, 2, active_workers=3)
    with pytest.raises(ValueError, match="active_workers must be an int >= 1 or None, got 0"):
        OsimVectorEnv(num_envs=2, active_workers=0)


def _balanced_and_plain(mode, actions):
    """Per run (W workers; W + 1 workers with W active): every step's observations,
    rewards and flags, flattened, and the episode ends."""
    n = actions.shape[1]
    out, ends = [], []
    for kw in ({"num_workers": 2}, {"num_workers": 3, "active_workers": 2}):
        venv = OsimVectorEnv(num_envs=n, autoreset_mode=mode, **kw)
        try:
            obs, _ = venv.reset(seed=11)
            rows, done = [obs], 0
            for a in actions:
                obs, rew, term, trunc, _ = venv.step(a)
                rows.append(np.concatenate([obs.ravel(), rew, term, trunc]))
                done += int((term | trunc).sum())
            out.append(np.concatenate([r.ravel() for r in rows]))
            ends.append(done)
        finally:
            venv.close()
    return out, ends


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_balanced_vector_env_is_bit_identical(mode):
    """Falls and resets included: envs 0 and 1 get no excitation and collapse (env 1
    at steps 45 and 80, env 0 at 127 with the references of 2026-12-04; within 80 steps
    env 0 no longer fell). 11-14 s each: collapsed models no longer crawl."""
    rng = np.random.default_rng(3)
    actions = rng.uniform(0, 1, (150, 3, 18)).astype(np.float32)
    actions[:, :2] = 0.0
    out, ends = _balanced_and_plain(mode, actions)
    assert ends[0] == ends[1] >= 3
    np.testing.assert_array_equal(out[0], out[1])


def test_balanced_send_recv_steps_every_env_it_was_sent(timed):
    """envpool-style: envs sent while others are queued or in flight; each env takes
    exactly the steps it was sent."""
    pool = Pool(timed(costs=(0.001, 0.004)), 8, 4, active_workers=2)
    try:
        ids = _reset(pool, 8)
        pool.send(b"S", ids)
        sent = np.ones(8, dtype=int)
        for _ in range(6):
            first = np.array([i for i, _ in pool.collect(4)], dtype=np.int32)
            pool.send(b"S", first)
            sent[first] += 1
        pool.collect(pool.pending)
        np.testing.assert_array_equal(pool.arrays.obs[:, 1], sent)
        assert not pool._outstanding.any() and not any(pool._queued)
    finally:
        pool.close()


def test_batched_reply_is_one_message_and_not_a_hang(timed):
    """4 envs of 0.3 s on one worker: the batch takes 1.2 s, over step_timeout = 0.7 s,
    but the worker reports each env's progress in shared memory, so it is not killed;
    a collect of part of the batch leaves the rest for the next one."""
    pool = Pool(timed(costs=(0.3,)), 4, 1, step_timeout=0.7)
    try:
        ids = _reset(pool, 4)
        pool.send(b"S", ids, batch=True)
        assert pool._batched[0]
        first = pool.collect(2)
        assert [i for i, _ in first] == [0, 1] and pool.pending == 2
        rest = pool.collect(2)
        assert [i for i, _ in rest] == [2, 3] and pool.pending == 0
        assert pool.restarts == 0 and not pool._batched.any()
        assert pool.arrays.steps[ids].tolist() == [1, 1, 1, 1]
        timers = pool.timers()[0]
        assert timers["calls"] == 8 and timers["busy_s"] >= 1.2
    finally:
        pool.close()


def _pipelined(pool, n, rounds):
    """envpool-style rounds: the first env to finish is sent again at once, so a worker
    always has an env in flight; returns how many steps each env was sent."""
    ids = _reset(pool, n)
    pool.send(b"S", ids)
    sent = np.ones(n, dtype=int)
    for _ in range(rounds):
        for i, _ in pool.collect(1, timeout=30):
            pool.send(b"S", np.array([i], dtype=np.int32))
            sent[i] += 1
    return sent


@pytest.mark.parametrize("active_workers", [None, 1], ids=["plain", "balanced"])
def test_recycling_under_send_recv_moves_every_env(timed, active_workers):
    """A worker due for recycling always has an env in flight under send/recv: its
    commands wait until its steps are in (balanced: it is recycled before its next
    dispatch), and each env's state goes along (its step count)."""
    pool = Pool(timed(), 4, 2, recycle_every=4, active_workers=active_workers)
    try:
        sent = _pipelined(pool, 4, 40)
        assert pool.recycles >= 8 and pool.restarts == 0
        pool.collect(pool.pending, timeout=30)
        np.testing.assert_array_equal(pool.arrays.obs[:, 1], sent)
    finally:
        pool.close()


def test_an_interrupted_or_failed_recycle_is_not_a_hang(timed, monkeypatch):
    """Ctrl-C inside a recycle keeps the held commands, and the next collect recycles
    and sends them (drop_in_flight's drain had hung); a recycle that raises is a worker
    failure: its envs are reported restarted, not lost."""
    pool = Pool(timed(), 4, 2, recycle_every=4)
    recycle, faults = Pool._recycle_worker, []

    def faulty(self, w):
        if faults:
            raise faults.pop(0)
        return recycle(self, w)
    monkeypatch.setattr(Pool, "_recycle_worker", faulty)
    try:
        faults.append(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            _pipelined(pool, 4, 40)
        assert pool.pending and any(pool._held)
        drained = pool.collect(pool.pending, timeout=10)
        assert not pool.pending and pool.restarts == 0
        assert not any((extra or {}).get("worker_restarted") for _, extra in drained)
        faults.append(RuntimeError("get_states failed"))
        _pipelined(pool, 4, 40)   # its collects report the failed worker's envs
        pool.collect(pool.pending, timeout=10)
        assert pool.restarts == 1 and not pool.pending
    finally:
        pool.close()


def test_a_recycle_does_not_time_out_the_other_workers(timed, monkeypatch):
    """A recycle holds the parent while the new worker builds (2.5 s here, over
    step_timeout = 1 s); the other worker's reply waits in its pipe meanwhile, which
    is not a hang: no worker is killed."""
    pool = Pool(timed(), 4, 2, recycle_every=4, step_timeout=1.0)
    try:
        monkeypatch.setenv("TIMED_ENV_BUILD_S", "2.5")   # the respawned workers' builds
        _pipelined(pool, 4, 12)
        pool.collect(pool.pending, timeout=30)
        assert pool.recycles >= 2 and pool.restarts == 0
    finally:
        pool.close()


def test_a_restarted_worker_does_not_grow_a_batch(timed):
    """A worker killed with envs in flight reports them all at once; collect(1) still
    returns one row, and the others stay pending for the next collects (a batch larger
    than asked breaks fixed-shape consumers, JAX's jit among them)."""
    pool = Pool(timed(costs=(0.05,)), 4, 1, faults=[("kill", 2, 0)])
    try:
        ids = _reset(pool, 4)
        pool.send(b"S", ids)
        rows = [pool.collect(1) for _ in range(4)]
        assert [len(r) for r in rows] == [1, 1, 1, 1] and pool.pending == 0
        assert pool.restarts == 1
        reported = dict(row for r in rows for row in r)
        assert sorted(reported) == [0, 1, 2, 3]
        # envs 0 and 1 finished before the kill; 2 (killed in its step) and 3 restart
        assert reported[2]["worker_restarted"] and reported[3]["worker_restarted"]
    finally:
        pool.close()
