"""Side-by-side throughput comparison, run from the source checkout:

    python bench/compare.py --out bench/results [--quick] [--envs 1,2,4] [--seconds 4]

(The installed ``fastenv bench`` only measures this machine's steps/s for one task.)

One run, one process tree, one task (MuscleWalkingImitation2D-v0 by default), the same
seeds and random actions for every method; episodes end with realistic falls and
resets (auto-reset on termination/truncation):

* ``physical_limit``: W processes looping bare ``Manager.integrate`` on the same model
  (no observations, no rewards), from ``bench/pool.py``;
* ``fastenv_single``: one ``ImitationEnv`` in a loop;
* ``seed_style``: one ``bench.seed_style.SeedStyleEnv`` (the task computed the way
  osim-rl/BioImitation-Gym did) in a loop;
* ``gym_sync_*`` / ``gym_async_*``: ``gymnasium.vector.SyncVectorEnv`` and
  ``AsyncVectorEnv(shared_memory=True)`` (their default start method) over
  ``ImitationEnv``, NEXT_STEP and SAME_STEP autoreset;
* ``sb3_subproc``: Stable-Baselines3 ``SubprocVecEnv`` (its default start method) over
  ``ImitationEnv``; skipped with a note when stable-baselines3 is not installed;
* ``osim_sync`` / ``osim_async``: ``OsimVectorEnv`` ``step``, and ``send``/``recv`` with
  batch_size = num_envs / 2, both with W = number of cores workers.

Each (method, num_envs) point runs in its own driver process (a child of this one) so
that memory and CPU figures belong to that method alone: steps/s counts physics
transitions (a NEXT_STEP reset-only step is not counted; no frame-skip inflation),
latency is per call that yields a batch (``step``, or ``recv`` + ``send``), parent CPU
is the driver's ``process_time`` / wall, and RSS/PSS is the peak over the measured
window of the sum over the driver and all its descendants
(``/proc/<pid>/smaps_rollup``). Points are time-boxed; before each point its cost is
predicted from the points already run, and points that cannot fit in the remaining
budget are skipped and listed in the output.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

TASK = "MuscleWalkingImitation2D-v0"
ENVS = (1, 2, 4, 8, 16, 32)
QUICK_ENVS = (2,)
SECONDS, QUICK_SECONDS = 4.0, 1.0
BUDGET, QUICK_BUDGET = 570.0, 55.0      # s: the sweep must end within 10 min / 1 min
RESULT_MARK = "FASTENV_BENCH_RESULT "

METHODS = {   # key: (label, runs per num_envs)
    "physical_limit": ("physical limit (W raw integrate loops)", False),
    "fastenv_single": ("fastenv ImitationEnv, single loop", False),
    "seed_style": ("seed-style env (osim-rl way), single loop", False),
    "gym_sync_next": ("gymnasium SyncVectorEnv, NEXT_STEP", True),
    "gym_sync_same": ("gymnasium SyncVectorEnv, SAME_STEP", True),
    "gym_async_next": ("gymnasium AsyncVectorEnv(shm), NEXT_STEP", True),
    "gym_async_same": ("gymnasium AsyncVectorEnv(shm), SAME_STEP", True),
    "sb3_subproc": ("SB3 SubprocVecEnv", True),
    "osim_sync": ("OsimVectorEnv step (sync)", True),
    "osim_async": ("OsimVectorEnv send/recv, batch n/2", True),
}
REFERENCE_METHOD = "gym_async_next"   # the "ratio to AsyncVectorEnv" denominator

# Prior cost of setting a point up, in s per env and CPU core, before any point of the
# method has run (then the measured overhead of the previous point is extrapolated).
_PRIOR_PER_ENV = {"fastenv_single": 1.0, "seed_style": 1.5, "gym_sync_next": 0.2,
                  "gym_sync_same": 0.2, "gym_async_next": 1.0, "gym_async_same": 1.0,
                  "sb3_subproc": 3.0, "osim_sync": 0.3, "osim_async": 0.3,
                  "physical_limit": 1.5}
_DRIVER_START = 2.0   # s: interpreter + imports of a driver process, prior


# ----------------------------------------------------------------------- helpers
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout; reaches forkserver children


def pool_helpers():
    """``bench/pool.py`` (physical limit, memory of a process list)."""
    import bench.pool as pool
    return pool


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

    def __init__(self, interval: float):
        self.interval = max(0.2, interval)
        self.rss = self.pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tree_memory = pool_helpers().tree_memory_mb

    def sample(self):
        rss, pss = self._tree_memory(process_tree(os.getpid()))
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def measure(step_once, seconds: float) -> dict:
    """Time-boxed loop of ``step_once() -> env steps counted``; latency per call."""
    lat, steps = [], 0
    with PeakMemory(seconds / 4) as mem:
        c0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            ts = time.perf_counter()
            steps += step_once()
            lat.append(time.perf_counter() - ts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    lat_ms = np.array(lat) * 1e3
    return dict(steps=int(steps), measured_s=wall, steps_per_s=steps / wall,
                parent_cpu=cpu / wall, calls=len(lat),
                p50_ms=float(np.percentile(lat_ms, 50)),
                p95_ms=float(np.percentile(lat_ms, 95)),
                p99_ms=float(np.percentile(lat_ms, 99)), rss_mb=mem.rss, pss_mb=mem.pss)


class Episodes:
    """Counts episode ends and which envs' next result is a NEXT_STEP reset."""

    def __init__(self, n: int, next_step: bool, resetting: bool = False):
        self.next_step = next_step
        self.resetting = np.full(n, resetting)
        self.ends = 0

    def count(self, ids, terminated, truncated) -> int:
        done = np.asarray(terminated) | np.asarray(truncated)
        self.ends += int(done.sum())
        if not self.next_step:
            return len(done)
        stepped = int((~self.resetting[ids]).sum())
        self.resetting[ids] = done
        return stepped


# ----------------------------------------------------------------------- methods
#: Steps per env before timing starts: the integrator restarts its step-size control
#: at every reset, so the first steps of an episode cost up to twice an average one,
#: and a short point at large num_envs would otherwise time little else.
WARMUP_STEPS_PER_ENV = 10


def _warm_up(once, n_envs: int, batch: int):
    for _ in range(max(2, -(-WARMUP_STEPS_PER_ENV * n_envs // batch))):
        once()


def _actions(rng, space, n=None):
    shape = space.shape if n is None else (n, *space.shape)
    return rng.uniform(space.low, space.high, shape).astype(np.float32)


def _single(env_cls, spec):
    env = env_cls(spec["task"], **spec["env_kwargs"])
    rng = np.random.default_rng(spec["seed"])
    env.reset(seed=spec["seed"])
    ep = Episodes(1, next_step=False)

    def once():
        _, _, term, trunc, _ = env.step(_actions(rng, env.action_space))
        if term or trunc:
            env.reset()
        return ep.count(slice(None), [term], [trunc])

    _warm_up(once, 1, 1)
    ep.ends = 0
    try:
        return dict(measure(once, spec["seconds"]), episode_ends=ep.ends)
    finally:
        env.close()


def _vector_loop(venv, spec, n, next_step):
    rng = np.random.default_rng(spec["seed"])
    space = venv.single_action_space
    ep = Episodes(n, next_step)

    def once():
        _, _, term, trunc, _ = venv.step(_actions(rng, space, n))
        return ep.count(slice(None), term, trunc)

    _warm_up(once, n, n)
    ep.ends = 0
    return dict(measure(once, spec["seconds"]), episode_ends=ep.ends)


def _gym_vector(spec):
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from fastenv.env import ImitationEnv
    n, method = spec["num_envs"], spec["method"]
    mode = AutoresetMode.SAME_STEP if method.endswith("same") else AutoresetMode.NEXT_STEP
    fns = [partial(ImitationEnv, spec["task"], **spec["env_kwargs"]) for _ in range(n)]
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
    venv = SubprocVecEnv([partial(ImitationEnv, spec["task"], **spec["env_kwargs"])
                          for _ in range(n)])
    rng = np.random.default_rng(spec["seed"])
    ep = Episodes(n, next_step=False)   # SB3 resets inside the step that ended

    def once():
        _, _, dones, _ = venv.step(_actions(rng, venv.action_space, n))
        return ep.count(slice(None), dones, np.zeros(n, bool))

    try:
        venv.seed(spec["seed"])
        venv.reset()
        _warm_up(once, n, n)
        ep.ends = 0
        return dict(measure(once, spec["seconds"]), episode_ends=ep.ends)
    finally:
        venv.close()


def _osim(spec):
    from fastenv.vector import OsimVectorEnv
    n, sync = spec["num_envs"], spec["method"] == "osim_sync"
    batch = n if sync else n // 2
    venv = OsimVectorEnv(spec["task"], n, num_workers=spec["workers"], batch_size=batch,
                         **spec["env_kwargs"])
    try:
        if sync:
            venv.reset(seed=spec["seed"])
            return _vector_loop(venv, spec, n, next_step=True)
        rng = np.random.default_rng(spec["seed"])
        space = venv.single_action_space
        ep = Episodes(n, next_step=True, resetting=True)   # first results are resets
        venv.async_reset(seed=spec["seed"])

        def once():
            _, _, term, trunc, info = venv.recv()
            ids = info["env_id"]
            counted = ep.count(ids, term, trunc)
            venv.send(_actions(rng, space, len(ids)), ids)
            return counted

        _warm_up(once, n, batch)
        ep.ends = 0
        res = dict(measure(once, spec["seconds"]), episode_ends=ep.ends)
        for _ in range(n // batch):   # collect the envs in flight: a quick close
            venv.recv()
        return res
    finally:
        venv.close()


def _physical_limit(spec):
    pool = pool_helpers()
    c0, t0 = time.process_time(), time.perf_counter()
    with PeakMemory(spec["seconds"] / 4) as mem:
        rate = pool.physical_limit(spec["task"], spec["workers"], spec["seconds"],
                                   spec["env_kwargs"])
    wall = time.perf_counter() - t0
    return dict(steps_per_s=rate, measured_s=spec["seconds"], steps=None, calls=None,
                parent_cpu=(time.process_time() - c0) / wall, p50_ms=None, p95_ms=None,
                p99_ms=None, rss_mb=mem.rss, pss_mb=mem.pss, episode_ends=None)


def run_point(spec: dict) -> dict:
    """Measure one (method, num_envs) point in this process (a driver)."""
    t0 = time.perf_counter()
    method = spec["method"]
    if method == "physical_limit":
        res = _physical_limit(spec)
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
def plan_points(envs, methods, workers):
    points = [(m, workers if m == "physical_limit" else 1) for m in METHODS
              if not METHODS[m][1] and m in methods]
    points += [(m, n) for n in envs for m in METHODS if METHODS[m][1] and m in methods]
    return points


def static_skip(method, n) -> str | None:
    """Why a point cannot run at all (independent of time)."""
    if method == "osim_async" and n < 2:
        return "needs num_envs >= 2 (batch_size = num_envs / 2)"
    if method == "sb3_subproc" and importlib.util.find_spec("stable_baselines3") is None:
        return "stable-baselines3 is not installed (pip install 'fastenv[sb3]')"
    return None


class CostModel:
    """Predicts a point's wall time: the measured window plus its overhead (driver
    start, set-up, teardown) modelled as ``a + b * num_envs``. ``b`` comes from the last
    two points of the same method (at least half the per-env prior) or the prior, ``a``
    from the last point; a 25 % margin covers noise. A point running past twice its
    prediction (+ 30 s) is killed, so one bad guess cannot overrun the budget."""

    MARGIN = 1.25

    def __init__(self, seconds: float, cores: int):
        self.seconds, self.cores = seconds, cores
        self.seen: dict[str, list[tuple[int, float]]] = {}

    def prior_per_env(self, method: str) -> float:
        in_process = method in ("gym_sync_next", "gym_sync_same", "fastenv_single",
                                "seed_style")
        return _PRIOR_PER_ENV[method] / (1 if in_process else self.cores)

    def predict(self, method: str, n: int) -> float:
        seen = self.seen.get(method, [])
        b = self.prior_per_env(method)
        if len(seen) >= 2 and seen[-1][0] != seen[-2][0]:
            (n1, o1), (n2, o2) = seen[-2:]
            b = max(0.5 * b, (o2 - o1) / (n2 - n1))   # small-n noise: keep half the prior
        a = seen[-1][1] - b * seen[-1][0] if seen else _DRIVER_START
        return self.seconds + self.MARGIN * (max(a, 0.0) + b * n)

    def update(self, method: str, n: int, total: float, measured: float):
        self.seen.setdefault(method, []).append((n, max(0.0, total - measured)))


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


def launch(spec: dict, timeout: float):
    """Run one point in a driver process (new session: a timeout kills its tree)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--point", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout))
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


def run(args) -> dict:
    from tqdm import tqdm
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    workers = args.workers or cores
    env_kwargs = {"reference": str(Path(args.reference).resolve())} if args.reference else {}
    points = plan_points(args.envs, args.methods, workers)
    cost = CostModel(args.seconds, cores)
    t_begin = time.perf_counter()
    deadline = t_begin + args.budget
    meta = dict(task=args.task, seconds_per_point=args.seconds, budget_s=args.budget,
                envs=list(args.envs), workers=workers, cores=cores, seed=args.seed,
                quick=args.quick, reference=env_kwargs.get("reference", "task default"),
                started=datetime.now(UTC).isoformat(timespec="seconds"),
                load_avg_start=list(os.getloadavg()), host=platform.node(),
                versions=_versions())
    rows, skipped = [], []
    with tqdm(total=len(points), desc="bench/compare.py", unit="point", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for method, n in points:
            bar.set_postfix_str(f"{method} n={n}")
            reason = static_skip(method, n)
            remaining = deadline - time.perf_counter()
            predicted = cost.predict(method, n)
            if reason is None and predicted > remaining:
                reason = (f"predicted {predicted:.0f} s > {max(remaining, 0):.0f} s left of "
                          f"the {args.budget:.0f} s budget")
            if reason is None:
                spec = dict(method=method, num_envs=n, task=args.task, seed=args.seed,
                            seconds=args.seconds, workers=workers, env_kwargs=env_kwargs)
                t0 = time.perf_counter()
                res, reason = launch(spec, timeout=min(remaining, 2 * predicted + 30))
                total = time.perf_counter() - t0
                if res is not None:
                    cost.update(method, n, total, res["measured_s"])
                    rows.append(dict(method=method, label=METHODS[method][0], num_envs=n,
                                     point_s=total, **res))
            if reason is not None:
                skipped.append(dict(method=method, num_envs=n, reason=reason))
                tqdm.write(f"skipped {method} n={n}: {reason}", file=sys.stderr)
            bar.update()
    _ratios(rows)
    meta.update(wall_s=time.perf_counter() - t_begin, load_avg_end=list(os.getloadavg()))
    return dict(meta=meta, rows=rows, skipped=skipped)


def _ratios(rows):
    limit = next((r["steps_per_s"] for r in rows if r["method"] == "physical_limit"), None)
    ref = {r["num_envs"]: r["steps_per_s"] for r in rows if r["method"] == REFERENCE_METHOD}
    for r in rows:
        r["ratio_limit"] = r["steps_per_s"] / limit if limit else None
        n = 1 if not METHODS[r["method"]][1] else r["num_envs"]
        r["ratio_async"] = (r["steps_per_s"] / ref[n] if ref.get(n) and
                            r["method"] != "physical_limit" else None)


# ----------------------------------------------------------------------- output
def _fmt(x, spec="{:.0f}"):
    return "–" if x is None else spec.format(x)


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [
        f"# bench/compare.py: {m['task']}",
        "",
        f"{m['started']} on {m['host']}: {m['cores']} cores, W = {m['workers']} workers, "
        f"{m['seconds_per_point']:g} s per point, budget {m['budget_s']:.0f} s, run took "
        f"{m['wall_s']:.0f} s; load average {m['load_avg_start'][0]:.2f} at the start, "
        f"{m['load_avg_end'][0]:.2f} at the end. Seed {m['seed']}, reference "
        f"{m['reference']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        "",
        "steps/s: env steps (physics transitions) per second; × limit / × Async: ratio to "
        "the physical limit and to AsyncVectorEnv NEXT_STEP at the same num_envs (1 for "
        "the single-env loops); latency per call that yields a batch; parent CPU: the "
        "driver process's CPU time / wall; RSS/PSS: peak over the driver and all its "
        "children; steps per env: timed steps of each env (after "
        f"{WARMUP_STEPS_PER_ENV} warm-up steps per env; few timed steps per env mean the "
        "early steps of episodes dominate).",
        "",
        "| method | num_envs | steps/s | × limit | × Async | p50 / p95 / p99 ms | parent CPU "
        "| RSS MB | PSS MB | steps per env | episode ends |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        n = f"W={r['num_envs']}" if r["method"] == "physical_limit" else str(r["num_envs"])
        per_env = ("–" if r.get("steps") is None else
                   f"{r['steps'] / (1 if not METHODS[r['method']][1] else r['num_envs']):.0f}")
        lat = ("–" if r["p50_ms"] is None else
               f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f}")
        lines.append(
            f"| {r['label']} | {n} | {r['steps_per_s']:.1f} | {_fmt(r['ratio_limit'], '{:.2f}')}"
            f" | {_fmt(r['ratio_async'], '{:.2f}')} | {lat} | {100 * r['parent_cpu']:.0f}% | "
            f"{r['rss_mb']:.0f} | {r['pss_mb']:.0f} | {per_env} | {_fmt(r['episode_ends'])} |")
    if result["skipped"]:
        lines += ["", "Skipped points:", ""]
        lines += [f"- {METHODS[s['method']][0]}, num_envs={s['num_envs']}: {s['reason']}"
                  for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 5))
    envs = result["meta"]["envs"]
    colors = iter(plt.get_cmap("tab10")([0, 1, 2, 3, 4, 6, 8, 9]))   # no brown/gray
    flat = {"physical_limit": dict(color="black", ls="-"),
            "fastenv_single": dict(color="tab:gray", ls="--"),
            "seed_style": dict(color="tab:brown", ls=":")}
    for method, (label, per_n) in METHODS.items():
        rows = [r for r in result["rows"] if r["method"] == method]
        if not rows:
            continue
        if per_n:
            ax.plot([r["num_envs"] for r in rows], [r["steps_per_s"] for r in rows],
                    marker="o", label=label, color=next(colors))
        else:
            ax.axhline(rows[0]["steps_per_s"], label=label, lw=1.5, **flat[method])
    ax.set_xscale("log", base=2)
    ax.set_xticks(envs, [str(n) for n in envs])
    ax.set_xlabel("num_envs")
    ax.set_ylabel("env steps / s")
    m = result["meta"]
    ax.set_title(f"{m['task']}: {m['cores']} cores, W={m['workers']}, "
                 f"{m['seconds_per_point']:g} s per point")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no point measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "compare.md", "json": out / "compare.json", "png": out / "compare.png"}
    paths["md"].write_text(markdown(result))
    paths["json"].write_text(json.dumps(result, indent=1))
    plot(result, paths["png"])
    return paths


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python bench/compare.py", description=__doc__.split("\n\n")[0],
        epilog="Default sweep: num_envs 1..32, 4 s per point, within 570 s; --quick: "
               "num_envs 2, 1 s per point, within 55 s.")
    ap.add_argument("--quick", action="store_true", help="small sweep for a smoke run")
    ap.add_argument("--task", default=TASK)
    ap.add_argument("--envs", default=None, help="comma-separated num_envs values")
    ap.add_argument("--seconds", type=float, default=None, help="measured seconds per point")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole run")
    ap.add_argument("--workers", type=int, default=None, help="W (default: CPU cores)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default=None,
                    help="reference .npz/.mot for every env (default: the task's)")
    ap.add_argument("--out", default=None,
                    help="folder for compare.md/.json/.png (required; bench/results is the "
                         "committed one)")
    ap.add_argument("--point", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.point is not None:
        return args
    if args.out is None:
        ap.error("--out is required (e.g. --out bench/results to replace the committed run)")
    args.envs = ([int(x) for x in args.envs.split(",")] if args.envs else
                 list(QUICK_ENVS if args.quick else ENVS))
    if args.seconds is None:
        args.seconds = QUICK_SECONDS if args.quick else SECONDS
    if args.budget is None:
        args.budget = QUICK_BUDGET if args.quick else BUDGET
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    if any(n < 1 for n in args.envs) or args.seconds <= 0 or args.budget <= 0:
        ap.error("--envs values, --seconds and --budget must be positive")
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
    paths = write_outputs(result, Path(args.out))
    print(markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
