"""``python -m refgen rekinematics``: body kinematics of committed references, no solve."""
import numpy as np
import pytest

from refgen import REFERENCES_DIR
from refgen.__main__ import main


def test_rekinematics_reproduces_the_committed_reference(tmp_path, capsys):
    """The committed body kinematics are what the fixed code computes from the committed
    coordinates, and recomputing them keeps every other array bit-identical."""
    assert main(["rekinematics", "walking2d", "--out", str(tmp_path)]) == 0
    assert "centre of mass unchanged" in capsys.readouterr().out
    with np.load(REFERENCES_DIR / "walking2d.npz") as old, \
            np.load(tmp_path / "walking2d.npz") as new:
        assert old.files == new.files
        for key in old.files:
            assert old[key].dtype == new[key].dtype and old[key].shape == new[key].shape, key
            assert old[key].tobytes() == new[key].tobytes(), key


def test_rekinematics_names_the_references_it_knows(tmp_path):
    from refgen.kinematics import rekinematics
    with pytest.raises(ValueError, match="no reference 'flying'.*walking2d"):
        rekinematics("flying", references_dir=REFERENCES_DIR, out_dir=tmp_path)
