"""Physics presets: steps/s of ``physics="default"`` and ``"fast"`` and their error over
one gait cycle against a tight-tolerance run (RungeKuttaMerson at 1e-6).

Each preset runs the same smooth random actions (``bench/integrators.py``) from the
reference's first frame for one reference cycle, single process, ``repeats`` times
(best steps/s kept: the machine's noise only ever slows a run down). The error is the
largest joint-angle (deg) and translation (cm) difference at any env step.

    python bench/physics_presets.py [--task MuscleWalkingImitation2D-v0] [--out bench/results]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from integrators import controls, run  # noqa: E402

from fastenv.env import ImitationEnv  # noqa: E402
from fastenv.envs import PHYSICS, TASKS  # noqa: E402


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
    rows = []
    for preset in ("default", "fast"):
        integrator, accuracy = PHYSICS[preset][actuation]
        best, q = 0.0, None
        for _ in range(args.repeats):
            q, sps, _ = run(args.task, integrator, accuracy, U)
            if q is None:
                raise RuntimeError(f"physics={preset!r} failed: {sps}")
            best = max(best, sps)
        rows.append(dict(
            preset=preset, integrator=integrator, accuracy=accuracy, steps_per_s=best,
            max_err_deg=float(np.degrees(np.abs(q[:, rot] - tight_q[:, rot]).max())),
            max_err_cm=float(100 * np.abs(q[:, ~sim.rotational]
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
             "| physics | integrator | accuracy | steps/s | max error (deg) | max error (cm) |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {r['preset']} | {r['integrator']} | {r['accuracy']:.0e} | "
              f"{r['steps_per_s']:.0f} | {r['max_err_deg']:.3f} | {r['max_err_cm']:.3f} |"
              for r in rows]
    lines += ["", f"fast / default: {speedup:.2f}x"]
    (out / f"physics_presets_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
