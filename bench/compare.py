"""Side-by-side throughput comparison, run from the source checkout:

    python bench/compare.py --out bench/results [--quick] [--envs 1,2,4] [--steps 300]
                            [--rounds 3] [--methods ...] [--merge]

(The installed ``fastenv bench`` only measures this machine's steps/s for one task.)

The work is identical in every method: env ``i`` is reset with seed ``seed + i`` and
steps through the same seeded schedule of uniform-random actions, one row per physics
step (``bench/workload.py``), so every method runs the same trajectories with the same
falls and resets. Each env takes ``--warmup`` untimed steps, then ``--steps`` timed
ones (a synchronous NEXT_STEP vector env cannot hold an env back, so an env that
reset during the run takes as many extra steps as the others' resets; they are
counted). Methods, for one task (MuscleWalkingImitation2D-v0 by default):

* ``physical_limit``: the same trajectories redone with bare ``Manager.integrate``
  calls (recorded once per run, then replayed in W processes): env steps divided by
  the integration time per core, the rate no method on W cores can beat;
* ``env_limit``: the same envs each stepped alone in a loop through its schedule (env
  ``i`` on process ``i mod W``, the W processes at once), timing only ``step`` and
  ``reset``: W cores x one env, the rate a vector env of these envs reaches if moving
  data and waiting at the step's barrier cost nothing (``bench/pool.py``'s target is
  a fraction of it);
* ``fastenv_single``: one ``ImitationEnv`` in a loop;
* ``seed_style``: one ``bench.seed_style.SeedStyleEnv`` (the task computed the way
  osim-rl/BioImitation-Gym did) in a loop;
* ``gym_sync_*`` / ``gym_async_*``: ``gymnasium.vector.SyncVectorEnv`` and
  ``AsyncVectorEnv(shared_memory=True)`` (their default start method) over
  ``ImitationEnv``, NEXT_STEP and SAME_STEP autoreset;
* ``sb3_subproc``: Stable-Baselines3 ``SubprocVecEnv`` (its default start method) over
  ``ImitationEnv``; skipped with a note when stable-baselines3 is not installed;
* ``osim_sync`` / ``osim_async``: ``OsimVectorEnv`` ``step``, and ``send``/``recv`` with
  batch_size = num_envs / 2, both with W = number of cores workers;
* ``osim_sync_balanced``: ``OsimVectorEnv`` ``step`` with load balancing: 2W workers,
  ``active_workers`` = W (at most W step at once, a free core to the worker with the
  most predicted work left);
* ``osim_sync_unshared`` / ``osim_async_unshared`` (only with ``--methods``): as
  ``osim_sync`` / ``osim_async`` with ``share_model=False``, one OpenSim model per env
  instead of one per worker.

Every (method, num_envs) point runs ``--rounds`` times, the points in an order that
rotates by one each round (the VM's speed drifts), each in its own driver process (a
child of this one) so that memory and CPU figures belong to that method alone; the
median and the range over the rounds are reported. steps/s counts physics transitions
(a NEXT_STEP reset-only step is not counted), latency is per call that yields a batch
(``step``, or ``recv`` + ``send``), parent CPU is the driver's ``process_time`` / wall,
and RSS/PSS is the peak over the measured window of the sum over the driver and all
its descendants (``/proc/<pid>/smaps_rollup``). Afterwards the run checks itself: no
method may exceed the physical limit by more than the two measured spreads (its
range and the limit's); the verdict is in the JSON and the Markdown.

One run of the whole sweep takes hours on 2 cores: run it as several commands with
``--envs``/``--methods`` subsets and ``--merge``, which keeps the other points already
in ``--out`` (each row names the run it came from; its ratios are to that run's limit).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

TASK = "MuscleWalkingImitation2D-v0"
ENVS = (1, 2, 4, 8, 16, 32)
QUICK_ENVS = (2,)
STEPS, QUICK_STEPS = 300, 8       # timed steps per env
WARMUP, QUICK_WARMUP = 10, 2      # untimed steps per env before
ROUNDS, QUICK_ROUNDS = 3, 1
SPARE_ROWS = 64                   # schedule rows past warm-up + steps (NEXT_STEP extras)
POINT_TIMEOUT = 1800.0            # s: a driver running longer is killed
RESULT_MARK = "FASTENV_BENCH_RESULT "
FORMAT = 2                        # of compare.json: per-round runs, medians and ranges

METHODS = {   # key: (label, runs per num_envs)
    "physical_limit": ("physical limit (bare integrate, same trajectories)", True),
    "env_limit": ("env limit (W cores x one env alone, same trajectories)", True),
    "fastenv_single": ("fastenv ImitationEnv, single loop", False),
    "seed_style": ("seed-style env (osim-rl way), single loop", False),
    "gym_sync_next": ("gymnasium SyncVectorEnv, NEXT_STEP", True),
    "gym_sync_same": ("gymnasium SyncVectorEnv, SAME_STEP", True),
    "gym_async_next": ("gymnasium AsyncVectorEnv(shm), NEXT_STEP", True),
    "gym_async_same": ("gymnasium AsyncVectorEnv(shm), SAME_STEP", True),
    "sb3_subproc": ("SB3 SubprocVecEnv", True),
    "osim_sync": ("OsimVectorEnv step (sync)", True),
    "osim_async": ("OsimVectorEnv send/recv, batch n/2", True),
    "osim_sync_balanced": ("OsimVectorEnv step (sync), 2W workers, W active", True),
    "osim_sync_unshared": ("OsimVectorEnv step (sync), one OpenSim model per env", True),
    "osim_async_unshared": ("OsimVectorEnv send/recv, batch n/2, one OpenSim model per env",
                            True),
}
#: run only when asked for (``--methods``): the pool before its envs shared a model
OPT_IN = ("osim_sync_unshared", "osim_async_unshared")
REFERENCE_METHOD = "gym_async_next"   # the "ratio to AsyncVectorEnv" denominator
#: rows other rows of their run are divided by: an old row that --merge keeps keeps them
DENOMINATORS = ("physical_limit", "env_limit", REFERENCE_METHOD)


# ----------------------------------------------------------------------- measuring
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout; reaches forkserver children

from bench.pool import tree_memory_mb  # noqa: E402
from bench.workload import (  # noqa: E402
    env_step_worker,
    make_scheduled_env,
    record_trajectories,
    replay_worker,
    scheduled_actions,
)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/<pid>/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


class PeakMemory:
    """Samples RSS/PSS of this process tree in a thread; keeps the peak."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.rss = self.pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        rss, pss = tree_memory_mb(process_tree(os.getpid()))
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


class Episodes:
    """Per-env physics steps and episode ends, and which envs' next result is a
    NEXT_STEP reset (a step that takes no action row and is not counted)."""

    def __init__(self, n: int, next_step: bool, resetting: bool = False):
        self.next_step = next_step
        self.resetting = np.full(n, resetting)
        self.counts = np.zeros(n, dtype=np.int64)
        self.ends = 0

    def count(self, ids, terminated, truncated) -> int:
        done = np.asarray(terminated) | np.asarray(truncated)
        self.ends += int(done.sum())
        stepped = np.ones(len(done), dtype=bool)
        if self.next_step:
            stepped = ~self.resetting[ids]
            self.resetting[ids] = done
        self.counts[ids] += stepped
        return int(stepped.sum())


def measure(step_once, finished, start=None) -> dict:
    """Work-boxed loop: ``step_once() -> physics steps counted`` until ``finished()``;
    ``start()`` (timed) begins the work. Latency per call."""
    lat, steps = [], 0
    with PeakMemory() as mem:
        c0, t0 = time.process_time(), time.perf_counter()
        if start is not None:
            start()
        while not finished():
            ts = time.perf_counter()
            steps += step_once()
            lat.append(time.perf_counter() - ts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    lat_ms = np.array(lat) * 1e3 if lat else np.zeros(1)
    return dict(steps=int(steps), measured_s=wall, steps_per_s=steps / wall,
                parent_cpu=cpu / wall, calls=len(lat),
                p50_ms=float(np.percentile(lat_ms, 50)),
                p95_ms=float(np.percentile(lat_ms, 95)),
                p99_ms=float(np.percentile(lat_ms, 99)), rss_mb=mem.rss, pss_mb=mem.pss)


# ----------------------------------------------------------------------- methods
def _rows(spec) -> int:
    return spec["warmup"] + spec["steps"] + SPARE_ROWS


def _placeholder(space, n=None):
    """An in-range action: the schedule replaces it."""
    mid = ((space.low + space.high) / 2).astype(space.dtype)
    return mid if n is None else np.broadcast_to(mid, (n, *space.shape)).copy()


def _finish(res, ep, spec):
    per_env = ep.counts - spec["warmup"]
    return dict(res, episode_ends=ep.ends, steps_per_env=[int(per_env.min()),
                                                          int(per_env.max())])


def _scheduled_factory(env_cls, spec, i):
    return partial(make_scheduled_env, env_cls, spec["task"], i, spec["seed"], _rows(spec),
                   spec["env_kwargs"])


def _single(env_cls, spec):
    env = _scheduled_factory(env_cls, spec, 0)()
    action = _placeholder(env.action_space)
    env.reset(seed=spec["seed"])
    ep = Episodes(1, next_step=False)
    total = spec["warmup"] + spec["steps"]

    def once():
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
        return ep.count([0], [term], [trunc])

    try:
        while ep.counts[0] < spec["warmup"]:
            once()
        ep.ends = 0
        return _finish(measure(once, lambda: ep.counts[0] >= total), ep, spec)
    finally:
        env.close()


def _vector_loop(venv, spec, n, next_step, step=None, timers=None):
    """Sync stepping until every env has taken warm-up + steps physics steps;
    ``step() -> (terminated, truncated)`` (default: ``venv.step``). ``timers()``: the
    pool's per-worker clocks, read around the timed window (``workers`` in the result:
    each worker's share of that window waiting, stepping envs and sending)."""
    ep = Episodes(n, next_step)
    if step is None:
        action = _placeholder(venv.single_action_space, n)

        def step():
            return venv.step(action)[2:4]

    def once():
        term, trunc = step()
        return ep.count(slice(None), term, trunc)

    while ep.counts.min() < spec["warmup"]:
        once()
    ep.ends = 0
    total = spec["warmup"] + spec["steps"]
    before = timers() if timers else None
    res = _finish(measure(once, lambda: ep.counts.min() >= total), ep, spec)
    if timers:
        res["workers"] = [
            {k: (b[k] - a[k]) / res["measured_s"] for k in ("waiting_s", "busy_s",
                                                               "sending_s")}
            | {"calls": b["calls"] - a["calls"]} for a, b in zip(before, timers())]
    return res


def _gym_vector(spec):
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from fastenv.env import ImitationEnv
    n, method = spec["num_envs"], spec["method"]
    mode = AutoresetMode.SAME_STEP if method.endswith("same") else AutoresetMode.NEXT_STEP
    fns = [_scheduled_factory(ImitationEnv, spec, i) for i in range(n)]
    if method.startswith("gym_sync"):
        venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    else:
        venv = gym.vector.AsyncVectorEnv(fns, shared_memory=True, autoreset_mode=mode)
    try:
        venv.reset(seed=spec["seed"])
        return _vector_loop(venv, spec, n, mode == AutoresetMode.NEXT_STEP)
    finally:
        venv.close()


def _sb3(spec):
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from fastenv.env import ImitationEnv
    n = spec["num_envs"]
    venv = SubprocVecEnv([_scheduled_factory(ImitationEnv, spec, i) for i in range(n)])
    action = _placeholder(venv.action_space, n)
    no_trunc = np.zeros(n, bool)

    def step():   # SB3 resets inside the step that ended: every step is physics
        return venv.step(action)[2], no_trunc

    try:
        venv.seed(spec["seed"])
        venv.reset()
        return _vector_loop(venv, spec, n, next_step=False, step=step)
    finally:
        venv.close()


def _osim(spec):
    from fastenv.vector import OsimVectorEnv
    n, w = spec["num_envs"], spec["workers"]
    sync = spec["method"] in ("osim_sync", "osim_sync_balanced", "osim_sync_unshared")
    batch = n if sync else n // 2
    workers = (dict(num_workers=2 * w, active_workers=w)
               if spec["method"] == "osim_sync_balanced" else dict(num_workers=w))
    if spec["method"].endswith("_unshared"):
        workers["share_model"] = False
    with scheduled_actions(n, _rows(spec), spec["seed"]):
        venv = OsimVectorEnv(spec["task"], n, batch_size=batch, **workers,
                             **spec["env_kwargs"])
        try:
            if sync:
                venv.reset(seed=spec["seed"])
                return _vector_loop(venv, spec, n, next_step=True,
                                    timers=venv.worker_timers)
            return _osim_async(venv, spec, n, batch)
        finally:
            venv.close()


def _osim_async(venv, spec, n, batch):
    """send/recv, batch n/2: an env is sent again until it has taken the target number
    of physics steps (warm-up, then warm-up + steps); the last batches are smaller."""
    action = _placeholder(venv.single_action_space)
    ep = Episodes(n, next_step=True, resetting=True)   # the first results are resets
    in_flight = np.zeros(n, dtype=bool)
    target = [spec["warmup"]]

    def send(ids):
        ids = ids[ep.counts[ids] < target[0]]
        if len(ids):
            venv.send(np.broadcast_to(action, (len(ids), *action.shape)), ids)
            in_flight[ids] = True

    def once():
        *_, term, trunc, info = venv.recv(batch_size=int(min(batch, in_flight.sum())))
        ids = info["env_id"]
        in_flight[ids] = False
        counted = ep.count(ids, term, trunc)
        send(ids)
        return counted

    venv.async_reset(seed=spec["seed"])
    in_flight[:] = True
    while in_flight.any():
        once()
    ep.ends = 0
    target[0] = spec["warmup"] + spec["steps"]
    return _finish(measure(once, lambda: not in_flight.any(),
                           start=lambda: send(np.arange(n))), ep, spec)


# ----------------------------------------------------------------------- the limit
def _limit_processes(spec, target, args_of):
    """Run ``target(*args_of(k), queue)`` in W processes at once (process k gets envs
    k, k + W, ...); each puts (timed env steps, seconds). Limit = env steps / (seconds
    summed over the processes / W)."""
    n, w = spec["num_envs"], spec["workers"]
    ctx = mp.get_context("forkserver")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_of(list(range(k, n, w))), q))
             for k in range(min(w, n))]
    c0, t0 = time.process_time(), time.perf_counter()
    with PeakMemory() as mem:
        for p in procs:
            p.start()
        parts = [q.get() for _ in procs]
        for p in procs:
            p.join()
    wall = time.perf_counter() - t0
    steps, seconds = sum(s for s, _ in parts), sum(t for _, t in parts)
    return dict(steps_per_s=steps * w / seconds, steps=steps, measured_s=seconds / w,
                calls=None, parent_cpu=(time.process_time() - c0) / wall, p50_ms=None,
                p95_ms=None, p99_ms=None, rss_mb=mem.rss, pss_mb=mem.pss,
                episode_ends=None, steps_per_env=[spec["steps"], spec["steps"]])


def _physical_limit(spec):
    """W processes at once redo envs 0..n-1's recorded physics (env i on process
    i mod W) with bare integrate calls."""
    folder = Path(spec["trajectories"])
    return _limit_processes(spec, replay_worker, lambda ids: (
        spec["task"], spec["env_kwargs"], [folder / f"env{i}.pkl" for i in ids]))


def _env_limit(spec):
    """W processes at once step envs 0..n-1 alone through their schedules (env i on
    process i mod W), timing only step and reset."""
    return _limit_processes(spec, env_step_worker, lambda ids: (
        spec["task"], spec["env_kwargs"], ids, spec["seed"], _rows(spec), spec["warmup"],
        spec["steps"]))


def run_point(spec: dict) -> dict:
    """Measure one (method, num_envs) point in this process (a driver)."""
    t0 = time.perf_counter()
    method = spec["method"]
    if method == "physical_limit":
        res = _physical_limit(spec)
    elif method == "env_limit":
        res = _env_limit(spec)
    elif method == "fastenv_single":
        from fastenv.env import ImitationEnv
        res = _single(ImitationEnv, spec)
    elif method == "seed_style":
        from bench.seed_style import SeedStyleEnv
        res = _single(SeedStyleEnv, spec)
    elif method.startswith("gym_"):
        res = _gym_vector(spec)
    elif method == "sb3_subproc":
        res = _sb3(spec)
    elif method.startswith("osim_"):
        res = _osim(spec)
    else:
        raise ValueError(f"unknown method {method!r}; known: {list(METHODS)}")
    res["driver_s"] = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------- orchestration
def plan_points(envs, methods) -> list[tuple[str, int]]:
    """(method, num_envs) points; the single loops run env 0, and every num_envs that
    a method runs at gets a physical-limit point."""
    singles = [(m, 1) for m in METHODS if not METHODS[m][1] and m in methods]
    per_n = [(m, n) for n in envs for m in METHODS
             if METHODS[m][1] and m in methods and m != "physical_limit"]
    limit_n = sorted({n for _, n in singles + per_n} if "physical_limit" in methods else [])
    return [("physical_limit", n) for n in limit_n] + singles + per_n


def static_skip(method, n, workers: int = 1) -> str | None:
    """Why a point cannot run at all (``workers``: W)."""
    if method == "osim_sync_balanced" and n <= workers:
        return (f"needs num_envs > W = {workers} (with one env per worker there is "
                "nothing to balance: it is osim_sync)")
    if method in ("osim_async", "osim_async_unshared") and n < 2:
        return "needs num_envs >= 2 (batch_size = num_envs / 2)"
    if method == "sb3_subproc" and importlib.util.find_spec("stable_baselines3") is None:
        return "stable-baselines3 is not installed (pip install 'fastenv[sb3]')"
    return None


def _reap_session(sid: int, wait_s: float = 10.0):
    """Kill what is left of a driver's session (vector-env workers that outlive their
    driver's exit while shutting down) and wait until it is gone, so that the next
    point runs on an otherwise idle machine."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        left = []
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == sid:
                        left.append(int(entry))
                except OSError:
                    pass
        if not left:
            return
        try:
            os.killpg(sid, signal.SIGKILL)
        except OSError:
            pass
        time.sleep(0.1)


def launch(spec: dict, timeout: float = POINT_TIMEOUT):
    """Run one point in a driver process (new session: a timeout kills its tree)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--point", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timed out after {timeout:.0f} s (killed)"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    _reap_session(proc.pid)
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):]), None
    tail = " ".join(err.strip().splitlines()[-3:])[-400:]
    return None, f"driver failed (exit {proc.returncode}): {tail}"


def _versions():
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("numpy", "gymnasium", "opensim", "stable-baselines3", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def recordings_missing(base: dict, n: int, folder: Path) -> list[int]:
    """Which of envs 0..n-1 have no recording of this workload in ``folder`` (a
    ``workload.json`` there names the workload; another one's recordings are
    replaced)."""
    import fastenv
    folder.mkdir(parents=True, exist_ok=True)
    workload = dict({k: base[k] for k in ("task", "seed", "steps", "warmup", "env_kwargs")},
                    fastenv=fastenv.__version__)
    stamp = folder / "workload.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != workload:
        for old in folder.glob("env*.pkl"):
            old.unlink()
        stamp.write_text(json.dumps(workload))
    return [i for i in range(n) if not (folder / f"env{i}.pkl").exists()]


def rounds_order(points: list, r: int) -> list:
    """Round ``r``'s order: the plan rotated by ``r`` points."""
    k = r % len(points) if points else 0
    return points[k:] + points[:k]


def run(args) -> dict:
    """Every point of the plan, ``args.rounds`` times in rotating order; rows with the
    median and range of each point, checked against the limit."""
    from tqdm import tqdm

    from fastenv.pool.pool import default_workers
    cores = default_workers()   # the cores this process may run on
    workers = args.workers or cores
    env_kwargs = {"reference": str(Path(args.reference).resolve())} if args.reference else {}
    points, skipped = [], []
    for method, n in plan_points(args.envs, args.methods):
        reason = static_skip(method, n, workers)
        if reason is None:
            points.append((method, n))
        else:
            skipped.append(dict(method=method, num_envs=n, reason=reason))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    meta = dict(format=FORMAT, task=args.task, steps=args.steps, warmup=args.warmup,
                rounds=args.rounds, envs=list(args.envs), workers=workers, cores=cores,
                seed=args.seed, quick=args.quick,
                reference=env_kwargs.get("reference", "task default"), started=started,
                load_avg_start=list(os.getloadavg()), host=platform.node(),
                versions=_versions(), command=getattr(args, "command", None))
    base = dict(task=args.task, seed=args.seed, steps=args.steps, warmup=args.warmup,
                workers=workers, env_kwargs=env_kwargs)
    runs: dict[tuple, list] = {p: [] for p in points}
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastenv-bench-") as temporary:
        folder = args.trajectories or temporary
        n_record = max((n for m, n in points if m == "physical_limit"), default=0)
        missing = recordings_missing(base, n_record, Path(folder))
        if missing:
            print(f"recording the physics of envs {missing} for the limit",
                  file=sys.stderr, flush=True)
            record_trajectories(base, missing, Path(folder))
        with tqdm(total=len(points) * args.rounds, desc=Path(sys.argv[0]).name,
                  unit="point", file=sys.stderr, dynamic_ncols=True) as bar:
            for r in range(args.rounds):
                for method, n in rounds_order(points, r):
                    bar.set_postfix_str(f"round {r + 1}: {method} n={n}")
                    spec = dict(base, method=method, num_envs=n, trajectories=folder)
                    load = os.getloadavg()[0]
                    res, reason = launch(spec)
                    if res is None:
                        tqdm.write(f"round {r + 1} {method} n={n}: {reason}", file=sys.stderr)
                        skipped.append(dict(method=method, num_envs=n, round=r,
                                            reason=reason))
                    else:
                        runs[(method, n)].append(dict(res, round=r, load_before=load))
                    bar.update()
    rows = [summarize(method, n, METHODS[method][0], rs, started)
            for (method, n), rs in runs.items() if rs]
    _ratios(rows)
    meta.update(wall_s=time.perf_counter() - t_begin, load_avg_end=list(os.getloadavg()))
    result = dict(meta=meta, runs_meta=[meta], rows=rows, skipped=skipped)
    result["check"] = check(rows)
    return result


def summarize(method, n, label, runs, run_started) -> dict:
    """One row: the median round's figures, steps/s median and range over rounds."""
    rates = np.array([r["steps_per_s"] for r in runs])
    median_run = runs[int(np.argsort(rates)[(len(rates) - 1) // 2])]
    keep = ("p50_ms", "p95_ms", "p99_ms", "parent_cpu", "episode_ends", "steps",
            "steps_per_env", "calls", "workers")
    return dict({k: median_run.get(k) for k in keep}, method=method, label=label,
                num_envs=n, run=run_started, steps_per_s=float(np.median(rates)),
                steps_per_s_range=[float(rates.min()), float(rates.max())],
                spread=float(rates.max() - rates.min()),
                rss_mb=float(max(r["rss_mb"] for r in runs)),
                pss_mb=float(max(r["pss_mb"] for r in runs)),
                load_before=[r["load_before"] for r in runs], runs=runs)


def _limit_of(rows, row):
    return next((r for r in rows if r["method"] == "physical_limit"
                 and r["num_envs"] == row["num_envs"] and r["run"] == row["run"]), None)


def _ratios(rows):
    for r in rows:
        lim = _limit_of(rows, r)
        r["ratio_limit"] = r["steps_per_s"] / lim["steps_per_s"] if lim else None
        ref = next((x for x in rows if x["method"] == REFERENCE_METHOD
                    and x["num_envs"] == r["num_envs"] and x["run"] == r["run"]), None)
        r["ratio_async"] = (r["steps_per_s"] / ref["steps_per_s"]
                            if ref and r["method"] != "physical_limit" else None)


def check(rows) -> dict:
    """No method above the limit of its num_envs by more than its spread plus the
    limit's (max - min over the rounds): the run's own test of its method."""
    out = []
    for r in rows:
        lim = _limit_of(rows, r)
        if r["method"] == "physical_limit" or lim is None:
            continue
        excess = r["steps_per_s"] - lim["steps_per_s"]
        allowed = r["spread"] + lim["spread"]
        out.append(dict(method=r["method"], num_envs=r["num_envs"], run=r["run"],
                        excess=excess, allowed=allowed, ok=bool(excess <= allowed)))
    bad = [c for c in out if not c["ok"]]
    return dict(passed=not bad, checked=len(out), violations=bad, points=out)


# ----------------------------------------------------------------------- merging
def merge(old: dict, new: dict) -> dict:
    """``new``'s rows plus ``old``'s rows of other (method, num_envs) points, when both
    ran the same workload. Ratios stay those of each row's own run, so an old run's
    limit (physical and env) and AsyncVectorEnv rows stay while an old row of that run
    and num_envs does: a num_envs may then have a limit row per run."""
    key = ("format", "task", "steps", "warmup", "seed", "workers", "reference")
    meta_old = old.get("meta", {})
    if any(meta_old.get(k) != new["meta"][k] for k in key):
        raise SystemExit("--merge: the results in --out ran another workload ("
                         + ", ".join(f"{k} {meta_old.get(k)!r} vs {new['meta'][k]!r}"
                                     for k in key if meta_old.get(k) != new["meta"][k])
                         + "); write to another folder or drop --merge")
    ran = {(r["method"], r["num_envs"]) for r in new["rows"]}
    kept = [r for r in old["rows"] if (r["method"], r["num_envs"]) not in ran]
    needed = {(r["num_envs"], r["run"]) for r in kept if r["method"] not in DENOMINATORS}
    kept += [r for r in old["rows"] if (r["method"], r["num_envs"]) in ran
             and r["method"] in DENOMINATORS and (r["num_envs"], r["run"]) in needed]
    rows = kept + new["rows"]
    order = {m: k for k, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (r["num_envs"] if METHODS.get(r["method"], ("", True))[1] else 0,
                             order.get(r["method"], len(order)), r["run"]))
    runs_meta = [m for m in old.get("runs_meta", [meta_old])
                 if any(r["run"] == m["started"] for r in rows)] + [new["meta"]]
    meta = dict(new["meta"], envs=sorted({r["num_envs"] for r in rows}))
    skipped = [s for s in old.get("skipped", []) if (s["method"], s["num_envs"]) not in ran]
    result = dict(meta=meta, runs_meta=runs_meta, rows=rows, skipped=skipped + new["skipped"])
    result["check"] = check(rows)
    return result


# ----------------------------------------------------------------------- output
def _fmt(x, spec="{:.0f}"):
    return "–" if x is None else spec.format(x)


def describe(result: dict) -> list[str]:
    """The runs and the method, in words (Markdown)."""
    m = result["meta"]
    lines = [f"{m['task']}: every env steps its seeded action schedule, {m['warmup']} "
             f"untimed then {m['steps']} timed steps per env (falls and resets included), "
             f"W = {m['workers']} workers on {m['cores']} cores; each point "
             + (f"{m['rounds']} rounds in rotating order, steps/s the median with the "
                "range over the rounds." if m["rounds"] > 1 else "one round (no spread).")
             + f" Seed {m['seed']}, reference {m['reference']}.", ""]
    for k, r in enumerate(result["runs_meta"], 1):
        # the num_envs of the rows this run kept: a run's single loops are its rows at 1
        # even when it was asked for other num_envs only
        kept = sorted({row["num_envs"] for row in result["rows"]
                       if row.get("run") == r["started"]})
        lines.append(f"- Run {k}, of {r['started']} on {r['host']}: num_envs "
                     f"{', '.join(map(str, kept or r['envs']))}, {r.get('wall_s', 0):.0f} s, load "
                     f"average {r['load_avg_start'][0]:.2f} at the start and "
                     f"{r.get('load_avg_end', [float('nan')])[0]:.2f} at the end"
                     + (f" (`{r['command']}`)" if r.get("command") else "") + ".")
    return lines


def check_lines(result: dict) -> list[str]:
    c = result["check"]
    if c["passed"]:
        return [f"Check: no method exceeds the physical limit by more than its spread plus "
                f"the limit's ({c['checked']} points checked): passed."]
    return ([f"Check: **failed**: {len(c['violations'])} of {c['checked']} points exceed "
             "the physical limit by more than their spread plus the limit's:"]
            + [f"- {v['method']} at num_envs {v['num_envs']}: +{v['excess']:.1f} steps/s, "
               f"allowed {v['allowed']:.1f}" for v in c["violations"]])


def run_number(result: dict, row: dict) -> str:
    """The row's run, 1-based in ``runs_meta`` (the runs listed above the table)."""
    runs = [m["started"] for m in result["runs_meta"]]
    return str(runs.index(row["run"]) + 1) if row["run"] in runs else "?"


def table_rows(result: dict) -> list[list[str]]:
    out = []
    for r in result["rows"]:
        lo, hi = r["steps_per_s_range"]
        lat = ("–" if r["p50_ms"] is None else
               f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f}")
        a, b = r["steps_per_env"]
        out.append([r["label"], str(r["num_envs"]), f"{r['steps_per_s']:.1f}",
                    f"{lo:.1f}–{hi:.1f}", _fmt(r["ratio_limit"], "{:.2f}"),
                    _fmt(r["ratio_async"], "{:.2f}"), lat, f"{100 * r['parent_cpu']:.0f}%",
                    f"{r['rss_mb']:.0f}", f"{r['pss_mb']:.0f}",
                    str(a) if a == b else f"{a}–{b}", _fmt(r["episode_ends"]),
                    run_number(result, r)])
    return out


HEADER = ["method", "num_envs", "steps/s", "range", "× limit", "× Async",
          "p50 / p95 / p99 ms", "parent CPU", "RSS MB", "PSS MB", "timed steps per env",
          "episode ends", "run"]


def markdown(result: dict) -> str:
    m = result["meta"]
    rule = ["---"] + ["---:"] * (len(HEADER) - 1)
    lines = [f"# bench/compare.py: {m['task']}", "", *describe(result), "",
             "steps/s: env steps (physics transitions) per second, median over the rounds; "
             "range: slowest and fastest round; × limit / × Async: the median's ratio to the "
             "physical limit and to AsyncVectorEnv NEXT_STEP at the same num_envs, of the "
             "same run; latency per call that yields a batch (median round); parent CPU: the "
             "driver process's CPU time / wall; RSS/PSS: peak over the driver and all its "
             "children, largest round; episode ends: in the timed steps (median round).",
             ""]
    return table_markdown(lines, HEADER, rule, table_rows(result), result)


def table_markdown(lines: list[str], header: list[str], rule: list[str], cells: list[list[str]],
                   result: dict) -> str:
    """``lines``, then the table, the limit check and the skipped points: the results
    file of compare.py and pool.py alike."""
    lines = [*lines, "| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines += ["", *check_lines(result)]
    if result["skipped"]:
        lines += ["", "Skipped points:", ""]
        lines += [f"- {s['method']}, num_envs={s['num_envs']}: {s['reason']}"
                  for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path):
    """Left: each point ÷ the physical limit measured in the same run, which compares
    across runs; right: steps/s. A merged table's runs may have met VMs of different
    speeds, so its points are not joined by lines and each run has its own marker."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (rel, ax) = plt.subplots(1, 2, figsize=(15, 5.5))
    envs = sorted({r["num_envs"] for r in result["rows"]}) or [1]
    colors = iter(plt.get_cmap("tab20")([0, 2, 4, 6, 8, 12, 16, 18, 1, 3, 5, 7, 9, 13, 17,
                                         19]))   # no brown or gray: the single loops'

    flat = {"fastenv_single": dict(color="tab:gray", ls="--"),
            "seed_style": dict(color="tab:brown", ls=":")}
    runs = sorted({r.get("run", "") for r in result["rows"]})
    markers = dict(zip(runs, "osD^v<>ph*"))
    joined = {} if len(runs) == 1 else dict(ls="none")   # a line would cross other runs
    methods = dict.fromkeys(r["method"] for r in result["rows"])
    for method in methods:   # a merged table's latest run per num_envs
        rows = list({r["num_envs"]: r for r in result["rows"]
                     if r["method"] == method}.values())
        rows.sort(key=lambda r: r["num_envs"])
        label = rows[0]["label"]
        if method in flat:
            ax.axhline(rows[0]["steps_per_s"], label=label, lw=1.5, **flat[method])
            rel.plot([1], [rows[0]["ratio_limit"]], marker="o", ls="none",
                     color=flat[method]["color"])
            continue
        style = (dict(color="black", lw=2) if method == "physical_limit"
                 else dict(color=next(colors, None)))
        for k, run in enumerate(dict.fromkeys(r.get("run", "") for r in rows)):
            part = [r for r in rows if r.get("run", "") == run]
            x = np.array([r["num_envs"] for r in part])
            y = np.array([r["steps_per_s"] for r in part])
            err = np.array([[r["steps_per_s"] - r["steps_per_s_range"][0],
                             r["steps_per_s_range"][1] - r["steps_per_s"]] for r in part]).T
            ax.errorbar(x, y, yerr=err, label=label if k == 0 else None, capsize=3,
                        marker=markers.get(run, "o"), **style, **joined)
            if method != "physical_limit" and all("ratio_limit" in r for r in part):
                scale = np.array([r["ratio_limit"] / r["steps_per_s"] for r in part])
                rel.errorbar(x, scale * y, yerr=scale * err, capsize=3,
                             marker=markers.get(run, "o"), **style, **joined)
    rel.axhline(1.0, color="black", lw=2)
    for a in (rel, ax):
        a.set_xscale("log", base=2)
        a.set_xticks(envs, [str(n) for n in envs])
        a.set_xlabel("num_envs")
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
    rel.set_ylabel("÷ physical limit of the same run (median, range over rounds)")
    ax.set_ylabel("env steps / s (median, range over rounds)")
    m = result["meta"]
    n_runs = len(runs)
    fig.suptitle(f"{m['task']}: {m['cores']} cores, W={m['workers']}, {m['steps']} steps "
                 f"per env" + (f"; {n_runs} runs, one marker each (see the table)"
                               if n_runs > 1 else
                               f", {m['rounds']} round{'s' if m['rounds'] > 1 else ''}"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no point measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, out: Path, name: str = "compare", merge_old=False,
                  markdown_fn=markdown, png=True) -> tuple[dict, dict]:
    """Write ``name``.md/.json (and .png); with ``merge_old`` the rows already in
    ``name``.json for other points are kept. Returns (paths, the result written)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{name}.md", "json": out / f"{name}.json"}
    if png:
        paths["png"] = out / f"{name}.png"
    if merge_old and paths["json"].exists():
        result = merge(json.loads(paths["json"].read_text()), result)
    paths["md"].write_text(markdown_fn(result))
    paths["json"].write_text(json.dumps(result, indent=1))
    if png:
        plot(result, paths["png"])
    return paths, result


def add_workload_args(ap: argparse.ArgumentParser):
    """The options that define the workload, shared with ``bench/pool.py``."""
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: one round, few steps (checks that it runs, "
                         "measures nothing)")
    ap.add_argument("--task", default=TASK)
    ap.add_argument("--steps", type=int, default=None,
                    help=f"timed physics steps per env (default {STEPS}; quick {QUICK_STEPS})")
    ap.add_argument("--warmup", type=int, default=None,
                    help=f"untimed steps per env first (default {WARMUP}; quick "
                         f"{QUICK_WARMUP})")
    ap.add_argument("--rounds", type=int, default=None,
                    help=f"repeats of every point, rotating order (default {ROUNDS}; quick "
                         f"{QUICK_ROUNDS})")
    ap.add_argument("--workers", type=int, default=None, help="W (default: CPU cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default=None,
                    help="reference .npz/.mot for every env (default: the task's)")
    ap.add_argument("--trajectories", default=None,
                    help="folder that keeps the limit's recordings between commands of one "
                         "sweep (default: a temporary folder); only for one checkout state")
    ap.add_argument("--merge", action="store_true",
                    help="keep the points of an earlier run of the same workload in --out "
                         "(several commands, one table)")
    ap.add_argument("--out", default=None, help="output folder (required; bench/results "
                                                "is the committed one)")


def finish_workload_args(ap, args, envs, quick_envs):
    """Defaults and checks of :func:`add_workload_args`'s options."""
    if args.out is None:
        ap.error("--out is required (e.g. --out bench/results to replace the committed run)")
    try:
        args.envs = ([int(x) for x in args.envs.split(",")] if args.envs else
                     list(quick_envs if args.quick else envs))
    except ValueError:
        ap.error(f"--envs must be comma-separated integers, got {args.envs!r}")
    for name, full, quick in (("steps", STEPS, QUICK_STEPS), ("warmup", WARMUP, QUICK_WARMUP),
                              ("rounds", ROUNDS, QUICK_ROUNDS)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if any(n < 1 for n in args.envs):
        ap.error(f"--envs values must be >= 1, got {args.envs}")
    if args.steps < 1 or args.warmup < 1 or args.rounds < 1:
        ap.error(f"--steps, --warmup and --rounds must be >= 1, got {args.steps}, "
                 f"{args.warmup}, {args.rounds}")
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    args.command = " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python bench/compare.py", description=__doc__.split("\n\n")[0],
        epilog=f"Default: num_envs {','.join(map(str, ENVS))}, {STEPS} steps per env, "
               f"{ROUNDS} rounds (hours on 2 cores: split it with --envs/--methods and "
               f"--merge); --quick: num_envs 2, {QUICK_STEPS} steps, one round (< 1 min).")
    add_workload_args(ap)
    ap.add_argument("--envs", default=None, help="comma-separated num_envs values")
    ap.add_argument("--methods", default=",".join(m for m in METHODS if m not in OPT_IN),
                    help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--point", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.point is not None:
        return args
    finish_workload_args(ap, args, ENVS, QUICK_ENVS)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.point is not None:   # driver process of one point
        res = run_point(json.loads(args.point))
        print(RESULT_MARK + json.dumps(res), flush=True)
        return 0
    if "sb3_subproc" in args.methods and static_skip("sb3_subproc", 2):
        print(f"note: skipping sb3_subproc: {static_skip('sb3_subproc', 2)}", file=sys.stderr)
    result = run(args)
    paths, result = write_outputs(result, Path(args.out), merge_old=args.merge)
    print(markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
