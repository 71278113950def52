"""Tests of the Moco 2D reference pipeline (refgen.moco, refgen.tasks2d) and of the
committed references it made.

The committed-data tests check that ``envs/references/walking2d_coordinates.sto``
is a normal adult walk, recomputing the ground reaction forces from its
kinematics with the model's smooth contact spheres (no stored forces are
trusted).  The smoke test runs the whole pipeline on a very coarse mesh.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from fastenv.sim import GRAVITY
from refgen import CHECKOUT, MOTIONS_ENV, REFERENCES_DIR, moco, tasks2d
from refgen.motion import read_coordinates_sto
from refgen.tests.conftest import shared_motion

STO = REFERENCES_DIR / "walking2d_coordinates.sto"
JSON = REFERENCES_DIR / "walking2d.json"


def _need_motion():
    return shared_motion(moco.DEFAULT_MOTION)


@pytest.fixture(scope="module")
def committed():
    if not STO.is_file():
        pytest.fail(f"{STO} is not committed")
    cycle = read_coordinates_sto(STO)
    grf = moco.contact_forces(cycle)
    return cycle, grf, moco.gait_figures(cycle, grf, moco.body_weight_n())


# ------------------------------------------------------------------ committed data
def test_committed_file_format(committed):
    cycle, _, _ = committed
    assert cycle.names == moco.COORDINATES
    dt = np.diff(cycle.time)
    assert cycle.time[0] == 0.0
    assert np.allclose(dt, dt.mean(), rtol=1e-4, atol=1e-7), "time grid is not uniform"
    assert np.isfinite(cycle.values).all() and np.isfinite(cycle.speeds).all()
    # Speeds are the time derivatives of the values: integrating them
    # (trapezoids) retraces the values.
    steps = 0.5 * (cycle.speeds[1:] + cycle.speeds[:-1]) * np.diff(cycle.time)[:, None]
    drift = np.abs(cycle.values[0] + np.vstack([0 * steps[:1], np.cumsum(steps, axis=0)])
                   - cycle.values).max(axis=0)
    for j, name in enumerate(cycle.names):
        limit = 0.002 if name in moco.TRANSLATIONS else math.radians(0.5)
        assert drift[j] < limit, name


def test_committed_gait_is_normal_adult_walking(committed):
    """The measured walk tracked at its own cadence, with its force plates, is a normal
    adult walk at the subject's speed (within 5%: kinematics alone, the model's longer
    legs walked 1.08 m/s where the subject walked 0.975 m/s)."""
    _, _, f = committed
    doc = json.loads(JSON.read_text())
    assert doc["reference_stage"] == "tracking"
    assert "grf_target" in doc and doc["objective_weights"]["grf_tracking"] > 0
    assert f["cycle_duration_s"] == pytest.approx(2 * doc["half_cycle_s"], abs=1e-3)
    assert f["speed_m_s"] == pytest.approx(doc["speed_m_s"], rel=0.05), f
    assert 1.1 <= f["stride_length_m"] <= 1.5, f
    assert f["knee_flexion_at_heel_strike_deg"] < 10.0, f
    assert 50.0 <= f["peak_swing_knee_flexion_deg"] <= 70.0, f
    assert f["heel_strikes_per_foot"] == [1, 1], f
    assert f["num_double_support_phases"] == 2, f
    # Each double support is a clear phase (> 3 % of the cycle), not a flicker.
    assert min(f["double_support_phases"]) > 0.03, f
    assert 0.55 <= f["duty_factor_r"] <= 0.7 and 0.55 <= f["duty_factor_l"] <= 0.7, f
    assert 1.0 < f["peak_vertical_grf_bw"] < 2.0, f


def test_committed_cycle_closes_at_the_seam(committed):
    cycle, _, f = committed
    assert f["seam_error_deg"] < 2.0
    tx = cycle.names.index("pelvis_tx")
    assert cycle.values[-1, tx] - cycle.values[0, tx] == pytest.approx(f["stride_length_m"])
    # Left/right symmetry: half a cycle later the other leg does the same.
    n = len(cycle.time) - 1
    assert n % 2 == 0
    swap = [cycle.names.index(moco.swap_side(name)) for name in cycle.names]
    angles = [j for j, name in enumerate(cycle.names) if name not in moco.TRANSLATIONS]
    shifted = cycle.values[np.arange(n) + n // 2 - n * (np.arange(n) + n // 2 >= n)]
    err = np.degrees(np.abs(shifted[:, swap] - cycle.values[:n])[:, angles]).max()
    assert err < 2.0


def test_committed_json_matches_file(committed):
    _, _, f = committed
    doc = json.loads(JSON.read_text())
    for key in ("speed_m_s", "stride_length_m", "knee_flexion_at_heel_strike_deg",
                "peak_swing_knee_flexion_deg", "peak_vertical_grf_bw"):
        assert doc["figures"][key] == pytest.approx(f[key], abs=1e-3), key
    assert doc["opensim_version"].startswith("4.")
    assert any(label.startswith("tracking") for label in doc["mesh_intervals"])
    for stage in doc["stages"].values():
        # a stage stopped by hand says why, with its primal infeasibility
        assert stage["converged"] or ("note" in stage and stage["primal_infeasibility"] < 1e-3)
        assert stage["iterations"] > 0 and stage["wall_time_s"] > 0


# ------------------------------------------------------------------ pipeline pieces
def test_model_processor_is_moco_ready():
    osim = moco._osim()
    base = osim.Model(moco.model_file())
    s0 = base.initSystem()
    model = moco.model_processor().process()
    s = model.initSystem()
    names = [c.getName() for c in model.getCoordinateSet()]
    assert tuple(names) == moco.COORDINATES  # lumbar welded, nothing locked
    classes = [f.getConcreteClassName() for f in model.getForceSet()]
    assert "HuntCrossleyForce" not in classes
    assert classes.count("SmoothSphereHalfSpaceForce") == 4
    assert classes.count("DeGrooteFregly2016Muscle") == 18
    assert model.getTotalMass(s) == pytest.approx(base.getTotalMass(s0))
    # The weld keeps the torso at the locked lumbar angle.
    r0 = base.getBodySet().get("torso").getTransformInGround(s0).R()
    r1 = model.getBodySet().get("torso").getTransformInGround(s).R()
    assert r0.convertRotationToBodyFixedXYZ().get(2) == pytest.approx(
        r1.convertRotationToBodyFixedXYZ().get(2), abs=1e-9)


def test_target_from_user_motion_recovers_speed(tmp_path, committed):
    """Event detection and belt-speed logic on a known gait: the committed cycle
    tiled three times and put on a 0.8 m/s 'treadmill', in degrees."""
    cycle, _, f = committed
    n = len(cycle.time) - 1
    period = cycle.time[-1]
    tx = cycle.names.index("pelvis_tx")
    rows = []
    for c in range(3):
        for k in range(n):
            t = c * period + cycle.time[k]
            v = cycle.values[k].copy()
            v[tx] += c * f["stride_length_m"] - 0.8 * t
            rows.append([t, *[x if name in moco.TRANSLATIONS else math.degrees(x)
                              for name, x in zip(cycle.names, v)]])
    path = tmp_path / "user_walk.mot"
    path.write_text("user walk\ninDegrees=yes\nendheader\n"
                    + "\t".join(["time", *cycle.names]) + "\n"
                    + "\n".join("\t".join(f"{x:.8f}" for x in r) for r in rows) + "\n")
    target = moco.half_cycle_target(path)
    assert target.speed == pytest.approx(f["speed_m_s"], rel=0.05)
    assert target.belt_speed == pytest.approx(0.8, abs=0.06)
    assert target.time[-1] == pytest.approx(period / 2, abs=2 * period / n)
    assert target.coords["pelvis_tx"][-1] == pytest.approx(f["stride_length_m"] / 2, rel=0.06)


def test_regeneration_without_shared_motions_explains(monkeypatch, tmp_path):
    monkeypatch.setenv(MOTIONS_ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="--motions.*--motion FILE"):
        moco.generate_walking2d(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_motions_folder_is_one_setting(monkeypatch, tmp_path):
    """The environment variable and the --motions option set the folder that every
    generator reads; by default it is ../shared/data/motions next to the checkout."""
    from refgen import motions_dir
    from refgen.__main__ import main

    monkeypatch.delenv(MOTIONS_ENV, raising=False)
    assert motions_dir() == CHECKOUT / ".." / "shared" / "data" / "motions"
    monkeypatch.setenv(MOTIONS_ENV, str(tmp_path))
    assert motions_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "elsewhere"))):
        main(["generate", "walking2d", "--motions", str(tmp_path / "elsewhere"),
              "--out", str(tmp_path / "out")])


def test_seed_reaches_the_predictive_stage_and_is_refused_elsewhere(monkeypatch, tmp_path,
                                                                    capsys):
    """``--seed`` replaces the tracking stage before a predictive one: lockedknee2d's
    settings carry it to the pipeline; the generators without a predictive stage (the
    tracked 2D references, the 3D ones) refuse it instead of solving without it."""
    from refgen.__main__ import main

    seen = {}

    def fake_gait(out_dir, *, settings, **kwargs):
        seen["seed"] = settings.seed
        return {}

    monkeypatch.setattr(moco, "generate_gait", fake_gait)
    seed = str(REFERENCES_DIR / "lockedknee2d_solution.sto")
    assert main(["generate", "lockedknee2d", "--seed", seed, "--out", str(tmp_path)]) == 0
    assert seen["seed"] == seed
    for name in ("walking2d", "running2d", "jumping2d", "walking3d", "palsy3d"):
        assert main(["generate", name, "--seed", seed, "--out", str(tmp_path)]) == 2, name
        assert f"{name} solves none" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_help_names_shared_motions_and_generators():
    out = subprocess.run([sys.executable, "-m", "refgen", "generate", "--help"],
                         capture_output=True, text=True, check=True, cwd=CHECKOUT).stdout
    assert "../shared/data/motions/" in out and "--motions" in out and "--motion" in out
    assert "--out" in out and "walking2d" in out
    from refgen.__main__ import GENERATORS
    assert "walking2d" in GENERATORS
    out = subprocess.run([sys.executable, "-m", "refgen", "--help"], capture_output=True,
                         text=True, check=True, cwd=CHECKOUT).stdout
    assert "generate" in out


# ------------------------------------------------------------------ smoke test
def test_pipeline_smoke_coarse(tmp_path):
    """The walking2d pipeline (measured kinematics and, at a weight > 0, forces
    tracked, coarse then refined) on 4- and 6-interval meshes with few iterations: it
    must run end to end and write a well-formed full cycle, figures and the force
    target it tracked."""
    _need_motion()
    shared_motion(moco.DEFAULT_GRF)
    settings = moco.WalkingSettings(tracking_mesh=4, fine_mesh=6, max_iterations=10,
                                    coarse_only=False, verbose=False, grf_tracking_weight=0.03)
    doc = moco.generate_walking2d(tmp_path / "out", settings=settings,
                                  work_dir=tmp_path / "work", write_npz=False,
                                  log=lambda m: None)
    cycle = read_coordinates_sto(tmp_path / "out" / "walking2d_coordinates.sto")
    half_rows = 2 * 6 + 1  # Hermite-Simpson: mesh points and midpoints
    assert cycle.names == moco.COORDINATES
    assert cycle.values.shape == (2 * half_rows - 1, len(moco.COORDINATES))
    assert np.all(np.diff(cycle.time) > 0) and cycle.time[0] == 0.0
    assert np.isfinite(cycle.values).all() and np.isfinite(cycle.speeds).all()
    assert doc["figures"]["stride_length_m"] > 0
    assert set(doc["stages"]) == {"tracking", "tracking_grf", "tracking_fine"}
    for stage in doc["stages"].values():
        assert 0 < stage["iterations"] <= 10
    assert doc["reference_stage"] == "tracking" and doc["speed_m_s"] == pytest.approx(0.975,
                                                                                      abs=0.02)
    assert doc["grf_target"]["plates"] == {"r": "ground_force_", "l": "1_ground_force_"}
    written = json.loads((tmp_path / "out" / "walking2d.json").read_text())
    assert written["figures"] == doc["figures"]
    assert (tmp_path / "work" / "tracking_fine_solution.sto").is_file()
    assert (tmp_path / "work" / "grf_target.xml").is_file()


def test_half_cycle_forces_are_the_measured_cycle_symmetrised(tmp_path):
    """Feet are matched to plates by the centres of pressure (swapping the plates'
    column names swaps the match, not the forces); the forces carry the model's
    weight on average; the right foot's first half is the left foot's second half."""
    motion = _need_motion()
    grf = shared_motion(moco.DEFAULT_GRF)
    target = moco.half_cycle_target(motion)
    weight = moco.body_weight_n()
    forces = moco.half_cycle_forces(grf, motion, target, weight)
    assert forces.info["plates"] == {"r": "ground_force_", "l": "1_ground_force_"}
    assert 600 < forces.info["subject_weight_n"] < 800
    total = forces.forces["r"][:, 1] + forces.forces["l"][:, 1]
    t = forces.time
    assert np.trapezoid(total, t) / t[-1] == pytest.approx(weight, rel=0.02)
    # heel strike of the right foot at the start, its loading and push-off humps
    r = forces.forces["r"][:, 1] / weight
    assert r[0] < 0.05 and 1.0 < r.max() < 1.3
    text = grf.read_text().replace("1_ground_force_", "PLATE_B_").replace(
        "ground_force_", "1_ground_force_").replace("PLATE_B_", "ground_force_")
    swapped_file = tmp_path / "swapped_grf.mot"
    swapped_file.write_text(text)
    swapped = moco.half_cycle_forces(swapped_file, motion, target, weight)
    assert swapped.info["plates"] == {"r": "1_ground_force_", "l": "ground_force_"}
    for side in "rl":
        np.testing.assert_allclose(swapped.forces[side], forces.forces[side])


@pytest.mark.slow
def test_pipeline_coarse_converges(tmp_path):
    """Regenerate with the coarse tracking solve (minutes) and check the gait is
    still a normal walk at the measured speed."""
    _need_motion()
    settings = moco.WalkingSettings(coarse_only=True, verbose=False)
    doc = moco.generate_walking2d(tmp_path / "out", settings=settings,
                                  work_dir=tmp_path / "work", write_npz=False)
    f = doc["figures"]
    assert all(stage["converged"] for stage in doc["stages"].values())
    assert abs(f["speed_m_s"] - doc["speed_m_s"]) < 0.05 * doc["speed_m_s"]
    assert f["knee_flexion_at_heel_strike_deg"] < 10.0
    assert 50.0 <= f["peak_swing_knee_flexion_deg"] <= 70.0


# ================================================================== more references
# running2d, jumping2d and lockedknee2d (refgen.tasks2d): shared pipeline pieces, a
# fast smoke run of each generator, and plausibility of the committed data (forces
# recomputed from the committed kinematics).
_need_public = shared_motion


# ------------------------------------------------------------------ shared pieces
def test_locked_joints_welded_at_the_locked_pose():
    """The Moco model of the locked-knee variant has no knee_l/ankle_l
    coordinates, its left shank and foot sit where the locked variant puts
    them, and the left thigh muscles keep their lengths and hip moment arms."""
    from fastenv.envs.variants import variant_path

    osim = moco._osim()
    path = str(variant_path("muscle2d_lockedknee"))
    locked = osim.Model(path)
    s0 = locked.initSystem()
    model = moco.model_processor(path, weld=("knee_l", "ankle_l")).process()
    s1 = model.initSystem()
    assert moco.model_coordinates(model) == tuple(
        c for c in moco.COORDINATES if c not in ("knee_angle_l", "ankle_angle_l"))
    for body in ("tibia_l", "calcn_l", "toes_l"):
        p0 = locked.getBodySet().get(body).getTransformInGround(s0).p()
        p1 = model.getBodySet().get(body).getTransformInGround(s1).p()
        assert [p1.get(i) for i in range(3)] == pytest.approx([p0.get(i) for i in range(3)],
                                                              abs=1e-9), body
    for hip in (-0.3, 0.0, 0.5):
        for m, s in ((locked, s0), (model, s1)):
            m.getCoordinateSet().get("hip_flexion_l").setValue(s, hip)
            m.realizeVelocity(s)
        for muscle in ("rect_fem_l", "hamstrings_l", "vasti_l", "bifemsh_l"):
            a, b = locked.getMuscles().get(muscle), model.getMuscles().get(muscle)
            assert b.getLength(s1) == pytest.approx(a.getLength(s0), abs=1e-9), muscle
            arm0 = a.getGeometryPath().computeMomentArm(
                s0, locked.getCoordinateSet().get("hip_flexion_l"))
            arm1 = b.getGeometryPath().computeMomentArm(
                s1, model.getCoordinateSet().get("hip_flexion_l"))
            assert arm1 == pytest.approx(arm0, abs=1e-9), muscle


def test_running_target_speed_ignores_flight():
    """With flight phases, the speed comes from the samples with a foot on the
    belt: about the recorded 3.7-3.9 m/s; averaging over flight (walking rule)
    would say far less."""
    path = _need_public(tasks2d.RUNNING_MOTION)
    target = moco.half_cycle_target(path, flight=True)
    assert 3.4 < target.speed < 4.2
    assert 0.3 < target.time[-1] < 0.4   # half of a 0.6-0.8 s running stride
    walking_rule = moco.half_cycle_target(path)
    assert walking_rule.speed < target.speed - 0.5


def test_mean_half_cycle_is_the_subjects_usual_stride():
    """strides="mean" symmetrises every stride of the run: its knee is closer to the
    recording's strides than the first stride's symmetric half (the first is the
    recording's most unusual one)."""
    path = _need_public(tasks2d.RUNNING_MOTION)
    t, q, strides, _ = moco.gait_strides(path, flight=True)
    first = moco.half_cycle_target(path, flight=True)
    mean = moco.half_cycle_target(path, flight=True, strides="mean")
    assert mean.info["strides"] == len(strides) > 10 and first.info["strides"] == 1
    s = np.linspace(0.0, 1.0, len(mean.time))

    def knee_rms(target):   # right knee of the half cycle against each stride's, median
        errors = []
        for a, m, _ in strides:
            measured = np.interp(t[a] + s * (t[m] - t[a]), t, q["knee_angle_r"])
            errors.append(np.sqrt(np.mean((target.coords["knee_angle_r"] - measured) ** 2)))
        return math.degrees(float(np.median(errors)))

    assert knee_rms(mean) < knee_rms(first) - 1.0
    assert 3.4 < mean.speed < 4.2
    assert mean.info["cycle_s_range"][0] <= 2 * mean.time[-1] <= mean.info["cycle_s_range"][1]
    with pytest.raises(ValueError, match="strides='all'.*'first' or 'mean'"):
        moco.half_cycle_target(path, strides="all")


def test_jump_target_starts_upright_and_ends_at_apex():
    path = _need_public(tasks2d.JUMP_MOTION)
    target = tasks2d.jump_target(path)
    ty = target.coords["pelvis_ty"]
    assert np.argmax(ty) == len(ty) - 1
    assert -math.degrees(target.coords["knee_angle_r"][0]) < 15.0
    assert np.degrees(target.coords["knee_angle_r"]).min() < -60.0   # a countermovement
    assert target.coords["knee_angle_r"] == pytest.approx(target.coords["knee_angle_l"])
    assert target.coords["pelvis_tx"][0] == 0.0
    assert 0.5 < target.time[-1] < 1.5


def test_jump_target_toes_stay_planted_until_takeoff():
    """The recording's standing toes drift by centimetres (video capture); the target's
    pelvis takes that drift out, so the toes stand still until they lift off, and the
    drift removed is reported."""
    path = _need_public(tasks2d.JUMP_MOTION)
    target = tasks2d.jump_target(path)
    centre_x, _ = moco.foot_kinematics(target.time, target.coords)
    k = target.info["planted_until_frame"]
    assert 0.5 * len(target.time) < k < len(target.time) - 5     # lifts off late
    for side in ("r", "l"):
        assert np.ptp(centre_x[f"{side}_toe"][:k]) < 1e-3
    assert 0.01 < target.info["removed_toe_drift_m"] < 0.1
    drifting = tasks2d.jump_target(path, settings=tasks2d.JumpSettings(planted_feet=False))
    centre_x, _ = moco.foot_kinematics(drifting.time, drifting.coords)
    assert np.ptp(centre_x["r_toe"][:k]) > 0.01
    for name in moco.COORDINATES:   # only the forward pelvis position changes
        if name != "pelvis_tx":
            assert target.coords[name] == pytest.approx(drifting.coords[name])


def test_cli_lists_all_generators():
    from refgen.__main__ import GENERATORS

    assert set(GENERATORS) >= {"walking2d", "running2d", "jumping2d", "lockedknee2d"}
    out = subprocess.run([sys.executable, "-m", "refgen", "generate", "--help"],
                         capture_output=True, text=True, check=True, cwd=CHECKOUT).stdout
    for name in ("running2d", "jumping2d", "lockedknee2d"):
        assert name in out


# ------------------------------------------------------------------ smoke tests
_SMOKE = dict(tracking_mesh=4, coarse_mesh=4, coarse_only=True, max_iterations=15,
              verbose=False)


def _smoke(generate, settings, tmp_path, name, rows, motion=None,
           stages=("tracking", "predictive_coarse")):
    doc = generate(tmp_path / "out", motion=motion, settings=settings,
                   work_dir=tmp_path / "work", write_npz=False, log=lambda m: None)
    out = read_coordinates_sto(tmp_path / "out" / f"{name}_coordinates.sto")
    assert out.names == moco.COORDINATES
    assert out.values.shape == (rows, len(moco.COORDINATES))
    assert np.all(np.diff(out.time) > 0) and out.time[0] == 0.0
    assert np.isfinite(out.values).all() and np.isfinite(out.speeds).all()
    assert set(doc["stages"]) == set(stages)
    for stage in doc["stages"].values():
        assert 0 < stage["iterations"] <= 15
    assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["figures"] == doc["figures"]
    assert (tmp_path / "work" / f"{list(stages)[-1]}_solution.sto").is_file()
    return doc, out


def test_running2d_smoke_coarse(tmp_path):
    """The measured run tracked at its own speed (the default: the committed reference),
    which ends exactly one measured half stride on; the recording's mean stride as one
    full cycle, which ends one mean stride on, with swing windows for both feet; and
    the predictive stage of the previous reference."""
    _need_public(tasks2d.RUNNING_MOTION)
    settings = tasks2d.RunningSettings(**_SMOKE)
    doc, out = _smoke(tasks2d.generate_running2d, settings, tmp_path, "running2d",
                      2 * (2 * 4 + 1) - 1, stages={"tracking"})
    assert doc["reference_stage"] == "tracking" and 3.5 < doc["speed_m_s"] < 4.0
    assert doc["objective_weights"]["foot_tracking"] == 1000.0    # the heel paths tracked
    stride = out.column("pelvis_tx")[-1] - out.column("pelvis_tx")[0]
    assert stride / out.time[-1] == pytest.approx(doc["speed_m_s"], rel=1e-3)   # track_speed
    settings = tasks2d.RunningSettings(**_SMOKE, cycle="full", cycle_start=0.45)
    doc, out = _smoke(tasks2d.generate_running2d, settings, tmp_path, "running2d",
                      2 * 4 + 1, stages={"tracking"})
    assert doc["tracking_target"]["strides"] >= 10 and 3.5 < doc["speed_m_s"] < 4.0
    assert doc["tracking_target"]["start_fraction"] == 0.45
    # four windows, the left foot's first one split by the seam (which lies in flight)
    windows = doc["swing_windows"]
    assert [w[0] for w in windows] == ["l", "l", "r", "r", "l"]
    assert windows[0][2] == 1.0 and windows[1][1] == 0.0
    stride = out.column("pelvis_tx")[-1] - out.column("pelvis_tx")[0]
    assert stride / out.time[-1] == pytest.approx(doc["speed_m_s"], rel=1e-3)
    settings = tasks2d.RunningSettings(**_SMOKE, strides="first")   # the previous target
    doc, _ = _smoke(tasks2d.generate_running2d, settings, tmp_path, "running2d",
                    2 * (2 * 4 + 1) - 1, stages={"tracking"})
    assert doc["tracking_target"]["strides"] == 1 and "left_strike_s" in doc["tracking_target"]
    settings = tasks2d.RunningSettings(**_SMOKE, reference_stage="predictive")
    doc, _ = _smoke(tasks2d.generate_running2d, settings, tmp_path, "running2d",
                    2 * (2 * 4 + 1) - 1)
    assert doc["prescribed_speed_m_s"] == 3.5


def test_lockedknee2d_smoke_coarse(tmp_path):
    """Runs from the committed walking2d cycle (no public data needed)."""
    settings = tasks2d.LockedKneeSettings(**_SMOKE)
    doc, out = _smoke(tasks2d.generate_lockedknee2d, settings, tmp_path, "lockedknee2d",
                      2 * 4 + 1)
    for name in ("knee_angle_l", "ankle_angle_l"):
        assert np.all(out.column(name) == 0.0)
    # the predictive stage flattens the centre of mass's vertical acceleration peaks,
    # and the JSON says so
    assert doc["objective_weights"]["com_acceleration"] == settings.com_acceleration_weight > 0
    assert doc["objective_weights"]["com_acceleration_exponent"] == 6


def test_cycle_forces_are_walking2d_on_the_contact_model():
    """A cycle's foot forces as lockedknee3d tracks its 2D cycle's: both feet's vertical
    force along the committed walking2d cycle, the body weight on average, each foot's
    peak within the check's hump bounds (1.0-1.3 BW)."""
    forces = tasks2d.cycle_forces()
    weight = moco.body_weight_n()
    t = forces.time
    assert t[0] == 0.0 and forces.source.endswith("walking2d_coordinates.sto")
    total = forces.forces["r"][:, 1] + forces.forces["l"][:, 1]
    assert np.trapezoid(total, t) / t[-1] == pytest.approx(weight, rel=0.03)
    for side in "rl":
        assert np.all(forces.forces[side][:, 0] == 0.0)
        assert 1.0 < forces.forces[side][:, 1].max() / weight < 1.3


def test_jumping2d_smoke_coarse(tmp_path):
    _need_public(tasks2d.JUMP_MOTION)
    settings = tasks2d.JumpSettings(**_SMOKE, reference_stage="predictive")
    doc, out = _smoke(tasks2d.generate_jumping2d, settings, tmp_path, "jumping2d",
                      2 * 4 + 1)
    assert np.abs(out.speeds[0]).max() < 1e-6   # starts at rest
    assert "jump_height_m" in doc["figures"]


def test_jumping2d_tracking_reference_smoke(tmp_path):
    """reference_stage="tracking": the tracking solution is the jump (no predictive
    stage), started from the recording's own pose within the tolerance."""
    _need_public(tasks2d.JUMP_MOTION)
    settings = tasks2d.JumpSettings(**_SMOKE)   # the default: the tracking solution
    doc, out = _smoke(tasks2d.generate_jumping2d, settings, tmp_path, "jumping2d",
                      2 * 4 + 1, stages=("tracking",))
    assert doc["reference_stage"] == "tracking"
    target = tasks2d.jump_target(shared_motion(tasks2d.JUMP_MOTION))
    lo, hi = doc["start_bounds_deg"]["pelvis_tilt"]
    start = math.degrees(target.coords["pelvis_tilt"][0])
    assert lo == pytest.approx(start - 5.0, abs=0.01) and hi == pytest.approx(start + 5.0, abs=0.01)
    assert lo - 1e-6 <= math.degrees(out.column("pelvis_tilt")[0]) <= hi + 1e-6


def _committed_figures(name):
    path = REFERENCES_DIR / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{name} is not generated")
    cycle = read_coordinates_sto(REFERENCES_DIR / f"{name}_coordinates.sto")
    return cycle, json.loads(path.read_text())["figures"]


def _seam_deg(cycle):
    return max(abs(math.degrees(cycle.values[-1, j] - cycle.values[0, j]))
               for j, n in enumerate(cycle.names) if n not in moco.TRANSLATIONS)


def test_committed_running2d_is_a_run():
    """The measured run tracked at its measured speed: flight phases, no double support,
    a human duty factor, the swing knee past 90 deg, one active peak of about two body
    weights (Moco's contact model)."""
    cycle, f = _committed_figures("running2d")
    doc = json.loads((REFERENCES_DIR / "running2d.json").read_text())
    assert doc["reference_stage"] == "tracking"
    assert f["speed_m_s"] == pytest.approx(doc["speed_m_s"], rel=1e-3), f
    assert 3.5 < f["speed_m_s"] < 4.0, f
    assert f["num_flight_phases"] == 2 and f["flight_fraction"] > 0.1, f
    assert f["double_support_fraction"] == 0.0, f
    assert 0.3 <= f["duty_factor_r"] <= 0.45, f
    assert f["peak_swing_knee_flexion_deg"] >= 90.0, f
    assert 1.8 < f["peak_vertical_grf_bw"] < 3.0, f
    assert _seam_deg(cycle) < 2.0
    assert all(stage["converged"] for stage in doc["stages"].values())


def test_committed_lockedknee2d_is_asymmetric_and_locked():
    cycle, f = _committed_figures("lockedknee2d")
    assert abs(f["speed_m_s"] - 1.3) < 0.05, f
    for name in ("knee_angle_l", "ankle_angle_l"):
        assert np.all(cycle.column(name) == 0.0), name
    assert f["heel_strikes_per_foot"] == [1, 1], f
    # asymmetric: the locked leg's step is the longer one, its stance the shorter
    assert abs(f["step_time_s_rl"][0] - f["step_time_s_rl"][1]) > 0.05, f
    assert f["duty_factor_r"] > f["duty_factor_l"], f
    assert 50.0 <= f["peak_swing_knee_flexion_deg_rl"][0] <= 75.0, f
    assert _seam_deg(cycle) < 2.0


def test_committed_jumping2d_is_a_vertical_jump():
    cycle, f = _committed_figures("jumping2d")
    assert f["jump_height_m"] >= 0.25, f
    assert f["apex_vertical_velocity_m_s"] == pytest.approx(0.0, abs=0.05), f
    assert f["flight_duration_s"] > 0.1 and f["takeoff_vertical_velocity_m_s"] > 1.5, f
    # take-off with the knees nearly extended, from a real countermovement
    assert f["knee_flexion_at_takeoff_deg"] <= 20.0, f
    assert f["countermovement_depth_m"] > 0.1 and f["peak_knee_flexion_deg"] > 60.0, f
    # quiet standing at the start: at rest, feet carrying about body weight
    assert f["start_speed_max"] == 0.0 and 0.8 < f["start_vertical_grf_bw"] < 1.3, f
    from fastenv.references import Reference
    ref = Reference.load(REFERENCES_DIR / "jumping2d.npz")
    assert ref.playback == "mirror"
    # the env starts the jump from rest, as the solution does (clamped spline start)
    assert np.abs(ref.qdot[0]).max() < 1e-9


def test_committed_jumping2d_keeps_its_heels_down_until_the_bottom():
    """On the env's own contact spheres both heels carry load from quiet standing to the
    bottom of the countermovement (people's heels leave the floor in the push-off), and
    rise before take-off."""
    from fastenv.envs.variants import variant_path
    from fastenv.references import Reference

    path = REFERENCES_DIR / "jumping2d.npz"
    if not path.is_file():
        pytest.skip("jumping2d is not generated")
    ref = Reference.load(path)
    coords = {name: ref.q[:, j] for j, name in enumerate(ref.coordinate_names)}
    _, sphere_bottom = moco.foot_kinematics(np.arange(ref.n_frames) * ref.control_dt,
                                            coords, str(variant_path("muscle2d")))
    # per frame: the higher heel's lowest point above the floor (m)
    lowest = np.maximum(sphere_bottom["r_heel"], sphere_bottom["l_heel"])
    bottom = int(np.argmin(ref.com_pos[:, 1]))
    assert lowest[:bottom - 3].max() < -0.001, lowest.round(4)
    assert lowest[bottom:bottom + 15].max() > 0.005, lowest.round(4)   # the push-off lifts them


def test_grounded_window_bounds_the_window_only():
    """The heels-down path constraint: at most a radius less the sink above the floor
    until the window's end, free (2 m) after it; never a lower bound that binds."""
    osim = moco._osim()
    settings = tasks2d.JumpSettings()
    study, problem, model = moco.new_study(settings, "heels")
    moco.add_grounded_window(osim, problem, model, ["r_heel", "l_heel"], 0.4, 0.9, 0.002)
    phase = problem.getPhase(0)
    for side in "rl":
        bound = osim.MocoOutputBoundConstraint.safeDownCast(
            phase.getPathConstraint(f"in_contact_{side}_heel"))
        assert bound.getOutputPath().endswith(f"{side}_heel|location")
        upper, lower = bound.getUpperBound(), bound.getLowerBound()

        def at(f, t):
            return f.calcValue(osim.Vector(1, t))
        radius = moco.sphere_radius(model, f"{side}_heel")
        assert at(upper, 0.0) == pytest.approx(radius - 0.002)
        assert at(upper, 0.4) == pytest.approx(radius - 0.002)
        assert at(upper, 0.41) == pytest.approx(2.0) and at(upper, 1.5) == pytest.approx(2.0)
        assert at(lower, 0.2) == pytest.approx(-1.0)
    with pytest.raises(RuntimeError):
        phase.getPathConstraint("in_contact_r_toe")


def test_com_force_bounds_bind_the_centre_of_mass_in_their_window():
    """A centre-of-mass force bound is on the vertical acceleration: body weight x (1 +
    a_y/g) against the bound inside its window, a far one (-10 BW) outside it."""
    osim = moco._osim()
    settings = tasks2d.LockedKneeSettings()
    assert settings.com_force_bounds   # the committed reference's push-off
    study, problem, model = moco.new_study(settings, "forces")
    moco.add_com_force_bounds(osim, problem, ((0.4, 0.6, 1.03, None), (0.0, 1.0, None, 1.5)),
                              1.0)
    rep = problem.createRep()
    assert list(rep.createPathConstraintNames()) == ["com_force_0", "com_force_1"]
    lower, upper = rep.getPathConstraint("com_force_0"), rep.getPathConstraint("com_force_1")
    assert lower.getConstraintInfo().getNumEquations() == 1   # no upper bound asked
    m = rep.getModelBase()
    state = m.initSystem()
    cycle = read_coordinates_sto(REFERENCES_DIR / "lockedknee2d_coordinates.sto")
    for name in cycle.names:
        if name not in ("knee_angle_l", "ankle_angle_l"):
            m.getCoordinateSet().get(name).setValue(state, float(cycle.column(name)[80]), False)
    errors = osim.Vector(1, 0.0)
    for t, bound_bw in ((0.5, 1.03), (0.3, -10.0)):
        state.setTime(t)
        m.realizeAcceleration(state)   # the constraint reads the output at this stage
        a_y = m.calcMassCenterAcceleration(state).get(1)
        lower.calcPathConstraintErrors(state, errors)
        assert errors.get(0) == pytest.approx(a_y - (bound_bw - 1.0) * GRAVITY)
        upper.calcPathConstraintErrors(state, errors)
        assert errors.get(0) == pytest.approx(a_y - 0.5 * GRAVITY)
    with pytest.raises(ValueError, match="expected a min_bw or a max_bw"):
        moco.add_com_force_bounds(osim, problem, ((0.0, 1.0, None, None),), 1.0)


def test_path_constraints_inside_intervals_reach_the_solver():
    """palsy3d's centre-of-mass bounds hold inside the mesh intervals too: the setting
    turns on the solver's interior-point enforcement, which is off by default."""
    from refgen import derive3d
    osim = moco._osim()
    for inside in (False, True):
        settings = derive3d.TrackingSettings(path_constraints_inside_intervals=inside)
        study = osim.MocoStudy()
        solver = moco.configure_solver(study, settings, 5)
        prop = solver.getPropertyByName("enforce_path_constraint_mesh_interior_points")
        assert osim.PropertyHelper.getValueBool(prop) is inside


def test_stance_knee_limit_bounds_the_window_only():
    """Running's stance-knee limit: -47 deg inside right stance, the knee's
    own bound outside it."""
    osim = moco._osim()
    settings = tasks2d.RunningSettings()
    study, problem, model = moco.new_study(settings, "limit")
    moco._add_stance_knee_limit(osim, problem, model, 0.35, settings)
    phase = problem.getPhase(0)
    bound = osim.MocoStateBoundConstraint.safeDownCast(phase.getPathConstraint("stance_knee_r"))
    assert bound.getStatePaths()[0].endswith("knee_angle_r/value")
    f = bound.getLowerBound()

    def at(t):
        return math.degrees(f.calcValue(osim.Vector(1, t)))
    assert at(0.0) == pytest.approx(-47.0) and at(0.27) == pytest.approx(-47.0)
    assert at(0.3) == pytest.approx(settings.bounds["knee_angle"][0])
    with pytest.raises(RuntimeError):
        phase.getPathConstraint("stance_knee_l")


def test_seed_guess_takes_a_committed_moco_solution_whole():
    """lockedknee2d's committed Moco solution seeds its predictive stage as it is, muscle
    states and controls included (a coordinates file seeds quiet muscles)."""
    osim = moco._osim()
    path = REFERENCES_DIR / "lockedknee2d_solution.sto"
    assert moco.is_solution_file(path)
    assert not moco.is_solution_file(REFERENCES_DIR / "lockedknee2d_coordinates.sto")
    guess, info = moco.seed_guess(tasks2d.LockedKneeSettings(), path, 50, log=lambda *_: None)
    solution = osim.MocoTrajectory(str(path))
    assert guess.getNumTimes() == solution.getNumTimes() == 101
    assert list(guess.getControlNames()) == list(solution.getControlNames())
    activations = [n for n in guess.getStateNames() if n.endswith("/activation")]
    assert activations and np.ptp(guess.getStateMat(activations[0])) > 0.05
    assert info["file"] == "lockedknee2d_solution.sto"


def test_seed_guess_is_the_first_half_of_the_committed_cycle():
    settings = tasks2d.RunningSettings(coarse_mesh=6)
    sto = REFERENCES_DIR / "running2d_coordinates.sto"
    guess, info = moco.seed_guess(settings, sto, 6, log=lambda m: None)
    cycle = read_coordinates_sto(sto)
    t = np.asarray(guess.getTimeMat()).ravel()
    assert len(t) == 2 * 6 + 1 and t[0] == 0.0
    assert t[-1] == pytest.approx(cycle.time[-1] / 2, abs=0.006)
    knee = np.asarray(guess.getStateMat("/jointset/knee_r/knee_angle_r/value")).ravel()
    np.testing.assert_allclose(knee, np.interp(t, cycle.time, cycle.column("knee_angle_r")))
    tx = np.asarray(guess.getStateMat("/jointset/ground_pelvis/pelvis_tx/value")).ravel()
    assert tx[0] == 0.0 and tx[-1] > 1.0
    assert info["file"] == sto.name
