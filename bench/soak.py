"""Soak test: many env steps through the pool; memory drift, faults, throughput stability.

Runs ``--steps`` env steps (default 10^5) with ``--envs`` envs (default 16) on W
workers using envpool-style async stepping with random actions, and records per window:
steps/s, RSS and PSS summed over parent + workers, worker restarts and simulator
errors. Reports the RSS drift from the first to the last window (target < 5%).

    python bench/soak.py [--steps 100000] [--envs 16] [--recycle-every N] [--out bench/results]
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool import tree_memory_mb  # noqa: E402

from fastenv.vector import OsimVectorEnv  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="MuscleWalkingImitation2D-v0")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--recycle-every", type=int, default=None)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    venv = OsimVectorEnv(args.task, args.envs, batch_size=max(1, args.envs // 2),
                         recycle_every=args.recycle_every, step_timeout=60.0)
    rng = np.random.default_rng(0)
    space = venv.single_action_space
    per_window = args.steps // args.windows
    rows, steps, sim_errors, episodes = [], 0, 0, 0
    try:
        venv.async_reset(seed=0)
        t_start = time.perf_counter()
        for w in range(args.windows):
            t0, n = time.perf_counter(), 0
            while n < per_window:
                _, _, term, trunc, info = venv.recv()
                ids = info["env_id"]
                n += len(ids)
                episodes += int((term | trunc).sum())
                sim_errors += int(info.get("_sim_error", np.zeros(1, bool)).sum())
                venv.send(rng.uniform(space.low, space.high, (len(ids), *space.shape)), ids)
            steps += n
            rss, pss = tree_memory_mb([os.getpid(), *venv._pool.pids])
            rows.append(dict(window=w, steps=steps, steps_per_s=n / (time.perf_counter() - t0),
                             rss_mb=rss, pss_mb=pss, restarts=venv.restarts,
                             recycles=venv.recycles, sim_errors=sim_errors,
                             episodes=episodes))
            r = rows[-1]
            print(f"{steps:7d} steps  {r['steps_per_s']:6.1f} steps/s  RSS {rss:6.0f} MB  "
                  f"PSS {pss:6.0f} MB  restarts {venv.restarts}  recycles {venv.recycles}  "
                  f"sim errors {sim_errors}  episodes {episodes}", flush=True)
        wall = time.perf_counter() - t_start
    finally:
        venv.close()
    sps = np.array([r["steps_per_s"] for r in rows])
    summary = dict(task=args.task, envs=args.envs, steps=steps, wall_s=wall,
                   rss_start_mb=rows[0]["rss_mb"], rss_end_mb=rows[-1]["rss_mb"],
                   rss_drift=(rows[-1]["rss_mb"] - rows[0]["rss_mb"]) / rows[0]["rss_mb"],
                   steps_per_s_mean=float(sps.mean()), steps_per_s_cv=float(sps.std() / sps.mean()),
                   restarts=rows[-1]["restarts"], recycles=rows[-1]["recycles"],
                   sim_errors=sim_errors, episodes=episodes, rows=rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(summary, indent=1))
    print(f"RSS {summary['rss_start_mb']:.0f} -> {summary['rss_end_mb']:.0f} MB "
          f"(drift {100 * summary['rss_drift']:+.1f}%), {summary['steps_per_s_mean']:.1f} steps/s "
          f"(CV {100 * summary['steps_per_s_cv']:.1f}%), restarts {summary['restarts']}, "
          f"sim errors {sim_errors}, episodes {episodes}, {wall:.0f} s")


if __name__ == "__main__":
    main()
