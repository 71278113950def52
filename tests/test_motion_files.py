"""Rollouts written for the OpenSim GUI read back with OpenSim equal the rollout."""
import numpy as np
import opensim as osim
import pytest

from fastenv.env import ImitationEnv


@pytest.mark.parametrize("task", ["MuscleWalkingImitation2D-v0", "TorqueWalkingImitation3D-v0"])
def test_write_motion_reads_back_with_opensim(task, tmp_path):
    env = ImitationEnv(task, mode="test", log=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(15):
        env.step(env.action_space.sample())
    paths = env.write_motion(tmp_path / "rollout.mot")
    assert {p.name for p in paths.values()} == {"rollout.mot", "rollout_states.sto",
                                                 "rollout.osim"}
    log, sim = env.episode_log, env.sim

    motion = osim.TimeSeriesTable(str(paths["motion"]))
    assert motion.getTableMetaDataAsString("inDegrees") == "yes"
    assert list(motion.getColumnLabels()) == sim.coordinate_names
    times = np.array(motion.getIndependentColumn())
    np.testing.assert_allclose(times, [r["time"] for r in log], atol=1e-12)
    q = np.array([r["q"] for r in log])
    for j, name in enumerate(sim.coordinate_names):
        column = motion.getDependentColumn(name).to_numpy()
        expect = np.degrees(q[:, j]) if sim.rotational[j] else q[:, j]
        np.testing.assert_allclose(column, expect, rtol=1e-9, atol=1e-9)

    model = osim.Model(str(paths["model"]))
    model.initSystem()
    states = osim.StatesTrajectory.createFromStatesTable(
        model, osim.TimeSeriesTable(str(paths["states"])))
    assert states.getSize() == len(log)
    unlocked = [k for k, name in enumerate(sim.state_variable_names)
                if not any(name.startswith(f"/jointset/{c.getJoint().getName()}/{c.getName()}/")
                           for c, locked in zip(sim.coordinates, sim.locked) if locked)]
    for k in (0, 7, len(log) - 1):
        values = model.getStateVariableValues(states.get(k)).to_numpy()
        np.testing.assert_allclose(values[unlocked], log[k]["state"][unlocked],
                                   rtol=1e-9, atol=1e-9)
        assert states.get(k).getTime() == pytest.approx(log[k]["time"])


def test_write_motion_needs_a_recorded_episode(tmp_path):
    env = ImitationEnv("TorqueWalkingImitation2D-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="log=True"):
        env.write_motion(tmp_path / "x.mot")


def test_a_rollout_named_in_capitals_keeps_one_stem(tmp_path):
    """``R.MOT`` is a motion file name too: the three files are R.mot, R_states.sto and
    R.osim, not R.MOT_states.sto."""
    from fastenv.envs.variants import variant_path
    from fastenv.references import write_rollout

    paths = write_rollout(tmp_path / "R.MOT", np.array([0.0, 0.01]), ["knee_angle_r"],
                          [True], np.zeros((2, 1)), ["a"], np.zeros((2, 1)),
                          variant_path("torque2d"))
    assert {p.name for p in paths.values()} == {"R.mot", "R_states.sto", "R.osim"}


def test_a_rollout_is_written_under_its_motion_file_name_only(tmp_path):
    """The three files share the .mot's stem, dots in it included; another name is
    refused before anything is written (x.txt had given x.mot beside x.txt_states.sto,
    run.v2.mot gave run.mot beside run.v2_states.sto)."""
    from fastenv.envs.variants import variant_path
    from fastenv.references import write_rollout

    def write(name):
        return write_rollout(tmp_path / name, np.array([0.0, 0.01]), ["knee_angle_r"],
                             [True], np.zeros((2, 1)), ["a"], np.zeros((2, 1)),
                             variant_path("torque2d"))
    for name in ("x.txt", "x.sto", "x.osim", "x"):
        with pytest.raises(ValueError, match=rf"ending in \.mot .*got '.*/{name}'"):
            write(name)
    assert list(tmp_path.iterdir()) == []
    assert {p.name for p in write("run.v2.mot").values()} == {
        "run.v2.mot", "run.v2_states.sto", "run.v2.osim"}
