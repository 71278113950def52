"""A worker's envs on one shared OpenSim model against one model per env: paired A/B.

    python bench/model_sharing.py [--task ID] [--envs 8,16] [--modes sync,sendrecv]
                                  [--steps 400] [--block 20] [--json FILE]

Two ``OsimVectorEnv`` pools of the same envs live side by side, one with
``share_model=True`` (the default) and one with ``share_model=False``, W = 2 workers
each. Both are reset with the same seed and get the same seeded random excitations, so
they run bitwise the same trajectories (checked at the end of a synchronous run): the
same work. They take turns in blocks of ``--block`` steps, the order alternating block
by block, so the VM's drift, which moves a single point by ±10% over minutes
(docs/performance.md), falls on both alike; only one pool steps at a time (the other's
workers sleep in their pipes). Per (mode, num_envs): steps/s of each pool over all
blocks, the per-block ratio of their speeds (shared ÷ one each; > 1: sharing is
faster), and the RSS and PSS of each pool's workers (``/proc/<pid>/smaps_rollup``).

``sync``: ``step``; ``sendrecv``: ``send``/``recv`` with batch num_envs / 2, a block
being num_envs × ``--block`` env steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout

from bench.pool import tree_memory_mb  # noqa: E402

TASK = "MuscleWalkingImitation2D-v0"
WARMUP = 10


def ab(task: str, n: int, mode: str, steps: int, block: int) -> dict:
    """One (mode, num_envs) point: both pools, ``steps`` steps per env in blocks."""
    from fastenv.vector import OsimVectorEnv
    batch = n if mode == "sync" else n // 2
    pools = {share: OsimVectorEnv(task, n, num_workers=2, batch_size=batch, share_model=share)
             for share in (True, False)}
    try:
        space = pools[True].single_action_space
        rng = np.random.default_rng(0)
        acts = rng.uniform(space.low, space.high,
                           (WARMUP + steps + 1, n, *space.shape)).astype(np.float32)
        for v in pools.values():
            v.reset(seed=0)
            for k in range(WARMUP):
                v.step(acts[k])
        memory = {share: tree_memory_mb(v._pool.pids) for share, v in pools.items()}
        seconds = {True: [], False: []}
        starts = list(range(WARMUP, WARMUP + steps - block + 1, block))
        if mode == "sync":
            last = {}
            for b, start in enumerate(starts):
                for share in ((True, False) if b % 2 == 0 else (False, True)):
                    v = pools[share]
                    t = time.perf_counter()
                    for k in range(start, start + block):
                        obs, *_ = v.step(acts[k])
                    seconds[share].append(time.perf_counter() - t)
                    last[share] = obs
            equal = bool(np.array_equal(last[True], last[False]))
        else:
            counts = {share: np.zeros(n, dtype=int) for share in pools}
            for v in pools.values():
                v.send(acts[WARMUP], np.arange(n, dtype=np.int32))
            for b in range(len(starts)):
                for share in ((True, False) if b % 2 == 0 else (False, True)):
                    v, c = pools[share], counts[share]
                    t, done = time.perf_counter(), 0
                    while done < block * n:
                        *_, info = v.recv()
                        ids = info["env_id"]
                        c[ids] += 1
                        done += len(ids)
                        v.send(acts[WARMUP + np.minimum(c[ids], steps), ids], ids)
                    seconds[share].append(time.perf_counter() - t)
            equal = None   # which envs a batch holds depends on timing
    finally:
        for v in pools.values():
            v.close()
    s, u = np.array(seconds[True]), np.array(seconds[False])
    ratio = u / s
    work = n * block * len(s)
    return dict(mode=mode, num_envs=n, blocks=len(s), block_steps=block,
                steps_per_s_shared=round(work / s.sum(), 1),
                steps_per_s_one_each=round(work / u.sum(), 1),
                overall_ratio=round(float(u.sum() / s.sum()), 3),
                block_ratio_median=round(float(np.median(ratio)), 3),
                block_ratio_quartiles=[round(float(q), 3) for q in np.percentile(ratio, [25, 75])],
                shared_faster_blocks=int((ratio > 1).sum()),
                rss_mb_shared=round(memory[True][0]), pss_mb_shared=round(memory[True][1]),
                rss_mb_one_each=round(memory[False][0]), pss_mb_one_each=round(memory[False][1]),
                bitwise_equal=equal)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python bench/model_sharing.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--task", default=TASK)
    p.add_argument("--envs", default="8,16")
    p.add_argument("--modes", default="sync,sendrecv")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    envs = [int(x) for x in a.envs.split(",") if x.strip()]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = sorted(set(modes) - {"sync", "sendrecv"})
    if bad or not envs or min(envs) < 2 or not 1 <= a.block <= a.steps:
        p.error(f"--modes takes sync, sendrecv (got {bad}); --envs needs num_envs >= 2 "
                f"(got {envs}); --block within [1, --steps] (got {a.block})")
    rows = []
    for mode in modes:
        for n in envs:
            rows.append(ab(a.task, n, mode, a.steps, a.block))
            print(json.dumps(rows[-1]), flush=True)
    result = dict(command="python bench/model_sharing.py " + " ".join(
                      f"--{k} {v}" for k, v in (("task", a.task), ("envs", a.envs),
                                                ("modes", a.modes), ("steps", a.steps),
                                                ("block", a.block))),
                  date=datetime.now(UTC).isoformat(timespec="seconds"), task=a.task, rows=rows)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
