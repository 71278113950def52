"""``OsimVectorEnv``: a Gymnasium 1.x VectorEnv over the shared-memory pool.

Synchronous API (``reset``/``step``/``step_async``/``step_wait``/``call``/
``get_attr``/``set_attr``/``close``) with the three Gymnasium autoreset modes, and an
envpool-style asynchronous API: ``send(actions, env_ids)`` then ``recv()`` returns the
first ``batch_size`` envs to finish, with ``info["env_id"]``.

Copies: with ``copy=True`` (default) every returned array is a fresh copy. With
``copy=False`` the observations, rewards and flags of ``step`` and the observations of
a ``reset`` of every env are views into shared memory that the next step or reset
overwrites (zero-copy; copy what you keep). ``recv`` (its rows gathered by env id), a ``reset``
with ``reset_mask`` and infos are always fresh arrays.

The pool knows nothing of OpenSim: this module hands it an ``EnvFactory`` naming
``fastenv.env:ImitationEnv`` and the env options, which each worker builds; the parent
never imports the env module.
"""
from __future__ import annotations

import atexit
import weakref

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from fastenv.envs import (
    OPTIONS,
    RUNTIME_OPTIONS,
    TASKS,
    is_flag,
    is_int,
    is_number,
    resolve_options,
)
from fastenv.errors import ClosedEnvError, PendingCallError, env_error
from fastenv.pool import EnvFactory, Pool, default_workers

VECTOR_OPTIONS = ("num_workers", "autoreset_mode", "batch_size", "copy", "start_method",
                  "step_timeout", "recycle_every", "max_episode_steps", "active_workers")
_OPEN: weakref.WeakSet[OsimVectorEnv] = weakref.WeakSet()


@atexit.register
def _close_all():
    for env in list(_OPEN):
        env.close()


def ragged_actions(shape: tuple, error: ValueError) -> ValueError:
    """The error for actions NumPy cannot read as one array (a ragged list): NumPy's own
    message names no shape."""
    return ValueError(f"actions are not one array of shape {shape}: "
                      f"{str(error).splitlines()[0]}")


class OsimVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` imitation envs of one task stepped by ``num_workers`` processes.

    Env ``i`` gets seed ``seed + i`` on ``reset(seed=seed)``; its trajectory depends only
    on its own seed and actions, never on the number of workers or on batching.
    Keyword arguments other than the vector options are env options
    (see ``fastenv.env.OPTIONS``).

    Faults: a simulator failure truncates that env (``info["sim_error"]``); a worker
    that crashes, or takes more than ``step_timeout`` s, is respawned and its envs are
    reset and reported truncated with ``info["worker_restarted"]`` (``restarts`` counts
    them). ``recycle_every`` moves a worker's envs to a fresh process after that many
    env steps (once none of them is in flight), to cap memory growth; episodes
    continue (within integrator accuracy).
    ``_faults`` injects faults for tests: ``[(kind, env_id, at_step), ...]`` with kind
    ``sim_error``, ``exception``, ``kill`` or ``hang``.

    ``active_workers``: load balancing. With ``num_workers`` above it (e.g. twice the
    cores, ``active_workers`` = the cores), at most ``active_workers`` workers step an
    env at once and a free core goes to the worker with the most predicted work left,
    so a synchronous step waits less for its slowest worker; envs never change
    workers, so results are bit-identical. ``None`` (default): every worker steps at
    once.

    ``start_method``: ``"subprocess"`` (default) starts each worker as a fresh
    interpreter without re-running the caller's ``__main__``, so scripts need no
    ``if __name__ == "__main__":`` guard; ``"fork"``, ``"forkserver"`` and ``"spawn"``
    use multiprocessing instead.
    """

    def __init__(self, task: str = "MuscleWalkingImitation2D-v0", num_envs: int = 1, *,
                 num_workers: int | None = None,
                 autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
                 batch_size: int | None = None, copy: bool = True,
                 start_method: str = "subprocess", step_timeout: float | None = None,
                 recycle_every: int | None = None, max_episode_steps=None,
                 render_mode: str | None = None, active_workers: int | None = None,
                 _faults=(), **env_options):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
        if not (is_int(num_envs) and num_envs >= 1):
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        num_workers = default_workers() if num_workers is None else num_workers
        if not (is_int(num_workers) and num_workers >= 1):
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
        num_workers = min(int(num_workers), int(num_envs))
        if active_workers is not None:
            if not (is_int(active_workers) and active_workers >= 1):
                raise ValueError(f"active_workers must be an int >= 1 or None, got "
                                 f"{active_workers!r}")
            active_workers = min(int(active_workers), num_workers)
        batch_size = num_envs if batch_size is None else batch_size
        if not (is_int(batch_size) and 1 <= batch_size <= num_envs):
            raise ValueError(f"batch_size must be an int in [1, num_envs={num_envs}], "
                             f"got {batch_size!r}")
        mode = _autoreset_mode(autoreset_mode)
        if step_timeout is not None and not (is_number(step_timeout) and step_timeout > 0):
            raise ValueError(f"step_timeout must be > 0 seconds or None, got {step_timeout!r}")
        if recycle_every is not None and not (is_int(recycle_every) and recycle_every >= 1):
            raise ValueError(f"recycle_every must be an int >= 1 or None, got {recycle_every!r}")
        if max_episode_steps is not None:
            raise ValueError(f"max_episode_steps={max_episode_steps!r} is not supported: "
                             f"set the env option episode_seconds (the default: the task's "
                             f"reference cycles, or the end of a reference played once)")
        unknown = sorted(set(env_options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; vector options: "
                             f"{sorted(VECTOR_OPTIONS + ('render_mode',))}; env options: "
                             f"{sorted(OPTIONS)}")
        # fail early, here rather than in every worker
        self._nan_actions = resolve_options(task=TASKS.get(task), **env_options)["nan_actions"]
        self._env_options = {k: v for k, v in env_options.items() if k in OPTIONS}
        if render_mode not in (None, "rgb_array") or env_options.get("visualize"):
            raise ValueError(f"OsimVectorEnv renders with render_mode='rgb_array' (one frame "
                             f"per env) or None; got render_mode={render_mode!r}"
                             + (" and visualize=True" if env_options.get("visualize") else ""))
        self.task = task
        self.num_envs = int(num_envs)
        self.batch_size = int(batch_size)
        if not is_flag(copy):
            raise ValueError(f"copy must be True or False, got {copy!r}")
        self.copy = bool(copy)
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode, "render_modes": ["rgb_array"],
                         "render_fps": 100}
        self.render_mode = render_mode
        self.closed = True
        # a worker's envs share one OpenSim model unless told not to (docs/vector.md)
        env_options.setdefault("share_model", True)
        factory = EnvFactory("fastenv.env:ImitationEnv",
                             dict(task=task, render_mode=render_mode, **env_options))
        faults = [(_FAULTS.get(kind, kind), i, k) for kind, i, k in _faults]
        self._pool = Pool(factory, self.num_envs, num_workers, mode,
                          start_method=start_method, step_timeout=step_timeout,
                          recycle_every=recycle_every, faults=faults,
                          active_workers=active_workers)
        self.closed = False
        _OPEN.add(self)
        self.num_workers = num_workers
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._a = self._pool.arrays
        self._info_names = list(self._pool.info_scalars)
        self._all = np.arange(self.num_envs, dtype=np.int32)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)   # DISABLED mode check
        self._never_reset = np.ones(self.num_envs, dtype=bool)    # step before reset
        self._stepping = False

    # ------------------------------------------------------------------ helpers
    def _check_started(self, what, ids):
        never = ids[self._never_reset[ids]]
        if len(never):
            raise gym.error.ResetNeeded(f"{what}() called on envs {never.tolist()}, which have "
                                        "not been reset; call reset() or async_reset() first")

    def _check_open(self, what):
        if self.closed:
            raise ClosedEnvError(f"{what}() called on a closed OsimVectorEnv; create a "
                                 "new one")

    def _actions(self, actions, n_rows, env_ids=None):
        shape = (n_rows, *self.single_action_space.shape)
        try:
            a = np.asarray(actions)
        except ValueError as e:
            raise ragged_actions(shape, e) from None
        if a.shape != shape:
            raise ValueError(f"actions have shape {a.shape}; expected {shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"actions have dtype {a.dtype}; expected a real number dtype")
        if self._nan_actions == "raise" and np.issubdtype(a.dtype, np.floating):
            bad = ~np.isfinite(a)
            if bad.any():
                row = int(np.flatnonzero(bad.any(axis=1))[0])
                env = int(env_ids[row]) if env_ids is not None else row
                raise ValueError(f"env {env} has non-finite values at indices "
                                 f"{np.flatnonzero(bad[row]).tolist()}: "
                                 f"{a[row][bad[row]].tolist()}; pass nan_actions='zero' to "
                                 "replace them with 0 instead")
        return a

    def _gather(self, ids: np.ndarray):
        a, c = self._a, self.copy
        take = (lambda x: x[ids]) if (c or len(ids) != self.num_envs or
                                      not np.array_equal(ids, self._all)) else (lambda x: x)
        obs, rew = take(a.obs), take(a.reward)
        term, trunc = take(a.terminated), take(a.truncated)
        return obs, rew, term, trunc

    def _infos(self, ids: np.ndarray, extras: dict, reset: np.ndarray | None = None):
        """Gymnasium-style batched infos (``key`` and ``_key`` mask) for rows ``ids``.
        ``reset``: a reset's rows (a mask over ``ids``); only they carry info, and no
        row a final observation (an env not reset keeps its last step's in the arrays)."""
        a = self._a
        present = a.info_present[ids] if reset is None else a.info_present[ids] & reset[:, None]
        infos = self._scalar_infos(a.info, present, ids)
        final = a.final[ids] if reset is None else np.zeros(len(ids), dtype=bool)
        if final.any():
            obj = np.full(len(ids), None, dtype=object)
            for r in np.flatnonzero(final):
                obj[r] = a.final_obs[ids[r]].copy()
            infos["final_obs"], infos["_final_obs"] = obj, final.copy()
            fi = self._scalar_infos(a.final_info, a.final_info_present[ids] & final[:, None],
                                    ids)
            infos["final_info"], infos["_final_info"] = fi, final.copy()
        row = {int(i): r for r, i in enumerate(ids)}
        for i, extra in extras.items():
            for key, value in extra.items():
                if key == "final_info_extra":
                    for k2, v2 in value.items():
                        _put(infos.setdefault("final_info", {}), k2, v2, row[i], len(ids))
                else:
                    _put(infos, key, value, row[i], len(ids))
        return infos

    def _scalar_infos(self, values: np.ndarray, present: np.ndarray, ids) -> dict:
        """The env's ``info_scalars`` for rows ``ids``, each in its own dtype."""
        infos = {}
        for k, key in enumerate(self._info_names):
            mask = present[:, k]
            if mask.any():
                infos[key] = values[key][ids]   # fancy indexing: a fresh array
                infos[f"_{key}"] = mask.copy()
        return infos

    def _raise_env_errors(self, extras: dict):
        for i, e in extras.items():
            if "worker_exception" in e:
                raise env_error(i, *e["worker_exception"])

    def _set_seeds(self, ids, seed):
        """Write ``seed`` (None, an int: env i gets seed + i, or a list of num_envs ints
        or None) for the envs ``ids`` into the shared arrays, refusing anything else in
        one line (a bool, a float or a negative seed would otherwise be read silently as
        another seed, or fail inside a worker)."""
        a = self._a
        top = np.iinfo(a.seed.dtype).max
        if seed is None:
            a.seed_set[ids] = False
            return
        if is_int(seed):
            if not 0 <= seed <= top - self.num_envs:
                raise ValueError(f"seed must be >= 0 and fit in {a.seed.dtype} "
                                 f"(env i gets seed + i); got {seed}")
            a.seed[ids] = int(seed) + ids.astype(np.int64)   # ids are int32: seeds >= 2**31
            a.seed_set[ids] = True
            return
        seeds = list(seed) if isinstance(seed, (list, tuple, np.ndarray)) else None
        if seeds is None or any(not (s is None or is_int(s)) for s in seeds):
            raise ValueError(f"seed must be None, an int or a list of {self.num_envs} "
                             f"ints or None; got {seed!r}")
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed list must have {self.num_envs} entries, got {len(seeds)}")
        bad = [s for s in seeds if s is not None and not 0 <= s <= top]
        if bad:
            raise ValueError(f"seeds must be >= 0 and fit in {a.seed.dtype}; got {bad}")
        for i in ids:
            a.seed_set[i] = seeds[i] is not None
            a.seed[i] = seeds[i] if seeds[i] is not None else 0

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed=None, options=None):
        self._check_open("reset")
        if self._stepping or self._pool.pending:
            raise PendingCallError(f"reset() called while {self._pool.pending} envs are "
                                   "in flight; call step_wait() or recv() first")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        start_frame = options.pop("start_frame", None)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: "
                             "['reset_mask', 'start_frame']")
        if start_frame is not None and not (is_int(start_frame) and start_frame >= 0):
            # -1 is the shared array's "none"; the upper bound is each env's reference
            raise ValueError(f"start_frame must be None or an int >= 0, got {start_frame!r}")
        if mask is None:
            ids = self._all
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape "
                                 f"({self.num_envs},), got {mask.dtype} {mask.shape}")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
            ids = np.flatnonzero(mask).astype(np.int32)
        self._set_seeds(ids, seed)
        a = self._a
        a.start_frame[ids] = -1 if start_frame is None else int(start_frame)
        self._pool.send(b"R", ids, batch=True)
        extras = self._wait(len(ids))
        self._needs_reset[ids] = False
        self._never_reset[ids] = False
        obs = a.obs.copy() if (self.copy or mask is not None) else a.obs
        return obs, self._infos(self._all, extras, reset=np.isin(self._all, ids))

    def _wait(self, n, timeout=None):
        done = self._pool.collect(n, timeout)
        extras = {i: e for i, e in done if e}
        self._raise_env_errors(extras)
        return extras

    def step_async(self, actions):
        self._check_open("step_async")
        if self._stepping or self._pool.pending:
            raise PendingCallError(f"step_async() called while {self._pool.pending} envs "
                                   "are in flight; call step_wait() or recv() first")
        a = self._actions(actions, self.num_envs)
        self._check_started("step", self._all)
        if self.autoreset_mode == AutoresetMode.DISABLED and self._needs_reset.any():
            raise ValueError(f"envs {np.flatnonzero(self._needs_reset).tolist()} ended and "
                             "autoreset is disabled: reset them with options={'reset_mask': "
                             "...} first")
        self._a.actions[:] = a
        self._pool.send(b"S", self._all, batch=True)
        self._stepping = True

    def step_wait(self, timeout: float | None = None):
        self._check_open("step_wait")
        if not self._stepping:
            raise PendingCallError("step_wait() called without step_async(); expected "
                                   "step_async(actions) first")
        done = self._pool.collect(self._pool.pending, timeout)
        self._stepping = False   # every env is back, even if one of them raised
        extras = {i: e for i, e in done if e}
        self._raise_env_errors(extras)
        obs, rew, term, trunc = self._gather(self._all)
        self._needs_reset = term | trunc
        return obs, rew, term, trunc, self._infos(self._all, extras)

    def step(self, actions):
        self.step_async(actions)
        return self.step_wait()

    # ------------------------------------------------------------------ envpool-style
    def async_reset(self, seed=None):
        """Reset every env without waiting; collect with ``recv()``. ``seed`` as in
        :meth:`reset`."""
        self._check_open("async_reset")
        if self._stepping or self._pool.pending:
            raise PendingCallError(f"async_reset() called while {self._pool.pending} envs "
                                   "are in flight; recv() them first")
        self._set_seeds(self._all, seed)
        self._pool.send(b"R", self._all)
        self._never_reset[:] = False
        self._needs_reset[:] = False

    def send(self, actions, env_ids):
        """Start stepping ``env_ids`` (each not already in flight) with ``actions``."""
        self._check_open("send")
        if self._stepping:
            raise PendingCallError("send() called while a step_async() is in flight; "
                                   "call step_wait() first")
        ids = self._env_ids(env_ids)
        busy = ids[self._pool._pending[ids]]
        if len(busy):
            raise ValueError(f"envs {busy.tolist()} are still in flight; recv() them first")
        a = self._actions(actions, len(ids), ids)
        self._check_started("send", ids)
        ended = ids[self._needs_reset[ids]]
        if self.autoreset_mode == AutoresetMode.DISABLED and len(ended):
            raise ValueError(f"envs {ended.tolist()} ended and autoreset is disabled: reset "
                             "them with options={'reset_mask': ...} first")
        self._a.actions[ids] = a
        self._pool.send(b"S", ids.astype(np.int32))

    def recv(self, timeout: float | None = None, *, batch_size: int | None = None):
        """The first ``batch_size`` envs to finish: (obs, reward, terminated, truncated,
        info) with ``info["env_id"]``; rows are in completion order. ``batch_size``
        overrides the env's for this call, e.g. to drain the last envs in flight."""
        self._check_open("recv")
        if self._stepping:
            raise PendingCallError("recv() called while a step_async() is in flight; "
                                   "call step_wait() first")
        n = self.batch_size if batch_size is None else batch_size
        if not (is_int(n) and 1 <= n <= self.num_envs):
            raise ValueError(f"batch_size must be an int in [1, num_envs={self.num_envs}], "
                             f"got {batch_size!r}")
        if self._pool.pending < n:
            raise PendingCallError(f"recv() needs batch_size={n} envs in "
                                   f"flight, {self._pool.pending} are; call send() first")
        done = self._pool.collect(int(n), timeout)
        ids = np.array([i for i, _ in done], dtype=np.int32)
        extras = {i: e for i, e in done if e}
        self._raise_env_errors(extras)
        try:
            a = self._a
            obs, rew = a.obs[ids], a.reward[ids]
            term, trunc = a.terminated[ids], a.truncated[ids]
            infos = self._infos(ids, extras)
            infos["env_id"] = ids.astype(np.int64)
        except BaseException:   # an interrupt (Ctrl-C) here: the next recv returns them
            self._pool.give_back(done)
            raise
        self._needs_reset[ids] = term | trunc
        return obs, rew, term, trunc, infos

    @property
    def pending(self) -> int:
        """Envs in flight: sent (or reset by ``async_reset``) and not yet returned by
        ``recv``; ``recv(batch_size=min(batch_size, pending))`` drains the last ones."""
        return self._pool.pending

    @property
    def restarts(self) -> int:
        """Workers respawned after a crash or a step timeout (recycling not counted)."""
        return self._pool.restarts

    @property
    def recycles(self) -> int:
        """Workers replaced by ``recycle_every`` (envs moved, nothing lost)."""
        return self._pool.recycles

    def worker_timers(self) -> list[dict]:
        """Per worker process, since it started: seconds waiting for a command
        (``waiting_s``), inside env steps and resets (``busy_s``), sending results
        (``sending_s``), and the env steps and resets run (``calls``). Differences over a window of
        synchronous steps show the barrier: a worker waits while the slowest one works."""
        self._check_idle("worker_timers")
        return self._pool.timers()

    def drop_in_flight(self) -> None:
        """Finish and drop the steps in flight (a ``step_async`` not waited for, or envs
        ``send`` started and ``recv`` did not return): an interrupted step or rollout
        (Ctrl-C) leaves them, and ``reset`` refuses while they are. Nothing to do on a
        closed env (the next call's own error says so) or with none in flight."""
        if self.closed:
            return
        if self._stepping:
            self.step_wait()
        elif self._pool.pending:
            self.recv(batch_size=self._pool.pending)

    # ------------------------------------------------------------------ attributes
    def _check_idle(self, what):
        self._check_open(what)
        if self._stepping or self._pool.pending:
            raise PendingCallError(f"{what}() called while {self._pool.pending} envs are "
                                   "in flight; recv() or step_wait() them first")

    def _env_ids(self, env_ids) -> np.ndarray:
        """``env_ids`` checked: a non-empty 1-D array of distinct env indices."""
        ids = np.asarray(env_ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) == 0:
            raise ValueError(f"env_ids must be a non-empty 1-D integer array, got {env_ids!r}")
        if ids.min() < 0 or ids.max() >= self.num_envs:
            raise ValueError(f"env_ids must be in [0, {self.num_envs}), got {ids.tolist()}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"env_ids has duplicates: {ids.tolist()}")
        return ids.astype(np.int32)

    def call(self, name, /, *args, env_ids=None, **kwargs):
        """Call ``name(*args, **kwargs)`` on every env (or on ``env_ids``, in that order);
        a non-callable attribute is returned as it is."""
        return self.call_envs(name, env_ids, args, kwargs)

    def call_envs(self, name, env_ids=None, args=(), kwargs=None):
        """:meth:`call` with the method's arguments as a tuple and a dict, so that any
        keyword, ``env_ids`` too, is the method's."""
        self._check_idle("call")
        ids = self._all if env_ids is None else self._env_ids(env_ids)
        return tuple(self._pool.rare("call", ids, name, tuple(args), dict(kwargs or {})))

    def has_attr(self, name, *, env_ids=None) -> tuple[bool, ...]:
        """Whether every env (or each of ``env_ids``) has attribute ``name``, asked in the
        workers without sending its value (an OpenSim object cannot leave its worker)."""
        self._check_idle("has_attr")
        ids = self._all if env_ids is None else self._env_ids(env_ids)
        return tuple(self._pool.rare("has_attr", ids, name))

    def get_attr(self, name, *, env_ids=None):
        """Attribute ``name`` of every env (or of ``env_ids``, in that order); for an
        option :meth:`set_attr` can change (``episode_seconds``), its value in each env."""
        self._check_idle("get_attr")
        ids = self._all if env_ids is None else self._env_ids(env_ids)
        if name in RUNTIME_OPTIONS:   # set_attr's options live in the env's options
            return tuple(self._pool.rare("call", ids, "get_option", (name,), {}))
        return tuple(self._pool.rare("get_attr", ids, name))

    def set_attr(self, name, values, *, env_ids=None):
        """Set ``name`` on every env (or on ``env_ids``): one value each, or one for all."""
        self._check_idle("set_attr")
        ids = self._all if env_ids is None else self._env_ids(env_ids)
        if not isinstance(values, (list, tuple)):
            values = [values] * len(ids)
        if len(values) != len(ids):
            raise ValueError(f"set_attr needs {len(ids)} values, got {len(values)}")
        if name in OPTIONS:   # an env option: checked and applied as the env's own
            if name not in RUNTIME_OPTIONS:
                raise ValueError(f"option {name!r} is fixed when the envs are built (options "
                                 f"set_attr can change: {list(RUNTIME_OPTIONS)})"
                                 f"; make a new OsimVectorEnv with {name}=...")
            for value in values:   # checked here first: one error, not one per worker
                resolve_options(task=TASKS.get(self.task), **dict(self._env_options,
                                                                  **{name: value}))
            for i, value in zip(ids, values):   # kept by a respawned worker's envs too
                self._pool.configure(np.array([i], dtype=np.int32), "set_option",
                                     (name, value))
            return
        self._pool.rare("set_attr", ids, name, list(values))

    def render(self):
        """Every env's current frame (``render_mode="rgb_array"``), drawn in the
        workers at the same time: a tuple of ``num_envs`` (H, W, 3) uint8 arrays."""
        if self.render_mode is None:
            gym.logger.warn("render() needs render_mode='rgb_array' when the vector env "
                            "is made")
            return None
        self._check_open("render")
        self._check_started("render", self._all)
        return self.call("render")

    # ------------------------------------------------------------------ close
    def close_extras(self, **kwargs):
        if self.closed:
            return
        self.closed = True
        self._a = None
        self._pool.close()
        _OPEN.discard(self)

    def __enter__(self):
        """``with OsimVectorEnv(...) as envs:`` closes the workers on leaving, as
        ``with gym.make(...) as env:`` does for one env (Gymnasium's VectorEnv has no
        context manager of its own)."""
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def close(self, **kwargs):
        self.close_extras(**kwargs)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return (f"OsimVectorEnv({self.task!r}, num_envs={self.num_envs}, "
                f"num_workers={self.num_workers}, autoreset_mode={self.autoreset_mode.value})")


def _autoreset_mode(value) -> AutoresetMode:
    """Accept the enum, its value ("NextStep") or a snake/upper name ("next_step")."""
    if isinstance(value, AutoresetMode):
        return value
    key = str(value).replace("_", "").lower()
    for m in AutoresetMode:
        if key in (m.value.lower(), m.name.replace("_", "").lower()):
            return m
    raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]} "
                     f"(or {'/'.join(m.name.lower() for m in AutoresetMode)}), got {value!r}")


def learner_vector_options(options: dict, learner: str, autoreset: AutoresetMode) -> dict:
    """``options`` for the vector env a learning library steps: ``autoreset`` (the one
    its loop is written for; any spelling of it may be given, another mode is refused)
    and fresh arrays (``copy=False`` is refused: ``learner`` keeps the arrays a step
    returns, and views of the shared memory would turn every stored observation into
    the next one)."""
    given = options.get("autoreset_mode", autoreset)
    if _autoreset_mode(given) != autoreset:
        raise ValueError(f"{learner} needs autoreset_mode={autoreset.value!r}, got "
                         f"{given!r}; leave autoreset_mode out")
    copy = options.get("copy", True)
    if is_flag(copy) and not copy:
        raise ValueError(f"copy={copy!r}: {learner} stores the arrays a step returns, which "
                         "must be fresh; leave copy out")
    return dict(options, autoreset_mode=autoreset)


def _nan_state(env):
    """The ``sim_error`` test fault, run in the worker: make the env's state non-finite,
    so that its next step takes the real simulator-failure path."""
    import opensim
    sim = env.sim
    q = sim.state.getQ().to_numpy().copy()
    q[:] = np.nan
    sim.state.setQ(opensim.Vector.createFromMat(q))


_FAULTS = {"sim_error": _nan_state}


def _put(infos: dict, key: str, value, row: int, n: int):
    if key not in infos:
        infos[key] = np.full(n, None, dtype=object)
        infos[f"_{key}"] = np.zeros(n, dtype=bool)
    infos[key][row] = value
    infos[f"_{key}"][row] = True


def make_vec(task: str, num_envs: int = 1, **kwargs) -> OsimVectorEnv:
    """Vector entry point registered with Gymnasium (``vectorization_mode=
    "vector_entry_point"``): vector and env options are both keyword arguments."""
    return OsimVectorEnv(task, num_envs, **kwargs)


__all__ = ["OsimVectorEnv", "make_vec", "VECTOR_OPTIONS", "OPTIONS"]
