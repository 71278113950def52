"""The committed policies that stay up 10 s, evaluated under conditions they were not
trained on: tighter integration (``physics="accurate"``: is the gait an artefact of the
integrator's error?) and random pushes on the torso (``apply_perturbations=True``: the
original's ±50 N, and ±150 N with ``perturbation_force=150``), beside the conditions
they were trained on, with today's code and references (a run's ``evaluation.json`` may
predate a reference's revision). Writes ``evaluation_<condition>.json`` beside each
run's ``evaluation.json``, the same seeded episodes (``fastenv evaluate RUN --episodes 5
--seconds 10 --option ...``, without its random and zero-action rows);
``docs/tables.py`` makes the table in docs/training.md.

    python baselines/conditions.py [--condition NAME ...] [RUN ...]
"""
import argparse
import json
from pathlib import Path

from fastenv import evaluate as ev

HERE = Path(__file__).resolve().parent
#: one run per task that has one staying up in 5 of 5 (or 4 of 5) 10-s test episodes,
#: a second (PPO) run for the 2D torque walk, and the 2D locked-knee walk fine-tuned
#: under pushes (``--init-from``)
RUNS = ("TorqueWalkingImitation2D-v0", "runs/torque2d_ppo", "runs/torque_walk3d_ppo",
        "runs/torque_run2d_ppo", "runs/torque_run3d_ppo", "runs/torque_jump2d_ppo",
        "runs/torque_jump3d_ppo", "runs/torque_lockedknee2d_ppo",
        "runs/torque_lockedknee3d_ppo", "runs/muscle2d_ppo_reflex_long",
        "runs/muscle_run2d_ppo_reflex_long", "runs/muscle_jump2d_sac_jax",
        "runs/muscle_jump3d_sac_jax_continued",
        "runs/muscle_lockedknee2d_ppo_reflex", "runs/muscle_lockedknee2d_ppo_reflex_pushed",
        "runs/muscle3d_sac_jax", "runs/run3d_sac_jax",
        "runs/lockedknee3d_sac_jax", "runs/palsy3d_sac_jax")
#: condition name -> env options over the run's
CONDITIONS = {"as_trained": {}, "accurate": {"physics": "accurate"},
              "pushed": {"apply_perturbations": True},
              "pushed_150n": {"apply_perturbations": True, "perturbation_force": 150.0}}


def main(runs=RUNS, conditions=tuple(CONDITIONS)) -> None:
    for run in runs:
        for name in conditions:
            options = CONDITIONS[name]
            result = ev.evaluate(HERE / run, episodes=5, seconds=10.0, options=options,
                                 random_baseline=False)
            for key in [k for k in result if k.startswith("_")]:
                result.pop(key)
            result["run"] = run
            (HERE / run / f"evaluation_{name}.json").write_text(json.dumps(result, indent=1))
            m = result["mean"]
            print(f"{run} {name}: {m['time_alive_s']:.2f} s, {m['joint_rmse_deg']:.1f} deg, "
                  f"{m['speed_m_s']:.2f} m/s", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", default=RUNS, help="run folders under baselines/")
    ap.add_argument("--condition", action="append", choices=tuple(CONDITIONS),
                    help="only these conditions (default: all)")
    args = ap.parse_args()
    main(args.runs, args.condition or tuple(CONDITIONS))
