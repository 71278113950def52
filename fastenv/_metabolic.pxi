# Metabolic energy rate (Umberger et al. 2003/2010, as modified by Uchida et al. 2016).
# Textually included into _kernels.pyx; its NumPy twin and the full description of the
# model and options is fastenv/metabolic.py (metabolic_rate_numpy). Every expression
# below keeps the association order of OpenSim's Umberger2010MuscleMetabolicsProbe so
# that results equal both the twin (bitwise) and the probe (to rounding).
from libc.math cimport pow, sin, cos, M_PI


cdef inline double _muscle_edot(double u, double a, double l, double v, double f,
                                double fl, double lopt, double vmax, double mass,
                                double ratio, double aerobic, bint bhargava,
                                bint negative_work, bint forbid_negative,
                                bint min_heat) noexcept nogil:
    """Metabolic power of one muscle in W (heat + work, times muscle mass)."""
    cdef double A, l_n, v_n, u_slow, u_fast, am_unscaled, am, s_unscaled, sdot
    cdef double alpha_fast, alpha_slow, t_slow, t_fast, w, e_before, heat
    # Activation-dependence scale: excitation while activating, else mean of both.
    if u > a:
        A = u
    else:
        A = (u + a) / 2
    l_n = l / lopt
    v_n = v / lopt   # Umberger normalises velocity by optimal length, not by vmax
    # Orderly recruitment (Bhargava 2004): fraction of active fibres that are slow.
    if bhargava:
        u_slow = ratio * sin(0.5 * M_PI * u)
        u_fast = (1 - ratio) * (1 - cos(0.5 * M_PI * u))
        if u == 0:
            ratio = 1.0
        else:
            ratio = u_slow / (u_slow + u_fast)
    # Activation/maintenance heat (W/kg); beyond optimal length it scales with the
    # active force-length multiplier (40 % length-independent).
    am_unscaled = 128 * (1 - ratio) + 25
    if l_n <= 1.0:
        am = aerobic * pow(A, 0.6) * am_unscaled
    else:
        am = aerobic * pow(A, 0.6) * ((0.4 * am_unscaled) + (0.6 * am_unscaled * fl))
    # Shortening/lengthening heat (W/kg); slow fibres have vmax / 2.5.
    alpha_fast = 153 / vmax
    alpha_slow = 100 / (vmax / 2.5)
    if v_n <= 0:
        t_slow = -alpha_slow * v_n
        if t_slow > 100.0:
            t_slow = 100.0
        t_fast = alpha_fast * v_n * (1 - ratio)
        s_unscaled = (t_slow * ratio) - t_fast
        sdot = aerobic * (A * A) * s_unscaled   # A * A == pow(A, 2.0) in the probe
    else:
        # Lengthening coefficient 4.0 (Uchida 2016) pairs with counting negative
        # work; the original 0.3 (Umberger 2003) pairs with ignoring it.
        s_unscaled = (4.0 if negative_work else 0.3) * alpha_slow * v_n
        sdot = aerobic * A * s_unscaled
    if l_n > 1.0:
        sdot *= fl
    # Mechanical work rate of the contractile element (W/kg).
    if f < 0:
        f = 0.0
    if negative_work or v <= 0:
        w = -f * v
    else:
        w = 0
    w /= mass
    if forbid_negative:
        e_before = am + sdot + w
        if e_before < 0:
            sdot -= e_before
    heat = am + sdot
    if min_heat and heat < 1.0:
        heat = 1.0
    return (heat + w) * mass


def metabolic_rate(const double[:, ::1] excitation, const double[:, ::1] activation,
                   const double[:, ::1] fiber_length, const double[:, ::1] fiber_velocity,
                   const double[:, ::1] active_fiber_force,
                   const double[:, ::1] active_fl_multiplier,
                   const double[::1] opt_fiber_length,
                   const double[::1] max_contraction_velocity,
                   const double[::1] muscle_mass, const double[::1] slow_twitch_ratio,
                   double basal_rate_W, double[::1] out_total,
                   double[:, ::1] out_per_muscle=None, double aerobic_factor=1.5,
                   bint bhargava_recruitment=True, bint include_negative_work=True,
                   bint forbid_negative_total_power=True,
                   bint enforce_minimum_heat_rate=True):
    """Whole-body metabolic power in W per env (out_total) and per muscle (optional).

    Compiled twin of ``fastenv.metabolic.metabolic_rate_numpy``; see there for the
    model, units and options. out_total[e] = basal_rate_W + sum over muscles in
    column order, as the probe accumulates it.
    """
    cdef Py_ssize_t e, j, n = excitation.shape[1], n_env = excitation.shape[0]
    cdef bint per_muscle = out_per_muscle is not None
    cdef double total, edot
    if (activation.shape[0] != n_env or fiber_length.shape[0] != n_env
            or fiber_velocity.shape[0] != n_env or active_fiber_force.shape[0] != n_env
            or active_fl_multiplier.shape[0] != n_env or out_total.shape[0] != n_env
            or activation.shape[1] != n or fiber_length.shape[1] != n
            or fiber_velocity.shape[1] != n or active_fiber_force.shape[1] != n
            or active_fl_multiplier.shape[1] != n or opt_fiber_length.shape[0] != n
            or max_contraction_velocity.shape[0] != n or muscle_mass.shape[0] != n
            or slow_twitch_ratio.shape[0] != n
            or (per_muscle and (out_per_muscle.shape[0] != n_env
                                or out_per_muscle.shape[1] != n))):
        raise ValueError("metabolic_rate: inconsistent array shapes")
    with nogil:
        for e in range(n_env):
            total = basal_rate_W
            for j in range(n):
                edot = _muscle_edot(excitation[e, j], activation[e, j],
                                    fiber_length[e, j], fiber_velocity[e, j],
                                    active_fiber_force[e, j], active_fl_multiplier[e, j],
                                    opt_fiber_length[j], max_contraction_velocity[j],
                                    muscle_mass[j], slow_twitch_ratio[j], aerobic_factor,
                                    bhargava_recruitment, include_negative_work,
                                    forbid_negative_total_power, enforce_minimum_heat_rate)
                total = total + edot
                if per_muscle:
                    out_per_muscle[e, j] = edot
            out_total[e] = total
