"""Reference format and the loader for users' inverse-kinematics files."""

import json

import numpy as np
import pytest
from conftest import shared_motion

from fastenv.references import (
    REFERENCE_DIR,
    Reference,
    build_reference,
    load_reference,
    read_motion,
    reference_from_motion,
    write_motion,
)

SHIPPED = sorted(p.name[:-4] for p in REFERENCE_DIR.iterdir() if p.name.endswith(".npz"))


def _user_warnings(record) -> list:
    """The messages of the UserWarnings in a ``pytest.warns`` record (not, say, a
    DeprecationWarning of a library)."""
    return [str(w.message) for w in record if issubclass(w.category, UserWarning)]


def test_measured_walking_on_2d_model(muscle2d_path):
    path = shared_motion("gait10dof18musc_subject01_walk_ik.mot")
    with pytest.warns(UserWarning) as record:
        ref = reference_from_motion(path, muscle2d_path, treadmill_speed=1.05)
    # exact coordinate names; the trunk lean the planar model locks is reported
    messages = _user_warnings(record)
    assert len(messages) == 1
    assert "locks" in messages[0] and "lumbar_extension" in messages[0]
    time, cols, in_degrees = read_motion(path)
    assert in_degrees
    assert ref.playback == "once" and ref.control_dt == 0.01
    assert ref.n_frames == int(round((time[-1] - time[0]) / 0.01)) + 1
    j = ref.coordinate_names.index("knee_angle_r")
    # radians, and the same motion as the file (6 Hz filtering changes little)
    src = np.interp(np.arange(ref.n_frames) * 0.01, time - time[0],
                    np.radians(cols["knee_angle_r"]))
    assert np.abs(ref.q[:, j] - src).max() < np.radians(3)
    # speeds are the derivative of the values
    np.testing.assert_allclose(np.gradient(ref.q[:, j], 0.01)[5:-5], ref.qdot[5:-5, j], atol=0.2)
    # overground: the centre of mass moves forward at about the belt speed
    speed = (ref.com_pos[-1, 0] - ref.com_pos[0, 0]) / (ref.n_frames * 0.01)
    assert 0.9 < speed < 1.3
    assert ref.body_pos.shape == (ref.n_frames, len(ref.body_names), 3)


def test_gait2392_walking_on_3d_model_warns_once_each(muscle3d_path):
    path = shared_motion("tutorial_gait2392_normal.mot")
    with pytest.warns(UserWarning) as record:
        ref = reference_from_motion(path, muscle3d_path)
    messages = _user_warnings(record)
    assert len(messages) == 1                        # everything in one message
    message = messages[0]
    assert "ignoring columns" in message and "lumbar_bending" in message
    assert "missing from the file" in message and "pelvis_tx" in message
    assert "hip_rotation_r" in message               # locked by the model, dropped
    assert "treadmill_speed" in message              # one cycle that stands still
    assert np.isfinite(ref.q).all() and np.isfinite(ref.com_pos).all()
    assert ref.q.shape[1] == 17


def test_cyclic_reference_loops_with_stride(muscle2d_path):
    t = np.linspace(0, 1.0, 101)
    names = ["pelvis_tx", "pelvis_ty", "hip_flexion_r", "knee_angle_r"]
    values = np.column_stack([1.2 * t, 0.93 + 0.01 * np.sin(4 * np.pi * t),
                              0.4 * np.sin(2 * np.pi * t), -0.5 + 0.5 * np.cos(2 * np.pi * t)])
    ref = build_reference(muscle2d_path, t, names, values)
    assert ref.playback == "loop" and ref.n_frames == 100
    assert ref.q_offset[ref.coordinate_names.index("pelvis_tx")] == pytest.approx(1.2)
    q100, _ = ref.coordinates_at(100)
    np.testing.assert_allclose(q100, ref.q[0] + ref.q_offset)
    assert ref.com_at(100)[0] == pytest.approx(ref.com_pos[0, 0] + 1.2)
    assert ref.figures["seam_error_deg"] < 1e-9
    h = ref.coordinate_names.index("hip_flexion_r")
    np.testing.assert_allclose(ref.qdot[:, h], 0.4 * 2 * np.pi * np.cos(2 * np.pi * t[:-1]),
                               atol=1e-3)


def test_mirror_playback_goes_up_then_down():
    ref = Reference(name="x", control_dt=0.01, coordinate_names=["a"],
                    q=np.arange(4.0)[:, None], qdot=np.ones((4, 1)), qddot=np.zeros((4, 1)),
                    body_names=[], body_pos=np.zeros((4, 0, 3)), body_vel=np.zeros((4, 0, 3)),
                    com_pos=np.zeros((4, 3)), com_vel=np.zeros((4, 3)), playback="mirror")
    frames = [ref.index(k)[0] for k in range(8)]
    assert frames == [0, 1, 2, 3, 2, 1, 0, 1]
    assert ref.coordinates_at(4)[1][0] == -1.0


def test_save_load_roundtrip(tmp_path, muscle2d_path):
    t = np.linspace(0, 0.5, 51)
    ref = build_reference(muscle2d_path, t, ["hip_flexion_r"], np.sin(t)[:, None],
                          cyclic=False, figures={"note": 1})
    path = ref.save(tmp_path / "r.npz")
    back = Reference.load(path)
    for k in ("q", "qdot", "qddot", "body_pos", "com_pos", "q_offset"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ref, k))
    assert back.figures == {"note": 1} and back.playback == "once"


def test_bad_files(tmp_path, muscle2d_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_reference(tmp_path / "nope.mot", model_path=muscle2d_path)
    with pytest.raises(ValueError, match="unknown reference 'flying'"):
        load_reference("flying")
    bad = tmp_path / "bad.mot"
    bad.write_text("no header here\n1 2 3\n")
    with pytest.raises(ValueError, match="endheader"):
        read_motion(bad)
    bad.write_text("inDegrees=yes\nendheader\ntime knee_angle_r\n0 1\n0.01 x\n")
    with pytest.raises(ValueError, match="line 5: non-numeric value"):
        read_motion(bad)
    # the line that is wrong, not numpy's "inhomogeneous shape" or a bare "not increasing"
    bad.write_text("endheader\ntime knee_angle_r hip_flexion_r\n0 1 2\n0.01 1\n")
    with pytest.raises(ValueError, match=r"line 4: 2 values, expected 3"):
        read_motion(bad)
    bad.write_text("endheader\ntime knee_angle_r\n0 1\n0.01 2\n\n0.01 3\n")
    with pytest.raises(ValueError, match=r"line 6: time is not strictly increasing \(0.01 s "
                                         r"after 0.01 s on line 4\)"):
        read_motion(bad)
    bad.write_text("endheader\ntime knee_angle_r\n0 1\n")
    with pytest.raises(ValueError, match="expected >= 2 rows of 2 columns, got 1"):
        read_motion(bad)
    bad.write_text("endheader\ntime knee_angle_r hip_flexion_r knee_angle_r\n0 1 2 3\n"
                   "0.01 1 2 3\n")
    with pytest.raises(ValueError, match=r"columns \['knee_angle_r'\] appear more than once"):
        read_motion(bad)
    bad.write_text("endheader\ntime wing_angle\n0 1\n0.01 2\n")
    with pytest.raises(ValueError, match="no column matching a coordinate"):
        reference_from_motion(bad, muscle2d_path)
    corrupt = tmp_path / "c.npz"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read reference"):
        Reference.load(corrupt)


def test_a_saved_reference_is_checked_whole(tmp_path):
    """A NaN or a wrongly shaped array in a .npz reference is refused on load, naming
    the file and the array: a NaN gave NaN observations and rewards a few steps in, a
    cut column an IndexError, and a frame count that differs blamed another array."""
    arrays = dict(np.load(REFERENCE_DIR / "walking2d.npz"))
    q = arrays["q"].copy()
    q[10, 3] = np.nan
    for name, change, match in (
            ("nan", dict(q=q), r"q holds 1 non-finite value\(s\), the first at index "
                               r"\(10, 3\); expected finite numbers"),
            ("columns", dict(q=arrays["q"][:, :3]), r"q has shape \(123, 3\), expected "
                                                      r"\(frames >= 2, 10\)"),
            ("rows", dict(q=arrays["q"][:50]), r"its arrays disagree on the number of "
                                               r"frames \(q 50, qdot 123, "),
            ("missing", dict(), "com_vel")):
        path = tmp_path / f"{name}.npz"
        saved = dict(arrays, **change)
        if name == "missing":
            del saved["com_vel"]
        np.savez(path, **saved)
        with pytest.raises(ValueError, match=match) as err:
            Reference.load(path)
        assert str(path) in str(err.value)


def test_motion_file_units_are_checked(tmp_path, muscle2d_path):
    """Translations in millimetres and time in milliseconds are refused with the unit
    named: a pelvis 890 m up, or a Nyquist frequency of 0.0 Hz, said neither."""
    sto = REFERENCE_DIR / "walking2d_coordinates.sto"
    time, columns, in_degrees = read_motion(sto)
    walk = {c: v for c, v in columns.items() if not c.endswith("_speed")}
    mm = dict(walk, pelvis_tx=walk["pelvis_tx"] * 1000, pelvis_ty=walk["pelvis_ty"] * 1000)
    write_motion(tmp_path / "mm.sto", time, mm, in_degrees=in_degrees)
    with pytest.raises(ValueError, match=r"mm.sto: pelvis_tx reaches .* expected metres .* "
                                         r"are the translations in millimetres\?"):
        reference_from_motion(tmp_path / "mm.sto", muscle2d_path)
    treadmill = dict(mm, pelvis_tx=np.zeros_like(time))   # still x: the height tells
    write_motion(tmp_path / "mm.sto", time, treadmill, in_degrees=in_degrees)
    with pytest.raises(ValueError, match=r"pelvis_ty reaches 9\d\d"):
        reference_from_motion(tmp_path / "mm.sto", muscle2d_path)
    write_motion(tmp_path / "ms.sto", time * 1000, walk, in_degrees=in_degrees)
    with pytest.raises(ValueError, match=r"ms.sto: rows every 1\d.\d+ s \(0.0\d+ Hz\); "
                                         r"expected the time column in seconds .* in "
                                         r"milliseconds\?"):
        reference_from_motion(tmp_path / "ms.sto", muscle2d_path)


def _env_model_path(reference: str):
    """The model of the first task that imitates ``reference``."""
    from fastenv.envs import TASKS
    from fastenv.envs.variants import variant_path
    task = next(t for t in TASKS.values() if t.reference == reference)
    return variant_path(task.model, **task.variant_params)



def test_jump_excitations_are_those_of_its_tracking_solution(tmp_path):
    """jumping2d's excitations are its shipped tracking solution's: put on its frames
    again from jumping2d_solution.sto they are equal and every other array is kept (the
    angles rebuilt from the solution equal the shipped ones); the two sides are equal,
    averaged as the legs' angles are; back down, a step replays a frame of the way up."""
    from fastenv.references import Reference, load_reference
    from refgen import REFERENCES_DIR
    from refgen.derive3d import attach_solution_excitations, solution_names

    assert "jumping2d" in solution_names(REFERENCES_DIR)
    shipped = load_reference("jumping2d")
    figures = attach_solution_excitations("jumping2d", references_dir=REFERENCES_DIR,
                                          out_dir=tmp_path, log=lambda *_: None)
    assert figures["muscles"] == 18 and figures["max_mismatch_deg"] < 1e-6
    again = Reference.load(tmp_path / "jumping2d.npz")
    np.testing.assert_array_equal(again.excitation, shipped.excitation)
    for key in ("q", "qdot", "qddot", "body_pos", "com_vel"):
        np.testing.assert_array_equal(getattr(again, key), getattr(shipped, key))
    assert again.playback == shipped.playback == "mirror"
    e, names = shipped.excitation, shipped.muscle_names
    assert e.shape == (shipped.n_frames, 18) and 0.0 <= e.min() and e.max() <= 1.0
    np.testing.assert_array_equal(e[:, names.index("vasti_r")], e[:, names.index("vasti_l")])
    n = shipped.n_frames
    assert shipped.index(n + 4)[0] == n - 6 and shipped.direction(n + 4) == -1.0

@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_body_kinematics_are_opensims(name):
    """Every body's position and velocity in a shipped reference is what OpenSim gives
    on the env's model, posed with plain API calls on a fresh model's own State (the
    arrays were once frozen at the default pose for 7 of 13 bodies)."""
    import opensim as osim

    ref = Reference.load(REFERENCE_DIR / f"{name}.npz")
    model = osim.Model(str(_env_model_path(name)))
    state = model.initSystem()
    coordinates = model.getCoordinateSet()
    bodies = [model.getBodySet().get(b) for b in ref.body_names]
    for k in np.linspace(0, ref.n_frames - 1, 5).astype(int):
        for j, c in enumerate(ref.coordinate_names):
            coordinate = coordinates.get(c)
            if not coordinate.getLocked(state):
                coordinate.setValue(state, float(ref.q[k, j]), False)
                coordinate.setSpeedValue(state, float(ref.qdot[k, j]))
        model.realizeVelocity(state)
        pos = np.array([b.getPositionInGround(state).to_numpy() for b in bodies])
        vel = np.array([b.getLinearVelocityInGround(state).to_numpy() for b in bodies])
        np.testing.assert_allclose(ref.body_pos[k], pos, rtol=0, atol=1e-6, err_msg=f"frame {k}")
        np.testing.assert_allclose(ref.body_vel[k], vel, rtol=0, atol=1e-6, err_msg=f"frame {k}")
        np.testing.assert_allclose(ref.com_pos[k], model.calcMassCenterPosition(state).to_numpy(),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(ref.com_vel[k], model.calcMassCenterVelocity(state).to_numpy(),
                                   rtol=0, atol=1e-6)


# --------------------------------------------------------------------- users' motion files
TREADMILL_BELT = 1.2
RAISED = 0.05     # m: the file's pelvis sits this much above the reference's


@pytest.fixture(scope="module")
def treadmill_walk(tmp_path_factory):
    """A 3D treadmill-like IK file with gait2392 names, in degrees: three and a half
    cycles of the shipped walking3d, starting 0.2 s into its cycle, with the forward
    pelvis progression removed, the pelvis 5 cm higher, hip rotations and a trunk lean
    (which the model locks) and subtalar and mtp angles (which it lacks).
    (path, period in s, walking3d)."""
    from fastenv.references import write_motion

    ref = Reference.load(REFERENCE_DIR / "walking3d.npz")
    n, cn = ref.n_frames, ref.coordinate_names
    k = np.arange(20, 20 + 3 * n + 40)
    q = ref.q[k % n] + np.outer(k // n, ref.q_offset)
    tx = cn.index("pelvis_tx")
    q[:, tx] -= ref.q_offset[tx] * k / n                  # the belt carries it back
    q[:, cn.index("pelvis_ty")] += RAISED
    time = (k - k[0]) * ref.control_dt
    phase = 2 * np.pi * time / (n * ref.control_dt)
    columns = {c: q[:, j] if c in ("pelvis_tx", "pelvis_ty", "pelvis_tz") else np.degrees(q[:, j])
               for j, c in enumerate(cn) if c not in ("hip_rotation_r", "hip_rotation_l",
                                                    "lumbar_extension")}
    columns.update(hip_rotation_r=5 * np.sin(phase), hip_rotation_l=-5 * np.sin(phase),
                   lumbar_extension=np.full(len(time), -12.0),
                   subtalar_angle_r=np.zeros(len(time)), mtp_angle_r=np.zeros(len(time)))
    path = write_motion(tmp_path_factory.mktemp("motion") / "treadmill_walk.mot", time,
                        columns, in_degrees=True, name="treadmill_walk")
    return path, n * ref.control_dt, ref


@pytest.fixture(scope="module")
def looped_walk(treadmill_walk, muscle3d_path):
    path, _, _ = treadmill_walk
    with pytest.warns(UserWarning):
        return reference_from_motion(path, muscle3d_path, cycle="auto",
                                     treadmill_speed=TREADMILL_BELT)


def test_cycle_auto_finds_the_gait_period(looped_walk, treadmill_walk):
    _, period, walking3d = treadmill_walk
    report = looped_walk.figures["motion_file"]
    assert looped_walk.playback == "loop"
    assert report["cycle_period_s"] == pytest.approx(period, abs=0.021)   # a frame or two
    assert abs(looped_walk.n_frames - walking3d.n_frames) <= 2
    # from a right heel strike: the cycle starts where walking3d's does (its frame 0)
    t0 = report["cycle_window_s"][0]
    assert abs((t0 + 0.2) % period) < 0.03 or abs((t0 + 0.2) % period - period) < 0.03
    # the other foot strikes half a cycle later
    left = np.array(report["heel_strikes_l_s"])
    assert np.abs(left - (t0 + period / 2)).min() < 0.05


def test_looped_motion_is_seamless(looped_walk):
    """Across the loop's seam (last frame -> first frame of the next cycle) angles,
    speeds and accelerations change no more than between any two frames within it."""
    ref = looped_walk
    n = ref.n_frames
    seq = [ref.coordinates_at(k) for k in range(2 * n)]
    q = np.array([a for a, _ in seq])
    qd = np.array([b for _, b in seq])
    qdd = ref.qddot[np.arange(2 * n) % n]
    for name, x in (("q", q), ("qdot", qd), ("qddot", qdd)):
        step = np.abs(np.diff(x, axis=0))
        inner = np.delete(step, n - 1, axis=0).max(axis=0)
        assert (step[n - 1] <= 1.05 * inner + 1e-9).all(), name
    assert ref.figures["seam_error_deg"] < 0.1


def test_treadmill_speed_is_the_pelvis_speed(looped_walk):
    ref = looped_walk
    tx = ref.coordinate_names.index("pelvis_tx")
    assert ref.q_offset[tx] / ref.duration == pytest.approx(TREADMILL_BELT, rel=1e-3)
    assert ref.pos_offset[0] / ref.duration == pytest.approx(TREADMILL_BELT, rel=1e-3)
    assert ref.figures["motion_file"]["pelvis_speed_m_s"] == pytest.approx(TREADMILL_BELT,
                                                                           rel=1e-3)


def test_motion_file_env_warns_once_with_locked_coordinates_and_ground_offset(treadmill_walk):
    import gymnasium as gym

    import fastenv  # noqa: F401

    path, _, _ = treadmill_walk
    with pytest.warns(UserWarning) as record:
        with gym.make("TorqueWalkingImitation3D-v0", reference=str(path),
                      reference_options={"treadmill_speed": TREADMILL_BELT,
                                         "cycle": "auto"}) as env:
            env.reset(seed=0)
            ref = env.unwrapped.reference
    ours = [m for m in _user_warnings(record) if "treadmill_walk.mot" in m]
    assert len(ours) == 1, ours
    message = ours[0]
    for text in ("ignoring columns the model lacks", "subtalar_angle_r",
                 "coordinates the model locks", "hip_rotation_r", "hip_rotation_l",
                 "lumbar_extension (file -12.0 deg", "onto the model's contact geometry"):
        assert text in message, text
    dy = ref.figures["ground_offset_m"]
    assert dy == pytest.approx(-RAISED, abs=0.005)        # the 5 cm it was raised, back
    assert f"{abs(dy) * 100:.1f} cm down" in message
    assert ref.figures["motion_file"]["ground_offset_m"] == dy
    assert ref.playback == "loop"
    assert "treadmill_speed" not in message              # it progresses now


def test_gait_on_a_treadmill_without_belt_speed_warns(treadmill_walk, muscle3d_path):
    path, _, _ = treadmill_walk
    with pytest.warns(UserWarning) as record:
        ref = reference_from_motion(path, muscle3d_path)
    messages = _user_warnings(record)
    assert len(messages) == 1
    message = messages[0]
    assert "progresses 0.0" in message and "'treadmill_speed'" in message
    assert ref.playback == "once" and ref.figures["motion_file"]["looks_like_gait"]


@pytest.mark.parametrize("options, match", [
    ({"speed": 1.2}, r"unknown reference option\(s\) \['speed'\]"),
    ({"cycle": "twice"}, r"cycle must be 'auto', 'once', None or a \(t0, t1\).*'twice'"),
    ({"cycle": (2.0, 1.0)}, r"cycle must be .*\(2.0, 1.0\)"),
    ({"treadmill_speed": -1.0}, r"treadmill_speed must be a belt speed in m/s .*-1.0"),
    ({"treadmill_speed": "fast"}, r"treadmill_speed must be .*'fast'"),
    ({"lowpass_hz": 0}, r"lowpass_hz must be a cut-off frequency .* got 0"),
    ("auto", r"reference_options must be a dict .* got 'auto'"),
])
def test_bad_reference_options_are_one_line_errors(options, match):
    from fastenv.envs import resolve_options
    with pytest.raises(ValueError, match=match) as info:
        resolve_options(reference="walk.mot", reference_options=options)
    assert "\n" not in str(info.value)


def test_reference_options_need_a_motion_file(tmp_path, muscle2d_path):
    from fastenv.envs import resolve_options
    with pytest.raises(ValueError, match="motion-file reference .* got the task's shipped"):
        resolve_options(reference_options={"cycle": "auto"})
    with pytest.raises(ValueError, match="motion-file reference .* got 'walking2d'"):
        resolve_options(reference="walking2d", reference_options={"cycle": "auto"})
    # a motion without gait cycles cannot loop one
    still = tmp_path / "still.mot"
    still.write_text("inDegrees=yes\nendheader\ntime knee_angle_r\n" +
                     "".join(f"{k * 0.01} -10\n" for k in range(50)))
    with pytest.raises(ValueError, match="cycle='auto' found no gait cycle in still.mot"):
        reference_from_motion(still, muscle2d_path, cycle="auto")


def test_measured_treadmill_run_loops_one_stride(muscle3d_path):
    path = shared_motion("hamner_subject02_running_ik.mot")
    with pytest.warns(UserWarning, match=r"loops \d+\.\d{3}-\d+\.\d{3} s of the file's "
                      r"0\.000-\d+\.\d{3} s \(right heel strike to right heel strike\), "
                      r"time-scaled by \d\.\d{4} to \d+ control steps"):
        ref = reference_from_motion(path, muscle3d_path, cycle="auto", treadmill_speed=3.9)
    report = ref.figures["motion_file"]
    strides = np.diff(report["heel_strikes_r_s"])
    assert len(strides) >= 10 and 0.6 < np.median(strides) < 0.8
    assert report["cycle_period_s"] == pytest.approx(np.median(strides), abs=0.05)
    assert ref.playback == "loop" and ref.figures["seam_error_deg"] < 5.0
    assert 3.8 < report["pelvis_speed_m_s"] < 4.0


def test_one_cycle_file_loops_whole(muscle3d_path):
    path = shared_motion("tutorial_gait2392_normal.mot")   # one cycle, 0-1 s, no pelvis_tx
    with pytest.warns(UserWarning, match="loops the whole file, 0.000-1.000 s, time-scaled "
                      "by 1.0000 to 100 control steps"):
        ref = reference_from_motion(path, muscle3d_path, cycle="auto", treadmill_speed=1.2)
    assert ref.figures["motion_file"]["cycle_window_s"] == [0.0, 1.0]
    assert ref.n_frames == 100 and ref.playback == "loop"
    tx = ref.coordinate_names.index("pelvis_tx")
    assert ref.q_offset[tx] == pytest.approx(1.2)         # pelvis_tx made from the belt


def _walking2d_rows(rows):
    """The shipped walking2d cycle's coordinates (no speeds), its first ``rows`` rows."""
    time, columns, _ = read_motion(REFERENCE_DIR / "walking2d_coordinates.sto")
    return time[:rows], {c: v[:rows] for c, v in columns.items() if not c.endswith("_speed")}


def test_half_cycle_is_completed_by_its_mirror_image(tmp_path, muscle2d_path):
    """walking2d is symmetric: its first half (51 of 101 rows), written as a file, comes
    back as the whole cycle, reported."""
    from fastenv.references import write_motion

    for name, rows in (("half.sto", 51), ("full.sto", 101)):
        write_motion(tmp_path / name, *_walking2d_rows(rows), in_degrees=False)
    with pytest.warns(UserWarning, match=r"half a gait cycle .* completed by its mirror image"):
        half = reference_from_motion(tmp_path / "half.sto", muscle2d_path, cycle="auto",
                                     lowpass_hz=None)
    full = reference_from_motion(tmp_path / "full.sto", muscle2d_path, cycle="auto",
                                 lowpass_hz=None, warn=False)
    assert half.playback == "loop" and half.n_frames == full.n_frames == 123
    np.testing.assert_allclose(half.q, full.q, atol=1e-6)
    np.testing.assert_allclose(half.qdot, full.qdot, atol=1e-5)
    np.testing.assert_allclose(half.q_offset, full.q_offset, atol=1e-9)
    report = half.figures["motion_file"]
    assert report["half_cycle_s"] == [0.0, pytest.approx(0.6166667)]
    assert report["half_cycle_mirror_error_deg"] < 1e-6
    assert report["cycle_period_s"] == pytest.approx(1.2333333) and report["looks_like_gait"]
    assert "half_cycle_s" not in full.figures["motion_file"]


def test_dropped_frames_are_resampled_and_reported(tmp_path, muscle2d_path):
    """Rows 30-34 of the walking2d cycle missing: the file is put back on an even clock
    (a spline over the gap) before the filter, and the warning says where the gap was."""
    from fastenv.references import write_motion

    time, columns = _walking2d_rows(101)
    keep = np.r_[0:30, 35:101]
    write_motion(tmp_path / "gap.sto", time[keep], {c: v[keep] for c, v in columns.items()},
                 in_degrees=False)
    write_motion(tmp_path / "whole.sto", time, columns, in_degrees=False)
    with pytest.warns(UserWarning, match=r"time steps are uneven .* gap of 0.074 s at 0.3576"):
        gap = reference_from_motion(tmp_path / "gap.sto", muscle2d_path, cycle="auto")
    whole = reference_from_motion(tmp_path / "whole.sto", muscle2d_path, cycle="auto",
                                  warn=False)
    report = gap.figures["motion_file"]["resampled"]
    assert report["rows"] == 96 and report["uniform_rows"] == 101
    assert report["uneven_steps"] == 1
    assert whole.figures["motion_file"]["resampled"] is None
    assert gap.n_frames == whole.n_frames
    rot = [j for j, c in enumerate(gap.coordinate_names) if not c.startswith("pelvis_t")]
    assert np.degrees(np.abs(gap.q[:, rot] - whole.q[:, rot])).max() < 1.0


def test_angles_in_the_wrong_unit_for_the_header(tmp_path, muscle2d_path):
    """Degrees under a radians header are refused in one line; radians under a degrees
    header are played (a still pose is possible) with a warning."""
    from fastenv.references import write_motion

    time, columns = _walking2d_rows(101)
    rot = {c: v for c, v in columns.items() if not c.startswith("pelvis_t")}
    write_motion(tmp_path / "deg.sto", time, {c: np.degrees(v) for c, v in rot.items()},
                 in_degrees=False)
    with pytest.raises(ValueError, match=r"deg.sto: knee_angle_[rl] reaches -?\d+.*"
                                         r"expected \|angle\| <= 2 pi, or inDegrees=yes"):
        reference_from_motion(tmp_path / "deg.sto", muscle2d_path)
    write_motion(tmp_path / "rad.sto", time, rot, in_degrees=True)
    with pytest.warns(UserWarning, match="radians with the wrong header"):
        ref = reference_from_motion(tmp_path / "rad.sto", muscle2d_path)
    assert ref.figures["motion_file"]["degrees_suspect"]
    write_motion(tmp_path / "ok.sto", time, {c: np.degrees(v) for c, v in rot.items()},
                 in_degrees=True)
    ok = reference_from_motion(tmp_path / "ok.sto", muscle2d_path, warn=False)
    assert not ok.figures["motion_file"]["degrees_suspect"]


def test_gaps_in_a_used_column_are_a_one_line_error(tmp_path, muscle2d_path):
    """NaN rows (an IK gap) in a coordinate the model uses are named with their times; in
    a column the model lacks they are ignored with it."""
    from fastenv.references import write_motion

    time, columns = _walking2d_rows(101)
    columns["knee_angle_r"] = columns["knee_angle_r"].copy()
    columns["knee_angle_r"][40:45] = np.nan
    write_motion(tmp_path / "nan.sto", time, columns, in_degrees=False)
    with pytest.raises(ValueError, match=r"nan.sto: column knee_angle_r has 5 non-finite "
                                         r"values .* from t = 0.49\d* s to 0.54\d* s"):
        reference_from_motion(tmp_path / "nan.sto", muscle2d_path)
    time, columns = _walking2d_rows(101)
    columns["arm_flex_r"] = np.full(len(time), np.nan)
    write_motion(tmp_path / "arm.sto", time, columns, in_degrees=False)
    with pytest.warns(UserWarning, match=r"ignoring columns the model lacks: \['arm_flex_r'\]"):
        reference_from_motion(tmp_path / "arm.sto", muscle2d_path)
    # infinite values are gaps too, named as such before any range check reads them (an
    # inf knee was taken for another sign convention, an inf pelvis_ty for millimetres)
    for column, value in (("knee_angle_r", np.inf), ("pelvis_ty", -np.inf),
                          ("hip_flexion_l", np.inf)):
        time, columns = _walking2d_rows(101)
        columns[column] = columns[column].copy()
        columns[column][7] = value
        write_motion(tmp_path / "inf.sto", time, columns, in_degrees=False)
        with pytest.raises(ValueError, match=rf"inf.sto: column {column} has 1 non-finite "
                                             r"values \(NaN/inf\), from t = 0.086"):
            reference_from_motion(tmp_path / "inf.sto", muscle2d_path)


def test_a_window_that_is_not_a_cycle_is_reported(tmp_path, muscle2d_path):
    """Looping 60% of the walking cycle spreads a large jump over the loop: said in the
    warning; the whole cycle's window is not."""
    from fastenv.references import write_motion

    write_motion(tmp_path / "walk.sto", *_walking2d_rows(101), in_degrees=False)
    with pytest.warns(UserWarning, match=r"looped window's ends differ by up to \d+"):
        part = reference_from_motion(tmp_path / "walk.sto", muscle2d_path, cycle=(0.0, 0.74))
    assert part.figures["seam_error_deg"] > 5.0
    whole = reference_from_motion(tmp_path / "walk.sto", muscle2d_path, cycle=(0.0, 1.23333333),
                                  warn=False)
    assert whole.figures["seam_error_deg"] < 5.0
    from fastenv.references import motion_file_notes
    assert not any("looped window" in n for n in motion_file_notes(whole))


def test_cycle_windows_and_locked_only_files_are_refused_naming_the_file(tmp_path,
                                                                       muscle2d_path):
    """A window outside the motion, a window shorter than two control steps and a file
    whose only coordinates are locked in the model: one line each, naming the file."""
    from fastenv.envs.variants import variant_path
    from fastenv.references import write_motion

    time, columns = _walking2d_rows(101)
    write_motion(tmp_path / "walk.sto", time, columns, in_degrees=False)
    with pytest.raises(ValueError, match=r"cycle \(0.0, 3.0\) outside the time range of "
                                         r".*walk.sto, \[0, 1.2\d*\] s"):
        reference_from_motion(tmp_path / "walk.sto", muscle2d_path, cycle=(0.0, 3.0))
    write_motion(tmp_path / "fast.sto", time * 0.3, columns, in_degrees=False)  # 270 Hz
    with pytest.raises(ValueError, match=r"motion file .*fast.sto: a looped cycle of "
                                         r"0.0074 s is shorter than 2 control steps"):
        reference_from_motion(tmp_path / "fast.sto", muscle2d_path, cycle=(0.0, 0.008))
    write_motion(tmp_path / "knee_only.sto", time,
                 {"knee_angle_l": columns["knee_angle_l"]}, in_degrees=False)
    with pytest.raises(ValueError, match=r"knee_only.sto': the model locks every coordinate "
                                         r"it has a column for \(\['knee_angle_l'\]\); "
                                         r"expected at least one unlocked coordinate"):
        reference_from_motion(tmp_path / "knee_only.sto", variant_path("muscle2d_lockedknee"))


def test_a_gait_played_once_says_how_to_loop_it(tmp_path, muscle2d_path):
    """Two cycles of walking2d, overground, played once: an episode would end with the
    file, and the warning says so and how to loop; with cycle='auto' it says nothing."""
    from fastenv.env import ImitationEnv
    from fastenv.references import motion_file_notes, write_motion

    time, columns = _walking2d_rows(101)
    tx = columns["pelvis_tx"]
    two = {c: np.concatenate([v, v[1:] + (tx[-1] - tx[0] if c == "pelvis_tx" else 0.0)])
           for c, v in columns.items()}
    write_motion(tmp_path / "two.sto", np.concatenate([time, time[1:] + time[-1]]), two,
                 in_degrees=False)
    with pytest.warns(UserWarning, match=r"looks like a gait but is played once, so an "
                                         r"episode ends where the file does \(2.4\d s"):
        reference_from_motion(tmp_path / "two.sto", muscle2d_path)
    looped = reference_from_motion(tmp_path / "two.sto", muscle2d_path, cycle="auto",
                                   warn=False)
    assert not any("played once" in n for n in motion_file_notes(looped))
    # an episode asked to last longer than the file still ends with it, and says so
    with pytest.warns(UserWarning, match=r"episode_seconds=5 is longer than reference "
                                         r"'two', played once \(2.4\d s from its first "
                                         r"frame\): its episodes end where it ends"):
        env = ImitationEnv("TorqueWalkingImitation2D-v0", reference=str(tmp_path / "two.sto"),
                           episode_seconds=5.0, mode="test")
    with env:
        env.reset(seed=0)
        assert env.episode_steps == env.reference.n_frames - 1
        env.set_option("episode_seconds", 1.0)
        env.reset(seed=0)
        assert env.episode_steps == 100


def test_another_models_sign_convention_is_refused_and_negate_fixes_it(tmp_path,
                                                                       muscle2d_path):
    """Knees flexing positive (OpenCap's and Moco's running model's convention) are far
    past gait9dof18musc's knee range: refused in one line naming the option that fixes
    it; with it, the file equals the original. A few degrees past is only reported."""
    from fastenv.references import write_motion

    time, columns = _walking2d_rows(101)
    knees = ("knee_angle_r", "knee_angle_l")
    write_motion(tmp_path / "ok.sto", time, columns, in_degrees=False)
    write_motion(tmp_path / "flexed_positive.sto", time,
                 {c: -v if c in knees else v for c, v in columns.items()}, in_degrees=False)
    with pytest.raises(ValueError, match=r"flexed_positive.sto: knee_angle_[rl] goes from "
                                         r".* deg past the model's range \(-120 to 10 deg\)"
                                         r".*reference_options=\{'negate'"):
        reference_from_motion(tmp_path / "flexed_positive.sto", muscle2d_path)
    with pytest.warns(UserWarning, match=r"negated as asked .*\['knee_angle_r', "
                                         r"'knee_angle_l'\]"):
        fixed = reference_from_motion(tmp_path / "flexed_positive.sto", muscle2d_path,
                                      negate=knees)
    ok = reference_from_motion(tmp_path / "ok.sto", muscle2d_path, warn=False)
    np.testing.assert_allclose(fixed.q, ok.q, atol=1e-12)
    with pytest.raises(ValueError, match=r"negate names \['knee_r'\], which are not"):
        reference_from_motion(tmp_path / "ok.sto", muscle2d_path, negate=["knee_r"])
    with pytest.raises(ValueError, match="negate must be a list of coordinate names"):
        reference_from_motion(tmp_path / "ok.sto", muscle2d_path, negate="knee_angle_r")
    # negating a file already in the model's convention: the message says to stop
    with pytest.raises(ValueError, match=r"ok.sto: knee_angle_[rl] goes .*negated as "
                                         r"reference_options\['negate'\] asks; is the file "
                                         r"already in the model's convention\?.*take "
                                         r"'knee_angle_[rl]' out of 'negate'"):
        reference_from_motion(tmp_path / "ok.sto", muscle2d_path, negate=knees)
    # 15 deg more knee extension: 3-5 deg past the 10-deg limit, kept and reported
    write_motion(tmp_path / "straight.sto", time,
                 {c: v + np.radians(15) if c in knees else v for c, v in columns.items()},
                 in_degrees=False)
    with pytest.warns(UserWarning, match=r"past the model's coordinate range .*knee_angle_r "
                                         r"-?\d+.\d to 1\d.\d deg \(range -120 to 10\)"):
        straight = reference_from_motion(tmp_path / "straight.sto", muscle2d_path)
    assert set(straight.figures["motion_file"]["beyond_model_range"]) == set(knees)
    assert ok.figures["motion_file"]["beyond_model_range"] == {}


def test_a_walk_towards_minus_x_is_not_taken_for_a_sign_convention(tmp_path, muscle3d_path):
    """The pelvis's orientation is free: walking3d turned round (heading 180 deg, past
    pelvis_rotation's GUI range) loads and loops."""
    from fastenv.references import write_motion

    time, columns, _ = read_motion(REFERENCE_DIR / "walking3d_coordinates.sto")
    turned = {c: v for c, v in columns.items() if not c.endswith("_speed")}
    turned["pelvis_rotation"] = turned["pelvis_rotation"] + np.pi
    turned["pelvis_tx"], turned["pelvis_tz"] = -turned["pelvis_tx"], -turned["pelvis_tz"]
    write_motion(tmp_path / "back.sto", time, turned, in_degrees=False)
    ref = reference_from_motion(tmp_path / "back.sto", muscle3d_path, cycle="auto", warn=False)
    assert ref.playback == "loop" and ref.figures["motion_file"]["beyond_model_range"] == {}
    assert ref.figures["motion_file"]["pelvis_speed_m_s"] > 0.9


def test_moco_running_stride_loops_with_its_knees_negated(muscle3d_path):
    path = shared_motion("moco_running_full_stride_solution.sto")
    with pytest.raises(ValueError, match="knee_angle_[rl] goes from .* past the model's range"):
        reference_from_motion(path, muscle3d_path, cycle="auto")
    with pytest.warns(UserWarning, match="negated as asked"):
        ref = reference_from_motion(path, muscle3d_path, cycle="auto",
                                    negate=["knee_angle_r", "knee_angle_l"])
    report = ref.figures["motion_file"]
    assert ref.playback == "loop" and ref.n_frames == 67
    assert report["cycle_period_s"] == pytest.approx(0.6686, abs=1e-3)
    assert 2.6 < report["pelvis_speed_m_s"] < 2.8 and report["beyond_model_range"] == {}


def test_opencap_knees_need_negating(muscle2d_path):
    path = shared_motion("opencap_jump2_ik.mot")
    with pytest.raises(ValueError, match="past the model's range"):
        reference_from_motion(path, muscle2d_path)
    with pytest.warns(UserWarning):
        ref = reference_from_motion(path, muscle2d_path,
                                    negate=["knee_angle_r", "knee_angle_l"])
    knee = np.degrees(ref.q[:, ref.coordinate_names.index("knee_angle_r")])
    assert knee.min() < -90 and knee.max() < 5


def test_a_part_cycle_that_does_not_mirror_is_refused(tmp_path, muscle2d_path):
    """40% of the cycle: its end is not its start mirrored, so there is no cycle to loop
    (and cycle='once' still plays it)."""
    from fastenv.references import write_motion

    write_motion(tmp_path / "part.sto", *_walking2d_rows(41), in_degrees=False)
    with pytest.raises(ValueError, match="not its first one mirrored"):
        reference_from_motion(tmp_path / "part.sto", muscle2d_path, cycle="auto")
    assert reference_from_motion(tmp_path / "part.sto", muscle2d_path, cycle="once",
                                 warn=False).playback == "once"


def test_mirrored_half_swaps_sides_and_reflects_the_sway():
    from fastenv.references import mirror_map, mirrored_half

    names = ["pelvis_tx", "pelvis_tz", "pelvis_list", "hip_flexion_r", "hip_flexion_l"]
    half = np.array([[0.0, 0.02, 0.05, 0.4, -0.1],
                     [0.3, 0.00, 0.00, 0.1, 0.1],
                     [0.6, -0.02, -0.05, -0.1, 0.4]])
    second = mirrored_half(half, names)
    np.testing.assert_allclose(second[:, 0], [0.6, 0.9, 1.2])       # travel goes on
    np.testing.assert_allclose(second[:, 1], [-0.02, 0.0, 0.02])    # sway comes back
    np.testing.assert_allclose(second[:, 2], [-0.05, 0.0, 0.05])
    np.testing.assert_allclose(second[:, 3:], half[:, [4, 3]])      # right <-> left
    np.testing.assert_array_equal(second[0], half[-1])              # seamless
    assert mirror_map(["hip_flexion_r", "knee_angle_r"]) is None    # no left leg


def test_moco_half_cycle_solution_loops_as_a_whole_cycle(muscle2d_path):
    path = shared_motion("moco2d_walk_halfcycle_coordinates.sto")
    with pytest.warns(UserWarning, match="half a gait cycle"):
        ref = reference_from_motion(path, muscle2d_path, cycle="auto")
    report = ref.figures["motion_file"]
    assert report["half_cycle_mirror_error_deg"] < 3.0
    assert report["cycle_period_s"] == pytest.approx(2 * 0.47008941)
    assert ref.playback == "loop" and ref.n_frames == 94
    assert 1.2 < report["pelvis_speed_m_s"] < 1.45


def test_excitations_survive_save_load_and_rebuild(tmp_path, muscle3d_path):
    """walking2d ships the excitations of its Moco tracking solution (the feed-forward of
    ``excitations="residual"``), one row per frame, in [0, 1]; saving, loading and
    putting the reference on another model keep them."""
    from fastenv.references import Reference, load_reference
    from fastenv.references.prepare import rebuild_reference
    from fastenv.sim import Simulation

    ref = load_reference("walking2d")
    assert ref.excitation.shape == (ref.n_frames, 18)
    assert 0.0 <= ref.excitation.min() and ref.excitation.max() <= 1.0
    # the half cycle was mirrored: each muscle's excitation is the other side's half a
    # cycle later (to within the resampling of a half cycle of 61.5 frames)
    r, l = ref.muscle_names.index("soleus_r"), ref.muscle_names.index("soleus_l")
    half = ref.n_frames / 2
    shifted = np.interp((np.arange(ref.n_frames) + half) % ref.n_frames,
                        np.arange(ref.n_frames + 1), np.append(ref.excitation[:, l],
                                                               ref.excitation[0, l]))
    assert np.corrcoef(shifted, ref.excitation[:, r])[0, 1] > 0.99
    assert np.abs(shifted - ref.excitation[:, r]).max() < 0.1
    back = Reference.load(ref.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(back.excitation, ref.excitation)
    assert back.muscle_names == ref.muscle_names
    sim = Simulation(muscle3d_path, energetics=False)
    rebuilt = rebuild_reference(sim, ref)
    np.testing.assert_array_equal(rebuilt.excitation, ref.excitation)
    # jumping3d, kinematic, borrows jumping2d's (its motion, frame for frame) on the
    # same-named muscles; the hip ab- and adductors the 2D model lacks get 0.01
    jump3d, jump2d = load_reference("jumping3d"), load_reference("jumping2d")
    assert jump3d.excitation.shape == (jump2d.n_frames, 22)
    for j, muscle in enumerate(jump3d.muscle_names):
        expected = (jump2d.excitation[:, jump2d.muscle_names.index(muscle)]
                    if muscle in jump2d.muscle_names else np.full(jump2d.n_frames, 0.01))
        np.testing.assert_array_equal(jump3d.excitation[:, j], expected, err_msg=muscle)
    assert sorted(set(jump3d.muscle_names) - set(jump2d.muscle_names)) == [
        "abd_l", "abd_r", "add_l", "add_r"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_references_name_a_current_model(name):
    """Each shipped reference's model digest is that of a model the package builds now
    (a base model or a default variant), so ``python -m refgen rekinematics`` finds its
    model and envs on it need not rebuild the reference."""
    from fastenv.envs.variants import VARIANTS, base_model_path, variant_path
    from fastenv.references import model_digest
    models = [variant_path(v) for v in VARIANTS]
    models += [base_model_path(spec.base) for spec in VARIANTS.values()]
    assert load_reference(name).model_digest in {model_digest(m) for m in models}


def test_model_digest_leaves_out_the_credits(tmp_path, muscle2d_path):
    """The variant builder writes its version into ``<credits>``: a new version that
    changes nothing else keeps the digest; any other change does not."""
    from pathlib import Path

    from fastenv.references import model_digest
    text = Path(muscle2d_path).read_text()
    credited, changed = tmp_path / "credited.osim", tmp_path / "changed.osim"
    credited.write_text(text.replace("<credits>", "<credits>builder v99 ", 1))
    changed.write_text(text + "\n")
    assert credited.read_text() != text
    assert model_digest(credited) == model_digest(muscle2d_path)
    assert model_digest(changed) != model_digest(muscle2d_path)


def test_an_edited_reference_file_is_read_again(tmp_path, monkeypatch):
    """The per-process cache of prepared references knows a file by its resolved path,
    size and modification time: an edited file, or another file of the same name in
    another directory, is not served from the cache."""
    from fastenv.env import ImitationEnv
    time, columns, in_degrees = read_motion(REFERENCE_DIR / "walking2d_coordinates.sto")
    walk = {c: v for c, v in columns.items() if not c.endswith("_speed")}
    path = tmp_path / "edit.sto"
    write_motion(path, time, walk, in_degrees=in_degrees)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning):
        first = ImitationEnv("TorqueWalkingImitation2D-v0", reference="edit.sto")
    n_first = first.reference.n_frames
    first.close()
    half = len(time) // 2
    write_motion(path, time[:half], {c: v[:half] for c, v in walk.items()},
                 in_degrees=in_degrees)
    second = ImitationEnv("TorqueWalkingImitation2D-v0", reference="edit.sto")
    assert second.reference.n_frames < n_first
    second.close()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="does not exist"):
        ImitationEnv("TorqueWalkingImitation2D-v0", reference="edit.sto")


def test_a_saved_reference_for_another_model_is_matched_or_refused(tmp_path):
    """A reference with coordinates the model lacks says which it does not play; one
    with none of the model's coordinates, or with its angles in degrees, is refused."""
    from fastenv.env import ImitationEnv
    with pytest.warns(UserWarning, match=r"has coordinates the model lacks, not played: "
                                         r"\['pelvis_list', 'pelvis_rotation', 'pelvis_tz'"):
        ImitationEnv("TorqueWalkingImitation2D-v0", reference="walking3d").close()
    arrays = dict(np.load(REFERENCE_DIR / "walking2d.npz"))
    meta = json.loads(str(arrays["meta"]))
    renamed = dict(meta, coordinate_names=[f"x{i}" for i in range(len(meta["coordinate_names"]))],
                   model_digest="")
    np.savez(tmp_path / "renamed.npz", **dict(arrays, meta=np.array(json.dumps(renamed))))
    with pytest.raises(ValueError, match="has none of the model's coordinates"):
        ImitationEnv("TorqueWalkingImitation2D-v0", reference=str(tmp_path / "renamed.npz"))
    np.savez(tmp_path / "deg.npz", **dict(arrays, q=np.degrees(arrays["q"])))
    with pytest.raises(ValueError, match=r"reaches .* rad .* expected radians"):
        ImitationEnv("TorqueWalkingImitation2D-v0", reference=str(tmp_path / "deg.npz"))
    np.savez(tmp_path / "dt.npz", **dict(arrays, meta=np.array(json.dumps(
        dict(meta, control_dt="0.01")))))
    with pytest.raises(ValueError, match=r"control_dt '0.01': expected a positive number"):
        Reference.load(tmp_path / "dt.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"junk.npz': not an .npz \(zip\) file"):
        Reference.load(tmp_path / "junk.npz")


def test_every_column_of_a_motion_file_is_read_or_reported(tmp_path, muscle2d_path):
    """A Moco solution's speed and muscle columns are named as not read, a coordinate
    under two labels is refused, a file name in capitals is a motion file, and a cycle
    shorter than two control steps is refused instead of stretched."""
    solution = REFERENCE_DIR / "walking2d_solution.sto"
    ref = reference_from_motion(solution, muscle2d_path, warn=False, cycle="auto")
    other = ref.figures["motion_file"]["not_coordinate_values"]
    assert "/jointset/knee_r/knee_angle_r/speed" in other
    assert any(c.startswith("/forceset/") for c in other)
    time, columns, in_degrees = read_motion(REFERENCE_DIR / "walking2d_coordinates.sto")
    walk = {c: v for c, v in columns.items() if not c.endswith("_speed")}
    twice = dict(walk, **{"/jointset/knee_r/knee_angle_r/value": walk["knee_angle_r"] + 0.1})
    write_motion(tmp_path / "twice.sto", time, twice, in_degrees=in_degrees)
    with pytest.raises(ValueError, match=r"coordinate knee_angle_r has two columns, "
                                         r"'knee_angle_r' and '/jointset/knee_r/"):
        reference_from_motion(tmp_path / "twice.sto", muscle2d_path)
    write_motion(tmp_path / "W.MOT", time, walk, in_degrees=in_degrees)
    with pytest.warns(UserWarning):
        assert load_reference(tmp_path / "W.MOT", model_path=muscle2d_path).n_frames > 100
    fine = np.arange(0.0, time[-1], 0.001)   # 1000 Hz: a window of a few rows is 2 ms
    write_motion(tmp_path / "fine.sto", fine, {c: np.interp(fine, time, v)
                                               for c, v in walk.items()}, in_degrees=in_degrees)
    with pytest.raises(ValueError, match=r"a looped cycle of 0.00\d+ s is shorter than 2 "
                                         r"control steps"):
        reference_from_motion(tmp_path / "fine.sto", muscle2d_path, cycle=(0.1, 0.104))


def test_a_bad_saved_reference_is_named_by_its_file(tmp_path):
    """Refusing a saved .npz names the file passed, not the reference stored in it (the
    shipped one it was saved from, which is fine); a motion file is sampled at the
    model's own control step."""
    from fastenv.envs.variants import variant_path
    from fastenv.references.prepare import prepare_reference
    from fastenv.sim import Simulation

    sim = Simulation(variant_path("torque2d"), energetics=False)
    arrays = dict(np.load(REFERENCE_DIR / "walking2d.npz"))
    meta = json.loads(str(arrays["meta"]))
    q = arrays["q"].copy()
    q[5, 3] = np.nan
    rot = [j for j, c in enumerate(meta["coordinate_names"]) if not c.startswith("pelvis_t")]
    degrees = arrays["q"].copy()
    degrees[:, rot] = np.degrees(degrees[:, rot])
    for name, change, match in (
            ("degrees", dict(q=degrees), r"knee_angle_r reaches .* was it saved in degrees"),
            ("renamed", dict(meta=dict(meta, coordinate_names=[
                c.upper() for c in meta["coordinate_names"]])), "none of the model's"),
            ("dt", dict(meta=dict(meta, control_dt=0.005)),
             r"control_dt 0.005 s, expected the env's control step, 0.01 s"),
            ("nan", dict(q=q), r"q holds 1 non-finite value")):
        if "meta" in change:
            change["meta"] = np.array(json.dumps(change["meta"]))
        path = tmp_path / f"{name}.npz"
        np.savez(path, **dict(arrays, **change))
        with pytest.raises(ValueError, match=match) as err:
            prepare_reference(sim, str(path))
        message = str(err.value)
        assert message.startswith(f"reference file {str(path)!r}"), message
        assert "walking2d" not in message and "\n" not in message
    write_motion(tmp_path / "walk.sto", *_walking2d_rows(101), in_degrees=False)
    slow = Simulation(variant_path("torque2d"), energetics=False, control_dt=0.02)
    with pytest.warns(UserWarning):
        ref = prepare_reference(slow, str(tmp_path / "walk.sto"))
    assert ref.control_dt == 0.02


def test_a_lab_origin_offset_is_aligned_and_reported(tmp_path):
    """A motion 1 m up (recorded about a lab origin off the floor) lands on the ground,
    the shift given in the file's one warning with what it suggests; one that no shift
    within 5 m grounds is refused, naming the file and align_ground=False."""
    from fastenv.envs.variants import variant_path
    from fastenv.references.prepare import prepare_reference
    from fastenv.sim import Simulation

    sim = Simulation(variant_path("torque2d"), energetics=False)
    time, columns = _walking2d_rows(101)
    write_motion(tmp_path / "floor.sto", time, columns, in_degrees=False)
    write_motion(tmp_path / "lab.sto", time, dict(columns, pelvis_ty=columns["pelvis_ty"] + 1),
                 in_degrees=False)
    with pytest.warns(UserWarning):
        floor = prepare_reference(sim, str(tmp_path / "floor.sto"))
    with pytest.warns(UserWarning) as record:
        lab = prepare_reference(sim, str(tmp_path / "lab.sto"))
    messages = _user_warnings(record)
    assert len(messages) == 1, messages
    dy = lab.figures["ground_offset_m"]
    assert dy == pytest.approx(floor.figures["ground_offset_m"] - 1.0, abs=1e-4)
    assert f"shifted {abs(dy) * 100:.1f} cm down" in messages[0]
    assert "lab origin" in messages[0] and messages[0].startswith("lab.sto: ")
    ty = sim.coordinate_names.index("pelvis_ty")
    np.testing.assert_allclose(lab.q[:, ty], floor.q[:, ty], atol=1e-4)
    np.testing.assert_allclose(lab.com_pos, floor.com_pos, atol=1e-4)

    arrays = dict(np.load(REFERENCE_DIR / "walking2d.npz"))
    q = arrays["q"].copy()
    q[:, ty] += 10.0
    np.savez(tmp_path / "air.npz", **dict(arrays, q=q))
    with pytest.raises(ValueError, match=r"^reference file '.*air.npz': cannot align with the "
                                         r"ground: its pelvis_ty goes 10.\d+ to 10.\d+ m.* "
                                         r"align_ground=False") as err:
        prepare_reference(sim, str(tmp_path / "air.npz"))
    assert "\n" not in str(err.value)
    kept = prepare_reference(sim, str(tmp_path / "air.npz"), align_ground=False)
    assert kept.q[0, ty] == q[0, ty]


def test_a_radians_column_in_a_degrees_file_is_named(tmp_path, muscle2d_path):
    """One ankle column in radians under inDegrees=yes moves 0.3 "deg" in a gait: named
    in the warning. Every column in degrees, a left knee and ankle held still (a locked
    knee's motion), and the radians column on a model that locks that joint are not."""
    from fastenv.envs.variants import variant_path

    time, columns = _walking2d_rows(101)
    degrees = {c: v if c.startswith("pelvis_t") else np.degrees(v) for c, v in columns.items()}
    radians = columns["ankle_angle_l"]
    write_motion(tmp_path / "mixed.mot", time, dict(degrees, ankle_angle_l=radians),
                 in_degrees=True)
    with pytest.warns(UserWarning) as record:
        ref = reference_from_motion(tmp_path / "mixed.mot", muscle2d_path)
    messages = _user_warnings(record)
    assert len(messages) == 1
    assert (f"ankle_angle_l moves only {radians.min():.2f} to {radians.max():.2f} deg "
            "although the motion is a gait") in messages[0], messages[0]
    assert "radians under the header's inDegrees=yes" in messages[0]
    assert list(ref.figures["motion_file"]["still_gait_joints"]) == ["ankle_angle_l"]
    locked = reference_from_motion(tmp_path / "mixed.mot", variant_path("muscle2d_lockedknee"),
                                   warn=False)
    assert locked.figures["motion_file"]["still_gait_joints"] == {}
    assert "ankle_angle_l" in locked.figures["motion_file"]["locked_coordinates_dropped"]
    held = dict(degrees, knee_angle_l=np.full_like(time, -5.0), ankle_angle_l=np.zeros_like(time))
    for name, cols in (("degrees.mot", degrees), ("held.mot", held)):
        write_motion(tmp_path / name, time, cols, in_degrees=True)
        report = reference_from_motion(tmp_path / name, muscle2d_path,
                                       warn=False).figures["motion_file"]
        assert report["still_gait_joints"] == {} and report["looks_like_gait"], name


@pytest.mark.parametrize("name, model, options", [
    ("gait10dof18musc_subject01_walk_ik.mot", "muscle2d", {}),
    ("gait10dof18musc_subject01_walk_ik.mot", "muscle2d_lockedknee", {}),
    ("hamner_subject02_running_ik.mot", "muscle3d", {"treadmill_speed": 3.9}),
    ("tutorial_gait2392_normal.mot", "muscle3d_lockedknee", {}),
    ("tutorial_gait2392_crouch1.mot", "palsy3d", {}),
    ("tutorial_gait2392_crouch3.mot", "palsy3d", {}),
    ("opencap_jump2_ik.mot", "muscle3d", {"negate": ["knee_angle_r", "knee_angle_l"]})])
def test_measured_degrees_files_have_no_radians_column(name, model, options):
    """The check for a radians column does not fire on public measured motions in
    degrees, the least moving joints among them (crouch gait's stiff knee, 11 deg; its
    ankle, 9 deg) and a locked-knee model's dropped knee and ankle included."""
    from fastenv.envs.variants import variant_path

    path = shared_motion(name)
    report = reference_from_motion(path, variant_path(model), warn=False,
                                   **options).figures["motion_file"]
    assert report["looks_like_gait"]   # the check applies
    assert report["still_gait_joints"] == {}


def test_a_motion_too_short_to_filter_is_played_as_is(tmp_path, muscle2d_path):
    """Three rows of walking: the 6 Hz filter's start-up transient moved the first
    frame's pelvis 1.5 cm and a knee 0.8 deg; they are played unfiltered, and the
    warning says so."""
    time, columns = _walking2d_rows(3)
    write_motion(tmp_path / "short.sto", time, columns, in_degrees=False)
    with pytest.warns(UserWarning, match=r"not low-pass filtered: it lasts 0.0\d+ s, less "
                                         r"than one period of the 6 Hz cut-off"):
        ref = reference_from_motion(tmp_path / "short.sto", muscle2d_path)
    assert ref.figures["motion_file"]["unfiltered_duration_s"] == pytest.approx(time[-1] - time[0])
    for c in ("pelvis_tx", "knee_angle_r", "hip_flexion_r"):
        assert ref.q[0, ref.coordinate_names.index(c)] == pytest.approx(columns[c][0], abs=1e-12)
    bare = reference_from_motion(tmp_path / "short.sto", muscle2d_path, warn=False,
                                 lowpass_hz=None)
    np.testing.assert_array_equal(bare.q, ref.q)


def test_lowpass_pads_one_period_whatever_the_rate():
    """A motion's filtered ends are what the filter gives inside a longer recording, to
    about what it changes anyway (a 15-row padding, 15 ms at 1000 Hz, left them 7 cm and
    25 deg off)."""
    from scipy.interpolate import CubicSpline

    from fastenv.references import lowpass

    time, columns = _walking2d_rows(101)
    period = time[-1] - time[0]
    spline = CubicSpline(time, np.column_stack([columns["pelvis_tx"],
                                                np.degrees(columns["knee_angle_r"])]),
                         axis=0, bc_type="not-a-knot")
    stride = columns["pelvis_tx"][-1] - columns["pelvis_tx"][0]

    def walk(t):   # the cycle repeated, the pelvis going on by a stride each
        k = np.floor((t - time[0]) / period)
        y = spline(t - k * period)
        y[:, 0] += k * stride
        return y

    for hz in (100, 1000):
        t = np.arange(-3.0, 3.0, 1 / hz)
        inside = lowpass(walk(t), 1 / hz, 6.0)
        for start in (0.3, 0.6):
            rows = slice(int(3.0 * hz + start * hz), int(3.0 * hz + (start + 0.5) * hz))
            error = np.abs(lowpass(walk(t[rows]), 1 / hz, 6.0) - inside[rows]).max(axis=0)
            assert error[0] < 0.01 and error[1] < 4.0, (hz, start, error)
