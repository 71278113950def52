"""The JAX SAC (``fastenv train --backend jax``): its pieces against SB3's, that it
learns, and a short run end to end (train, checkpoint, resume, evaluate)."""
import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
from conftest import stop_training_with_sigterm

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
    expected = dist.log_prob(torch.from_numpy(np.array(actions)),
                             torch.from_numpy(np.arctanh(np.asarray(actions, np.float64))
                                              .astype(np.float32)))
    assert np.allclose(np.asarray(log_prob), expected.numpy(), atol=1e-3)


def _linear_layers(modules):
    import torch
    return [m for m in modules if isinstance(m, torch.nn.Linear)]


def test_updates_are_sb3s(monkeypatch):
    """Three updates of the learner and of SB3's ``SAC.train`` from the same parameters,
    batches (terminations among them) and Gaussian noise: the losses, the entropy
    coefficient, the parameters after (actor, critics, target critics, log alpha) and
    Adam's first moments of the critics (the gradients' running mean) agree to float32
    rounding. The learning rate is high, so that a wrong gradient would show."""
    import jax
    import torch
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.type_aliases import ReplayBufferSamples
    n_obs, n_act, n, algo = 5, 3, 16, {"ent_coef": "auto_0.5", "learning_rate": 1e-2}

    class Env(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (n_act,), np.float32)
    sb3 = SB3SAC("MlpPolicy", Env(), policy_kwargs={"net_arch": [8, 8]}, device="cpu", **algo)
    sb3.set_logger(configure(None, [""]))
    ours = jax_sac.SAC(n_obs, n_act, algo, {"net_arch": [8, 8]}, seed=1)
    p = ours.train_state["params"]

    def copy(modules, layers):
        for m, (w, b) in zip(_linear_layers(modules), layers, strict=True):
            m.weight.data, m.bias.data = (torch.tensor(np.array(w).T), torch.tensor(np.array(b)))
    copy([*sb3.actor.latent_pi, sb3.actor.mu, sb3.actor.log_std],
         [*p["actor"]["body"], p["actor"]["mu"], p["actor"]["log_std"]])
    for q, q_target, c, c_target in zip(sb3.critic.q_networks, sb3.critic_target.q_networks,
                                        p["critics"], ours.train_state["target"], strict=True):
        copy(q, c)
        copy(q_target, c_target)
    sb3.log_ent_coef.data = torch.tensor([float(p["log_alpha"])])
    noise = []   # SB3 draws the learner's noise: for the batch's actions, then the next ones
    monkeypatch.setattr(torch.distributions.Normal, "rsample",
                        lambda self, shape=(): self.loc + self.scale * noise.pop(0))
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = dict(obs=rng.normal(size=(n, n_obs)), action=rng.uniform(-1, 1, (n, n_act)),
                     reward=rng.normal(size=n), next_obs=rng.normal(size=(n, n_obs)),
                     terminated=rng.random(n) < 0.3)
        batch = {k: v.astype(np.float32) for k, v in batch.items()}
        key = jax.random.split(ours._key)[1]   # as SAC.update splits it
        noise += [torch.tensor(np.array(jax.random.normal(k, (n, n_act))))
                  for k in jax.random.split(key)]
        t = {k: torch.tensor(v if v.ndim == 2 else v[:, None]) for k, v in batch.items()}
        sb3.replay_buffer.sample = lambda *_, t=t, **__: ReplayBufferSamples(
            t["obs"], t["action"], t["next_obs"], t["terminated"], t["reward"])
        metrics = ours.update(batch)
        sb3.train(gradient_steps=1, batch_size=n)
        logged = sb3.logger.name_to_value
        for name in ("critic_loss", "actor_loss", "ent_coef"):
            assert metrics[name] == pytest.approx(logged[f"train/{name}"], rel=1e-5, abs=1e-5)
    assert not noise

    def torch_leaves(modules, state=None):
        out = []
        for m in _linear_layers(modules):
            w, b = (x if state is None else state[x]["exp_avg"] for x in (m.weight, m.bias))
            out += [w.detach().numpy().T, b.detach().numpy()]
        return out
    s = ours.train_state
    critics = [m for q in sb3.critic.q_networks for m in q]
    pairs = [(s["params"]["actor"]["body"] + [s["params"]["actor"]["mu"],
                                              s["params"]["actor"]["log_std"]],
              torch_leaves([*sb3.actor.latent_pi, sb3.actor.mu, sb3.actor.log_std])),
             (s["params"]["critics"], torch_leaves(critics)),
             (s["target"], torch_leaves([m for q in sb3.critic_target.q_networks for m in q])),
             (s["m"]["critics"], torch_leaves(critics, sb3.critic.optimizer.state)),
             (s["params"]["log_alpha"], [sb3.log_ent_coef.detach().numpy()[0]])]
    for ours_leaves, sb3_leaves in pairs:
        ours_leaves = jax.tree_util.tree_leaves(ours_leaves)
        assert len(ours_leaves) == len(sb3_leaves)
        for x, y in zip(ours_leaves, sb3_leaves):
            assert np.allclose(np.asarray(x), y, rtol=1e-4, atol=2e-6)


class _Counting(gym.Env):
    """Observations that ignore the actions (the same stream under any policy), ends by
    termination (every third episode) and by time limit; it records its actions."""
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(np.array([0, -2], np.float32), np.array([1, 2], np.float32))

    def __init__(self, k: int):
        self.k, self.episode, self.actions = k, 0, []

    def _obs(self):
        return np.array([self.k + 10 * self.episode, self.t, (7 * self.episode + self.t) % 5],
                        np.float32)

    def reset(self, seed=None, options=None):
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.t += 1
        terminated = self.episode % 3 == 0 and self.t == 2 + self.k
        return self._obs(), float(self.t + self.k), terminated, \
            not terminated and self.t >= 4 + self.k, {}


@pytest.mark.parametrize("algo", [dict(learning_starts=7, train_freq=2, gradient_steps=3),
                                  dict(learning_starts=0, train_freq=2, gradient_steps=-1)])
def test_steps_are_sb3s(algo):
    """The loop against SB3's ``SAC.learn`` with ``VecNormalize`` on the same observations:
    the number of updates (``learning_starts``, ``train_freq``, ``gradient_steps`` with 3
    envs; -1: as many as env steps collected, which used to give none), the observation
    statistics (reset observations in, episodes' last ones out), and the replay buffer
    (raw observations, the last one of an ended episode as the next, terminations only as
    ends, squashed actions that the env received mapped onto its Box)."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from fastenv.train_jax import _Run

    algo, n, vector_steps = dict(algo, batch_size=4), 3, 12
    venv = VecNormalize(DummyVecEnv([lambda k=k: _Counting(k) for k in range(n)]),
                        norm_reward=False)
    sb3 = SB3SAC("MlpPolicy", venv, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0,
                 **algo)
    sb3.learn(vector_steps * n)
    # final_obs an object array with None rows, as OsimVectorEnv gives it (the trainer's)
    envs = SyncVectorEnv([lambda k=k: _Counting(k) for k in range(n)],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    run = _Run(envs, {"algo": algo, "policy": {"net_arch": [8]},
                      "env": {"normalize_observations": True}}, 0, False, None)
    run.reset(0)
    for step in range(vector_steps):
        run.step(step * n)
        run.update((step + 1) * n)
    assert run.sac.n_updates == sb3._n_updates > 0
    rms = sb3.get_vec_normalize_env().obs_rms
    assert np.allclose(run.stats.mean, rms.mean) and np.allclose(run.stats.var, rms.var)
    assert run.stats.count == pytest.approx(rms.count)
    ours, theirs = run.buffer, sb3.replay_buffer
    assert ours.size == theirs.pos * n == vector_steps * n

    def flat(x):
        return x[:theirs.pos].reshape(ours.size, *x.shape[2:])
    assert np.array_equal(ours.obs[:ours.size], flat(theirs.observations))
    # SB3 stores an episode's last observation normalised and back: rounding
    assert np.allclose(ours.next_obs[:ours.size], flat(theirs.next_observations), atol=1e-6)
    assert np.array_equal(ours.terminated[:ours.size], flat(theirs.dones * (1 - theirs.timeouts)))
    assert ours.terminated.sum() > 0 and theirs.timeouts.sum() > 0
    assert np.array_equal(ours.reward[:ours.size], flat(theirs.rewards))
    low, high = _Counting.action_space.low, _Counting.action_space.high
    sent = np.stack([e.actions for e in envs.unwrapped.envs], axis=1).reshape(-1, 2)
    assert np.allclose(sent, low + (ours.action[:ours.size] + 1) * 0.5 * (high - low), atol=1e-6)


def test_logged_losses_are_the_mean_over_an_update_calls_gradient_steps():
    """SB3's ``SAC.train`` records each loss as the mean over its gradient steps; the
    JAX loop logs the same (it logged the last gradient step's)."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from fastenv.train_jax import _Run
    envs = SyncVectorEnv([lambda k=k: _Counting(k) for k in range(2)],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    run = _Run(envs, {"algo": dict(learning_starts=0, gradient_steps=3, batch_size=2),
                      "policy": {"net_arch": [8]}, "env": {}}, 0, False, None)
    calls = iter(range(100))

    def update(batch):
        k = next(calls)
        return {"critic_loss": float(k), "actor_loss": float(10 * k)}
    run.sac.update = update
    run.reset(0)
    run.step(0)
    assert run.update(2) == {"critic_loss": 1.0, "actor_loss": 10.0}   # steps 0, 1, 2
    run.step(2)
    assert run.update(4) == {"critic_loss": 4.0, "actor_loss": 40.0}   # steps 3, 4, 5


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
                           ("[policy]\nnet_arch = 64\n", "net_arch = 64"),
                           # a zero failed after the run folder was written, a list at once
                           ("[algo]\ntrain_freq = 0\n", "train_freq = 0"),
                           ('[algo]\ntrain_freq = [1, "episode"]\n', "train_freq = [1,")):
        (tmp_path / "c.toml").write_text(text)
        assert cli("train", TASK, "--backend", "jax", "--config", str(tmp_path / "c.toml"),
                   "--out", str(tmp_path / "r")) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expected in err, err
    assert cli("train", TASK, "--backend", "jax", "--algo", "ppo",
               "--out", str(tmp_path / "r")) == 2
    assert "--backend jax trains SAC" in capsys.readouterr().err
    # the replay buffer keeps each step's observations: views of shared memory refused
    for text, expected in (("[task]\ncopy = false\n", "copy=False: the JAX SAC stores the"),
                           ('[task]\nautoreset_mode = "NextStep"\n',
                            "the JAX SAC needs autoreset_mode='SameStep'")):
        (tmp_path / "c.toml").write_text(text)
        assert cli("train", TASK, "--backend", "jax", "--config", str(tmp_path / "c.toml"),
                   "--out", str(tmp_path / "r")) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expected in err, err
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
    from fastenv.train import train as train_sb3
    with pytest.raises(ValueError, match="is a jax run; resume it without a --backend"):
        train_sb3(None, resume=True, out=run, steps=1000)   # the SB3 trainer on a JAX run


def test_init_from_starts_from_a_runs_learner(tmp_path, capsys):
    """--init-from a JAX run: the new run's actor starts as the source's (learning_rate
    0 keeps it so through its updates) with the source's observation statistics; a
    numbered checkpoint (actor only) is refused in one line."""
    (tmp_path / "c.toml").write_text(TINY)
    source = tmp_path / "source"
    assert cli("train", TASK, "--backend", "jax", "--steps", "128", "--num-envs", "2",
               "--num-workers", "1", "--out", str(source), "--config",
               str(tmp_path / "c.toml"), "--option", "episode_seconds=0.3") == 0
    (tmp_path / "frozen.toml").write_text("[algo]\nlearning_rate = 0.0\n")
    run = tmp_path / "run"
    # the source's backend unless --backend is given
    assert cli("train", "--init-from", str(source), "--steps", "128",
               "--seed", "1", "--num-workers", "1", "--out", str(run), "--config",
               str(tmp_path / "frozen.toml")) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "jax" and config["env_options"]["episode_seconds"] == 0.3
    assert config["init_from"]["env_steps"] == 128
    arrays = []
    for d in (source, run):
        with np.load(d / "checkpoints" / "latest" / "policy.npz") as saved:
            arrays.append({k: saved[k] for k in saved.files})
    assert arrays[0].keys() == arrays[1].keys()
    for key in arrays[0]:
        if key.startswith(("W", "b", "mu", "log_std")):
            np.testing.assert_array_equal(arrays[0][key], arrays[1][key], err_msg=key)
    assert arrays[1]["obs_count"] > arrays[0]["obs_count"] + 128
    with np.load(run / "checkpoints" / "latest" / "learner.npz") as saved:
        assert int(saved["n_updates"]) > 0   # it did update, by zero
    capsys.readouterr()
    assert cli("train", "--init-from", str(source), "--init-checkpoint", "128", "--backend",
               "jax", "--steps", "64", "--out", str(tmp_path / "refused")) == 2
    err = capsys.readouterr().err.strip()
    assert "holds the actor only" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "refused").exists()


def test_damaged_policy_file_is_one_line(tmp_path):
    folder = tmp_path / "checkpoints" / "latest"
    folder.mkdir(parents=True)
    (folder / "policy.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="cannot read .*policy.npz"):
        jax_sac.checkpoint_policy(folder)
    with pytest.raises(FileNotFoundError, match="policy.npz is missing"):
        jax_sac.checkpoint_policy(tmp_path)


def test_sigterm_saves_a_checkpoint_to_resume_from(tmp_path):
    """SIGTERM stops a JAX run as it stops an SB3 one: the checkpoint (learner and
    replay buffer too) is written first, and repeated signals wait for it."""
    import subprocess
    import sys
    (tmp_path / "c.toml").write_text(TINY.replace("checkpoint_every = 128",
                                                  "checkpoint_every = 100000"))
    run = tmp_path / "run"
    # -X faulthandler: a crash in the child (a SIGSEGV at exit was seen once in about
    # seven runs) prints every thread's Python stack into `err`
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "fastenv", "train",
                             TASK, "--backend", "jax", "--steps", "100000", "--num-envs",
                             "2", "--num-workers", "1",
                             "--out", str(run), "--config", str(tmp_path / "c.toml"),
                             "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = stop_training_with_sigterm(proc, run)
    assert proc.returncode == 130, err[-8000:]
    assert "interrupted" in err and "Traceback" not in err
    latest = run / "checkpoints" / "latest"
    state = json.loads((latest / "state.json").read_text())
    assert state["env_steps"] >= 64
    assert state["env_steps"] == int((run / "progress.csv").read_text().splitlines()[-1]
                                     .split(",")[0])
    assert {"policy.npz", "learner.npz", "replay_buffer.npz"} <= {p.name for p in latest.iterdir()}
    with np.load(latest / "replay_buffer.npz") as saved:
        assert int(saved["size"]) == state["env_steps"]
