"""How much the torque tasks' gaits lean on the pelvis actuators.

    python bench/pelvis_residuals.py [--seconds 10] [--json FILE] [RUN ...]

The torque models actuate the pelvis rotations (``pelvis_tilt``; in 3D also
``pelvis_list`` and ``pelvis_rotation``) as well as the leg joints. The pelvis is the
root of the skeleton, so those are residual moments from the ground, not joint
torques: an inverse-dynamics analysis keeps them under about 1% of body weight × centre
of mass height (Hicks et al. 2015), which this script computes for each model. Per
committed torque policy (one seeded 10-s test episode, ``fastenv evaluate``'s first)
and for the reference-as-target zero action (``pd_targets="residual"``): the mean
absolute step-start torque of each actuator, the pelvis moments' mean norm and the
share of steps with a pelvis actuator at ``max_actuation``.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "baselines"
#: one committed policy per torque task (those of baselines/conditions.py)
RUNS = ("TorqueWalkingImitation2D-v0", "runs/torque_walk3d_ppo", "runs/torque_run2d_ppo",
        "runs/torque_run3d_ppo", "runs/torque_jump2d_ppo", "runs/torque_jump3d_ppo",
        "runs/torque_lockedknee2d_ppo", "runs/torque_lockedknee3d_ppo")


def _row(label: str, task: str, episode: dict, records: list, env) -> dict:
    """One episode's row: ``episode`` is its metrics (``run_episode``'s, whose
    ``pelvis_moment_nm`` is the pelvis moments' mean norm), ``records`` its log."""
    names = list(env.sim.actuator_names)
    torque = np.array([r["torque"] for r in records[1:]])   # step-start PD torques, N·m
    pelvis = [k for k, a in enumerate(names) if a.startswith("pelvis_")]
    sim = env.sim
    com_height = float(np.mean([r["com"][1] for r in records]))
    limit = env.actuation.max_actuation
    return dict(
        run=label, task=task, time_alive_s=round(episode["time_alive_s"], 2),
        mean_abs_torque_nm={a: round(float(np.mean(np.abs(torque[:, k]))), 1)
                            for k, a in enumerate(names)},
        pelvis_moment_nm=round(episode["pelvis_moment_nm"], 1),
        pelvis_saturated_share=round(float(np.mean(
            (np.abs(torque[:, pelvis]) >= limit - 1e-9).any(axis=1))), 3),
        guideline_nm=round(0.01 * sim.body_weight * com_height, 1),
        body_weight_n=round(sim.body_weight, 1), com_height_m=round(com_height, 3))


def measure(run: str, seconds: float) -> list[dict]:
    from fastenv.env import ImitationEnv
    from fastenv.evaluate import evaluate, run_episode
    result = evaluate(BASELINES / run, episodes=1, seconds=seconds, random_baseline=False)
    task = result["task"]
    env = ImitationEnv(task, mode="test", log=True, episode_seconds=seconds,
                       start_noise=0.02, pd_targets="residual")
    try:
        rows = [_row(run, task, result["episodes"][0], result["_records"][0], env)]
        zero = np.zeros(env.action_space.shape, np.float32)
        ep = run_episode(env, lambda obs: zero, seed=0)
        rows.append(_row("zero action, reference as target", task, ep, ep["records"], env))
    finally:
        env.close()
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python bench/pelvis_residuals.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", default=list(RUNS), help="run folders under baselines/")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.seconds <= 0:
        p.error(f"--seconds must be > 0, got {a.seconds}")
    missing = [r for r in a.runs if not (BASELINES / r / "config.json").exists()]
    if missing:
        p.error(f"not a run folder under baselines/: {missing[0]}")
    rows = []
    for run in a.runs:
        for row in measure(run, a.seconds):
            rows.append(row)
            print(f"{row['task']} {row['run']}: pelvis {row['pelvis_moment_nm']} N·m "
                  f"(guideline {row['guideline_nm']}), at the limit "
                  f"{100 * row['pelvis_saturated_share']:.0f}% of steps; "
                  f"{row['mean_abs_torque_nm']}", flush=True)
    out = dict(date=datetime.now(UTC).isoformat(timespec="seconds"),
               command="python bench/pelvis_residuals.py" + "".join(
                   f" {x}" for x in (argv if argv is not None else sys.argv[1:])),
               seconds=a.seconds, rows=rows)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
