"""Task table: model, actuators, observation and action sizes, reference source and
raw single-env steps/s of every registered task.

Steps/s: one ImitationEnv (no pool), random actions, resets after falls included,
``--seconds`` of stepping after one warm-up episode start, in this process.

    python bench/tasks.py [--seconds 8] [--out bench/results]
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from fastenv.envs import TASKS
from fastenv.references import REFERENCE_DIR


def measure(task: str, seconds: float) -> dict:
    from fastenv.env import ImitationEnv

    env = ImitationEnv(task)
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, resets = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
            resets += 1
    rate = steps / (time.perf_counter() - t0)
    sim = env.sim
    fig = env.reference.figures
    row = dict(task=task, model=TASKS[task].model, actuation=TASKS[task].actuation,
               n_muscles=len(sim.muscles), n_actuators=len(sim.actuator_names),
               obs_size=int(np.prod(env.observation_space.shape)),
               action_size=int(np.prod(env.action_space.shape)),
               reference=TASKS[task].reference, kind=fig.get("kind", "moco_predictive"),
               steps_per_s=rate, resets=resets, steps=steps)
    env.close()
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    rows = []
    for task in TASKS:
        if not (REFERENCE_DIR / f"{TASKS[task].reference}.npz").exists():
            rows.append(dict(task=task, missing=True))
            print(f"{task}: reference not generated", flush=True)
            continue
        rows.append(measure(task, args.seconds))
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tasks.json").write_text(json.dumps(
        dict(seconds=args.seconds, date=time.strftime("%Y-%m-%d", time.gmtime()),
             cpus=os.cpu_count(), rows=rows), indent=1))
    lines = ["| task | model | muscles / actuators | obs | act | reference | steps/s |",
             "| --- | --- | --- | ---: | ---: | --- | ---: |"]
    for r in rows:
        if r.get("missing"):
            lines.append(f"| {r['task']} | | | | | not generated | |")
            continue
        lines.append(f"| {r['task']} | {r['model']} | {r['n_muscles']} / {r['n_actuators']} | "
                     f"{r['obs_size']} | {r['action_size']} | {r['reference']} "
                     f"({r['kind']}) | {r['steps_per_s']:.0f} |")
    (out / "tasks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
