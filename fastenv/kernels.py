"""Kernels: compiled (``fastenv._kernels``) and their NumPy reference twins.

The ``*_numpy`` functions are the specification: same arguments, same operation
order (sums run over the element index in order; ``exp``/``sqrt`` are libm's through
``math``), so the compiled versions can be tested for bitwise equality. The env and
the pool call the compiled versions, re-exported here under the plain names.
The metabolic-cost kernel's NumPy twin lives in ``fastenv.metabolic`` with its
muscle constants.
"""
from __future__ import annotations

import math

import numpy as np

from fastenv._kernels import (  # noqa: F401  (re-exported)
    gather_observation,
    gather_observation64,
    imitation_reward,
    metabolic_rate,
    pd_control,
    rasterize,
    smooth_action,
    torque_cost,
    tracking_reward,
)

_exp = np.frompyfunc(math.exp, 1, 1)
_sqrt = np.frompyfunc(math.sqrt, 1, 1)


def _libm(f, x):
    return np.asarray(f(x), dtype=np.float64)


def gather_observation_numpy(buf, src, ref, scale, dtype=np.float32):
    return ((buf[:, src] - buf[:, ref]) * scale).astype(dtype)


def smooth_action_numpy(history, count, action):
    """Returns (new history, smoothed action); does not modify its inputs."""
    history = history.copy()
    n_env, horizon, _ = history.shape
    out = np.empty_like(action)
    for e in range(n_env):
        history[e, count[e] % horizon] = action[e]
        filled = min(count[e] + 1, horizon)
        s = np.zeros(action.shape[1])
        for h in range(filled):
            s = s + history[e, h]
        out[e] = s / filled
    return history, out


def pd_control_numpy(action, lower, upper, q, qdot, kp, kd, max_actuation):
    """Returns (torque, target)."""
    target = lower + (action + 1.0) * 0.5 * (upper - lower)
    torque = np.minimum(np.maximum(kp * (target - q) - kd * qdot, -max_actuation),
                        max_actuation)
    return torque, target


def _sum_sq(d):
    s = np.zeros(d.shape[0])
    for j in range(d.shape[1]):
        s = s + d[:, j] * d[:, j]
    return s


def imitation_reward_numpy(q, q_ref, com, com_ref, action, prev_action, effort_cost,
                           w_imitate, w_effort, w_action):
    """Columns: total, imitation, effort, smoothness, joint MSE, squared COM error."""
    mse = _sum_sq(q - q_ref) / q.shape[1]
    cerr = _sum_sq(com - com_ref)
    da = _sum_sq(action - prev_action)
    imit = (0.5 + w_imitate) * _libm(_exp, -30.0 * mse) * _libm(_exp, -20.0 * cerr)
    eff = _libm(_exp, -effort_cost)
    smooth = _libm(_exp, -_libm(_sqrt, da))
    return np.stack([imit + w_effort * eff + w_action * smooth, imit, eff, smooth,
                     mse, cerr], axis=1)


REWARD_TERMS = ("total", "imitation", "effort", "smoothness", "joint_mse", "com_error")


def tracking_reward_numpy(q, q_ref, qdot, qdot_ref, com_vel, com_vel_ref, com, com_ref,
                          action, prev_action, effort_cost, w_imitate, w_effort, w_action):
    """Columns: TRACKING_REWARD_TERMS (see ``_kernels.tracking_reward``)."""
    mse = _sum_sq(q - q_ref) / q.shape[1]
    vse = _sum_sq(qdot - qdot_ref) / q.shape[1]
    cverr = _sum_sq(com_vel - com_vel_ref)
    cerr = _sum_sq(com - com_ref)
    da = _sum_sq(action - prev_action)
    pose = _libm(_exp, -10.0 * mse)
    vel = _libm(_exp, -0.1 * vse)
    cvel = _libm(_exp, -10.0 * cverr)
    imit = (0.5 + w_imitate) * (0.6 * pose + 0.2 * vel + 0.2 * cvel)
    eff = _libm(_exp, -effort_cost)
    smooth = _libm(_exp, -_libm(_sqrt, da))
    return np.stack([imit + w_effort * eff + w_action * smooth, imit, eff, smooth, mse, cerr,
                     pose, vel, cvel], axis=1)


TRACKING_REWARD_TERMS = (*REWARD_TERMS, "pose", "velocity", "com_velocity")


def torque_cost_numpy(torque, max_actuation):
    return _libm(_sqrt, _sum_sq(torque / max_actuation) / torque.shape[1])


def rasterize_numpy(vertices, triangles, colors, depth, image):
    """Twin of ``_kernels.rasterize``: one triangle at a time (later ones see the depth
    the earlier ones wrote), the pixels of its bounding box at once; writes in place."""
    H, W = depth.shape
    for t, (a, b, c) in enumerate(triangles):
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = vertices[a], vertices[b], vertices[c]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if not (area > 0.0 or area < 0.0) or not np.isfinite([z0, z1, z2]).all():
            continue
        lo_x, hi_x = max(min(x0, x1, x2), 0.0), min(max(x0, x1, x2), W - 1.0)
        lo_y, hi_y = max(min(y0, y1, y2), 0.0), min(max(y0, y1, y2), H - 1.0)
        if not (lo_x <= hi_x and lo_y <= hi_y):
            continue
        iy, ix = np.mgrid[int(math.floor(lo_y)):int(hi_y) + 1, int(math.floor(lo_x)):int(hi_x) + 1]
        py, px = iy + 0.5, ix + 0.5
        w0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
        w1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
        w2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
        inside = ((w0 >= 0) & (w1 >= 0) & (w2 >= 0)) if area > 0 else \
            ((w0 <= 0) & (w1 <= 0) & (w2 <= 0))
        z = (w0 * z0 + w1 * z1 + w2 * z2) / area
        hit = inside & (z < depth[iy, ix])
        depth[iy[hit], ix[hit]] = z[hit]
        image[iy[hit], ix[hit]] = colors[t]
