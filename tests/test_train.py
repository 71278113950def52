"""Training and evaluation: metrics on constructed cases, configs, and a short
end-to-end run per algorithm (train, checkpoint, resume, evaluate)."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import stop_training_with_sigterm

pytest.importorskip("stable_baselines3")

from fastenv import evaluate as ev  # noqa: E402
from fastenv.train import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["hip_flexion_r", "knee_angle_r", "ankle_angle_r"]


def constructed(offset_deg=0.0, steps=50, dt=0.01, speed=1.2):
    t = np.arange(1, steps + 1) * dt
    q_ref = np.column_stack([0.3 * np.sin(2 * np.pi * t), -0.5 * np.sin(np.pi * t) ** 2,
                             0.1 * np.cos(2 * np.pi * t)])
    com_ref = np.zeros((steps + 1, 3))
    com_ref[:, 0] = speed * np.arange(steps + 1) * dt
    com_ref[:, 1] = 0.95
    q = q_ref + np.radians(offset_deg)
    return dict(dt=dt, coordinate_names=NAMES, q=q, q_ref=q_ref, com=com_ref.copy(),
                com_ref=com_ref, fell=False, reward_terms={"total": np.ones(steps)})


def test_replaying_the_reference_gives_zero_error():
    m = ev.episode_metrics(**constructed())
    assert m["joint_rmse_deg"] == 0.0 and m["com_error_m"] == 0.0
    assert all(v == 0.0 for v in m["joint_rmse_deg_per_coordinate"].values())
    assert m["speed_m_s"] == pytest.approx(m["reference_speed_m_s"]) == pytest.approx(1.2)
    assert m["time_alive_s"] == pytest.approx(0.5) and m["distance_m"] == pytest.approx(0.6)


def test_a_constant_offset_gives_that_offset():
    m = ev.episode_metrics(**constructed(offset_deg=4.0))
    assert m["joint_rmse_deg"] == pytest.approx(4.0)
    for v in m["joint_rmse_deg_per_coordinate"].values():
        assert v == pytest.approx(4.0)
    case = constructed()
    case["com"] = case["com"] + np.array([0.0, -0.03, 0.04])
    m = ev.episode_metrics(**case)
    assert m["com_error_m"] == pytest.approx(0.05)
    assert ev.episode_metrics(**case, axes=2)["com_error_m"] == pytest.approx(0.03)


def test_cost_of_transport_and_torque_rms():
    m = ev.episode_metrics(**constructed(), metabolic_power=np.full(50, 300.0),
                           body_weight=700.0)
    # 300 W for 0.5 s over 0.6 m at 700 N: 150 J / 420 J
    assert m["metabolic_energy_J"] == pytest.approx(150.0)
    assert m["cost_of_transport"] == pytest.approx(150.0 / 420.0)
    # backwards: no cost of transport (not inf, which is not JSON); the mean over
    # episodes is all the energy over all the forward distance
    case = constructed()
    case["com"] = case["com"][::-1].copy()
    back = ev.episode_metrics(**case, metabolic_power=np.full(50, 300.0), body_weight=700.0)
    assert back["distance_m"] == pytest.approx(-0.6) and back["cost_of_transport"] is None
    both = ev.summarize([m, back, m])
    assert both["cost_of_transport"] == pytest.approx(450.0 / (700.0 * 0.6))
    assert ev.summarize([back])["cost_of_transport"] is None
    m = ev.episode_metrics(**constructed(), torque_rms=np.r_[np.full(25, 0.3), np.full(25, 0.4)])
    assert m["torque_rms"] == pytest.approx(math.sqrt((0.09 + 0.16) / 2))
    with pytest.raises(ValueError, match="must both be"):
        ev.episode_metrics(**{**constructed(), "q": np.zeros((3, 2))})


def test_reference_fore_aft_force_is_what_its_centre_of_mass_implies():
    """The fore-aft reference of ``--plot-grf``: mass × the centre of mass's forward
    acceleration. Over a loop of steady running it averages to zero and stays within
    running's ±0.5 body weights (the contact model's friction at the reference's pose
    and speeds reached ±0.9: the feet slip as much as Moco's smooth contacts need)."""
    from fastenv.env import ImitationEnv
    env = ImitationEnv("TorqueRunningImitation2D-v0", mode="test")
    try:
        ref, n = env.reference, env.reference.n_frames
        force = ev.reference_fore_aft(env, range(n)) / env.sim.body_weight
        k = 10
        expected = env.sim.body_mass * (ref.com_vel[k + 1, 0] - ref.com_vel[k - 1, 0]) / (
            2 * ref.control_dt)
        assert force[k] * env.sim.body_weight == pytest.approx(expected)
        assert abs(force.mean()) < 0.01 and 0.2 < np.abs(force).max() < 0.5
    finally:
        env.close()


def test_reference_loads_of_a_mirror_reference_are_the_same_on_the_way_back():
    """A jump is played up and back down: the way back is the forward motion reversed,
    so its loads repeat the forward ones in reverse order. Evaluated at the reversed
    speeds, the contact damping turned round and gave 7.1 body weights for 3.1."""
    from fastenv.env import ImitationEnv
    env = ImitationEnv("TorqueJumpingImitation2D-v0", mode="test")
    try:
        n = env.reference.n_frames
        loads = ev.reference_grf(env, range(2 * n - 2))
        assert np.allclose(loads[1:n - 1], loads[2 * n - 3:n - 1:-1])
        vertical = loads[:, :, 1].sum(axis=1) / env.sim.body_weight
        assert 2.5 < vertical.max() < 3.5
    finally:
        env.close()


def test_config_merge_rejects_typos(tmp_path):
    cfg = load_config("ppo")
    assert cfg["algo"]["n_steps"] > 0 and cfg["env"]["num_envs"] >= 1
    user = tmp_path / "c.toml"
    user.write_text("[env]\nnum_envs = 3\n[algo]\nn_epochs = 2\n")
    cfg = load_config("ppo", user)
    assert cfg["env"]["num_envs"] == 3 and cfg["algo"]["n_epochs"] == 2
    user.write_text("[env]\nnum_env = 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_env'\] in \[env\]"):
        load_config("ppo", user)
    with pytest.raises(ValueError, match="unknown algorithm 'ddpg'"):
        load_config("ddpg")
    # a file that is not a table of tables, or does not parse, is named in one line
    for name, text, expected in [
            ("c.json", "[1, 2]", r"c.json' holds a list; expected a table of sections"),
            ("c.toml", "algo = 3\n", r"\[algo\] is 3 \(int\); expected a table of algo"),
            ("c.toml", "[env\n", r"--config '.*c.toml' does not parse: "),
            ("c.json", "{", r"--config '.*c.json' does not parse: "),
            ("c.yaml", "env: {}\n", r"expected a .toml or .json file")]:
        user = tmp_path / name
        user.write_text(text)
        with pytest.raises(ValueError, match=expected):
            load_config("ppo", user)


def test_a_runs_model_and_reference_files_are_saved_absolute(tmp_path, monkeypatch):
    """--option model=my.osim and reference=walk.mot given relative to the working
    directory are saved as absolute paths, so that the run evaluates from anywhere."""
    import shutil

    from fastenv.envs.variants import variant_path
    from fastenv.train import config_env_options
    monkeypatch.chdir(tmp_path)
    shutil.copy(variant_path("torque2d"), tmp_path / "my.osim")
    options = config_env_options("TorqueWalkingImitation2D-v0", load_config("ppo"),
                                 {"model": "my.osim", "reference": "walking2d"})
    assert options["model"] == str(tmp_path / "my.osim")
    assert options["reference"] == "walking2d"   # a shipped reference's name stays one


def test_the_muscle_reflex_preset_is_the_recipe_of_the_learned_muscle_runs(tmp_path):
    """``--config muscle_reflex`` (packaged, so it works from a wheel) holds the options
    the learned muscle runs were trained with; on a torque task, or misspelt, it is one
    line, before any run folder."""
    from fastenv.__main__ import main
    from fastenv.train import config_env_options
    cfg = load_config("ppo", "muscle_reflex")
    run = json.loads((ROOT / "baselines" / "runs" / "muscle_run2d_ppo_reflex_long"
                      / "config.json").read_text())
    assert config_env_options(run["task"], cfg, {}) == run["env_options"]
    assert cfg["run"]["eval_seconds"] == run["config"]["run"]["eval_seconds"] == 10.0
    out = tmp_path / "run"
    assert main(["train", "TorqueWalkingImitation2D-v0", "--config", "muscle_reflex",
                 "--out", str(out), "--steps", "10"]) == 2
    with pytest.raises(ValueError, match=r"'muscle_refex': no such file, and not a packaged "
                                         r"preset \(presets: \['muscle_reflex'\]\)"):
        load_config("ppo", "muscle_refex")
    assert not out.exists()


def test_a_run_refused_for_its_options_leaves_no_folder(tmp_path):
    """Bad options are refused before the run folder is written: a folder with a
    config.json would make the corrected command fail with 'already holds a run'."""
    from fastenv.__main__ import main
    out = tmp_path / "run"
    for task, option in (("TorqueWalkingImitation2D-v0", "kp=abc"),
                         ("MuscleWalkingImitation2D-v0", "kp=3")):
        assert main(["train", task, "--steps", "10", "--out", str(out),
                     "--option", option]) == 2
        assert not out.exists()


@pytest.mark.parametrize("config, args, expected", [
    ("[algo]\nlearning_rat = 1\n", [], r"\[algo\] \['learning_rat'\]: not arguments of SAC"),
    ("[algo]\nbatch_size = \"big\"\n", [], r"batch_size = 'big': expected a whole number"),
    ("[policy]\nnet_arch = \"wide\"\n", [], r"net_arch = 'wide': expected a list"),
    ("[policy]\nnet_arch = [[16]]\n", [], "sac does not accept the config's"),
    ("[run]\ncheckpoint_every = 0\n", [], r"\[run\] checkpoint_every = 0: expected a whole"),
    ("[run]\neval_seconds = -1\n", [], r"\[run\] eval_seconds = -1"),
    ("", ["--seed", str(2**32)], r"whole number in \[0, 2\*\*32\)"),
    ("", ["--address", "1.2.3.4:9"], "--address: options of --backend rllib"),
])
def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, capsys, config, args, expected):
    """A config SB3 would refuse (or fail on once training began), a seed out of range
    or an option of the other backend is one line, before a run folder exists: a folder
    with a config.json and no checkpoint could be neither reused nor resumed."""
    from fastenv.__main__ import main
    out, user = tmp_path / "run", tmp_path / "c.toml"
    user.write_text(config)
    try:   # argparse's own refusals exit
        code = main(["train", "TorqueWalkingImitation2D-v0", "--steps", "10", "--out",
                     str(out), "--config", str(user), "--num-envs", "1", *args])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(expected, err) and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_resume_refuses_what_it_would_ignore(tmp_path, capsys):
    """--resume continues with the saved algorithm, seed, config and envs: giving
    others is refused instead of dropped, as is a run already at --steps; evaluating a
    run without a checkpoint says so."""
    from fastenv.__main__ import main
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(dict(
        task="TorqueWalkingImitation2D-v0", algo="ppo", seed=0, num_envs=1, env_options={},
        config=load_config("ppo"))))
    assert main(["evaluate", str(run)]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    for args in (["--seed", "7"], ["--algo", "ppo"], ["--num-envs", "4"],
                 ["--config", "x.toml"], ["--num-env-runners", "3"]):
        assert main(["train", "--resume", "--out", str(run), *args]) == 2
        assert f"leave {args[0]} out" in capsys.readouterr().err
    latest = run / "checkpoints" / "latest"
    latest.mkdir(parents=True)
    (latest / "state.json").write_text(json.dumps(dict(env_steps=1000, wall_s=1.0,
                                                       episodes=3)))
    assert main(["train", "--resume", "--out", str(run), "--steps", "500"]) == 2
    assert "already at 1000 env steps" in capsys.readouterr().err


def test_training_configs_give_each_task_the_options_it_reads():
    """The packaged [task] tables hold options for every task; a muscle task leaves the
    torque ones out, and a saved run that kept them (before they were refused) loads."""
    from fastenv.train import config_env_options, read_run_config
    cfg = load_config("ppo")
    muscle = config_env_options("MuscleWalkingImitation2D-v0", cfg, {"excitations": "reflex"})
    assert "pd_targets" not in muscle and muscle["excitations"] == "reflex"
    torque = config_env_options("TorqueWalkingImitation2D-v0", cfg, {})
    assert torque["pd_targets"] == "residual"
    with pytest.raises(ValueError, match="kp=3: applies to torque tasks"):
        config_env_options("MuscleWalkingImitation2D-v0", cfg, {"kp": 3})
    # the caller's switch turns the config's dependent option off with it ...
    assert "residual_range" not in config_env_options("TorqueWalkingImitation2D-v0", cfg,
                                                      {"pd_targets": "range"})
    # ... but what the caller sets is checked, not dropped
    with pytest.raises(ValueError, match="residual_range=0.3: applies with "
                                         "pd_targets='residual', not 'range'"):
        config_env_options("TorqueWalkingImitation2D-v0", cfg,
                           {"pd_targets": "range", "residual_range": 0.3})
    frontal = dict(cfg, task=dict(cfg["task"], excitations="reflex",
                                  reflex_gains=[2.5, 1, 1.5, 0.3, 2.0, 1]))
    assert config_env_options("MuscleWalkingImitation2D-v0", frontal, {})["reflex_gains"] == [
        2.5, 1, 1.5, 0.3]
    assert len(config_env_options("MuscleWalkingImitation3D-v0", frontal, {})[
        "reflex_gains"]) == 6
    saved = read_run_config(ROOT / "baselines" / "runs" / "muscle2d_ppo_reflex")
    assert "pd_targets" not in saved["env_options"]
    assert saved["env_options"]["excitations"] == "reflex"


TINY = {
    "sac": "[algo]\nlearning_starts = 100\nbuffer_size = 2000\nbatch_size = 32\n"
           "[policy]\nnet_arch = [16, 16]\n[run]\ncheckpoint_every = 200\nlog_every = 100\n"
           "eval_seconds = 0.3\n",
    "ppo": "[algo]\nn_steps = 64\nbatch_size = 64\nn_epochs = 1\n"
           "[policy]\nnet_arch = [16, 16]\n[run]\ncheckpoint_every = 256\nlog_every = 128\n"
           "eval_seconds = 0.3\n",
}


def cli(*args):
    """``fastenv ARGS`` in this process (the interpreter and torch are loaded once)."""
    from fastenv.__main__ import main
    assert main([*args, *(["--no-progress"] if args[0] == "train" else [])]) == 0


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_train_resume_evaluate_end_to_end(algo, tmp_path):
    config = tmp_path / f"{algo}.toml"
    config.write_text(TINY[algo])
    run = tmp_path / "run"
    task = "TorqueWalkingImitation2D-v0"
    cli("train", task, "--algo", algo, "--steps", "256", "--num-envs", "2", "--num-workers",
        "2", "--out", str(run), "--config", str(config), "--option", "reward=original",
        "--option", "episode_seconds=0.5")    # the residual PD rarely falls: end episodes
    saved = json.loads((run / "config.json").read_text())
    # the config's [task] options, with --option over them
    assert saved["env_options"] == {"reward": "original", "pd_targets": "residual",
                                    "residual_range": 0.2, "observe_previous_actions": True,
                                    "episode_seconds": 0.5}
    state = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state["env_steps"] >= 256 and state["episodes"] >= 1
    assert (run / "checkpoints" / f"{256 if algo == 'ppo' else 200:09d}" / "model.zip").is_file()
    cli("train", "--resume", "--steps", "512", "--out", str(run))
    state2 = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state2["env_steps"] >= 512 and state2["wall_s"] > state["wall_s"]
    rows = (run / "progress.csv").read_text().splitlines()
    assert rows[0].startswith("env_steps,wall_s") and len(rows) >= 4
    assert list(run.joinpath("tb").iterdir())
    evaluations = (run / "evaluations.csv").read_text().splitlines()
    assert evaluations[0].startswith("env_steps,wall_s,episodes,time_alive_s")
    assert len(evaluations) >= 3   # a checkpoint before and after the resume
    assert all(math.isfinite(float(x)) for row in evaluations[1:] for x in row.split(","))
    # each policy evaluated once, the final one included; counts written as integers
    steps_column = [row.split(",")[0] for row in evaluations[1:]]
    assert steps_column[-1] == str(state2["env_steps"])
    assert len(set(steps_column)) == len(steps_column)
    assert all(row.split(",")[2].isdigit() for row in evaluations[1:])

    out = tmp_path / "eval.json"
    cli("evaluate", str(run), "--episodes", "2", "--seconds", "0.3", "--json", str(out),
        "--plot", str(tmp_path / "angles.png"), "--export", str(tmp_path / "rollout.mot"),
        "--curves", str(tmp_path / "curves.png"), "--plot-grf", str(tmp_path / "grf.png"))
    cli("render", "--policy", str(run), "--seconds", "0.2", "--out", str(tmp_path / "run.gif"),
        "--width", "160", "--height", "120", "--no-progress")
    result = json.loads(out.read_text())
    assert result["task"] == task and len(result["episodes"]) == 2
    keys = {"time_alive_s", "distance_m", "speed_m_s", "reference_speed_m_s",
            "joint_rmse_deg", "joint_rmse_deg_per_coordinate", "com_error_m", "torque_rms",
            "reward_terms", "fell"}
    for episode in (*result["episodes"], result["mean"]):
        assert keys <= set(episode)
        flat = [v for k, v in episode.items() if isinstance(v, (int, float))]
        flat += list(episode["joint_rmse_deg_per_coordinate"].values())
        flat += list(episode["reward_terms"].values())
        assert all(math.isfinite(v) for v in flat)
    assert (tmp_path / "angles.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "grf.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "run.gif").read_bytes()[:3] == b"GIF"
    assert keys <= set(result["random_policy"])   # the same episodes, random actions
    assert keys <= set(result["reference_as_target"])   # residual targets: a zero action
    # the curves' baselines run the checkpoints' own test episodes (their length): a
    # random policy over --seconds against 5-s checkpoint episodes misled on distance
    curves = ev.checkpoint_baselines(run)
    assert curves["seconds"] == 0.3 and curves["random"]["time_alive_s"] <= 0.3 + 1e-9
    assert keys <= set(curves["zero"])
    from fastenv.references import read_motion
    time, columns, in_degrees = read_motion(tmp_path / "rollout.mot")
    assert in_degrees and "knee_angle_r" in columns and time[0] == 0.0


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path, capsys):
    """--init-from: the new run has the source's task, algorithm, network and options
    with the given ones over them, starts from its weights and observation statistics
    (with learning_rate 0 its policy stays the source's exactly; its own seed would
    have drawn other initial weights), and records where it came from; what cannot
    carry over is one line, leaving no folder."""
    import pickle

    import torch
    from stable_baselines3.common.save_util import load_from_zip_file

    from fastenv.__main__ import main
    config = tmp_path / "ppo.toml"
    config.write_text(TINY["ppo"])
    source = tmp_path / "source"
    cli("train", "TorqueWalkingImitation2D-v0", "--algo", "ppo", "--steps", "128",
        "--num-envs", "2", "--num-workers", "1", "--out", str(source), "--config",
        str(config), "--option", "episode_seconds=0.5")
    frozen = tmp_path / "frozen.toml"
    frozen.write_text("[algo]\nlearning_rate = 0.0\n")
    run = tmp_path / "run"
    cli("train", "--init-from", str(source), "--steps", "128", "--seed", "1",
        "--num-workers", "1", "--out", str(run), "--config", str(frozen),
        "--option", "apply_perturbations=true")
    saved, new = (json.loads((d / "config.json").read_text()) for d in (source, run))
    assert (new["task"], new["algo"], new["num_envs"]) == ("TorqueWalkingImitation2D-v0",
                                                          "ppo", 2)
    assert new["env_options"] == {**saved["env_options"], "apply_perturbations": True}
    assert new["config"]["policy"] == saved["config"]["policy"]
    assert new["config"]["algo"] == {**saved["config"]["algo"], "learning_rate": 0.0}
    source_state = json.loads((source / "checkpoints/latest/state.json").read_text())
    assert new["init_from"] == {"run": str(source.resolve()), "checkpoint": "latest",
                                "env_steps": 128, "wall_s": source_state["wall_s"]}
    latest = [d / "checkpoints" / "latest" for d in (source, run)]
    (_, before, _), (_, after, _) = (load_from_zip_file(d / "model.zip") for d in latest)
    assert before["policy"].keys() == after["policy"].keys()
    for key, value in before["policy"].items():
        assert torch.equal(value, after["policy"][key]), key
    stats = []
    for d in latest:
        with open(d / "vecnormalize.pkl", "rb") as f:
            stats.append(pickle.load(f).obs_rms)
    assert stats[1].count > stats[0].count + 128   # the source's statistics, updated on
    assert json.loads((latest[1] / "state.json").read_text())["env_steps"] == 128

    capsys.readouterr()
    for args, expected in [
        (["--resume"], "--init-from starts a new run; --resume continues"),
        (["--algo", "sac"], "its policy is ppo's; got --algo sac"),
        (["TorqueWalkingImitation3D-v0"], "observation_space has shape"),
        (["--config", str(tmp_path / "wide.toml")], "[policy] {'net_arch': [32, 32]"),
        (["--backend", "jax"], "a sb3 run; this run trains with --backend jax"),
        (["--init-checkpoint", "64"], "no checkpoint at 64 env steps; saved: [128]"),
    ]:
        (tmp_path / "wide.toml").write_text("[policy]\nnet_arch = [32, 32]\n")
        out = tmp_path / "refused"
        task = [a for a in args if a.endswith("-v0")]
        flags = [a for a in args if not a.endswith("-v0")]
        assert main(["train", *task, "--init-from", str(source), "--steps", "64",
                     "--out", str(out), "--no-progress", *flags]) == 2, args
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_a_resumed_run_is_the_same_wherever_it_is_resumed(tmp_path):
    """--resume at M env steps goes on with seed + M (torch and the envs' next resets):
    two copies of a run resumed at the same point train alike, step for step."""
    import shutil
    config = tmp_path / "ppo.toml"
    config.write_text(TINY["ppo"])
    run = tmp_path / "run"
    cli("train", "TorqueWalkingImitation2D-v0", "--algo", "ppo", "--steps", "256",
        "--num-envs", "2", "--num-workers", "1", "--out", str(run), "--config", str(config),
        "--option", "episode_seconds=0.3")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    figures = []
    for folder in (run, copy):
        cli("train", "--resume", "--steps", "512", "--out", str(folder))
        progress = [r.split(",") for r in (folder / "progress.csv").read_text().splitlines()]
        evaluations = [r.split(",") for r in
                       (folder / "evaluations.csv").read_text().splitlines()]
        # everything but wall time and steps/s, from the rows after the resume
        figures.append(([[r[0], *r[3:]] for r in progress[1:] if int(r[0]) > 256],
                        [[r[0], *r[2:]] for r in evaluations[1:] if int(r[0]) > 256]))
    assert figures[0][0] and figures[0][1]
    assert figures[0] == figures[1]


def test_a_swallowed_stop_is_raised_again_by_the_training_loop():
    """SIGTERM's KeyboardInterrupt can be raised where it is swallowed (a garbage-collection
    callback's "Exception ignored in"); the stop stays recorded, and the loops' check
    raises it again, while further SIGTERMs stay ignored."""
    import signal

    from fastenv import train as tr
    previous = tr._catch_stop()
    try:
        tr._stop_if_requested()   # no stop yet: nothing raised
        try:
            tr._interrupt(signal.SIGTERM, None)
        except KeyboardInterrupt:
            pass   # swallowed where it was raised
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            tr._stop_if_requested()
        tr._catch_stop()   # the next run starts with no stop recorded
        tr._stop_if_requested()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_swallowed_stop_is_not_reported_as_an_ignored_exception(monkeypatch):
    """A real SIGTERM arriving inside a ``__del__`` (as in JAX's garbage-collection
    callback) is swallowed there; its "Exception ignored in" report is dropped (the stop
    is recorded and raised again by the loop), while any other unraisable exception
    still reaches the hook that was installed before."""
    import os
    import signal

    from fastenv import train as tr
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)

    class StoppedWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):   # the handler runs at the next bytecode boundaries
                pass

    class FailsWhileCollected:
        def __del__(self):
            raise ValueError("not a stop")

    previous = tr._catch_stop()
    try:
        StoppedWhileCollected()   # collected at once: SIGTERM is handled inside __del__
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            tr._stop_if_requested()
        assert reported == []
        FailsWhileCollected()
        assert [type(r.exc_value) for r in reported] == [ValueError]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_saves_a_checkpoint_to_resume_from(tmp_path):
    """A scheduler's SIGTERM (or `kill`) stops training like Ctrl-C: a checkpoint is
    written first, so --resume loses nothing."""
    import subprocess
    import sys

    config = tmp_path / "ppo.toml"
    config.write_text(TINY["ppo"].replace("checkpoint_every = 256", "checkpoint_every = 100000"))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "fastenv", "train",
                             "TorqueWalkingImitation2D-v0", "--algo", "ppo", "--steps", "100000",
                             "--num-envs", "2", "--num-workers", "1", "--out", str(run),
                             "--config", str(config), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # with a scheduler's repeated stop (or `pkill` run twice) while the last checkpoint
    # is written: held off until it is complete
    err = stop_training_with_sigterm(proc, run)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    state = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state["env_steps"] >= 128
    # the last checkpoint is the last logged step, and every checkpoint folder is whole
    last_row = (run / "progress.csv").read_text().splitlines()[-1].split(",")
    assert state["env_steps"] == int(last_row[0])
    folders = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert folders == [f"{state['env_steps']:09d}", "latest"], folders
    for name in folders:
        assert {"model.zip", "vecnormalize.pkl"} <= {
            p.name for p in (run / "checkpoints" / name).iterdir()}


def test_ppo_with_pipelined_rollouts_trains_and_resumes(tmp_path):
    """[run] pipelined_rollouts = true: PPO collects through fastenv.collect (the policy
    on half of the envs while the others step), checkpoints and resumes like plain PPO."""
    from fastenv.adapters.sb3_ppo import PipelinedPPO
    config = tmp_path / "ppo.toml"
    config.write_text(TINY["ppo"] + "pipelined_rollouts = true\n")
    run = tmp_path / "run"
    cli("train", "TorqueWalkingImitation2D-v0", "--algo", "ppo", "--steps", "256",
        "--num-envs", "4", "--num-workers", "2", "--out", str(run), "--config", str(config),
        "--option", "episode_seconds=0.3")
    assert json.loads((run / "config.json").read_text())["config"]["run"]["pipelined_rollouts"]
    state = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state["env_steps"] >= 256 and state["episodes"] >= 4
    cli("train", "--resume", "--steps", "512", "--out", str(run))
    assert json.loads((run / "checkpoints" / "latest" / "state.json").read_text())[
        "env_steps"] >= 512
    model = PipelinedPPO.load(run / "checkpoints" / "latest" / "model.zip", device="cpu")
    assert model.n_steps == 64


def test_a_run_on_a_relative_motion_file_is_evaluated_from_elsewhere(tmp_path, monkeypatch):
    """--option reference=<relative .sto>: the run saves the file's absolute path, so
    evaluate works from another working directory."""
    from fastenv.references import REFERENCE_DIR, read_motion, write_motion
    time, columns, _ = read_motion(REFERENCE_DIR / "walking2d_coordinates.sto")
    work = tmp_path / "work"
    work.mkdir()
    write_motion(work / "walk.sto", time,
                 {c: v for c, v in columns.items() if not c.endswith("_speed")},
                 in_degrees=False)
    config = tmp_path / "ppo.toml"
    config.write_text(TINY["ppo"])
    monkeypatch.chdir(work)
    cli("train", "TorqueWalkingImitation2D-v0", "--algo", "ppo", "--steps", "64",
        "--num-envs", "2", "--num-workers", "1", "--out", "run", "--config", str(config),
        "--option", "reference=walk.sto", "--option", 'reference_options={"cycle": "auto"}')
    saved = json.loads((work / "run" / "config.json").read_text())
    assert saved["env_options"]["reference"] == str(work / "walk.sto")
    assert saved["env_options"]["reference_options"] == {"cycle": "auto"}
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval.json"
    cli("evaluate", str(work / "run"), "--episodes", "1", "--seconds", "0.2", "--json", str(out))
    assert json.loads(out.read_text())["task"] == "TorqueWalkingImitation2D-v0"


@pytest.mark.parametrize("damage, expected", [
    ("model.zip", r"checkpoint .*latest is incomplete: model.zip is missing"),
    ("vecnormalize.pkl", r"cannot read .*vecnormalize.pkl, the observation statistics"),
    ("config.json", r"run/config.json is not a run's config \(not JSON"),
    ("config.json:[]", r"run/config.json is not a run's config: it lacks \['task'"),
    ("config.json:{}", r"run/config.json is not a run's config: it lacks"),
    ('config.json:{"task": "TorqueWalkingImitation2D-v0", "algo": "ppo", "env_options": 3}',
     r"is not a run's config: its env_options is not a table"),
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, capsys, damage, expected):
    """A checkpoint without its model had SB3 name model.zip.zip; a damaged
    observation-statistics pickle was a traceback with exit code 1, a damaged
    config.json a JSON error that did not name the file."""
    import shutil

    from fastenv.__main__ import main
    committed = ROOT / "baselines" / "runs" / "torque2d_ppo"
    run = tmp_path / "run"
    shutil.copytree(committed / "checkpoints" / "latest", run / "checkpoints" / "latest")
    shutil.copy(committed / "config.json", run)
    damage, _, content = damage.partition(":")   # config.json:TEXT: valid JSON, not a run's
    broken = (run if damage == "config.json" else run / "checkpoints" / "latest") / damage
    if damage == "model.zip":
        broken.unlink()
    else:
        broken.write_bytes(content.encode() or b"not a pickle")
    assert main(["evaluate", str(run), "--episodes", "1", "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err) and len(err.strip().splitlines()) == 1, err


def test_evaluate_a_chosen_checkpoint_under_other_conditions(tmp_path, capsys):
    """evaluate --checkpoint STEPS and --option KEY=VALUE over the run's options: the
    policy tested under other physics or with pushes, recorded in the JSON; options that
    change what its observations or actions mean are refused, as is a model whose
    coordinates give other shapes."""
    import shutil

    from fastenv.__main__ import main
    from fastenv.envs.variants import variant_path
    committed = ROOT / "baselines" / "runs" / "torque2d_ppo"
    run = tmp_path / "run"
    shutil.copytree(committed / "checkpoints" / "latest", run / "checkpoints" / "000100000")
    shutil.copytree(committed / "checkpoints" / "latest", run / "checkpoints" / "latest")
    shutil.copy(committed / "config.json", run)
    out = tmp_path / "e.json"
    assert main(["evaluate", str(run), "--episodes", "1", "--seconds", "0.3", "--checkpoint",
                 "100000", "--option", "physics=accurate", "--option",
                 "apply_perturbations=true", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"] == 100000
    assert result["options"] == {"physics": "accurate", "apply_perturbations": True}
    assert "checkpoint 100000, physics=accurate" in capsys.readouterr().out
    for args, expected in [
            (["--checkpoint", "5000"], r"no checkpoint at 5000 env steps; saved: \[100000\]"),
            (["--option", "pd_targets=range"], r"option 'pd_targets' is fixed by the run"),
            (["--option", "episode_seconds=3"], r"option 'episode_seconds' is fixed"),
            (["--option", f"model={variant_path('torque2d_lockedknee')}"],
             r"observation_space has shape \(108,\); the policy was trained on \(126,\)")]:
        assert main(["evaluate", str(run), "--episodes", "1", "--seconds", "0.1", *args]) == 2
        err = capsys.readouterr().err
        assert re.search(expected, err) and len(err.strip().splitlines()) == 1, err
