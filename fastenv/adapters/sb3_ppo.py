"""SB3's PPO with pipelined rollouts: :class:`PipelinedPPO`.

PPO's rollout needs ``n_steps`` transitions of every env from one fixed policy, so the
envs need not step in lock-step: :class:`~fastenv.collect.PipelinedCollector` lets the
policy act on one half of the envs while the other half steps. ``PipelinedPPO`` is
SB3's ``PPO`` whose ``collect_rollouts`` does that on the ``OsimVectorEnv`` under
``fastenv.adapters.sb3.make_vec_env``, and fills SB3's ``RolloutBuffer`` as PPO's own
collection would: the unclipped action samples with their values and log-probabilities,
episode starts, and truncated episodes bootstrapped with the value of their last
observation. ``VecNormalize`` and ``VecMonitor`` around the env are honoured by doing
their work here (observation statistics from each batch the policy sees, return
statistics step by step, ``info["episode"]`` for callbacks and ``VecMonitor``'s
``monitor.csv`` rows; not its ``info_keywords``); other wrappers are refused.

The differences from ``PPO``: observation statistics are updated per batch instead of
per step of all envs, callbacks run after the rollout (once per ``num_envs`` transitions,
as before, so ``on_step`` returning False ends training after that rollout), and
gSDE is not supported. Training itself is ``PPO``'s.
"""
from __future__ import annotations

import time

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from fastenv.adapters.sb3 import FastenvVecEnv
from fastenv.collect import PipelinedCollector
from fastenv.envs import is_int


class PipelinedPPO(PPO):
    """``PPO`` whose rollouts come from a :class:`~fastenv.collect.PipelinedCollector`.

    ``pipeline_batch_size``: envs the policy acts on at once (default ``num_envs // 2``;
    ``num_envs`` is lock-step). Other arguments are ``PPO``'s; ``env`` must be
    ``make_vec_env``'s, optionally inside ``VecMonitor`` and ``VecNormalize``.
    """

    def __init__(self, policy, env, *args, pipeline_batch_size: int | None = None,
                 **kwargs):
        if kwargs.get("use_sde"):
            raise ValueError("PipelinedPPO does not support use_sde=True (gSDE resamples "
                             "its noise for all envs at once); use PPO")
        if pipeline_batch_size is not None and not (is_int(pipeline_batch_size)
                                                    and pipeline_batch_size >= 1):
            raise ValueError(f"pipeline_batch_size must be None (num_envs // 2) or an int "
                             f">= 1, got {pipeline_batch_size!r}")
        self.pipeline_batch_size = pipeline_batch_size
        self._collector = self._norm = self._handed_obs = None
        self._t_start = time.time()
        super().__init__(policy, env, *args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_collector", "_norm", "_t_start",
                "_handed_obs"]

    # ------------------------------------------------------------------ the env
    def _chain(self, env):
        """``env``'s ``VecNormalize`` (or None), its ``VecMonitor`` wrappers and fastenv's
        VecEnv under them; anything else in the chain is refused."""
        norm, monitors, inner = None, [], env
        while not isinstance(inner, FastenvVecEnv):
            if isinstance(inner, VecNormalize):
                norm = inner
            elif isinstance(inner, VecMonitor):
                if inner.info_keywords:   # the collector keeps no infos to copy them from
                    raise ValueError(f"PipelinedPPO cannot log VecMonitor's info_keywords "
                                     f"{inner.info_keywords!r}; leave them out")
                monitors.append(inner)
            else:
                raise ValueError(f"PipelinedPPO collects from fastenv.adapters.sb3.make_vec_env"
                                 f"'s VecEnv, optionally in VecMonitor and VecNormalize; got "
                                 f"{type(inner).__name__} in the chain")
            inner = inner.venv
        return norm, monitors, inner

    def _act(self, raw: np.ndarray):
        """The policy on one batch, as ``PPO.collect_rollouts`` runs it on all envs."""
        norm = self._norm
        if norm is not None and norm.training and norm.norm_obs:
            norm.obs_rms.update(raw)
        obs = norm.normalize_obs(raw) if norm is not None else raw
        with th.no_grad():
            actions, values, log_probs = self.policy(obs_as_tensor(obs, self.device))
        actions = actions.cpu().numpy()
        if self.policy.squash_output:
            sent = self.policy.unscale_action(actions)
        else:
            sent = np.clip(actions, self.action_space.low, self.action_space.high)
        return sent, {"obs": obs, "action": actions, "value": values.flatten().cpu().numpy(),
                      "log_prob": log_probs.cpu().numpy()}

    # ------------------------------------------------------------------ the rollout
    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps: int) -> bool:
        assert self._last_obs is not None, "No previous observation was provided"
        norm, monitors, inner = self._chain(env)
        self._norm = norm
        if (self._last_obs is not self._handed_obs or self._collector is None
                or self._collector.envs is not inner.venv):
            # the env was reset (learn() does) or is new: collect from its observations,
            # with a new collector (an interrupted rollout leaves the old one's envs in
            # flight; reset() has dropped those steps, drop_in_flight() drops them otherwise)
            n = inner.num_envs
            batch = self.pipeline_batch_size or max(1, n // 2)
            if batch > n:
                raise ValueError(f"pipeline_batch_size={batch} is more than the env's "
                                 f"{n} envs")
            inner.venv.drop_in_flight()
            self._collector = PipelinedCollector(inner.venv, self._act, batch_size=batch)
            raw = norm.get_original_obs() if norm is not None else self._last_obs
            self._collector.start(raw)
        collector = self._collector
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        r = collector.collect(n_rollout_steps)
        x = r.extras
        n = env.num_envs
        dones = r.dones
        ended = {}   # (env, step) -> (return, length) of the episode that ended there
        for k, i in enumerate(r.episode_envs):
            t = np.flatnonzero(dones[i])[sum(e == i for e in r.episode_envs[:k])]
            ended[i, int(t)] = (r.episode_returns[k], r.episode_lengths[k])
        episode_starts = self._last_episode_starts
        t_start = monitors[0].t_start if monitors else self._t_start
        for t in range(n_rollout_steps):
            rewards = r.rewards[:, t].astype(np.float32)
            if norm is not None:
                if norm.training:
                    norm._update_reward(rewards)
                rewards = norm.normalize_reward(rewards).astype(np.float32)
                norm.returns[dones[:, t]] = 0
            rewards = rewards.copy()
            bootstrap = r.truncated[:, t] & ~r.terminated[:, t]
            if bootstrap.any():
                final = r.final_obs[bootstrap, t]
                if norm is not None:
                    final = norm.normalize_obs(final)
                with th.no_grad():
                    v = self.policy.predict_values(obs_as_tensor(final, self.device))
                rewards[bootstrap] += self.gamma * v.flatten().cpu().numpy()
            rollout_buffer.add(x["obs"][:, t], x["action"][:, t], rewards, episode_starts,
                               th.as_tensor(x["value"][:, t]), th.as_tensor(x["log_prob"][:, t]))
            episode_starts = dones[:, t]
            infos = [{} for _ in range(n)]
            for i in np.flatnonzero(dones[:, t]):
                ret, length = ended[int(i), t]
                episode = {"r": ret, "l": length, "t": round(time.time() - t_start, 6)}
                infos[i] = {"episode": episode, "TimeLimit.truncated": bool(bootstrap[i])}
                for monitor in monitors:   # VecMonitor's count and monitor.csv row
                    monitor.episode_count += 1
                    if monitor.results_writer:
                        monitor.results_writer.write_row(episode)
            self.num_timesteps += n
            callback.update_locals({"infos": infos, "dones": dones[:, t], "rewards": rewards})
            if not callback.on_step():
                self._keep(r, norm)
                return False
            self._update_info_buffer(infos, dones[:, t])
        self._keep(r, norm)
        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(self._last_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones[:, -1])
        callback.update_locals({"rollout": r})
        callback.on_rollout_end()
        return True

    def _keep(self, r, norm):
        """Where the next rollout starts, as ``PPO`` keeps it."""
        last = norm.normalize_obs(r.last_obs) if norm is not None else r.last_obs
        self._last_obs = self._handed_obs = last
        self._last_episode_starts = r.dones[:, -1]
        if norm is not None:
            norm.old_obs = r.last_obs


__all__ = ["PipelinedPPO"]
