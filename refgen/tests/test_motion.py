"""refgen.motion: the pipeline's coordinate trajectories and their files."""
import numpy as np
import pytest

from refgen import REFERENCES_DIR
from refgen.motion import (
    Motion,
    Target,
    read_coordinates,
    read_coordinates_sto,
    rounded,
    write_coordinates_sto,
)


@pytest.mark.parametrize("path", sorted(REFERENCES_DIR.glob("*_coordinates.sto")),
                         ids=lambda p: p.name)
def test_committed_coordinates_files_round_trip(path, tmp_path):
    """Every committed coordinates file reads and writes back byte for byte."""
    name = path.name[:-len("_coordinates.sto")]
    out = write_coordinates_sto(tmp_path / path.name, read_coordinates_sto(path), name)
    assert out.read_bytes() == path.read_bytes()


def test_read_coordinates_converts_and_selects(tmp_path):
    path = tmp_path / "m.mot"
    path.write_text("m\ninDegrees=yes\nendheader\n"
                    "time\tknee_angle_r\tpelvis_ty\t/jointset/hip_r/hip_flexion_r/value\t"
                    "knee_angle_r_speed\n0\t90\t0.9\t10\t1\n0.5\t45\t1.0\t20\t2\n")
    m = read_coordinates(path, knee_flexion_positive=True, from_zero=True)
    assert m.names == ("knee_angle_r", "pelvis_ty", "hip_flexion_r")
    np.testing.assert_allclose(m.column("knee_angle_r"), -np.radians([90, 45]))
    np.testing.assert_allclose(m.column("pelvis_ty"), [0.9, 1.0])     # metres stay
    np.testing.assert_allclose(m.column("hip_flexion_r"), np.radians([10, 20]))
    only = read_coordinates(path, ("pelvis_ty",))
    assert only.names == ("pelvis_ty",)
    with pytest.raises(ValueError, match="no column for"):
        read_coordinates(path, required=("ankle_angle_r",))


def test_motion_and_target():
    m = Motion(np.arange(3.0), ["a"], np.zeros((3, 1)), np.ones((3, 1)))
    m.set("b", 2.0)
    assert m.names == ("a", "b") and m.speeds is None
    np.testing.assert_array_equal(m.column("b"), [2.0, 2.0, 2.0])
    t = Target.of(np.arange(2.0), {"x": [1.0, 2.0], "y": [3.0, 4.0]}, speed=1.3)
    assert t.names == ("x", "y") and t.speed == 1.3 and list(t.coords["y"]) == [3.0, 4.0]
    assert rounded({"a": [np.float64(1.23456), float("nan")], "b": (2,)}) == \
        {"a": [1.2346, None], "b": [2]}
