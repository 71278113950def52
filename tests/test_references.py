"""Reference format and the loader for users' inverse-kinematics files."""
import warnings

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
)

SHIPPED = sorted(p.name[:-4] for p in REFERENCE_DIR.iterdir() if p.name.endswith(".npz"))


def test_measured_walking_on_2d_model(muscle2d_path):
    path = shared_motion("gait10dof18musc_subject01_walk_ik.mot")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact coordinate names: no warning expected
        ref = reference_from_motion(path, muscle2d_path, treadmill_speed=1.05)
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
    messages = [str(w.message) for w in record]
    ignored = [m for m in messages if "ignoring columns" in m]
    missing = [m for m in messages if "missing from the file" in m]
    assert len(ignored) == 1 and "lumbar_bending" in ignored[0]
    assert len(missing) <= 1
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
    with pytest.raises(ValueError, match="non-numeric"):
        read_motion(bad)
    bad.write_text("endheader\ntime wing_angle\n0 1\n0.01 2\n")
    with pytest.raises(ValueError, match="no column matching a coordinate"):
        reference_from_motion(bad, muscle2d_path)
    corrupt = tmp_path / "c.npz"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read reference"):
        Reference.load(corrupt)


def _env_model_path(reference: str):
    """The model of the first task that imitates ``reference``."""
    from fastenv.envs import TASKS
    from fastenv.envs.variants import variant_path
    task = next(t for t in TASKS.values() if t.reference == reference)
    return variant_path(task.model, **task.variant_params)


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
