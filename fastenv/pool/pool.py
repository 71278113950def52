"""The parent side of the pool: worker processes, env placement, completion messages.

Start-up is two-phase: every worker builds its envs and reports their spaces, then
the parent sizes and creates the shared segment and tells the workers to attach.
The parent itself never loads OpenSim.
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
    """A worker failed to start or died."""


class Pool:
    """``num_workers`` processes stepping ``num_envs`` envs (env ``i`` on worker
    ``i * num_workers // num_envs``, contiguous blocks)."""

    def __init__(self, num_envs: int, env_kwargs: dict, num_workers: int,
                 autoreset_mode: str, start_method: str = "forkserver",
                 start_timeout: float = 300.0):
        self.num_envs, self.num_workers = num_envs, num_workers
        self.env_kwargs, self.autoreset_mode = env_kwargs, autoreset_mode
        self.ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self.ctx.set_forkserver_preload(["fastenv.pool.worker", "fastenv.env"])
        self.owner = np.array([i * num_workers // num_envs for i in range(num_envs)])
        self.worker_envs = [np.flatnonzero(self.owner == w).astype(np.int32)
                            for w in range(num_workers)]
        self.conns, self.procs = [], []
        self.arrays = None
        self.closed = False
        self._pending = np.zeros(num_envs, dtype=bool)
        try:
            self._start(start_timeout)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ start
    def _spawn(self, w):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker_main, name=f"fastenv-worker-{w}", daemon=True,
                             args=(child, self.worker_envs[w], self.env_kwargs,
                                   self.autoreset_mode))
        p.start()
        child.close()
        return parent, p

    def _expect(self, conn, proc, kind, timeout):
        deadline = time.monotonic() + timeout
        while not conn.poll(0.1):
            if not proc.is_alive():
                raise PoolError(f"worker {proc.name} exited with code {proc.exitcode} "
                                "during start-up")
            if time.monotonic() > deadline:
                raise PoolError(f"worker {proc.name} did not start within {timeout} s")
        msg = conn.recv()
        if msg[0] == "error":
            raise PoolError(f"worker {proc.name} failed to build its envs: {msg[1]}")
        if msg[0] != kind:
            raise PoolError(f"worker {proc.name}: expected {kind!r}, got {msg[0]!r}")
        return msg

    def _start(self, timeout):
        for w in range(self.num_workers):
            conn, proc = self._spawn(w)
            self.conns.append(conn)
            self.procs.append(proc)
        spaces = [self._expect(c, p, "spaces", timeout)[1]
                  for c, p in zip(self.conns, self.procs)]
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
        self.pids = [self._expect(c, p, "ready", timeout)[1]
                     for c, p in zip(self.conns, self.procs)]

    # ------------------------------------------------------------------ commands
    def send(self, cmd: bytes, env_ids: np.ndarray):
        """Send a step (``b"S"``) or reset (``b"R"``) for ``env_ids`` to their workers."""
        env_ids = np.asarray(env_ids, dtype=np.int32)
        self._pending[env_ids] = True
        owners = self.owner[env_ids]
        for w in np.unique(owners):
            ids = env_ids[owners == w]
            self.conns[w].send_bytes(cmd + ids.tobytes())

    @property
    def pending(self) -> int:
        return int(self._pending.sum())

    def collect(self, n: int, timeout: float | None = None):
        """Wait for ``n`` finished envs; returns ``[(env_id, extra_or_None), ...]``
        in completion order. Raises TimeoutError (leaving the rest pending)."""
        done = []
        deadline = None if timeout is None else time.monotonic() + timeout
        busy = {self.conns[w]: w for w in np.unique(self.owner[self._pending])}
        while len(done) < n:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(busy), timeout=left if left is not None else 1.0)
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"{n - len(done)} of {n} envs did not finish "
                                       f"within {timeout} s")
                self._check_alive()
                continue
            for conn in ready:
                try:
                    msg = conn.recv_bytes()
                except (EOFError, OSError):
                    self._check_alive()
                    raise PoolError(f"worker {busy[conn]} closed its pipe")
                i = _ID.unpack_from(msg)[0]
                extra = pickle.loads(msg[4:]) if len(msg) > 4 else None
                self._pending[i] = False
                done.append((i, extra))
                if not self._pending[self.owner == busy[conn]].any():
                    del busy[conn]
                if len(done) == n:
                    break
        return done

    def _check_alive(self):
        for w, p in enumerate(self.procs):
            if not p.is_alive():
                raise PoolError(f"worker {w} (pid {p.pid}) died with exit code {p.exitcode}")

    def rare(self, what: str, env_ids, *args):
        """Run a pickled command on the workers owning ``env_ids``; results in order."""
        env_ids = np.asarray(env_ids, dtype=np.int64)
        results = {}
        for w in np.unique(self.owner[env_ids]):
            ids = [int(i) for i in env_ids[self.owner[env_ids] == w]]
            self.conns[w].send_bytes(b"P" + pickle.dumps((what, (ids, *args))))
            ok, value = pickle.loads(self.conns[w].recv_bytes())
            if not ok:
                raise RuntimeError(f"{what} failed in worker {w}: {value}")
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
