"""Which muscle/contact models should the env simulate? Measure both.

The walking reference comes from Moco with DeGroote–Fregly muscles (rigid tendons,
no passive fiber force) and smooth sphere contacts; the osim-rl originals use Thelen
muscles and Hunt–Crossley contacts. This replays the Moco solution's excitations
open-loop (zero-order hold at the 10 ms control step; the half cycle, then mirrored)
on both models from the solution's first state, and reports how long each follows
the solution and how fast each simulates.

    python bench/model_choice.py --solution SOLUTION.sto [--out bench/results]

SOLUTION.sto is a Moco half-cycle solution of ``python -m refgen generate walking2d``
(its states and controls).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from fastenv.references import read_motion
from fastenv.sim import SimulationError


def mirror_name(name: str) -> str:
    return name[:-2] + ("_l" if name.endswith("_r") else "_r") if name[-2:] in ("_r", "_l") \
        else name


def load_solution(path):
    time_, cols, _ = read_motion(path)
    coords = {p.split("/")[-2]: v for p, v in cols.items()
              if p.startswith("/jointset/") and p.endswith("/value")}
    speeds = {p.split("/")[-2]: v for p, v in cols.items()
              if p.startswith("/jointset/") and p.endswith("/speed")}
    act = {p.split("/")[2]: v for p, v in cols.items() if p.endswith("/activation")}
    exc = {p.split("/")[2]: v for p, v in cols.items()
           if p.startswith("/forceset/") and p.count("/") == 2}
    return time_ - time_[0], coords, speeds, act, exc


def full_cycle_controls(t, exc, dt):
    """Excitations at the control step over the half cycle and its mirror."""
    half = t[-1]
    grid = np.arange(0.0, 2 * half, dt)
    out = {}
    for m in exc:
        first = np.interp(np.minimum(grid, half), t, exc[m])
        second = np.interp(np.clip(grid - half, 0, half), t, exc[mirror_name(m)])
        out[m] = np.where(grid < half, first, second)
    return grid, out


def replay(model_path, solution, t, coords, speeds, act, exc, *, integrator, accuracy,
           dt=0.01):
    """Open-loop replay through the env, so both models get the env's ground alignment
    (mean vertical GRF over the solution = body weight) and its muscle equilibrium."""
    import opensim as osim

    from fastenv.env import ImitationEnv
    env = ImitationEnv("MuscleWalkingImitation2D-v0", model=str(model_path),
                       reference=str(solution), mode="test", integrator=integrator,
                       accuracy=accuracy, start_settle=0)   # the solution's own start
    env.reset(seed=0, options={"start_frame": 0})
    sim = env.sim
    cn = sim.coordinate_names
    s = osim.State(sim.state)
    for m, a0 in act.items():          # the solution's activations at t=0
        if m in sim.muscle_names:
            sim.model.getMuscles().get(m).setActivation(s, float(a0[0]))
    sim.model.equilibrateMuscles(s)
    sim.restore(s)
    ground = env.reference.figures.get("ground_offset_m", 0.0)
    grid, U = full_cycle_controls(t, exc, dt)
    order = [U[m] for m in sim.muscle_names]
    rot = [j for j, c in enumerate(cn) if c in coords and sim.rotational[j] and not sim.locked[j]]
    half = t[-1]
    errors, torso_y, fell_at = [], [], None
    torso = sim.body_names.index("torso")
    t0 = time.perf_counter()
    for k, tk in enumerate(grid):
        try:
            sim.step(np.array([u[k] for u in order]))
        except SimulationError:
            fell_at = tk
            break
        tn = tk + dt
        ref = []
        for j in rot:   # the solution at tn (mirrored in the second half)
            c = cn[j]
            ref.append(np.interp(tn, t, coords[c]) if tn <= half else
                       np.interp(tn - half, t, coords[mirror_name(c)]))
        err = np.degrees(np.sqrt(np.mean((sim.buf[sim.layout.slice("q")][rot] - ref) ** 2)))
        errors.append(err)
        torso_y.append(sim.buf[sim.layout.slice("body_pos")][3 * torso + 1])
        if fell_at is None and torso_y[-1] < 0.75:
            fell_at = tn
    wall = time.perf_counter() - t0
    errors = np.array(errors)
    within = np.flatnonzero(errors > 10.0)
    return dict(steps_per_s=len(errors) / wall, ground_offset_m=ground,
                rms_error_deg_at_0_1s=float(errors[min(9, len(errors) - 1)]),
                rms_error_deg_at_half_cycle=float(errors[min(len(errors) - 1, int(half / dt))]),
                follows_within_10deg_s=float((within[0] if len(within) else len(errors)) * dt),
                fell_at_s=fell_at, simulated_s=len(errors) * dt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solution", required=True)
    ap.add_argument("--integrator", default="RungeKutta2")
    ap.add_argument("--accuracy", type=float, default=1e-2)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    import sys

    from fastenv.envs.variants import variant_path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's refgen
    from refgen import moco
    moco_model = Path(tempfile.mkdtemp()) / "moco2d.osim"
    moco.model_processor().process().printToXML(str(moco_model))
    sol = load_solution(args.solution)
    rows = {}
    for name, path in (("osim-rl muscle2d (Thelen, Hunt-Crossley)", variant_path("muscle2d")),
                       ("Moco model (DeGroote-Fregly, smooth spheres)", moco_model)):
        rows[name] = replay(path, args.solution, *sol, integrator=args.integrator,
                            accuracy=args.accuracy)
        print(name, json.dumps(rows[name]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_choice.json").write_text(json.dumps(rows, indent=1))
    lines = ["| model | steps/s | RMS error at 0.1 s (deg) | at half cycle "
             "| follows within 10° (s) "
             "| fell at (s) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps_per_s']:.0f} | {r['rms_error_deg_at_0_1s']:.1f} | "
                     f"{r['rms_error_deg_at_half_cycle']:.1f} | {r['follows_within_10deg_s']:.2f} "
                     f"| {'–' if r['fell_at_s'] is None else format(r['fell_at_s'], '.2f')} |")
    (out / "model_choice.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
