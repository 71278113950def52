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
    """float64 observations so that the comparison is not limited by float32."""
    return (ImitationEnv(TASK, obs_dtype="float64", **kw),
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
    fast.reset(options={"start_frame": 17})
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
    fast.reset(options={"start_frame": 5})
    copy_state(fast, seed)
    for a in actions(5, seed=2):
        o1, r1, *_ = fast.step(a)
        o2, r2, *_ = seed.step(a)
        rel = np.abs(o2 - o1) / np.maximum(1.0, np.abs(o1))
        assert rel.max() < 1e-4, fast.observation_names[int(rel.argmax())]
        assert r2 == pytest.approx(r1, abs=1e-5)


def test_seed_style_env_api_and_episode(pair):
    from gymnasium.utils.env_checker import check_env
    fast, _ = pair
    env = SeedStyleEnv(TASK)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert info["frame"] == fast.reset(seed=3)[1]["frame"]   # same seed, same start
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    # no excitation: the model collapses and the episode ends (k: the steps it took)
    for k in range(100):  # noqa: B007
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
    assert ep.ends == 2
    same = benchmark.Episodes(2, next_step=False)
    assert same.count(slice(None), [True, False], [False, False]) == 2


def test_process_tree_and_memory():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = benchmark.process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        rss, pss = benchmark.pool_helpers().tree_memory_mb(tree)
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


def test_over_budget_points_are_skipped_and_reported(tmp_path):
    """A budget nothing fits in: every point is skipped with its reason, outputs written."""
    args = benchmark.parse_args(["--quick", "--budget", "0.01", "--out", str(tmp_path)])
    result = benchmark.run(args)
    assert result["rows"] == []
    assert len(result["skipped"]) == len(benchmark.plan_points(args.envs, args.methods, 2))
    assert all("budget" in s["reason"] or "num_envs" in s["reason"]
               or "installed" in s["reason"] for s in result["skipped"])
    paths = benchmark.write_outputs(result, tmp_path)
    assert "Skipped points" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_cli(tmp_path, *extra):
    out = tmp_path / "results"
    cmd = [sys.executable, benchmark.__file__, "--quick", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def check_outputs(out, methods):
    result = json.loads((out / "compare.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == set(methods), result["skipped"]
    for r in rows.values():
        assert r["steps_per_s"] > 0 and r["rss_mb"] >= r["pss_mb"] > 0
        if r["method"] != "physical_limit":
            assert r["steps"] > 0 and r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["ratio_limit"] == pytest.approx(
            r["steps_per_s"] / rows["physical_limit"]["steps_per_s"])
    md = (out / "compare.md").read_text()
    assert "| method | num_envs | steps/s |" in md
    for m in methods:
        assert benchmark.METHODS[m][0] in md
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result


def test_cli_tiny_run_end_to_end(tmp_path):
    """bench/compare.py with one point of each kind of method (single loops, a
    Gymnasium vector env, OsimVectorEnv async) and the physical limit."""
    methods = ["physical_limit", "fastenv_single", "seed_style", "gym_async_next",
               "osim_async"]
    out, proc = run_cli(tmp_path, "--seconds", "0.3", "--budget", "150",
                        "--methods", ",".join(methods))
    result = check_outputs(out, methods)
    assert result["meta"]["envs"] == [2] and result["meta"]["workers"] >= 1
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["osim_async"]["ratio_async"] == pytest.approx(
        rows["osim_async"]["steps_per_s"] / rows["gym_async_next"]["steps_per_s"])
    assert rows["seed_style"]["ratio_async"] is None   # no num_envs=1 AsyncVectorEnv point
    assert "wrote" in proc.stdout


@pytest.mark.slow
def test_cli_quick_all_methods(tmp_path):
    methods = [m for m in benchmark.METHODS
               if not (m == "sb3_subproc" and benchmark.static_skip(m, 2))]
    out, _ = run_cli(tmp_path, "--seconds", "0.5", "--budget", "300")
    check_outputs(out, methods)


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
