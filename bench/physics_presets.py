"""Physics presets: steps/s of ``physics="default"`` and ``"fast"`` and their error over
one gait cycle against a tight-tolerance run (RungeKuttaMerson at 1e-6).

Each preset runs the same smooth random actions (``bench/integrators.py``) from the
reference's first frame for one reference cycle, single process, ``repeats`` rounds
with the presets alternating (best steps/s kept: the machine's noise only ever slows a
run down). The error is the largest joint-angle (deg) and translation (cm) difference
at any env step.

    python bench/physics_presets.py [--task MuscleWalkingImitation2D-v0] [--out bench/results]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="MuscleWalkingImitation2D-v0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    probe = ImitationEnv(args.task)
    n_steps = probe.reference.cycle_steps
    cycle_s = n_steps * probe.reference.control_dt
    U = controls(n_steps, probe.action_space.low, probe.action_space.high)
    tight_q, _, sim = run(args.task, "RungeKuttaMerson", 1e-6, U)
    rot = sim.rotational & ~sim.locked
    actuation = TASKS[args.task].actuation
    envs = {p: ImitationEnv(args.task, physics=p) for p in PRESETS}
    best, q = dict.fromkeys(PRESETS, 0.0), {}
    for r in range(args.repeats):
        for preset in PRESETS[r % 2:] + PRESETS[:r % 2]:
            q[preset], sps = run_preset(envs[preset], U)
            if q[preset] is None:
                raise RuntimeError(f"physics={preset!r} failed: {sps}")
            best[preset] = max(best[preset], sps)
    rows = []
    for preset in PRESETS:
        settings = dict(zip(PHYSICS_SETTINGS, PHYSICS[preset][actuation]))
        rows.append(dict(
            preset=preset, **settings, steps_per_s=best[preset],
            max_err_deg=float(np.degrees(np.abs(q[preset][:, rot] - tight_q[:, rot]).max())),
            max_err_cm=float(100 * np.abs(q[preset][:, ~sim.rotational]
                                          - tight_q[:, ~sim.rotational]).max())))
        print(rows[-1], flush=True)
    speedup = rows[1]["steps_per_s"] / rows[0]["steps_per_s"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.task.split("Imitation")[0].lower()
    result = dict(task=args.task, cycle_s=cycle_s, steps=n_steps, rows=rows,
                  fast_speedup=speedup)
    (out / f"physics_presets_{tag}.json").write_text(json.dumps(result, indent=1))
    lines = [f"{args.task}, one reference cycle ({cycle_s:.3f} s, {n_steps} env steps), "
             "error against RungeKuttaMerson at 1e-6:", "",
             "| physics | integrator | accuracy | min step (ms) | steps/s | max error (deg) "
             "| max error (cm) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['preset']} | {r['integrator']} | {r['accuracy']:.0e} | "
              f"{1e3 * r['min_step']:g} | "
              f"{r['steps_per_s']:.0f} | {r['max_err_deg']:.3f} | {r['max_err_cm']:.3f} |"
              for r in rows]
    lines += ["", f"fast / default: {speedup:.2f}x"]
    (out / f"physics_presets_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
