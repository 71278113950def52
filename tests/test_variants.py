"""Model variants: content, loading, simulation, deterministic caching, errors."""

import math
import os
import pathlib
import re
import subprocess
import sys

import opensim
import pytest

from fastenv.envs import variants
from fastenv.envs.variants import VARIANTS, VariantSpec, base_model_path, cache_dir, variant_path

MUSCLES_2D = [
    "hamstrings_r",
    "bifemsh_r",
    "glut_max_r",
    "iliopsoas_r",
    "rect_fem_r",
    "vasti_r",
    "gastroc_r",
    "soleus_r",
    "tib_ant_r",
    "hamstrings_l",
    "bifemsh_l",
    "glut_max_l",
    "iliopsoas_l",
    "rect_fem_l",
    "vasti_l",
    "gastroc_l",
    "soleus_l",
    "tib_ant_l",
]
MUSCLES_3D = ["abd_r", "add_r"] + MUSCLES_2D[:9] + ["abd_l", "add_l"] + MUSCLES_2D[9:]
SHANK_L = ["gastroc_l", "soleus_l", "tib_ant_l"]

COORDS_2D = [
    "pelvis_tilt",
    "pelvis_tx",
    "pelvis_ty",
    "hip_flexion_r",
    "knee_angle_r",
    "ankle_angle_r",
    "hip_flexion_l",
    "knee_angle_l",
    "ankle_angle_l",
    "lumbar_extension",
]
COORDS_3D = [
    "pelvis_tilt",
    "pelvis_list",
    "pelvis_rotation",
    "pelvis_tx",
    "pelvis_ty",
    "pelvis_tz",
    "hip_flexion_r",
    "hip_adduction_r",
    "hip_rotation_r",
    "knee_angle_r",
    "ankle_angle_r",
    "hip_flexion_l",
    "hip_adduction_l",
    "hip_rotation_l",
    "knee_angle_l",
    "ankle_angle_l",
    "lumbar_extension",
]
LOCKED_BASE_2D = {"lumbar_extension"}
LOCKED_BASE_3D = {"hip_rotation_r", "hip_rotation_l", "lumbar_extension"}
LOCKED_KNEE = {"knee_angle_l", "ankle_angle_l"}

TORQUE_2D = [
    "pelvis_tilt",
    "hip_flexion_r",
    "knee_angle_r",
    "ankle_angle_r",
    "hip_flexion_l",
    "knee_angle_l",
    "ankle_angle_l",
]
TORQUE_3D = [
    "pelvis_tilt",
    "pelvis_list",
    "pelvis_rotation",
    "hip_flexion_r",
    "hip_adduction_r",
    "knee_angle_r",
    "ankle_angle_r",
    "hip_flexion_l",
    "hip_adduction_l",
    "knee_angle_l",
    "ankle_angle_l",
]


def _without(names, drop):
    return [n for n in names if n not in drop]


# name -> (coordinates, locked, muscles, coordinate actuators)
EXPECTED = {
    "muscle2d": (COORDS_2D, LOCKED_BASE_2D, MUSCLES_2D, []),
    "muscle3d": (COORDS_3D, LOCKED_BASE_3D, MUSCLES_3D, []),
    "torque2d": (COORDS_2D, LOCKED_BASE_2D, [], TORQUE_2D),
    "torque3d": (COORDS_3D, LOCKED_BASE_3D, [], TORQUE_3D),
    "muscle2d_lockedknee": (
        COORDS_2D,
        LOCKED_BASE_2D | LOCKED_KNEE,
        _without(MUSCLES_2D, SHANK_L),
        [],
    ),
    "muscle3d_lockedknee": (
        COORDS_3D,
        LOCKED_BASE_3D | LOCKED_KNEE,
        _without(MUSCLES_3D, SHANK_L),
        [],
    ),
    "torque2d_lockedknee": (
        COORDS_2D,
        LOCKED_BASE_2D | LOCKED_KNEE,
        [],
        _without(TORQUE_2D, LOCKED_KNEE),
    ),
    "torque3d_lockedknee": (
        COORDS_3D,
        LOCKED_BASE_3D | LOCKED_KNEE,
        [],
        _without(TORQUE_3D, LOCKED_KNEE),
    ),
    "palsy3d": (COORDS_3D, LOCKED_BASE_3D, MUSCLES_3D, []),
}


def _names(object_set):
    return [object_set.get(i).getName() for i in range(object_set.getSize())]


def _forces_by_class(model, cls):
    fs = model.getForceSet()
    return [
        fs.get(i).getName() for i in range(fs.getSize()) if fs.get(i).getConcreteClassName() == cls
    ]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch, shared_cache):
    # Never write to the user's real cache; tests wanting a fresh one override this.
    monkeypatch.setenv("FASTENV_CACHE", str(shared_cache))


def test_expected_table_covers_all_variants():
    assert set(EXPECTED) == set(VARIANTS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_variant_content_and_forward_simulation(name):
    coords, locked, muscles, actuators = EXPECTED[name]
    path = variant_path(name)
    assert path.parent == cache_dir() and path.suffix == ".osim"
    model = opensim.Model(str(path))
    state = model.initSystem()

    cs = model.getCoordinateSet()
    assert _names(cs) == coords
    assert {c for c in coords if cs.get(c).get_locked()} == locked
    assert _names(model.getMuscles()) == muscles
    assert _forces_by_class(model, "CoordinateActuator") == actuators
    assert model.getActuators().getSize() == len(muscles) + len(actuators)
    for act_name in actuators:
        act = opensim.CoordinateActuator.safeDownCast(model.getForceSet().get(act_name))
        assert act.get_coordinate() == act_name
        assert act.getOptimalForce() == 200.0
        assert (act.getMinControl(), act.getMaxControl()) == (-1.0, 1.0)

    # Contact is always kept; limit forces only go for the locked left knee/ankle.
    # One Hunt-Crossley force per sphere, named <foot>:<sphere> (_split_hunt_crossley).
    contacts = _forces_by_class(model, "HuntCrossleyForce")
    assert list(dict.fromkeys(n.split(":")[0] for n in contacts)) == ["foot_r", "foot_l"]
    assert len(contacts) == (4 if "2d" in name else 6)
    limits = set(_forces_by_class(model, "CoordinateLimitForce"))
    assert {"HipLimit_r", "HipLimit_l", "KneeLimit_r", "AnkleLimit_r"} <= limits
    assert ("KneeLimit_l" in limits) == ("lockedknee" not in name)
    assert ("AnkleLimit_l" in limits) == ("lockedknee" not in name)

    if muscles:
        model.equilibrateMuscles(state)
    manager = opensim.Manager(model)
    manager.initialize(state)
    end = opensim.State(manager.integrate(0.05))  # copy: the returned ref lives in the Manager
    assert end.getTime() == pytest.approx(0.05)
    q = [cs.get(i).getValue(end) for i in range(cs.getSize())]
    u = [cs.get(i).getSpeedValue(end) for i in range(cs.getSize())]
    assert all(math.isfinite(x) for x in q + u)
    assert cs.get("pelvis_ty").getValue(end) > 0.5  # did not fall through the floor
    for c in locked & LOCKED_KNEE:
        assert cs.get(c).getValue(end) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", ["muscle2d", "muscle3d"])
def test_muscle_variants_match_base_model(name):
    """The plain muscle variants are only format-upgraded copies of the base."""
    base = opensim.Model(str(base_model_path(VARIANTS[name].base)))
    cached = opensim.Model(str(variant_path(name)))
    bs, cs_ = base.initSystem(), cached.initSystem()
    assert cached.getName() == base.getName()
    # The same forces, but each foot's Hunt-Crossley force is split per sphere.
    split = _names(cached.getForceSet())
    feet = [n for n in _names(base.getForceSet()) if n.startswith("foot_")]
    assert [n for n in split if ":" not in n] == [n for n in _names(base.getForceSet())
                                                  if n not in feet]
    assert sorted({n.split(":")[0] for n in split if ":" in n}) == sorted(feet)
    assert _names(cached.getBodySet()) == _names(base.getBodySet())
    assert cached.getNumStateVariables() == base.getNumStateVariables()
    for i in range(base.getCoordinateSet().getSize()):
        b, c = base.getCoordinateSet().get(i), cached.getCoordinateSet().get(i)
        assert c.getValue(cs_) == b.getValue(bs)
        assert c.get_locked() == b.get_locked()
    assert cached.getTotalMass(cs_) == pytest.approx(base.getTotalMass(bs), rel=1e-12)


def test_torque_actuator_applies_max_actuation_at_full_control():
    model = opensim.Model(str(variant_path("torque2d", max_actuation=123.0)))
    state = model.initSystem()
    model.realizeVelocity(state)
    controls = model.getControls(state)
    act = opensim.CoordinateActuator.safeDownCast(model.getForceSet().get("hip_flexion_r"))
    controls.set(model.getActuators().getIndex(act), 1.0)
    model.setControls(state, controls)
    model.realizeDynamics(state)
    assert act.getActuation(state) == pytest.approx(123.0)


def test_pelvis_residuals_false_leaves_pelvis_unactuated():
    model = opensim.Model(str(variant_path("torque3d", pelvis_residuals=False)))
    model.initSystem()
    acts = _forces_by_class(model, "CoordinateActuator")
    assert acts == [c for c in TORQUE_3D if not c.startswith("pelvis_")]


def test_build_is_deterministic_and_cached(tmp_path, monkeypatch, shared_cache):
    first = variant_path("torque3d_lockedknee")
    content = first.read_bytes()
    # A cache hit must not rebuild.
    monkeypatch.setattr(
        variants, "_build_model", lambda *a, **k: pytest.fail("rebuilt a cached variant")
    )
    assert variant_path("torque3d_lockedknee") == first
    monkeypatch.undo()

    monkeypatch.setenv("FASTENV_CACHE", str(tmp_path))
    second = variant_path("torque3d_lockedknee")
    assert second.parent == tmp_path and second.name == first.name
    assert second.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == [second.name]  # no temp files left behind


def test_params_change_the_path_and_defaults_do_not():
    default = variant_path("torque2d")
    assert variant_path("torque2d", max_actuation=200) == default  # int coerced like the default
    assert variant_path("torque2d", max_actuation=200.0, pelvis_residuals=True) == default
    stronger = variant_path("torque2d", max_actuation=400.0)
    assert stronger != default
    model = opensim.Model(str(stronger))
    assert (
        opensim.CoordinateActuator.safeDownCast(
            model.getForceSet().get("knee_angle_r")
        ).getOptimalForce()
        == 400.0
    )
    assert variant_path("torque2d", pelvis_residuals=False) not in (default, stronger)


def test_base_file_bytes_are_part_of_the_key(tmp_path, monkeypatch):
    original = base_model_path("gait9dof18musc.osim")
    edited = tmp_path / "edited.osim"
    edited.write_bytes(original.read_bytes().replace(b"<credits>", b"<credits>edited. ", 1))
    before = variant_path("muscle2d")
    monkeypatch.setattr(variants, "base_model_path", lambda filename: edited)
    after = variant_path("muscle2d")
    assert after != before and after.read_bytes() != before.read_bytes()


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTENV_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert variant_path("muscle2d").parent == tmp_path / "c"
    monkeypatch.delenv("FASTENV_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "fastenv" / "models"


def test_concurrent_builds_publish_one_identical_file(tmp_path, shared_cache):
    env = dict(os.environ, FASTENV_CACHE=str(tmp_path))
    code = "from fastenv.envs.variants import variant_path; print(variant_path('torque3d'))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    files = list(tmp_path.iterdir())
    assert [str(f) for f in files] == outs[:1]
    assert files[0].read_bytes() == variant_path("torque3d").read_bytes()  # built in shared_cache


def test_new_variants_are_one_dict_entry(monkeypatch):
    def heavier(model, *, mass_scale):
        bodies = model.updBodySet()
        for i in range(bodies.getSize()):
            bodies.get(i).setMass(bodies.get(i).getMass() * mass_scale)

    monkeypatch.setitem(
        VARIANTS, "heavy2d", VariantSpec("gait9dof18musc.osim", heavier, {"mass_scale": 1.0})
    )
    base = opensim.Model(str(variant_path("muscle2d")))
    heavy = opensim.Model(str(variant_path("heavy2d", mass_scale=1.5)))
    assert heavy.getName() == "heavy2d"
    assert heavy.getTotalMass(heavy.initSystem()) == pytest.approx(
        1.5 * base.getTotalMass(base.initSystem())
    )


def test_failed_build_leaves_no_file(tmp_path, monkeypatch):
    def broken(model):
        raise RuntimeError("builder bug")

    monkeypatch.setenv("FASTENV_CACHE", str(tmp_path))
    monkeypatch.setitem(VARIANTS, "broken", VariantSpec("gait9dof18musc.osim", broken))
    with pytest.raises(RuntimeError, match="builder bug"):
        variant_path("broken")
    assert list(tmp_path.iterdir()) == []


def test_bad_variant_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        variant_path("torque4d")
    assert "torque4d" in str(err.value)
    assert all(name in str(err.value) for name in VARIANTS)


def test_bad_param_name_lists_valid_params():
    with pytest.raises(ValueError, match="max_torque") as err:
        variant_path("torque2d", max_torque=10.0)
    assert "max_actuation" in str(err.value) and "pelvis_residuals" in str(err.value)
    with pytest.raises(ValueError, match="max_actuation"):
        variant_path("muscle2d", max_actuation=10.0)  # muscle models take no params


def test_bad_param_values():
    with pytest.raises(ValueError, match="max_actuation"):
        variant_path("torque2d", max_actuation=0.0)
    with pytest.raises(ValueError, match="pelvis_residuals"):
        variant_path("torque2d", pelvis_residuals="no")


def test_base_model_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_model.osim"):
        base_model_path("no_such_model.osim")
    # an install without the bundled models says how to get them
    monkeypatch.setattr(variants, "models_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="reinstall fastenv"):
        base_model_path("gait9dof18musc.osim")


def test_base_models_are_bundled_without_osim_rl():
    """The build copies the base models and their meshes into fastenv.envs; nothing at
    run time reads the osim-rl distribution (a build requirement only)."""
    for name in ("gait9dof18musc.osim", "gait14dof22musc_20170320.osim"):
        path = base_model_path(name)
        assert path.parent == variants.models_dir()
        meshes = set(
            re.findall(r"<geometry_file>\s*([^<\s]+)\s*</geometry_file>", path.read_text())
        )
        assert meshes and all((variants.mesh_dir() / m).is_file() for m in meshes)
    import fastenv

    root = pathlib.Path(fastenv.__file__).parent
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        if 'osim-rl")' in p.read_text() or "import osim" in p.read_text()
    ]
    assert not offenders


def test_missing_geometry_is_silent(capfd):
    # Cached variants do not sit next to a Geometry folder. Loading is what is checked:
    # building the variant (the first test to ask for it after a builder version bump)
    # loads the osim-rl base model, whose meshes OpenSim looks for and warns about.
    path = variant_path("muscle3d")
    capfd.readouterr()
    model = opensim.Model(str(path))
    model.initSystem()
    out, err = capfd.readouterr()
    assert "vtp" not in out + err


def test_geometry_search_path_points_at_the_bundled_meshes(monkeypatch):
    # Record instead of registering: the global path would slow every later load.
    added = []
    monkeypatch.setattr(opensim.ModelVisualizer, "addDirToGeometrySearchPaths", added.append)
    geometry = variants.register_geometry_search_path()
    assert added == [str(geometry)]
    assert (geometry / "femur.vtp").is_file()
    assert geometry == variants.mesh_dir()


# ---------------------------------------------------------------- palsy3d --

PALSY_CHILD = {"height": 1.61, "mass": 41.5}
PALSY_STRENGTH = 0.65
PALSY_CONTRACTURE = 0.2


def _loaded(path):
    model = opensim.Model(str(path))
    return model, model.initSystem()


def _generic_3d():
    return _loaded(base_model_path(VARIANTS["palsy3d"].base))


def _distance(model, state, body_a, body_b):
    a = model.getBodySet().get(body_a).getPositionInGround(state)
    b = model.getBodySet().get(body_b).getPositionInGround(state)
    return math.dist([a[i] for i in range(3)], [b[i] for i in range(3)])


def _muscle_params(model):
    return {
        m.getName(): (m.getMaxIsometricForce(), m.getOptimalFiberLength(), m.getTendonSlackLength())
        for m in (model.getMuscles().get(i) for i in range(model.getMuscles().getSize()))
    }


def _spheres(model):
    out = {}
    for i in range(model.getContactGeometrySet().getSize()):
        sphere = opensim.ContactSphere.safeDownCast(model.getContactGeometrySet().get(i))
        if sphere is not None:
            loc = sphere.get_location()
            out[sphere.getName()] = ([loc[0], loc[1], loc[2]], sphere.getRadius())
    return out


def test_palsy_generic_height_measure():
    """The generic model's stature by the skull-to-sole measure (bone, no soft tissue)."""
    model, state = _generic_3d()
    assert variants.standing_height(model, state) == pytest.approx(1.696, abs=0.002)
    assert variants.standing_height(model) == variants.standing_height(model, state)


def test_palsy_scaled_to_the_child():
    generic, gs = _generic_3d()
    plain, ps = _loaded(variant_path("palsy3d", contracture=0))
    factor = PALSY_CHILD["height"] / variants.standing_height(generic, gs)
    assert factor == pytest.approx(0.949, abs=0.001)

    assert plain.getTotalMass(ps) == pytest.approx(PALSY_CHILD["mass"], abs=1e-6)
    assert variants.standing_height(plain, ps) == pytest.approx(PALSY_CHILD["height"], abs=0.01)
    mass_ratio = PALSY_CHILD["mass"] / generic.getTotalMass(gs)
    for body in ("pelvis", "femur_r", "tibia_l", "torso"):  # mass distribution preserved
        assert plain.getBodySet().get(body).getMass() == pytest.approx(
            generic.getBodySet().get(body).getMass() * mass_ratio, rel=1e-9
        )

    # Segment lengths: femur = hip centre (femur origin) to knee centre (tibia
    # origin, knee at 0); shank = knee centre to ankle centre (talus origin).
    for a, b in (("femur_r", "tibia_r"), ("femur_l", "tibia_l"), ("tibia_r", "talus_r")):
        assert _distance(plain, ps, a, b) == pytest.approx(
            _distance(generic, gs, a, b) * factor, rel=1e-9
        )
    assert _distance(generic, gs, "femur_r", "tibia_r") == pytest.approx(0.396, abs=0.001)

    g_spheres, p_spheres = _spheres(generic), _spheres(plain)
    assert set(p_spheres) == set(g_spheres) and len(p_spheres) == 6
    for name, (loc, radius) in g_spheres.items():
        assert p_spheres[name][0] == pytest.approx([x * factor for x in loc], rel=1e-12, abs=1e-15)
        assert p_spheres[name][1] == pytest.approx(radius * factor, rel=1e-12)
    pelvis_ty = plain.getCoordinateSet().get("pelvis_ty").getDefaultValue()
    assert pelvis_ty == pytest.approx(
        generic.getCoordinateSet().get("pelvis_ty").getDefaultValue() * factor
    )

    # Muscle paths scale, and so do fibre and tendon lengths (OpenSim's
    # post-scale step); forces follow (mass ratio)^(2/3) times the CP strength.
    force_factor = mass_ratio ** (2 / 3) * PALSY_STRENGTH
    g_params, p_params = _muscle_params(generic), _muscle_params(plain)
    assert list(p_params) == MUSCLES_3D
    for name, (force, fiber, tendon) in g_params.items():
        assert p_params[name][0] == pytest.approx(force * force_factor, rel=1e-12)
        assert p_params[name][1] == pytest.approx(fiber * factor, rel=1e-9)
        assert p_params[name][2] == pytest.approx(tendon * factor, rel=1e-9)
        g_len = generic.getMuscles().get(name).getLength(gs)
        assert plain.getMuscles().get(name).getLength(ps) == pytest.approx(g_len * factor, rel=1e-9)


def test_palsy_strength_and_contracture_params():
    palsy = _muscle_params(_loaded(variant_path("palsy3d"))[0])
    plain = _muscle_params(_loaded(variant_path("palsy3d", contracture=0))[0])
    full = _muscle_params(_loaded(variant_path("palsy3d", strength=1.0))[0])
    assert variants.PALSY_CONTRACTURE_MUSCLES == (
        "hamstrings_r",
        "gastroc_r",
        "hamstrings_l",
        "gastroc_l",
    )
    for name in MUSCLES_3D:
        force, fiber, tendon = palsy[name]
        assert force == pytest.approx(full[name][0] * PALSY_STRENGTH, rel=1e-12)
        assert force == plain[name][0] and tendon == plain[name][2]
        shortened = 1 - PALSY_CONTRACTURE if name in variants.PALSY_CONTRACTURE_MUSCLES else 1.0
        assert fiber == pytest.approx(plain[name][1] * shortened, rel=1e-12)
    assert variant_path(
        "palsy3d", height=1.61, mass=41.5, strength=0.65, contracture=0.2
    ) == variant_path("palsy3d")


def _passive_force(model, muscle, hip_flexion_deg, ankle_deg):
    """Passive fibre force of a relaxed right-leg muscle, knee fully extended (0)."""
    state = model.initSystem()
    cs = model.getCoordinateSet()
    cs.get("hip_flexion_r").setValue(state, math.radians(hip_flexion_deg), False)
    cs.get("knee_angle_r").setValue(state, 0.0, False)
    cs.get("ankle_angle_r").setValue(state, math.radians(ankle_deg))
    for i in range(model.getMuscles().getSize()):
        model.getMuscles().get(i).setActivation(state, 0.01)  # Thelen's minimum
    model.equilibrateMuscles(state)
    model.realizeDynamics(state)
    return model.getMuscles().get(muscle).getPassiveFiberForce(state)


def test_palsy_contracture_resists_knee_extension_and_dorsiflexion():
    """Crouch-like hip flexion with a straight knee stretches the short hamstrings much more."""
    palsy = _loaded(variant_path("palsy3d"))[0]
    plain = _loaded(variant_path("palsy3d", contracture=0))[0]
    for muscle, hip, ankle in (
        ("hamstrings_r", 30, 0),
        ("hamstrings_r", 45, 0),
        ("gastroc_r", 0, 10),
    ):
        short, normal = (
            _passive_force(palsy, muscle, hip, ankle),
            _passive_force(plain, muscle, hip, ankle),
        )
        assert normal > 10.0  # both are stretched; the contractured one far more
        assert short > 2.5 * normal, (muscle, hip, ankle, short, normal)
    # Hamstrings are slack when standing upright in the plain child only.
    assert _passive_force(plain, "hamstrings_r", 0, 0) == 0.0
    assert _passive_force(palsy, "hamstrings_r", 0, 0) > 0.0


def test_palsy_build_is_byte_identical(tmp_path, monkeypatch):
    files = []
    for sub in ("a", "b"):
        monkeypatch.setenv("FASTENV_CACHE", str(tmp_path / sub))
        files.append(variant_path("palsy3d"))
    assert files[0].name == files[1].name
    assert files[0].read_bytes() == files[1].read_bytes()
    text = files[0].read_text()
    assert "fastenv variant palsy3d" in text and '"contracture": 0.2' in text


def test_palsy_bad_params(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTENV_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="contracture") as err:
        variant_path("palsy3d", contractures=0.1)
    assert all(p in str(err.value) for p in ("height", "mass", "strength"))
    for bad in (
        {"contracture": 1.0},
        {"contracture": -0.1},
        {"strength": 0.0},
        {"height": -1.61},
        {"mass": float("nan")},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            variant_path("palsy3d", **bad)
    assert list(tmp_path.iterdir()) == []


def _two_sphere_block(split_by_hand: bool):
    """A free 10-kg block on two spheres (A at x = -0.1, B at x = +0.1), 1 cm into
    the floor, spinning so that A rises at 1 m/s and B sinks at 1 m/s."""
    m = opensim.Model()
    block = opensim.Body("block", 10, opensim.Vec3(0), opensim.Inertia(0.1, 0.1, 0.1))
    m.addBody(block)
    m.addJoint(opensim.FreeJoint("free", m.getGround(), block))
    m.addContactGeometry(opensim.ContactHalfSpace(
        opensim.Vec3(0), opensim.Vec3(0, 0, -math.pi / 2), m.getGround(), "floor"))
    for name, x in (("A", -0.1), ("B", 0.1)):
        m.addContactGeometry(opensim.ContactSphere(0.05, opensim.Vec3(x, 0, 0), block, name))
    for group in ((["A"], ["B"]) if split_by_hand else (["A", "B"],)):
        f = opensim.HuntCrossleyForce()
        f.setName("foot" + ("".join(group) if split_by_hand else ""))
        f.setStiffness(1e6)
        f.setDissipation(1.5)
        f.setStaticFriction(0.8)
        f.setDynamicFriction(0.8)
        f.setViscousFriction(0.5)
        for g in group + ["floor"]:
            f.addGeometry(g)
        m.addForce(f)
    return m


def _udot(model):
    state = model.initSystem()
    state.updQ().set(4, 0.04)     # sphere centres 4 cm up: 1 cm into the floor
    state.updU().set(2, -10.0)    # about z: A (x = -0.1) rises, B sinks, 1 m/s each
    model.realizeAcceleration(state)
    return state.getUDot().to_numpy()


def test_hunt_crossley_split_per_sphere_keeps_the_loaded_sphere():
    """OpenSim 4.6 drops every contact after the first with a negative Hunt-Crossley
    term; the builder's split gives the loaded sphere its force back."""
    import numpy as np

    gravity_only = np.array([0, 0, 0, 0, -9.80665, 0])
    shared = _udot(_two_sphere_block(False))
    by_hand = _udot(_two_sphere_block(True))
    # The bug this works around: sphere B is 1 cm deep and sinking, yet nothing acts.
    np.testing.assert_allclose(shared, gravity_only, atol=0.02)
    assert by_hand[4] > 20          # B alone pushes the block up at > 2 g
    model = _two_sphere_block(False)
    variants._split_hunt_crossley(model)
    names = [f.getName() for f in model.getForceSet()]
    assert names == ["foot:A", "foot:B"]
    np.testing.assert_allclose(_udot(model), by_hand, rtol=1e-12, atol=1e-9)
