"""Shared-memory layout: every per-env array of the pool in one segment.

The parent creates the segment once; workers attach by name and build the same
NumPy views, so per-step data (actions, seeds and start frames in; observations,
rewards, flags, info scalars, final observations, step counts and progress times out)
never travels through pipes or pickles. Row ``i`` of every array belongs to env ``i``:
the parent writes its inputs, and its outputs are written by the one worker that owns
the env (or by the parent, for the envs of a worker it respawns).

Which infos are scalars is the env's business: its ``info_scalars`` attribute
(name -> dtype), reported by the workers at start-up, becomes one field of the
structured ``info``/``final_info`` arrays per name, in its own dtype. Any other
info key (``sim_error`` messages) rides along with the worker's completion message.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

ALIGN = 64  # bytes: keep every array on its own cache lines


@dataclass(frozen=True)
class LayoutSpec:
    num_envs: int
    obs_dim: int
    act_dim: int
    obs_dtype: str
    info_scalars: tuple = ()   # ((name, dtype str), ...) from the env's info_scalars

    @property
    def info_dtype(self) -> np.dtype:
        return np.dtype([(k, np.dtype(t)) for k, t in self.info_scalars], align=True)

    def arrays(self):
        n, d, a, k = self.num_envs, self.obs_dim, self.act_dim, len(self.info_scalars)
        return (
            ("actions", (n, a), np.float64),
            ("obs", (n, d), np.dtype(self.obs_dtype)),
            ("reward", (n,), np.float64),
            ("terminated", (n,), np.bool_),
            ("truncated", (n,), np.bool_),
            ("info", (n,), self.info_dtype),
            ("info_present", (n, k), np.bool_),
            ("final", (n,), np.bool_),            # SAME_STEP: this row was reset
            ("final_obs", (n, d), np.dtype(self.obs_dtype)),
            ("final_reward", (n,), np.float64),
            ("final_info", (n,), self.info_dtype),
            ("final_info_present", (n, k), np.bool_),
            ("seed", (n,), np.int64),
            ("seed_set", (n,), np.bool_),
            ("start_frame", (n,), np.int64),      # reset option, -1 = none
            ("steps", (n,), np.int64),            # env steps taken (diagnostics)
            ("progress", (n,), np.float64),       # time.monotonic() of the env's last
                                                  # finished step/reset (hang detection)
        )

    def offsets(self):
        out, pos = {}, 0
        for name, shape, dtype in self.arrays():
            pos = (pos + ALIGN - 1) // ALIGN * ALIGN
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            out[name] = (pos, shape, np.dtype(dtype))
            pos += nbytes
        return out, max(pos, 1)


class SharedArrays:
    """Named NumPy views on one shared-memory segment (create or attach)."""

    def __init__(self, spec: LayoutSpec, name: str | None = None):
        self.spec = spec
        offsets, size = spec.offsets()
        self.owner = name is None
        if self.owner:
            self.shm = shared_memory.SharedMemory(create=True, size=size)
            self.name, buf = self.shm.name, self.shm.buf
        else:
            # Workers map the segment directly: attaching through SharedMemory would
            # register it with the (shared) resource tracker before Python 3.13, which
            # could unlink it behind the parent's back. Only the parent unlinks.
            import _posixshmem
            fd = _posixshmem.shm_open("/" + name.lstrip("/"), os.O_RDWR, mode=0o600)
            try:
                self.shm = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self.name, buf = name, self.shm
        self.views = {}
        for key, (off, shape, dtype) in offsets.items():
            arr = np.ndarray(shape, dtype=dtype, buffer=buf, offset=off)
            self.views[key] = arr
            setattr(self, key, arr)
        if self.owner:   # a new segment is zero-filled by the kernel
            self.start_frame.fill(-1)

    def close(self, unlink: bool | None = None):
        """Drop the views, close the mapping and (owner) unlink the segment."""
        if self.shm is None:
            return
        for key in list(self.views):
            delattr(self, key)
        self.views.clear()
        shm, self.shm = self.shm, None
        try:
            shm.close()
        except BufferError:  # a caller still holds a view (copy=False); unlink anyway
            pass
        if self.owner and (unlink is None or unlink):
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
