"""Can the PD actuation carry the body? Every torque task with the reference as the PD
target (``pd_targets="residual"``, zero action), test mode, for ``--seconds``: how long
the model stays up and how far its imitated joint angles are from the reference (RMS
over the steps it stayed up), for the continuous PD law (default) and the held one
(``pd_update="step"``, the original package's).

    python bench/reference_as_target.py [--seconds 6] [--out bench/results]

Writes ``reference_as_target.json``; ``docs/tables.py`` renders it. Not a timing
benchmark: the figures do not depend on the machine's load.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from fastenv.envs import TASKS


def measure(task: str, pd_update: str, seconds: float) -> dict:
    from fastenv.env import ImitationEnv

    env = ImitationEnv(task, mode="test", pd_targets="residual", pd_update=pd_update,
                       episode_seconds=seconds)
    env.reset(seed=0)
    zero = np.zeros(env.n_actions, np.float32)
    q = env.sim.layout.slice("q")
    j = env._imitate_coords
    errors, ended = [], None
    for _ in range(env.episode_steps):
        _, _, terminated, truncated, info = env.step(zero)
        q_ref, _ = env.reference.coordinates_at(env._start + env._step)
        errors.append(env.sim.buf[q][j] - q_ref[j])
        if terminated or truncated:
            ended = "fell" if terminated else ("sim_error" if "sim_error" in info else None)
            break
    per_joint = np.degrees(np.sqrt(np.mean(np.square(errors), axis=0)))
    row = dict(task=task, pd_update=pd_update, seconds=seconds,
               time_up_s=round(env._step * env.sim.control_dt, 2), ended=ended,
               cycle_s=round(env.reference.cycle_steps * env.sim.control_dt, 2),
               joint_rmse_deg=float(np.degrees(np.sqrt(np.mean(np.square(errors))))),
               joint_rmse_per_coordinate_deg=dict(zip(env.imitated_coordinates,
                                                      per_joint.round(2).tolist())))
    env.close()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    rows = []
    for task in sorted(t for t in TASKS if TASKS[t].actuation == "torque"):
        for pd_update in ("continuous", "step"):
            row = measure(task, pd_update, args.seconds)
            print(f"{task:34s} {pd_update:10s} up {row['time_up_s']:5.2f} s "
                  f"(cycle {row['cycle_s']} s) RMSE {row['joint_rmse_deg']:5.1f} deg",
                  flush=True)
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference_as_target.json").write_text(json.dumps(
        dict(command="python bench/reference_as_target.py --seconds "
             f"{args.seconds:g}", rows=rows), indent=1))


if __name__ == "__main__":
    main()
