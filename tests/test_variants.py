"""Model variants: content, loading, simulation, deterministic caching, errors."""
import math
import os
import subprocess
import sys
from importlib import metadata

import opensim
import pytest

from fastenv.envs import variants
from fastenv.envs.variants import VARIANTS, VariantSpec, base_model_path, cache_dir, variant_path

MUSCLES_2D = ["hamstrings_r", "bifemsh_r", "glut_max_r", "iliopsoas_r", "rect_fem_r", "vasti_r",
              "gastroc_r", "soleus_r", "tib_ant_r", "hamstrings_l", "bifemsh_l", "glut_max_l",
              "iliopsoas_l", "rect_fem_l", "vasti_l", "gastroc_l", "soleus_l", "tib_ant_l"]
MUSCLES_3D = ["abd_r", "add_r"] + MUSCLES_2D[:9] + ["abd_l", "add_l"] + MUSCLES_2D[9:]
SHANK_L = ["gastroc_l", "soleus_l", "tib_ant_l"]

COORDS_2D = ["pelvis_tilt", "pelvis_tx", "pelvis_ty", "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
             "hip_flexion_l", "knee_angle_l", "ankle_angle_l", "lumbar_extension"]
COORDS_3D = ["pelvis_tilt", "pelvis_list", "pelvis_rotation", "pelvis_tx", "pelvis_ty", "pelvis_tz",
             "hip_flexion_r", "hip_adduction_r", "hip_rotation_r", "knee_angle_r", "ankle_angle_r",
             "hip_flexion_l", "hip_adduction_l", "hip_rotation_l", "knee_angle_l", "ankle_angle_l",
             "lumbar_extension"]
LOCKED_BASE_2D = {"lumbar_extension"}
LOCKED_BASE_3D = {"hip_rotation_r", "hip_rotation_l", "lumbar_extension"}
LOCKED_KNEE = {"knee_angle_l", "ankle_angle_l"}

TORQUE_2D = ["pelvis_tilt", "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
             "hip_flexion_l", "knee_angle_l", "ankle_angle_l"]
TORQUE_3D = ["pelvis_tilt", "pelvis_list", "pelvis_rotation", "hip_flexion_r", "hip_adduction_r",
             "knee_angle_r", "ankle_angle_r", "hip_flexion_l", "hip_adduction_l",
             "knee_angle_l", "ankle_angle_l"]


def _without(names, drop):
    return [n for n in names if n not in drop]


# name -> (coordinates, locked, muscles, coordinate actuators)
EXPECTED = {
    "muscle2d": (COORDS_2D, LOCKED_BASE_2D, MUSCLES_2D, []),
    "muscle3d": (COORDS_3D, LOCKED_BASE_3D, MUSCLES_3D, []),
    "torque2d": (COORDS_2D, LOCKED_BASE_2D, [], TORQUE_2D),
    "torque3d": (COORDS_3D, LOCKED_BASE_3D, [], TORQUE_3D),
    "muscle2d_lockedknee": (COORDS_2D, LOCKED_BASE_2D | LOCKED_KNEE, _without(MUSCLES_2D, SHANK_L), []),
    "muscle3d_lockedknee": (COORDS_3D, LOCKED_BASE_3D | LOCKED_KNEE, _without(MUSCLES_3D, SHANK_L), []),
    "torque2d_lockedknee": (COORDS_2D, LOCKED_BASE_2D | LOCKED_KNEE, [], _without(TORQUE_2D, LOCKED_KNEE)),
    "torque3d_lockedknee": (COORDS_3D, LOCKED_BASE_3D | LOCKED_KNEE, [], _without(TORQUE_3D, LOCKED_KNEE)),
}


def _names(object_set):
    return [object_set.get(i).getName() for i in range(object_set.getSize())]


def _forces_by_class(model, cls):
    fs = model.getForceSet()
    return [fs.get(i).getName() for i in range(fs.getSize()) if fs.get(i).getConcreteClassName() == cls]


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
    assert _forces_by_class(model, "HuntCrossleyForce") == ["foot_r", "foot_l"]
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
    assert _names(cached.getForceSet()) == _names(base.getForceSet())
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
    monkeypatch.setattr(variants, "_build_model", lambda *a, **k: pytest.fail("rebuilt a cached variant"))
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
    assert opensim.CoordinateActuator.safeDownCast(
        model.getForceSet().get("knee_angle_r")).getOptimalForce() == 400.0
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
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
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

    monkeypatch.setitem(VARIANTS, "heavy2d", VariantSpec("gait9dof18musc.osim", heavier, {"mass_scale": 1.0}))
    base = opensim.Model(str(variant_path("muscle2d")))
    heavy = opensim.Model(str(variant_path("heavy2d", mass_scale=1.5)))
    assert heavy.getName() == "heavy2d"
    assert heavy.getTotalMass(heavy.initSystem()) == pytest.approx(1.5 * base.getTotalMass(base.initSystem()))


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


def test_base_model_errors(monkeypatch):
    with pytest.raises(FileNotFoundError, match="no_such_model.osim"):
        base_model_path("no_such_model.osim")

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(variants.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install osim-rl"):
        base_model_path("gait9dof18musc.osim")


def test_missing_geometry_is_silent(capfd):
    # Cached variants do not sit next to osim-rl's Geometry folder.
    model = opensim.Model(str(variant_path("muscle3d")))
    model.initSystem()
    out, err = capfd.readouterr()
    assert "vtp" not in out + err


def test_geometry_search_path_points_at_osim_rl(monkeypatch):
    # Record instead of registering: the global path would slow every later load.
    added = []
    monkeypatch.setattr(opensim.ModelVisualizer, "addDirToGeometrySearchPaths", added.append)
    geometry = variants.register_geometry_search_path()
    assert added == [str(geometry)]
    assert (geometry / "femur.vtp").is_file()
    assert geometry.parent == base_model_path("gait9dof18musc.osim").parent
