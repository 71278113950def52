"""The benchmark scripts that make the docs' measured tables, and that no other test
runs, run end to end at their smallest size and write what they say they write. The
numbers are not checked here (they are measurements); the scripts must not rot between
the runs that refresh the tables. Slow-marked: about 80 s together."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "envs" / "references" / "walking2d_solution.sto"

# script, arguments (OUT is replaced by the output folder), files it writes there
RUNS = [
    ("integrators.py", ["--seconds", "0.05", "--out", "OUT"],
     ["integrators_musclewalking.json", "integrators_musclewalking.md"]),
    ("muscle_models.py", ["--task", "MuscleWalkingImitation2D-v0", "--steps", "10",
                          "--repeats", "1", "--out", "OUT"], ["muscle_models.json"]),
    ("physics_presets.py", ["--task", "TorqueWalkingImitation2D-v0", "--repeats", "1",
                            "--out", "OUT"],
     ["physics_presets_torquewalking.json", "physics_presets_torquewalking.md"]),
    ("physics_presets.py", ["--task", "MuscleRunningImitation2D-v0", "--repeats", "1",
                            "--option", "muscle_model=degroote", "--robustness", "3",
                            "--out", "OUT"],
     ["physics_presets_musclerunning_degroote.json",
      "physics_presets_musclerunning_degroote.md"]),
    ("model_choice.py", ["--solution", str(SOLUTION), "--out", "OUT"],
     ["model_choice.json", "model_choice.md"]),
    ("reference_as_target.py", ["--seconds", "0.1", "--out", "OUT"],
     ["reference_as_target.json"]),
    ("render.py", ["--frames", "3", "--out", "OUT"], ["render.json"]),
    ("snapshot_memory.py", ["--json", "OUT/snapshot_memory.json"], ["snapshot_memory.json"]),
    ("tasks.py", ["--seconds", "0.2", "--out", "OUT"], ["tasks.json", "tasks.md"]),
    ("single_env.py", ["--tasks", "TorqueWalkingImitation2D-v0", "--seconds", "0.5"], []),
    ("reflex.py", ["--gains", "--starts", "1", "--seconds", "0.03", "--jobs", "2",
                   "--out", "OUT"], ["reflex_gains.json"]),
    ("reflex.py", ["--frontal", "--starts", "1", "--seconds", "0.03", "--jobs", "2",
                   "--out", "OUT"], ["reflex_frontal.json"]),
    ("muscle_coordination.py", ["--task", "MuscleWalkingImitation3D-v0", "--out", "OUT"],
     ["muscle_coordination.json"]),
    ("muscle_coordination.py", ["--task", "MuscleWalkingImitation2D-v0", "--no-passive",
                                "--out", "OUT"], ["muscle_coordination_no_passive.json"]),
    ("muscle_coordination.py", ["--task", "MuscleWalkingImitation3D-v0", "--tendon-preload",
                                "0", "--out", "OUT"], ["muscle_coordination_preload_0.json"]),
    ("reflex.py", ["--exploration", "--starts", "1", "--seconds", "0.03", "--jobs", "2",
                   "--out", "OUT"], ["reflex_exploration.json"]),
    ("sac_update.py", ["--steps", "2", "--rounds", "2", "--json", "OUT/sac_update.json"],
     ["sac_update.json"]),
    ("pelvis_residuals.py", ["--seconds", "0.05", "--json", "OUT/pelvis_residuals.json",
                             "runs/torque_walk3d_ppo"], ["pelvis_residuals.json"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, files", RUNS, ids=[r[0] for r in RUNS])
def test_bench_script_runs(tmp_path, script, args, files):
    out = tmp_path / "results"
    out.mkdir()
    args = [a.replace("OUT", str(out)) for a in args]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip()   # each prints its table
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for name in files:
        if name.endswith(".json"):
            assert json.loads((out / name).read_text())


@pytest.mark.slow
def test_reflex_tasks_replace_their_rows_and_keep_the_others(tmp_path):
    """``bench/reflex.py --tasks``: the given task's rows (both families, both modes)
    replace its old ones, every other task's row is kept, in the table's task order; an
    unknown task, or other --starts/--seconds or reflex gains than the file's, is
    refused."""
    out = tmp_path / "results"
    out.mkdir()
    other = dict(task="MuscleWalkingImitation3D-v0", muscle_model="degroote", kept=True)
    stale = dict(task="MuscleJumpingImitation2D-v0", muscle_model="degroote", stale=True)
    (out / "reflex.json").write_text(json.dumps(dict(starts=1, seconds=0.03,
                                                     rows=[other, stale])))

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "bench" / "reflex.py"), *args,
                               "--out", str(out)], capture_output=True, text=True,
                              timeout=600)
    proc = run("--tasks", "MuscleJumpingImitation2D-v0", "--starts", "1", "--seconds", "0.03")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "reflex.json").read_text())["rows"]
    assert [r["task"] for r in rows] == ["MuscleJumpingImitation2D-v0"] * 4 + [other["task"]]
    assert rows[-1] == other and not any(r.get("stale") for r in rows)
    assert run("--tasks", "NoSuchTask-v0").returncode == 2
    refused = run("--tasks", "MuscleJumpingImitation2D-v0", "--starts", "2", "--seconds", "0.03")
    assert refused.returncode == 2 and "--starts 1" in refused.stderr
    data = json.loads((out / "reflex.json").read_text())
    (out / "reflex.json").write_text(json.dumps(dict(data, reflex_gains=[1, 1, 1, 1])))
    refused = run("--tasks", "MuscleJumpingImitation2D-v0", "--starts", "1", "--seconds", "0.03")
    assert refused.returncode == 2 and "reflex gains [1, 1, 1, 1]" in refused.stderr

def test_integrator_counts_add_up_every_manager_of_the_run():
    """A step integrated again without the minimum, and the minimum's return, start new
    Managers, whose statistics start from zero: the counts add every Manager's up (they
    counted only the last one's: 0.7 internal steps per 10-ms env step, where every
    env step takes at least one)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from integrators import controls
    from physics_presets import integrator_counts

    from fastenv.env import ImitationEnv
    env = ImitationEnv("MuscleWalkingImitation2D-v0", muscle_model="degroote",
                       contact_model="smooth", accuracy=1e-2, min_step=1.5e-3)
    n = env.reference.cycle_steps
    counts = integrator_counts(env, controls(n, env.action_space.low,
                                             env.action_space.high))
    env.close()
    assert env.sim.retried_steps >= 1
    assert 5 < counts["internal_steps"] <= counts["attempted_steps"] < 12, counts
    assert counts["realizations"] > 2 * counts["internal_steps"], counts
