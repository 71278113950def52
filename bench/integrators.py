"""Integrator table: speed and accuracy of OpenSim's integrators on a walking task.

Every (method, accuracy) runs the same 1 s of a task from the reference's first frame
with the same smooth random actions through ``env.step`` (so torque tasks include their
PD control), and is compared with RungeKuttaMerson at accuracy 1e-6. Steps/s counts
env steps (10 ms), single process.

    python bench/integrators.py [--task MuscleWalkingImitation2D-v0] [--out bench/results]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from fastenv.env import ImitationEnv

METHODS = ["RungeKuttaMerson", "SemiExplicitEuler2", "RungeKutta3", "RungeKutta2",
           "RungeKuttaFeldberg", "ExplicitEuler", "CPodes", "Verlet"]
ACCURACIES = [1e-2, 1e-3, 1e-4]


def controls(n_steps, low, high, seed=0):
    """Smooth random actions: a random walk inside the action box, low-passed ~50 ms."""
    rng = np.random.default_rng(seed)
    span = high - low
    u = np.empty((n_steps, len(low)))
    x = low + span * rng.uniform(0.1, 0.5, len(low))
    for k in range(n_steps):
        x = np.clip(x + rng.normal(0, 0.05, len(low)) * span, low + 0.01 * span,
                    low + 0.6 * span)
        u[k] = x if k == 0 else 0.8 * u[k - 1] + 0.2 * x
    return u.astype(np.float32)


def run(task, method, accuracy, U, **options):
    """The actions ``U`` from the reference's first frame with ``method`` at ``accuracy``
    (``options``: other env options): (coordinates per step, steps/s, the Simulation),
    or (None, the error, the Simulation) where the simulation failed."""
    env = ImitationEnv(task, integrator=method, accuracy=accuracy, **options)
    env.reset(seed=0, options={"start_frame": 0})
    sim = env.sim
    qs = []
    t0 = time.perf_counter()
    for u in U:
        _, _, _, _, info = env.step(u)
        if "sim_error" in info:
            return None, info["sim_error"], sim
        qs.append(sim.buf[sim.layout.slice("q")].copy())
    return np.array(qs), len(U) / (time.perf_counter() - t0), sim


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="MuscleWalkingImitation2D-v0")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    n_steps = int(round(args.seconds / 0.01))
    probe = ImitationEnv(args.task)
    U = controls(n_steps, probe.action_space.low, probe.action_space.high)
    ref_q, ref_sps, sim = run(args.task, "RungeKuttaMerson", 1e-6, U)
    rot = sim.rotational & ~sim.locked
    rows = []
    for method in METHODS:
        for acc in ACCURACIES:
            q, sps, _ = run(args.task, method, acc, U)
            if q is None:
                rows.append(dict(method=method, accuracy=acc, failed=sps))
                print(f"{method:20s} {acc:7.0e}  failed: {sps[:60]}")
                continue
            err_deg = float(np.degrees(np.abs(q[:, rot] - ref_q[:, rot]).max()))
            err_cm = float(100 * np.abs(q[:, ~sim.rotational] - ref_q[:, ~sim.rotational]).max())
            rows.append(dict(method=method, accuracy=acc, steps_per_s=sps,
                             max_err_deg=err_deg, max_err_cm=err_cm))
            print(f"{method:20s} {acc:7.0e}  {sps:7.1f} steps/s  max err {err_deg:8.3f} deg "
                  f"{err_cm:7.3f} cm", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.task.split("Imitation")[0].lower()
    (out / f"integrators_{tag}.json").write_text(json.dumps(
        dict(task=args.task, seconds=args.seconds, reference_steps_per_s=ref_sps,
             rows=rows), indent=1))
    lines = ["| integrator | accuracy | steps/s | max error (deg) | max error (cm) |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['method']} | {r['accuracy']:.0e} | failed | | |")
        else:
            lines.append(f"| {r['method']} | {r['accuracy']:.0e} | {r['steps_per_s']:.0f} | "
                         f"{r['max_err_deg']:.3f} | {r['max_err_cm']:.3f} |")
    (out / f"integrators_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
