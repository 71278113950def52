"""The JAX SAC (``fastenv train --backend jax``): its pieces against SB3's, that it
learns, and a short run end to end (train, checkpoint, resume, evaluate)."""
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("stable_baselines3")

from fastenv.adapters import jax_sac  # noqa: E402

TASK = "TorqueWalkingImitation2D-v0"
TINY = ("[algo]\nlearning_starts = 64\nbuffer_size = 2000\nbatch_size = 32\n"
        "[policy]\nnet_arch = [16, 16]\n[run]\ncheckpoint_every = 128\nlog_every = 64\n"
        "eval_episodes = 1\neval_seconds = 0.3\n")


def cli(*args):
    from fastenv.__main__ import main
    return main([*args, *(["--no-progress"] if args[0] == "train" else [])])


def test_log_probabilities_are_sb3s_squashed_gaussian():
    import jax
    import jax.numpy as jnp
    import torch
    from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
    sac = jax_sac.SAC(5, 3, {}, {"net_arch": [8]}, seed=0)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.float32)
    actions, log_prob = sac._sample(sac.train_state["params"]["actor"], obs, jax.random.PRNGKey(3))
    mu, log_std = sac._actor(sac.train_state["params"]["actor"], obs)
    dist = SquashedDiagGaussianDistribution(3).proba_distribution(
        torch.from_numpy(np.array(mu)), torch.from_numpy(np.array(log_std)))
    expected = dist.log_prob(torch.from_numpy(np.asarray(actions)),
                             torch.from_numpy(np.arctanh(np.asarray(actions, np.float64))
                                              .astype(np.float32)))
    assert np.allclose(np.asarray(log_prob), expected.numpy(), atol=1e-3)


def test_observation_statistics_are_sb3s_running_mean_std():
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    rng = np.random.default_rng(1)
    ours, sb3 = jax_sac.ObservationStatistics(4), RunningMeanStd(shape=(4,))
    for _ in range(5):
        batch = rng.normal(3.0, 2.0, (7, 4))
        ours.update(batch)
        sb3.update(batch)
    assert np.allclose(ours.mean, sb3.mean) and np.allclose(ours.var, sb3.var)
    assert ours.count == pytest.approx(sb3.count)
    x = rng.normal(size=(2, 4)) * 100
    assert np.array_equal(ours.normalize(x), np.clip((x - sb3.mean) / np.sqrt(sb3.var + 1e-8),
                                                     -10, 10).astype(np.float32))


def test_sac_learns_a_continuous_bandit():
    """One-step episodes rewarding -|a - target|²: the deterministic action converges to
    the target, through the critics, the actor and the entropy coefficient together."""
    rng = np.random.default_rng(0)
    sac = jax_sac.SAC(3, 2, {"learning_rate": 3e-3, "ent_coef": "auto_0.1"},
                      {"net_arch": [32, 32]}, seed=0)
    buffer = jax_sac.ReplayBuffer(5000, 3, 2)
    target = np.array([0.5, -0.3], np.float32)
    for _ in range(1500):
        obs = rng.normal(size=(8, 3)).astype(np.float32)
        action = sac.act(obs)
        buffer.add(obs, action, -((action - target) ** 2).sum(1), obs, np.ones(8))
        if buffer.size >= 64:
            metrics = sac.update(buffer.sample(rng, 64))
    greedy = sac.act(rng.normal(size=(16, 3)).astype(np.float32), deterministic=True)
    assert np.abs(greedy - target).max() < 0.05
    assert metrics["ent_coef"] < 0.1   # lowered towards the target entropy


def test_bad_config_is_one_line(tmp_path, capsys):
    for text, expected in (("[algo]\nn_steps = 8\n", "[algo] ['n_steps']: not read by the JAX SAC"),
                           ("[algo]\nent_coef = -1\n", "ent_coef = -1"),
                           ("[env]\nnormalize_rewards = true\n", "normalize_rewards = true"),
                           ("[policy]\nnet_arch = 64\n", "net_arch = 64")):
        (tmp_path / "c.toml").write_text(text)
        assert cli("train", TASK, "--backend", "jax", "--config", str(tmp_path / "c.toml"),
                   "--out", str(tmp_path / "r")) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expected in err, err
    assert cli("train", TASK, "--backend", "jax", "--algo", "ppo",
               "--out", str(tmp_path / "r")) == 2
    assert "--backend jax trains SAC" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_resume_evaluate_end_to_end(tmp_path):
    """A run, its copy resumed at the same point alike step for step, the checkpoint's
    NumPy policy equal to the learner's deterministic action, and ``fastenv evaluate``."""
    from fastenv import evaluate as ev
    from fastenv.train_jax import _Run
    (tmp_path / "c.toml").write_text(TINY)
    run = tmp_path / "run"
    assert cli("train", TASK, "--backend", "jax", "--steps", "128", "--num-envs", "2",
               "--num-workers", "1", "--seed", "3", "--out", str(run),
               "--config", str(tmp_path / "c.toml"), "--option", "episode_seconds=0.3") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "jax" and config["seed"] == 3
    latest = run / "checkpoints" / "latest"
    assert {p.name for p in latest.iterdir()} == {"policy.npz", "learner.npz",
                                                  "replay_buffer.npz", "state.json"}
    assert json.loads((latest / "state.json").read_text())["env_steps"] == 128
    with np.load(latest / "replay_buffer.npz") as saved:
        assert int(saved["size"]) == 128
    shutil.copytree(run, tmp_path / "copy")
    figures = []
    for folder in (run, tmp_path / "copy"):
        assert cli("train", "--resume", "--steps", "256", "--out", str(folder)) == 0
        progress = (folder / "progress.csv").read_text().splitlines()[1:]
        evaluations = (folder / "evaluations.csv").read_text().splitlines()[1:]
        # everything but wall time and steps/s
        figures.append(([r.split(",")[:1] + r.split(",")[3:] for r in progress],
                        [r.split(",")[:1] + r.split(",")[2:] for r in evaluations]))
    assert [r[0] for r in figures[0][1]] == ["128", "256"]
    assert figures[0] == figures[1]
    with np.load(run / "checkpoints/latest/policy.npz") as x, \
            np.load(tmp_path / "copy/checkpoints/latest/policy.npz") as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)

    # the NumPy policy of the checkpoint is the learner's deterministic action
    cfg = config["config"]

    class Envs:   # what _Run reads of the envs to build its learner
        num_envs = 1
        single_action_space = ev.load_policy(run)[0].action_space
        single_observation_space = ev.load_policy(run)[0].observation_space
    learner = _Run(Envs, cfg, 3, True, latest)
    obs = np.random.default_rng(0).normal(size=(4, Envs.single_observation_space.shape[0]))
    policy = jax_sac.checkpoint_policy(latest)
    squashed = learner.sac.act(learner._norm(obs), deterministic=True)
    low, high = learner.low, learner.high
    assert np.allclose([policy(o) for o in obs], low + (squashed + 1) * 0.5 * (high - low),
                       atol=1e-5)

    result = ev.evaluate(run, episodes=1, seconds=0.3, random_baseline=False)
    assert result["algo"] == "sac" and result["mean"]["time_alive_s"] > 0
    assert ev.evaluate(run, episodes=1, seconds=0.3, random_baseline=False,
                       checkpoint=128)["checkpoint"] == 128
    assert cli("train", "--resume", "--backend", "jax", "--steps", "300",
               "--out", str(tmp_path / "copy")) == 0   # --backend jax on its own run: fine


def test_damaged_policy_file_is_one_line(tmp_path):
    folder = tmp_path / "checkpoints" / "latest"
    folder.mkdir(parents=True)
    (folder / "policy.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="cannot read .*policy.npz"):
        jax_sac.checkpoint_policy(folder)
    with pytest.raises(FileNotFoundError, match="policy.npz is missing"):
        jax_sac.checkpoint_policy(tmp_path)
