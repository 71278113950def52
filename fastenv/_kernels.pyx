# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Compiled kernels: pure math on flat arrays, no OpenSim.

Each function has a NumPy twin in ``fastenv/kernels.py`` written with the same
operation order, and ``tests/test_kernels.py`` proves the two give equal results.
All kernels take 2-D batches (rows = envs) so the pool can run them over many envs
at once; a single env is a batch of one. ``rasterize`` (the renderer's) draws one image.
"""
from libc.math cimport exp, sqrt, fmin, fmax, isfinite
include "_metabolic.pxi"


def gather_observation(const double[:, ::1] buf, const Py_ssize_t[::1] src,
                       const Py_ssize_t[::1] ref, const double[::1] scale,
                       float[:, ::1] out):
    """out[e, k] = (buf[e, src[k]] - buf[e, ref[k]]) * scale[k], cast to float32."""
    cdef Py_ssize_t e, k, n = src.shape[0]
    for e in range(buf.shape[0]):
        for k in range(n):
            out[e, k] = <float>((buf[e, src[k]] - buf[e, ref[k]]) * scale[k])


def gather_observation64(const double[:, ::1] buf, const Py_ssize_t[::1] src,
                         const Py_ssize_t[::1] ref, const double[::1] scale,
                         double[:, ::1] out):
    """Same as gather_observation, float64 output."""
    cdef Py_ssize_t e, k, n = src.shape[0]
    for e in range(buf.shape[0]):
        for k in range(n):
            out[e, k] = (buf[e, src[k]] - buf[e, ref[k]]) * scale[k]


def smooth_action(double[:, :, ::1] history, const Py_ssize_t[::1] count,
                  const double[:, ::1] action, double[:, ::1] out):
    """Moving average of the last ``horizon`` actions.

    history: (envs, horizon, n) ring buffer; the new action goes to row
    ``count[e] % horizon``; out = mean over the min(count[e] + 1, horizon) filled rows,
    summed in row order 0..horizon-1. ``count`` is the number of actions seen before
    this one (the caller increments it).
    """
    cdef Py_ssize_t e, h, j, H = history.shape[1], n = history.shape[2], filled
    cdef double s
    for e in range(history.shape[0]):
        h = count[e] % H
        for j in range(n):
            history[e, h, j] = action[e, j]
        filled = count[e] + 1
        if filled > H:
            filled = H
        for j in range(n):
            s = 0.0
            for h in range(filled):
                s = s + history[e, h, j]
            out[e, j] = s / filled


def pd_control(const double[:, ::1] action, const double[::1] lower,
               const double[::1] upper, const double[:, ::1] q, const double[:, ::1] qdot,
               const double[::1] kp, const double[::1] kd, double max_actuation,
               double[:, ::1] torque, double[:, ::1] target):
    """Actions in [-1, 1] -> target angles in [lower, upper] -> clipped PD torques.

    target = lower + (action + 1) / 2 * (upper - lower)
    torque = clip(kp * (target - q) - kd * qdot, -max_actuation, max_actuation)
    """
    cdef Py_ssize_t e, j, n = action.shape[1]
    cdef double t, tau
    for e in range(action.shape[0]):
        for j in range(n):
            t = lower[j] + (action[e, j] + 1.0) * 0.5 * (upper[j] - lower[j])
            target[e, j] = t
            tau = kp[j] * (t - q[e, j]) - kd[j] * qdot[e, j]
            torque[e, j] = fmin(fmax(tau, -max_actuation), max_actuation)


cdef inline double _action_change(const double[:, ::1] action,
                                  const double[:, ::1] prev_action, Py_ssize_t e):
    """|action - prev_action| of env ``e`` (the smoothness term's argument)."""
    cdef Py_ssize_t j
    cdef double d, da = 0.0
    for j in range(action.shape[1]):
        d = action[e, j] - prev_action[e, j]
        da = da + d * d
    return sqrt(da)


cdef inline void _common_terms(double[:, ::1] terms, Py_ssize_t e, double imit,
                               double effort_cost, double change, double w_effort,
                               double w_action, double mse, double cerr):
    """Columns 0-5, shared by both rewards: total, imitation, effort, smoothness and the
    two diagnostics."""
    cdef double eff = exp(-effort_cost)
    cdef double smooth = exp(-change)
    terms[e, 0] = imit + w_effort * eff + w_action * smooth
    terms[e, 1] = imit
    terms[e, 2] = eff
    terms[e, 3] = smooth
    terms[e, 4] = mse
    terms[e, 5] = cerr


def imitation_reward(const double[:, ::1] q, const double[:, ::1] q_ref,
                     const double[:, ::1] com, const double[:, ::1] com_ref,
                     const double[:, ::1] action, const double[:, ::1] prev_action,
                     const double[::1] effort_cost, double w_imitate, double w_effort,
                     double w_action, double[:, ::1] terms):
    """Reward terms per env; columns of ``terms``:

    0 total = imitation + w_effort * effort + w_action * smoothness
    1 imitation = (0.5 + w_imitate) * exp(-30 * mean((q - q_ref)^2)) * exp(-20 * |com - com_ref|^2)
    2 effort = exp(-effort_cost)
    3 smoothness = exp(-|action - prev_action|)
    4 joint-position MSE, 5 squared COM position error (diagnostics)
    """
    cdef Py_ssize_t e, j, nq = q.shape[1], nc = com.shape[1]
    cdef double mse, cerr, d, imit
    for e in range(q.shape[0]):
        mse = 0.0
        for j in range(nq):
            d = q[e, j] - q_ref[e, j]
            mse = mse + d * d
        mse = mse / nq
        cerr = 0.0
        for j in range(nc):
            d = com[e, j] - com_ref[e, j]
            cerr = cerr + d * d
        imit = (0.5 + w_imitate) * exp(-30.0 * mse) * exp(-20.0 * cerr)
        _common_terms(terms, e, imit, effort_cost[e], _action_change(action, prev_action, e),
                      w_effort, w_action, mse, cerr)


def tracking_reward(const double[:, ::1] q, const double[:, ::1] q_ref,
                    const double[:, ::1] qdot, const double[:, ::1] qdot_ref,
                    const double[:, ::1] com_vel, const double[:, ::1] com_vel_ref,
                    const double[:, ::1] com, const double[:, ::1] com_ref,
                    const double[:, ::1] action, const double[:, ::1] prev_action,
                    const double[::1] effort_cost, double w_imitate, double w_effort,
                    double w_action, double[:, ::1] terms):
    """Reward terms per env, the imitation a sum of separately scaled terms that stay
    informative far from the reference (DeepMimic-style); columns of ``terms``:

    0 total = imitation + w_effort * effort + w_action * smoothness
    1 imitation = (0.5 + w_imitate) * (0.6 * pose + 0.2 * velocity + 0.2 * com_velocity)
    2 effort = exp(-effort_cost), 3 smoothness = exp(-|action - prev_action|)
    4 joint-position MSE, 5 squared COM position error (diagnostics, as imitation_reward)
    6 pose = exp(-10 * mean((q - q_ref)^2))
    7 velocity = exp(-0.1 * mean((qdot - qdot_ref)^2))
    8 com_velocity = exp(-10 * |com_vel - com_vel_ref|^2)
    """
    cdef Py_ssize_t e, j, nq = q.shape[1], nc = com.shape[1]
    cdef double mse, vse, cverr, cerr, d, pose, vel, cvel, imit
    for e in range(q.shape[0]):
        mse = 0.0
        vse = 0.0
        for j in range(nq):
            d = q[e, j] - q_ref[e, j]
            mse = mse + d * d
            d = qdot[e, j] - qdot_ref[e, j]
            vse = vse + d * d
        mse = mse / nq
        vse = vse / nq
        cverr = 0.0
        cerr = 0.0
        for j in range(nc):
            d = com_vel[e, j] - com_vel_ref[e, j]
            cverr = cverr + d * d
            d = com[e, j] - com_ref[e, j]
            cerr = cerr + d * d
        pose = exp(-10.0 * mse)
        vel = exp(-0.1 * vse)
        cvel = exp(-10.0 * cverr)
        imit = (0.5 + w_imitate) * (0.6 * pose + 0.2 * vel + 0.2 * cvel)
        _common_terms(terms, e, imit, effort_cost[e], _action_change(action, prev_action, e),
                      w_effort, w_action, mse, cerr)
        terms[e, 6] = pose
        terms[e, 7] = vel
        terms[e, 8] = cvel


def torque_cost(const double[:, ::1] torque, double max_actuation, double[::1] out):
    """Normalised torque norm: sqrt(mean((torque / max_actuation)^2)), in [0, 1]."""
    cdef Py_ssize_t e, j, n = torque.shape[1]
    cdef double s, x
    for e in range(torque.shape[0]):
        s = 0.0
        for j in range(n):
            x = torque[e, j] / max_actuation
            s = s + x * x
        out[e] = sqrt(s / n)


cdef inline double _min3(double a, double b, double c) nogil:
    if b < a:
        a = b
    return c if c < a else a


cdef inline double _max3(double a, double b, double c) nogil:
    if b > a:
        a = b
    return c if c > a else a


def rasterize(const double[:, ::1] vertices, const int[:, ::1] triangles,
              const unsigned char[:, ::1] colors, double[:, ::1] depth,
              unsigned char[:, :, ::1] image):
    """Z-buffered, flat-coloured triangles into ``image`` (H, W, 3) and ``depth`` (H, W).

    ``vertices`` (n, 3): pixel x (right), pixel y (down) and depth (smaller is nearer);
    ``triangles`` (m, 3) index them, in drawing order; ``colors`` (m, 3) is each
    triangle's already shaded RGB. A pixel is covered when its centre lies inside the
    triangle or on an edge (either winding); it is written when the depth interpolated
    there with the edge-function weights is below ``depth``. Degenerate triangles and
    those with a non-finite vertex are skipped.
    """
    cdef Py_ssize_t t, ix, iy, ix0, ix1, iy0, iy1, a, b, c
    cdef Py_ssize_t H = depth.shape[0], W = depth.shape[1]
    cdef double x0, y0, z0, x1, y1, z1, x2, y2, z2, area, w0, w1, w2, px, py, z
    cdef double lo_x, hi_x, lo_y, hi_y, r0, r1, r2
    for t in range(triangles.shape[0]):
        a = triangles[t, 0]
        b = triangles[t, 1]
        c = triangles[t, 2]
        x0 = vertices[a, 0]
        y0 = vertices[a, 1]
        z0 = vertices[a, 2]
        x1 = vertices[b, 0]
        y1 = vertices[b, 1]
        z1 = vertices[b, 2]
        x2 = vertices[c, 0]
        y2 = vertices[c, 1]
        z2 = vertices[c, 2]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if not (area > 0.0 or area < 0.0) or not (isfinite(z0) and isfinite(z1)
                                                    and isfinite(z2)):
            continue
        lo_x = _min3(x0, x1, x2)
        hi_x = _max3(x0, x1, x2)
        lo_y = _min3(y0, y1, y2)
        hi_y = _max3(y0, y1, y2)
        if lo_x < 0.0:
            lo_x = 0.0
        if hi_x > W - 1.0:
            hi_x = W - 1.0
        if lo_y < 0.0:
            lo_y = 0.0
        if hi_y > H - 1.0:
            hi_y = H - 1.0
        if not (lo_x <= hi_x and lo_y <= hi_y):
            continue
        ix0 = <Py_ssize_t>lo_x     # truncation is floor here: both are >= 0
        ix1 = <Py_ssize_t>hi_x
        iy0 = <Py_ssize_t>lo_y
        iy1 = <Py_ssize_t>hi_y
        for iy in range(iy0, iy1 + 1):
            py = iy + 0.5
            r0 = (x2 - x1) * (py - y1)     # the row's part of each edge function
            r1 = (x0 - x2) * (py - y2)
            r2 = (x1 - x0) * (py - y0)
            for ix in range(ix0, ix1 + 1):
                px = ix + 0.5
                w0 = r0 - (y2 - y1) * (px - x1)
                w1 = r1 - (y0 - y2) * (px - x2)
                w2 = r2 - (y1 - y0) * (px - x0)
                if area > 0.0:
                    if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                        continue
                elif w0 > 0.0 or w1 > 0.0 or w2 > 0.0:
                    continue
                z = (w0 * z0 + w1 * z1 + w2 * z2) / area
                if z < depth[iy, ix]:
                    depth[iy, ix] = z
                    image[iy, ix, 0] = colors[t, 0]
                    image[iy, ix, 1] = colors[t, 1]
                    image[iy, ix, 2] = colors[t, 2]
