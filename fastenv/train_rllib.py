"""Training with Ray RLlib: ``fastenv train TASK --backend rllib``.

The same config files, run folder and evaluation command as the SB3 path
(:mod:`fastenv.train`): ``config.json`` (with ``"backend": "rllib"``), ``progress.csv``,
``evaluations.csv`` and ``checkpoints/NNNNNNNNN/`` + ``checkpoints/latest/``, here each
an RLlib algorithm checkpoint (``Algorithm.save_to_path``) plus ``state.json``.
``fastenv evaluate`` loads the RLModule and the observation statistics from it
(:func:`fastenv.adapters.rllib.checkpoint_policy`), without Ray running.

``num_env_runners`` env runners (Ray actors, placed on any node of the cluster) each
step one ``OsimVectorEnv`` of ``envs_per_runner`` envs with ``num_workers`` pool
workers, and reserve that many CPUs; the learner runs in this process. With
``address`` the run joins a running cluster (``"auto"``: the one started on this node
with ``ray start``); without it Ray starts on this machine only.

``init_from`` starts a new run from another RLlib run's checkpoint (``fastenv train
--init-from``, :func:`fastenv.train.init_run`): its learner (RLModule weights and
optimiser states) and its env runners' observation statistics.
"""
from __future__ import annotations

import json
import math
import signal
from pathlib import Path

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
    resumed_run,
)


def check_address(address: str | None):
    """``--address``: ``auto`` or a reachable ``HOST:PORT``. Ray itself waits minutes
    on an unreachable address, printing C++ log lines, and names neither flag nor form."""
    import socket
    if address is None or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address {address}: expected auto or HOST:PORT (the address "
                         f"`ray start --head` printed, e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"--address {address}: no Ray cluster answers there ("
                              f"{exc.strerror or exc}); is `ray start --head` running "
                              f"on {host}?") from None


def check_cpus(num_env_runners: int, num_workers: int):
    """The runners' reserved CPUs must fit the cluster: Ray would otherwise wait for
    them forever, and ``build_algo`` never returns."""
    import ray
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if num_env_runners * num_workers > cpus:
        raise ValueError(f"--num-env-runners {num_env_runners} x --num-workers "
                         f"{num_workers} = {num_env_runners * num_workers} CPUs for the env "
                         f"runners, but the Ray cluster has {cpus} (ray status): use fewer "
                         f"runners or workers, or add nodes")


def _workers_per_runner(num_env_runners: int, envs_per_runner: int) -> int:
    """The cluster's CPUs shared among the runners (at least 1, at most one per env)."""
    import ray
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(envs_per_runner, cpus // num_env_runners))


def train(task: str | None, algo: str | None = "ppo", steps: int = 1_000_000, *,
          num_env_runners: int | None = None, envs_per_runner: int | None = None,
          seed: int = 0, out: str | Path = "runs/train", config: str | Path | None = None,
          resume: bool = False, num_workers: int | None = None, address: str | None = None,
          show_bar: bool = True, init_from: str | Path | None = None,
          init_checkpoint: int | None = None, **env_options) -> Path:
    """Train ``algo`` (``"ppo"`` or ``"sac"``) with RLlib until ``steps`` env steps;
    returns the run folder (layout: :mod:`fastenv.train`). ``num_env_runners`` x
    ``envs_per_runner`` envs (default 2 x 4; with ``init_from``, the source run's)."""
    import ray
    import torch

    from fastenv.adapters.rllib import algorithm_config, checkpoint_policy
    out = Path(out)
    config_path = out / "config.json"
    latest = out / "checkpoints" / "latest"
    source = record = None
    if resume:
        _check_not_both(init_from)
        saved, state = resumed_run(out, steps, "rllib")
        task, algo, seed, cfg = saved["task"], saved["algo"], saved["seed"], saved["config"]
        env_options = saved["env_options"]
        num_env_runners, envs_per_runner = saved["num_env_runners"], saved["envs_per_runner"]
        num_workers = num_workers or saved["num_workers"]
    else:
        if init_from is not None:
            source, task, algo, seed, cfg, env_options, record, source_run = init_run(
                out, init_from, init_checkpoint, "rllib", task, algo, config, seed,
                env_options)
            num_env_runners = num_env_runners or source_run["num_env_runners"]
            envs_per_runner = envs_per_runner or source_run["envs_per_runner"]
        else:
            algo = algo or "ppo"
            seed, cfg, env_options = new_run(out, task, algo, config, seed, env_options)
        num_env_runners = 2 if num_env_runners is None else num_env_runners
        envs_per_runner = 4 if envs_per_runner is None else envs_per_runner
        if num_env_runners < 1 or envs_per_runner < 1:
            raise ValueError(f"--num-env-runners and --envs-per-runner must be >= 1, got "
                             f"{num_env_runners} and {envs_per_runner}")
        state = dict(env_steps=0, wall_s=0.0, episodes=0)
    check_address(address)
    # the config is checked once before Ray starts, so that a bad [algo] key is one
    # line in a second rather than after Ray's start-up; built again below with the
    # cluster's CPUs
    algorithm_config(algo, task, cfg, num_env_runners=num_env_runners,
                     envs_per_runner=envs_per_runner, num_workers=num_workers or 1,
                     seed=seed, env_options=env_options)
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:   # e.g. auto with no `ray start` on this node
            raise ConnectionError(f"--address {address}: {exc}") from None
    torch.set_num_threads(int(cfg["run"].get("torch_threads", 1)))
    algorithm = None
    try:
        num_workers = num_workers or _workers_per_runner(num_env_runners, envs_per_runner)
        check_cpus(num_env_runners, num_workers)
        algorithm = algorithm_config(algo, task, cfg, num_env_runners=num_env_runners,
                                     envs_per_runner=envs_per_runner, num_workers=num_workers,
                                     seed=seed, env_options=env_options).build_algo()
        if resume:
            algorithm.restore_from_path(latest.resolve())
        else:   # written once the algorithm is built: a run that cannot start leaves no folder
            if source is not None:
                load_weights(algorithm, source)
            out.mkdir(parents=True, exist_ok=True)
            config_path.write_text(json.dumps(dict(
                task=task, algo=algo, seed=seed, backend="rllib",
                num_env_runners=num_env_runners, envs_per_runner=envs_per_runner,
                num_workers=num_workers, num_envs=num_env_runners * envs_per_runner,
                env_options=env_options, config=cfg,
                **({} if record is None else dict(init_from=record))), indent=1))
        run = _Run(out, steps, state, cfg, show_bar)
        episodes = checkpoint_episodes(task, env_options, cfg, seed)
        evaluate = None if episodes is None else lambda path: episodes(checkpoint_policy(path))
        previous = _catch_stop()
        completed = False
        try:
            while state["env_steps"] < steps:
                _stop_if_requested()
                result = algorithm.train()
                if run.update(result):
                    run.save(algorithm, evaluate)
            completed = True
        finally:   # also on Ctrl-C or SIGTERM: the interrupted run resumes from here
            with _uninterrupted(restore={signal.SIGTERM: previous}):
                run.log()
                # a completed run's final policy is evaluated too (an interrupted one's
                # is not: a scheduler's grace period is short)
                run.save(algorithm, evaluate if completed else None)
                run.close()
                if episodes is not None:
                    episodes.close()
    finally:
        if algorithm is not None:
            algorithm.stop()
        if started:
            ray.shutdown()
    return out


def load_weights(algorithm, folder: Path):
    """The RLlib checkpoint in ``folder`` into the new ``algorithm``: its learner (the
    RLModule's weights, SAC's target networks, the optimiser states), synced to the env
    runners, and the env runners' observation statistics (``MeanStdFilter``), which go
    on updating; after checking that the spaces match. A replay buffer, the env
    runners' step counts and the algorithm's own counters are not carried: the new run
    counts from 0."""
    from ray.rllib.core.rl_module.rl_module import RLModule
    folder = folder.resolve()   # RLlib reads relative paths as URIs
    module_dir = folder / "learner_group" / "learner" / "rl_module" / "default_policy"
    if not module_dir.is_dir():
        raise FileNotFoundError(f"--init-from {folder}: not an RLlib checkpoint "
                                f"({module_dir} is missing)")
    trained, module = RLModule.from_checkpoint(module_dir), algorithm.get_module()
    for name in ("observation_space", "action_space"):
        was, now = getattr(trained, name).shape, getattr(module, name).shape
        if was != now:
            raise ValueError(f"--init-from {folder}: this run's {name} has shape {now}; "
                             f"the source policy was trained on {was}")
    # torch's optimiser state carries its learning rate, which RLlib would use for the
    # first update before its scheduler sets the config's again: a fine-tune's own
    # learning rate applies from its first update
    (rates,) = [r.get() for r in algorithm.learner_group.foreach_learner(_learning_rates)]
    try:
        algorithm.restore_from_path(folder / "learner_group", component="learner_group")
    except (ValueError, RuntimeError, KeyError) as exc:   # torch: "size mismatch for ..."
        raise ValueError(f"--init-from {folder}: its learner does not fit this run's "
                         f"([algo] changed?): {str(exc).splitlines()[0]}") from exc
    algorithm.learner_group.foreach_learner(_set_learning_rates, rates=rates)
    statistics = folder / "env_runner" / "env_to_module_connector"
    if statistics.is_dir():   # the source normalised observations (init_run: so does this)
        algorithm.restore_from_path(statistics, component="env_runner/env_to_module_connector")


def _learning_rates(learner) -> dict:
    """Each optimiser's learning rates (one per parameter group), by name."""
    return {name: [group["lr"] for group in optimizer.param_groups]
            for module_id in learner.module.keys()
            for name, optimizer in learner.get_optimizers_for_module(module_id)}


def _set_learning_rates(learner, rates: dict):
    for module_id in learner.module.keys():
        for name, optimizer in learner.get_optimizers_for_module(module_id):
            for group, lr in zip(optimizer.param_groups, rates[name]):
                group["lr"] = lr


class _Run:
    """Progress (``fastenv.train.ProgressLog``), checkpoints and their evaluations,
    counted in env steps."""

    def __init__(self, out: Path, total: int, state: dict, cfg: dict, show_bar: bool):
        self.out, self.state = out, state
        self.progress = ProgressLog(out, total, state, show_bar)
        self.schedule = CheckpointSchedule(cfg, state)

    def update(self, result: dict) -> bool:
        """Count one training iteration; True when a checkpoint is due."""
        runners = result.get("env_runners", {})
        self.progress.advance(int(runners.get("num_env_steps_sampled", 0)))
        episodes = int(runners.get("num_episodes", 0))
        self.state["episodes"] += episodes
        if episodes and not math.isnan(runners.get("episode_return_mean", math.nan)):
            self.progress.episode(runners["episode_return_mean"], runners["episode_len_mean"])
        if self.schedule.log_due():
            self.log()
        return self.schedule.checkpoint_due()

    def log(self):
        self.progress.log()

    def save(self, algorithm, evaluate):
        """``checkpoints/NNNNNNNNN`` and ``checkpoints/latest`` (replaced only once the
        new one is complete), then the test-mode evaluation of the new policy."""
        latest = self.schedule.save(self.out / "checkpoints",
                                    lambda folder: algorithm.save_to_path(folder.resolve()))
        if latest is None or evaluate is None:
            return
        m = evaluate(latest)
        if m is None:
            return
        append_evaluation(self.out, self.state, m)

    def close(self):
        self.progress.close()
