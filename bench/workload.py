"""The benchmarks' common workload: seeded action schedules and their physics.

Every method a benchmark compares steps the same envs (env ``i`` reset with seed
``seed + i``) through the same per-env schedule of uniform-random actions, one row per
physics step of that env (a NEXT_STEP reset step takes no row), whichever way the
method computes or batches its actions. Same seeds and same actions give the same
trajectories (fastenv envs depend only on both), so the methods do the same physical
work, falls and resets included, and their steps/s can be compared.

- :class:`ActionSchedule`: the rows of each env;
- :func:`scheduled_actions`: within the block, ``OsimVectorEnv`` steps the schedule
  wherever it takes actions (the actions it is given are still validated);
- :class:`ScheduledEnv` / :func:`make_scheduled_env`: the same at the env level, for
  methods that are not an ``OsimVectorEnv`` (Gymnasium and SB3 vector envs, one env);
- :func:`record_trajectory` / :func:`replay_seconds`: what the physics of one env's
  run was (its start states and every input to the simulator) and how long bare
  ``Manager.integrate`` calls take to redo it: the physical limit of that workload;
- :func:`env_seconds` / :func:`env_step_worker`: how long single envs take for the
  same work (``env.step`` and ``env.reset`` calls only): W cores x one env, the
  ceiling of any vector env of these envs (the env limit).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
import time
from pathlib import Path

import gymnasium as gym
import numpy as np


class ActionSchedule:
    """Env ``i``'s rows: ``default_rng([seed, i]).uniform(low, high, (rows, *shape))``
    as float32, generated on first use (so a parent that never loads the env can
    hold one)."""

    def __init__(self, seed: int, rows: int, space: gym.spaces.Box | None = None):
        if rows < 1:
            raise ValueError(f"an action schedule needs rows >= 1, got {rows!r}")
        self.seed, self.rows, self.space = int(seed), int(rows), space
        self._tables: dict[int, np.ndarray] = {}

    def table(self, i: int) -> np.ndarray:
        t = self._tables.get(i)
        if t is None:
            s = self.space
            t = np.random.default_rng([self.seed, int(i)]).uniform(
                s.low, s.high, (self.rows, *s.shape)).astype(np.float32)
            self._tables[i] = t
        return t

    def row(self, i: int, k: int) -> np.ndarray:
        if k >= self.rows:
            raise IndexError(f"env {i} asked for schedule row {k}; the schedule has "
                             f"{self.rows} rows (make it longer)")
        return self.table(i)[k]


@contextlib.contextmanager
def scheduled_actions(num_envs: int, rows: int, seed: int, enabled: bool = True):
    """Within the block, every ``OsimVectorEnv`` steps env ``i``'s ``k``-th physics
    step with row ``k`` of :class:`ActionSchedule` ``(seed, rows)``, whatever actions
    it is given (they are still validated). Under NEXT_STEP autoreset an env whose
    last result ended its episode resets on its next step and takes no row. Yields
    the per-env row counters (``None`` when not ``enabled``)."""
    from gymnasium.vector import AutoresetMode

    from fastenv.vector import OsimVectorEnv
    if not enabled:
        yield None
        return
    schedule = ActionSchedule(seed, rows)
    counts = np.zeros(num_envs, dtype=np.int64)
    original = OsimVectorEnv._actions

    def replaced(self, actions, n_rows, env_ids=None):
        a = original(self, actions, n_rows, env_ids)
        schedule.space = schedule.space or self.single_action_space
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=int)
        out = np.empty_like(a)
        resets = np.zeros(len(ids), dtype=bool)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:   # the last result ended it
            resets = self._a.terminated[ids] | self._a.truncated[ids]
        for r, i in enumerate(ids):
            if resets[r]:
                out[r] = a[r]        # ignored: this step is the reset
            else:
                out[r] = schedule.row(int(i), int(counts[i]))
                counts[i] += 1
        return out

    OsimVectorEnv._actions = replaced
    try:
        yield counts
    finally:
        OsimVectorEnv._actions = original


class ScheduledEnv(gym.Wrapper):
    """Env ``index`` of a schedule: each ``step`` applies the next row instead of the
    action it is given (``steps_taken`` rows so far)."""

    def __init__(self, env, index: int, seed: int, rows: int):
        super().__init__(env)
        self.index = int(index)
        self.schedule = ActionSchedule(seed, rows, env.action_space)
        self.steps_taken = 0

    def step(self, action):
        row = self.schedule.row(self.index, self.steps_taken)
        self.steps_taken += 1
        return self.env.step(row)


class NextStepEnv:
    """Env ``index`` of ``schedule`` stepped alone as a next-step-autoreset vector env
    steps it: reset with ``seed + index``; step ``k`` takes row ``k``, except the step
    after an episode's end, which is a reset (its row skipped). ``obs`` is the last
    observation, ``ends`` the episodes ended so far."""

    def __init__(self, env, index: int, schedule: ActionSchedule, seed: int):
        self.env, self.index, self.schedule = env, int(index), schedule
        self.obs = env.reset(seed=seed + self.index)[0]
        self.needs_reset, self.ends = False, 0

    def step(self, k: int):
        if self.needs_reset:
            self.obs = self.env.reset()[0]
            self.needs_reset = False
        else:
            self.obs, _, term, trunc, _ = self.env.step(self.schedule.row(self.index, k))
            self.needs_reset = bool(term or trunc)
            self.ends += self.needs_reset


def make_scheduled_env(env_cls, task: str, index: int, seed: int, rows: int,
                       env_kwargs: dict):
    """Picklable with ``functools.partial``: what vector envs' subprocesses build."""
    return ScheduledEnv(env_cls(task, **env_kwargs), index, seed, rows)


# ----------------------------------------------------------------------- physics
_SETTERS = ("set_controls", "set_spring_gains", "set_spring_rest", "set_push")


def record_trajectory(task: str, index: int, seed: int, steps: int, warmup: int,
                      env_kwargs: dict) -> list[tuple]:
    """Env ``index`` run through its schedule for ``warmup + steps`` physics steps (an
    episode's end resets it), recorded as the simulator saw it: ``("restore", time,
    y)``, ``("set", setter, args)`` and ``("step", controls, counted, timed)`` events.
    ``counted``: an env step (not an integration inside a reset); ``timed``: at or
    after the warm-up, as the benchmark's methods time it. Only ``Simulation``'s public
    methods are intercepted, so the recording holds whatever a reset does."""
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, **env_kwargs)
    sim = env.sim
    events: list[tuple] = []
    phase = {"k": 0, "in_env_step": False, "nested": False}
    originals = {name: getattr(sim, name) for name in (*_SETTERS, "restore", "step")}

    def setter(name):
        def call(*args):
            if not phase["nested"]:
                events.append(("set", name, tuple(np.array(a, dtype=float) for a in args)))
            return originals[name](*args)
        return call

    def restore(snapshot):
        phase["nested"] = True
        try:
            originals["restore"](snapshot)
        finally:
            phase["nested"] = False
        events.append(("restore", sim.state.getTime(), sim.state.getY().to_numpy().copy()))

    def step(controls=None):
        phase["nested"] = True
        try:
            originals["step"](controls)
        finally:
            phase["nested"] = False
        k = phase["k"]
        events.append(("step", sim.buf[sim.layout.slice("controls")].copy(),
                       phase["in_env_step"], k >= warmup))

    for name in _SETTERS:
        setattr(sim, name, setter(name))
    sim.restore, sim.step = restore, step
    schedule = ActionSchedule(seed, warmup + steps, env.action_space)
    try:
        env.reset(seed=seed + index)
        for k in range(warmup + steps):
            phase["k"], phase["in_env_step"] = k, True
            _, _, term, trunc, _ = env.step(schedule.row(index, k))
            phase["in_env_step"] = False
            if term or trunc:
                env.reset()
    finally:
        env.close()
    return events


def replay_seconds(sim, events) -> tuple[int, float]:
    """Redo a :func:`record_trajectory` on ``sim`` (a ``Simulation`` of the same model
    and physics) with bare ``Manager.integrate`` calls, reading nothing; returns
    (timed env steps, seconds spent in the timed integrations, resets' included)."""
    import opensim as osim
    steps, seconds = 0, 0.0
    for event in events:
        kind = event[0]
        if kind == "step":
            _, controls, counted, timed = event
            t0 = time.perf_counter()
            sim.integrate_raw(1, controls)
            if timed:
                seconds += time.perf_counter() - t0
                steps += int(counted)
        elif kind == "set":
            getattr(sim, event[1])(*event[2])
        else:
            state = osim.State(sim.default_state)
            state.setTime(float(event[1]))
            state.setY(osim.Vector.createFromMat(event[2]))
            sim.restore(state)
    return steps, seconds


# ----------------------------------------------------------------------- processes
def _record_env(task, i, seed, steps, warmup, env_kwargs, folder):
    events = record_trajectory(task, i, seed, steps, warmup, env_kwargs)
    with open(Path(folder) / f"env{i}.pkl", "wb") as f:
        pickle.dump(events, f, protocol=pickle.HIGHEST_PROTOCOL)


def record_trajectories(spec: dict, env_ids, folder: Path):
    """Envs ``env_ids`` of ``spec`` (task, seed, steps, warmup, env_kwargs, workers) run
    through their schedules once, untimed, in ``workers`` processes; each env's
    recording goes to ``folder/env{i}.pkl``."""
    ctx = mp.get_context("forkserver")
    work = [(spec["task"], i, spec["seed"], spec["steps"], spec["warmup"],
             spec["env_kwargs"], str(folder)) for i in env_ids]
    with ctx.Pool(min(spec["workers"], len(work))) as pool:
        pool.starmap(_record_env, work, chunksize=1)


def replay_worker(task: str, env_kwargs: dict, files, out):
    """One process of the physical limit: replays the recordings in ``files`` on one
    env's ``Simulation``; puts (timed steps, integration seconds) on ``out``."""
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, **env_kwargs)
    steps, seconds = 0, 0.0
    for path in files:
        with open(path, "rb") as f:
            s, t = replay_seconds(env.sim, pickle.load(f))
        steps, seconds = steps + s, seconds + t
    env.close()
    out.put((steps, seconds))


# ----------------------------------------------------------------------- env limit
def env_seconds(task: str, index: int, seed: int, rows: int, warmup: int, steps: int,
                env_kwargs: dict) -> tuple[int, float]:
    """Env ``index`` alone in a loop through its schedule (reset with ``seed +
    index``, an episode's end resets it) for ``warmup + steps`` physics steps; returns
    (timed steps, seconds inside its ``step`` and ``reset`` calls after the warm-up).
    A vector env of these envs does this work and more (moving data, waiting)."""
    from fastenv.env import ImitationEnv
    env = make_scheduled_env(ImitationEnv, task, index, seed, rows, env_kwargs)
    seconds, clock = 0.0, time.perf_counter
    try:
        env.reset(seed=seed + index)
        for k in range(warmup + steps):
            t0 = clock()
            _, _, term, trunc, _ = env.step(None)
            if term or trunc:
                env.reset()
            if k >= warmup:
                seconds += clock() - t0
    finally:
        env.close()
    return steps, seconds


def env_step_worker(task: str, env_kwargs: dict, indices, seed: int, rows: int,
                    warmup: int, steps: int, out):
    """One process of the env limit: :func:`env_seconds` for envs ``indices``, one
    after another; puts (timed steps, seconds) on ``out``."""
    total_steps, total_s = 0, 0.0
    for i in indices:
        n, s = env_seconds(task, int(i), seed, rows, warmup, steps, env_kwargs)
        total_steps, total_s = total_steps + n, total_s + s
    out.put((total_steps, total_s))
