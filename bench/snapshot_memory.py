"""Memory of the start-state snapshots: ``opensim.State`` per start frame against the
compact form (a Y vector per frame + one template State per model).

    python bench/snapshot_memory.py [--task ID] [--pool N] [--json FILE]

Each form is measured in a fresh interpreter: one env is made and reset, then every
train start frame's snapshot is built (the first half cycle, as training draws them);
the RSS growth over that build is the snapshots' memory. The "State" form keeps an
``opensim.State`` realized to Velocity per frame, as fastenv did before the compact
form. ``--pool N`` also measures an ``OsimVectorEnv`` of N envs (2 workers) after every
env has built every train start frame: RSS and PSS summed over the parent and its
workers (``/proc/<pid>/smaps_rollup``). For the figure before compact snapshots, run
the same from a checkout of an earlier commit (the pool part needs no compact form).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout

from bench.compare import process_tree  # noqa: E402
from bench.pool import tree_memory_mb  # noqa: E402


def one_env(task: str, form: str) -> dict:
    """In this interpreter: RSS before and after building every train start frame."""
    import opensim as osim

    from fastenv.env import ImitationEnv

    class StateSnapshotEnv(ImitationEnv):
        """Keeps an ``opensim.State`` per start frame (the form before compact ones)."""

        def _start_state(self, q, qd, frame=0):
            s = self.sim._full_state(super()._start_state(q, qd, frame))
            self.sim.model.realizeVelocity(s)
            return s

    env = (StateSnapshotEnv if form == "state" else ImitationEnv)(task)
    env.reset(seed=0)
    before = tree_memory_mb([os.getpid()])[0]
    half = env.build_start_states()
    after = tree_memory_mb([os.getpid()])[0]
    assert isinstance(env._snapshots[0], osim.State) == (form == "state")
    return dict(form=form, frames=half, rss_before_mb=before, rss_after_mb=after,
                per_env_mb=after - before, per_snapshot_kb=(after - before) * 1024 / half)


def pool(task: str, num_envs: int) -> dict:
    """An OsimVectorEnv whose envs have built every train start frame: RSS and PSS."""
    from fastenv.vector import OsimVectorEnv
    envs = OsimVectorEnv(task, num_envs=num_envs, num_workers=2)
    try:
        envs.reset(seed=0)
        half = int(envs.call("build_start_states")[0])
        time.sleep(0.5)
        pids = process_tree(os.getpid())
        rss, pss = tree_memory_mb(pids)
    finally:
        envs.close()
    return dict(num_envs=num_envs, frames=half, processes=len(pids), rss_mb=rss, pss_mb=pss)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="MuscleWalkingImitation2D-v0")
    p.add_argument("--pool", type=int, default=0, help="also measure N envs in a pool")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--_one", choices=("state", "compact"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from fastenv.envs import TASKS
    if args.task not in TASKS:
        p.error(f"unknown task {args.task!r}")
    if args._one:
        print(json.dumps(one_env(args.task, args._one)))
        return
    if args.pool < 0:
        p.error(f"--pool must be >= 0, got {args.pool}")
    out = dict(task=args.task, forms=[])
    for form in ("state", "compact"):
        res = subprocess.run([sys.executable, __file__, "--task", args.task, "--_one", form],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        out["forms"].append(r)
        print(f"{args.task} {form:8s}: {r['frames']} start states, +{r['per_env_mb']:.1f} MB "
              f"per env ({r['per_snapshot_kb']:.1f} kB each); env RSS {r['rss_after_mb']:.0f} MB",
              flush=True)
    saved = out["forms"][0]["per_env_mb"] - out["forms"][1]["per_env_mb"]
    print(f"compact snapshots save {saved:.1f} MB per env")
    if args.pool:
        r = pool(args.task, args.pool)
        out["pool"] = r
        print(f"OsimVectorEnv, {r['num_envs']} envs, 2 workers, all {r['frames']} start states "
              f"built: RSS {r['rss_mb']:.0f} MB, PSS {r['pss_mb']:.0f} MB ({r['processes']} "
              f"processes)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
