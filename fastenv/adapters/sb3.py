"""Stable-Baselines3: an SB3 ``VecEnv`` backed by one :class:`~fastenv.vector.OsimVectorEnv`.

SB3's conventions differ from Gymnasium's vector API: ``reset()`` returns only the
observations (infos go to ``reset_infos``), ``step_wait()`` returns
``(obs, rewards, dones, infos)`` with one info dict per env, and an env that ends is
reset in the same step, its last observation in ``info["terminal_observation"]`` and
``info["TimeLimit.truncated"]`` telling a time limit from a termination. The pool
therefore runs in Gymnasium's ``SameStep`` autoreset mode, whose ``final_obs`` and
``final_info`` map one to one onto SB3's fields; transitions are identical to SB3's
``DummyVecEnv`` over single envs with the same seeds (``tests/test_sb3.py``).

>>> from fastenv.adapters.sb3 import make_vec_env
>>> env = make_vec_env("TorqueWalkingImitation2D-v0", n_envs=4, seed=0)  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from fastenv.envs import is_int
from fastenv.vector import OsimVectorEnv, learner_vector_options


def make_vec_env(task_id: str, n_envs: int = 1, seed: int | None = None,
                 **options) -> FastenvVecEnv:
    """An SB3 ``VecEnv`` of ``n_envs`` envs of ``task_id`` on one shared-memory pool.

    ``options`` are env options (``mode``, ``r_weights``, ...) and vector options
    (``num_workers``, ``step_timeout``, ...) as for ``gym.make_vec``; env ``i`` gets seed
    ``seed + i`` at the first ``reset()``, as with SB3's own ``make_vec_env``.
    """
    if "num_envs" in options:   # gym.make_vec's name would collide with n_envs
        raise ValueError(f"num_envs={options['num_envs']!r}: make_vec_env takes SB3's "
                         "n_envs instead")
    # SB3 resets an ended env in the same step and keeps the arrays step_wait returns
    options = learner_vector_options(options, "SB3", AutoresetMode.SAME_STEP)
    env = FastenvVecEnv(OsimVectorEnv(task_id, n_envs, **options))
    if seed is not None:
        try:
            env.seed(seed)
        except ValueError:
            env.close()   # its workers are running already
            raise
    return env


class FastenvVecEnv(VecEnv):
    """SB3 view of an :class:`OsimVectorEnv` in ``SameStep`` autoreset mode."""

    def __init__(self, venv: OsimVectorEnv):
        if venv.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"FastenvVecEnv needs an OsimVectorEnv with autoreset_mode="
                             f"SameStep, got {venv.autoreset_mode}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space,
                         venv.single_action_space)
        self.metadata["render_fps"] = venv.metadata["render_fps"]   # VecVideoRecorder's

    def seed(self, seed: int | None = None):
        """Env ``i`` gets ``seed + i`` at the next ``reset()`` (SB3's rule); a seed that
        is not None or an int >= 0 whose ``seed + i`` fit in int64 (the pool's seeds) is
        refused here, not at that reset."""
        top = np.iinfo(np.int64).max - (self.num_envs - 1)
        if seed is not None and not (is_int(seed) and 0 <= seed <= top):
            raise ValueError(f"seed must be None or an int >= 0 and <= {top} (env i gets "
                             f"seed + i, an int64), got {seed!r}")
        return super().seed(seed)

    # ------------------------------------------------------------------ stepping
    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        start_frames = {o.get("start_frame") for o in self._options}
        unknown = sorted({k for o in self._options for k in o} - {"start_frame"})
        if unknown or len(start_frames) > 1:
            raise ValueError(f"reset options {self._options}: only one start_frame shared "
                             "by all envs is supported")
        frame = start_frames.pop()
        # SB3's reset cancels a step_async not waited for; an interrupted step_wait or
        # PipelinedPPO rollout (Ctrl-C) leaves envs stepping too
        self.venv.drop_in_flight()
        obs, info = self.venv.reset(
            seed=seeds, options=None if frame is None else {"start_frame": frame})
        self.reset_infos = _split_infos(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.venv.step_wait()
        dones = terminated | truncated
        infos = _split_infos(info, self.num_envs)
        if dones.any():
            final = _split_infos(info.get("final_info", {}), self.num_envs)
            for i in np.flatnonzero(dones):
                # the env was reset in this step: its info so far is the reset's
                self.reset_infos[i] = infos[i]
                infos[i] = final[i]
                infos[i]["terminal_observation"] = info["final_obs"][i]
                # a restarted worker's envs end with a stand-in observation: say so
                # where SB3 and callbacks look, beside it (Gymnasium puts it in the
                # reset's info)
                for key in RESTART_INFO:
                    if key in self.reset_infos[i]:
                        infos[i][key] = self.reset_infos[i][key]
        for i in range(self.num_envs):
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ env access
    # no indices (``[]``) is no env, as in SB3's own VecEnvs; the pool refuses empty ids
    def get_attr(self, attr_name: str, indices=None) -> list:
        ids = self._ids(indices)
        return list(self.venv.get_attr(attr_name, env_ids=ids)) if ids else []

    def has_attr(self, attr_name: str) -> bool:
        """Whether every env has ``attr_name``; its value stays in the workers (SB3's
        default fetches it, and an OpenSim object cannot be sent)."""
        return all(self.venv.has_attr(attr_name))

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        ids = self._ids(indices)
        if ids:
            self.venv.set_attr(attr_name, [value] * len(ids), env_ids=ids)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        # every keyword goes to the method, ``name`` (get_wrapper_attr's) included
        ids = self._ids(indices)
        return list(self.venv.call_envs(method_name, ids, method_args,
                                        method_kwargs)) if ids else []

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        """Always False: the workers hold bare envs (wrappers go around this VecEnv,
        e.g. ``VecMonitor`` and ``VecNormalize``)."""
        return [False] * len(self._ids(indices))

    def get_images(self):
        """Every env's frame (``render_mode="rgb_array"``; SB3's ``render`` tiles them)."""
        if self.venv.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.venv.render())

    def _ids(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            indices = [indices]
        if not isinstance(indices, Iterable) or isinstance(indices, (str, bytes)):
            raise ValueError(f"indices must be None, an int or a list of ints, got "
                             f"{indices!r}")
        indices, ids = list(indices), []
        for i in indices:   # negative from the end, as SB3's own VecEnvs index
            if not is_int(i):
                raise ValueError(f"index {i!r} is not an int; indices must be None, an "
                                 "int or a list of ints")
            if not -self.num_envs <= i < self.num_envs:
                raise ValueError(f"index {i!r} out of range for {self.num_envs} envs")
            ids.append(int(i) % self.num_envs)
        if len(set(ids)) != len(ids):   # the pool runs one call per env
            raise ValueError(f"indices {indices!r} name an env more than once")
        return ids


#: infos of a worker restart (``OsimVectorEnv``'s faults), copied into the ended step's
#: info dict
RESTART_INFO = ("worker_restarted", "worker_error")


def _split_infos(info: dict, n: int) -> list[dict]:
    """Gymnasium's batched infos (``key`` + ``_key`` mask) as one dict per env, with
    Python scalars as a single env returns them."""
    out = [{} for _ in range(n)]
    for key, values in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = info.get(f"_{key}")
        for i in range(n):
            if mask is None or mask[i]:
                v = values[i]
                out[i][key] = v.item() if isinstance(v, np.generic) else v
    return out
