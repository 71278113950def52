"""Ray RLlib glue (new API stack): each env runner steps ONE ``OsimVectorEnv``.

RLlib's ``SingleAgentEnvRunner`` builds its env with ``gym.make_vec(...,
vectorization_mode=config.gym_env_vectorize_mode)``; with ``"vector_entry_point"`` and
``config.env = vector_env`` (an RLlib env creator) that call returns our shared-memory
pool, so ``num_envs_per_env_runner`` envs live in a few worker processes of that runner
instead of one Ray actor per env. No RLlib class is patched or subclassed.

Two things the runner relies on:

- **Autoreset.** The runner treats the step after an episode's end as that env's reset
  (a new episode starts from the observation it returns): Gymnasium's ``NextStep``
  mode, which the creator enforces.
- **Seeds.** Runner ``w`` resets with ``seed = config.seed + w``; ``OsimVectorEnv``
  seeds env ``i`` with ``seed + i``, which would give runners overlapping seeds.
  :class:`SeedBlocks` maps a reset seed ``s`` to ``s * num_envs``, so the envs of
  different runners get disjoint seed blocks, still a function of the seed only. An
  env the runner rebuilds after a failed step, or a runner Ray restarts in a new
  process, is reset with the same ``s``; it gets the next generation's block instead of
  replaying the first env's start states. Generations are counted by a small Ray actor
  of the driver, one per driver and Ray session, shared by the runs that
  :func:`algorithm_config` configures there, each counted apart (a restarted runner is a
  new process, whose own count would start again at 0).

Pool workers per runner (``num_workers``): by default the CPUs that Ray reserved for
the runner (``num_cpus_per_env_runner``), so that Ray's placement also places our
processes; the runner's own process mostly waits on them.
"""
from __future__ import annotations

import os
from collections import Counter

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

# SB3 names in fastenv/configs/*.toml [algo] -> RLlib's; the *_SPECIAL ones need more
# than a rename (see algorithm_config).
PPO_NAMES = {"learning_rate": "lr", "batch_size": "minibatch_size", "n_epochs": "num_epochs",
             "gae_lambda": "lambda_", "clip_range": "clip_param", "ent_coef": "entropy_coeff",
             "max_grad_norm": "grad_clip", "vf_coef": "vf_loss_coeff", "gamma": "gamma"}
PPO_SPECIAL = ("n_steps",)
SAC_SPECIAL = ("learning_rate", "buffer_size", "train_freq", "gradient_steps", "ent_coef")
ENV_NAME = "fastenv-vector"   # vector_env in RLlib's env registry
SAC_NAMES = {"learning_starts": "num_steps_sampled_before_learning_starts",
             "batch_size": "train_batch_size_per_learner", "tau": "tau", "gamma": "gamma"}


#: per process, how many vector envs have been reset with each runner seed (outside Ray,
#: or where the run's generation counter cannot be reached)
_SEED_GENERATIONS: Counter = Counter()
GENERATION_STRIDE = 2 ** 32   # runner seeds below this keep generations disjoint
#: the driver's generation counter in its current Ray session: (job ID, actor name,
#: handle); a named actor lives while a handle on it does, and one per driver serves
#: all of its runs (an actor is a process: one per run would pile up in a sweep)
_COUNTER: list = []


class SeedGenerations:
    """How many vector envs have been reset with each runner seed, per run, over the
    whole run: a Ray actor (``num_cpus=0``) of the driver, found by name by every
    runner."""

    def __init__(self):
        self.counts: Counter = Counter()

    def take(self, run: str, seed: int) -> int:
        """The generation of run ``run``'s next vector env reset with runner seed
        ``seed``."""
        k = self.counts[run, seed]
        self.counts[run, seed] += 1
        return k


def start_seed_generations() -> str | None:
    """A new run's counter of seed generations: ``"ACTOR/RUN"``, the driver's
    :class:`SeedGenerations` actor (started on the first call in this Ray session) and
    the run's key in it; None when Ray is not running here."""
    import uuid

    import ray
    if not ray.is_initialized():
        return None
    job = ray.get_runtime_context().get_job_id()
    if not _COUNTER or _COUNTER[0] != job:   # a new ray.init: the old actor went with it
        name = f"fastenv-seed-generations-{uuid.uuid4().hex}"
        _COUNTER[:] = [job, name,
                       ray.remote(num_cpus=0)(SeedGenerations).options(name=name).remote()]
    return f"{_COUNTER[1]}/{uuid.uuid4().hex}"


def _take_generation(seed: int, counter: str | None) -> int:
    """The generation of a vector env reset with runner seed ``seed``: from the run's
    counter ``counter`` (:func:`start_seed_generations`) where it can be reached, else
    this process's."""
    if counter is not None:
        try:
            import ray
            name, _, run = counter.partition("/")
            return int(ray.get(ray.get_actor(name).take.remote(run, seed)))
        except Exception as exc:   # e.g. a runner of a driver that has exited
            gym.logger.warn(f"seed generations counter {counter!r} unreachable "
                            f"({type(exc).__name__}); counting in this process only")
    k = _SEED_GENERATIONS[seed]
    _SEED_GENERATIONS[seed] += 1
    return k


class SeedBlocks(gym.vector.VectorWrapper):
    """Reset seed ``s`` becomes ``s * num_envs``: env ``i`` gets ``s * num_envs + i``,
    so runners seeded ``s, s + 1, ...`` never share an env seed.

    The k-th vector env of the run to be reset with ``s`` (k > 0: RLlib rebuilt the
    runner's env after a step raised, or Ray restarted the runner, and the new one is
    reset with the runner's seed) gets ``(s + k * 2**32) * num_envs`` instead, with a
    warning: a new block, not a replay of the start states the runner began with. k
    comes from the run's counter ``counter`` (:func:`start_seed_generations`), else
    from this process's count. The same env reset with ``s`` again keeps its block
    (Gymnasium: the same seed, the same episode)."""

    def __init__(self, env, counter: str | None = None):
        super().__init__(env)
        self._generation: dict[int, int] = {}
        self._counter = counter
        self.block: int | None = None   # env 0's seed at the last seeded reset

    def reset(self, *, seed=None, options=None):
        if isinstance(seed, (int, np.integer)):
            s = int(seed)
            first = s not in self._generation
            if first:
                self._generation[s] = _take_generation(s, self._counter)
            k = self._generation[s]
            seed = self.block = (s + k * GENERATION_STRIDE) * self.num_envs
            if first and k:
                gym.logger.warn(f"vector env {k + 1} reset with runner seed {s} (RLlib "
                                f"rebuilt it or its runner): env seeds start at {seed}")
        return self.env.reset(seed=seed, options=options)


def vector_env(config: dict) -> gym.vector.VectorEnv:
    """RLlib env creator: ``config`` holds ``task``, ``num_envs`` (set by the runner),
    optionally ``num_workers`` and any vector or env option of ``OsimVectorEnv``."""
    from fastenv.vector import OsimVectorEnv, learner_vector_options
    options = dict(config)
    task = options.pop("task", None)
    if task is None:
        raise ValueError(f"env_config needs 'task' (a fastenv task ID), got keys "
                         f"{sorted(options)}")
    # RLlib's env runner resets an ended env on the next step and keeps the arrays
    options = learner_vector_options(options, "RLlib's env runner", AutoresetMode.NEXT_STEP)
    num_envs = int(options.pop("num_envs", 1))
    counter = options.pop("seed_generations", None)
    if options.get("num_workers") is None:
        options["num_workers"] = min(num_envs, _assigned_cpus())
    return SeedBlocks(OsimVectorEnv(task, num_envs, **options), counter)


def _assigned_cpus() -> int:
    """CPUs Ray reserved for this actor (1 outside Ray)."""
    try:
        import ray
        if ray.is_initialized():
            return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    except Exception:
        pass
    return 1


def obs_filter(env, spaces, device):
    """Env-to-module connector: running mean/std observation normalisation (the
    counterpart of SB3's ``VecNormalize`` observations; RLlib merges the runners'
    statistics after each iteration and checkpoints them)."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter
    return MeanStdFilter()


def env_runner_report(runner) -> dict:
    """Where a runner is and what it did, for ``EnvRunnerGroup.foreach_env_runner``:
    node ID, pid, its env 0's seed at its last seeded reset (its seed block), its pool's
    worker pids and respawns, and its env steps."""
    import ray
    venv = runner.env.unwrapped if runner.env is not None else None
    blocks = runner.env
    while blocks is not None and not isinstance(blocks, SeedBlocks):
        blocks = getattr(blocks, "env", None)
    return dict(node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid(),
                seed_block=blocks.block if blocks is not None else None,
                worker_pids=list(venv._pool.pids) if venv is not None else [],
                restarts=venv.restarts if venv is not None else 0,
                num_envs=runner.num_envs,
                env_steps=int(runner.num_env_steps_sampled_lifetime))


def algorithm_config(algo: str, task: str, cfg: dict, *, num_env_runners: int,
                     envs_per_runner: int, num_workers: int | None, seed: int,
                     env_options: dict):
    """An RLlib ``PPOConfig``/``SACConfig`` from a fastenv config (``[algo]`` in SB3
    names, translated; RLlib names pass through), ``num_env_runners`` runners of
    ``envs_per_runner`` envs each, ``num_workers`` pool workers (and reserved CPUs)
    per runner."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    if algo not in ("ppo", "sac"):
        raise ValueError(f"unknown algorithm {algo!r} for RLlib; expected 'ppo' or 'sac'")
    if num_env_runners < 1 or envs_per_runner < 1:
        raise ValueError(f"num_env_runners and envs_per_runner must be >= 1, got "
                         f"{num_env_runners} and {envs_per_runner}")
    workers = num_workers or 1
    total_envs = num_env_runners * envs_per_runner
    hp = dict(cfg["algo"])
    policy = cfg["policy"]
    training = {}
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig
        config = PPOConfig()
        n_steps = int(hp.pop("n_steps", 512))
        training.update(train_batch_size_per_learner=n_steps * total_envs)
        rollout = n_steps
        names, activation = PPO_NAMES, "tanh"
    else:
        from ray.rllib.algorithms.sac import SACConfig
        config = SACConfig()
        lr = hp.pop("learning_rate", 3e-4)
        training.update(actor_lr=lr, critic_lr=lr, alpha_lr=lr)
        buffer = int(hp.pop("buffer_size", 300_000))
        training["replay_buffer_config"] = {"type": "PrioritizedEpisodeReplayBuffer",
                                            "capacity": buffer, "alpha": 0.0}
        # SB3: gradient_steps updates of batch_size every train_freq vector steps
        train_freq, gradient_steps = int(hp.pop("train_freq", 1)), int(hp.pop("gradient_steps", 1))
        batch = int(hp.get("batch_size", 256))
        training["training_intensity"] = batch * gradient_steps / (train_freq * total_envs)
        ent = hp.pop("ent_coef", "auto")
        if ent != "auto":
            training["initial_alpha"] = float(str(ent).removeprefix("auto_"))
        rollout = 1
        names, activation = SAC_NAMES, "relu"
    for key, value in hp.items():
        training[names.get(key, key)] = value
    from ray.tune.registry import register_env
    register_env(ENV_NAME, vector_env)
    env_config = dict(env_options, task=task, num_workers=workers)
    counter = start_seed_generations()   # None before ray.init (a config check)
    if counter is not None:
        env_config["seed_generations"] = counter
    config = (config
              .environment(ENV_NAME, env_config=env_config)
              .env_runners(num_env_runners=num_env_runners,
                           num_envs_per_env_runner=envs_per_runner,
                           gym_env_vectorize_mode="vector_entry_point",
                           num_cpus_per_env_runner=workers,
                           rollout_fragment_length=rollout,
                           env_to_module_connector=obs_filter
                           if cfg["env"].get("normalize_observations", True) else None)
              # a step that raises (NaN actions, a bad env option) leaves RLlib's runner
              # unable to sample again unless it rebuilds its env
              .fault_tolerance(restart_failed_env_runners=True,
                               restart_failed_sub_environments=True)
              .learners(num_learners=0)
              .rl_module(model_config=DefaultModelConfig(
                  fcnet_hiddens=list(policy.get("net_arch", [256, 256])),
                  fcnet_activation=activation))
              .debugging(seed=seed))
    try:
        config = config.training(**training)
    except TypeError as exc:
        sb3 = sorted({*names, *(PPO_SPECIAL if algo == "ppo" else SAC_SPECIAL)})
        raise ValueError(f"[algo]: {exc}; use fastenv's SB3 names ({', '.join(sb3)}) or "
                         f"RLlib's {type(config).__name__}.training() names") from None
    return config


# ----------------------------------------------------------------------- inference
def checkpoint_policy(path):
    """The deterministic policy of an RLlib algorithm checkpoint (``Algorithm.
    save_to_path``): ``policy(obs) -> action`` for one unbatched observation.

    Loads only the RLModule (no Ray, no env runners) and the env runners' merged
    ``MeanStdFilter`` statistics; observations are normalised and actions unsquashed
    from [-1, 1] to the action space as RLlib's connectors do in training, and the
    action is the mode of the action distribution."""
    from pathlib import Path

    import torch
    import tree  # dm-tree, as RLlib's filter nests its statistics
    from ray.rllib.core.rl_module.rl_module import RLModule
    from ray.rllib.utils.filter import MeanStdFilter, RunningStat
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    path = Path(path).resolve()   # RLlib reads relative paths as URIs
    module_dir = path / "learner_group" / "learner" / "rl_module" / "default_policy"
    if not module_dir.is_dir():
        raise FileNotFoundError(f"{path} is not an RLlib checkpoint: {module_dir} is missing")
    module = RLModule.from_checkpoint(module_dir)
    module.eval()
    space = module.action_space
    dist_cls = module.get_inference_action_dist_cls()
    normalize = None
    filter_dir = path / "env_runner" / "env_to_module_connector" / "MeanStdFilter"
    if filter_dir.is_dir():
        import pickle  # the connector's state as RLlib's Checkpointable writes it
        with open(filter_dir / "state.pkl", "rb") as f:
            (state,) = pickle.load(f).values()
        # RLlib's own filter, frozen: the same epsilon, de-mean/de-std flags and clip as
        # in training, so that a near-constant observation is scaled alike
        obs_filter = MeanStdFilter(state["shape"], demean=state["de_mean_to_zero"],
                                   destd=state["de_std_to_one"], clip=state["clip_by_value"])
        obs_filter.running_stats = tree.unflatten_as(
            state["shape"], [RunningStat.from_state(s) for s in state["running_stats"]])

        def normalize(obs):
            return obs_filter(obs, update=False)

    def policy(obs):
        x = np.asarray(obs, np.float32)
        if normalize is not None:
            x = np.asarray(normalize(x), np.float32)
        with torch.no_grad():
            out = module.forward_inference({"obs": torch.from_numpy(x[None, :])})
            action = dist_cls.from_logits(out["action_dist_inputs"]).to_deterministic() \
                .sample()[0].numpy()
        return np.asarray(unsquash_action(action, space), np.float32)
    policy.observation_space, policy.action_space = module.observation_space, space
    return policy
