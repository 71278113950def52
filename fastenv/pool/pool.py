"""The parent side of the pool: worker processes, env placement, completion messages,
and recovery from worker crashes, hangs and memory growth.

Launch: by default (``start_method="subprocess"``) each worker is a fresh interpreter,
``python -c <boot>``, that inherits one end of a socket pair; nothing of the parent's
``__main__`` is re-run, so scripts without an ``if __name__ == "__main__":`` guard,
``python - < script.py`` and ``exec`` in a notebook all work. The multiprocessing
methods (``fork``, ``forkserver``, ``spawn``) remain available.

Start-up is two-phase: every worker builds its envs (with the pool's picklable env
factory) and reports their spaces and ``info_scalars``, then the parent sizes and
creates the shared segment and tells the workers to attach. The parent itself never
imports the env's module (for fastenv, OpenSim).

Recovery: a worker that dies (SIGKILL, segfault) is noticed at once through its pipe;
one that makes no progress (no message, no env finished in its shared ``progress``
row) for ``step_timeout`` seconds while it has envs in flight is killed. Either way it
is respawned with the same envs, the ``configure`` calls are made again, and the envs
are reset (deterministic seeds) and reported truncated with ``worker_restarted`` (those
not in flight at their next step); a reset in flight is made again as asked (its seed
and start frame), flagged with ``worker_restarted``; other workers' envs are not touched.
``recycle_every`` replaces a worker that has stepped that many env steps, once none of
its envs is in flight, by moving its envs' states to a fresh process: episodes go on,
equal within integrator accuracy. Under pipelined ``send``/``recv`` a due worker's
envs are rarely all idle, so the commands sent to it are held back until its steps in
flight are in; the next ``collect`` replaces it then and sends them to the new process
(with load balancing, a due worker is replaced before its next dispatch). A recycle
that fails is a worker failure (above); one interrupted keeps the commands held for the
next ``collect``.

Load balancing (``active_workers < num_workers``): a synchronous step waits for the
slowest worker, and envs' step costs differ severalfold (contacts, falls, the first
step of an episode), so with one worker per core a core idles at the end of most
steps. With more workers than ``active_workers`` (the cores to use), the parent
dispatches env steps one at a time: at most ``active_workers`` workers step an env at
any moment, and a core that comes free goes to the idle worker with the most predicted
work left (the sum, over its envs still to step, of each env's moving average of its
measured step times), whose costliest env goes first. Envs never move between
workers, so every env's results are bit-identical to those without balancing; only
when each env steps changes. Resets are sent at once, as without balancing.
"""
from __future__ import annotations

import atexit
import builtins
import heapq
import multiprocessing as mp
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import wait

import numpy as np
from gymnasium.vector import AutoresetMode

from fastenv.errors import (
    ClosedEnvError,
    PendingCallError,
    WorkerError,
    WorkerValueError,
    env_error,
    one_line,
    warn_caller,
)
from fastenv.pool.shared import LayoutSpec, SharedArrays
from fastenv.pool.worker import RECORD, worker_main

_ID = struct.Struct("<i")
COST_SMOOTHING = 0.3   # weight of an env's latest step time in its moving average
#: An episode's first step over an env's average step, before it is measured: the
#: integrator restarts its step-size control and muscles and contacts settle
#: (about 3 for MuscleWalkingImitation2D-v0, docs/performance.md).
FIRST_STEP_RATIO = 3.0
START_METHODS = ("subprocess", "fork", "forkserver", "spawn")

# A worker's whole boot: stdlib only, so nothing runs before sys.path is the parent's.
_BOOT = ("import sys, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "from multiprocessing.connection import Connection; c = Connection({fd}); "
         "sys.path[:] = c.recv(); "
         "from fastenv.pool.worker import serve; serve(c, {ppid}, {pdeathsig})")

_LIVE: weakref.WeakSet[Pool] = weakref.WeakSet()


@atexit.register
def _close_all():
    for pool in list(_LIVE):
        pool.close()


class _Subprocess:
    """A ``subprocess.Popen`` worker with ``multiprocessing.Process``'s interface."""

    def __init__(self, popen: subprocess.Popen, name: str):
        self.popen, self.name = popen, name

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def exitcode(self) -> int | None:   # negative: killed by that signal, as in mp
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self):
        self.popen.kill()   # a no-op once the process has been reaped

    def join(self, timeout: float | None = None):
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


class Pool:
    """``num_workers`` processes stepping ``num_envs`` envs (env ``i`` on worker
    ``i * num_workers // num_envs``, contiguous blocks).

    ``env_fn``: a picklable callable returning an env (e.g. :class:`EnvFactory`), called
    once per env in the workers; the env's ``info_scalars`` attribute (name -> dtype)
    says which infos travel in shared memory. ``active_workers`` below ``num_workers``
    turns on load balancing (module docstring): steps are then dispatched one env at a
    time, and only while the parent is in :meth:`collect` or :meth:`send`.
    """

    def __init__(self, env_fn, num_envs: int, num_workers: int,
                 autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
                 start_method: str = "subprocess", start_timeout: float = 300.0,
                 step_timeout: float | None = None, recycle_every: int | None = None,
                 faults=(), active_workers: int | None = None):
        if not 1 <= num_workers <= num_envs:
            raise ValueError(f"num_workers must be in [1, num_envs={num_envs}], got "
                             f"{num_workers!r}")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {list(START_METHODS)}, got "
                             f"{start_method!r}")
        if active_workers is not None and not (
                isinstance(active_workers, (int, np.integer)) and 1 <= active_workers
                <= num_workers):
            raise ValueError(f"active_workers must be an int in [1, num_workers="
                             f"{num_workers}] or None, got {active_workers!r}")
        try:
            pickle.dumps(env_fn)
        except Exception as exc:
            raise TypeError(f"env_fn must be picklable (workers build the envs), got "
                            f"{env_fn!r}: {exc}") from None
        self.num_envs, self.num_workers = num_envs, num_workers
        self.env_fn, self.autoreset_mode = env_fn, AutoresetMode(autoreset_mode)
        self.start_method = start_method
        self.start_timeout, self.step_timeout = start_timeout, step_timeout
        self.recycle_every = recycle_every
        if start_method != "subprocess":
            self.ctx = mp.get_context(start_method)
            if start_method == "forkserver":
                module = getattr(env_fn, "module", None)
                self.ctx.set_forkserver_preload(
                    ["fastenv.pool.worker"] + ([module] if isinstance(module, str) else []))
        self.owner = np.array([i * num_workers // num_envs for i in range(num_envs)])
        self.worker_envs = [np.flatnonzero(self.owner == w).astype(np.int32)
                            for w in range(num_workers)]
        self.conns, self.procs, self.pids = [], [], []
        self.arrays = None
        self.closed = False
        self._pending = np.zeros(num_envs, dtype=bool)
        self._warned: set[tuple[str, str]] = set()   # worker warnings raised already
        self._ready = np.zeros(num_workers, dtype=bool)  # in its command loop, idle or not
        self._in_call = np.zeros(num_workers, dtype=bool)  # a rare command awaits its reply
        self._heard = np.zeros(num_workers)          # last message from / send to worker
        self._steps_since_spawn = np.zeros(num_workers, dtype=np.int64)
        self._lost = np.zeros(num_envs, dtype=bool)  # restarted while not in flight
        self._synthetic = []                         # completions owed for lost envs
        # what a reset in flight asked for (seed or None, start frame): a worker that dies
        # before it answers is respawned and the reset made again as asked
        self._asked_reset = np.zeros(num_envs, dtype=bool)
        self._asked_seed = np.zeros(num_envs, dtype=np.int64)
        self._asked_seed_set = np.zeros(num_envs, dtype=bool)
        self._asked_start = np.full(num_envs, -1, dtype=np.int64)
        self._backlog = []                           # received beyond a collect's n
        self._batched = np.zeros(num_workers, dtype=bool)  # one reply for its envs due
        # commands for a worker due for recycling, held until its envs in flight are in
        self._held: list[list[tuple[bytes, np.ndarray]]] = [[] for _ in range(num_workers)]
        self.restarts = 0                            # worker respawns after failures
        self.recycles = 0
        self.env_restarts = np.zeros(num_envs, dtype=np.int64)
        # per env, the configuring calls (configure) to make again on a respawned worker,
        # whose envs are built from the spec alone: {env id: {(method, key): args}}
        self._settings: dict[int, dict] = {}
        self._faults = list(faults)
        # load balancing: env steps wait in per-worker queues until a core is free
        self.active_workers = (num_workers if active_workers is None
                               else int(active_workers))
        self.balanced = self.active_workers < num_workers
        self._outstanding = np.zeros(num_workers, dtype=np.int64)  # sent, not reported
        self._queued: list[list[int]] = [[] for _ in range(num_workers)]  # costliest last
        self._queued_work = np.zeros(num_workers)     # predicted seconds queued
        self._cost = np.full(num_envs, np.nan)        # moving average of step seconds
        self._prediction = np.zeros(num_envs)         # of the step queued or in flight
        self._sent_at = np.zeros(num_envs)
        self._timed = np.zeros(num_envs, dtype=bool)  # a dispatched step is in flight
        self._fresh = np.ones(num_envs, dtype=bool)   # next step is an episode's first
        self._first_ratio = FIRST_STEP_RATIO          # its cost over the env's average
        _LIVE.add(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ processes
    def _spawn(self, w, faults=()):
        faults = [f for f in faults if self.owner[f[1]] == w]
        config = (self.env_fn, self.worker_envs[w], self.autoreset_mode, faults)
        name = f"fastenv-worker-{w}"
        # PR_SET_PDEATHSIG follows the thread that starts the worker: ask for it only
        # from the main thread, which lives as long as the process
        main = threading.current_thread() is threading.main_thread()
        parent, child = mp.Pipe()   # a socket pair: both ends are plain fds
        try:
            if self.start_method == "subprocess":
                if not sys.executable:
                    raise WorkerError("sys.executable is empty, so no worker interpreter "
                                      "can be launched; pass start_method='forkserver'")
                fd = child.fileno()
                boot = _BOOT.format(fd=fd, ppid=os.getpid(), pdeathsig=main)
                popen = subprocess.Popen([sys.executable, "-c", boot], pass_fds=(fd,),
                                         stdin=subprocess.DEVNULL)
                proc = _Subprocess(popen, name)
                try:   # buffered by the socket; the worker reads it once it has booted
                    parent.send(list(sys.path))
                    parent.send(config)
                except OSError:
                    pass   # died at once: _expect reports it
            else:   # forkserver's workers are the server's children, not ours
                watch = (os.getpid(), main and self.start_method != "forkserver")
                proc = self.ctx.Process(target=worker_main, name=name, daemon=True,
                                        args=(child, *config, watch))
                proc.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return parent, proc

    def _start_failure(self, w, stage, code) -> str:
        if stage == "started" and self.start_method in ("spawn", "forkserver"):
            return (f"worker {w} exited with code {code} before it started: with "
                    f"start_method={self.start_method!r} multiprocessing re-runs the main "
                    "module in every worker; put the script's code under `if __name__ == "
                    "\"__main__\":` or use the default start_method='subprocess'")
        return (f"worker {w} exited with code {code} during start-up (waiting for "
                f"{stage!r}); its stderr has the reason")

    def _expect(self, w, kind):
        conn, proc = self.conns[w], self.procs[w]
        deadline = time.monotonic() + self.start_timeout
        msg = None
        while msg is None:
            try:
                if conn.poll(0.1):
                    msg = conn.recv()
                    break
            except (EOFError, OSError):
                break
            if not proc.is_alive() and not conn.poll(0):
                break
            if time.monotonic() > deadline:
                raise WorkerError(f"worker {w} did not send {kind!r} within "
                                  f"start_timeout={self.start_timeout} s")
        if msg is None:
            proc.join(1.0)
            raise WorkerError(self._start_failure(w, kind, proc.exitcode))
        if msg[0] == "error":
            _, where, etype, emessage, tb = msg
            hint = ""
            if "__main__" in emessage:
                hint = ("; workers do not run the parent's __main__: define the env "
                        "factory in an importable module")
            # a refused value stays a ValueError, as gym.make raises it for one env
            cls = WorkerValueError if etype == "ValueError" else WorkerError
            raise cls(f"worker {w} {where}: {etype}: {one_line(emessage)}{hint}", tb)
        if msg[0] != kind:
            raise WorkerError(f"worker {w} sent {msg[0]!r} during start-up; expected {kind!r}")
        return msg

    def _raise_warnings(self, notes):
        """Raise the warnings a worker's build caught, each once in the pool's life (the
        workers build the same envs, and a respawned worker builds them again), at the
        caller's line, where ``warnings`` filters and ``catch_warnings`` see them."""
        for name, message in notes:
            if (name, message) not in self._warned:
                self._warned.add((name, message))
                category = getattr(builtins, name, None)
                if not (isinstance(category, type) and issubclass(category, Warning)):
                    category = UserWarning   # a library's own class: not importable here
                warn_caller(message, category)

    def _start(self):
        for w in range(self.num_workers):
            conn, proc = self._spawn(w, self._faults)
            self.conns.append(conn)
            self.procs.append(proc)
        for w in range(self.num_workers):
            self._expect(w, "started")
        built = [self._expect(w, "spaces") for w in range(self.num_workers)]
        for msg in built:
            self._raise_warnings(msg[4])
        spaces = [msg[1:4] for msg in built]
        self.observation_space, self.action_space, info_scalars = spaces[0]
        for w, other in enumerate(spaces[1:], 1):
            if other != spaces[0]:
                raise WorkerError(f"worker {w} built envs with spaces/info_scalars {other}; "
                                  f"expected those of worker 0, {spaces[0]}")
        self.info_scalars = {k: np.dtype(t) for k, t in info_scalars}
        self.spec = LayoutSpec(self.num_envs, self.observation_space.shape[0],
                               self.action_space.shape[0],
                               self.observation_space.dtype.name, tuple(info_scalars))
        self.arrays = SharedArrays(self.spec)
        for conn in self.conns:
            conn.send(("attach", self.arrays.name, self.spec))
        self.pids = [self._expect(w, "ready")[1] for w in range(self.num_workers)]
        self._ready[:] = True

    def _replace(self, w):
        """Kill worker ``w`` if needed and start a fresh one with the same envs; it stays
        not ready: its caller (``_recover``, ``_recycle_worker``) marks it ready once
        its envs are set."""
        old = self.procs[w]
        self._ready[w] = False
        old.kill()
        old.join(5.0)
        self.conns[w].close()
        self.conns[w], self.procs[w] = self._spawn(w)
        self._expect(w, "started")
        self._raise_warnings(self._expect(w, "spaces")[4])
        self.conns[w].send(("attach", self.arrays.name, self.spec))
        self.pids[w] = self._expect(w, "ready")[1]
        self._batched[w] = False
        self._steps_since_spawn[w] = 0
        self._outstanding[w] = 0
        self._heard[w] = time.monotonic()

    def _call_worker(self, w, what, *args):
        self._send_call(w, self._call_message(what, *args))
        return self._receive_call(w, what, *args)

    @staticmethod
    def _call_message(what, *args) -> bytes:
        """A rare command, pickled before anything is sent: an argument that cannot be
        pickled raises here, with no worker left owing a reply."""
        try:
            return b"P" + pickle.dumps((what, args))
        except Exception as exc:
            raise TypeError(f"{what}: its arguments cannot be sent to the workers "
                            f"({type(exc).__name__}: {exc}); expected picklable values"
                            ) from exc

    def _send_call(self, w, message: bytes):
        self._in_call[w] = True
        self.conns[w].send_bytes(message)

    def _receive_call(self, w, what, *args):
        try:
            ok, value = pickle.loads(self.conns[w].recv_bytes())
        except (EOFError, OSError) as exc:
            # the next step finds the process dead and respawns it (_recover)
            self._in_call[w] = False
            raise WorkerError(f"worker {w} died during {what} (exit code "
                              f"{self.procs[w].exitcode}); its envs restart on the next "
                              "step, reported truncated") from exc
        self._in_call[w] = False
        if not ok:
            env_id, etype, emessage, tb = value
            named = what in ("call", "has_attr", "get_attr", "set_attr")
            during = f"{what}({args[1]!r})" if named else what
            raise env_error(env_id, etype, emessage, tb, during=during,
                            attribute_lookup=what in ("call", "get_attr"))
        return value

    def _heal(self):
        """Recover the workers a respawn or recycle left half-done (an interrupt, e.g.
        Ctrl-C, inside it): their pipes may hold start-up messages or replies nobody
        reads, so they are respawned, their envs reset and reported truncated."""
        for w in np.flatnonzero(~self._ready):
            self._in_call[w] = False
            self._report_later(self._recover(int(w), f"worker {w} was interrupted while "
                                                     "being started or recycled"))

    def _recover(self, w, reason: str):
        """Respawn worker ``w``; its envs are reset and reported truncated. Not ready
        until its envs are reset (an interrupt in between: ``_heal``)."""
        ids = self.worker_envs[w]
        self._backlog = [(i, e) for i, e in self._backlog if self.owner[i] != w]
        was_pending = self._pending[ids].copy()
        self._queued[w].clear()
        self._held[w].clear()   # their envs are pending: reported restarted below
        self._queued_work[w] = 0.0
        self._fresh[ids], self._timed[ids] = True, False
        self._replace(w)
        for i in ids:   # before the reset: an option set by configure applies from it
            for (method, _), args in self._settings.get(int(i), {}).items():
                self._call_worker(w, "call", [int(i)], method, args, {})
        self.restarts += 1
        self.env_restarts[ids] += 1
        a = self.arrays
        # a reset in flight is made as asked (its seed, its start frame); the others get
        # deterministic seeds: the same faults give the same rollouts
        asked = was_pending & self._asked_reset[ids]
        for i, as_asked in zip(ids, asked):
            a.start_frame[i] = self._asked_start[i] if as_asked else -1
            if as_asked and self._asked_seed_set[i]:
                a.seed[i] = self._asked_seed[i]
            else:
                a.seed[i] = int(np.random.SeedSequence(
                    [int(i), int(self.env_restarts[i])]).generate_state(1)[0])
            a.seed_set[i] = True
        self.conns[w].send_bytes(b"R" + ids.tobytes())
        for _ in ids:
            self.conns[w].recv_bytes()
        ended = ids[~asked]   # their episodes ended with the crash
        self._call_worker(w, "mark_done", [int(i) for i in ended])
        a.reward[ids] = 0.0
        a.terminated[ids] = False
        a.truncated[ids] = False
        a.truncated[ended] = True
        # SAME_STEP wants a final observation; the real one died with the worker, so
        # the reset observation stands in (flagged by worker_restarted)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        a.final[ids] = False
        a.final[ended] = same_step
        if same_step:
            a.final_obs[ended] = a.obs[ended]
            a.final_reward[ended] = 0.0
            a.final_info_present[ended] = False
        self._pending[ids] = False
        self._asked_reset[ids] = False
        self._lost[ids[~was_pending]] = True
        self._ready[w] = True
        return [int(i) for i in ids[was_pending]], {"worker_restarted": True,
                                                    "worker_error": reason}

    def _check_open(self, what):
        if self.closed:
            raise ClosedEnvError(f"Pool.{what}() called after close(); create a new pool")

    # ------------------------------------------------------------------ commands
    def send(self, cmd: bytes, env_ids: np.ndarray, batch: bool = False):
        """Send a step (``b"S"``) or reset (``b"R"``) for ``env_ids`` to their workers.
        ``batch``: each worker answers once, when all its envs are done (a synchronous
        step, which waits for every env anyway); not with load balancing, nor to a
        worker with envs already in flight."""
        self._check_open("send")
        self._heal()
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
        self._asked_reset[env_ids] = cmd == b"R"
        if cmd == b"R":
            self._fresh[env_ids] = True
            a = self.arrays
            self._asked_seed[env_ids] = a.seed[env_ids]
            self._asked_seed_set[env_ids] = a.seed_set[env_ids]
            self._asked_start[env_ids] = a.start_frame[env_ids]
        if cmd == b"S" and self.balanced:
            for w in np.unique(owners):
                ids = env_ids[owners == w]
                self._steps_since_spawn[w] += len(ids)
                for i in ids:
                    self._prediction[i] = self._predicted(int(i))
                queue = self._queued[w]
                queue.extend(int(i) for i in ids)
                queue.sort(key=self._prediction.__getitem__)   # costliest last: popped first
                self._queued_work[w] = self._prediction[queue].sum()
            self._dispatch()
            return
        now = time.monotonic()
        for w in np.unique(owners):
            ids = env_ids[owners == w]
            if self._due(w):   # recycled by the next collect, which then sends these
                self._held[w].append((cmd, ids))
                continue
            if batch and self._outstanding[w] == 0 and len(ids) > 1:
                self._batched[w] = True
                self._send_ids(w, cmd.lower(), ids, now)
            else:
                self._send_ids(w, cmd, ids, now)
            if cmd == b"S":
                self._steps_since_spawn[w] += len(ids)

    def _send_ids(self, w, cmd: bytes, ids: np.ndarray, now: float):
        self._heard[w] = now
        self._outstanding[w] += len(ids)
        try:
            self.conns[w].send_bytes(cmd + ids.tobytes())
        except (OSError, ValueError):
            pass  # dead worker: collect() notices and recovers

    def _predicted(self, i: int) -> float:
        """Env ``i``'s next step in seconds: its moving average (1 s before its first
        step: unknown envs go first), times the first-step ratio for an episode's
        first step; a NEXT_STEP reset step costs next to nothing."""
        a = self.arrays
        if (self.autoreset_mode == AutoresetMode.NEXT_STEP
                and (a.terminated[i] or a.truncated[i])):
            return 0.0
        c = self._cost[i]
        if c != c:   # NaN: never measured
            return 1.0
        return float(c) * (self._first_ratio if self._fresh[i] else 1.0)

    def _dispatch(self):
        """Fill the free cores: each goes to the idle worker with the most predicted
        work queued, which steps its costliest queued env."""
        free = self.active_workers - int((self._outstanding > 0).sum())
        if free <= 0:
            return
        heap = [(-self._queued_work[w], w)
                for w, q in enumerate(self._queued) if q and self._outstanding[w] == 0]
        heapq.heapify(heap)
        now = time.monotonic()
        while free > 0 and heap:
            _, w = heapq.heappop(heap)
            if self._due(w):   # idle (dispatch picks idle workers): recycled before its step
                failed = self._recycle_safely(w)
                if failed is not None:   # its queue went with it; the core stays free
                    self._report_later(failed)
                    continue
            i = self._queued[w].pop()
            self._queued_work[w] = (self._queued_work[w] - self._prediction[i]
                                    if self._queued[w] else 0.0)
            self._sent_at[i], self._timed[i] = time.perf_counter(), True
            self._send_ids(w, b"S", np.array([i], dtype=np.int32), now)
            free -= 1

    def _stepped(self, w: int, i: int):
        """A completion from worker ``w`` for env ``i``: update its step cost (a
        balanced step is the only one in flight on its worker) and fill the core."""
        self._outstanding[w] = max(0, self._outstanding[w] - 1)
        if not self.balanced:
            return
        if not self._timed[i]:   # a reset command
            pass
        elif self._prediction[i] == 0.0:   # a NEXT_STEP reset step: the next is a first
            self._fresh[i] = True
        else:
            took = time.perf_counter() - self._sent_at[i]
            c = self._cost[i]
            if c != c:
                self._cost[i] = took / (self._first_ratio if self._fresh[i] else 1.0)
            elif self._fresh[i]:
                self._first_ratio += COST_SMOOTHING * (took / c - self._first_ratio)
            else:
                self._cost[i] = c + COST_SMOOTHING * (took - c)
            # SAME_STEP resets inside the step that ends an episode
            self._fresh[i] = bool(self.autoreset_mode == AutoresetMode.SAME_STEP
                                  and self.arrays.final[i])
        self._timed[i] = False
        self._dispatch()

    def _progressed(self, workers):
        """Count an env finished inside a worker's batch (its shared ``progress`` time,
        written before the one reply) as hearing from that worker."""
        for w in workers:
            self._heard[w] = max(self._heard[w], float(
                self.arrays.progress[self.worker_envs[w]].max()))

    @property
    def pending(self) -> int:
        return int(self._pending.sum())

    def collect(self, n: int, timeout: float | None = None):
        """Wait for ``n`` finished envs; returns ``[(env_id, extra_or_None), ...]``
        in completion order. Raises TimeoutError (leaving the rest pending)."""
        self._check_open("collect")
        done = []
        restarted = {}
        try:
            self._wait_for(n, timeout, done, restarted)
            self._mark_restarted(done, restarted)
            if len(done) > n:
                # a restarted worker reports all its envs at once: those beyond n stay
                # pending for the next collect, so that a batch is never larger than asked
                for i, _ in done[n:]:
                    self._pending[i] = True
                self._backlog.extend(done[n:])
                del done[n:]
            if self.recycle_every:
                self._recycle()
        except BaseException:
            # a timeout or an interrupt (Ctrl-C): what finished stays to be handed out
            # by the next collect, first, instead of being dropped with this call
            self._mark_restarted(done, restarted)
            self.give_back(done)
            raise
        return done

    def give_back(self, done: list):
        """Put ``collect``'s result back, first in line for the next collect: the caller
        was interrupted before it could hand the rows on."""
        for i, _ in done:
            self._pending[i] = True
        self._backlog[:0] = done

    def _wait_for(self, n: int, timeout, done: list, restarted: dict):
        """``collect``'s wait: appends finished envs to ``done`` (and restarted workers'
        extras to ``restarted``) until it holds ``n``."""
        self._heal()
        while self._synthetic and len(done) < n:
            i = self._synthetic.pop(0)
            self._pending[i] = False
            done.append((i, {"worker_restarted": True, "worker_error": "restarted earlier"}))
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(done) < n:
            while self._backlog and len(done) < n:   # first; a recovery while waiting adds
                i, extra = self._backlog.pop(0)
                self._pending[i] = False
                done.append((i, extra))
            if len(done) >= n:
                break
            for w in range(self.num_workers):
                if self._held[w] and self._outstanding[w] == 0:
                    failed = self._release(w)
                    if failed is not None:
                        ids, extra = failed
                        done.extend((i, dict(extra)) for i in ids)
                        restarted[w] = extra
            if len(done) >= n:
                break
            if self.balanced:   # workers with a step sent (a recovery may have freed a core)
                self._dispatch()
                busy = {self.conns[w]: w for w in np.flatnonzero(self._outstanding)}
            else:
                busy = {self.conns[w]: w for w in np.unique(self.owner[self._pending])}
            if not busy:
                raise PendingCallError(f"collect({n}) needs {n} envs in flight; only "
                                       f"{len(done)} were")
            wait_for = 1.0
            if deadline is not None:
                wait_for = min(wait_for, max(0.0, deadline - time.monotonic()))
            if self.step_timeout is not None:
                self._progressed(busy.values())
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
                    self.procs[w].join(1.0)
                    code = self.procs[w].exitcode
                    ids, extra = self._recover(w, f"worker {w} died (exit code {code})")
                    done.extend((i, dict(extra)) for i in ids)
                    restarted[w] = extra
                    continue
                self._heard[w] = time.monotonic()
                if self._batched[w]:
                    self._batched[w] = False
                    for i, extra in _records(msg):
                        if len(done) < n:
                            self._pending[i] = False
                            done.append((i, extra))
                        else:   # still pending until a collect hands it out
                            self._backlog.append((i, extra))
                        self._stepped(w, i)
                    continue
                i = _ID.unpack_from(msg)[0]
                extra = pickle.loads(msg[4:]) if len(msg) > 4 else None
                self._pending[i] = False
                done.append((i, extra))
                self._stepped(w, i)
            if self.step_timeout is not None:
                now = time.monotonic()
                self._progressed(busy.values())
                for w in set(busy.values()):
                    # a reply left in its pipe (this collect had its n, or a recycle held
                    # the parent) is progress, however long ago it was last read
                    if (self._outstanding[w] > 0
                            and now - self._heard[w] > self.step_timeout
                            and not self.conns[w].poll(0)):
                        ids, extra = self._recover(
                            w, f"worker {w} exceeded step_timeout={self.step_timeout} s")
                        done.extend((i, dict(extra)) for i in ids)
                        restarted[w] = extra
            if not ready and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{n - len(done)} of {n} envs did not finish "
                                   f"within {timeout} s; the {len(done)} that did are "
                                   "returned by the next call")

    def _mark_restarted(self, done, restarted):
        """Envs of a restarted worker that had already reported in this batch lost
        their state too: report them truncated as well."""
        if restarted:
            for k, (i, extra) in enumerate(done):
                w = int(self.owner[i])
                if w in restarted and not (extra or {}).get("worker_restarted"):
                    done[k] = (i, dict(extra or {}, **restarted[w]))
                    self._lost[i] = False

    def _due(self, w: int) -> bool:
        return bool(self.recycle_every) and self._steps_since_spawn[w] >= self.recycle_every

    def _recycle(self):
        """Move the envs of workers past ``recycle_every`` steps to fresh processes."""
        for w in range(self.num_workers):
            if self._due(w) and not self._pending[self.worker_envs[w]].any():
                self._report_later(self._recycle_safely(w))

    def _report_later(self, failed):
        """A recovery outside ``collect``'s wait (``_recycle_safely``'s result): its
        pending envs stay pending, reported truncated by the next ``collect``."""
        if failed is not None:
            ids, extra = failed
            for i in ids:
                self._pending[i] = True
                self._backlog.append((i, dict(extra)))

    def _recycle_worker(self, w: int):
        """Move worker ``w``'s envs (none in flight) to a fresh process. Not ready until
        done: an interrupt in between (Ctrl-C) leaves it to be recovered (``_heal``)."""
        ids = [int(i) for i in self.worker_envs[w]]
        self._ready[w] = False
        states = self._call_worker(w, "get_states", ids)
        self._call_worker(w, "close")
        self._replace(w)
        self._call_worker(w, "set_states", ids, states)
        self._ready[w] = True
        self.recycles += 1

    def _recycle_safely(self, w: int):
        """Recycle worker ``w`` (none of its envs in flight). A recycle that fails (the
        process died, its pipe broke) is a worker failure: ``_recover`` resets its envs,
        and returns the pending ones with their extra, to be reported truncated; None
        when the recycle went through."""
        try:
            self._recycle_worker(w)
        except Exception as exc:
            return self._recover(w, f"recycling worker {w} failed: "
                                    f"{type(exc).__name__}: {exc}")
        return None

    def _release(self, w: int):
        """Worker ``w`` is due and has no step in flight: recycle it, then send the
        commands it held (``_recycle_safely``'s failure is returned); an interrupt
        keeps the commands held, for the next collect to try again."""
        failed = self._recycle_safely(w)
        if failed is not None:
            return failed
        held, self._held[w] = self._held[w], []
        now = time.monotonic()
        for cmd, ids in held:
            self._send_ids(w, cmd, ids, now)
            if cmd == b"S":
                self._steps_since_spawn[w] += len(ids)
        return None

    def configure(self, env_ids, method: str, args: tuple):
        """Call ``method(*args)`` on the envs ``env_ids`` (as ``rare("call", ...)``) and
        remember it: a worker respawned after a crash or a timeout builds its envs from
        the spec, and the call is made on them again. Keyed by the method and its first
        argument (an option's name), so that the last setting is the one replayed."""
        self.rare("call", env_ids, method, args, {})
        for i in np.asarray(env_ids).ravel():
            self._settings.setdefault(int(i), {})[(method, args[0] if args else None)] = args

    def rare(self, what: str, env_ids, *args):
        """Run a pickled command on the workers owning ``env_ids``; results in order.
        ``set_attr``'s values (one per env id) are split among the workers."""
        self._check_open(what)
        self._heal()
        env_ids = np.asarray(env_ids, dtype=np.int64)
        results, calls, error = {}, [], None
        for w in np.unique(self.owner[env_ids]):   # all pickled before any is sent
            rows = np.flatnonzero(self.owner[env_ids] == w)
            ids = [int(i) for i in env_ids[rows]]
            wargs = (args[0], [args[1][r] for r in rows]) if what == "set_attr" else args
            calls.append((w, ids, wargs, self._call_message(what, ids, *wargs)))
        sent = []
        for w, ids, wargs, message in calls:   # all workers at once (render: frames)
            try:
                self._send_call(w, message)
            except (OSError, ValueError):   # a dead worker: the next step respawns it
                self._in_call[w] = False
                error = error or WorkerError(
                    f"worker {w} died before {what} (exit code {self.procs[w].exitcode}); "
                    "its envs restart on the next step, reported truncated")
                continue
            sent.append((w, ids, wargs, message))
        for w, ids, wargs, _ in sent:   # every worker answers before an error is raised
            try:
                value = self._receive_call(w, what, ids, *wargs)
            except Exception as exc:   # EnvError, or a worker that died (EOFError)
                error = error or exc
                continue
            if value is not None:
                results.update(zip(ids, value, strict=True))
        if error is not None:
            raise error
        return [results[int(i)] for i in env_ids] if results else None

    def timers(self) -> list[dict]:
        """Per worker, since it started: seconds waiting for a command (``waiting_s``),
        inside env steps and resets (``busy_s``), sending completions (``sending_s``),
        and the env steps and resets run (``calls``). In synchronous stepping, a worker's
        waiting time beyond the parent's own turnaround is the barrier: it finished
        before the slowest worker."""
        self._check_open("timers")
        return [self._call_worker(w, "timers", [int(self.worker_envs[w][0])])[0]
                for w in range(self.num_workers)]

    # ------------------------------------------------------------------ close
    def close(self, timeout: float = 5.0):
        """Stop the workers and unlink the shared segment. Idle workers are asked to
        close their envs and exit (forced after ``timeout`` s); a worker that is busy
        (steps in flight, a call unanswered, still starting) is killed at once, since
        its results would be thrown away. Safe to call more than once and from
        atexit/__del__."""
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        try:
            self._stop_workers(timeout)
        finally:   # whatever happened, leave no segment behind
            if self.arrays is not None:
                self.arrays.close()

    def _stop_workers(self, timeout):
        for w, (conn, proc) in enumerate(zip(self.conns, self.procs, strict=True)):
            busy = (not self._ready[w] or self._in_call[w]
                    or self._pending[self.worker_envs[w]].any())
            if not busy:
                try:
                    conn.send_bytes(b"P" + pickle.dumps(("close", None)))
                except (OSError, ValueError):
                    busy = True
            if busy:
                proc.kill()
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(1.0)
        for conn in self.conns:
            conn.close()

    def __del__(self):
        try:
            self.close(timeout=1.0)
        except Exception:
            pass


def _records(msg: bytes):
    """(env id, extra or None) of a batched reply (``worker.RECORD`` records)."""
    pos, end = 0, len(msg)
    while pos < end:
        i, length = RECORD.unpack_from(msg, pos)
        pos += RECORD.size
        yield i, (pickle.loads(msg[pos:pos + length]) if length else None)
        pos += length


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, which a cluster's scheduler
    may set below the machine's count): one worker per core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
