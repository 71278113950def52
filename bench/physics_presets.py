"""Physics presets: steps/s of ``physics="default"`` and ``"fast"`` and their error over
one gait cycle against a tight-tolerance run (RungeKuttaMerson at 1e-6).

Each preset runs the same smooth random actions (``bench/integrators.py``) from the
reference's first frame for one reference cycle, single process, ``repeats`` rounds
with the presets alternating (best steps/s kept: the machine's noise only ever slows a
run down). The error is the largest joint-angle (deg) and translation (cm) difference
at any env step. Each row also counts, per env step, the integrator's accepted and
attempted steps and its realizations (force and acceleration evaluations: what a step
costs), read from the Manager's own statistics: deterministic, unlike steps/s on a
shared machine. ``--sweep A,B,...`` adds other settings to the same rotating rounds: an
accuracy of the fast preset's integrator, or ``INTEGRATOR:ACCURACY[:MIN_STEP_S]``.
``--robustness STEPS`` also counts simulator failures, steps integrated again without
the minimum step (``info["integrator_retry"]``) and episode ends by cause under random
actions at 0.3 of the range and under saturated ones, each action at a bound (a loose
setting can end episodes that a tight one does not; fully excited muscles are the
stiffest case).

    python bench/physics_presets.py [--task MuscleWalkingImitation2D-v0] [--out bench/results]
                                    [--sweep 5e-2,RungeKutta3:1e-1]
    python bench/physics_presets.py --all-tasks    # every task, physics_presets_tasks.json
"""
import argparse
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from integrators import controls, run  # noqa: E402

from fastenv.__main__ import parse_env_option  # noqa: E402
from fastenv.env import ImitationEnv  # noqa: E402
from fastenv.envs import PHYSICS, PHYSICS_SETTINGS, TASKS, physics_column  # noqa: E402

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


@contextmanager
def manager_statistics():
    """Collect what ``opensim.Manager.integrate`` logs at info level after each call
    (steps taken / attempted and realizations, counted since the Manager's
    ``initialize``); yields the sink. The console copy of those lines goes to
    /dev/null for the duration (OpenSim's console sink cannot be removed)."""
    import opensim as osim
    sink, level = osim.StringLogSink(), osim.Logger.getLevelString()
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    osim.Logger.addSink(sink)
    osim.Logger.setLevelString("info")
    try:
        yield sink
    finally:
        osim.Logger.setLevelString(level)
        osim.Logger.removeSink(sink)
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def integrator_counts(env, U) -> dict:
    """Per env step over the actions from the reference's first frame (an untimed run,
    deterministic on any machine): the integrator's accepted steps
    (``internal_steps``), attempted steps (accepted plus rejected trials) and
    realizations (force and acceleration evaluations, what a step costs), from the
    Manager's own statistics. Those count since the Manager's ``initialize``, and a step
    integrated again without the minimum step, or the minimum's return after it, starts
    a new Manager: each Manager's last figures are added up (the work a failed
    integration did before it raised is not logged, so not counted)."""
    pattern = re.compile(r"steps taken / attempted: (\d+) / (\d+)")
    realized = re.compile(r"number of realizations: (\d+)")
    env.reset(seed=0, options={"start_frame": 0})
    total, last, read = np.zeros(3), np.zeros(3), 0
    with manager_statistics() as sink:
        for u in U:
            manager = env.sim._manager
            _, _, _, _, info = env.step(u)
            if "sim_error" in info:
                raise RuntimeError(f"{env.options} failed: {info['sim_error']}")
            text = sink.getString()
            new, read = text[read:], len(text)
            lines = [np.array([int(a), int(b), int(r)]) for (a, b), r in
                     zip(pattern.findall(new), realized.findall(new), strict=True)]
            if env.sim._manager is not manager:     # this step ended on a new Manager
                if len(lines) == 2:                 # the old one logged this step too
                    last = lines.pop(0)
                total += last
                last = np.zeros(3)
            if lines:
                last = lines[-1]
    total += last
    n = len(U)
    return dict(internal_steps=total[0] / n, attempted_steps=total[1] / n,
                realizations=total[2] / n)


def robustness(env, steps, seeds=3, scale=0.3, saturated=False) -> dict:
    """Uniform random actions at ``scale`` of the range (excitations in the lowest
    ``scale`` of theirs), or with ``saturated`` each action at its low or high bound
    (what a policy clipped at the bounds sends: excitations fully on or off),
    ``seeds`` × ``steps`` env steps with autoreset: simulator failures, terminations,
    and the rules they broke (``termination_causes``; one termination can break
    several)."""
    lo, hi = env.action_space.low, env.action_space.high
    centred = bool((lo < 0).any())   # torque actions centre on 0, excitations start at 0

    def action(rng):
        if saturated:
            return np.where(rng.uniform(size=lo.shape) < 0.5, lo, hi)
        return rng.uniform(lo, hi) * scale if centred else rng.uniform(lo, lo + scale * (hi - lo))
    ends = dict(fall=0, limit_force=0, acceleration=0, truncated=0)
    failures = terminations = retries = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(action(rng).astype(np.float32))
            failures += "sim_error" in info
            retries += bool(info["integrator_retry"])
            if terminated:
                terminations += 1
                for cause, broken in env.termination_causes().items():
                    ends[cause] += broken
            elif truncated:
                ends["truncated"] += 1
            if terminated or truncated:
                env.reset()
    return dict(steps=seeds * steps, simulator_failures=failures, integrator_retries=retries,
                terminations=terminations, episode_ends=ends)


def sweep_settings(spec: str, column: str) -> dict:
    """A ``--sweep`` entry: an accuracy for the fast preset's integrator, or
    ``INTEGRATOR:ACCURACY[:MIN_STEP_S]``, as the three physics settings."""
    fast = dict(zip(PHYSICS_SETTINGS, PHYSICS["fast"][column]))
    parts = spec.split(":")
    if len(parts) == 1:
        return dict(fast, accuracy=float(parts[0]))
    if len(parts) not in (2, 3):
        raise ValueError(f"--sweep entry {spec!r}: expected ACCURACY or "
                         "INTEGRATOR:ACCURACY[:MIN_STEP_S]")
    return dict(integrator=parts[0], accuracy=float(parts[1]),
                min_step=float(parts[2]) if len(parts) == 3 else 0.0)


def measure(task: str, repeats: int, sweep_specs=(), robust_steps=0, options=None) -> dict:
    """The presets (and the ``--sweep`` settings) on ``task`` (with the env
    ``options``, e.g. the Moco model family): best steps/s over ``repeats`` rotating
    rounds, the integrator's counts per env step, and the largest error over one
    reference cycle against RungeKuttaMerson at 1e-6; with ``robust_steps``, each
    setting's ``robustness`` too."""
    options = dict(options or {})
    probe = ImitationEnv(task, **options)
    n_steps = probe.reference.cycle_steps
    cycle_s = n_steps * probe.reference.control_dt
    U = controls(n_steps, probe.action_space.low, probe.action_space.high)
    column = physics_column(TASKS[task].actuation, probe.options["muscle_model"])
    probe.close()
    tight_q, _, sim = run(task, "RungeKuttaMerson", 1e-6, U, **options)
    rot = sim.rotational & ~sim.locked
    configs = {p: dict(physics=p) for p in PRESETS}
    swept = {f"sweep:{spec}": sweep_settings(spec, column) for spec in sweep_specs}
    configs.update(swept)
    envs = {k: ImitationEnv(task, **options, **kw) for k, kw in configs.items()}
    names = list(configs)
    best, q = dict.fromkeys(names, 0.0), {}
    for r in range(repeats):   # every config once per round, the order rotating
        for name in names[r % len(names):] + names[:r % len(names)]:
            q[name], sps = run_preset(envs[name], U)
            if q[name] is None:
                raise RuntimeError(f"{task} {configs[name]} failed: {sps}")
            best[name] = max(best[name], sps)

    def measured(name):
        """The untimed figures of config ``name``, from the env its rounds used."""
        qq = q[name]
        return dict(
            steps_per_s=best[name], **integrator_counts(envs[name], U),
            max_err_deg=float(np.degrees(np.abs(qq[:, rot] - tight_q[:, rot]).max())),
            max_err_cm=float(100 * np.abs(qq[:, ~sim.rotational]
                                          - tight_q[:, ~sim.rotational]).max()),
            **(dict(robustness=robustness(envs[name], robust_steps),
                    robustness_saturated=robustness(envs[name], robust_steps, saturated=True))
               if robust_steps else {}))

    rows = []
    for preset in PRESETS:
        rows.append(dict(preset=preset, **dict(zip(PHYSICS_SETTINGS, PHYSICS[preset][column])),
                         **measured(preset)))
        print(task, rows[-1], flush=True)
    sweep = []
    for name, settings in swept.items():
        sweep.append(dict(settings, **measured(name)))
        print(task, sweep[-1], flush=True)
    for env in envs.values():
        env.close()
    return dict(task=task, options=options, cycle_s=cycle_s, steps=n_steps, rows=rows,
                fast_speedup=rows[1]["steps_per_s"] / rows[0]["steps_per_s"],
                fast_step_ratio=rows[0]["internal_steps"] / rows[1]["internal_steps"],
                fast_realization_ratio=rows[0]["realizations"] / rows[1]["realizations"],
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
                  f"{r['fast_realization_ratio']:.2f}x fewer realizations, "
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
                    help="comma-separated settings timed and counted with the presets: an "
                         "accuracy of the fast preset's integrator, or "
                         "INTEGRATOR:ACCURACY[:MIN_STEP_S]")
    ap.add_argument("--option", type=parse_env_option, action="append", default=[],
                    metavar="KEY=VALUE", help="an env option for every setting (repeatable), "
                    "e.g. muscle_model=degroote --option contact_model=smooth")
    ap.add_argument("--robustness", type=int, default=0, metavar="STEPS",
                    help="also step each setting 3 seeds x STEPS under random actions at 0.3 "
                         "of the range, and as many under saturated ones (each action at a "
                         "bound): simulator failures and episode ends by cause")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.option and args.all_tasks:   # checked first: it was silently ignored
        ap.error("--option is for one --task (physics_presets_tasks.json holds the tasks' "
                 "own models)")
    if args.all_tasks:
        all_tasks(args.repeats, out, [t for t in args.tasks.split(",") if t])
        return
    result = measure(args.task, args.repeats, [a for a in args.sweep.split(",") if a],
                     args.robustness, dict(args.option))
    rows, sweep = result["rows"], result["sweep"]
    cycle_s, n_steps, speedup = result["cycle_s"], result["steps"], result["fast_speedup"]
    tag = (args.task.split("Imitation")[0].lower() + ("3d" if "3D-" in args.task else "")
           + "".join(f"_{v}" for _, v in args.option))
    (out / f"physics_presets_{tag}.json").write_text(json.dumps(result, indent=1))
    given = "".join(f", {k}={v}" for k, v in args.option)
    lines = [f"{args.task}{given}, one reference cycle ({cycle_s:.3f} s, {n_steps} env "
             "steps), error against RungeKuttaMerson at 1e-6:", "",
             "| physics | integrator | accuracy | min step (ms) | steps/s | internal steps "
             "per env step | realizations per env step | max error (deg) | max error (cm) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['preset']} | {r['integrator']} | {r['accuracy']:.0e} | "
              f"{1e3 * r['min_step']:g} | "
              f"{r['steps_per_s']:.0f} | {r['internal_steps']:.1f} | {r['realizations']:.1f} | "
              f"{r['max_err_deg']:.3f} | "
              f"{r['max_err_cm']:.3f} |" for r in rows]
    lines += [f"| (sweep) | {r['integrator']} | {r['accuracy']:.0e} | {1e3 * r['min_step']:g} "
              f"| {r['steps_per_s']:.0f} | {r['internal_steps']:.1f} | {r['realizations']:.1f} "
              f"| {r['max_err_deg']:.3f} "
              f"| {r['max_err_cm']:.3f} |" for r in sweep]
    lines += ["", f"fast / default: {speedup:.2f}x"]
    for r in rows + sweep:
        for key, what in (("robustness", "random-action steps at 0.3 of the range"),
                          ("robustness_saturated", "saturated random-action steps")):
            if key in r:
                rb = r[key]
                ends = ", ".join(f"{k} {v}" for k, v in rb["episode_ends"].items())
                lines.append(f"- {r['integrator']} {r['accuracy']:g}, min step "
                             f"{1e3 * r['min_step']:g} ms, {rb['steps']} {what}: "
                             f"{rb['simulator_failures']} simulator failures, "
                             f"{rb['integrator_retries']} steps integrated again; "
                             f"episode ends: {ends}")
    (out / f"physics_presets_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
