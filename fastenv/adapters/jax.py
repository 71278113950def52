"""JAX: an :class:`~fastenv.vector.OsimVectorEnv` whose batches are JAX arrays.

JAX arrays are immutable and JAX dispatches computations asynchronously, also on the
CPU: a computation queued on an array that aliases shared memory can run after the
next step has overwritten it (measured here with jax 0.10: a reduction dispatched
before the write returned the written values). The default is therefore
``copy=True``: one copy of each batch into a buffer of JAX's own.

``copy=False`` on the CPU hands the shared buffers to JAX through DLPack
(``jnp.from_dlpack``): observations and flags alias the env's memory (they start on
64-byte boundaries, which XLA needs to alias), the next ``step``/``reset`` overwrites
them, and everything that reads them must have finished first
(``jax.block_until_ready``) or the results may mix two steps. Rewards are float64:
JAX converts them to float32 (a copy of ``num_envs`` numbers) unless
``jax_enable_x64`` is set. ``jnp.asarray(x, copy=False)`` would not help: it copies
NumPy arrays silently.

On an accelerator (``device``, e.g. ``jax.devices("gpu")[0]``; without ``device``,
JAX's default device, which is the GPU where JAX sees one) observations, rewards,
flags and ``final_obs`` go there with ``jax.device_put``, which returns at once and
copies asynchronously from a host copy that nothing else writes; the device arrays
are fresh, whatever ``copy`` says. Other infos stay on the host (CPU arrays).

Actions and env ids may be JAX arrays on any device (``np.asarray`` brings them to the
host), NumPy arrays or lists. Autoreset, ``final_obs`` and infos follow the wrapped env
(:mod:`fastenv.adapters.arrays`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fastenv.adapters.arrays import ArrayVectorEnv
from fastenv.vector import OsimVectorEnv


def make_vec(task: str, num_envs: int = 1, *, device=None, copy: bool = True,
             **options) -> JaxVectorEnv:
    """A :class:`JaxVectorEnv` over a new ``OsimVectorEnv(task, num_envs, copy=False,
    **options)`` (vector and env options as for ``gym.make_vec``)."""
    _device(device)   # a bad device fails before the workers start, not seconds after
    return JaxVectorEnv(OsimVectorEnv(task, num_envs, copy=False, **options),
                        device=device, copy=copy)


class JaxVectorEnv(ArrayVectorEnv):
    """``env``'s batches as JAX arrays on ``device`` (a ``jax.Device`` or a platform
    name such as ``"cpu"`` or ``"gpu"``; default: JAX's default device).

    ``copy=False`` on a CPU device: observations and flags share the env's memory and
    are overwritten by its next step; see the module docstring before using it. On an
    accelerator the batches are fresh device arrays either way.
    """

    def __init__(self, env: OsimVectorEnv, *, device=None, copy: bool = True):
        super().__init__(env, copy=copy)
        self.device = _device(device)
        self.host = jax.devices("cpu")[0]

    def _array(self, x, *, name, shared, to_device):
        target = self.device if to_device else self.host
        if target.platform != "cpu":
            # device_put reads x after it returns: never let it read shared memory
            return jax.device_put(x.copy() if shared else x, target)
        # host arrays name the CPU device rather than rely on JAX's placement rules,
        # since JAX's default device is the GPU wherever it sees one
        if not shared:
            # a fresh x is the caller's alone: device_put may alias it or copy it
            return jax.device_put(x, target)
        if self.copy:
            return jnp.array(x, copy=True, device=target)
        # aliases the env's buffer (64-byte aligned, which XLA needs to alias)
        return jnp.from_dlpack(x, device=target)

    def _host(self, x) -> np.ndarray:
        a = np.asarray(x)
        # bfloat16 (mixed precision's output) comes as ml_dtypes' type, which NumPy does
        # not count as a real number: widen it as float16 is
        return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def _device(device) -> jax.Device:
    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    if isinstance(device, str):
        platform, _, index = device.partition(":")
        try:
            devices = jax.devices(platform)
            return devices[int(index or 0)]
        except (RuntimeError, ValueError, IndexError):
            pass
    raise ValueError(f"device must be a jax.Device or a platform name with an optional "
                     f"index ('cpu', 'gpu:0'), got {device!r}; JAX has {jax.devices()}")


__all__ = ["JaxVectorEnv", "make_vec"]
