"""The muscle_model / contact_model options: the Moco model family (DeGroote-Fregly
muscles with rigid tendons, smooth sphere contacts) built into the variant cache, with
the same observation and action layout as the osim-rl originals."""
import json

import numpy as np
import opensim
import pytest

from fastenv.env import ImitationEnv
from fastenv.envs import TASKS, resolve_options
from fastenv.envs.variants import (
    DGF_TENDON_PRELOAD,
    VARIANTS,
    dgf_tendon_length,
    preload_rigid_tendons,
    variant_path,
)
from fastenv.references import REFERENCE_DIR, load_reference
from fastenv.sim import Simulation

TASK = "MuscleWalkingImitation2D-v0"
MUSCLE_TASKS = [t for t, spec in TASKS.items() if spec.actuation == "muscle"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(muscle_model="hill"), r"muscle_model must be one of \['thelen', 'degroote'\], "
                                r"got 'hill'"),
    (dict(contact_model="soft"), r"contact_model must be one of \['hunt_crossley', "
                                 r"'smooth'\], got 'soft'"),
    (dict(muscle_model="degroote", task=TASKS["TorqueWalkingImitation2D-v0"]),
     r"muscle_model='degroote' applies to muscle tasks; TorqueWalkingImitation2D-v0"),
    (dict(contact_model="smooth", model="my.osim"), r"model='my.osim'"),
])
def test_bad_model_options_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        resolve_options(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(muscle_model="Degroote"), r"got 'Degroote'"),
    (dict(contact_model=None), r"got None"),
])
def test_variant_path_checks_the_model_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        variant_path("muscle2d", **kwargs)


def test_degroote_needs_muscles():
    with pytest.raises(ValueError, match=r"muscle_model='degroote' needs muscles; variant "
                                         r"'torque2d' has none"):
        variant_path("torque2d", muscle_model="degroote")


def test_original_variants_keep_their_cache_files():
    """The defaults do not enter the cache key: files built before the option exist
    are still the ones used."""
    path = variant_path("muscle2d", muscle_model="thelen", contact_model="hunt_crossley")
    assert path == variant_path("muscle2d")
    assert path.name.startswith("muscle2d-")
    assert variant_path("muscle2d", muscle_model="degroote").name.startswith(
        "muscle2d_degroote-")


def test_moco_family_model_content():
    model = opensim.Model(str(variant_path("muscle2d", muscle_model="degroote",
                                           contact_model="smooth")))
    thelen = opensim.Model(str(variant_path("muscle2d")))
    muscles = [opensim.DeGrooteFregly2016Muscle.safeDownCast(m) for m in model.getMuscles()]
    assert all(m is not None for m in muscles)
    assert [m.getName() for m in muscles] == [m.getName() for m in thelen.getMuscles()]
    for dgf, th in zip(muscles, thelen.getMuscles()):
        # the 2D references were solved without passive fibre force
        assert dgf.get_ignore_tendon_compliance() and dgf.get_ignore_passive_fiber_force()
        assert dgf.get_active_force_width_scale() == 1.5
        assert dgf.getOptimalFiberLength() == th.getOptimalFiberLength()
        assert dgf.getMaxIsometricForce() == th.getMaxIsometricForce()
        assert dgf.getTendonSlackLength() == th.getTendonSlackLength()
    forces = {f.getName(): f.getConcreteClassName() for f in model.getForceSet()}
    assert "HuntCrossleyForce" not in forces.values()
    assert [n for n, c in forces.items() if c == "SmoothSphereHalfSpaceForce"] == [
        "foot_r:r_heel", "foot_r:r_toe", "foot_l:l_heel", "foot_l:l_toe"]


def test_dgf_tendon_length_inverts_the_tendon_curve():
    muscle = opensim.DeGrooteFregly2016Muscle()
    muscle.set_tendon_strain_at_one_norm_force(0.1)
    muscle.finalizeFromProperties()
    for force in (0.0, 0.1, 0.3, 1.0):
        assert muscle.calcTendonForceMultiplier(dgf_tendon_length(force, 0.1)) == \
            pytest.approx(force, abs=1e-9)
    assert dgf_tendon_length(1.0, 0.1) == pytest.approx(1.1)


@pytest.mark.parametrize("force", [-0.1, 1.0, float("nan")])
def test_tendon_preload_outside_the_curve_is_a_one_line_error(force):
    model = opensim.Model(str(variant_path("muscle3d")))
    with pytest.raises(ValueError, match=r"tendon preload must be in \[0, 1\) maximum "
                                         r"isometric forces, got"):
        preload_rigid_tendons(model, force)


@pytest.mark.parametrize("variant", ["muscle2d", "muscle3d", "palsy3d"])
def test_moco_family_preloads_the_3d_achilles_tendon_only(variant):
    """The 3D Moco family's soleus and gastrocnemius tendons (10% strain at maximum
    force) are rigid at their length under DGF_TENDON_PRELOAD, the adult's and the
    palsy child's (since 2026-12-06); every other tendon and the 2D family's keep
    their slack length."""
    thelen = opensim.Model(str(variant_path(variant)))
    family = opensim.Model(str(variant_path(variant, muscle_model="degroote")))
    preload = VARIANTS[variant].dgf_tendon_preload
    assert preload == (0.0 if variant == "muscle2d" else DGF_TENDON_PRELOAD)
    stretched = []
    for th in thelen.getMuscles():
        dgf = family.getMuscles().get(th.getName())
        strain = opensim.Thelen2003Muscle.safeDownCast(th).get_FmaxTendonStrain()
        ratio = dgf.getTendonSlackLength() / th.getTendonSlackLength()
        if preload and strain > 0.06:
            assert ratio == pytest.approx(dgf_tendon_length(preload, strain), rel=1e-12)
            stretched.append(th.getName())
        else:
            assert ratio == 1.0
    assert sorted(stretched) == ([] if not preload else
                                 ["gastroc_l", "gastroc_r", "soleus_l", "soleus_r"])


def _solved_with_passive_fiber_force(reference_name):
    """What the reference's Moco solve did with passive fibre force (None: no solve)."""
    meta = json.loads((REFERENCE_DIR / f"{reference_name}.json").read_text())
    if "muscle_model" in meta:
        return meta["muscle_model"]["passive_fiber_forces"]
    return meta.get("moco", {}).get("settings", {}).get("passive_fiber_forces")


@pytest.mark.parametrize("task", MUSCLE_TASKS)
def test_moco_family_is_the_model_the_reference_was_solved_on(task):
    """Passive fibre force of the degroote variant as in the task's reference solve."""
    spec = TASKS[task]
    solved = _solved_with_passive_fiber_force(spec.reference)
    if solved is None:
        pytest.skip(f"{spec.reference} is not a Moco solution")
    assert VARIANTS[spec.model].dgf_passive_fiber_force is solved
    meta = json.loads((REFERENCE_DIR / f"{spec.reference}.json").read_text())
    preload = meta.get("moco", {}).get("settings", {}).get("rigid_tendon_preload", 0.0)
    assert VARIANTS[spec.model].dgf_tendon_preload == preload
    model = opensim.Model(str(variant_path(spec.model, muscle_model="degroote")))
    muscle = opensim.DeGrooteFregly2016Muscle.safeDownCast(model.getMuscles().get(0))
    assert muscle.get_ignore_passive_fiber_force() is not solved


#: The muscle tasks whose shipped reference carries its Moco solution's excitations.
FEEDFORWARD_TASKS = ["MuscleWalkingImitation2D-v0", "MuscleRunningImitation2D-v0",
                     "MuscleLockedKneeImitation2D-v0", "MuscleJumpingImitation2D-v0",
                     "MuscleWalkingImitation3D-v0",
                     "MuscleRunningImitation3D-v0",
                     "MuscleLockedKneeImitation3D-v0", "MusclePalsyImitation3D-v0"]


def test_every_gait_cycle_ships_its_excitations():
    """Every reference that is a Moco solution ships its excitations (lockedknee2d, a
    predictive solve, since 2026-12-06; jumping2d, up to the apex and the same frames
    back down, since 2026-12-07); jumping3d, kinematic, ships jumping2d's (its motion)
    since 2026-12-07 (refgen.derive3d.BORROWED_EXCITATIONS)."""
    with_excitations = [t for t in MUSCLE_TASKS
                        if load_reference(TASKS[t].reference).excitation is not None]
    assert sorted(with_excitations) == sorted([*FEEDFORWARD_TASKS,
                                               "MuscleJumpingImitation3D-v0"])


@pytest.mark.parametrize("task", FEEDFORWARD_TASKS)
def test_reference_excitations_drive_the_moco_family_along_the_reference(task):
    """Open loop, the solution's excitations on the model it was solved for stay within
    2.5 degrees of the reference for 50 ms (2D walking and running 0.5 / 1.6 deg; with
    passive fibre force added, 8.6 / 6.0 deg; the 3D references under 1 deg):
    residual excitations correct a feed-forward that is right to begin with."""
    env = ImitationEnv(task, excitations="residual", muscle_model="degroote",
                       contact_model="smooth", mode="test")
    env.reset(seed=0)
    rmse = []
    for _ in range(5):
        _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
        assert not (terminated or truncated)
        rmse.append(np.degrees(np.sqrt(info["joint_mse"])))
    env.close()
    assert max(rmse) < 2.5, rmse


def test_palsy_weakness_and_contractures_carry_over():
    """The DGF muscles replace the child's edited Thelen muscles, parameters kept."""
    thelen = opensim.Model(str(variant_path("palsy3d")))
    dgf = opensim.Model(str(variant_path("palsy3d", muscle_model="degroote")))
    for name in ("hamstrings_r", "gastroc_l", "soleus_r"):
        a, b = thelen.getMuscles().get(name), dgf.getMuscles().get(name)
        assert b.getConcreteClassName() == "DeGrooteFregly2016Muscle"
        assert b.getOptimalFiberLength() == a.getOptimalFiberLength()
        assert b.getMaxIsometricForce() == a.getMaxIsometricForce()


def test_smooth_contacts_load_the_feet_as_hunt_crossley_does():
    """Same spheres, stiffness and dissipation: at a static pose sunk 2 cm each foot's
    row (the sum of its spheres' forces) is within 1% of the Hunt-Crossley force's."""
    loads = {}
    for contact in ("hunt_crossley", "smooth"):
        sim = Simulation(variant_path("muscle2d", contact_model=contact), energetics=False)
        q = sim.buf[sim.layout.slice("q")].copy()
        q[sim.coordinate_names.index("pelvis_ty")] -= 0.02
        state = sim.state_from_coordinates(q, np.zeros_like(q), equilibrate=False)
        assert sim.contact_names == ["foot_r", "foot_l"]
        loads[contact] = sim.contact_loads(state)
        assert [len(s) for s in sim.visual_geometry()["spheres"]] == [2, 2]
    hc, smooth = loads["hunt_crossley"], loads["smooth"]
    assert hc[:, 1].min() > sim.body_weight
    np.testing.assert_allclose(smooth[:, [1, 5]], hc[:, [1, 5]], rtol=0.01)


def _rollout(task, steps=10, **options):
    env = ImitationEnv(task, **options)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert "sim_error" not in info, info
        assert np.isfinite(obs).all() and np.isfinite(reward)
        if terminated or truncated:
            break
    return env, obs


@pytest.mark.parametrize("options", [
    dict(muscle_model="degroote", contact_model="smooth"),
    dict(muscle_model="degroote"),
    dict(contact_model="smooth"),
])
def test_model_family_steps_with_the_same_layout(options):
    default, _ = _rollout(TASK, steps=1)
    env, obs = _rollout(TASK, **options)
    assert env.observation_names == default.observation_names
    assert env.observation_blocks == default.observation_blocks
    assert env.action_space == default.action_space
    assert env.sim.muscle_names == default.sim.muscle_names
    # the reference is put on this model (rebuilt, aligned with its ground)
    assert env.reference.n_frames == default.reference.n_frames
    act = obs[env.observation_blocks["activation"]]
    assert ((act > 0) & (act <= 1)).all()


def test_smooth_contacts_on_a_torque_task():
    default, _ = _rollout("TorqueWalkingImitation2D-v0", steps=1)
    env, _ = _rollout("TorqueWalkingImitation2D-v0", contact_model="smooth")
    assert env.observation_names == default.observation_names
    assert "SmoothSphereHalfSpaceForce" in {
        f.getConcreteClassName() for f in env.sim.model.getForceSet()}


@pytest.mark.slow
@pytest.mark.parametrize("task", MUSCLE_TASKS)
def test_every_muscle_task_runs_on_the_moco_family(task):
    """2D and 3D, running, jumping, locked knee and palsy: same layout, ten steps."""
    default, _ = _rollout(task, steps=1)
    env, _ = _rollout(task, muscle_model="degroote", contact_model="smooth")
    assert env.observation_names == default.observation_names
    assert env.action_space == default.action_space
