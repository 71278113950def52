"""The synchronous step against the env limit, paired block by block.

    python bench/sync_paired.py [--task ID] [--envs 8,16,32] [--steps 400] [--block 20]
                                [--workers 2] [--seed 0] [--json FILE [--merge]]

``bench/pool.py`` times the pool and its env limit in separate windows minutes apart,
and this VM's speed drifts by ±10% over minutes, so its per-round ratios spread as
widely as the distance to issue 16's target. Here both run the same envs side by side
and take turns in blocks of ``--block`` steps (the order alternating block by block),
so the drift falls on both alike:

- the pool: ``OsimVectorEnv(task, n, num_workers=W)``, Gymnasium's ``step`` (next-step
  autoreset), timed in the parent over the block;
- the env limit: W processes at once, each holding its envs (env i on process i mod W,
  a model each, as single envs have), stepping each env alone through the block's steps
  one env after another, timing only ``step`` and ``reset``; the limit's time for a
  block is the processes' summed time over W (``bench/pool.py``'s definition: W cores ×
  one env, the ceiling of any vector env of these envs).

Both step every env with the same seeded uniform actions (env i's step k takes row k of
``bench.workload.ActionSchedule``; a reset step skips its row), reset with seed + i and reset
an env on the step after its episode ended, as the pool does, so they do the same work:
the final observations are checked to be bitwise equal. Only one side steps at a time
(the other's processes sleep in their pipes). Per num_envs: steps/s of each side over
all blocks, the per-block efficiency (env limit's time ÷ pool's time, median and
quartiles) and the pool workers' share of their blocks spent waiting for a command.
The JSON holds a list of runs; ``--merge`` adds this run to the file's runs.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout

from bench.workload import ActionSchedule, NextStepEnv  # noqa: E402

TASK = "MuscleWalkingImitation2D-v0"
WARMUP = 10


def limit_process(task: str, ids, rows: int, seed: int, conn):
    """One process of the env limit: holds envs ``ids``; on ("block", k0, k1) steps
    each of them through steps k0..k1-1, one env after another, and answers the seconds
    spent inside ``step``/``reset``; on ("obs",) answers the envs' last observations and
    the number of episode ends."""
    from fastenv.env import ImitationEnv
    made = [ImitationEnv(task) for _ in ids]
    schedule = ActionSchedule(seed, rows, made[0].action_space)
    envs = [NextStepEnv(env, i, schedule, seed) for env, i in zip(made, ids, strict=True)]
    clock = time.perf_counter
    conn.send("ready")
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "obs":
                conn.send(({e.index: e.obs for e in envs}, sum(e.ends for e in envs)))
                continue
            if msg[0] != "block":
                break
            _, k0, k1 = msg
            seconds = 0.0
            for e in envs:
                for k in range(k0, k1):
                    t0 = clock()
                    e.step(k)
                    seconds += clock() - t0
            conn.send(seconds)
    finally:
        for env in made:
            env.close()


def _timers(venv) -> np.ndarray:
    return np.array([[t["waiting_s"], t["busy_s"], t["calls"]] for t in venv.worker_timers()])


def paired(task: str, n: int, steps: int, block: int, workers: int, seed: int) -> dict:
    """One num_envs point: the pool and its env limit in alternating blocks."""
    from fastenv.vector import OsimVectorEnv
    rows = WARMUP + steps
    ctx = mp.get_context("forkserver")
    pipes, procs = [], []
    venv = None
    try:
        for w in range(min(workers, n)):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=limit_process,
                            args=(task, list(range(w, n, workers)), rows, seed, child),
                            daemon=True)
            p.start()
            child.close()   # so that a process that dies ends the parent's recv (EOFError)
            pipes.append(parent)
            procs.append(p)
        venv = OsimVectorEnv(task, n, num_workers=workers)
        schedule = ActionSchedule(seed, rows, venv.single_action_space)
        acts = np.stack([schedule.table(i) for i in range(n)], axis=1)   # (rows, n, size)
        for c in pipes:
            if c.recv() != "ready":
                raise RuntimeError("an env-limit process failed to start")

        def limit_block(k0, k1):
            for c in pipes:
                c.send(("block", k0, k1))
            return sum(c.recv() for c in pipes) / len(pipes)

        pool_obs = [None]

        def pool_block(k0, k1):
            before = _timers(venv)
            t0 = time.perf_counter()
            for k in range(k0, k1):
                pool_obs[0] = venv.step(acts[k])[0]
            wall = time.perf_counter() - t0
            return wall, _timers(venv) - before

        venv.reset(seed=seed)
        pool_block(0, WARMUP)
        limit_block(0, WARMUP)
        pool_s, limit_s, waiting, busy, calls = [], [], 0.0, 0.0, 0
        for b, k0 in enumerate(range(WARMUP, rows - block + 1, block)):
            k1 = k0 + block
            for side in (("pool", "limit") if b % 2 == 0 else ("limit", "pool")):
                if side == "pool":
                    wall, d = pool_block(k0, k1)
                    pool_s.append(wall)
                    waiting += d[:, 0].sum()
                    busy += d[:, 1].sum()
                    calls += int(d[:, 2].sum())
                else:
                    limit_s.append(limit_block(k0, k1))
        last, ends = {}, 0
        for c in pipes:
            c.send(("obs",))
            obs, e = c.recv()
            last.update(obs)
            ends += e
        equal = all(np.array_equal(pool_obs[0][i], last[i]) for i in range(n))
    finally:
        for c in pipes:
            try:
                c.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        for p in procs:
            p.join(timeout=30)
        if venv is not None:
            venv.close()
    p, lim = np.array(pool_s), np.array(limit_s)
    eff = lim / p
    work = n * block * len(p)
    w = min(workers, n)
    return dict(num_envs=n, workers=w, blocks=len(p), block_steps=block,
                pool_steps_per_s=round(work / p.sum(), 1),
                env_limit_steps_per_s=round(work / lim.sum(), 1),
                efficiency_overall=round(float(lim.sum() / p.sum()), 3),
                efficiency_block_median=round(float(np.median(eff)), 3),
                efficiency_block_quartiles=[round(float(q), 3)
                                            for q in np.percentile(eff, [25, 75])],
                efficiency_block_range=[round(float(eff.min()), 3), round(float(eff.max()), 3)],
                workers_waiting=round(float(waiting / (w * p.sum())), 3),
                pool_busy_ms_per_call=round(1e3 * busy / calls, 2),
                env_limit_ms_per_step=round(1e3 * lim.sum() * w / work, 2),
                episode_ends=ends, bitwise_equal=equal)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python bench/sync_paired.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--task", default=TASK)
    p.add_argument("--envs", default="8,16,32")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--merge", action="store_true",
                   help="add this run to the runs already in --json")
    a = p.parse_args(argv)
    envs = [int(x) for x in a.envs.split(",") if x.strip()]
    if not envs or min(envs) < 2 or not 1 <= a.block <= a.steps or a.workers < 1:
        p.error(f"--envs needs num_envs >= 2 (got {envs}); --block within [1, --steps] "
                f"(got {a.block}); --workers >= 1 (got {a.workers})")
    from fastenv.envs import TASKS
    if a.task not in TASKS:
        p.error(f"unknown task {a.task!r}; `fastenv tasks` lists them")
    if a.merge and not a.json:
        p.error("--merge adds to the runs of --json FILE: give one")
    rows = []
    for n in envs:
        rows.append(paired(a.task, n, a.steps, a.block, a.workers, a.seed))
        print(json.dumps(rows[-1]), flush=True)
    result = dict(command="python bench/sync_paired.py " + " ".join(
                      f"--{k} {v}" for k, v in (("task", a.task), ("envs", a.envs),
                                                ("steps", a.steps), ("block", a.block),
                                                ("workers", a.workers), ("seed", a.seed))),
                  date=datetime.now(UTC).isoformat(timespec="seconds"), task=a.task, rows=rows)
    if a.json:
        runs = json.loads(a.json.read_text())["runs"] if a.merge and a.json.exists() else []
        a.json.write_text(json.dumps(dict(runs=runs + [result]), indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
