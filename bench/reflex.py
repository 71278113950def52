"""What the reflexes give a zero action: closed-loop tracking without a policy.

For each task with a reference that ships its Moco excitations (``walking2d``,
``running2d``, ``jumping2d``, ``walking3d``, ``running3d``, ``lockedknee3d``, ``palsy3d``,
and ``jumping3d`` with ``jumping2d``'s; not ``lockedknee2d``, whose excitations came
later), each model family and each of
``excitations="residual"`` (the feed-forward alone) and ``"reflex"`` (with the default
``reflex_gains``), a zero action is played from evenly spaced start frames over the
first half cycle (the jumps: over the way up; no start noise),
for up to ``--seconds``. Reported per row: time up (mean, min, max), how many
episodes stayed up all the way, and the joint RMSE from the reference over the time up.
Nothing is timed, so it does not need an idle machine; the figures are deterministic.

``--gains`` compares reflex gains instead (``reflex_gains.json``): the default, the
gains it replaced, and the default with each gain moved up or down, with a zero action
on every gait above (not the jumps) on the Moco family (the model the excitations were solved on),
scored by the geometric mean of the tasks' mean time up (``--jobs`` processes).

    python bench/reflex.py [--starts 8] [--seconds 10] [--out bench/results]
    python bench/reflex.py --tasks MuscleJumpingImitation2D-v0   # those rows, merged

The rows are deterministic, so ``--tasks`` replaces those tasks' rows in ``reflex.json``
and keeps the others (same ``--starts`` and ``--seconds`` only).
    python bench/reflex.py --gains [--jobs 2]
    python bench/reflex.py --frontal [--jobs 2]

``--frontal`` compares, on the 3D tasks, the default gains with the same plus the
frontal-plane reflexes (``reflex_gains`` of 6: ``k_list``, ``k_step``), and on the 3D
walk a few neighbours of those two gains (``reflex_frontal.json``).

``--exploration`` asks what a policy's exploration and the test episodes' start noise
cost the reflexes on the 2D and 3D walks (``reflex_exploration.json``): Gaussian
actions of standard deviation 0, 0.14 and 0.37 (what PPO's ``log_std_init`` of -2 and -1
start with; clipped to [-1, 1], seeded per episode), from starts with and without
0.02-rad joint-angle noise (what ``fastenv evaluate`` adds).

    python bench/reflex.py --exploration [--jobs 2]
"""
import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from fastenv.env import ImitationEnv
from fastenv.envs import OPTIONS

#: the gaits the gains were chosen on (``--gains``)
GAITS = ("MuscleWalkingImitation2D-v0", "MuscleRunningImitation2D-v0",
         "MuscleWalkingImitation3D-v0", "MuscleRunningImitation3D-v0",
         "MuscleLockedKneeImitation3D-v0", "MusclePalsyImitation3D-v0")
#: the zero-action table's tasks: the gaits and the jumps (up, then back down)
TASKS = GAITS[:2] + ("MuscleJumpingImitation2D-v0",) + GAITS[2:] + (
    "MuscleJumpingImitation3D-v0",)
FAMILIES = (("degroote", "smooth"), ("thelen", "hunt_crossley"))
MODES = ("residual", "reflex")


def zero_action_episode(env, start_frame: int, action_std: float = 0.0, seed: int = 0):
    """(seconds up, fell, joint RMSE in deg over the time up) from ``start_frame``, with
    a zero action, or Gaussian actions of ``action_std`` seeded by ``seed``."""
    env.reset(seed=seed, options={"start_frame": start_frame})
    sq, steps, fell = [], 0, False
    zero = np.zeros(env.n_actions, np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(env.episode_steps):
        action = zero if action_std == 0 else np.clip(
            rng.normal(0.0, action_std, env.n_actions), -1.0, 1.0).astype(np.float32)
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        sq.append(info["joint_mse"])
        if terminated or truncated:
            fell = terminated or "sim_error" in info
            break
    return steps * env.sim.control_dt, fell, float(np.degrees(np.sqrt(np.mean(sq))))


def zero_action_row(task: str, starts: int, seconds: float, action_std: float = 0.0,
                    **options) -> dict:
    """A zero action's episodes from ``starts`` evenly spaced frames over the first half
    cycle of ``task`` (test mode, ``options`` for the env), summarised; with
    ``action_std``, Gaussian actions instead, episode i seeded i."""
    env = ImitationEnv(task, mode="test", episode_seconds=seconds, **options)
    half = env.reference.cycle_steps // 2
    frames = np.linspace(0, half, starts, endpoint=False).round().astype(int)
    episodes = [zero_action_episode(env, int(f), action_std, seed=i if action_std else 0)
                for i, f in enumerate(frames)]
    env.close()
    up = np.array([e[0] for e in episodes])
    return dict(start_frames=frames.tolist(), seconds_up=up.round(2).tolist(),
                mean_up_s=float(up.mean()), stayed_up=int(sum(not e[1] for e in episodes)),
                joint_rmse_deg=float(np.mean([e[2] for e in episodes])))


#: The gains the default replaced (the best of a grid on the 2D walk alone, k_length
#: 10-40, k_velocity 2-10, k_trunk 0-12, trunk_rate_s 0.1-0.3; 2026-12-02).
PREVIOUS_GAINS = (20.0, 5.0, 6.0, 0.3)


def gain_candidates(default) -> list[tuple]:
    """The default, the previous default, and the default with one gain moved at a time
    (k_length to 1.5 and 4, k_velocity to 0.7 and 1.5, k_trunk and trunk_rate_s halved)."""
    k, v, t, r = default
    return [tuple(default), PREVIOUS_GAINS, (1.5, v, t, r), (4.0, v, t, r), (k, 0.7, t, r),
            (k, 1.5, t, r), (k, v, t / 2, r), (k, v, t, r / 2)]


def gains_row(job) -> dict:
    """One task's zero-action episodes with ``gains`` on the Moco family."""
    task, gains, starts, seconds = job
    return dict(task=task, reflex_gains=list(gains),
                **zero_action_row(task, starts, seconds, excitations="reflex",
                                  muscle_model="degroote", contact_model="smooth",
                                  reflex_gains=list(gains)))


def pooled_rows(row, jobs, processes: int) -> list[dict]:
    """``row(job)`` for every job in ``processes`` processes, each printed as it lands."""
    with Pool(processes) as pool:
        rows = pool.map(row, jobs, chunksize=1)
    for r in rows:
        print(json.dumps(r))
    return rows


def write_result(out: str, name: str, result: dict):
    """``result`` as ``out/name`` (indented JSON)."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(result, indent=1))
    print(f"wrote {path / name}")


#: The frontal-plane gains (k_list, k_step) measured here: a zero action stays up
#: longest on the 3D walk with them (``--frontal``), appended to the default four.
FRONTAL_GAINS = (1.5, 1.0)
#: (k_list, k_step) tried on the 3D walk: each alone, and FRONTAL_GAINS with one moved.
FRONTAL_GRID = ((1.5, 0.0), (3.0, 0.0), (0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (1.5, 0.7),
                (1.5, 1.5))


def compare_frontal(args):
    """The default gains against the same with the frontal-plane reflexes, on every 3D
    task; on the 3D walk also FRONTAL_GRID."""
    default = tuple(OPTIONS["reflex_gains"])
    tasks3d = [t for t in TASKS if "3D" in t]
    jobs = [(t, default + g, args.starts, args.seconds)
            for t in tasks3d for g in ((), FRONTAL_GAINS)]
    jobs += [(tasks3d[0], default + g, args.starts, args.seconds) for g in FRONTAL_GRID]
    rows = pooled_rows(gains_row, jobs, args.jobs)
    write_result(args.out, "reflex_frontal.json", dict(
        command="python bench/reflex.py --frontal", seconds=args.seconds, starts=args.starts,
        default=list(default), frontal=list(default + FRONTAL_GAINS), rows=rows))


#: Action standard deviations for ``--exploration``: none, and what PPO's log_std_init
#: of -2 and -1 start with.
EXPLORATION_STDS = (0.0, float(np.exp(-2.0)), float(np.exp(-1.0)))


def exploration_row(job) -> dict:
    """One row of ``--exploration``: a task, its reflex gains, the start noise and the
    actions' standard deviation, on the Moco family."""
    task, gains, start_noise, std, starts, seconds = job
    return dict(task=task, reflex_gains=list(gains), start_noise=start_noise, action_std=std,
                **zero_action_row(task, starts, seconds, action_std=std,
                                  excitations="reflex", muscle_model="degroote",
                                  contact_model="smooth", reflex_gains=list(gains),
                                  start_noise=start_noise))


def compare_exploration(args):
    """What exploration noise and start noise cost the reflexes on the 2D and 3D walks
    (the 3D walk with the frontal-plane reflexes)."""
    default = tuple(OPTIONS["reflex_gains"])
    walks = (("MuscleWalkingImitation2D-v0", default),
             ("MuscleWalkingImitation3D-v0", default + FRONTAL_GAINS))
    jobs = [(task, gains, noise, std, args.starts, args.seconds) for task, gains in walks
            for noise in (0.0, 0.02) for std in EXPLORATION_STDS]
    rows = pooled_rows(exploration_row, jobs, args.jobs)
    write_result(args.out, "reflex_exploration.json", dict(
        command="python bench/reflex.py --exploration", seconds=args.seconds,
        starts=args.starts, rows=rows))


def compare_gains(args):
    default = tuple(OPTIONS["reflex_gains"])
    candidates = gain_candidates(default)
    jobs = [(task, g, args.starts, args.seconds) for g in candidates for task in GAITS]
    rows = pooled_rows(gains_row, jobs, args.jobs)
    scores = []
    for g in candidates:
        mine = [r for r in rows if tuple(r["reflex_gains"]) == g]
        scores.append(dict(reflex_gains=list(g), geometric_mean_up_s=float(
            np.exp(np.mean(np.log([r["mean_up_s"] for r in mine])))),
            mean_joint_rmse_deg=float(np.mean([r["joint_rmse_deg"] for r in mine]))))
    write_result(args.out, "reflex_gains.json", dict(
        command="python bench/reflex.py --gains", seconds=args.seconds, starts=args.starts,
        default=list(default), previous=list(PREVIOUS_GAINS), tasks=list(GAITS),
        scores=scores, rows=rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=8, help="start frames per row")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--gains", action="store_true",
                    help="compare reflex gains around the default (reflex_gains.json)")
    ap.add_argument("--frontal", action="store_true",
                    help="the frontal-plane reflexes on the 3D tasks (reflex_frontal.json)")
    ap.add_argument("--exploration", action="store_true",
                    help="exploration and start noise on the walks (reflex_exploration.json)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="processes for --gains, --frontal, --exploration")
    ap.add_argument("--tasks", help="comma-separated tasks: their rows replace those in "
                                    "OUT/reflex.json, the other rows are kept")
    args = ap.parse_args()
    if args.exploration:
        compare_exploration(args)
        return
    if args.gains:
        compare_gains(args)
        return
    if args.frontal:
        compare_frontal(args)
        return
    tasks = TASKS if args.tasks is None else tuple(dict.fromkeys(args.tasks.split(",")))
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        ap.error(f"--tasks {unknown}: expected tasks of {list(TASKS)}")
    kept, gains = [], list(OPTIONS["reflex_gains"])
    if args.tasks is not None:
        path = Path(args.out) / "reflex.json"
        if not path.is_file():
            ap.error(f"--tasks merges into {path}, which does not exist; run without --tasks")
        previous = json.loads(path.read_text())
        if (previous["starts"], previous["seconds"]) != (args.starts, args.seconds):
            ap.error(f"--tasks merges into rows of --starts {previous['starts']} --seconds "
                     f"{previous['seconds']}; got {args.starts} and {args.seconds}")
        if previous.get("reflex_gains", gains) != gains:
            ap.error(f"--tasks merges into rows of reflex gains {previous['reflex_gains']}, "
                     f"not today's default {gains}; run without --tasks")
        kept = [r for r in previous["rows"] if r["task"] not in tasks]
        gone = sorted({r["task"] for r in kept} - set(TASKS))
        if gone:
            ap.error(f"{path} has rows of {gone}, no longer measured; run without --tasks")
    rows = []
    for task in tasks:
        for muscle_model, contact_model in FAMILIES:
            for mode in MODES:
                row = dict(task=task, muscle_model=muscle_model, contact_model=contact_model,
                           excitations=mode,
                           **zero_action_row(task, args.starts, args.seconds,
                                             excitations=mode, muscle_model=muscle_model,
                                             contact_model=contact_model))
                rows.append(row)
                print(json.dumps(row))
    rows = sorted(kept + rows, key=lambda r: TASKS.index(r["task"]))   # stable: families
    write_result(args.out, "reflex.json", dict(
        command="python bench/reflex.py", seconds=args.seconds, starts=args.starts,
        reflex_gains=gains, rows=rows))


if __name__ == "__main__":
    main()
