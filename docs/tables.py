"""Write the tables of measured figures in README.md and docs/*.md from bench/results/*.json.

    python docs/tables.py           # rewrite every table region in place
    python docs/tables.py --check   # change nothing; exit 1 naming the stale files

A table region in a Markdown file is

    <!-- table: NAME -->
    ...generated lines...
    <!-- /table -->

and everything between the two markers is replaced by ``TABLES[NAME]()``. Figures are
never typed into the docs by hand: re-run a benchmark (it rewrites its JSON in
``bench/results/``), then this script. ``tests/test_docs.py`` fails when a table differs
from what this script writes, so a hand-edited figure does not survive the test suite.

Sources: ``tasks.json`` (``bench/tasks.py``) with ``fastenv.envs.TASKS``;
``compare.json`` (``bench/compare.py``); ``sync_efficiency.json`` (``bench/pool.py``);
``sync_paired.json`` (``bench/sync_paired.py``); ``migration.json`` (``bench/migration.py``);
``soak.json``
(``bench/soak.py``); ``micro.json`` (``pytest bench/test_micro.py --benchmark-enable
--benchmark-json=bench/results/micro.json``); ``integrators_*.json``
(``bench/integrators.py``); ``physics_presets_*.json`` (``bench/physics_presets.py``);
``model_choice.json`` (``bench/model_choice.py``); ``render.json`` (``bench/render.py``);
``first_step.json`` (``bench/first_step.py --json bench/results/first_step.json``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # bench.compare / bench.pool render their own rows
#: The Markdown files that may hold table regions.
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REGION = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)",
                    re.S)
MUSCLE_TASK = "MuscleWalkingImitation2D-v0"
TORQUE_TASK = "TorqueWalkingImitation2D-v0"


@cache
def load(name: str) -> dict:
    with open(RESULTS / f"{name}.json") as f:
        return json.load(f)


def table(header: list[str], align: str, rows: list[list]) -> list[str]:
    """Markdown table lines; ``align`` has one letter per column: l(eft) or r(ight)."""
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(map(str, cells)) + " |" for cells in (header, rule, *rows)]


def _opt(x, spec="{:.0f}"):
    return "–" if x is None else spec.format(x)


def _acc(x: float) -> str:
    """1e-3, 3e-3: an integrator accuracy as the presets table writes it."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


# ----------------------------------------------------------------------- tasks
#: Plain-words model of each variant (``fastenv.envs.variants``).
MODEL_TEXT = {
    "muscle2d": "gait9dof18musc (planar, 9 DoF)",
    "muscle3d": "gait14dof22musc (3D, 14 DoF)",
    "torque2d": "gait9dof18musc, muscles replaced by torques",
    "torque3d": "gait14dof22musc, torques",
    "muscle2d_lockedknee": "gait9dof18musc, left knee + ankle locked",
    "muscle3d_lockedknee": "gait14dof22musc, left knee + ankle locked",
    "torque2d_lockedknee": "gait9dof18musc, left knee + ankle locked, torques",
    "torque3d_lockedknee": "gait14dof22musc, left knee + ankle locked, torques",
    "palsy3d": "gait14dof22musc scaled to a 1.61 m, 41.5 kg child; weakness and contractures",
}
#: How each shipped reference was made, with its headline figures (docs/references.md).
REFERENCE_TEXT = {
    "walking2d": "Moco tracking of a measured walk and its force plates; 0.97 m/s, stride "
                 "1.20 m, knee 4.6° hyperextended at heel strike",
    "walking3d": "Moco tracking of the measured walk and its force plates + measured "
                 "out-of-plane motion; 1.02 m/s, step width 0.12 m, reserves ≤ 1.7%",
    "running2d": "Moco tracking of a measured run's mean stride and heel paths at its "
                 "3.67 m/s; duty factor 0.35, impact 0.8–1.1 BW, active peak 2.5 BW",
    "running3d": "Moco tracking of a measured run's mean stride, out-of-plane motion "
                 "too; 3.66 m/s, duty factor 0.36, impact 1.0–1.1 BW, active peak 2.8 BW, "
                 "reserves ≤ 4.4 N·m",
    "jumping2d": "Moco tracking of a recorded countermovement jump; 0.38 m, flight 0.25 s "
                 "to the apex; played up and back down",
    "jumping3d": "**kinematic**, jumping2d on the 3D model",
    "lockedknee2d": "Moco predictive, asymmetric full cycle, COM acceleration peaks "
                    "flattened, the locked leg pushing off at ≥ 1.03 BW; 1.30 m/s, step "
                    "times 0.49 / 0.58 s",
    "lockedknee3d": "Moco tracking of lockedknee2d + walking3d's out-of-plane motion, the "
                    "locked leg circumducted, lockedknee2d's foot forces tracked; 1.28 m/s, "
                    "reserves ≤ 2.4%",
    "palsy3d": "Moco tracking of a public crouch-gait cycle with the child model; 0.89 m/s, "
               "stance knee ≥ 44°, reserves ≤ 3.4% of joint moments",
}
KINDS = {"moco_predictive": "Moco predictive", "moco_tracking": "Moco tracking",
         "kinematic": "**kinematic**"}


def task_rows() -> list[dict]:
    """tasks.json rows, checked against the registered task specs."""
    from fastenv.envs import TASKS
    rows = load("tasks")["rows"]
    ids = [r["task"] for r in rows]
    if sorted(ids) != sorted(TASKS):
        raise SystemExit(f"bench/results/tasks.json has tasks {ids}; fastenv.envs.TASKS has "
                         f"{list(TASKS)}: re-run python bench/tasks.py")
    for r in rows:
        spec = TASKS[r["task"]]
        got = (r["model"], r["actuation"], r["reference"])
        if got != (spec.model, spec.actuation, spec.reference):
            raise SystemExit(f"bench/results/tasks.json: {r['task']} is {got}, the spec says "
                             f"{(spec.model, spec.actuation, spec.reference)}: re-run "
                             "python bench/tasks.py")
        if not REFERENCE_TEXT[r["reference"]].startswith(KINDS[r["kind"]]):
            raise SystemExit(f"REFERENCE_TEXT[{r['reference']!r}] does not say "
                             f"{KINDS[r['kind']]!r} (tasks.json kind {r['kind']!r})")
    return rows


def tasks_table() -> list[str]:
    rows = []
    for r in task_rows():
        act = (f"{r['n_actuators']} Thelen muscles" if r["actuation"] == "muscle"
               else f"{r['n_actuators']} PD torques")
        rows.append([r["task"], MODEL_TEXT[r["model"]], act, r["obs_size"], r["action_size"],
                     f"`{r['reference']}`: {REFERENCE_TEXT[r['reference']]}",
                     f"{r['steps_per_s']:.0f}"])
    return table(["ID", "model", "actuators", "obs", "act", "reference", "steps/s"],
                 "lllrrlr", rows)


# ----------------------------------------------------------------------- vector env
def soak_table() -> list[str]:
    s = load("soak")
    first, last = s["rows"][0], s["rows"][-1]
    return table(["figure", "value"], "ll", [
        ["run", f"{s['steps']:,} env steps of {s['task']}, {s['envs']} envs, "
                f"{len(s['rows'])} windows, {s['wall_s']:.0f} s"],
        ["RSS, parent + workers, first → last window",
         f"{s['rss_start_mb']:.0f} → {s['rss_end_mb']:.0f} MB ({100 * s['rss_drift']:+.1f}%)"],
        ["PSS, first → last window", f"{first['pss_mb']:.0f} → {last['pss_mb']:.0f} MB"],
        ["steps/s, mean over windows (coefficient of variation)",
         f"{s['steps_per_s_mean']:.1f} ({100 * s['steps_per_s_cv']:.1f}%)"],
        ["worker restarts / recycles", f"{s['restarts']} / {s['recycles']}"],
        ["simulator errors", s["sim_errors"]],
        ["episodes ended", f"{s['episodes']:,}"],
    ])


def model_sharing_table() -> list[str]:
    """bench/model_sharing.py: one shared model per worker against one model per env."""
    m = load("model_sharing")
    rows = [[x["mode"].replace("sendrecv", "send/recv"), x["num_envs"],
             f"{x['steps_per_s_shared']:.1f} / {x['steps_per_s_one_each']:.1f}",
             f"{x['overall_ratio']:.3f}",
             f"{x['block_ratio_median']:.3f} ({x['block_ratio_quartiles'][0]:.3f}–"
             f"{x['block_ratio_quartiles'][1]:.3f})",
             f"{x['shared_faster_blocks']} of {x['blocks']}",
             f"{x['rss_mb_shared']} / {x['rss_mb_one_each']}",
             f"{x['pss_mb_shared']} / {x['pss_mb_one_each']}",
             {True: "yes", False: "**no**", None: "–"}[x["bitwise_equal"]]]
            for x in m["rows"]]
    return ([f"Run of {m['date']} (`{m['command']}`), {m['task']}, W = 2 "
             "workers per pool, blocks of "
             f"{m['rows'][0]['block_steps']} steps:", ""]
            + table(["mode", "num_envs", "steps/s: shared / one each", "÷ overall",
                     "÷ per block: median (quartiles)", "blocks shared faster",
                     "workers' RSS MB: shared / one each", "workers' PSS MB",
                     "bitwise equal"], "lrrrrrrrl", rows))


def sync_paired_table() -> list[str]:
    """bench/sync_paired.py: the synchronous step and its env limit in alternating blocks."""
    if not (RESULTS / "sync_paired.json").exists():
        return ["Not measured yet: run `python bench/sync_paired.py --json "
                "bench/results/sync_paired.json`, then `python docs/tables.py`."]
    runs = load("sync_paired")["runs"]
    out = [f"- Run {k}, of {run['date']} (`{run['command']}`): {run['rows'][0]['blocks']} "
           f"blocks of {run['rows'][0]['block_steps']} steps per side."
           for k, run in enumerate(runs, 1)]
    rows = [[k, x["num_envs"], f"{x['pool_steps_per_s']:.1f}", f"{x['env_limit_steps_per_s']:.1f}",
             f"{x['efficiency_overall']:.3f}",
             f"{x['efficiency_block_median']:.3f} ({x['efficiency_block_quartiles'][0]:.3f}–"
             f"{x['efficiency_block_quartiles'][1]:.3f})",
             f"{100 * x['workers_waiting']:.1f}%",
             f"{x['pool_busy_ms_per_call']:.2f} / {x['env_limit_ms_per_step']:.2f}",
             x["episode_ends"], {True: "yes", False: "**no**"}[x["bitwise_equal"]]]
            for k, run in enumerate(runs, 1) for x in run["rows"]]
    return ([f"{runs[0]['task']}, W = 2 workers on 2 cores, every env stepping the same "
             "seeded uniform actions on both sides (next-step autoreset):", ""] + out + [""]
            + table(["run", "num_envs", "pool steps/s", "env limit steps/s", "÷ env limit, overall",
                     "÷ per block: median (quartiles)", "workers waiting",
                     "ms per env call: pool worker / env limit", "episode ends",
                     "bitwise equal"], "rrrrrrrrrl", rows))


def work_stealing_table() -> list[str]:
    """bench/migration.py: a move's cost and work stealing replayed on measured step costs."""
    if not (RESULTS / "migration.json").exists():
        return ["Not measured yet: run `python bench/migration.py --stealing 8,16,32 --json "
                "bench/results/migration.json`, then `python docs/tables.py`."]
    m = load("migration")
    rows = [[x["num_envs"], f"{x['pinned_efficiency']:.3f}", f"{x['stealing_efficiency']:.3f}",
             f"{x['stealing_efficiency_free_publish']:.3f}", f"{x['moves_per_step']:.2f}"]
            for x in m.get("stealing", [])]
    return ([f"Run of {m['date']} (`{m['command']}`), {m['task']}: a step "
             f"{m['step_ms']:.2f} ms (median); publishing an env's state "
             f"{m['publish_ms']:.3f} ms ({m['state_bytes']:,} bytes pickled); a move "
             f"(`set_state`) {m['set_state_ms']:.2f} ms (a bare `Simulation.restore` "
             f"{m['restore_ms']:.2f}), and the step after it {m['step_after_move_ratio']:.3f}× "
             f"a continuing one: {m['move_in_steps']:.2f} of a step per move; a moved env's "
             f"coordinates {m['largest_coordinate_difference']:.0e} from the unmoved one's "
             "after a step.", ""]
            + table(["num_envs", "pinned (the pool)", "stealing (oracle)",
                     "stealing, publishing free", "moves per step"], "rrrrr", rows))


def _sync_paired(num_envs: int) -> list[dict]:
    """bench/sync_paired.py's rows at ``num_envs``, one per run."""
    if not (RESULTS / "sync_paired.json").exists():
        return []
    return [x for run in load("sync_paired")["runs"] for x in run["rows"]
            if x["num_envs"] == num_envs]


# ----------------------------------------------------------------------- performance
def compare_table() -> list[str]:
    c = load("compare")
    if c["meta"].get("format", 1) >= 2:   # identical workloads, rounds, self-check
        from bench import compare
        align = "l" + "r" * (len(compare.HEADER) - 1)
        return (compare.describe(c) + [""] + table(compare.HEADER, align, compare.table_rows(c))
                + [""] + compare.check_lines(c))
    m = c["meta"]   # the time-boxed runs before issue 16
    lines = [f"Run of {m['started']}: {m['task']}, {m['cores']} cores, W = {m['workers']} "
             f"workers, {m['seconds_per_point']:g} s per point, "
             f"load average {m['load_avg_start'][0]:.2f} at the start and "
             f"{m['load_avg_end'][0]:.2f} at the end.", ""]
    rows = []
    for r in c["rows"]:
        n = f"W={r['num_envs']}" if r["method"] == "physical_limit" else r["num_envs"]
        lat = ("–" if r["p50_ms"] is None else
               f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f}")
        per_env = "–" if r["steps"] is None else f"{r['steps'] / r['num_envs']:.0f}"
        rows.append([r["label"], n, f"{r['steps_per_s']:.1f}", _opt(r["ratio_limit"], "{:.2f}"),
                     _opt(r["ratio_async"], "{:.2f}"), lat, f"{100 * r['parent_cpu']:.0f}%",
                     f"{r['rss_mb']:.0f}", f"{r['pss_mb']:.0f}", per_env,
                     _opt(r["episode_ends"])])
    return lines + table(["method", "num_envs", "steps/s", "× limit", "× Async",
                          "p50 / p95 / p99 ms", "parent CPU", "RSS MB", "PSS MB",
                          "steps per env", "episode ends"], "lrrrrrrrrrr", rows)


def sync_efficiency_table() -> list[str]:
    """``bench/pool.py``: OsimVectorEnv ``step`` ÷ the physical and env limits, 2-32 envs."""
    if not (RESULTS / "sync_efficiency.json").exists():
        return ["Not measured yet: `python bench/pool.py --out bench/results` writes "
                "`bench/results/sync_efficiency.json`, then `python docs/tables.py`."]
    from bench import compare, pool
    r = load("sync_efficiency")
    return (compare.describe(r) + [""]
            + table(pool.HEADER, "rl" + "r" * (len(pool.HEADER) - 2),
                    pool.table_rows(pool.efficiency_rows(r)))
            + [""] + compare.check_lines(r))


def _compare_row(method: str, num_envs: int, run: str | None = None) -> dict:
    """The first row of ``method`` at ``num_envs`` (of that ``run``, if given)."""
    for r in load("compare")["rows"]:
        if r["method"] == method and r["num_envs"] == num_envs and run in (None, r["run"]):
            return r
    raise SystemExit(f"bench/results/compare.json has no {method} row at num_envs {num_envs}")


@cache
def micro() -> dict:
    """pytest-benchmark name -> stats (seconds)."""
    return {b["name"]: b["stats"] for b in load("micro")["benchmarks"]}


def _ms(name: str, stat: str = "median") -> float:
    return 1e3 * micro()[name][stat]


def _sync_efficiency(num_envs: int) -> dict:
    """method -> efficiency row of ``bench/pool.py`` at ``num_envs``."""
    from bench import pool
    return {r["method"]: r for r in pool.efficiency_rows(load("sync_efficiency"))
            if r["num_envs"] == num_envs}


def _first_step(task: str, workload: str = "random actions"):
    """``first_step.json``'s row for the task's default start state under ``workload``;
    None if the run has no such row."""
    return next((r for r in load("first_step")["rows"] if r["task"] == task
                 and r["start"].startswith("default")
                 and r["workload"] == workload), None)


def _preset_task_results() -> list | None:
    """The rows of ``bench/physics_presets.py --all-tasks``, or None if it has not run."""
    if not (RESULTS / "physics_presets_tasks.json").exists():
        return None
    return load("physics_presets_tasks")["results"]


def _speedup(x: float, target: float) -> str:
    """A speed-up, with a third decimal where two would round it onto ``target``."""
    return f"{x:.3f}×" if x < target and round(x, 2) >= target else f"{x:.2f}×"


def _presets_below(target: float, single=()) -> list[str]:
    """Fast-preset speed-ups under ``target`` × the default: the single-task runs
    (``single``: their JSON results), then ``--all-tasks``' tasks."""
    below = [f"{r['task']} ({_speedup(r['fast_speedup'], target)}, its own run)"
             for r in single if r["fast_speedup"] < target]
    return below + [f"{r['task']} ({_speedup(r['fast_speedup'], target)})"
                    for r in _preset_task_results() or []
                    if "error" not in r and r["fast_speedup"] < target]


def _presets_across_tasks() -> str:
    """The fast preset's speed-up range per actuation over ``--all-tasks``' tasks."""
    results = _preset_task_results() or []
    parts = []
    for kind in ("Muscle", "Torque"):
        rows = [r for r in results if r["task"].startswith(kind) and "error" not in r]
        ups = [r["fast_speedup"] for r in rows]
        fewer = [r["fast_realization_ratio"] for r in rows if "fast_realization_ratio" in r]
        if ups:
            parts.append(f"{kind.lower()} {min(ups):.2f}–{max(ups):.2f}× over "
                         f"{len(ups)} tasks" + (f" ({min(fewer):.2f}–{max(fewer):.2f}× fewer "
                                                "realizations)" if fewer else ""))
    return "; " + ", ".join(parts) if parts else ""


def targets_table() -> list[str]:
    """The performance targets (issues 5 and 16) against the committed measurements."""
    a8, a16 = _compare_row("osim_async", 8), _compare_row("osim_async", 16)
    g16 = _compare_row("gym_async_next", 16, a16["run"])   # ratios within one run
    single, seed = _compare_row("fastenv_single", 1), _compare_row("seed_style", 1)
    ok_async = min(a8["ratio_limit"], a16["ratio_limit"]) >= 0.95
    speed = a16["ratio_async"]
    rss, pss = g16["rss_mb"] / a16["rss_mb"], g16["pss_mb"] / a16["pss_mb"]
    single_ratio = single["steps_per_s"] / seed["steps_per_s"]
    # synchronous step, ÷ the env limit (W cores x one env alone on the same work):
    # the better of one worker per core and the balanced pool
    sync_parts, sync_ok = [], True
    for n in (8, 16, 32):
        eff = {k: r for k, r in _sync_efficiency(n).items()   # the pool's configurations
               if r["env_efficiency"] is not None
               and k in ("osim_sync", "osim_sync_balanced")}
        if not eff:
            sync_ok = False
            sync_parts.append(f"{n} envs: not measured against the env limit")
            continue
        best = max(eff.values(), key=lambda r: r["env_efficiency"])
        paired = _sync_paired(n)
        sync_ok &= best["env_efficiency"] >= 0.97 and all(
            x["efficiency_block_median"] >= 0.97 for x in paired)
        sync_parts.append(f"{n} envs: " + "; ".join(
            f"{name} {r['env_efficiency']:.3f} ({r['efficiency']:.2f} of the physical limit)"
            for name, r in (("W workers", eff.get("osim_sync")),
                            ("balanced", eff.get("osim_sync_balanced"))) if r)
            + ("; paired with the env limit " + " and ".join(
                f"{x['efficiency_block_median']:.3f}" for x in paired) if paired else ""))
    m, t = f"[{MUSCLE_TASK}]", f"[{TORQUE_TASK}]"
    out_m, full_m = _ms(f"test_env_step_outside_integrate{m}"), _ms(f"test_env_step_full{m}")
    out_t, full_t = _ms(f"test_env_step_outside_integrate{t}"), _ms(f"test_env_step_full{t}")
    mean_step = _ms(f"test_env_step_full{m}", "mean")
    reset = _ms(f"test_env_autoreset{m}", "mean") / mean_step
    ok_outside = max(out_m / full_m, out_t / full_t) <= 0.05 and reset <= 1
    fs_direct = _first_step(MUSCLE_TASK)
    fs_residual = _first_step(MUSCLE_TASK, "random residual excitations")
    ci = fs_direct.get("ratio_ci95")
    first = (f"muscle, random excitations: {fs_direct['ratio']:.2f} mean steps "
             + (f"(95% interval {ci[0]:.2f}–{ci[1]:.2f}; " if ci else "(")
             + f"{1e3 * fs_direct['first_mean']:.1f} against {1e3 * fs_direct['mean']:.1f} ms; "
             f"{fs_direct['ratio_early']:.2f} of steps 2-10)")
    if fs_residual:
        first += f"; muscle, random residual excitations: {fs_residual['ratio']:.2f}"
    fs_ppo = _first_step(MUSCLE_TASK, "untrained PPO policy")
    if fs_ppo:
        first += f"; muscle, an untrained PPO policy's actions: {fs_ppo['ratio']:.2f}"
    first += f"; torque: {_first_step(TORQUE_TASK)['ratio']:.2f}"
    ok_first = fs_direct["ratio"] <= 1.5
    pm, pt = load("physics_presets_musclewalking"), load("physics_presets_torquewalking")
    dm, fm = pm["rows"]
    dt, ft = pt["rows"]
    below = _presets_below(1.5, (pm, pt))
    ok_fast = not below
    rows = [
        ["OsimVectorEnv send/recv ≥ 0.95 × physical limit at num_envs 8 and 16",
         f"{a8['ratio_limit']:.2f} and {a16['ratio_limit']:.2f}", _met(ok_async)],
        ["OsimVectorEnv step (synchronous) ≥ 0.97 × env limit (W cores × one env alone, "
         "same work) at num_envs 8 to 32",
         " · ".join(sync_parts), _met(sync_ok)],
        ["send/recv ≥ 1.3 × AsyncVectorEnv steps/s at num_envs 16, with ≥ 4× less RSS",
         f"{speed:.2f}× the steps/s; RSS {a16['rss_mb']:.0f} against {g16['rss_mb']:.0f} MB "
         f"({rss:.1f}×); PSS {a16['pss_mb']:.0f} against {g16['pss_mb']:.0f} MB ({pss:.1f}×)",
         f"speed {_met(speed >= 1.3)}; RSS {_met(rss >= 4)}"],
        ["single env ≥ 2 × seed-style, identical physics",
         f"{single['steps_per_s']:.1f} against {seed['steps_per_s']:.1f} steps/s: "
         f"{single_ratio:.2f}×",
         _met(single_ratio >= 2) + ("" if single_ratio >= 2 else ": the bound is below 2×")],
        ["time outside `Manager.integrate` ≤ 5% of a step; autoreset ≤ 1 step",
         f"outside integrate {out_m:.2f} ms of a {full_m:.1f} ms median step "
         f"({100 * out_m / full_m:.1f}%; torque model {out_t:.2f} of {full_t:.1f} ms, "
         f"{100 * out_t / full_t:.1f}%); a reset {_ms(f'test_env_autoreset{m}'):.1f} ms "
         f"({reset:.2f} of a mean step)", _met(ok_outside)],
        ["first step after a reset ≤ 1.5 mean steps", first, _met(ok_first)],
        ["`fast` preset ≥ 1.5 × default, error stated",
         f"{_speedup(pm['fast_speedup'], 1.5)} (muscle: {fm['steps_per_s']:.0f} against "
         f"{dm['steps_per_s']:.0f} steps/s, {fm['max_err_deg']:.2f}° / {fm['max_err_cm']:.2f} cm "
         f"over one gait cycle) and {_speedup(pt['fast_speedup'], 1.5)} (torque: "
         f"{ft['steps_per_s']:.0f} "
         f"against {dt['steps_per_s']:.0f}, {ft['max_err_deg']:.2f}° / {ft['max_err_cm']:.2f} cm)"
         + _presets_across_tasks(),
         _met(ok_fast) + (f" on {', '.join(below)}" if below else "")],
    ]
    return table(["target", "measured", "verdict"], "lll", rows)


def overheads_table() -> list[str]:
    m, t = f"[{MUSCLE_TASK}]", f"[{TORQUE_TASK}]"
    rows = []
    for label, name, spec in (
            ("env step outside `Manager.integrate`", "test_env_step_outside_integrate", "{:.2f}"),
            ("full env step, random actions with resets", "test_env_step_full", "{:.1f}"),
            ("reset (restore a snapshot)", "test_env_autoreset", "{:.1f}"),
            ("first step after a reset", "test_env_first_step_after_reset", "{:.0f}")):
        rows.append([label, f"{spec.format(_ms(name + m))} / {spec.format(_ms(name + t))}"])
    return table([f"{MUSCLE_TASK} / {TORQUE_TASK}", "ms (median)"], "lr", rows)


KERNELS = ("gather_observation", "smooth_action", "pd_control", "imitation_reward",
           "torque_cost", "metabolic_rate")


def kernels_table() -> list[str]:
    rows = []
    for k in KERNELS:
        c, n = _ms(f"test_{k}_compiled"), _ms(f"test_{k}_numpy")
        rows.append([f"`{k}`", f"{1e3 * c:.1f}", f"{1e3 * n:.1f}", f"{n / c:.0f}×"])
    return table(["kernel, 16 envs", "compiled µs", "NumPy twin µs", "speed-up"], "lrrr", rows)


# ----------------------------------------------------------------------- physics
def integrators_table(name: str):
    def make() -> list[str]:
        rows = [[r["method"], f"{r['accuracy']:.0e}", f"{r['steps_per_s']:.0f}",
                 f"{r['max_err_deg']:.3f}", f"{r['max_err_cm']:.3f}"]
                for r in load(name)["rows"]]
        return table(["integrator", "accuracy", "steps/s", "max error (deg)", "max error (cm)"],
                     "llrrr", rows)
    return make


def presets_table() -> list[str]:
    """``bench/physics_presets.py``: each task's presets, then its ``--sweep`` rows (the
    fast preset's integrator at other accuracies, timed in the same rounds)."""
    rows = []
    for name in ("physics_presets_musclewalking", "physics_presets_torquewalking"):
        p = load(name)
        default = p["rows"][0]["steps_per_s"]
        for r in p["rows"] + p.get("sweep", []):
            label = r["preset"] if "preset" in r else "(other settings)"
            rows.append([p["task"], label, _physics_settings(r, "min step "),
                         f"{r['steps_per_s']:.0f}", f"{r['steps_per_s'] / default:.2f}×",
                         f"{r['internal_steps']:.1f}", _realizations(r),
                         f"{r['max_err_deg']:.2f}° / {r['max_err_cm']:.2f} cm"])
    return table(["task", "preset", "integrator, accuracy", "steps/s", "× default",
                  "internal steps per env step", "realizations per env step", "max error"],
                 "lllrrrrl", rows)


def _physics_settings(row: dict, min_step_label: str = "") -> str:
    """A result row's integrator, accuracy and (when set) minimum step."""
    minimum = row.get("min_step", 0.0)
    return (f"{row['integrator']}, {_acc(row['accuracy'])}"
            + (f", {min_step_label}{1e3 * minimum:g} ms" if minimum else ""))


def _realizations(row: dict) -> str:
    """Realizations per env step, or – for a row measured before they were counted."""
    return f"{row['realizations']:.1f}" if "realizations" in row else "–"


def presets_tasks_table() -> list[str]:
    """``bench/physics_presets.py --all-tasks``: the fast preset on every shipped task."""
    results = _preset_task_results()
    if results is None:
        return ["Not measured yet: `python bench/physics_presets.py --all-tasks`."]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["task"], "–", "–", "–", "–", "–", r["error"]])
            continue
        d, f = r["rows"]
        fewer = r.get("fast_realization_ratio")
        rows.append([r["task"], f"{d['steps_per_s']:.0f} / {f['steps_per_s']:.0f}",
                     f"{r['fast_speedup']:.2f}×", f"{r['fast_step_ratio']:.2f}×",
                     f"{fewer:.2f}×" if fewer else "–",
                     f"{d['max_err_deg']:.2f}° / {d['max_err_cm']:.2f} cm",
                     f"{f['max_err_deg']:.2f}° / {f['max_err_cm']:.2f} cm"])
    return table(["task", "steps/s default / fast", "× default", "fewer internal steps",
                  "fewer realizations", "max error, default", "max error, fast"], "lrrrrll",
                 rows)


def presets_sweep_table(name: str):
    """``bench/physics_presets.py --task T --sweep ... --robustness N``: every setting's
    counts, error and, where measured, episode ends under random actions (at 0.3 of the
    range, and saturated where that was measured too)."""
    def ends(rb) -> str:
        if rb is None:
            return "–"
        retried = ("" if "integrator_retries" not in rb
                   else f" ({rb['integrator_retries']})")
        return (f"{rb['terminations']} ({rb['episode_ends']['acceleration']}), "
                f"{rb['simulator_failures']}{retried}")

    def make() -> list[str]:
        p = load(name)
        base = p["rows"][0]["realizations"]
        saturated = any("robustness_saturated" in r for r in p["rows"] + p["sweep"])
        rows = []
        for r in p["rows"] + p["sweep"]:
            label = _physics_settings(r)
            if "preset" in r:
                label += f" (`{r['preset']}`)"
            rows.append([label, f"{r['internal_steps']:.1f} / {r['attempted_steps']:.1f}",
                         f"{r['realizations']:.1f}", f"{base / r['realizations']:.2f}×",
                         f"{r['steps_per_s'] / p['rows'][0]['steps_per_s']:.2f}×",
                         f"{r['max_err_deg']:.2f}° / {r['max_err_cm']:.2f} cm",
                         ends(r.get("robustness"))]
                        + ([ends(r.get("robustness_saturated"))] if saturated else []))
        steps = next((r["robustness"]["steps"] for r in p["rows"] if "robustness" in r), 0)
        given = "".join(f", {k}={v}" for k, v in p.get("options", {}).items())
        what = "terminations (breaking the acceleration bound), simulator failures " \
               "(steps integrated again)"
        return ([f"{p['task']}{given}, one reference cycle ({p['steps']} env steps)"
                 + (f"; episode ends over {steps} random-action steps (3 seeds, actions at "
                    "0.3 of the range, autoreset)" if steps else "")
                 + (", and as many saturated ones (each action at its low or high bound)"
                    if saturated else "") + ":", ""]
                + table(["integrator, accuracy, minimum step", "steps accepted / attempted",
                         "realizations", "fewer realizations", "× default steps/s",
                         "max error", what]
                        + ([f"saturated actions: {what}"] if saturated else []),
                        "lrrrrll" + ("l" if saturated else ""), rows))
    return make


def contact_split_table() -> list[str]:
    """``bench/contact_split.py``: where one Hunt-Crossley force per foot and one per
    sphere give different vertical GRF."""
    d = load("contact_split")
    rows = []
    refs = d["references"]
    same = sorted(n for n, r in refs.items() if r["differing"] == 0)
    if same:
        frames = [refs[n]["frames"] for n in same]
        rows.append([", ".join(f"`{n}`" for n in same) + " references (every frame)",
                     f"{min(frames)}–{max(frames)} each", "0", "0"])
    for n in sorted(set(refs) - set(same)):
        r = refs[n]
        rows.append([f"`{n}` reference (every frame)", r["frames"],
                     f"{r['differing']} ({r['differing_share']:.0%})",
                     f"{r['max_difference_bw']:.2f}"])
    for r in d["rollouts"]:
        who = (f"`{r['policy']}` policy" if r["policy"] != "random actions"
               else "random actions")
        rows.append([f"{r['task']}, {who}, {r['episodes']} test episodes", f"{r['frames']:,}",
                     f"{r['differing']} ({r['differing_share']:.1%})",
                     f"{r['max_difference_bw']:.2f}"])
    return ([f"`{d['command']}` of {d['date'][:10]}; a frame differs when the totals differ "
             f"by more than {d['threshold_bw']} BW:", ""]
            + table(["poses", "frames", "differing", "largest difference (BW)"], "lrrr", rows))


def muscle_models_table() -> list[str]:
    m = load("muscle_models")
    rows = []
    for r in m["rows"]:
        lo, hi = r["steps_per_s_range"]
        same = r["muscle_model"] == "thelen" and r["contact_model"] == "hunt_crossley"
        within = r.get("within_10deg_s")
        rows.append([r["task"], f"`{r['muscle_model']}`, `{r['contact_model']}`",
                     f"{r['steps_per_s']:.0f} ({lo:.0f}–{hi:.0f})", f"{r['speedup']:.2f}×",
                     f"{r['near_reference_speedup']:.2f}×",
                     "–" if same else f"{r['rms_deg_at_0.1s']:.1f} / {r['rms_deg_at_0.3s']:.1f} "
                     f"/ {r['rms_deg_at_cycle_end']:.1f}",
                     "–" if same else ("whole cycle" if within is None else f"{within:.2f}")])
    loadavg = m["load_average"]
    # one env in one process: an idle machine's load average stays near 1
    busy = (" **Timed on a busy machine: the steps/s are not comparable with the other "
            "tables; rerun on an idle one.**" if max(loadavg) > 1.5 else "")
    return [f"{m['steps']} random-action steps per family and round, {m['repeats']} "
            f"round(s); load average {loadavg[0]:.2f} at the start and {loadavg[1]:.2f} at the "
            f"end.{busy}", "",
            *table(["task", "muscles, contacts", "steps/s, random (range)", "× default",
                    "× default, near the reference",
                    "RMS difference at 0.1 s / 0.3 s / cycle end (deg)",
                    "within 10° for (s)"], "llrrrrr", rows)]


def reflex_gains_table() -> list[str]:
    """``bench/reflex.py --gains``: zero-action time up per task for the default reflex
    gains, the previous default and the default with one gain moved."""
    r = load("reflex_gains")
    short = {t: t.replace("Muscle", "").replace("Imitation", " ").replace("-v0", "")
             for t in r["tasks"]}
    rows = []
    for score in r["scores"]:
        g = score["reflex_gains"]
        label = f"`{g}`" + (" (default)" if g == r["default"] else
                            " (before)" if g == r["previous"] else "")
        mine = {x["task"]: x for x in r["rows"] if x["reflex_gains"] == g}
        rows.append([label, *(f"{mine[t]['mean_up_s']:.2f}" for t in r["tasks"]),
                     f"**{score['geometric_mean_up_s']:.2f}**",
                     f"{score['mean_joint_rmse_deg']:.1f}"])
    return [f"Zero action on the Moco family, {r['starts']} start frames per task, up to "
            f"{r['seconds']:g} s; mean time up (s) per task:", "",
            *table(["`reflex_gains`", *(short[t] for t in r["tasks"]), "geometric mean",
                    "joint RMSE (deg)"], "l" + "r" * (len(r["tasks"]) + 2), rows)]


def reflex_frontal_table() -> list[str]:
    """``bench/reflex.py --frontal``: the 3D tasks' zero action with and without the
    frontal-plane reflexes, and the 3D walk with neighbouring frontal gains."""
    r = load("reflex_frontal")
    base, frontal = r["default"], r["frontal"]

    def label(g):
        if g == base:
            return f"`{g}` (default)"
        return f"`{g}`" + (" (the frontal gains)" if g == frontal else "")
    rows = [[x["task"], label(x["reflex_gains"]),
             f"{x['mean_up_s']:.2f} ({min(x['seconds_up']):.2f}–{max(x['seconds_up']):.2f})",
             f"{x['stayed_up']}/{len(x['seconds_up'])}", f"{x['joint_rmse_deg']:.1f}"]
            for x in r["rows"]]
    return [f"Zero action on the Moco family, {r['starts']} start frames per row, up to "
            f"{r['seconds']:g} s (`python bench/reflex.py --frontal`):", "",
            *table(["task", "`reflex_gains`", "time up (s): mean (range)", "up all the way",
                    "joint RMSE (deg)"], "llrrr", rows)]


def _reference_of(task: str) -> str:
    from fastenv.envs import TASKS
    return TASKS[task].reference


def _coordination_cells(x: dict, *, left: bool = False) -> list[str]:
    """The right ankle's figures of a ``bench/muscle_coordination.py`` row; ``left``:
    the passive share of both ankles (right / left; – for a prosthetic leg)."""
    e = x["mean_excitation"]
    share = f"{x['passive_share_of_plantarflexor_impulse']:.2f}"
    if left:
        other = x["left"]
        share += f" / {other['passive_share_of_plantarflexor_impulse']:.2f}" if other else " / –"
    return [f"{round(x['plantarflexor_active_peak_Nm'])} / "
            f"{round(x['plantarflexor_passive_peak_Nm'])}",
            share,
            f"{x['dorsiflexor_over_plantarflexor_impulse']:.2f}",
            f"{e['soleus_r']:.2f} / {e['gastroc_r']:.2f} / {e['tib_ant_r']:.2f}"]


def _coordination_header(*, left: bool = False) -> list[str]:
    return ["right plantarflexors' peak moment, active / passive (N·m)",
            "passive share of their impulse" + (", right / left ankle" if left else ""),
            "tibialis anterior's impulse over theirs",
            "mean excitation: soleus / gastrocnemius / tibialis anterior"]


def muscle_coordination_table() -> list[str]:
    """``bench/muscle_coordination.py --zero-action``: what carries each shipped
    solution's ankles, and what its feed-forward with reflexes does."""
    r = load("muscle_coordination")
    rows = []
    for x in r["rows"]:
        z = x["zero_action_reflex"]
        rows.append([f"`{_reference_of(x['task'])}`", f"{x['tendon_preload']:g}",
                     *_coordination_cells(x, left=True),
                     f"{z['mean_up_s']:.2f} s / {z['joint_rmse_deg']:.1f}°"])
    return table(["reference", "Achilles preload", *_coordination_header(left=True),
                  "zero action with reflexes, 8 starts: time up / RMSE"], "lrrrrll", rows)


def muscle_coordination_unloaded_table() -> list[str]:
    """The same figures for the references and 3D family before the preload."""
    r = load("muscle_coordination_unloaded")
    rows = [[f"`{_reference_of(x['task'])}`", *_coordination_cells(x)] for x in r["rows"]
            if "3D" in x["task"]]
    return table(["reference (before the preload)", *_coordination_header()], "lrrrl", rows)


#: The 3D solves without passive fibre force (``refgen generate NAME
#: --no-passive-fiber-forces``, 2026-12-06): the solver's figures and the check's
#: verdict, from its log and ``python -m refgen check NAME --references DIR``.
NO_PASSIVE_SOLVES = {
    "walking3d": ("84 iterations, 124 s, objective 0.995 (shipped: 1.079)",
                  "every criterion passes"),
    "running3d": ("221 iterations, 409 s, objective 1.433 (shipped: 1.507)",
                  "**knee 5.06° RMS** from the run (threshold 5°)"),
}


#: The zero action with reflexes of the solutions before the preload, on their model
#: (``bench/results/reflex.json`` at commit 1d6ccdc: mean time up in s, RMSE in deg).
UNLOADED_ZERO_ACTION = {"walking3d": (2.72, 4.7), "running3d": (1.75, 8.7)}


def no_passive_table() -> list[str]:
    """``bench/muscle_coordination.py --no-passive --tendon-preload 0 --zero-action`` on
    the 3D solutions solved without passive fibre force (and without the preload),
    against the solutions of before the preload on their model."""
    rows = []
    for name, (solve, check) in NO_PASSIVE_SOLVES.items():
        x = load(f"muscle_coordination_no_passive_preload_0_{name}")["rows"][0]
        z, (up, rmse) = x["zero_action_reflex"], UNLOADED_ZERO_ACTION[name]
        rows.append([f"`{name}`", solve, check, *_coordination_cells(x),
                     f"{z['mean_up_s']:.2f} s / {z['joint_rmse_deg']:.1f}° "
                     f"({up:.2f} s / {rmse:.1f}°)"])
    return table(["solved without passive force", "converged", "check", *_coordination_header(),
                  "zero action with reflexes, 8 starts: time up / RMSE (the solution before "
                  "the preload, on its model)"], "lllrrrll", rows)


def reflex_exploration_table() -> list[str]:
    """``bench/reflex.py --exploration``: what exploration and start noise cost the
    reflexes on the 2D and 3D walks."""
    r = load("reflex_exploration")
    rows = [[x["task"], f"{x['start_noise']:g}", f"{x['action_std']:.2f}",
             f"{x['mean_up_s']:.2f} ({min(x['seconds_up']):.2f}–{max(x['seconds_up']):.2f})",
             f"{x['stayed_up']}/{len(x['seconds_up'])}", f"{x['joint_rmse_deg']:.1f}"]
            for x in r["rows"]]
    return [f"Moco family with reflexes (the 3D walk with the frontal-plane ones), "
            f"{r['starts']} start frames per row, up to {r['seconds']:g} s "
            f"(`python bench/reflex.py --exploration`):", "",
            *table(["task", "start noise (rad)", "action std", "time up (s): mean (range)",
                    "up all the way", "joint RMSE (deg)"], "lrrrrr", rows)]


def reflex_table() -> list[str]:
    r = load("reflex")
    rows = [[x["task"], f"`{x['muscle_model']}`, `{x['contact_model']}`",
             f"`{x['excitations']}`",
             f"{x['mean_up_s']:.2f} ({min(x['seconds_up']):.2f}–{max(x['seconds_up']):.2f})",
             f"{x['stayed_up']}/{len(x['seconds_up'])}", f"{x['joint_rmse_deg']:.1f}"]
            for x in r["rows"]]
    return [f"Zero action, {r['starts']} start frames per row, up to {r['seconds']:g} s; "
            f"reflex gains {r['reflex_gains']}.", "",
            *table(["task", "muscles, contacts", "excitations", "time up (s): mean (range)",
                    "up all the way", "joint RMSE (deg)"], "lllrrr", rows)]


def model_choice_table() -> list[str]:
    rows = [[model, f"{r['steps_per_s']:.0f}", f"{r['rms_error_deg_at_0_1s']:.1f}",
             f"{r['rms_error_deg_at_half_cycle']:.1f}", f"{r['follows_within_10deg_s']:.2f}",
             f"{r['fell_at_s']:.2f}"]
            for model, r in load("model_choice").items()]
    return table(["model", "steps/s", "RMS error at 0.1 s (deg)", "at half cycle",
                  "follows within 10° (s)", "fell at (s)"], "lrrrrr", rows)


def render_table() -> list[str]:
    r = load("render")
    rows = [[row["task"], row["view"], f"{row['width']}×{row['height']}",
             f"{row['triangles']:,}", f"{row['render_ms']:.1f}", f"{row['render_fps']:.0f}",
             f"{row['step_and_render_fps']:.0f}"] for row in r["rows"]]
    lines = table(["task", "view", "size", "bone triangles", "ms/frame", "frames/s",
                   "with steps"], "lllrrrr", rows)
    mpl, simple = r.get("matplotlib"), r["simplification"]
    return lines + ["", f"Clustered meshes: {simple['triangles']:,} of the "
                    f"{simple['full_triangles']:,} bone triangles; on a frame of "
                    f"{simple['task']} the bones' outline differs from the full meshes' in "
                    f"{simple['silhouette_pixels_differing']} of "
                    f"{simple['model_pixels']:,} pixels. One process on {r['cores']} cores, "
                    f"load average "
                    f"{r['load_average_before'][0]:.1f} before and "
                    f"{r['load_average_after'][0]:.1f} after (other jobs ran)"
                    + (f"; matplotlib's 3D axes took {mpl['seconds_per_frame']:.2f} s for one "
                       f"frame of the same {mpl['triangles']:,} triangles (no ghost, no "
                       f"muscles)." if mpl else ".")]


def reference_as_target_table() -> list[str]:
    r = load("reference_as_target")
    rows = {}
    for row in r["rows"]:
        rows.setdefault(row["task"], {})[row["pd_update"]] = row
    out = []
    for task, by in rows.items():
        c, s = by["continuous"], by["step"]
        out.append([task, f"{c['cycle_s']:.2f}", f"{c['time_up_s']:.2f}",
                    f"{c['joint_rmse_deg']:.1f}", f"{s['time_up_s']:.2f}",
                    f"{s['joint_rmse_deg']:.1f}"])
    return table(["task", "cycle (s)", "continuous: up (s)", "RMSE (deg)",
                  "held (step): up (s)", "RMSE (deg)"], "lrrrrr", out) + [
        "", f"Of {r['rows'][0]['seconds']:g} s in test mode (`{r['command']}`); RMSE of the "
        "imitated joint angles over the time the model stayed up."]


def _run_length(folder: Path) -> dict:
    """A run's env steps and wall time: the committed policy's own
    (``checkpoints/latest/state.json``), else the last row of its ``progress.csv``."""
    import csv
    state = folder / "checkpoints" / "latest" / "state.json"
    if state.is_file():
        return json.loads(state.read_text())
    with open(folder / "progress.csv") as f:
        return list(csv.DictReader(f))[-1]


def _stayed_up(episodes: list[dict]) -> int:
    """Test episodes that neither fell nor ended in a simulator error."""
    return sum(not x["fell"] and not x.get("sim_error") for x in episodes)


def baselines_table() -> list[str]:
    """Every committed evaluation (``baselines/*/evaluation.json`` and
    ``baselines/runs/*/evaluation.json``), with the env steps and wall time of the
    evaluated policy (its ``checkpoints/latest/state.json``, else the last row of the
    run's ``progress.csv``)."""
    from fastenv.envs import TASKS
    rows = []
    for path in sorted((ROOT / "baselines").glob("**/evaluation.json")):
        e = json.loads(path.read_text())
        last = _run_length(path.parent)
        m, ep = e["mean"], e["episodes"]
        if "torque_rms" in m:
            cost = f"{m['torque_rms']:.2f} (torque RMS)"
        elif TASKS[e["task"]].progress_axis == 1 and "metabolic_energy_J" in m:
            # a jump's net rise over an episode is where its last jump was when it
            # ended: no distance to divide the energy by
            cost = (f"– (a jump: {m['metabolic_energy_J'] / 1e3:.1f} kJ in "
                    f"{m['time_alive_s']:.1f} s)")
        elif m.get("cost_of_transport") is not None:
            cost = f"{m['cost_of_transport']:.2f} J/(N·m)"
        else:
            cost = "– (no forward progress)"
        stayed = _stayed_up(ep)
        rel = path.parent.relative_to(ROOT / "baselines")
        config_path = path.parent / "config.json"
        backend = json.loads(config_path.read_text()).get("backend") \
            if config_path.is_file() else None
        marks = {"rllib": " (RLlib)", "jax": " (JAX)"}
        steps, minutes = f"{float(last['env_steps']):,.0f}", f"{float(last['wall_s']) / 60:.0f}"
        source = json.loads(config_path.read_text()).get("init_from") \
            if config_path.is_file() else None
        if source:   # a fine-tune (--init-from): the source's steps and time, then its own
            steps = f"{source['env_steps']:,} + {steps}"
            minutes = f"{source['wall_s'] / 60:.0f} + {minutes}"
        rows.append([f"[{rel}](../baselines/{rel})", e["task"],
                     e["algo"].upper() + marks.get(backend, ""), steps, minutes,
                     f"{m['time_alive_s']:.1f}", f"{stayed}/{len(ep)}",
                     f"{m['joint_rmse_deg']:.1f}",
                     f"{m['speed_m_s']:.2f} / {m['reference_speed_m_s']:.2f}", cost])
        options = {}
        if (path.parent / "config.json").is_file():
            options = json.loads((path.parent / "config.json").read_text()).get(
                "env_options", {})
        zero = ("zero action (the PD alone)" if not e["task"].startswith("Muscle")
                else "zero action (the feed-forward and the reflexes)"
                if options.get("excitations") == "reflex"
                else "zero action (the feed-forward alone)")
        for key, label in (("reference_as_target", zero), ("random_policy", "random actions")):
            b = e.get(key)
            if b:   # the same episodes without the policy: what it adds
                rows.append([f"↳ {label}", "", "", "", "", f"{b['time_alive_s']:.1f}",
                             f"{round((1 - b['fell']) * len(ep))}/{len(ep)}",
                             f"{b['joint_rmse_deg']:.1f}",
                             f"{b['speed_m_s']:.2f} / {b['reference_speed_m_s']:.2f}", ""])
    return table(["run", "task", "algorithm", "env steps", "wall time (min)",
                  f"time alive (s of {e['seconds']:g})", "up all the way", "joint RMSE (deg)",
                  "speed / reference's (m/s)", "cost of transport"], "lllrrrrrrl", rows)


def model_family_learnability_table() -> list[str]:
    """PPO on the Moco model family against the same run on the default model:
    training return and episode length (first → last row of ``progress.csv``) and the
    test evaluation (``evaluation.json``)."""
    import csv
    rows = []
    moco, default = "Moco family (`degroote`, `smooth`)", "default (`thelen`, `hunt_crossley`)"
    for label, run in ((f"{moco}, `reflex`, 10-s training episodes", "muscle2d_ppo_reflex_long"),
                       (f"{moco}, `reflex`", "muscle2d_ppo_reflex"),
                       (f"{moco}, `residual`", "muscle2d_ppo_degroote_residual"),
                       (f"{default}, `residual`", "muscle2d_ppo_residual"),
                       (f"{default}, `direct`", "muscle2d_ppo")):
        folder = ROOT / "baselines" / "runs" / run
        with open(folder / "progress.csv") as f:
            prog = list(csv.DictReader(f))
        steps = _run_length(folder)
        m = json.loads((folder / "evaluation.json").read_text())["mean"]
        a, b = prog[0], prog[-1]
        rows.append([f"[{label}](../baselines/runs/{run})", f"{float(steps['env_steps']):,.0f}",
                     f"{float(a['mean_return']):.0f} → {float(b['mean_return']):.0f}",
                     f"{float(a['mean_length']):.0f} → {float(b['mean_length']):.0f}",
                     f"{m['time_alive_s']:.2f} s", f"{m['joint_rmse_deg']:.1f}°"])
    return table(["model, excitations", "env steps", "training return",
                  "training episode (steps)", "test: time alive", "test: joint RMSE"],
                 "lrrrrr", rows)


def smooth_contact_learnability_table() -> list[str]:
    """Torque tasks on smooth contacts against the default contacts: each run's test
    evaluation (``evaluation.json``: the policy, and the zero action, the PD alone)."""
    rows = []
    for task, contacts, run in (
            ("TorqueWalkingImitation2D-v0", "`smooth`", "runs/torque2d_ppo_smooth"),
            ("TorqueWalkingImitation2D-v0", "`hunt_crossley`", "TorqueWalkingImitation2D-v0"),
            ("TorqueJumpingImitation2D-v0", "`smooth`", "runs/torque_jump2d_ppo_smooth"),
            ("TorqueJumpingImitation2D-v0", "`hunt_crossley`", "runs/torque_jump2d_ppo"),
            ("TorqueRunningImitation3D-v0", "`smooth`", "runs/torque_run3d_ppo_smooth"),
            ("TorqueRunningImitation3D-v0", "`hunt_crossley`", "runs/torque_run3d_ppo")):
        folder = ROOT / "baselines" / run
        steps = _run_length(folder)
        e = json.loads((folder / "evaluation.json").read_text())
        m, z = e["mean"], e["reference_as_target"]
        rows.append([task, contacts, f"[{e['algo'].upper()}](../baselines/{run})",
                     f"{float(steps['env_steps']):,.0f}",
                     f"{float(steps['wall_s']) / 60:.0f}",
                     f"{m['time_alive_s']:.1f} s ({_stayed_up(e['episodes'])}/"
                     f"{len(e['episodes'])} up)",
                     f"{m['joint_rmse_deg']:.1f}°", f"{m['com_error_m']:.2f} m",
                     f"{z['time_alive_s']:.1f} s, {z['joint_rmse_deg']:.1f}°, "
                     f"{z['com_error_m']:.2f} m"])
    return table(["task", "contacts", "run", "env steps", "min", "test: time alive",
                  "joint RMSE", "COM error", "PD alone: time, RMSE, COM"],
                 "lllrrrrrr", rows)


def first_step_table() -> list[str]:
    """``bench/first_step.py --json bench/results/first_step.json``: the first step after
    a reset against the mean step, timed."""
    r = load("first_step")
    rows = [[x["task"], x["start"].replace(", residual excitations", ""),
             x["workload"],
             f"{x['episodes']} / {x['steps']:,}",
             f"{1e3 * x['mean']:.1f}", f"{1e3 * x['first_mean']:.1f}",
             f"{x['ratio']:.2f}" + (f" ({x['ratio_ci95'][0]:.2f}–{x['ratio_ci95'][1]:.2f})"
                                    if "ratio_ci95" in x else ""),
             f"{x['ratio_early']:.2f}"] for x in r["rows"]]
    return ([f"Run of {r['date']}, {r['cpus']} cores, one env in one process, ms per "
             "`env.step`:", ""]
            + table(["task", "start state", "workload", "episodes / steps", "mean step",
                     "first step", "first ÷ mean (95% interval)", "first ÷ steps 2–10"],
                    "lllrrrrr", rows))


def conditions_table() -> list[str]:
    """The policies of ``baselines/conditions.py`` under the conditions they were trained
    on and under others (``evaluation_<condition>.json``): the same five seeded test
    episodes of 10 s each, with the same code and references."""
    rows = []
    for path in sorted((ROOT / "baselines").glob("**/evaluation_accurate.json")):
        folder = path.parent
        rel = folder.relative_to(ROOT / "baselines")
        cells = [f"[{rel}](../baselines/{rel})", json.loads(path.read_text())["task"]]
        for name in ("evaluation_as_trained", "evaluation_accurate", "evaluation_pushed",
                     "evaluation_pushed_150n"):
            e = json.loads((folder / f"{name}.json").read_text())
            m = e["mean"]
            cells.append(f"{m['time_alive_s']:.1f} s ({_stayed_up(e['episodes'])}/"
                         f"{len(e['episodes'])}), {m['joint_rmse_deg']:.1f}°, "
                         f"{m['speed_m_s']:.2f} m/s")
        cells.append(f"{m['reference_speed_m_s']:.2f} m/s")
        rows.append(cells)
    return table(["run", "task", "as trained", "`physics=accurate`",
                  "`apply_perturbations=true`", "… and `perturbation_force=150`",
                  "reference speed"], "lllllll", rows)


TABLES = {
    "tasks": tasks_table,
    "conditions": conditions_table,
    "baselines": baselines_table,
    "first-step": first_step_table,
    "reflex-gains": reflex_gains_table,
    "model-family-learnability": model_family_learnability_table,
    "reference-as-target": reference_as_target_table,
    "smooth-contact-learnability": smooth_contact_learnability_table,
    "render": render_table,
    "soak": soak_table,
    "compare": compare_table,
    "targets": targets_table,
    "overheads": overheads_table,
    "kernels": kernels_table,
    "sync-efficiency": sync_efficiency_table,
    "model-sharing": model_sharing_table,
    "sync-paired": sync_paired_table,
    "work-stealing": work_stealing_table,
    "integrators-muscle": integrators_table("integrators_musclewalking"),
    "integrators-torque": integrators_table("integrators_torquewalking"),
    "physics-presets": presets_table,
    "physics-presets-tasks": presets_tasks_table,
    "physics-sweep-torquelockedknee": presets_sweep_table("physics_presets_torquelockedknee"),
    "physics-sweep-torquewalking3d": presets_sweep_table("physics_presets_torquewalking3d"),
    "physics-sweep-musclerunning": presets_sweep_table("physics_presets_musclerunning"),
    "physics-sweep-musclewalking-degroote": presets_sweep_table(
        "physics_presets_musclewalking_degroote_smooth"),
    "model-choice": model_choice_table,
    "muscle-models": muscle_models_table,
    "reflex": reflex_table,
    "reflex-frontal": reflex_frontal_table,
    "muscle-coordination": muscle_coordination_table,
    "muscle-coordination-unloaded": muscle_coordination_unloaded_table,
    "reflex-exploration": reflex_exploration_table,
    "muscle-coordination-no-passive": no_passive_table,
    "contact-split": contact_split_table,
}


# ----------------------------------------------------------------------- rewriting
def render(text: str, where: str = "<text>") -> str:
    """``text`` with every table region regenerated."""
    def fill(match):
        name = match["name"]
        if name not in TABLES:
            raise SystemExit(f"{where}: unknown table {name!r}; known: {sorted(TABLES)}")
        return match[1] + "\n".join(TABLES[name]()) + "\n" + match[4]
    return REGION.sub(fill, text)


def stale(files=FILES) -> list[Path]:
    """The files whose table regions differ from what :func:`render` writes."""
    return [p for p in files if render(p.read_text(), str(p)) != p.read_text()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if a table is not what this script writes")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for p in bad:
            print(f"{p.relative_to(ROOT)}: tables differ from bench/results "
                  "(run python docs/tables.py)", file=sys.stderr)
        return 1 if bad else 0
    for p in FILES:
        text = p.read_text()
        new = render(text, str(p))
        if new != text:
            p.write_text(new)
            print(f"rewrote {p.relative_to(ROOT)}")
    return 0


# ----------------------------------------------------------------------- reference check
#: ``python -m refgen check all --json refgen/check_status.json`` (committed; the refgen
#: tests hold the check to it).
REFERENCE_CHECK = ROOT / "refgen" / "check_status.json"


def _check_figure(criterion: dict, spec: str = "{:.2f}") -> str:
    """A criterion's figure (a range as lo–hi, absent as –), bold where it fails."""
    v = criterion["value"]
    shown = [] if v is None else [spec.format(x) for x in (v if isinstance(v, list) else [v])]
    text = "–".join(dict.fromkeys(shown)) or "–"
    return f"**{text}**" if criterion["verdict"] == "fail" else text


def reference_check_table() -> list[str]:
    """The figures of ``python -m refgen check`` per shipped reference; violated ones bold."""
    with open(REFERENCE_CHECK) as f:
        refs = json.load(f)["references"]
    rows = []
    for name, r in refs.items():
        c = r["criteria"]
        joints = ("hip", "knee", "ankle")
        if "source" in c:
            corr = rms = "no measured source" if r["measured_source"] is None else "not run"
        else:
            corr = " / ".join(_check_figure(c[f"source.{j}.r"]) for j in joints)
            rms = " / ".join(_check_figure(c[f"source.{j}.rms"], "{:.1f}") for j in joints)
        if r["kind"] == "walking":
            grf = (f"humps {_check_figure(c['grf.loading_hump'])} and "
                   f"{_check_figure(c['grf.push_off_hump'])}, trough "
                   f"{_check_figure(c['grf.trough'])}")
        elif r["kind"] == "running":
            grf = (f"{_check_figure(c['grf.contacts_per_step'], '{:d}')} contacts/stance, "
                   f"impact {_check_figure(c['grf.impact_peak'])}, active "
                   f"{_check_figure(c['grf.active_peak'])}, duty factor "
                   f"{_check_figure(c['grf.duty_factor'])}")
        else:
            grf = (f"unloading {_check_figure(c['grf.unloading_min'])}, toes move "
                   f"{_check_figure(c['grf.foot_travel'], '{:.3f}')} m, flight tilt "
                   f"{_check_figure(c['grf.flight_pelvis_tilt'], '{:.0f}')}°")
        limit = c["limits"]
        share = limit.get("detail", {}).get("share")
        limits = (f"{_check_figure(limit, '{:+.1f}')}° {limit['detail']['coordinate']}"
                  + (f" ({100 * share:.0f}%)" if share is not None else ""))
        seam = "–" if c["seam"]["verdict"] == "skip" else _check_figure(c["seam"])
        pushoff = c["pushoff"]
        if pushoff["verdict"] != "skip":
            sides = [f"{x['passive_share_of_plantarflexor_impulse']:.2f}"
                     for x in (pushoff["detail"][s] for s in ("r", "l")) if x]
            pushoff = _check_figure(pushoff) + (f" (r / l {' / '.join(sides)})"
                                                if len(sides) > 1 else "")
        else:
            pushoff = "–"
        verdicts = [x["verdict"] for x in c.values()]
        rows.append([f"`{name}`", corr, rms, grf,
                     f"{_check_figure(c['com.implied_min'])} / "
                     f"{_check_figure(c['com.mean_difference'])}",
                     limits, seam, pushoff, f"{verdicts.count('fail')} of "
                     f"{len(verdicts) - verdicts.count('skip')}"])
    return table(["reference", "r with source: hip / knee / ankle",
                  "RMS (°): hip / knee / ankle", "vertical GRF (BW)",
                  "COM-implied force: lowest (BW) / mean difference",
                  "past limit onset (torque share)", "seam",
                  "push-off: passive share", "violated"],
                 "llllllrlr", rows)


TABLES["reference_check"] = reference_check_table


def closed_loop_table() -> list[str]:
    """``bench/closed_loop.py``: samples/s with the policy in the loop vs open loop."""
    r = load("closed_loop")
    names = {"sync_random": "`step`, random actions", "sync_policy": "`step`, MLP in the loop",
             "async_random": "`send`/`recv` (batch 8), random actions",
             "pipelined_policy": "`PipelinedCollector`, MLP in the loop",
             "sb3_random": "SB3 `VecEnv`, random actions",
             "sb3_collect": "SB3 PPO `collect_rollouts`",
             "rllib_random": "RLlib env runner, random actions",
             "rllib_sample": "RLlib env runner, PPO module"}
    rows = []
    for row in r["rows"]:
        lo, hi = row["samples_per_s_range"]
        ratio = row["vs_its_open_loop"]
        rows.append([names.get(row["mode"], row["mode"]), f"{row['samples_per_s']:.0f}",
                     f"{lo:.0f}–{hi:.0f}", "–" if ratio is None else f"{ratio:.2f}",
                     f"{row['vs_best_fastenv_open_loop']:.2f}",
                     f"{100 * row['policy_fraction']:.1f}%"])
    loads = [run["load_before"] for row in r["rows"] for run in row["runs"]]
    return table(["mode", "samples/s (median)", "range", "÷ its open loop",
                  "÷ best fastenv open loop", "time in the policy"], "lrrrrr", rows) + [
        "", f"{r['task']}, {r['num_envs']} envs on {r['workers']} workers, {r['repeats']} "
        f"rounds × {r['steps']} steps per env after {r['warmup']} warm-up steps, "
        + ("the same seeded action schedule in every mode" if r["actions"] == "schedule"
           else "each mode's own actions")
        + f"; load average before a run {min(loads):.2f}–{max(loads):.2f}. "
        f"`{r['command']}`"]


TABLES["closed_loop"] = closed_loop_table


def pelvis_residuals_table() -> list[str]:
    """bench/pelvis_residuals.py: the torque policies' pelvis moments against the hips'."""
    if not (RESULTS / "pelvis_residuals.json").exists():
        return ["Not measured yet: run `python bench/pelvis_residuals.py --json "
                "bench/results/pelvis_residuals.json`, then `python docs/tables.py`."]
    m = load("pelvis_residuals")
    rows = []
    for r in m["rows"]:
        t = r["mean_abs_torque_nm"]
        hips = [v for k, v in t.items() if k.startswith("hip_flexion")]
        pelvis = ", ".join(f"{k.removeprefix('pelvis_')} {v:.0f}" for k, v in t.items()
                           if k.startswith("pelvis_"))
        rows.append([r["task"], r["run"] if r["run"].startswith("zero") else f"`{r['run']}`",
                     f"{r['time_alive_s']:.1f}", pelvis, f"{r['pelvis_moment_nm']:.0f}",
                     f"{100 * r['pelvis_saturated_share']:.0f}%",
                     " / ".join(f"{v:.0f}" for v in hips), f"{r['guideline_nm']:.1f}"])
    return ([f"Run of {m['date']} (`{m['command']}`), N·m:", ""]
            + table(["task", "policy", "s up", "pelvis: tilt, list, rotation",
                     "pelvis norm", "steps at 200 N·m", "hip flexion r, l", "1% guideline"],
                    "llrlrrrr", rows))


TABLES["pelvis-residuals"] = pelvis_residuals_table


if __name__ == "__main__":
    sys.exit(main())
