"""Metabolic energy rate: compiled kernel == NumPy twin == OpenSim's probe."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastenv import metabolic as mb

OPTION_NAMES = ("bhargava_recruitment", "include_negative_work",
                "forbid_negative_total_power", "enforce_minimum_heat_rate")
# Probe configurations compared against OpenSim; together they flip every option.
CONFIGS = {
    "uchida2016_default": {},
    "umberger2010": dict(bhargava_recruitment=False, include_negative_work=False,
                         forbid_negative_total_power=False),
    "mixed": dict(include_negative_work=False, enforce_minimum_heat_rate=False),
}


def run_both(inp, consts, basal, **opts):
    """Compiled (total, per muscle) and NumPy twin (total, per muscle)."""
    n_env, n = inp[0].shape
    total, per = np.empty(n_env), np.empty((n_env, n))
    mb.metabolic_rate(*inp, *consts, basal, total, per, **opts)
    return (total, per), mb.metabolic_rate_numpy(*inp, *consts, basal, **opts)


# ---------------------------------------------------------------- kernel vs twin

def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw):
    n_env, n = draw(st.integers(1, 5)), draw(st.integers(1, 8))

    def mat(elems):
        return draw(hnp.arrays(np.float64, (n_env, n), elements=elems))

    def vec(elems):
        return draw(hnp.arrays(np.float64, n, elements=elems))

    lopt = vec(_floats(0.02, 0.3))
    inp = (
        mat(st.one_of(st.just(0.0), _floats(1e-6, 1.0))),            # excitation
        mat(_floats(0.0, 1.0)),                                        # activation
        mat(st.one_of(st.just(1.0), _floats(0.3, 1.8))) * lopt,        # l, around l_opt
        mat(st.one_of(st.just(0.0), _floats(-12.0, 12.0))) * lopt,     # v, +-12 l_opt/s
        mat(_floats(-50.0, 5000.0)),                                   # active force
        mat(_floats(0.0, 1.0)),                                        # F_iso
    )
    consts = (lopt, vec(_floats(5.0, 20.0)), vec(_floats(0.05, 5.0)), vec(_floats(0.0, 1.0)))
    opts = {k: draw(st.booleans()) for k in OPTION_NAMES}
    opts["aerobic_factor"] = draw(st.one_of(st.just(1.5), _floats(1.0, 2.0)))
    return inp, consts, draw(_floats(0.0, 200.0)), opts


@settings(max_examples=300, deadline=None)
@given(batches())
def test_kernel_equals_numpy_twin_property(case):
    inp, consts, basal, opts = case
    (total, per), (total_np, per_np) = run_both(inp, consts, basal, **opts)
    np.testing.assert_array_equal(per, per_np)
    np.testing.assert_array_equal(total, total_np)


def random_batch(rng, n_env=64, n=22):
    lopt = rng.uniform(0.03, 0.2, n)
    u = rng.uniform(0, 1, (n_env, n))
    u[rng.random((n_env, n)) < 0.1] = 0.0
    a = rng.uniform(0.0, 1, (n_env, n))
    a[rng.random((n_env, n)) < 0.1] = 0.0
    inp = (u, a, rng.uniform(0.4, 1.7, (n_env, n)) * lopt,
           rng.uniform(-10, 10, (n_env, n)) * lopt, rng.uniform(-20, 3000, (n_env, n)),
           rng.uniform(0, 1, (n_env, n)))
    consts = (lopt, rng.uniform(8, 15, n), rng.uniform(0.1, 4, n), rng.uniform(0, 1, n))
    return inp, consts


@pytest.mark.parametrize("flags", range(16))
def test_kernel_equals_numpy_twin_all_option_combinations(flags):
    rng = np.random.default_rng(flags)
    inp, consts = random_batch(rng)
    u, a, l, v, _, _ = inp
    lopt, vmax = consts[0], consts[1]
    # The batch reaches every branch: activating/deactivating, zero excitation,
    # shortening (some past the 100 W/kg slow-twitch cap)/lengthening, both sides of
    # l_opt, and activation scales small enough for the 1 W/kg heat floor.
    A = np.where(u > a, u, (u + a) / 2)
    assert (u > a).any() and (u < a).any() and (u == 0).any()
    assert (v < 0).any() and (v > 0).any() and (l > lopt).any() and (l < lopt).any()
    assert (-(250 / vmax) * (v / lopt) > 100).any() and (A < 1e-3).any()
    opts = {k: bool(flags >> i & 1) for i, k in enumerate(OPTION_NAMES)}
    (total, per), (total_np, per_np) = run_both(inp, consts, 80.0, **opts)
    np.testing.assert_array_equal(per, per_np)
    np.testing.assert_array_equal(total, total_np)


def test_total_without_per_muscle_output_and_shape_checks():
    inp, consts = random_batch(np.random.default_rng(0), n_env=3, n=5)
    total, per = np.empty(3), np.empty((3, 5))
    mb.metabolic_rate(*inp, *consts, 10.0, total, per)
    total_only = np.empty(3)
    mb.metabolic_rate(*inp, *consts, 10.0, total_only)
    np.testing.assert_array_equal(total, total_only)
    with pytest.raises(ValueError):
        mb.metabolic_rate(*inp, *consts, 10.0, np.empty(2))
    with pytest.raises(ValueError):
        mb.metabolic_rate(*inp, consts[0][:4], *consts[1:], 10.0, total)


def test_closed_form_values():
    """Hand-evaluated Umberger (2010) terms, no recruitment model."""
    lopt, vmax, mass, r = 0.1, 10.0, 2.0, 0.5
    opts = dict(bhargava_recruitment=False, include_negative_work=False,
                forbid_negative_total_power=False)

    def one(u, a, l, v, f, fl):
        cols = [np.array([[x]], dtype=float) for x in (u, a, l, v, f, fl)]
        consts = [np.array([x]) for x in (lopt, vmax, mass, r)]
        return run_both(cols, consts, 7.0, **opts)[0][0][0]

    # Isometric at l_opt, fully active: AM = 1.5 * (128 * 0.5 + 25) W/kg.
    assert one(1, 1, lopt, 0, 1000, 1) == pytest.approx(7 + 2 * 133.5, rel=1e-14)
    # Shortening at 1 l_opt/s with force 1000 N: S = 1.5 * (25 * 0.5 + 15.3 * 0.5)
    # W/kg, W = 1000 N * 0.1 m/s / 2 kg.
    expect = 7 + 2 * (133.5 + 1.5 * (12.5 + 7.65) + 50.0)
    assert one(1, 1, lopt, -lopt, 1000, 1) == pytest.approx(expect, rel=1e-14)
    # Lengthening beyond l_opt (F_iso 0.5), half activation, excitation == activation:
    # AM = 1.5 * 0.5^0.6 * 89 * (0.4 + 0.3), S = 1.5 * 0.5 * 0.3 * 25 * 1 * 0.5, no work.
    am = 1.5 * 0.5 ** 0.6 * 89 * 0.7
    expect = 7 + 2 * (am + 1.5 * 0.5 * 0.3 * 25 * 0.5)
    assert one(0.5, 0.5, 1.2 * lopt, lopt, 1000, 0.5) == pytest.approx(expect, rel=1e-14)
    # Deactivated: heat clamped to the 1 W/kg floor.
    assert one(0, 1e-6, lopt, 0, 0, 1) == pytest.approx(7 + 2 * 1.0, rel=1e-14)


# ---------------------------------------------------------------- OpenSim's probe

opensim = pytest.importorskip("opensim")


def model_path(name):
    from fastenv.envs.variants import base_model_path
    return str(base_model_path(name))


def add_probe(model, name, names, opts):
    probe = opensim.Umberger2010MuscleMetabolicsProbe()
    probe.setName(name)
    probe.set_report_total_metabolics_only(False)   # outputs: total, basal, muscles
    probe.set_aerobic_factor(mb.AEROBIC_FACTOR)
    probe.set_basal_coefficient(mb.BASAL_COEFFICIENT)
    probe.set_basal_exponent(mb.BASAL_EXPONENT)
    probe.set_use_Bhargava_recruitment_model(opts.get("bhargava_recruitment", True))
    probe.set_include_negative_mechanical_work(opts.get("include_negative_work", True))
    probe.set_forbid_negative_total_power(opts.get("forbid_negative_total_power", True))
    probe.set_enforce_minimum_heat_rate_per_muscle(
        opts.get("enforce_minimum_heat_rate", True))
    model.addProbe(probe)
    for n in names:   # mass computed by the probe from F_max, l_opt and its defaults
        probe.addMuscle(n, mb.slow_twitch_ratio(n))
    return probe


@pytest.fixture(scope="module")
def simulated():
    """gait9dof18musc with one probe per config, simulated from a random state;
    snapshots at 4 times form a batch of 4 "envs". Returns plain arrays only."""
    model = opensim.Model(model_path("gait9dof18musc.osim"))
    muscles = model.getMuscles()
    names = [muscles.get(i).getName() for i in range(muscles.getSize())]
    probes = {k: add_probe(model, k, names, o) for k, o in CONFIGS.items()}
    state = model.initSystem()
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 1, len(names))
    u[[2, 11]] = 0.0
    model.setDefaultControls(opensim.Vector.createFromMat(u))
    for i in range(len(names)):   # some start above their excitation -> deactivating
        muscles.get(i).setActivation(state, rng.uniform(0.02, 1))
    coords = model.getCoordinateSet()
    for i in range(coords.getSize()):
        if coords.get(i).getName() not in ("pelvis_tx", "pelvis_ty"):
            coords.get(i).setSpeedValue(state, rng.uniform(-3, 3))
    model.equilibrateMuscles(state)
    manager = opensim.Manager(model)   # integrate() returns a reference into it
    manager.initialize(state)
    snaps = [opensim.State(manager.integrate(t)) for t in (0.005, 0.01, 0.02, 0.04)]
    consts = mb.muscle_constants(model, snaps[0])
    rows, ref = [], {k: [] for k in CONFIGS}
    for s in snaps:
        model.realizeDynamics(s)
        rows.append(mb.muscle_inputs(model, s))
        for k, p in probes.items():
            out = p.getProbeOutputs(s)
            ref[k].append([out.get(i) for i in range(out.size())])
    inputs = tuple(np.ascontiguousarray([r[k] for r in rows]) for k in mb.INPUT_NAMES)
    return dict(
        names=names, consts=consts, inputs=inputs,
        ref={k: np.array(v) for k, v in ref.items()},
        probe_mass=np.array([probes["umberger2010"].getMuscleMass(n) for n in names]),
        probe_ratio=np.array([probes["umberger2010"].getRatioSlowTwitchFibers(n)
                              for n in names]),
    )


def kernel_consts(c):
    return (c.opt_fiber_length, c.max_contraction_velocity, c.muscle_mass,
            c.slow_twitch_ratio)


def test_constants_match_probe(simulated):
    c = simulated["consts"]
    assert c.names == tuple(simulated["names"])
    np.testing.assert_array_equal(c.muscle_mass, simulated["probe_mass"])
    np.testing.assert_array_equal(c.slow_twitch_ratio, simulated["probe_ratio"])
    assert c.basal_rate_W == pytest.approx(1.2 * c.body_mass, rel=1e-15)
    for ref in simulated["ref"].values():
        np.testing.assert_array_equal(ref[:, 1], c.basal_rate_W)   # probe's BASAL


def test_opensim_state_covers_branches(simulated):
    u, a, l, v, _, _ = simulated["inputs"]
    lopt = simulated["consts"].opt_fiber_length
    assert (u > a).any() and (u < a).any() and (u == 0).any()
    assert (v < 0).any() and (v > 0).any() and (l > lopt).any() and (l < lopt).any()
    # forbid_negative_total_power acts: lengthening work cancels a muscle's heat.
    assert (np.abs(simulated["ref"]["uchida2016_default"][:, 2:]) < 1e-9).any()


@pytest.mark.parametrize("config", CONFIGS)
def test_kernel_matches_opensim_probe(simulated, config):
    c = simulated["consts"]
    (total, per), (total_np, per_np) = run_both(
        simulated["inputs"], kernel_consts(c), c.basal_rate_W, **CONFIGS[config])
    ref = simulated["ref"][config]
    np.testing.assert_array_equal(total, total_np)
    np.testing.assert_array_equal(per, per_np)
    # Same formulas in the same order: equal to rounding (bitwise on x86-64 Linux).
    np.testing.assert_allclose(total, ref[:, 0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(per, ref[:, 2:], rtol=1e-12, atol=1e-9)
    print(f"\n{config}: W/kg {np.round(total / c.body_mass, 3)}, max |diff| vs probe "
          f"total {np.abs(total - ref[:, 0]).max():.3g} W, "
          f"per muscle {np.abs(per - ref[:, 2:]).max():.3g} W")


def test_constants_cover_gait14dof22musc():
    model = opensim.Model(model_path("gait14dof22musc_20170320.osim"))
    muscles = model.getMuscles()
    names = [muscles.get(i).getName() for i in range(muscles.getSize())]
    probe = add_probe(model, "umberger", names, {})
    state = model.initSystem()
    c = mb.muscle_constants(model, state)
    assert {n[:-2] for n in c.names} == {"abd", "add", "hamstrings", "bifemsh", "glut_max",
                                         "iliopsoas", "rect_fem", "vasti", "gastroc",
                                         "soleus", "tib_ant"}
    np.testing.assert_array_equal(c.muscle_mass, [probe.getMuscleMass(n) for n in names])
    assert ((c.slow_twitch_ratio > 0.3) & (c.slow_twitch_ratio < 0.85)).all()
    with pytest.raises(KeyError):
        mb.slow_twitch_ratio("deltoid_r")


# ---------------------------------------------------------------- sanity figures

def static_rate(model, state, consts, level):
    """Standing pose, zero speeds, excitation == activation == level (activation at
    least Thelen's 0.01 floor), muscles in equilibrium."""
    muscles = model.getMuscles()
    n = muscles.getSize()
    model.setDefaultControls(opensim.Vector.createFromMat(np.full(n, level)))
    s = opensim.State(state)
    for i in range(n):
        muscles.get(i).setActivation(s, level)
    model.equilibrateMuscles(s)
    model.realizeDynamics(s)
    d = mb.muscle_inputs(model, s)
    inp = tuple(d[k][None].copy() for k in mb.INPUT_NAMES)
    (total, per), _ = run_both(inp, kernel_consts(consts), consts.basal_rate_W)
    return total[0], per[0], d


def expected_isometric(d, consts):
    """Closed-form AM heat per muscle (W) when fibres do not move."""
    u, a = d["excitation"], d["activation"]
    A = np.where(u > a, u, (u + a) / 2)
    r = consts.slow_twitch_ratio
    x = np.pi / 2 * u
    rb = np.where(u == 0, 1.0, r * np.sin(x) / np.maximum(
        r * np.sin(x) + (1 - r) * (1 - np.cos(x)), 1e-300))
    h = 128 * (1 - rb) + 25
    lfac = np.where(d["fiber_length"] > consts.opt_fiber_length,
                    0.4 + 0.6 * d["active_fl_multiplier"], 1.0)
    return np.maximum(1.5 * A ** 0.6 * h * lfac, 1.0) * consts.muscle_mass


def test_sanity_rest_and_moderate_activation():
    model = opensim.Model(model_path("gait9dof18musc.osim"))
    state = model.initSystem()
    c = mb.muscle_constants(model, state)
    rates = {}
    for level in (0.0, 0.05, 0.1, 0.2):
        total, per, d = static_rate(model, state, c, level)
        assert np.abs(d["fiber_velocity"]).max() < 1e-6       # static equilibrium
        np.testing.assert_allclose(per, expected_isometric(d, c), rtol=1e-6)
        rates[level] = total / c.body_mass
    # At rest (no excitation, activation at its floor) each muscle costs its
    # activation heat of ~1.5 W/kg of muscle, so the whole body sits a little above
    # the 1.2 W/kg basal rate.
    muscle_share = c.muscle_mass.sum() / c.body_mass
    assert 1.2 + 1.0 * muscle_share <= rates[0.0] <= 1.2 + 2.0 * muscle_share
    assert rates[0.0] < rates[0.05] < rates[0.1] < rates[0.2]
    print("\nwhole-body W/kg by activation level:",
          {k: round(float(v), 3) for k, v in rates.items()},
          f"(basal 1.2, muscle mass {c.muscle_mass.sum():.2f} kg of {c.body_mass:.2f} kg)")
