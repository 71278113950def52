"""The parent side of the pool: worker processes, env placement, completion messages,
and recovery from worker crashes, hangs and memory growth.

Start-up is two-phase: every worker builds its envs and reports their spaces, then the
parent sizes and creates the shared segment and tells the workers to attach. The
parent itself never loads OpenSim.

Recovery: a worker that dies (SIGKILL, segfault) is noticed at once through its pipe;
one that sends nothing for ``step_timeout`` seconds while it has envs in flight is
killed. Either way it is respawned with the same envs, which are reset (deterministic
seeds) and reported truncated with ``worker_restarted``; other workers' envs are not
touched. ``recycle_every`` replaces a worker after that many env steps by moving its
envs' states to a fresh process (transparent to the caller).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import struct
import time
from multiprocessing.connection import wait

import numpy as np

from fastenv.pool.shared import LayoutSpec, SharedArrays
from fastenv.pool.worker import worker_main

_ID = struct.Struct("<i")


class PoolError(RuntimeError):
    """A worker failed to start or could not be recovered."""


class Pool:
    """``num_workers`` processes stepping ``num_envs`` envs (env ``i`` on worker
    ``i * num_workers // num_envs``, contiguous blocks)."""

    def __init__(self, num_envs: int, env_kwargs: dict, num_workers: int,
                 autoreset_mode: str, start_method: str = "forkserver",
                 start_timeout: float = 300.0, step_timeout: float | None = None,
                 recycle_every: int | None = None, faults=()):
        self.num_envs, self.num_workers = num_envs, num_workers
        self.env_kwargs, self.autoreset_mode = env_kwargs, autoreset_mode
        self.start_timeout, self.step_timeout = start_timeout, step_timeout
        self.recycle_every = recycle_every
        self.ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self.ctx.set_forkserver_preload(["fastenv.pool.worker", "fastenv.env"])
        self.owner = np.array([i * num_workers // num_envs for i in range(num_envs)])
        self.worker_envs = [np.flatnonzero(self.owner == w).astype(np.int32)
                            for w in range(num_workers)]
        self.conns, self.procs, self.pids = [], [], []
        self.arrays = None
        self.closed = False
        self._pending = np.zeros(num_envs, dtype=bool)
        self._heard = np.zeros(num_workers)          # last message from / send to worker
        self._steps_since_spawn = np.zeros(num_workers, dtype=np.int64)
        self._lost = np.zeros(num_envs, dtype=bool)  # restarted while not in flight
        self._synthetic = []                         # completions owed for lost envs
        self.restarts = 0                            # worker respawns after failures
        self.recycles = 0
        self.env_restarts = np.zeros(num_envs, dtype=np.int64)
        self._faults = list(faults)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ processes
    def _spawn(self, w, faults=()):
        parent, child = self.ctx.Pipe()
        faults = [f for f in faults if self.owner[f[1]] == w]
        p = self.ctx.Process(target=worker_main, name=f"fastenv-worker-{w}", daemon=True,
                             args=(child, self.worker_envs[w], self.env_kwargs,
                                   self.autoreset_mode, faults))
        p.start()
        child.close()
        return parent, p

    def _expect(self, conn, proc, kind):
        deadline = time.monotonic() + self.start_timeout
        while not conn.poll(0.1):
            if not proc.is_alive():
                raise PoolError(f"worker {proc.name} exited with code {proc.exitcode} "
                                "during start-up")
            if time.monotonic() > deadline:
                raise PoolError(f"worker {proc.name} did not start within "
                                f"{self.start_timeout} s")
        msg = conn.recv()
        if msg[0] == "error":
            raise PoolError(f"worker {proc.name} failed to build its envs: {msg[1]}")
        if msg[0] != kind:
            raise PoolError(f"worker {proc.name}: expected {kind!r}, got {msg[0]!r}")
        return msg

    def _start(self):
        for w in range(self.num_workers):
            conn, proc = self._spawn(w, self._faults)
            self.conns.append(conn)
            self.procs.append(proc)
        spaces = [self._expect(c, p, "spaces")[1] for c, p in zip(self.conns, self.procs)]
        self.observation_space, self.action_space = spaces[0]
        for obs_space, act_space in spaces[1:]:
            if obs_space != self.observation_space or act_space != self.action_space:
                raise PoolError("workers built envs with different spaces")
        self.spec = LayoutSpec(self.num_envs, self.observation_space.shape[0],
                               self.action_space.shape[0],
                               self.observation_space.dtype.name)
        self.arrays = SharedArrays(self.spec)
        for conn in self.conns:
            conn.send(("attach", self.arrays.name, self.spec))
        self.pids = [self._expect(c, p, "ready")[1] for c, p in zip(self.conns, self.procs)]

    def _replace(self, w):
        """Kill worker ``w`` if needed and start a fresh one with the same envs."""
        old = self.procs[w]
        if old.is_alive():
            old.kill()
        old.join(5.0)
        self.conns[w].close()
        conn, proc = self._spawn(w)
        self.conns[w], self.procs[w] = conn, proc
        self._expect(conn, proc, "spaces")
        conn.send(("attach", self.arrays.name, self.spec))
        self.pids[w] = self._expect(conn, proc, "ready")[1]
        self._steps_since_spawn[w] = 0
        self._heard[w] = time.monotonic()

    def _call_worker(self, w, what, *args):
        self.conns[w].send_bytes(b"P" + pickle.dumps((what, args)))
        ok, value = pickle.loads(self.conns[w].recv_bytes())
        if not ok:
            raise RuntimeError(f"{what} failed in worker {w}: {value}")
        return value

    def _recover(self, w, reason: str):
        """Respawn worker ``w``; its envs are reset and reported truncated."""
        ids = self.worker_envs[w]
        was_pending = self._pending[ids].copy()
        self._replace(w)
        self.restarts += 1
        self.env_restarts[ids] += 1
        a = self.arrays
        for i in ids:   # deterministic seeds: the same faults give the same rollouts
            a.seed[i] = int(np.random.SeedSequence(
                [int(i), int(self.env_restarts[i])]).generate_state(1)[0])
            a.seed_set[i] = True
        self.conns[w].send_bytes(b"R" + ids.tobytes())
        for _ in ids:
            self.conns[w].recv_bytes()
        self._call_worker(w, "mark_done", [int(i) for i in ids])
        a.reward[ids] = 0.0
        a.terminated[ids] = False
        a.truncated[ids] = True
        # SAME_STEP wants a final observation; the real one died with the worker, so
        # the reset observation stands in (flagged by worker_restarted)
        same_step = self.autoreset_mode == "same_step"
        a.final[ids] = same_step
        if same_step:
            a.final_obs[ids] = a.obs[ids]
            a.final_reward[ids] = 0.0
            a.final_info_present[ids] = False
        self._pending[ids] = False
        self._lost[ids[~was_pending]] = True
        return [int(i) for i in ids[was_pending]], {"worker_restarted": True,
                                                    "worker_error": reason}

    # ------------------------------------------------------------------ commands
    def send(self, cmd: bytes, env_ids: np.ndarray):
        """Send a step (``b"S"``) or reset (``b"R"``) for ``env_ids`` to their workers."""
        env_ids = np.asarray(env_ids, dtype=np.int32)
        lost = env_ids[self._lost[env_ids]]
        if len(lost):
            # restarted while idle: their old episode ended with the crash; report that
            # instead of stepping (their shared rows already hold the reset obs)
            self._lost[lost] = False
            if cmd == b"S":
                self._synthetic.extend(int(i) for i in lost)
                self._pending[lost] = True
                env_ids = env_ids[~np.isin(env_ids, lost)]
            self.arrays.truncated[lost] = cmd == b"S"
        self._pending[env_ids] = True
        owners = self.owner[env_ids]
        now = time.monotonic()
        for w in np.unique(owners):
            ids = env_ids[owners == w]
            self._heard[w] = now
            try:
                self.conns[w].send_bytes(cmd + ids.tobytes())
            except (OSError, ValueError):
                pass  # dead worker: collect() notices and recovers
            if cmd == b"S":
                self._steps_since_spawn[w] += len(ids)

    @property
    def pending(self) -> int:
        return int(self._pending.sum())

    def collect(self, n: int, timeout: float | None = None):
        """Wait for ``n`` finished envs; returns ``[(env_id, extra_or_None), ...]``
        in completion order. Raises TimeoutError (leaving the rest pending)."""
        done = []
        restarted = {}
        while self._synthetic and len(done) < n:
            i = self._synthetic.pop(0)
            self._pending[i] = False
            done.append((i, {"worker_restarted": True, "worker_error": "restarted earlier"}))
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(done) < n:
            busy = {self.conns[w]: w for w in np.unique(self.owner[self._pending])}
            if not busy:
                raise PoolError(f"collect({n}) but only {len(done)} envs were in flight")
            wait_for = 1.0
            if deadline is not None:
                wait_for = min(wait_for, max(0.0, deadline - time.monotonic()))
            if self.step_timeout is not None:
                first = min(self._heard[w] for w in busy.values())
                wait_for = min(wait_for, max(0.0, first + self.step_timeout - time.monotonic()))
            ready = wait(list(busy), timeout=wait_for)
            for conn in ready:
                if len(done) >= n:
                    break   # the rest stays queued in its pipe for the next collect
                w = busy[conn]
                try:
                    msg = conn.recv_bytes()
                except (EOFError, OSError):
                    code = self.procs[w].exitcode
                    self.procs[w].join(1.0)
                    code = self.procs[w].exitcode if code is None else code
                    ids, extra = self._recover(w, f"worker {w} died (exit code {code})")
                    done.extend((i, dict(extra)) for i in ids)
                    restarted[w] = extra
                    continue
                self._heard[w] = time.monotonic()
                i = _ID.unpack_from(msg)[0]
                extra = pickle.loads(msg[4:]) if len(msg) > 4 else None
                self._pending[i] = False
                done.append((i, extra))
            if self.step_timeout is not None:
                now = time.monotonic()
                for w in set(busy.values()):
                    if (self._pending[self.worker_envs[w]].any()
                            and now - self._heard[w] > self.step_timeout):
                        ids, extra = self._recover(
                            w, f"worker {w} exceeded step_timeout={self.step_timeout} s")
                        done.extend((i, dict(extra)) for i in ids)
                        restarted[w] = extra
            if not ready and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{n - len(done)} of {n} envs did not finish "
                                   f"within {timeout} s")
        if restarted:
            # envs of a restarted worker that had already reported in this batch lost
            # their state too: report them truncated as well
            for k, (i, extra) in enumerate(done):
                w = int(self.owner[i])
                if w in restarted and not (extra or {}).get("worker_restarted"):
                    done[k] = (i, dict(extra or {}, **restarted[w]))
                    self._lost[i] = False
        if self.recycle_every:
            self._recycle()
        return done

    def _recycle(self):
        """Move the envs of workers past ``recycle_every`` steps to fresh processes."""
        for w in range(self.num_workers):
            if (self._steps_since_spawn[w] >= self.recycle_every
                    and not self._pending[self.worker_envs[w]].any()):
                ids = [int(i) for i in self.worker_envs[w]]
                states = self._call_worker(w, "get_states", ids)
                self._call_worker(w, "close")
                self._replace(w)
                self._call_worker(w, "set_states", ids, states)
                self.recycles += 1

    def rare(self, what: str, env_ids, *args):
        """Run a pickled command on the workers owning ``env_ids``; results in order."""
        env_ids = np.asarray(env_ids, dtype=np.int64)
        results = {}
        for w in np.unique(self.owner[env_ids]):
            ids = [int(i) for i in env_ids[self.owner[env_ids] == w]]
            value = self._call_worker(w, what, ids, *args)
            if value is not None:
                results.update(zip(ids, value))
        return [results[int(i)] for i in env_ids] if results else None

    # ------------------------------------------------------------------ close
    def close(self, timeout: float = 5.0):
        """Stop the workers (politely, then by force) and unlink the shared segment.
        Safe to call more than once and from atexit/__del__."""
        if self.closed:
            return
        self.closed = True
        if not self._pending.any():
            for conn in self.conns:
                try:
                    conn.send_bytes(b"P" + pickle.dumps(("close", None)))
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(1.0)
        for conn in self.conns:
            conn.close()
        if self.arrays is not None:
            self.arrays.close()

    def __del__(self):
        try:
            self.close(timeout=1.0)
        except Exception:
            pass


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
