"""The benchmark's seed-style env computes the same task as ImitationEnv, and the
side-by-side comparison (``bench/compare.py``, from the checkout) runs end to end.

Tolerances. On the *same* OpenSim state both envs query the same quantities from the
same model, so observations agree to rounding (1e-9 here). The first control step
from the same state is identical too: both integrate it with a freshly initialised
integrator. Later steps are not bitwise: the seed-style env makes a new
``opensim.Manager`` every step (as the original packages did), which restarts the
error-controlled integrator's step-size sequence, while ImitationEnv keeps one Manager
per episode. The trajectories then differ by the integrator's error, which shrinks
with the accuracy: at accuracy 1e-6 they agree to 1e-4 (relative) over several steps.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pandas")

from bench import compare as benchmark  # noqa: E402
from bench.seed_style import SeedStyleEnv  # noqa: E402
from fastenv.env import ImitationEnv  # noqa: E402

TASK = "MuscleWalkingImitation2D-v0"
# observation elements that depend on the muscles' fiber state
FIBER_STATE = ("qddot/", "norm_fiber_length/", "norm_fiber_velocity/")


def make_pair(**kw):
    """float64 observations so that the comparison is not limited by float32; the
    seed-style env starts at the reference state, as osim-rl did, so ImitationEnv does
    too here (``start_settle=0``)."""
    return (ImitationEnv(TASK, obs_dtype="float64", start_settle=0.0, **kw),
            SeedStyleEnv(TASK, obs_dtype="float64", **kw))


@pytest.fixture(scope="module")
def pair():
    fast, seed = make_pair()
    yield fast, seed
    fast.close()
    seed.close()


def actions(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 18)).astype(np.float32)


def copy_state(fast, seed):
    """Put the seed-style env in ImitationEnv's current state (same frame and step)."""
    seed.reset(options={"start_frame": fast._start})
    seed.set_state(fast.sim.state, fast._start, fast._step, model=fast.sim.model)


def test_same_layout_and_spaces(pair):
    fast, seed = pair
    assert seed.observation_names == fast.observation_names
    assert len(seed.observation_names) == 152
    assert seed.observation_space.shape == fast.observation_space.shape
    assert seed.action_space == fast.action_space


def test_same_state_same_observation(pair):
    fast, seed = pair
    fast.reset(options={"start_frame": 20})
    for a in actions(4):
        fast.step(a)
    copy_state(fast, seed)
    expected = fast._observe()
    got = seed.get_observation()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_first_step_from_same_state_is_identical(pair):
    fast, seed = pair
    fast.reset(options={"start_frame": 30})
    copy_state(fast, seed)
    a = actions(1, seed=1)[0]
    o1, r1, te1, tr1, i1 = fast.step(a)
    o2, r2, te2, tr2, i2 = seed.step(a)
    np.testing.assert_allclose(o2, o1, rtol=1e-9, atol=1e-9)
    assert (te1, tr1) == (te2, tr2)
    for key in ("total", "imitation", "effort", "smoothness", "joint_mse", "com_error",
                "effort_cost"):
        assert i2[key] == pytest.approx(i1[key], rel=1e-9, abs=1e-12), key
    assert r2 == pytest.approx(r1, rel=1e-9)


def test_reset_observation_agrees(pair):
    """Reset to the same start frame: kinematics, targets, activations, contact forces."""
    fast, seed = pair
    o1, info1 = fast.reset(options={"start_frame": 44})
    o2, info2 = seed.reset(options={"start_frame": 44})
    assert info1["frame"] == info2["frame"] == 44
    keep = [i for i, n in enumerate(fast.observation_names) if not n.startswith(FIBER_STATE)]
    np.testing.assert_allclose(o2[keep], o1[keep], rtol=1e-9, atol=1e-9)


def test_reset_muscle_state_agrees(pair):
    """Both resets put the muscles in equilibrium for the start frame's pose."""
    fast, seed = pair
    o1, _ = fast.reset(options={"start_frame": 44})
    o2, _ = seed.reset(options={"start_frame": 44})
    np.testing.assert_allclose(o2, o1, rtol=1e-6, atol=1e-6)


def test_trajectories_agree_at_tight_accuracy():
    # a high-order integrator at tight accuracy: a new Manager per step then costs little
    fast, seed = make_pair(accuracy=1e-6, integrator="RungeKuttaMerson")
    # Not frames 7, 17, 19, 79 or 80 of walking2d: there Thelen's equilibrium with the
    # reference's speeds diverges, which the osim-rl-style reset does not survive
    # (fastenv's falls back to the static equilibrium at the pose).
    fast.reset(options={"start_frame": 30})
    copy_state(fast, seed)
    names = fast.observation_names
    # Derivatives and contact forces (joint accelerations, fibre velocities, ground
    # reaction forces) pass the stiff muscle and contact dynamics' sensitivity on to
    # the two integrators' tolerance-level differences: over the frames of walking2d
    # they differ by up to 6% (a swinging foot's acceleration), the states by < 1e-4.
    derivative = np.array([n.startswith(("qddot/", "norm_fiber_velocity/", "grf/"))
                           for n in names])
    for a in actions(5, seed=2):
        o1, r1, *_ = fast.step(a)
        o2, r2, *_ = seed.step(a)
        rel = np.abs(o2 - o1) / np.maximum(1.0, np.abs(o1))
        assert rel[~derivative].max() < 1e-4, names[int(np.argmax(np.where(derivative, 0, rel)))]
        assert rel[derivative].max() < 0.1, names[int(np.argmax(np.where(derivative, rel, 0)))]
        assert r2 == pytest.approx(r1, abs=1e-5)


def test_seed_style_env_api_and_episode(pair):
    from gymnasium.utils.env_checker import check_env
    fast, _ = pair
    env = SeedStyleEnv(TASK)
    # check_env's first reset is unseeded; seeding first makes its start frames fixed
    # (the osim-rl way of equilibrating fails at some frames, e.g. 7, 17 and 19)
    env.reset(seed=3)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert info["frame"] == fast.reset(seed=3)[1]["frame"]   # same seed, same start
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    # no excitation: the model collapses and the episode ends (k: the steps it took)
    for k in range(300):  # noqa: B007
        obs, r, term, trunc, info = env.step(np.zeros(18, np.float32))
        assert np.isfinite(obs).all() and np.isfinite(r)
        assert 0.0 <= r <= 0.5 + env.w_imitate + env.w_effort + env.w_action
        if term or trunc:
            break
    assert term and not trunc, f"no fall after {k + 1} steps without excitation"
    assert set(info) >= {"total", "imitation", "effort", "smoothness", "phase"}
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="unknown option"):
        SeedStyleEnv(TASK, apply_perturbations=True)
    with pytest.raises(ValueError, match="muscle tasks"):
        SeedStyleEnv("TorqueWalkingImitation2D-v0")


# ----------------------------------------------------------------------- benchmark

def test_episode_counting_next_step():
    ep = benchmark.Episodes(3, next_step=True)
    assert ep.count(slice(None), [False, True, False], [False, False, False]) == 3
    # env 1 resets during this call: not a physics step
    assert ep.count(slice(None), [False, False, False], [True, False, False]) == 2
    assert ep.count(np.array([0, 2]), [False, False], [False, False]) == 1
    assert ep.ends == 2 and ep.counts.tolist() == [2, 1, 3]
    same = benchmark.Episodes(2, next_step=False)
    assert same.count(slice(None), [True, False], [False, False]) == 2


def test_process_tree_and_memory():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = benchmark.process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        rss, pss = benchmark.tree_memory_mb(tree)
        assert rss >= pss > 0
    finally:
        child.kill()
        child.wait()


def test_static_skips(monkeypatch):
    assert "num_envs >= 2" in benchmark.static_skip("osim_async", 1)
    assert benchmark.static_skip("osim_async", 2) is None
    real = benchmark.importlib.util.find_spec
    monkeypatch.setattr(benchmark.importlib.util, "find_spec",
                        lambda name: None if name == "stable_baselines3" else real(name))
    assert "not installed" in benchmark.static_skip("sb3_subproc", 4)
    assert "nothing to balance" in benchmark.static_skip("osim_sync_balanced", 2, 2)
    assert benchmark.static_skip("osim_sync_balanced", 4, 2) is None


def test_plan_limits_every_num_envs_and_rotates():
    points = benchmark.plan_points([2, 4], ["physical_limit", "fastenv_single", "osim_sync"])
    assert points == [("physical_limit", 1), ("physical_limit", 2), ("physical_limit", 4),
                      ("fastenv_single", 1), ("osim_sync", 2), ("osim_sync", 4)]
    orders = [benchmark.rounds_order(points, r) for r in range(3)]
    assert [o[0] for o in orders] == points[:3]          # a different one first each round
    assert all(sorted(o) == sorted(points) for o in orders)


def _runs(*rates, n=2):
    return [dict(steps_per_s=x, round=k, p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, parent_cpu=0.1,
                 episode_ends=1, steps=10, steps_per_env=[5, 5], calls=5, rss_mb=100.0 + k,
                 pss_mb=50.0, load_before=0.1) for k, x in enumerate(rates)]


def _row(method, rates, run="r1", n=2):
    return benchmark.summarize(method, n, method, _runs(*rates), run)


def test_summary_median_range_and_the_limit_check():
    rows = [_row("physical_limit", [100, 104, 98]), _row("osim_sync", [90, 99, 95]),
            _row("osim_async", [103, 101, 102]), _row("gym_async_next", [120, 118, 119])]
    assert rows[1]["steps_per_s"] == 95 and rows[1]["steps_per_s_range"] == [90, 99]
    assert rows[1]["spread"] == 9 and rows[1]["rss_mb"] == 102
    benchmark._ratios(rows)
    assert rows[1]["ratio_limit"] == pytest.approx(95 / 100)
    assert rows[1]["ratio_async"] == pytest.approx(95 / 119)
    c = benchmark.check(rows)
    # osim_async: +2 above the limit, within 2 (its spread) + 6 (the limit's)
    # gym_async_next: +19, beyond 2 + 6
    assert not c["passed"] and c["checked"] == 3
    assert [(v["method"], v["num_envs"]) for v in c["violations"]] == [("gym_async_next", 2)]
    md = benchmark.check_lines(dict(check=c))
    assert "failed" in md[0] and "gym_async_next at num_envs 2" in md[1]
    assert "passed" in benchmark.check_lines(dict(check=benchmark.check(rows[:3])))[0]


def test_merge_keeps_other_points_of_the_same_workload():
    def result(started, rows, **meta):
        m = dict(format=benchmark.FORMAT, task="T", steps=300, warmup=10, seed=0, workers=2,
                 reference="task default", started=started, envs=[2])
        m.update(meta)
        return dict(meta=m, runs_meta=[m], rows=rows, skipped=[])
    old = result("r1", [_row("physical_limit", [100], "r1"), _row("osim_sync", [90], "r1")])
    new = result("r2", [_row("physical_limit", [101], "r2", n=4) | {"num_envs": 4},
                        _row("osim_sync", [80], "r2") | {"num_envs": 4}])
    merged = benchmark.merge(old, new)
    assert [(r["method"], r["num_envs"], r["run"]) for r in merged["rows"]] == [
        ("physical_limit", 2, "r1"), ("osim_sync", 2, "r1"), ("physical_limit", 4, "r2"),
        ("osim_sync", 4, "r2")]
    assert [m["started"] for m in merged["runs_meta"]] == ["r1", "r2"]
    assert merged["meta"]["envs"] == [2, 4] and merged["check"]["checked"] == 2
    # a later run at num_envs 2 keeps the first run's osim_sync and the limit it needs
    again = benchmark.merge(merged, result("r3", [_row("physical_limit", [99], "r3"),
                                                  _row("osim_async", [97], "r3")]))
    assert [(r["method"], r["num_envs"], r["run"]) for r in again["rows"]][:4] == [
        ("physical_limit", 2, "r1"), ("physical_limit", 2, "r3"), ("osim_sync", 2, "r1"),
        ("osim_async", 2, "r3")]
    assert again["check"]["checked"] == 3
    assert [benchmark.run_number(again, r) for r in again["rows"][:4]] == ["1", "3", "1", "3"]
    # the env limit an old row is divided by stays too (bench/pool.py's rows)
    pooled = benchmark.merge(
        result("r1", [_row("env_limit", [95], "r1"), _row("osim_sync_balanced", [70], "r1"),
                      _row("osim_sync", [80], "r1")]),
        result("r2", [_row("env_limit", [96], "r2"), _row("osim_sync", [85], "r2")]))
    assert sorted((r["method"], r["run"]) for r in pooled["rows"]) == [
        ("env_limit", "r1"), ("env_limit", "r2"), ("osim_sync", "r2"),
        ("osim_sync_balanced", "r1")]
    with pytest.raises(SystemExit, match="steps 300 vs 100"):
        benchmark.merge(old, result("r3", [], steps=100))


def test_described_runs_name_the_num_envs_of_the_rows_they_kept():
    """A run asked for num_envs 32 also keeps the single loops' rows at 1: the run's
    line says 1, 32 (it said 32, and the table's rows at 1 had no run)."""
    meta = dict(task="T", warmup=10, steps=300, workers=2, cores=2, rounds=3, seed=0,
                reference="r")
    runs = [dict(started=s, host="vm", envs=e, wall_s=1.0, load_avg_start=[0.0])
            for s, e in (("r1", [8]), ("r2", [32]))]
    rows = [_row("osim_sync", [90], "r1") | {"num_envs": 8},
            _row("fastenv_single", [50], "r2") | {"num_envs": 1},
            _row("osim_sync", [80], "r2") | {"num_envs": 32}]
    lines = benchmark.describe(dict(meta=meta, runs_meta=runs, rows=rows))
    import re
    assert [re.search(r"num_envs ([\d, ]+), 1 s,", line)[1]
            for line in lines if line.startswith("- Run")] == ["8", "1, 32"]


def test_recordings_are_kept_for_the_same_workload_only(tmp_path):
    base = dict(task=TASK, seed=0, steps=300, warmup=10, env_kwargs={})
    assert benchmark.recordings_missing(base, 3, tmp_path) == [0, 1, 2]
    (tmp_path / "env0.pkl").write_bytes(b"x")
    (tmp_path / "env2.pkl").write_bytes(b"x")
    assert benchmark.recordings_missing(base, 3, tmp_path) == [1]
    # another workload: its recordings go
    assert benchmark.recordings_missing(dict(base, steps=100), 2, tmp_path) == [0, 1]
    assert not list(tmp_path.glob("env*.pkl"))


def test_scheduled_workload_is_the_same_in_a_vector_env_and_single_envs():
    """OsimVectorEnv under ``scheduled_actions`` (NEXT_STEP: a reset step takes no row)
    and ``ScheduledEnv`` single envs run the same trajectories, whatever actions they
    are given; the recording's replay integrates the same physics."""
    from bench.workload import (
        ActionSchedule,
        make_scheduled_env,
        record_trajectory,
        replay_seconds,
        scheduled_actions,
    )
    from fastenv.vector import OsimVectorEnv
    n, steps = 2, 12
    with scheduled_actions(n, steps + 4, seed=5) as counts:
        venv = OsimVectorEnv(TASK, n, num_workers=1)
        try:
            venv.reset(seed=5)
            first_obs = venv.step(np.ones((n, 18), np.float32))[0]
            venv._a.terminated[0] = True   # as if env 0 ended: its next step is a reset
            obs = venv.step(np.ones((n, 18), np.float32))[0]
            assert counts.tolist() == [1, 2]
        finally:
            venv.close()
    envs = [make_scheduled_env(ImitationEnv, TASK, i, 5, steps + 4, {}) for i in range(n)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=5 + i)
        first = np.stack([env.step(np.zeros(18, np.float32))[0] for env in envs])
        np.testing.assert_array_equal(first_obs, first)
        np.testing.assert_array_equal(obs[1], envs[1].step(np.zeros(18, np.float32))[0])
        assert envs[1].steps_taken == 2
        np.testing.assert_array_equal(envs[1].schedule.table(1),
                                      ActionSchedule(5, steps + 4, envs[1].action_space).table(1))
    finally:
        for env in envs:
            env.close()
    # the recording, replayed with bare integrate calls, ends where the env ended
    events = record_trajectory(TASK, 0, 5, steps=4, warmup=2, env_kwargs={})
    kinds = [e[0] for e in events]
    assert kinds.index("restore") < kinds.index("step") and kinds.count("step") == 6
    assert [e[3] for e in events if e[0] == "step"] == [False] * 2 + [True] * 4
    env = make_scheduled_env(ImitationEnv, TASK, 0, 5, 6, {})
    try:
        env.reset(seed=5)
        for _ in range(6):
            env.step(np.zeros(18, np.float32))
        sim = env.unwrapped.sim
        stepped = sim.state.getY().to_numpy().copy()
        timed, seconds = replay_seconds(sim, events)   # restores, then redoes
        assert timed == 4 and seconds > 0
        np.testing.assert_array_equal(sim.state.getY().to_numpy(), stepped)
    finally:
        env.close()


def run_cli(tmp_path, *extra, script=benchmark.__file__):
    out = tmp_path / "results"
    cmd = [sys.executable, script, "--quick", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def skipped_methods(out, name="compare") -> set:
    """The methods a run's JSON says it skipped."""
    return {s["method"] for s in json.loads((out / f"{name}.json").read_text())["skipped"]}


def check_outputs(out, methods, name="compare"):
    result = json.loads((out / f"{name}.json").read_text())
    rows = {(r["method"], r["num_envs"]): r for r in result["rows"]}
    assert {m for m, _ in rows} == set(methods), result["skipped"]
    for (m, n), r in rows.items():
        assert r["steps_per_s"] > 0 and r["rss_mb"] >= r["pss_mb"] > 0
        assert len(r["runs"]) == result["meta"]["rounds"] == 1
        assert r["steps_per_s_range"][0] <= r["steps_per_s"] <= r["steps_per_s_range"][1]
        if m not in ("physical_limit", "env_limit"):
            assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
            # every env took at least the timed steps (NEXT_STEP sync: a few more)
            assert r["steps_per_env"][0] >= benchmark.QUICK_STEPS
        assert r["ratio_limit"] == pytest.approx(
            r["steps_per_s"] / rows[("physical_limit", n)]["steps_per_s"])
    assert result["check"]["checked"] == len(rows) - sum(m == "physical_limit" for m, _ in rows)
    md = (out / f"{name}.md").read_text()
    assert "Check: " in md
    return result


@pytest.mark.slow   # ~27 s; the default suite runs the --quick CLI checks
def test_cli_tiny_run_end_to_end(tmp_path):
    """bench/compare.py with one point of each kind of method (a single loop, a
    Gymnasium vector env, OsimVectorEnv async) and the physical limit."""
    methods = ["physical_limit", "fastenv_single", "gym_async_next", "osim_async"]
    out, proc = run_cli(tmp_path, "--methods", ",".join(methods))
    result = check_outputs(out, methods)
    assert result["meta"]["envs"] == [2] and result["meta"]["workers"] >= 1
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["osim_async"]["ratio_async"] == pytest.approx(
        rows["osim_async"]["steps_per_s"] / rows["gym_async_next"]["steps_per_s"])
    assert rows["fastenv_single"]["ratio_async"] is None   # no num_envs=1 AsyncVectorEnv
    assert "| method | num_envs | steps/s |" in (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in proc.stdout


def test_pool_efficiency_rows():
    """bench/pool.py's table: the median's ratio to each limit, the range of the
    per-round ratios; the target is on the env limit; the workers' waiting share."""
    from bench import pool
    rows = [_row("physical_limit", [100, 110, 90], n=8) | {"num_envs": 8},
            _row("env_limit", [99, 100, 101], n=8) | {"num_envs": 8},
            _row("osim_sync", [95, 88, 100], n=8) | {"num_envs": 8, "workers": [
                dict(waiting_s=0.04, busy_s=0.95, sending_s=0.01, calls=10),
                dict(waiting_s=0.08, busy_s=0.91, sending_s=0.01, calls=10)]}]
    (row,) = pool.efficiency_rows(dict(rows=rows))
    assert row["efficiency"] == pytest.approx(95 / 100) and row["target"] == pool.TARGET
    assert row["efficiency_range"] == pytest.approx([0.8, 100 / 90])   # 88/110, 100/90
    assert row["env_efficiency"] == pytest.approx(95 / 100)
    assert row["env_efficiency_range"] == pytest.approx([88 / 100, 100 / 101])
    assert row["waiting"] == pytest.approx(0.06)
    cells = pool.table_rows([row])[0]
    assert "missed" in cells[7] and cells[8] == "6.0%"
    rows[2]["runs"] = [dict(r, steps_per_s=s) for r, s in zip(rows[2]["runs"], [98, 99, 100])]
    rows[2]["steps_per_s"] = 99
    (row,) = pool.efficiency_rows(dict(rows=rows))
    assert "met" in pool.table_rows([row])[0][7]


@pytest.mark.slow
def test_pool_efficiency_quick_run(tmp_path):
    """bench/pool.py --quick: the sync-efficiency table (OsimVectorEnv step ÷ limit)."""
    from bench import pool
    out, _ = run_cli(tmp_path, script=pool.__file__)
    # at 2 envs on 2 cores there is nothing to balance: that method says it skipped
    skipped = skipped_methods(out, "sync_efficiency")
    assert skipped == {"osim_sync_balanced"}
    result = check_outputs(out, [*pool.LIMITS, *(m for m in pool.METHODS if m not in skipped)],
                           name="sync_efficiency")
    row = next(r for r in result["efficiency"] if r["method"] == "osim_sync")
    assert row["num_envs"] == 2 and row["target"] is None
    assert row["efficiency"] == pytest.approx(row["steps_per_s"] / row["limit"])
    assert row["env_efficiency"] == pytest.approx(row["steps_per_s"] / row["env_limit"])
    assert row["efficiency_range"][0] <= row["efficiency"] <= row["efficiency_range"][1]
    assert 0 <= row["waiting"] < 1
    assert "÷ env limit (per-round range)" in (out / "sync_efficiency.md").read_text()


@pytest.mark.slow
def test_cli_quick_all_methods(tmp_path):
    out, _ = run_cli(tmp_path)
    # every default method (opt-in ones need --methods) but those the run says it skipped
    skipped = skipped_methods(out)
    # 2 envs on 2 cores: nothing to balance; SB3's subprocess env where it cannot run
    allowed = {"osim_sync_balanced"} | ({"sb3_subproc"} if benchmark.static_skip(
        "sb3_subproc", 2) else set())
    assert "osim_sync_balanced" in skipped and skipped <= allowed, skipped
    check_outputs(out, [m for m in benchmark.METHODS
                        if m not in benchmark.OPT_IN and m not in skipped])


def test_compare_needs_an_out_folder(tmp_path):
    """It never writes into a default folder (run from the repo root, that would
    overwrite the committed results)."""
    proc = subprocess.run([sys.executable, benchmark.__file__, "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--out is required" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_micro_benchmarks_run():
    """bench/test_micro.py (pytest-benchmark) runs, each benchmark once."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--benchmark-disable", str(root / "bench" / "test_micro.py")],
                       cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


def test_contact_split_probe_finds_the_running_reference_frames():
    """``bench/contact_split.py`` builds the one-force-per-foot model and finds where it
    differs from the built one: in running2d's stance (the dropped toe), and nowhere
    in walking2d."""
    import opensim

    from bench import contact_split
    from fastenv.envs.variants import variant_path
    from fastenv.references import load_reference
    from fastenv.sim import Simulation

    shared = contact_split.shared_force_model("muscle2d", {})
    model = opensim.Model(shared)
    names = [f.getName() for f in model.getForceSet()
             if f.getConcreteClassName() == "HuntCrossleyForce"]
    assert names == ["foot_r", "foot_l"]
    new, old = Simulation(str(variant_path("muscle2d"))), Simulation(shared)
    for name, differing in (("running2d", True), ("walking2d", False)):
        ref = load_reference(name)
        cols = [list(ref.coordinate_names).index(c) for c in new.coordinate_names]
        f_new, f_old = contact_split.differences(new, old, ref.q[:, cols], ref.qdot[:, cols])
        s = contact_split.summary(f_new, f_old)
        assert (s["differing"] > 0) == differing, (name, s)
        assert (f_new >= f_old - 1e-9).all()   # the split only restores dropped force


def test_worker_locality_pause_test_times_the_same_steps_both_ways(tmp_path):
    """bench/worker_locality.py's pause test runs alone (--tests), gives a wall and a CPU
    ratio per round and writes its JSON; a bad --tests name is refused."""
    from bench import worker_locality

    out = worker_locality.main(["--steps", "2", "--rounds", "2", "--tests", "pause",
                                "--pause-ms", "1", "--json", str(tmp_path / "w.json")])
    pause = out["pause"]
    assert set(pause["ms_per_step"]) == {"after_pause", "back_to_back"}
    assert len(pause["after_pause_over_back_to_back"]["rounds"]) == 2
    assert len(pause["cpu_after_pause_over_back_to_back"]["rounds"]) == 2
    assert all(v > 0 for v in pause["cpu_ms_per_step"]["after_pause"]["rounds"])
    assert json.loads((tmp_path / "w.json").read_text())["pause"]["pause_ms"] == 1.0
    assert "order" not in out and "crowd" not in out
    with pytest.raises(SystemExit):
        worker_locality.main(["--tests", "pauses"])


def test_worker_locality_share_test_steps_one_model_against_one_each():
    """The share test steps envs on one shared model and on a model each, the same
    steps both ways, and reports the per-round ratio."""
    from bench import worker_locality

    out = worker_locality.main(["--envs", "2", "--steps", "2", "--rounds", "2",
                                "--tests", "order,share", "--share-model"])
    share = out["share"]
    assert set(share["ms_per_step"]) == {"shared_model", "one_model_each"}
    assert len(share["shared_model_over_one_model_each"]["rounds"]) == 2
    assert out["command"].endswith("--share-model") and "order" in out


def test_model_sharing_pairs_the_same_trajectories(tmp_path):
    """bench/model_sharing.py runs both pools on the same seeded work (bitwise equal at
    the end of a synchronous run), reports both speeds, the per-block ratio and the
    workers' memory, writes its JSON and refuses a bad mode."""
    from bench import model_sharing

    out = model_sharing.main(["--envs", "2", "--steps", "4", "--block", "2",
                              "--json", str(tmp_path / "m.json")])
    sync, sendrecv = out["rows"]
    assert (sync["mode"], sendrecv["mode"]) == ("sync", "sendrecv")
    assert sync["bitwise_equal"] is True and sync["blocks"] == 2
    assert sync["steps_per_s_shared"] > 0 and sync["rss_mb_one_each"] > 0
    assert json.loads((tmp_path / "m.json").read_text())["rows"][1]["num_envs"] == 2
    with pytest.raises(SystemExit):
        model_sharing.main(["--modes", "async"])


def test_first_step_counts_every_integrator_of_a_step():
    """bench/first_step.py --count: the counter follows Simulation._new_manager (a step
    integrated again without the minimum step builds a second integrator; both count)
    and counts what the integrator did, whoever built it."""
    from bench import first_step

    env = ImitationEnv("MuscleWalkingImitation2D-v0", physics="fast")   # a minimum step
    try:
        steps_of = first_step.counting(env.sim)
        env.reset(seed=0)
        action = np.full(env.action_space.shape, 0.3, dtype=np.float32)
        n0 = steps_of()
        env.step(action)
        n1 = steps_of()
        assert n1 > n0
        first = env.sim._manager
        # what the retry does: the same step from its start on an integrator without
        # the minimum; the first integrator's steps stay counted
        start = env.sim.snapshot()
        env.sim._continue_from(env.sim._full_state(start), min_step_on=False)
        env.step(action)
        n2 = steps_of()
        assert env.sim._manager is not first and env.sim.min_step > 0
        assert n2 - n1 == env.sim._manager.getStateStorage().getSize() > 0
    finally:
        env.close()
    row = first_step.rollout("TorqueWalkingImitation2D-v0", {}, 1, 0, True)
    assert row["episodes"] == 1 and row["mean"] > 1 and row["first_mean"] > 1


def test_first_step_untrained_ppo_workload_is_what_training_sends():
    """bench/first_step.py's "untrained PPO policy" workload: a fresh policy of
    `fastenv train`'s PPO config, sampled and clipped as SB3 steps an env (mean near 0,
    so about half the excitations are 0), seeded."""
    from bench import first_step

    env = ImitationEnv("MuscleWalkingImitation2D-v0")
    try:
        obs, _ = env.reset(seed=0)
        acts = [first_step.untrained_ppo(env, 3)(obs) for _ in range(2)]
        np.testing.assert_array_equal(acts[0], acts[1])
        act = first_step.untrained_ppo(env, 0)
        a = np.array([act(obs) for _ in range(40)])
        assert a.shape == (40, *env.action_space.shape)
        assert a.min() >= 0 and a.max() <= 1
        assert 0.35 < (a == 0).mean() < 0.65
    finally:
        env.close()
    row = first_step.rollout("MuscleWalkingImitation2D-v0", {}, 1, 0, True, "untrained_ppo")
    assert row["episodes"] == 1 and row["first_mean"] > 1


def test_sync_paired_steps_the_pool_and_its_env_limit_on_the_same_work(tmp_path):
    """bench/sync_paired.py: the pool and the env limit's processes step the same envs
    through the same actions and resets (bitwise equal at the end, episode ends
    crossed), in alternating blocks; it reports both speeds and the per-block
    efficiency, writes its JSON and refuses a bad block."""
    from bench import sync_paired

    out = sync_paired.main(["--task", "TorqueWalkingImitation2D-v0", "--envs", "2",
                            "--steps", "160", "--block", "40",
                            "--json", str(tmp_path / "p.json")])
    (row,) = out["rows"]
    assert row["bitwise_equal"] is True and row["episode_ends"] >= 1
    assert row["blocks"] == 4 and row["workers"] == 2
    assert row["pool_steps_per_s"] > 0 and row["env_limit_steps_per_s"] > 0
    lo, hi = row["efficiency_block_range"]
    assert lo <= row["efficiency_block_median"] <= hi
    assert 0 <= row["workers_waiting"] < 1
    (run,) = json.loads((tmp_path / "p.json").read_text())["runs"]
    assert run["rows"][0]["num_envs"] == 2 and "--block 40" in run["command"]
    for bad in (["--block", "0"], ["--merge"], ["--task", "Walking-v0"]):
        with pytest.raises(SystemExit):
            sync_paired.main(bad)


def test_first_step_ratio_interval_resamples_whole_episodes():
    """bench/first_step.py's bootstrap interval of first step ÷ mean step: episodes that
    are all alike give the ratio itself; unlike ones an interval around the ratio."""
    from bench import first_step

    first = np.array([True, False, False, True, False, False])
    same = np.array([3.0, 1.0, 2.0, 3.0, 1.0, 2.0])
    assert first_step.ratio_interval(same, first, 0) == [1.5, 1.5]
    rng = np.random.default_rng(1)
    first = np.zeros(400, bool)
    first[::10] = True
    cost = rng.uniform(1, 2, 400) + 2 * first
    lo, hi = first_step.ratio_interval(cost, first, 0)
    ratio = cost[first].mean() / cost.mean()
    assert lo < ratio < hi and hi - lo < 0.5


def test_migration_replay_of_work_stealing():
    """bench/migration.py's replay: with one worker's envs ten times the other's, taking
    them over shortens the step when a move is cheap; with moves dearer than any gain
    nothing moves, and publishing alone costs its share."""
    from bench import migration

    costs = np.tile([10.0, 1.0, 10.0, 1.0, 10.0, 1.0], (5, 1))   # env i on worker i % 2
    cheap = migration.replay_stealing(costs, move_s=0.5, publish_s=0.0)
    assert cheap["pinned_efficiency"] == round(16.5 / 30, 3)
    assert cheap["stealing_efficiency"] > 0.8 and cheap["moves_per_step"] > 0
    dear = migration.replay_stealing(costs, move_s=100.0, publish_s=0.0)
    assert dear["moves_per_step"] == 0
    assert dear["stealing_efficiency"] == dear["pinned_efficiency"]
    taxed = migration.replay_stealing(costs, move_s=100.0, publish_s=1.0)
    assert taxed["stealing_efficiency"] == round(16.5 / 33, 3)


def test_migration_measures_a_move(tmp_path):
    """bench/migration.py: a moved env continues within integrator accuracy, and the
    move's and the publishing's costs are reported."""
    from bench import migration

    out = migration.main(["--task", "TorqueWalkingImitation2D-v0", "--moves", "3",
                          "--json", str(tmp_path / "m.json")])
    assert out["set_state_ms"] > 0 and out["publish_ms"] > 0 and out["state_bytes"] > 0
    assert out["largest_coordinate_difference"] < 1e-3
    assert json.loads((tmp_path / "m.json").read_text())["moves"] == 3
    with pytest.raises(SystemExit):
        migration.main(["--stealing", "1"])
