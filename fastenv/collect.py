"""Pipelined rollout collection: the policy runs on some envs while the others step.

With a policy in the loop, a synchronous ``step`` makes the workers wait for the
policy and the policy wait for the slowest env. :class:`PipelinedCollector` uses the
envpool-style API of :class:`~fastenv.vector.OsimVectorEnv` instead: ``recv()``
returns the first ``batch_size`` envs to finish, the policy acts on those, ``send()``
starts them again, and meanwhile the workers step the envs still in flight. With
``batch_size = num_envs // 2`` one half steps while the policy runs on the other.

Each env's transitions come out in its own order, and equal those of stepping it
alone with the same seed and policy (``tests/test_collect.py``): batching changes which
envs the policy sees together, never what an env does. The env must be in
``SameStep`` autoreset mode, so that every row ``recv`` returns is one whole
transition, the episode's last observation in ``final_obs``.

This module knows no learning library: the policy is any callable on NumPy batches.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from gymnasium.vector import AutoresetMode

from fastenv.envs import is_int
from fastenv.vector import OsimVectorEnv


@dataclass
class Rollout:
    """``steps`` transitions of each of ``num_envs`` envs, indexed ``[env, step]``.

    ``obs[i, t]`` is what env ``i`` observed before its action ``actions[i, t]``;
    ``rewards``, ``terminated`` and ``truncated`` are that step's outcome;
    ``final_obs[i, t]`` is the episode's last observation where the step ended it
    (zero elsewhere), as the vector env's ``info["final_obs"]``; ``last_obs[i]`` is the
    observation after env ``i``'s last step (the next rollout's first, for bootstrapping).
    ``extras`` holds what the policy returned besides actions (values, log-probabilities),
    ``[env, step]`` as well. ``episode_returns``/``episode_lengths`` list the episodes
    that ended during the rollout (counted from their start, also in an earlier rollout),
    and ``episode_envs`` which env each was.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    last_obs: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    episode_envs: list[int] = field(default_factory=list)

    @property
    def dones(self) -> np.ndarray:
        return self.terminated | self.truncated

    @property
    def next_obs(self) -> np.ndarray:
        """The observation after each action: the next ``obs``, ``final_obs`` where the
        episode ended, ``last_obs`` after the last step (a new array)."""
        nxt = np.concatenate([self.obs[:, 1:], self.last_obs[:, None]], axis=1)
        ended = self.dones
        nxt[ended] = self.final_obs[ended]
        return nxt


Policy = Callable[[np.ndarray], "np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]"]


class PipelinedCollector:
    """Collects :class:`Rollout`\\ s from ``envs`` with ``policy`` in the loop.

    ``envs``: an ``OsimVectorEnv`` in ``SameStep`` autoreset mode. ``batch_size``
    (default: the env's) is how many envs the policy sees at once: ``num_envs // 2``
    pipelines two halves, ``num_envs`` is lock-step, like ``step``. ``policy(obs)``
    takes a ``(batch, obs_dim)`` array and returns actions, or ``(actions, extras)``
    with a dict of per-row arrays to keep in ``Rollout.extras``. Envs are reset with
    ``seed`` at the first ``collect`` (env ``i`` gets ``seed + i``), unless ``start``
    says they are ready, and continue their episodes from one rollout to the next.
    """

    def __init__(self, envs: OsimVectorEnv, policy: Policy, *, seed: int | None = None,
                 batch_size: int | None = None):
        if not isinstance(envs, OsimVectorEnv):
            raise TypeError(f"envs must be an OsimVectorEnv, got {type(envs).__name__}")
        if envs.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"envs must be in SameStep autoreset mode (each row a whole "
                             f"transition), got {envs.autoreset_mode.value}; make them "
                             "with autoreset_mode='SameStep'")
        if not callable(policy):
            raise TypeError(f"policy must be callable (obs -> actions), got {policy!r}")
        n = envs.num_envs
        batch_size = envs.batch_size if batch_size is None else batch_size
        if not (is_int(batch_size) and 1 <= batch_size <= n):
            raise ValueError(f"batch_size must be an int in [1, num_envs={n}], got "
                             f"{batch_size!r}")
        self.envs, self.policy, self.seed = envs, policy, seed
        self.batch_size = int(batch_size)
        space = envs.single_observation_space
        self._obs = np.zeros((n, *space.shape), dtype=space.dtype)  # what each env acts on
        self._in_flight = np.zeros(n, dtype=bool)
        self._acting = np.zeros(n, dtype=bool)    # in flight with an action, not a reset
        self._return = np.zeros(n)                # the running episode's return and length
        self._length = np.zeros(n, dtype=np.int64)
        self._started = False

    def reset(self, seed: int | None = None):
        """Start new episodes in every env at the next ``collect`` (``seed`` as in
        ``reset``)."""
        self.seed, self._started = seed, False

    def start(self, obs: np.ndarray):
        """Collect from envs that are idle with observations ``obs`` (after a ``reset``
        or ``step`` of the caller's) instead of resetting them; episodes count from here."""
        obs = np.asarray(obs)
        if obs.shape != self._obs.shape:
            raise ValueError(f"obs has shape {obs.shape}; expected {self._obs.shape}")
        if self._in_flight.any():
            raise ValueError("start() called while envs are in flight; expected idle envs")
        self._obs[:] = obs
        self._return[:], self._length[:] = 0.0, 0
        self._started = True

    def collect(self, steps: int) -> Rollout:
        """``steps`` transitions of every env, the policy acting as envs come back."""
        if not (is_int(steps) and steps >= 1):
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        envs, n = self.envs, self.envs.num_envs
        space = envs.single_action_space
        obs_shape, obs_dtype = self._obs.shape[1:], self._obs.dtype
        r = Rollout(obs=np.zeros((n, steps, *obs_shape), obs_dtype),
                    actions=np.zeros((n, steps, *space.shape), space.dtype),
                    rewards=np.zeros((n, steps)),
                    terminated=np.zeros((n, steps), bool),
                    truncated=np.zeros((n, steps), bool),
                    final_obs=np.zeros((n, steps, *obs_shape), obs_dtype),
                    last_obs=self._obs)
        t = np.zeros(n, dtype=np.int64)      # next step of each env in this rollout
        if self._in_flight.any():   # an earlier collect was interrupted: drop its steps
            envs.drop_in_flight()
            self._in_flight[:], self._started = False, False
        if not self._started:
            envs.async_reset(self.seed)
            self._in_flight[:], self._acting[:] = True, False
            self._return[:], self._length[:] = 0.0, 0
            self._started = True
        else:   # every env is idle with its observation: start them batch by batch
            for ids in np.array_split(np.arange(n), -(-n // self.batch_size)):
                self._act(ids, r, t)
        while self._in_flight.any():
            pending = int(self._in_flight.sum())
            obs, reward, terminated, truncated, info = envs.recv(
                batch_size=min(self.batch_size, pending))
            ids = info["env_id"]
            self._in_flight[ids] = False
            stepped = self._acting[ids]
            for row in np.flatnonzero(stepped):
                self._record(int(ids[row]), r, int(t[ids[row]]), reward[row],
                             terminated[row], truncated[row], info, row)
            t[ids[stepped]] += 1
            self._acting[ids] = False
            self._obs[ids] = obs
            go = ids[t[ids] < steps]
            if len(go):
                self._act(go, r, t)
        r.last_obs = self._obs.copy()
        return r

    def _act(self, ids: np.ndarray, r: Rollout, t: np.ndarray):
        """Run the policy on envs ``ids``, record its output at their next step, send."""
        obs = self._obs[ids]
        out = self.policy(obs)
        actions, extras = out if isinstance(out, tuple) else (out, {})
        actions = np.asarray(actions)
        if actions.shape != (len(ids), *r.actions.shape[2:]):
            raise ValueError(f"policy returned actions of shape {actions.shape} for "
                             f"{len(ids)} observations; expected "
                             f"{(len(ids), *r.actions.shape[2:])}")
        k = t[ids]
        r.obs[ids, k] = obs
        r.actions[ids, k] = actions   # in the action space's dtype: what the env gets
        for key, value in extras.items():
            value = np.asarray(value)
            if key not in r.extras:
                r.extras[key] = np.zeros((*r.rewards.shape, *value.shape[1:]), value.dtype)
            r.extras[key][ids, k] = value
        self.envs.send(r.actions[ids, k], ids)
        self._in_flight[ids] = self._acting[ids] = True

    def _record(self, i: int, r: Rollout, k: int, reward, terminated, truncated, info,
                row: int):
        r.rewards[i, k] = reward
        r.terminated[i, k], r.truncated[i, k] = terminated, truncated
        self._return[i] += reward
        self._length[i] += 1
        if terminated or truncated:
            r.final_obs[i, k] = info["final_obs"][row]
            r.episode_returns.append(float(self._return[i]))
            r.episode_lengths.append(int(self._length[i]))
            r.episode_envs.append(i)
            self._return[i], self._length[i] = 0.0, 0


__all__ = ["PipelinedCollector", "Rollout"]
