"""What the reflexes give a zero action: closed-loop tracking without a policy.

For each task with a reference that ships its Moco excitations (``walking2d``,
``running2d``, ``walking3d``, ``running3d``, ``lockedknee3d``, ``palsy3d``), each model
family and each of ``excitations="residual"`` (the
feed-forward alone) and ``"reflex"`` (with the default ``reflex_gains``), a zero action
is played from evenly spaced start frames over the first half cycle (no start noise),
for up to ``--seconds``. Reported per row: time up (mean, min, max), how many
episodes stayed up all the way, and the joint RMSE from the reference over the time up.
Nothing is timed, so it does not need an idle machine; the figures are deterministic.

    python bench/reflex.py [--starts 8] [--seconds 10] [--out bench/results]
"""
import argparse
import json
from pathlib import Path

import numpy as np

from fastenv.env import ImitationEnv
from fastenv.envs import OPTIONS

TASKS = ("MuscleWalkingImitation2D-v0", "MuscleRunningImitation2D-v0",
         "MuscleWalkingImitation3D-v0", "MuscleRunningImitation3D-v0",
         "MuscleLockedKneeImitation3D-v0", "MusclePalsyImitation3D-v0")
FAMILIES = (("degroote", "smooth"), ("thelen", "hunt_crossley"))
MODES = ("residual", "reflex")


def zero_action_episode(env, start_frame: int):
    """(seconds up, fell, joint RMSE in deg over the time up) from ``start_frame``."""
    env.reset(seed=0, options={"start_frame": start_frame})
    sq, steps, fell = [], 0, False
    zero = np.zeros(env.n_actions, np.float32)
    for _ in range(env.episode_steps):
        _, _, terminated, truncated, info = env.step(zero)
        steps += 1
        sq.append(info["joint_mse"])
        if terminated or truncated:
            fell = terminated or "sim_error" in info
            break
    return steps * env.sim.control_dt, fell, float(np.degrees(np.sqrt(np.mean(sq))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=8, help="start frames per row")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    rows = []
    for task in TASKS:
        for muscle_model, contact_model in FAMILIES:
            for mode in MODES:
                env = ImitationEnv(task, mode="test", excitations=mode,
                                   muscle_model=muscle_model, contact_model=contact_model,
                                   episode_seconds=args.seconds)
                half = env.reference.cycle_steps // 2
                starts = np.linspace(0, half, args.starts, endpoint=False).round().astype(int)
                episodes = [zero_action_episode(env, int(f)) for f in starts]
                env.close()
                up = np.array([e[0] for e in episodes])
                row = dict(task=task, muscle_model=muscle_model, contact_model=contact_model,
                           excitations=mode, start_frames=starts.tolist(),
                           seconds_up=up.round(2).tolist(), mean_up_s=float(up.mean()),
                           stayed_up=int(sum(not e[1] for e in episodes)),
                           joint_rmse_deg=float(np.mean([e[2] for e in episodes])))
                rows.append(row)
                print(json.dumps(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(command="python bench/reflex.py", seconds=args.seconds,
                  starts=args.starts, reflex_gains=list(OPTIONS["reflex_gains"]), rows=rows)
    (out / "reflex.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'reflex.json'}")


if __name__ == "__main__":
    main()
