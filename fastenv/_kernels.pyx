# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Compiled kernels: pure math on flat arrays, no OpenSim.

Each function has a NumPy twin in ``fastenv/kernels.py`` written with the same
operation order, and ``tests/test_kernels.py`` proves the two give equal results.
All kernels take 2-D batches (rows = envs) so the pool can run them over many envs
at once; a single env is a batch of one.
"""
from libc.math cimport exp, sqrt, fmin, fmax
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
