"""What the torch and JAX adapters share: which outputs of an ``OsimVectorEnv`` become
framework arrays, where they go, and when that needs a copy.

An ``OsimVectorEnv`` made with ``copy=False`` returns the observations, rewards and
flags of ``reset``/``step`` as views into its shared memory, which the next step
overwrites. Such a view becomes a framework array without a copy when the adapter's
``copy`` is False, and with exactly one copy when it is True. Arrays the env returns
fresh (``recv`` batches, partial resets, infos) are not copied again by the adapter
(``jax.device_put`` copies those that do not start on a 64-byte boundary).

Observations, ``final_obs``, rewards and flags go to the adapter's device; the other
infos stay on the host (diagnostics: a transfer per key per step would cost more than
they are worth). ``final_obs`` becomes one dense ``(n, obs_dim)`` batch, zero in the
rows whose episode did not end, beside its ``_final_obs`` mask, so that
``where(_final_obs, final_obs, obs)`` is every row's next observation. Messages
(``sim_error``, ``worker_error``) stay NumPy object arrays.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from fastenv.vector import OsimVectorEnv, ragged_actions


class ArrayVectorEnv(gym.vector.VectorWrapper):
    """Base of :class:`~fastenv.adapters.torch.TorchVectorEnv` and
    :class:`~fastenv.adapters.jax.JaxVectorEnv`: the Gymnasium vector API and the
    envpool-style ``async_reset``/``send``/``recv`` of the wrapped env, in framework
    arrays. Subclasses say how a NumPy array becomes one (``_array``) and back
    (``_host``)."""

    def __init__(self, env: OsimVectorEnv, *, copy: bool):
        if not isinstance(env, OsimVectorEnv):
            raise TypeError(f"{type(self).__name__} wraps an OsimVectorEnv, got "
                            f"{type(env).__name__}")
        if not copy and env.copy:
            raise ValueError(f"{type(self).__name__}(copy=False) shares the env's buffers, "
                             "but the OsimVectorEnv was made with copy=True; make it with "
                             "copy=False (make_vec does) or pass copy=True")
        super().__init__(env)
        self.copy = bool(copy)

    def __del__(self):
        """Leave the wrapped env open: Gymnasium 1.2's ``VectorEnv.__del__`` (the version
        RLlib pins) closes a collected wrapper and so the env under it, e.g. after a
        subclass's ``__init__`` raised on a bad device; the env closes itself."""

    def __enter__(self):
        """``with make_vec(...) as envs:`` closes the workers on leaving, as for the
        ``OsimVectorEnv`` (Gymnasium's ``VectorWrapper`` has no context manager)."""
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # ------------------------------------------------------------------ subclass hooks
    def _array(self, x: np.ndarray, *, name: str, shared: bool, to_device: bool):
        """``x`` as a framework array. ``shared``: a view into shared memory (copy it
        when ``self.copy``); ``to_device``: it goes to the adapter's device (else host);
        ``name``: which output it is (a staging buffer per name)."""
        raise NotImplementedError

    def _host(self, x) -> np.ndarray:
        """Actions or env ids given as framework arrays (on any device) as NumPy."""
        raise NotImplementedError

    # ------------------------------------------------------------------ conversion
    def _out(self, name: str, x: np.ndarray):
        return self._array(x, name=name, shared=not x.flags.owndata, to_device=True)

    def _infos(self, info: dict, n: int) -> dict:
        out = {}
        for key, value in info.items():
            if key == "final_obs":
                space = self.env.single_observation_space
                dense = np.zeros((n, *space.shape), dtype=space.dtype)
                for row in np.flatnonzero(info["_final_obs"]):
                    dense[row] = value[row]
                out[key] = self._array(dense, name=key, shared=False, to_device=True)
            elif key == "_final_obs":
                out[key] = self._array(value, name=key, shared=False, to_device=True)
            elif isinstance(value, dict):          # final_info
                out[key] = self._infos(value, n)
            elif isinstance(value, np.ndarray) and value.dtype != object:
                out[key] = self._array(value, name=key, shared=False, to_device=False)
            else:                                  # messages: strings in object arrays
                out[key] = value
        return out

    def _transition(self, obs, reward, terminated, truncated, info):
        return (self._out("obs", obs), self._out("reward", reward),
                self._out("terminated", terminated), self._out("truncated", truncated),
                self._infos(info, len(obs)))

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed=None, options=None):
        """``options["reset_mask"]`` may be a tensor on any device, e.g. ``terminated |
        truncated`` of the last step, which is on the adapter's device."""
        if options and options.get("reset_mask") is not None:
            options = {**options, "reset_mask": self._host(options["reset_mask"])}
        obs, info = self.env.reset(seed=seed, options=options)
        return self._out("obs", obs), self._infos(info, len(obs))

    def step(self, actions):
        return self._transition(*self.env.step(self._actions(actions, self.num_envs)))

    def step_async(self, actions):
        self.env.step_async(self._actions(actions, self.num_envs))

    def step_wait(self, timeout: float | None = None):
        return self._transition(*self.env.step_wait(timeout))

    def call(self, name, *args, env_ids=None, **kwargs):
        return self.env.call(name, *args, env_ids=self._ids(env_ids), **kwargs)

    def get_attr(self, name, *, env_ids=None):
        return self.env.get_attr(name, env_ids=self._ids(env_ids))

    def set_attr(self, name, values, *, env_ids=None):
        self.env.set_attr(name, values, env_ids=self._ids(env_ids))

    # ------------------------------------------------------------------ envpool-style
    def async_reset(self, seed=None):
        self.env.async_reset(seed)

    def send(self, actions, env_ids):
        """Start stepping ``env_ids`` (e.g. ``info["env_id"]`` of the last ``recv``)."""
        ids = self._host(env_ids)
        self.env.send(self._actions(actions, np.size(ids)), ids)

    def recv(self, timeout: float | None = None, *, batch_size: int | None = None):
        """The first envs to finish, as ``OsimVectorEnv.recv``; ``info["env_id"]`` is a
        host array. The env gathers the rows, so they are fresh: never aliased."""
        return self._transition(*self.env.recv(timeout, batch_size=batch_size))

    def _ids(self, env_ids):
        return None if env_ids is None else self._host(env_ids)

    def _actions(self, actions, n: int) -> np.ndarray:
        """Actions as NumPy; what NumPy cannot read as one array (a ragged list) is
        refused in one line naming the shape the env expects, as a wrong shape is."""
        try:
            return self._host(actions)
        except ValueError as e:
            raise ragged_actions((n, *self.env.single_action_space.shape), e) from None
