"""How often the old shared Hunt-Crossley force dropped a loaded sphere's force.

    python bench/contact_split.py [--run baselines/MuscleWalkingImitation2D-v0]
                                  [--seconds 10] [--episodes 3] [--json FILE]

The models give every contact sphere a HuntCrossleyForce of its own
(``fastenv.envs.variants._split_hunt_crossley``, ``BUILDER_VERSION`` 2): OpenSim 4.6 stops
a force at the first contact whose Hunt-Crossley term is negative, and osim-rl's feet
listed the heel first in one force per foot. This script measures where the two
models differ: the same poses and speeds on the split model and on the model with one
force per foot (the builder without the split), vertical ground reaction of each,
over

- every frame of every shipped reference on its task's model, and
- the states a policy visits: ``--run`` (a training run's latest policy, e.g. a
  baseline) or seeded random actions, in test-mode episodes on the current physics.

A frame counts as differing when the two totals differ by more than 0.01 body weight.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

THRESHOLD_BW = 0.01


def shared_force_model(task_model: str, variant_params: dict) -> str:
    """The task's model built without the per-sphere split (one force per foot),
    written to a temporary .osim; returns its path."""
    from fastenv.envs import variants
    canon = variants._canonical_params(task_model, variant_params)
    spec = variants.VARIANTS[task_model]
    split = variants._split_hunt_crossley
    variants._split_hunt_crossley = lambda model: None
    try:
        model = variants._build_model(task_model, spec, variants.base_model_path(spec.base),
                                      canon)
    finally:
        variants._split_hunt_crossley = split
    path = Path(tempfile.mkdtemp()) / f"{task_model}_shared.osim"
    model.printToXML(str(path))
    return str(path)


def differences(sim_new, sim_old, qs, qds):
    """Vertical GRF (BW) on both models at each (q, qdot)."""
    bw = sim_new.body_weight
    new = np.array([sim_new.vertical_grf(q, qd) for q, qd in zip(qs, qds)]) / bw
    old = np.array([sim_old.vertical_grf(q, qd) for q, qd in zip(qs, qds)]) / bw
    return new, old


def summary(new, old) -> dict:
    d = np.abs(new - old)
    return {"frames": int(len(d)), "differing": int((d > THRESHOLD_BW).sum()),
            "differing_share": round(float((d > THRESHOLD_BW).mean()), 4),
            "max_difference_bw": round(float(d.max()), 3),
            "mean_grf_new_bw": round(float(new.mean()), 3),
            "mean_grf_old_bw": round(float(old.mean()), 3)}


def references() -> dict:
    from fastenv.envs import TASKS
    from fastenv.envs.variants import variant_path
    from fastenv.references import load_reference
    from fastenv.sim import Simulation
    out = {}
    for name in sorted({spec.reference for spec in TASKS.values() if spec.actuation == "muscle"}):
        spec = next(s for s in TASKS.values() if s.reference == name and s.actuation == "muscle")
        sim_new = Simulation(str(variant_path(spec.model, **spec.variant_params)))
        sim_old = Simulation(shared_force_model(spec.model, spec.variant_params))
        ref = load_reference(name)
        names = list(ref.coordinate_names)
        idx = [names.index(c) for c in sim_new.coordinate_names]
        new, old = differences(sim_new, sim_old, ref.q[:, idx], ref.qdot[:, idx])
        out[name] = summary(new, old)
        print(f"{name:13s} {out[name]}", flush=True)
    return out


def rollouts(run, task, episodes, seconds, seed) -> dict:
    from fastenv.env import ImitationEnv
    from fastenv.sim import Simulation
    if run:
        from fastenv.evaluate import load_policy
        policy, config = load_policy(run)
        task, options = config["task"], dict(config["env_options"])
    else:
        policy, options = None, {}
    options.update(mode="test", episode_seconds=seconds)
    env = ImitationEnv(task, **options)
    spec = env.spec_task
    sim_old = Simulation(shared_force_model(spec.model, spec.variant_params))
    rng = np.random.default_rng(seed)
    qs, qds = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            action = (policy(obs) if policy else
                      rng.uniform(env.action_space.low, env.action_space.high))
            obs, _, term, trunc, _ = env.step(np.asarray(action, dtype=np.float32))
            done = term or trunc
            sim = env.sim
            qs.append(sim.buf[sim.layout.slice("q")].copy())
            qds.append(sim.buf[sim.layout.slice("qdot")].copy())
    new, old = differences(env.sim, sim_old, qs, qds)
    env.close()
    result = {"task": task, "policy": str(run) if run else "random actions",
              "episodes": episodes, **summary(new, old)}
    print(result, flush=True)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="append", default=[],
                   help="training run(s) whose policy to roll out (repeatable)")
    p.add_argument("--task", default="MuscleWalkingImitation2D-v0",
                   help="task of the random-action rollout")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    result = {"command": "python bench/contact_split.py " + " ".join(
                  f"--run {r}" for r in args.run),
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "threshold_bw": THRESHOLD_BW, "references": references(),
              "rollouts": [rollouts(r, None, args.episodes, args.seconds, args.seed)
                           for r in args.run]
              + [rollouts(None, args.task, args.episodes, args.seconds, args.seed)]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
