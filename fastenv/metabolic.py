"""Muscle metabolic energy rate: the effort term for muscle-driven models.

Model: Umberger et al. (2003) muscle energetics, in the form of OpenSim's
``Umberger2010MuscleMetabolicsProbe`` with the modifications of Uchida et al. (2016,
PLoS ONE 11(3): e0150378). Per muscle (W/kg of muscle mass, aerobic factor S = 1.5):

* activation scale ``A = u`` if ``u > a`` else ``(u + a) / 2`` (u excitation,
  a activation);
* slow-twitch fraction ``r``: with Bhargava et al. (2004) orderly recruitment,
  ``r' = r sin(pi u / 2) / (r sin(pi u / 2) + (1 - r)(1 - cos(pi u / 2)))``
  (``r' = 1`` at ``u = 0``), otherwise the anatomical ``r``;
* activation/maintenance heat ``AM = S A^0.6 (128 (1 - r') + 25)``; beyond optimal
  length (``l > l_opt``) the bracket becomes ``0.4 h + 0.6 h F_iso`` (h = the bracket,
  F_iso = active force-length multiplier);
* shortening heat, ``v_n = v / l_opt`` (v < 0 shortening), vmax in l_opt/s with slow
  fibres at vmax / 2.5: shortening ``S A^2 (min(-100 v_n / (vmax / 2.5), 100) r'
  - 153 v_n / vmax (1 - r'))``; lengthening ``S A c 100 v_n / (vmax / 2.5)`` with
  c = 4.0 (Uchida 2016, when negative work counts) or 0.3 (Umberger 2003); times F_iso
  when ``l > l_opt``;
* mechanical work rate of the contractile element ``W = -F_active v / m`` (active
  force clamped at >= 0), for v <= 0 only unless negative work is included;
* ``forbid_negative_total_power``: if AM + S + W < 0 the shortening heat is raised so
  the sum is 0;
* ``enforce_minimum_heat_rate``: AM + S is at least 1.0 W/kg (Umberger 2003, p. 104);
* muscle power ``(AM + S + W) m`` in W.

Whole body: ``basal + sum of muscles``, basal = 1.2 W/kg * body mass^1 (standing,
Umberger 2003). Defaults equal the probe's defaults in OpenSim 4.6, i.e. Uchida et
al.'s configuration (all four options on); ``bhargava_recruitment=False,
include_negative_work=False, forbid_negative_total_power=False`` gives Umberger
(2010). Not modelled: the probe's ``muscle_effort_scaling_factor`` (scale excitation,
activation and active force before the call instead) and switching individual heat
terms off. Muscle mass: ``F_max / sigma * rho * l_opt`` with sigma = 0.25 MPa,
rho = 1059.7 kg/m^3 (the probe's defaults).

``metabolic_rate`` (compiled, ``fastenv._kernels``) and ``metabolic_rate_numpy`` take
2-D (env, muscle) float64 inputs and 1-D per-muscle constants; the NumPy twin keeps the
probe's operation order and calls libm (``math``) for sin/cos/pow, so the two agree
bitwise, and both agree with the probe to rounding (tests/test_metabolic.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastenv._kernels import metabolic_rate  # noqa: F401  (re-exported)

SPECIFIC_TENSION = 0.25e6   # Pa, mammalian muscle (probe default)
MUSCLE_DENSITY = 1059.7     # kg/m^3, mammalian muscle (probe default)
AEROBIC_FACTOR = 1.5        # aerobic activity (Umberger 2003)
BASAL_COEFFICIENT = 1.2     # W/kg, standing (Umberger 2003, p. 105)
BASAL_EXPONENT = 1.0

# Slow-twitch fibre fractions tabulated by Uchida et al. (2016) for the OpenSim gait
# models, compiled from human biopsy/autopsy fibre-typing data (chiefly Johnson et al.
# 1973, J Neurol Sci 18:111-129).
_UCHIDA_2016 = {
    "semimembranosus": 0.4925,
    "semitendinosus": 0.425,
    "biceps_femoris_long_head": 0.5425,
    "biceps_femoris_short_head": 0.529,
    "gluteus_maximus": 0.55,
    "gluteus_medius": 0.55,
    "adductor_magnus": 0.552,
    "rectus_femoris": 0.3865,
    "vastus_medialis": 0.503,
    "vastus_intermedius": 0.543,
    "vastus_lateralis": 0.455,
    "gastrocnemius_medialis": 0.566,
    "gastrocnemius_lateralis": 0.507,
    "soleus": 0.803,
    "tibialis_anterior": 0.70,
}

# Lumped muscles of gait9dof18musc / gait14dof22musc -> the anatomical muscles they
# stand for; a lumped muscle gets the unweighted mean of its measured constituents.
# iliopsoas has no measured value and keeps the probe's default 0.5; for the adductor
# group only adductor magnus is measured.
_LUMPED = {
    "hamstrings": ("semimembranosus", "semitendinosus", "biceps_femoris_long_head"),
    "bifemsh": ("biceps_femoris_short_head",),
    "glut_max": ("gluteus_maximus",),
    "abd": ("gluteus_medius",),
    "add": ("adductor_magnus",),
    "rect_fem": ("rectus_femoris",),
    "vasti": ("vastus_medialis", "vastus_intermedius", "vastus_lateralis"),
    "gastroc": ("gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "soleus": ("soleus",),
    "tib_ant": ("tibialis_anterior",),
}
SLOW_TWITCH_RATIO = {k: sum(_UCHIDA_2016[m] for m in v) / len(v) for k, v in _LUMPED.items()}
SLOW_TWITCH_RATIO["iliopsoas"] = 0.5


def slow_twitch_ratio(muscle_name: str) -> float:
    """Slow-twitch fraction for a model muscle name such as ``vasti_r``."""
    base = muscle_name[:-2] if muscle_name.endswith(("_r", "_l")) else muscle_name
    try:
        return SLOW_TWITCH_RATIO[base]
    except KeyError:
        raise KeyError(f"no slow-twitch fraction for muscle {muscle_name!r}; "
                       f"known: {sorted(SLOW_TWITCH_RATIO)}") from None


def muscle_mass(max_isometric_force, opt_fiber_length, specific_tension=SPECIFIC_TENSION,
                density=MUSCLE_DENSITY):
    """Muscle mass in kg = PCSA * density * l_opt, in the probe's operation order."""
    return np.asarray(max_isometric_force) / specific_tension * density \
        * np.asarray(opt_fiber_length)


def basal_rate(body_mass, coefficient=BASAL_COEFFICIENT, exponent=BASAL_EXPONENT):
    """Basal metabolic rate in W: coefficient * body_mass ** exponent (libm pow)."""
    return coefficient * math.pow(body_mass, exponent)


@dataclass(frozen=True)
class MuscleConstants:
    """Per-muscle constants in the model's muscle order, plus body-level ones."""

    names: tuple
    opt_fiber_length: np.ndarray          # m
    max_isometric_force: np.ndarray       # N
    max_contraction_velocity: np.ndarray  # optimal fibre lengths per s
    muscle_mass: np.ndarray               # kg
    slow_twitch_ratio: np.ndarray
    body_mass: float                      # kg
    basal_rate_W: float


def muscle_constants(model, state, basal_coefficient=BASAL_COEFFICIENT,
                     basal_exponent=BASAL_EXPONENT) -> MuscleConstants:
    """Read the kernel's constants from an ``opensim.Model`` (after ``initSystem``)."""
    muscles = model.getMuscles()
    ms = [muscles.get(i) for i in range(muscles.getSize())]
    lopt = np.array([m.getOptimalFiberLength() for m in ms])
    fmax = np.array([m.getMaxIsometricForce() for m in ms])
    body_mass = model.getMatterSubsystem().calcSystemMass(state)
    return MuscleConstants(
        names=tuple(m.getName() for m in ms),
        opt_fiber_length=lopt,
        max_isometric_force=fmax,
        max_contraction_velocity=np.array([m.getMaxContractionVelocity() for m in ms]),
        muscle_mass=muscle_mass(fmax, lopt),
        slow_twitch_ratio=np.array([slow_twitch_ratio(m.getName()) for m in ms]),
        body_mass=body_mass,
        basal_rate_W=basal_rate(body_mass, basal_coefficient, basal_exponent),
    )


INPUT_NAMES = ("excitation", "activation", "fiber_length", "fiber_velocity",
               "active_fiber_force", "active_fl_multiplier")


def muscle_inputs(model, state) -> dict:
    """Kernel inputs for one state (realized to Dynamics) as 1-D arrays by muscle."""
    muscles = model.getMuscles()
    ms = [muscles.get(i) for i in range(muscles.getSize())]
    getters = ("getExcitation", "getActivation", "getFiberLength", "getFiberVelocity",
               "getActiveFiberForce", "getActiveForceLengthMultiplier")
    return {k: np.array([getattr(m, g)(state) for m in ms])
            for k, g in zip(INPUT_NAMES, getters)}


_sin = np.frompyfunc(math.sin, 1, 1)
_cos = np.frompyfunc(math.cos, 1, 1)
_pow = np.frompyfunc(math.pow, 2, 1)


def _libm(f, *x):
    return np.asarray(f(*x), dtype=np.float64)


def metabolic_rate_numpy(excitation, activation, fiber_length, fiber_velocity,
                         active_fiber_force, active_fl_multiplier, opt_fiber_length,
                         max_contraction_velocity, muscle_mass, slow_twitch_ratio,
                         basal_rate_W, aerobic_factor=AEROBIC_FACTOR,
                         bhargava_recruitment=True, include_negative_work=True,
                         forbid_negative_total_power=True, enforce_minimum_heat_rate=True):
    """Reference twin of ``metabolic_rate``; returns ``(total (env,), per_muscle (env, n))``
    in W. See the module docstring for the model and options."""
    u = np.asarray(excitation, dtype=np.float64)
    a = np.asarray(activation, dtype=np.float64)
    v = np.asarray(fiber_velocity, dtype=np.float64)
    f = np.asarray(active_fiber_force, dtype=np.float64)
    fl = np.asarray(active_fl_multiplier, dtype=np.float64)
    lopt = np.asarray(opt_fiber_length, dtype=np.float64)
    vmax = np.asarray(max_contraction_velocity, dtype=np.float64)
    mass = np.asarray(muscle_mass, dtype=np.float64)
    ratio = np.broadcast_to(np.asarray(slow_twitch_ratio, dtype=np.float64), u.shape)
    S = aerobic_factor
    # Both branches of every np.where are evaluated; the discarded one may divide by 0.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        A = np.where(u > a, u, (u + a) / 2)
        l_n = np.asarray(fiber_length, dtype=np.float64) / lopt
        v_n = v / lopt
        if bhargava_recruitment:
            x = 0.5 * math.pi * u
            u_slow = ratio * _libm(_sin, x)
            u_fast = (1 - ratio) * (1 - _libm(_cos, x))
            ratio = np.where(u == 0, 1.0, u_slow / (u_slow + u_fast))
        h = 128 * (1 - ratio) + 25
        sp = S * _libm(_pow, A, 0.6)
        am = np.where(l_n <= 1.0, sp * h, sp * ((0.4 * h) + (0.6 * h * fl)))
        alpha_fast = 153 / vmax
        alpha_slow = 100 / (vmax / 2.5)
        t_slow = -alpha_slow * v_n
        t_slow = np.where(t_slow > 100.0, 100.0, t_slow)
        t_fast = alpha_fast * v_n * (1 - ratio)
        s_short = S * (A * A) * ((t_slow * ratio) - t_fast)
        c = 4.0 if include_negative_work else 0.3
        s_long = S * A * (c * alpha_slow * v_n)
        sdot = np.where(v_n <= 0, s_short, s_long)
        sdot = np.where(l_n > 1.0, sdot * fl, sdot)
        f = np.where(f < 0, 0.0, f)
        counts = (v <= 0) | include_negative_work
        w = np.where(counts, -f * v, 0.0) / mass
        if forbid_negative_total_power:
            e_before = am + sdot + w
            sdot = np.where(e_before < 0, sdot - e_before, sdot)
        heat = am + sdot
        if enforce_minimum_heat_rate:
            heat = np.where(heat < 1.0, 1.0, heat)
        per_muscle = (heat + w) * mass
    total = np.full(u.shape[0], float(basal_rate_W))
    for j in range(u.shape[1]):   # muscle order, as the probe and the kernel sum
        total = total + per_muscle[:, j]
    return total, per_muscle
