"""Physics presets: steps/s of ``physics="default"`` and ``"fast"`` and their error over
one gait cycle against a tight-tolerance run (RungeKuttaMerson at 1e-6).

Each preset runs the same smooth random actions (``bench/integrators.py``) from the
reference's first frame for one reference cycle, single process, ``repeats`` rounds
with the presets alternating (best steps/s kept: the machine's noise only ever slows a
run down). The error is the largest joint-angle (deg) and translation (cm) difference
at any env step. Each row also counts the integrator's internal steps per env step
(deterministic, unlike steps/s on a shared machine); ``--sweep A,B,...`` adds the fast
preset's integrator at other accuracies to the same rotating rounds.

    python bench/physics_presets.py [--task MuscleWalkingImitation2D-v0] [--out bench/results]
                                    [--sweep 1e-2,5e-2,1e-1]
    python bench/physics_presets.py --all-tasks    # every task, physics_presets_tasks.json
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_step import counting  # noqa: E402
from integrators import controls, run  # noqa: E402

from fastenv.env import ImitationEnv  # noqa: E402
from fastenv.envs import PHYSICS, PHYSICS_SETTINGS, TASKS  # noqa: E402

PRESETS = ("default", "fast")


def run_preset(env, U):
    """The actions from the reference's first frame: (coordinates per step, steps/s),
    or (None, error message) when the simulation failed."""
    env.reset(seed=0, options={"start_frame": 0})
    sim, qs = env.sim, []
    t0 = time.perf_counter()
    for u in U:
        _, _, _, _, info = env.step(u)
        if "sim_error" in info:
            return None, info["sim_error"]
        qs.append(sim.buf[sim.layout.slice("q")].copy())
    return np.array(qs), len(U) / (time.perf_counter() - t0)


def internal_steps(task, U, **env_kwargs):
    """Integrator steps per env step over the actions (a counting run, untimed)."""
    env = ImitationEnv(task, **env_kwargs)
    steps_of = counting(env.sim)
    env.reset(seed=0, options={"start_frame": 0})
    total = 0
    for u in U:
        n0 = steps_of()
        _, _, _, _, info = env.step(u)
        if "sim_error" in info:
            raise RuntimeError(f"{env_kwargs} failed: {info['sim_error']}")
        total += steps_of() - n0
    return total / len(U)


def measure(task: str, repeats: int, accuracies=()) -> dict:
    """The presets (and the fast preset's integrator at ``accuracies``) on ``task``:
    best steps/s over ``repeats`` rotating rounds, internal steps per env step, and the
    largest error over one reference cycle against RungeKuttaMerson at 1e-6."""
    probe = ImitationEnv(task)
    n_steps = probe.reference.cycle_steps
    cycle_s = n_steps * probe.reference.control_dt
    U = controls(n_steps, probe.action_space.low, probe.action_space.high)
    probe.close()
    tight_q, _, sim = run(task, "RungeKuttaMerson", 1e-6, U)
    rot = sim.rotational & ~sim.locked
    actuation = TASKS[task].actuation
    configs = {p: dict(physics=p) for p in PRESETS}
    configs.update({f"fast@{a:g}": dict(physics="fast", accuracy=a) for a in accuracies})
    envs = {k: ImitationEnv(task, **kw) for k, kw in configs.items()}
    names = list(configs)
    best, q = dict.fromkeys(names, 0.0), {}
    for r in range(repeats):   # every config once per round, the order rotating
        for name in names[r % len(names):] + names[:r % len(names)]:
            q[name], sps = run_preset(envs[name], U)
            if q[name] is None:
                raise RuntimeError(f"{task} {configs[name]} failed: {sps}")
            best[name] = max(best[name], sps)
    for env in envs.values():
        env.close()

    def errors(qq):
        return dict(
            max_err_deg=float(np.degrees(np.abs(qq[:, rot] - tight_q[:, rot]).max())),
            max_err_cm=float(100 * np.abs(qq[:, ~sim.rotational]
                                          - tight_q[:, ~sim.rotational]).max()))

    rows = []
    for preset in PRESETS:
        settings = dict(zip(PHYSICS_SETTINGS, PHYSICS[preset][actuation]))
        rows.append(dict(
            preset=preset, **settings, steps_per_s=best[preset],
            internal_steps=internal_steps(task, U, physics=preset),
            **errors(q[preset])))
        print(task, rows[-1], flush=True)
    sweep = []
    fast = dict(zip(PHYSICS_SETTINGS, PHYSICS["fast"][actuation]))
    for acc in accuracies:
        name = f"fast@{acc:g}"
        sweep.append(dict(fast, accuracy=acc, steps_per_s=best[name],
                          internal_steps=internal_steps(task, U, **configs[name]),
                          **errors(q[name])))
        print(task, sweep[-1], flush=True)
    return dict(task=task, cycle_s=cycle_s, steps=n_steps, rows=rows,
                fast_speedup=rows[1]["steps_per_s"] / rows[0]["steps_per_s"],
                fast_step_ratio=rows[0]["internal_steps"] / rows[1]["internal_steps"],
                sweep=sweep)


def all_tasks(repeats: int, out: Path, tasks=None):
    """``tasks`` (default: every task with a shipped reference), one after another,
    into ``physics_presets_tasks.json``, rewritten after each task (a long run can be
    stopped and keeps what it measured).  Tasks measured by earlier runs and not by
    this one keep their rows; each row says which run (date, command) made it."""
    from fastenv.references import REFERENCE_DIR
    if not tasks:
        tasks = [t for t, spec in TASKS.items()
                 if (REFERENCE_DIR / f"{spec.reference}.npz").exists()]
    path = out / "physics_presets_tasks.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    kept = {r["task"]: dict(r, date=r.get("date", earlier.get("date")),
                            command=r.get("command", earlier.get("command")))
            for r in earlier.get("results", []) if r["task"] not in tasks}
    run = dict(date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               command="python bench/physics_presets.py " + " ".join(sys.argv[1:]))
    results = []
    for task in tasks:
        try:
            results.append(dict(measure(task, repeats), **run))
        except RuntimeError as exc:   # a preset failed on this task: say so
            results.append(dict(task=task, error=str(exc), **run))
            print(exc, flush=True)
        path.write_text(json.dumps(dict(**run, repeats=repeats,
                                        results=[*kept.values(), *results]), indent=1))
    for r in results:
        if "error" in r:
            print(f"{r['task']}: {r['error']}")
        else:
            print(f"{r['task']}: fast {r['fast_speedup']:.2f}x steps/s, "
                  f"{r['fast_step_ratio']:.2f}x fewer internal steps, "
                  f"{r['rows'][1]['max_err_deg']:.2f} deg / {r['rows'][1]['max_err_cm']:.2f} cm")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="MuscleWalkingImitation2D-v0")
    ap.add_argument("--all-tasks", action="store_true",
                    help="every task with a shipped reference (or --tasks), presets only: "
                         "physics_presets_tasks.json")
    ap.add_argument("--tasks", default="",
                    help="with --all-tasks: comma-separated task ids instead of all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--sweep", default="",
                    help="comma-separated accuracies of the fast preset's integrator, timed "
                         "and counted with the presets")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.all_tasks:
        all_tasks(args.repeats, out, [t for t in args.tasks.split(",") if t])
        return
    accuracies = [float(a) for a in args.sweep.split(",") if a]
    result = measure(args.task, args.repeats, accuracies)
    rows, sweep = result["rows"], result["sweep"]
    cycle_s, n_steps, speedup = result["cycle_s"], result["steps"], result["fast_speedup"]
    tag = args.task.split("Imitation")[0].lower()
    (out / f"physics_presets_{tag}.json").write_text(json.dumps(result, indent=1))
    lines = [f"{args.task}, one reference cycle ({cycle_s:.3f} s, {n_steps} env steps), "
             "error against RungeKuttaMerson at 1e-6:", "",
             "| physics | integrator | accuracy | min step (ms) | steps/s | internal steps "
             "per env step | max error (deg) | max error (cm) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['preset']} | {r['integrator']} | {r['accuracy']:.0e} | "
              f"{1e3 * r['min_step']:g} | "
              f"{r['steps_per_s']:.0f} | {r['internal_steps']:.1f} | {r['max_err_deg']:.3f} | "
              f"{r['max_err_cm']:.3f} |" for r in rows]
    lines += [f"| (sweep) | {r['integrator']} | {r['accuracy']:.0e} | {1e3 * r['min_step']:g} "
              f"| {r['steps_per_s']:.0f} | {r['internal_steps']:.1f} | {r['max_err_deg']:.3f} "
              f"| {r['max_err_cm']:.3f} |" for r in sweep]
    lines += ["", f"fast / default: {speedup:.2f}x"]
    (out / f"physics_presets_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
