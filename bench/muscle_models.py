"""Muscle and contact models: steps/s and difference from the default model.

For each family (``muscle_model``, ``contact_model``) of a muscle task, with the default
physics preset:

* **steps/s, random actions**: uniform random excitations (seeded, the same sequence
  for every family) with falls and resets, ``--steps`` env steps after one warm-up
  episode start, as the task table measures (``bench/tasks.py``);
* **steps/s, near the reference**: the smooth random actions of
  ``bench/physics_presets.py`` from the reference's first frame for one cycle;
* **difference from the default model** on that same run: RMS over the imitated joint
  angles against the default family's run at 0.1 s, 0.3 s and the cycle's end, and the
  time until it first exceeds 10 degrees. Open loop, every model leaves the reference
  within a fraction of a second (physics.md), so this measures how alike the two models
  respond to the same excitations, not which one is right.

Every family runs ``--repeats`` rounds in rotating order; steps/s is the median of the
rounds with their range (the machine's noise).

    python bench/muscle_models.py [--task MuscleWalkingImitation2D-v0 ...] [--out bench/results]
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from integrators import controls  # noqa: E402

from fastenv.env import ImitationEnv  # noqa: E402

FAMILIES = (("thelen", "hunt_crossley"), ("degroote", "smooth"),
            ("degroote", "hunt_crossley"), ("thelen", "smooth"))
TASKS = ("MuscleWalkingImitation2D-v0", "MuscleWalkingImitation3D-v0")
CHECKPOINTS_S = (0.1, 0.3)


def random_steps_per_s(env, n_steps: int, seed: int = 0) -> float:
    """Uniform random actions (one seeded sequence) with resets after falls."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(env.action_space.low, env.action_space.high,
                          (n_steps, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - t0)


def reference_run(env, U):
    """The smooth actions from frame 0: (imitated joint angles per step, steps/s);
    None for the angles where the simulation failed."""
    env.reset(seed=0, options={"start_frame": 0})
    q, j = [], env._imitate_coords
    t0 = time.perf_counter()
    for u in U:
        _, _, _, _, info = env.step(u)
        if "sim_error" in info:
            return None, len(q) / (time.perf_counter() - t0)
        q.append(env.sim.buf[env.sim.layout.slice("q")][j].copy())
    return np.array(q), len(U) / (time.perf_counter() - t0)


def difference(q, q_default, dt: float) -> dict:
    """RMS joint-angle difference (deg) at the checkpoints and the cycle's end, and the
    time (s) until it first exceeds 10 degrees (None: never within the cycle)."""
    rms = np.degrees(np.sqrt(np.mean((q - q_default) ** 2, axis=1)))
    out = {f"rms_deg_at_{t:g}s": float(rms[round(t / dt) - 1]) for t in CHECKPOINTS_S}
    out["rms_deg_at_cycle_end"] = float(rms[-1])
    above = np.flatnonzero(rms > 10.0)
    out["within_10deg_s"] = None if not len(above) else float(above[0] * dt)
    return out


def measure(task: str, n_steps: int, repeats: int) -> list[dict]:
    envs = {f: ImitationEnv(task, muscle_model=f[0], contact_model=f[1]) for f in FAMILIES}
    probe = envs[FAMILIES[0]]
    n_cycle = probe.reference.cycle_steps
    U = controls(n_cycle, probe.action_space.low, probe.action_space.high)
    for env in envs.values():   # warm-up: start states built, first episode started
        random_steps_per_s(env, 20, seed=1)
    speed = {f: [] for f in FAMILIES}
    near = {f: [] for f in FAMILIES}
    angles = {}
    for r in range(repeats):
        for f in FAMILIES[r % len(FAMILIES):] + FAMILIES[:r % len(FAMILIES)]:
            speed[f].append(random_steps_per_s(envs[f], n_steps))
            angles[f], sps = reference_run(envs[f], U)
            near[f].append(sps)
    rows = []
    for f in FAMILIES:
        row = dict(task=task, muscle_model=f[0], contact_model=f[1],
                   steps_per_s=float(np.median(speed[f])),
                   steps_per_s_range=[float(min(speed[f])), float(max(speed[f]))],
                   near_reference_steps_per_s=float(np.median(near[f])),
                   near_reference_range=[float(min(near[f])), float(max(near[f]))])
        row["speedup"] = row["steps_per_s"] / float(np.median(speed[FAMILIES[0]]))
        row["near_reference_speedup"] = (row["near_reference_steps_per_s"]
                                         / float(np.median(near[FAMILIES[0]])))
        if angles[f] is None or angles[FAMILIES[0]] is None:
            row["failed"] = True
        elif f != FAMILIES[0]:
            row.update(difference(angles[f], angles[FAMILIES[0]], probe.sim.control_dt))
        rows.append(row)
        print(json.dumps(row), flush=True)
    for env in envs.values():
        env.close()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", nargs="+", default=list(TASKS))
    ap.add_argument("--steps", type=int, default=400,
                    help="random-action env steps per family and round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]
    rows = [row for task in args.task for row in measure(task, args.steps, args.repeats)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(steps=args.steps, repeats=args.repeats, physics="default",
                  load_average=[load_start, os.getloadavg()[0]], rows=rows)
    (out / "muscle_models.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'muscle_models.json'}")


if __name__ == "__main__":
    main()
