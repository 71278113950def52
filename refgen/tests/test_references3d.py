"""3D references derived from the 2D ones, and the crouch-gait reference (refgen.derive3d)."""
import argparse
import json

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from fastenv.references import Reference
from refgen import REFERENCES_DIR as REFERENCE_DIR
from refgen import derive3d as d
from refgen.tests.conftest import shared_motion

#: committed 3D reference -> model variant it is built for
VARIANT = {"walking3d": "muscle3d", "running3d": "muscle3d", "jumping3d": "muscle3d",
           "lockedknee3d": "muscle3d_lockedknee", "palsy3d": "palsy3d"}
COMMITTED = [n for n in VARIANT if (REFERENCE_DIR / f"{n}.npz").is_file()]
GAITS = [n for n in COMMITTED if n != "jumping3d"]


def _variant(name):
    from fastenv.envs.variants import variant_path
    return variant_path(VARIANT[name])


def _task_id(name):
    from fastenv.envs import TASKS
    for spec in TASKS.values():
        if spec.reference == name and spec.actuation == "muscle":
            return spec.id
    return "MuscleWalkingImitation2D-v0"


def _foot_forces(ref, model_path):
    probe = d.ContactProbe(model_path)
    f = d.reference_forces(ref, probe)
    return f["r"], f["l"], probe.body_weight


def _even_double_support_frame(ref, model_path):
    """The double-support frame where the feet share the load most evenly."""
    fr, fl, _ = _foot_forces(ref, model_path)
    both = np.flatnonzero((fr > 20) & (fl > 20))
    assert len(both), "no double-support frame"
    return int(both[np.argmin(np.abs(fr[both] - fl[both]))])


def _reset_grf(ref_path, model_path, frame, task_id):
    from fastenv.env import ImitationEnv
    # the reference's own pose on the ground: no settling before the start frame
    env = ImitationEnv(task_id, model=str(model_path), reference=str(ref_path), mode="test",
                       start_settle=0.0)
    env.reset(options={"start_frame": frame})
    sim = env.sim
    fy = sim.buf[sim.layout.slice("grf")].reshape(-1, 6)[:, 1].sum()
    offset = env.reference.figures.get("ground_offset_m")
    env.close()
    return fy / sim.body_weight, offset


def _seam_jump_deg(ref):
    """Largest jump of a rotational coordinate from the last frame into the next cycle,
    beyond what its speed explains."""
    from fastenv.sim import Simulation
    sim = Simulation(ref_model_path(ref), energetics=False)
    rot = sim.rotational & ~sim.locked
    nxt = ref.q[0] + ref.q_offset
    predicted = ref.q[-1] + ref.qdot[-1] * ref.control_dt
    return float(np.degrees(np.abs(nxt - predicted)[rot]).max())


def ref_model_path(ref):
    return _variant(ref.name)


# ------------------------------------------------------------------ building blocks
def test_phase_map_puts_each_event_on_its_counterpart():
    target = {"hs_r": 0.02, "to_l": 0.13, "hs_l": 0.52, "to_r": 0.63}
    source = {"hs_r": 0.97, "to_l": 0.12, "hs_l": 0.47, "to_r": 0.62}
    f = d.phase_map(target, source)
    for e in target:
        assert f(target[e]) == pytest.approx(source[e] % 1.0, abs=1e-12)
    u = np.linspace(0.0, 1.0, 1001)
    steps = np.diff(f(u)) % 1.0          # monotone on the circle
    assert np.all(steps < 0.01)
    running = {"hs_r": 0.0, "to_r": 0.35, "hs_l": 0.5, "to_l": 0.85}
    with pytest.raises(ValueError, match="different order"):
        d.phase_map(target, running)


def test_symmetrise_mirrors_half_a_cycle_later():
    g = d.GRID
    signals = {"pelvis_list": 0.1 * np.sin(2 * np.pi * g) + 0.02,
               "hip_adduction_r": 0.05 * np.cos(2 * np.pi * g),
               "hip_adduction_l": 0.07 * np.cos(2 * np.pi * (g - 0.5)) + 0.01}
    s = d.symmetrise(signals)
    h = d.GRID_SIZE // 2
    np.testing.assert_allclose(s["pelvis_list"], -np.roll(s["pelvis_list"], -h), atol=1e-12)
    np.testing.assert_allclose(s["hip_adduction_l"], np.roll(s["hip_adduction_r"], h))
    assert abs(s["pelvis_list"].mean()) < 1e-12   # an offset is not symmetric
    np.testing.assert_allclose(s["pelvis_list"], 0.1 * np.sin(2 * np.pi * g), atol=1e-12)


def test_stance_weight_needs_a_walking_order():
    ev = {"hs_r": 0.0, "to_l": 0.1, "hs_l": 0.5, "to_r": 0.6}
    w = d.stance_weight(np.array([0.0, 0.05, 0.3, 0.55, 0.8]), ev)
    np.testing.assert_allclose(w, [0.0, 0.5, 1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="walking gait"):
        d.stance_weight(np.array([0.1]), {"hs_r": 0.0, "to_r": 0.35, "hs_l": 0.5, "to_l": 0.85})


def test_measured_walk_events_and_out_of_plane(muscle3d_path):
    shared_motion(d.WALKING_MOTION)
    walk = d.measured_walk(muscle3d_path)
    ev = walk.events
    # the file starts near right heel strike; stance ~60-66 % of the cycle
    assert min(ev["hs_r"], 1 - ev["hs_r"]) < 0.06
    assert 0.44 < (ev["hs_l"] - ev["hs_r"]) % 1.0 < 0.56
    assert 0.58 < (ev["to_r"] - ev["hs_r"]) % 1.0 < 0.70
    assert d.event_order(ev) == d.EVENT_ORDER
    assert set(walk.signals) == {"pelvis_list", "pelvis_rotation", "hip_adduction_r",
                                 "hip_adduction_l"}
    for v in walk.signals.values():
        assert 1.0 < np.degrees(np.ptp(v)) < 15.0


def test_running_stride_average(muscle3d_path):
    shared_motion(d.RUNNING_MOTION)
    run = d.measured_run(muscle3d_path)
    ev = run.events
    assert run.info["strides_averaged"] >= 5
    assert d.event_order(ev) == ("hs_r", "to_r", "hs_l", "to_l")   # flight phases
    assert 0.45 < ev["hs_l"] < 0.55
    assert 0.15 < ev["to_r"] < 0.45                                 # running duty factor
    assert np.ptp(run.signals["pelvis_tz"]) < 0.08
    assert abs(run.signals["pelvis_tz"].mean()) < 1e-9


# ------------------------------------------------------------------ derivation
@pytest.fixture(scope="module")
def derived_walking3d(tmp_path_factory):
    shared_motion(d.WALKING_MOTION)
    shared_motion(d.moco.DEFAULT_MOTION)
    shared_motion(d.moco.DEFAULT_GRF)
    out = tmp_path_factory.mktemp("walking3d")
    doc = d.generate_walking3d(argparse.Namespace(out=out, motion=None, kinematic=True))
    return out, doc


def test_derived_walking3d_is_the_measured_walk(derived_walking3d):
    """The kinematic walking3d: the measured walk's sagittal angles (symmetrised, as
    walking2d's target), walking2d's stride and timing, measured out-of-plane motion."""
    from refgen import check as chk

    out, doc = derived_walking3d
    ref = Reference.load(out / "walking3d.npz")
    ref2d = d.load_committed("walking2d")
    assert ref.n_frames == ref2d.n_frames and ref.playback == "loop"
    tx = ref.coordinate_names.index("pelvis_tx")
    stride2d = ref2d.q_offset[ref2d.coordinate_names.index("pelvis_tx")]
    assert ref.q_offset[tx] == pytest.approx(stride2d)
    assert doc["figures"]["kind"] == "kinematic"
    assert doc["measured_sagittal"]["file"] == d.moco.DEFAULT_MOTION
    assert abs(doc["measured_sagittal"]["phase_shift_of_cycle"]) < 0.03
    assert doc["out_of_plane"]["source"] == d.WALKING_MOTION
    assert doc["out_of_plane"]["symmetrised"] is True
    assert _seam_jump_deg(ref) < 2.0
    # against the recording as the check reads it: its left/right average is what remains
    posed = chk.posed_reference("walking3d", out)
    criteria, info = chk.source_criteria(posed, out)
    assert info["measured_source_note"].startswith("tracked directly")
    figures = {c.key: c.value for c in criteria}
    for joint in ("hip", "knee", "ankle"):
        assert figures[f"source.{joint}.r"] > 0.95, joint
        assert figures[f"source.{joint}.rms"] < 3.0, joint


def test_derived_walking3d_stance_foot_does_not_slide(derived_walking3d, muscle3d_path):
    out, doc = derived_walking3d
    ref = Reference.load(out / "walking3d.npz")
    cycle = d.cycle_of(ref)
    feet = d.FootKinematics(muscle3d_path)(cycle)
    events = d.cycle_events(cycle, feet)
    n = ref.n_frames
    w = d.stance_weight(np.arange(n) / n, events)
    for side, single in (("r", w > 0.999), ("l", w < 0.001)):
        z = d.contact_point(feet, side)[0][:n, 2][single]
        assert np.ptp(z) < 0.01, side        # lateral slip under 1 cm in single support
    tz = ref.q[:, ref.coordinate_names.index("pelvis_tz")]
    assert 0.02 < np.ptp(tz) < 0.10           # a few cm of lateral sway


@pytest.mark.xfail(strict=True, reason=(
    "the kinematic walking3d carries 1.7 BW at its evenest double-support frame (its "
    "frame-by-frame height fit leaves out the contact damping of the fitted heights' own "
    "speed); the shipped "
    "walking3d is the Moco tracking solution of it, whose reset is tested below"))
def test_derived_walking3d_env_ground_alignment(derived_walking3d, muscle3d_path):
    out, _ = derived_walking3d
    ref = Reference.load(out / "walking3d.npz")
    frame = _even_double_support_frame(ref, muscle3d_path)
    grf, offset = _reset_grf(out / "walking3d.npz", muscle3d_path, frame, _task_id("walking3d"))
    assert 0.7 < grf < 1.3
    assert abs(offset) < 0.005     # the reference is already on the ground


def test_crouch_cycle_assumptions():
    shared_motion(d.CROUCH_MOTION)
    from fastenv.envs.variants import variant_path
    cycle, info = d.crouch_cycle(variant_path("palsy3d"))
    tx = cycle.column("pelvis_tx")
    speed = (tx[-1] - tx[0]) / (cycle.time[-1] - cycle.time[0])
    assert speed == pytest.approx(d.CROUCH_SPEED, rel=1e-6)
    assert 0.8 < info["cycle_duration_s"] < 1.4
    knee = d.stance_knee_flexion(cycle, info["events"])
    assert min(knee.values()) > 20.0


def _capped_tracking(generate, name, tmp_path):
    """Run a 3D Moco generator on a 3-interval mesh, capped at 3 iterations: the
    solve does not converge, so nothing is written (the kinematic reference is
    kept) and it says so. Returns the stage's solution."""
    import opensim as osim

    args = argparse.Namespace(out=tmp_path / "out", motion=None, mesh_intervals=3,
                              max_iterations=3, threads=1, quiet=True,
                              work_dir=tmp_path / "work", log=lambda m: None)
    with pytest.raises(RuntimeError, match=f"{name}_tracking_3 did not converge.*"
                                           f"kinematic {name} reference is kept"):
        generate(args)
    assert not (tmp_path / "out" / f"{name}.npz").exists()
    stage = json.loads((tmp_path / "work" / f"{name}_tracking_3_stage.json").read_text())
    assert stage["iterations"] == 3 and stage["converged"] is False
    return osim.MocoTrajectory(str(tmp_path / "work" / f"{name}_tracking_3_solution.sto"))


def test_palsy3d_tracking_smoke(tmp_path):
    """The crouch-gait generator end to end (full cycle); its capped iterate
    still gives reserve figures."""
    shared_motion(d.CROUCH_MOTION)
    from fastenv.envs.variants import variant_path

    solution = _capped_tracking(d.generate_palsy3d, "palsy3d", tmp_path)
    assert solution.getNumTimes() == 2 * 3 + 1
    assert any(n.endswith("/reserve_knee_angle_r") for n in solution.getControlNames())
    r = d.reserve_figures(variant_path("palsy3d"), d.TrackingSettings(), solution)
    assert set(r["per_coordinate"]) >= {"knee_angle_r", "ankle_angle_l", "hip_flexion_r"}
    assert not any(n.startswith("pelvis_") for n in r["per_coordinate"])
    for v in r["per_coordinate"].values():
        assert 0.0 <= v["share"] <= 1.0 and v["peak_nm"] >= v["rms_nm"] >= 0.0
        assert np.isfinite(v["peak_muscle_moment_nm"])
    assert r["max_share_of_joint_moment"] == max(v["share"] for v in r["per_coordinate"].values())


def test_walking3d_tracking_smoke(tmp_path):
    """walking3d's generator solves a symmetric half cycle of the kinematic target, its
    force plates tracked."""
    shared_motion(d.WALKING_MOTION)
    shared_motion(d.moco.DEFAULT_MOTION)
    shared_motion(d.moco.DEFAULT_GRF)
    solution = _capped_tracking(d.generate_walking3d, "walking3d", tmp_path)
    assert (tmp_path / "work" / "grf_target.xml").is_file()
    cycle = d.cycle_of(d.load_committed("walking2d"))
    t = np.asarray(solution.getTimeMat()).ravel()
    assert t[-1] == pytest.approx((cycle.time[-1] - cycle.time[0]) / 2, rel=0.02)


def test_running3d_tracking_smoke(tmp_path):
    """running3d's generator solves a symmetric half cycle of the kinematic target at
    the target's speed: even a capped iterate ends pelvis_tx where the target does
    (a bound), and the swing windows of running2d are on the problem."""
    shared_motion(d.RUNNING_MOTION)
    solution = _capped_tracking(d.generate_running3d, "running3d", tmp_path)
    cycle = d.cycle_of(d.load_committed("running2d"))
    t = np.asarray(solution.getTimeMat()).ravel()
    half = (cycle.time[-1] - cycle.time[0]) / 2
    assert t[-1] == pytest.approx(half, rel=0.02)
    tx_name = next(n for n in solution.getStateNames() if n.endswith("/pelvis_tx/value"))
    tx = np.asarray(solution.getStateMat(tx_name)).ravel()
    target_tx = cycle.column("pelvis_tx")
    expected = np.interp(cycle.time[0] + t[-1], cycle.time, target_tx) - target_tx[0]
    assert tx[-1] - tx[0] == pytest.approx(expected, abs=1e-4)
    from fastenv.envs.variants import variant_path

    model = d.moco_processor(variant_path("muscle3d"),
                             d.TrackingSettings(swing_windows=(("l", 0.0, 0.9),))).process()
    model.initSystem()
    spheres = d.contact_spheres(model)
    assert spheres == ["r_heel", "r_toe1", "r_toe2", "l_heel", "l_toe1", "l_toe2"]
    for name in spheres:   # the stations whose heights the swing windows bound
        assert model.hasComponent(f"/centre_{name}"), name


def test_lockedknee3d_tracking_smoke(tmp_path):
    """lockedknee3d's generator solves the whole (asymmetric) cycle with the locked knee
    and ankle welded."""
    solution = _capped_tracking(d.generate_lockedknee3d, "lockedknee3d", tmp_path)
    cycle = d.cycle_of(d.load_committed("lockedknee2d"))
    t = np.asarray(solution.getTimeMat()).ravel()
    assert t[-1] == pytest.approx(cycle.time[-1] - cycle.time[0], rel=0.02)
    states = list(solution.getStateNames())
    assert any(n.endswith("/hip_adduction_l/value") for n in states)
    assert not any(n.endswith(("/knee_angle_l/value", "/ankle_angle_l/value")) for n in states)
    # lockedknee2d's foot forces and the centre of mass's acceleration peaks are goals
    header = (tmp_path / "work" / "lockedknee3d_tracking_3_solution.sto").read_text()
    header = header[:header.index("endheader")]
    assert "objective_grf=" in header and "objective_com_acceleration=" in header


def test_circumduction_lifts_the_locked_foot_over_the_floor():
    """lockedknee3d's kinematic target abducts the locked leg's hip in one smooth bump
    over its swing, so that its foot, which scraped the floor, clears it; nothing else
    changes outside the swing but the refitted pelvis height."""
    from fastenv.envs.variants import variant_path

    def derived(circumduction):
        return d.derive_cycle_from_2d(
            "lockedknee3d", "lockedknee2d", "muscle3d_lockedknee",
            d.walking3d_out_of_plane(variant_path("muscle3d")), variant2d="muscle2d_lockedknee",
            quasi_static=True, harmonics=16, command="test", circumduction=circumduction)

    plain, (cycle, doc, *_) = derived(())[0], derived(d.LOCKED_LEG_CIRCUMDUCTION)
    side, lo, hi = d.LOCKED_LEG_CIRCUMDUCTION
    info = doc["circumduction"]
    assert 5.0 < info["peak_abduction_deg"] < 25.0 and info["frames_needing_it"] > 5
    u = (cycle.time - cycle.time[0]) / (cycle.time[-1] - cycle.time[0])
    j = cycle.names.index(f"hip_adduction_{side}")
    abduction = np.degrees(plain.values[:, j] - cycle.values[:, j])
    assert np.abs(abduction[(u <= lo) | (u >= hi)]).max() < 1e-9
    assert abduction.max() == pytest.approx(info["peak_abduction_deg"], rel=0.02)
    middle = np.sin(np.pi * np.clip((u - lo) / (hi - lo), 0, 1)) >= 0.7
    fk = d.FootKinematics(variant_path("muscle3d_lockedknee"))
    before, after = d._lowest(fk(plain), side), d._lowest(fk(cycle), side)
    assert before[middle].min() < -0.005            # it scraped
    assert after[middle].min() > 0.0                # it clears (the pelvis refitted)
    for name in cycle.names:
        if name not in (f"hip_adduction_{side}", "pelvis_ty"):
            np.testing.assert_allclose(cycle.column(name), plain.column(name), atol=1e-12)


@pytest.mark.parametrize("name", ["jumping3d"])
def test_kinematic_3d_generators_reproduce_the_committed_references(name, tmp_path):
    """The kinematic 3D generators are deterministic: regenerated, they give the
    committed reference exactly (a second or two each)."""
    generate, _ = d.GENERATORS_3D[name]
    doc = generate(argparse.Namespace(out=tmp_path, motion=None, kinematic=True))
    assert doc["figures"]["kind"] == "kinematic"
    new, committed = (Reference.load(p / f"{name}.npz") for p in (tmp_path, REFERENCE_DIR))
    assert new.playback == committed.playback
    np.testing.assert_allclose(new.q, committed.q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new.qdot, committed.qdot, rtol=0, atol=1e-9)
    assert new.muscle_names == committed.muscle_names   # borrowed from jumping2d
    np.testing.assert_array_equal(new.excitation, committed.excitation)
    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert doc["excitations"].startswith("jumping2d's Moco excitations")


def test_borrowed_excitations_need_the_source_motion_frame_for_frame():
    """jumping3d borrows jumping2d's excitations only because its frames are jumping2d's
    motion: another motion or other frames are refused; a muscle the source lacks gets
    the least excitation."""
    jump3d, jump2d = (Reference.load(REFERENCE_DIR / f"{n}.npz")
                      for n in ("jumping3d", "jumping2d"))
    names = ["abd_r", "soleus_r"]
    excitation, worst = d.borrowed_excitations(jump3d, jump2d, names)
    assert worst == 0.0
    np.testing.assert_array_equal(excitation[:, 0], d.LEAST_EXCITATION)
    np.testing.assert_array_equal(excitation[:, 1],
                                  jump2d.excitation[:, jump2d.muscle_names.index("soleus_r")])
    moved = Reference.load(REFERENCE_DIR / "jumping3d.npz")
    moved.q = moved.q.copy()
    moved.q[:, moved.coordinate_names.index("knee_angle_r")] += np.radians(1.0)
    assert d.borrowed_excitations(moved, jump2d, names)[1] == pytest.approx(1.0)
    walk = Reference.load(REFERENCE_DIR / "walking2d.npz")
    with pytest.raises(ValueError, match="does not have the frames of 'walking2d'"):
        d.borrowed_excitations(jump3d, walk, names)


# ------------------------------------------------------------------ committed references
def test_generators_cover_the_3d_tasks():
    from fastenv.envs import TASKS
    for fn, text in d.GENERATORS_3D.values():
        assert callable(fn) and isinstance(text, str) and text
    refs3d = {s.reference for s in TASKS.values() if not s.planar}
    assert refs3d <= set(d.GENERATORS_3D), refs3d - set(d.GENERATORS_3D)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_reference_is_documented(name):
    ref = Reference.load(REFERENCE_DIR / f"{name}.npz")
    doc = json.loads((REFERENCE_DIR / f"{name}.json").read_text())
    assert ref.figures["kind"] in ("kinematic", "moco_tracking")
    assert doc["kind"] == ref.figures["kind"]
    # the command that made it (refgen's, or the one it had in fastenv before)
    assert doc["command"].split(" generate ")[0] in ("python -m refgen",
                                                     "python -m fastenv.references")
    assert doc["command"].split(" generate ")[1].split()[0] == name
    assert ref.name == name and ref.control_dt == 0.01
    assert np.isfinite(ref.q).all() and np.isfinite(ref.qdot).all()
    sto = (REFERENCE_DIR / f"{name}_coordinates.sto").read_text()
    assert "inDegrees=no" in sto and "pelvis_list" in sto


@pytest.mark.parametrize("name", GAITS)
def test_committed_gait_is_periodic_with_plausible_out_of_plane(name):
    ref = Reference.load(REFERENCE_DIR / f"{name}.npz")
    assert ref.playback == "loop"
    assert _seam_jump_deg(ref) < 2.0
    assert ref.figures["seam_error_deg"] < 2.0
    deg = {c: np.degrees(ref.q[:, ref.coordinate_names.index(c)])
           for c in ("pelvis_list", "pelvis_rotation", "hip_adduction_r", "hip_adduction_l")}
    for c, v in deg.items():
        assert 1.0 < np.ptp(v) < 25.0, c           # present, and not wild
        assert np.abs(v).max() < 20.0, c
    tz = ref.q[:, ref.coordinate_names.index("pelvis_tz")]
    assert 0.01 < np.ptp(tz) < 0.12
    speed = ref.figures["speed_m_s"]
    assert 0.7 < speed < 5.0
    if "step_width_m" in ref.figures:                # walking-type gaits
        assert 0.05 < ref.figures["step_width_m"] < 0.25


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_reference_resets_on_the_ground(name):
    model = _variant(name)
    ref = Reference.load(REFERENCE_DIR / f"{name}.npz")
    if name == "running3d":
        # no double support in running: a start at the right foot's peak load must
        # find it on the ground and carrying a running stance load
        fr, _, _ = _foot_forces(ref, model)
        frame = int(np.argmax(fr))
        grf, offset = _reset_grf(REFERENCE_DIR / f"{name}.npz", model, frame, _task_id(name))
        assert 1.0 < grf < 5.0
        assert abs(offset) < 0.005
        return
    # standing before the push-off (jump, frame 0), or the first double-support frame of
    # the cycle, within its first tenth (gaits start near right heel strike)
    frame = 0
    if name != "jumping3d":
        fr, fl, bw = _foot_forces(ref, model)
        both = np.flatnonzero(np.minimum(fr, fl) > 0.01 * bw)
        assert len(both) and both[0] < 0.1 * ref.n_frames, "no double support near frame 0"
        frame = int(both[0])
    grf, offset = _reset_grf(REFERENCE_DIR / f"{name}.npz", model, frame, _task_id(name))
    assert 0.7 < grf < 1.3
    # the jump is aligned at its first frame alone, where the derivation's finite-
    # difference speeds and the reference's spline speeds differ most: 6 mm, not 5
    assert abs(offset) < (0.008 if name == "jumping3d" else 0.005)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_moco_solution_is_the_reference(name):
    """A Moco-tracked reference ships its solution (states and controls); the
    reference's coordinates are that solution's, resampled at 10 ms."""
    import opensim as osim

    ref = Reference.load(REFERENCE_DIR / f"{name}.npz")
    path = REFERENCE_DIR / f"{name}_solution.sto"
    if ref.figures["kind"] != "moco_tracking":
        assert not path.exists()
        return
    doc = json.loads((REFERENCE_DIR / f"{name}.json").read_text())
    cycle = d.motion_from_solution(osim.MocoTrajectory(str(path)), list(ref.coordinate_names),
                                   symmetric=doc["moco"]["symmetric_half_cycle"])
    t_ref = np.arange(ref.n_frames + 1) * ref.control_dt * ref.figures["time_scale"]
    checked = [c for c in ("pelvis_tilt", "pelvis_list", "hip_flexion_r", "knee_angle_l",
                           "ankle_angle_r", "knee_angle_r") if c in cycle.names]
    assert len(checked) >= 5   # lockedknee3d's locked knee is welded in the solve
    # the reference is a periodic cubic spline through the solution's mesh points
    # (fastenv.references.build_reference): the same spline, evaluated at its frames,
    # gives its frames (a linear interpolation back misses by 0.8 deg at a running foot
    # strike)
    for c in checked:
        j = ref.coordinate_names.index(c)
        y = cycle.column(c).copy()
        y[-1] = y[0]
        spline = CubicSpline(cycle.time, y, bc_type="periodic")
        assert np.degrees(np.abs(spline(t_ref[:-1]) - ref.q[:, j]).max()) < 0.05, c


def test_committed_walking3d_figures():
    if "walking3d" not in COMMITTED:
        pytest.skip("walking3d is not generated")
    ref = Reference.load(REFERENCE_DIR / "walking3d.npz")
    f = ref.figures
    # the speed of walking2d, the measured walk (0.97 m/s), within 10%
    speed2d = Reference.load(REFERENCE_DIR / "walking2d.npz").figures["speed_m_s"]
    assert f["speed_m_s"] == pytest.approx(speed2d, rel=0.1) and 1.1 < f["stride_length_m"] < 1.6
    assert 0.5 < f["duty_factor_r"] < 0.7 and abs(f["duty_factor_r"] - f["duty_factor_l"]) < 0.05
    assert f["peak_vertical_grf_bw"] < 2.0
    if f["kind"] == "kinematic":
        assert f["out_of_plane_source"] == d.WALKING_MOTION


def test_committed_palsy3d_is_a_crouch_gait():
    if "palsy3d" not in COMMITTED:
        pytest.skip("palsy3d is not generated")
    model = _variant("palsy3d")
    ref = Reference.load(REFERENCE_DIR / "palsy3d.npz")
    fr, fl, bw = _foot_forces(ref, model)
    for side, force in (("r", fr), ("l", fl)):
        stance = force > 20.0
        assert 0.45 < stance.mean() < 0.9, side
        flexion = -np.degrees(ref.q[:, ref.coordinate_names.index(f"knee_angle_{side}")])
        assert flexion[stance].min() > 20.0, side        # crouch: knee flexed in all of stance
    f = ref.figures
    assert 0.6 < f["speed_m_s"] < 1.1 and 0.8 < f["cycle_duration_s"] < 1.4
    assert min(f["min_stance_knee_flexion_deg"]) > 20.0
    # produced by Moco with the child model, its reserve torques a few per cent
    # of the joint moments, the measured crouch tracked within a few degrees
    assert f["kind"] == "moco_tracking"
    assert f["reserves"]["max_share_of_joint_moment"] < 0.05
    assert max(f["tracking_rms_deg"].values()) < 5.0
    doc = json.loads((REFERENCE_DIR / "palsy3d.json").read_text())
    assert all(stage["converged"] for stage in doc["moco"]["stages"].values())
    assert doc["tracking_target"]["kind"] == "kinematic"


def test_forces_on_cycle_resamples_by_phase():
    """lockedknee3d's force target: the 2D cycle's foot forces on the 3D cycle's clock
    (same phase), scaled to the 3D model's weight; on the 2D clock itself, unchanged."""
    from refgen.tasks2d import cycle_forces

    walk = cycle_forces()
    same = d.forces_on_cycle(walk.time, walk, 1.0)
    for side in "rl":
        np.testing.assert_allclose(same.forces[side][:-1], walk.forces[side][:-1], atol=1e-9)
    time = np.linspace(2.0, 2.0 + 0.5 * walk.time[-1], 37)     # another clock, same gait
    other = d.forces_on_cycle(time, walk, 2.0)
    assert other.time[0] == 0.0 and len(other.time) == 37
    k = 12                                                   # phase 1/3 of both cycles
    for side in "rl":
        expected = np.interp(walk.time[-1] / 3, walk.time, walk.forces[side][:, 1])
        assert other.forces[side][k, 1] == pytest.approx(2.0 * expected, rel=1e-6)
        assert np.all(other.forces[side][:, 0] == 0.0)


def _settings_of_3d_solves(monkeypatch, tmp_path):
    """``solve(variant, **args)``: the TrackingSettings that ``write_3d`` hands the
    solve of a walking3d on ``variant`` given those command-line ``args`` (no solve
    runs)."""
    seen = []
    monkeypatch.setattr(d, "track_and_write",
                        lambda *a, settings, **k: seen.append(settings) or {})
    cycle = d.Motion(np.zeros(2), ["pelvis_tx"], np.zeros((2, 1)))

    def solve(variant, **args):
        d.write_3d("walking3d", variant, (cycle, {}, {}, True, False),
                   argparse.Namespace(out=tmp_path, quiet=True, **args),
                   d.TrackingSettings(), symmetric=True)
        return seen[-1]
    return solve


def test_no_passive_fiber_forces_reaches_the_tracking_solve(monkeypatch, tmp_path):
    """``generate --no-passive-fiber-forces`` solves on the model without passive fibre
    force (the settings that reach the solve, recorded in the reference's JSON), and is
    refused for a reference that no 3D tracking solve makes."""
    from refgen.__main__ import main
    solve = _settings_of_3d_solves(monkeypatch, tmp_path)
    for flag in (False, True):
        assert solve("muscle3d", no_passive_fiber_forces=flag).passive_fiber_forces \
            is (not flag)
    assert main(["generate", "walking2d", "--no-passive-fiber-forces", "--out",
                 str(tmp_path)]) == 2
    assert "walking3d" in d.TRACKED_3D and "jumping3d" not in d.TRACKED_3D


def test_rigid_tendon_preload_follows_the_env_family_unless_given(monkeypatch, tmp_path):
    """The solve's Achilles preload is the env's Moco family's for the variant (0.3 on the
    adult models and, since 2026-12-06, the palsy child), so a solution drives the model
    it was solved on; ``--rigid-tendon-preload`` overrides it (0 included), and is
    refused for a reference that no 3D tracking solve makes."""
    from fastenv.envs.variants import DGF_TENDON_PRELOAD
    from refgen.__main__ import main
    solve = _settings_of_3d_solves(monkeypatch, tmp_path)
    for variant, given, expected in (("muscle3d", None, DGF_TENDON_PRELOAD),
                                     ("palsy3d", None, DGF_TENDON_PRELOAD),
                                     ("muscle3d", 0.0, 0.0),
                                     ("palsy3d", 0.2, 0.2)):
        assert solve(variant, rigid_tendon_preload=given).rigid_tendon_preload == expected
    assert main(["generate", "running2d", "--rigid-tendon-preload", "0.3", "--out",
                 str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as bad:   # argparse's one-line usage error
        main(["generate", "walking3d", "--rigid-tendon-preload", "1.5"])
    assert bad.value.code == 2


def test_the_solve_model_has_the_env_family_slack_lengths():
    """The Moco model of a preloaded solve has the env's 3D Moco family's tendon slack
    lengths (the Achilles stretched, every other tendon as is)."""
    import opensim

    from fastenv.envs.variants import variant_path
    settings = d.TrackingSettings(rigid_tendon_preload=0.3)
    solve = d.moco_processor(variant_path("muscle3d"), settings).process()
    env = opensim.Model(str(variant_path("muscle3d", muscle_model="degroote",
                                         contact_model="smooth")))
    for muscle in env.getMuscles():
        assert solve.getMuscles().get(muscle.getName()).getTendonSlackLength() == \
            pytest.approx(muscle.getTendonSlackLength(), rel=1e-12)
