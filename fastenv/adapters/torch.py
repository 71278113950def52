"""torch: an :class:`~fastenv.vector.OsimVectorEnv` whose batches are torch tensors.

On the CPU (the default device) with ``copy=False`` (the default), observations,
rewards and flags of ``reset``/``step`` are ``torch.from_numpy`` views of the env's
shared memory: no copy at all, and the next ``step``/``reset`` overwrites them. Keep
one across steps with ``.clone()``, or make the adapter with ``copy=True`` (one copy
per step). Writing into such a tensor writes into the env's buffer. Rewards keep the
env's float64.

On a CUDA device, observations, rewards, flags and ``final_obs`` are copied into
page-locked (pinned) staging buffers and from there to the device with
``non_blocking=True`` on the current stream, so the transfer overlaps the policy's
work; the device tensors are fresh. A staging buffer is reused once its previous
transfer has finished (a CUDA event per buffer). Infos other than ``final_obs``
stay on the host.

Actions and env ids may be tensors on any device (they are moved to the host), NumPy
arrays or lists. Autoreset, ``final_obs`` and infos follow the wrapped env
(:mod:`fastenv.adapters.arrays`).

>>> from fastenv.adapters.torch import make_vec
>>> envs = make_vec("TorqueWalkingImitation2D-v0", num_envs=4, num_workers=2)  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch

from fastenv.adapters.arrays import ArrayVectorEnv
from fastenv.vector import OsimVectorEnv


def make_vec(task: str, num_envs: int = 1, *, device: str | torch.device | None = None,
             copy: bool = False, **options) -> TorchVectorEnv:
    """A :class:`TorchVectorEnv` over a new ``OsimVectorEnv(task, num_envs, copy=False,
    **options)`` (vector and env options as for ``gym.make_vec``)."""
    _device(device)   # a bad device fails before the workers start, not seconds after
    return TorchVectorEnv(OsimVectorEnv(task, num_envs, copy=False, **options),
                          device=device, copy=copy)


def _device(device) -> torch.device:
    """``device`` as a ``torch.device`` that this machine has."""
    try:
        checked = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device or its name ('cpu', "
                         f"'cuda:0'), got {device!r}") from None
    if checked.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but torch sees no CUDA device")
    if checked.type == "meta":
        raise ValueError(f"device={device!r} holds no data; expected a device such as 'cpu' "
                         "or 'cuda:0'")
    if checked.type not in ("cpu", "cuda"):   # mps, xpu, ...: a tensor there says if it works
        try:
            torch.empty(1, device=checked)
        except Exception as exc:
            raise ValueError(f"device={device!r} cannot hold a tensor here "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return checked


class TorchVectorEnv(ArrayVectorEnv):
    """``env``'s batches as torch tensors on ``device`` (default CPU).

    ``copy=False`` (CPU only): observations, rewards and flags share the env's memory
    and are overwritten by its next step. ``pin_memory`` (default: whether ``device``
    is CUDA) stages device-bound batches in pinned host memory for asynchronous copies.
    """

    def __init__(self, env: OsimVectorEnv, *, device: str | torch.device | None = None,
                 copy: bool = False, pin_memory: bool | None = None):
        super().__init__(env, copy=copy)
        self.device = _device(device)
        pin = self.device.type == "cuda" if pin_memory is None else bool(pin_memory)
        if pin and self.device.type != "cuda":
            raise ValueError(f"pin_memory=True stages copies to a CUDA device; device is "
                             f"{self.device}")
        self.pin_memory = pin
        self._staging: dict[str, tuple[torch.Tensor, torch.cuda.Event]] = {}

    def _array(self, x, *, name, shared, to_device):
        if to_device and self.device.type != "cpu":
            if self.pin_memory:
                return self._stage(name, x)
            return torch.from_numpy(x).to(self.device)
        t = torch.from_numpy(x)
        return t.clone() if shared and self.copy else t

    def _stage(self, name: str, x: np.ndarray) -> torch.Tensor:
        """``x`` through the pinned buffer ``name`` to the device, asynchronously."""
        buf, copied = self._staging.get(name, (None, None))
        if buf is None or buf.shape[1:] != x.shape[1:] or buf.dtype != _DTYPES[x.dtype]:
            rows = max(self.env.num_envs, len(x))
            buf = torch.empty((rows, *x.shape[1:]), dtype=_DTYPES[x.dtype],
                              pin_memory=True)
            copied = torch.cuda.Event()
        else:
            copied.synchronize()   # its previous transfer has left the buffer
        host = buf[:len(x)]
        host.copy_(torch.from_numpy(x))
        out = host.to(self.device, non_blocking=True)
        copied.record(torch.cuda.current_stream(self.device))
        self._staging[name] = (buf, copied)
        return out

    def _host(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            if x.dtype == torch.bfloat16:   # autocast's output; NumPy has no bfloat16
                x = x.float()
            return x.detach().cpu().numpy()
        return np.asarray(x)


_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
           np.dtype(np.bool_): torch.bool, np.dtype(np.int64): torch.int64,
           np.dtype(np.int32): torch.int32}


__all__ = ["TorchVectorEnv", "make_vec"]
