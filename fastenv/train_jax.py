"""Training with a SAC written in JAX: ``fastenv train TASK --backend jax``.

The same config files, run folder and evaluation command as the SB3 path
(:mod:`fastenv.train`): ``config.json`` (with ``"backend": "jax"``), ``progress.csv``,
``evaluations.csv``, TensorBoard scalars in ``tb/``, and ``checkpoints/NNNNNNNNN/``
(``policy.npz``: the actor and the observation statistics) + ``checkpoints/latest/``
(also ``learner.npz``, ``replay_buffer.npz`` and ``state.json``). ``fastenv evaluate``
runs the policy with NumPy (:func:`fastenv.adapters.jax_sac.checkpoint_policy`).

The envs are one ``OsimVectorEnv`` in ``SameStep`` autoreset mode, so that every
step's rows are whole transitions (an episode's last observation in ``final_obs``),
stepped with NumPy arrays, which the learner takes and gives; the learner is
:class:`fastenv.adapters.jax_sac.SAC`. An update of the packaged networks takes one
core's time (CPU time equal to wall time, measured with jax 0.10), leaving the other
cores to the pool's workers as ``torch_threads = 1`` does in the SB3 path; XLA's thread
flags changed nothing, so none is set.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np

from fastenv.train import (
    CheckpointSchedule,
    ProgressLog,
    _catch_stop,
    _check_not_both,
    _stop_if_requested,
    _uninterrupted,
    append_evaluation,
    checkpoint_episodes,
    init_run,
    new_run,
    resume_seed,
    resumed_run,
)


def train(task: str, algo: str = "sac", steps: int = 1_000_000, num_envs: int | None = None,
          seed: int = 0, out: str | Path = "runs/train", config: str | Path | None = None,
          resume: bool = False, num_workers: int | None = None, show_bar: bool = True,
          init_from: str | Path | None = None, init_checkpoint: int | None = None,
          **env_options) -> Path:
    """Train the JAX SAC on ``task`` until ``steps`` env steps (all envs together);
    returns the run folder (layout: the module docstring). ``init_from`` starts a new
    run from another JAX run's learner (:func:`fastenv.train.init_run`): its
    ``checkpoints/latest`` (the numbered ones hold the actor only)."""
    algo = algo or "sac"
    if algo != "sac":
        raise ValueError(f"--backend jax trains SAC; got --algo {algo} (PPO: --backend sb3 "
                         f"or rllib)")
    from fastenv.adapters import jax_sac
    out = Path(out)
    config_path = out / "config.json"
    latest = out / "checkpoints" / "latest"
    source = record = None
    if resume:
        _check_not_both(init_from)
        saved, state = resumed_run(out, steps, "jax")
        task, seed, cfg = saved["task"], saved["seed"], saved["config"]
        env_options, num_envs = saved["env_options"], saved["num_envs"]
    else:
        if init_from is not None:
            source, task, _, seed, cfg, env_options, record, _ = init_run(
                out, init_from, init_checkpoint, "jax", task, algo, config, seed, env_options)
            if not (source / "learner.npz").is_file():
                raise FileNotFoundError(
                    f"--init-from: checkpoint {source} holds the actor only (no "
                    f"learner.npz: critics, entropy coefficient, optimiser states); a JAX "
                    f"run starts from a run's checkpoints/latest, where they are saved")
        else:
            seed, cfg, env_options = new_run(out, task, "sac", config, seed, env_options)
        jax_sac.check_config(cfg)
        num_envs = int(num_envs or cfg["env"]["num_envs"])
        cfg["env"]["num_envs"] = num_envs   # config.json holds what the run used
        state = dict(env_steps=0, wall_s=0.0, episodes=0)
    from gymnasium.vector import AutoresetMode

    from fastenv.vector import OsimVectorEnv, learner_vector_options
    # the replay buffer keeps each step's observations, and the loop reads final_obs
    vector_options = learner_vector_options(env_options, "the JAX SAC",
                                            AutoresetMode.SAME_STEP)
    if num_workers is not None:
        vector_options["num_workers"] = num_workers
    envs = OsimVectorEnv(task, num_envs, **vector_options)
    try:
        run = _Run(envs, cfg, seed, resume, latest if resume else None)
        if source is not None:
            run.load_weights(source)
        if not resume:   # written once the envs and the learner exist
            out.mkdir(parents=True, exist_ok=True)
            config_path.write_text(json.dumps(dict(
                task=task, algo="sac", seed=seed, backend="jax", num_envs=num_envs,
                env_options=env_options, config=cfg,
                **({} if record is None else dict(init_from=record))), indent=1))
    except BaseException:
        envs.close()
        raise
    progress = ProgressLog(out, steps, state, show_bar)
    episodes = checkpoint_episodes(task, env_options, cfg, seed)
    from stable_baselines3.common.logger import configure
    logger = configure(str(out / "tb"), ["tensorboard"])
    schedule = CheckpointSchedule(cfg, state)

    def save(with_evaluation: bool):
        folder = schedule.save(out / "checkpoints", run.save_policy, run.save_resume)
        if folder is not None and with_evaluation and episodes is not None:
            append_evaluation(out, state, episodes(jax_sac.checkpoint_policy(folder)))

    previous = _catch_stop()
    completed = False
    try:
        run.reset(resume_seed(seed, state["env_steps"]) if resume else seed)
        while state["env_steps"] < steps:
            _stop_if_requested()
            run.step(state["env_steps"])
            progress.advance(num_envs)   # counted before the updates: a stop in them
            metrics = run.update(state["env_steps"])   # saves a buffer of env_steps rows
            for episode_return, length in run.finished:
                progress.episode(episode_return, length)
                state["episodes"] += 1
            if schedule.log_due():
                progress.log()
                for key, value in metrics.items():
                    logger.record(f"train/{key}", value)
                logger.record("train/n_updates", run.sac.n_updates)
                logger.dump(state["env_steps"])
            if schedule.checkpoint_due():
                save(with_evaluation=True)
        completed = True
    finally:   # also on Ctrl-C or SIGTERM: the interrupted run resumes from here
        with _uninterrupted(restore={signal.SIGTERM: previous}):
            progress.log()
            # a completed run's final policy is evaluated too (an interrupted one's is
            # not: a scheduler's grace period is short)
            save(with_evaluation=completed)
            progress.close()
            logger.close()
            envs.close()
            if episodes is not None:
                episodes.close()
    return out


class _Run:
    """The envs, the learner, the replay buffer and the observation statistics, stepped
    one vector step at a time as SB3's SAC steps them."""

    def __init__(self, envs, cfg: dict, seed: int, resume: bool, latest: Path | None):
        from fastenv.adapters import jax_sac
        self.envs, self.algo = envs, cfg["algo"]
        space = envs.single_action_space
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        obs_dim = envs.single_observation_space.shape[0]
        action_dim = space.shape[0]
        self.sac = jax_sac.SAC(obs_dim, action_dim, self.algo, cfg["policy"], seed)
        self.buffer = jax_sac.ReplayBuffer(int(self.algo.get("buffer_size", 1_000_000)),
                                           obs_dim, action_dim)
        self.stats = jax_sac.ObservationStatistics(obs_dim)
        self.normalize = bool(cfg["env"].get("normalize_observations", True))
        self.rng = np.random.default_rng(seed)
        self.learning_starts = int(self.algo.get("learning_starts", 100))
        self.batch_size = int(self.algo.get("batch_size", 256))
        self.train_freq = jax_sac.train_frequency(self.algo.get("train_freq", 1))
        # SB3: a negative gradient_steps (-1) is as many updates as the env steps collected
        # since the last ones (range(-1) did none: a run that never learned)
        gradient_steps = int(self.algo.get("gradient_steps", 1))
        self.gradient_steps = (gradient_steps if gradient_steps >= 0
                               else self.train_freq * envs.num_envs)
        self.vector_steps = 0
        if resume:
            self._load(latest)
        n = envs.num_envs
        self.returns, self.lengths = np.zeros(n), np.zeros(n, np.int64)
        self.finished: list[tuple[float, int]] = []
        self.metrics: dict = {}

    def _norm(self, obs: np.ndarray) -> np.ndarray:
        return self.stats.normalize(obs) if self.normalize else obs.astype(np.float32)

    def reset(self, seed: int):
        obs, _ = self.envs.reset(seed=seed)
        self.obs = np.asarray(obs)
        if self.normalize:
            self.stats.update(self.obs)

    def step(self, env_steps: int):
        """One vector step from ``env_steps``, its transitions into the replay buffer."""
        n = self.envs.num_envs
        if env_steps < self.learning_starts:   # SB3: uniform actions before learning starts
            squashed = self.rng.uniform(-1.0, 1.0, (n, len(self.low))).astype(np.float32)
        else:
            squashed = self.sac.act(self._norm(self.obs))
        action = (self.low + (squashed + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)
        obs, reward, terminated, truncated, info = self.envs.step(action)
        obs, reward = np.asarray(obs), np.asarray(reward)
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        done = terminated | truncated
        next_obs = obs.copy()
        if done.any():   # SameStep: the ended episodes' last observations
            ended = np.flatnonzero(info["_final_obs"])
            # an object array of per-env observations, as Gymnasium's vector envs give
            next_obs[ended] = np.stack([info["final_obs"][i] for i in ended])
        # a time limit or a simulator failure is not an end the value may assume:
        # bootstrapped from the last observation, as SB3 does
        self.buffer.add(self.obs, squashed, reward, next_obs, terminated.astype(np.float32))
        if self.normalize:
            self.stats.update(obs)
        self.returns += reward
        self.lengths += 1
        self.finished = [(float(self.returns[i]), int(self.lengths[i]))
                         for i in np.flatnonzero(done)]
        self.returns[done], self.lengths[done] = 0.0, 0
        self.obs = obs
        self.vector_steps += 1

    def update(self, env_steps: int) -> dict:
        """The updates due at ``env_steps`` (counted with the step just taken); returns
        the losses of the latest updates, each the mean over that call's gradient steps
        (what SB3's ``SAC.train`` records)."""
        if (env_steps > self.learning_starts and self.vector_steps % self.train_freq == 0
                and self.gradient_steps > 0):
            losses = []
            for _ in range(self.gradient_steps):
                batch = self.buffer.sample(self.rng, self.batch_size)
                batch["obs"], batch["next_obs"] = (self._norm(batch["obs"]),
                                                   self._norm(batch["next_obs"]))
                losses.append(self.sac.update(batch))
            self.metrics = {key: float(np.mean([loss[key] for loss in losses]))
                            for key in losses[0]}
        return self.metrics

    # -------------------------------------------------------------- checkpoints
    def save_policy(self, folder: Path):
        from fastenv.adapters.jax_sac import save_policy
        save_policy(folder, self.sac, self.stats if self.normalize else None,
                    self.low, self.high)

    def save_resume(self, folder: Path):
        np.savez(folder / "learner.npz", **self.sac.state(),
                 rng=np.asarray(json.dumps(self.rng.bit_generator.state)),
                 vector_steps=np.asarray(self.vector_steps))
        self.buffer.save(folder / "replay_buffer.npz")

    def _load(self, latest: Path):
        self.load_weights(latest, resume=True)
        with np.load(latest / "learner.npz") as saved:
            self.rng.bit_generator.state = json.loads(str(saved["rng"]))
            self.vector_steps = int(saved["vector_steps"])
        self.buffer.load(latest / "replay_buffer.npz")

    def load_weights(self, folder: Path, resume: bool = False):
        """The learner (networks, entropy coefficient, optimiser states, update count)
        and the observation statistics of the checkpoint in ``folder``: what a resume
        and ``--init-from`` share (a resume also takes the random state and buffer)."""
        with np.load(folder / "policy.npz") as saved:
            trained = saved["obs_mean"].shape[0], saved["action_low"].shape[0]
            if trained != (self.sac.obs_dim, len(self.low)):
                raise ValueError(f"checkpoint {folder}: its policy takes {trained[0]} "
                                 f"observations and gives {trained[1]} actions; this "
                                 f"run's env has {self.sac.obs_dim} and {len(self.low)}")
            if self.normalize:
                self.stats.mean, self.stats.var = saved["obs_mean"], saved["obs_var"]
                self.stats.count = float(saved["obs_count"])
        with np.load(folder / "learner.npz") as saved:
            key = self.sac._key
            self.sac.load_state(saved)
        if not resume:   # a new run's updates draw from its own seed's key
            self.sac._key = key
