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


@pytest.mark.parametrize("name", ["walking3d", "palsy3d", "lockedknee2d"])
def test_excitations_reproduce_the_committed_reference(name, tmp_path, capsys):
    """The committed excitations are those of the committed Moco solution on the
    reference's frames (a symmetric half cycle mirrored: walking3d; a full cycle:
    palsy3d; a predicted 2D cycle started at the right heel strike: lockedknee2d), and
    attaching them keeps every other array bit-identical."""
    assert main(["excitations", name, "--out", str(tmp_path)]) == 0
    assert "muscle excitations from" in capsys.readouterr().out
    with np.load(REFERENCES_DIR / f"{name}.npz") as old, \
            np.load(tmp_path / f"{name}.npz") as new:
        assert "excitation" in old.files and old.files == new.files
        for key in old.files:
            assert old[key].tobytes() == new[key].tobytes(), key


def test_excitations_refuse_a_solution_of_another_motion(tmp_path):
    """A solution whose angles are not the reference's is refused by name."""
    import shutil

    from refgen.derive3d import attach_solution_excitations
    for suffix in (".npz", ".json"):
        shutil.copy(REFERENCES_DIR / f"walking3d{suffix}", tmp_path / f"walking3d{suffix}")
    shutil.copy(REFERENCES_DIR / "palsy3d_solution.sto", tmp_path / "walking3d_solution.sto")
    with pytest.raises(RuntimeError, match="walking3d.*differs from walking3d_solution.sto"):
        attach_solution_excitations("walking3d", references_dir=tmp_path)
    with pytest.raises(ValueError, match="needs walking2d.npz, walking2d_solution.sto"):
        attach_solution_excitations("walking2d", references_dir=tmp_path)
