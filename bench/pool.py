"""Pool throughput against the physical limit, sync and async.

For W workers and num_envs envs: env steps/s of ``OsimVectorEnv`` (sync ``step`` and
envpool-style ``send``/``recv`` with batch_size = num_envs/2) against the physical
limit measured in the same run: W processes each replaying, with bare
``Manager.integrate`` calls, the controls an env of the same task produced under
random actions (same falls and resets), reading nothing.
Also: the parent's CPU time per batch step as a fraction of the step's wall time, and
memory (RSS and PSS summed over parent + workers).

    python bench/pool.py [--quick] [--task ...] [--seconds 8] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

TASK = "MuscleWalkingImitation2D-v0"


def _mem_kb(pid: int):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_memory_mb(pids):
    rss = pss = 0
    for p in pids:
        r, s = _mem_kb(p)
        rss, pss = rss + r, pss + s
    return rss / 1024, pss / 1024


def _raw_worker(task, env_kwargs, seconds, seed, out):
    """One process of the physical limit: the same workload as an env, bare integrate.

    The env runs random actions (with its falls and resets) for ``seconds`` while the
    controls it sends to OpenSim and its episode starts are recorded; then exactly
    those controls are replayed with bare ``Manager.integrate`` calls from the same
    snapshots, timed. The ratio of the two is pure fastenv overhead, whatever the
    stiffness of the motion.
    """
    from fastenv.env import ImitationEnv

    env = ImitationEnv(task, **env_kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    sim = env.sim
    episodes = [(env._start, [])]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        episodes[-1][1].append(sim.buf[sim.layout.slice("controls")].copy())
        if term or trunc:
            env.reset()
            episodes.append((env._start, []))
    steps, t0 = 0, time.perf_counter()
    for start, controls in episodes:
        sim.restore(env._snapshot(start))
        for u in controls:
            sim.integrate_raw(1, u)
            steps += 1
    out.put(steps / (time.perf_counter() - t0))


def physical_limit(task, workers, seconds, env_kwargs):
    ctx = mp.get_context("forkserver")
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_raw_worker, args=(task, env_kwargs, seconds, s, q))
        for s in range(workers)
    ]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return float(sum(rates))


def run_vector(task, n_envs, workers, seconds, mode, env_kwargs):
    from fastenv.vector import OsimVectorEnv

    batch = n_envs if mode == "sync" else max(1, n_envs // 2)
    venv = OsimVectorEnv(task, n_envs, num_workers=workers, batch_size=batch, **env_kwargs)
    rng = np.random.default_rng(0)
    space = venv.single_action_space
    lat = []
    try:
        if mode == "sync":
            venv.reset(seed=0)
            venv.step(rng.uniform(space.low, space.high, (n_envs, *space.shape)))  # warm-up
            integ0 = sum(venv.call("integrate_seconds"))
            steps, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                a = rng.uniform(space.low, space.high, (n_envs, *space.shape))
                ts = time.perf_counter()
                venv.step(a)
                lat.append(time.perf_counter() - ts)
                steps += n_envs
        else:
            integ0 = sum(venv.call("integrate_seconds"))
            venv.async_reset(seed=0)
            steps, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                ts = time.perf_counter()
                _, _, _, _, info = venv.recv()
                lat.append(time.perf_counter() - ts)
                ids = info["env_id"]
                venv.send(rng.uniform(space.low, space.high, (len(ids), *space.shape)), ids)
                steps += len(ids)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if venv._pool.pending:  # drain before asking the workers anything
            venv._pool.collect(venv._pool.pending)
        rss, pss = tree_memory_mb([os.getpid(), *venv._pool.pids])
        in_integrate = sum(venv.call("integrate_seconds")) - integ0
    finally:
        venv.close()
    lat = np.array(lat) * 1e3
    return dict(
        steps_per_s=steps / wall,
        parent_cpu_fraction=cpu / wall,
        integrate_fraction=in_integrate / (wall * workers),
        p50_ms=float(np.percentile(lat, 50)),
        p95_ms=float(np.percentile(lat, 95)),
        p99_ms=float(np.percentile(lat, 99)),
        rss_mb=rss,
        pss_mb=pss,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default=TASK)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--envs", default="1,2,4,8,16,32")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--quick", action="store_true", help="envs 4,8 on W=2, 3 s each")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    envs = [int(x) for x in args.envs.split(",")]
    workers = [int(x) for x in args.workers.split(",")]
    if args.quick:
        envs, workers, args.seconds = [4, 8], [2], 3.0
    kw = {}
    rows = []
    for w in workers:
        limit = physical_limit(args.task, w, args.seconds, kw)
        print(f"W={w}: physical limit {limit:.1f} steps/s", flush=True)
        for n in envs:
            if n < w:
                continue
            for mode in ("sync", "async"):
                if mode == "async" and n < 2:
                    continue
                r = run_vector(args.task, n, w, args.seconds, mode, kw)
                r.update(
                    workers=w,
                    num_envs=n,
                    mode=mode,
                    limit=limit,
                    efficiency=r["steps_per_s"] / limit,
                )
                rows.append(r)
                print(
                    f"  n={n:3d} {mode:5s} {r['steps_per_s']:7.1f} steps/s  "
                    f"eff {r['efficiency']:.3f}  in-integrate {r['integrate_fraction']:.3f}  "
                    f"parent cpu {100 * r['parent_cpu_fraction']:.2f}%"
                    f"  p50 {r['p50_ms']:.1f} ms  RSS {r['rss_mb']:.0f} MB  PSS "
                    f"{r['pss_mb']:.0f} MB",
                    flush=True,
                )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pool.json").write_text(json.dumps(dict(task=args.task, rows=rows), indent=1))
    lines = [
        "| W | num_envs | mode | steps/s | limit | steps/s ÷ limit | time in integrate "
        "| parent CPU | p50 / p99 ms | RSS / PSS MB |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['num_envs']} | {r['mode']} | {r['steps_per_s']:.0f} "
            f"| {r['limit']:.0f} | {r['efficiency']:.2f} | "
            f"{r['integrate_fraction']:.3f} | "
            f"{100 * r['parent_cpu_fraction']:.1f}% | {r['p50_ms']:.0f} / "
            f"{r['p99_ms']:.0f} | {r['rss_mb']:.0f} / {r['pss_mb']:.0f} |"
        )
    (out / "pool.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
