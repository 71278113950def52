"""The observation layout as data: blocks tile the observation, names are unchanged."""
from itertools import pairwise

import numpy as np
import pytest

import fastenv  # noqa: F401  (registers the tasks)
from fastenv.env import ImitationEnv
from fastenv.observation import (
    OBSERVATION_BLOCKS,
    ObservationBlock,
    build_observation_layout,
    task_buffer_layout,
)

# observation_names as the hand-written ImitationEnv._build_observation_layout made them
# (commit bf622c7), before the layout became data: (block, elements), None for one
# element named like its block.
COORDS_2D = ("pelvis_tilt", "pelvis_tx", "pelvis_ty", "hip_flexion_r", "knee_angle_r",
             "ankle_angle_r", "hip_flexion_l", "knee_angle_l", "ankle_angle_l")
COORDS_3D = ("pelvis_tilt", "pelvis_list", "pelvis_rotation", "pelvis_tx", "pelvis_ty",
             "pelvis_tz", "hip_flexion_r", "hip_adduction_r", "knee_angle_r", "ankle_angle_r",
             "hip_flexion_l", "hip_adduction_l", "knee_angle_l", "ankle_angle_l")
BODIES = ("pelvis", "femur_r", "tibia_r", "talus_r", "calcn_r", "toes_r", "femur_l", "tibia_l",
          "talus_l", "calcn_l", "toes_l", "torso", "head")
MUSCLES_2D = ("hamstrings_r", "bifemsh_r", "glut_max_r", "iliopsoas_r", "rect_fem_r", "vasti_r",
              "gastroc_r", "soleus_r", "tib_ant_r", "hamstrings_l", "bifemsh_l", "glut_max_l",
              "iliopsoas_l", "rect_fem_l", "vasti_l", "gastroc_l", "soleus_l", "tib_ant_l")


def _positions(coords):
    return tuple(c for c in coords if c not in ("pelvis_tx", "pelvis_ty", "pelvis_tz"))


def _per_axis(bodies, axes):
    return tuple(f"{b}.{a}" for b in bodies for a in axes)


SNAPSHOT = {
    "MuscleWalkingImitation2D-v0": (
        ("phase", None), ("q", _positions(COORDS_2D)), ("qdot", COORDS_2D),
        ("qddot", COORDS_2D), ("target_q", _positions(COORDS_2D)), ("target_qdot", COORDS_2D),
        ("body_pos_rel_pelvis", _per_axis(BODIES[1:], "xy")),
        ("body_vel", _per_axis(BODIES, "xy")),
        ("activation", MUSCLES_2D), ("norm_fiber_length", MUSCLES_2D),
        ("norm_fiber_velocity", MUSCLES_2D),
        ("grf", ("foot_r.Fx", "foot_r.Fy", "foot_r.Mz", "foot_l.Fx", "foot_l.Fy", "foot_l.Mz")),
    ),
    "TorqueWalkingImitation3D-v0": (
        ("phase", None), ("q", _positions(COORDS_3D)), ("qdot", COORDS_3D),
        ("qddot", COORDS_3D), ("target_q", _positions(COORDS_3D)), ("target_qdot", COORDS_3D),
        ("body_pos_rel_pelvis", _per_axis(BODIES[1:], "xyz")),
        ("body_vel", _per_axis(BODIES, "xyz")),
        ("grf", _per_axis(("foot_r", "foot_l"), ("Fx", "Fy", "Fz", "Mx", "My", "Mz"))),
    ),
}
SNAPSHOT_SIZES = {"MuscleWalkingImitation2D-v0": 152, "TorqueWalkingImitation3D-v0": 152}


def _expand(groups):
    return [block if elements is None else f"{block}/{e}"
            for block, elements in groups for e in (elements or (None,))]


@pytest.fixture(scope="module", params=sorted(SNAPSHOT))
def env(request):
    e = ImitationEnv(request.param, obs_dtype="float64")
    yield e
    e.close()


def test_names_and_order_unchanged(env):
    expected = _expand(SNAPSHOT[env.spec_task.id])
    assert len(expected) == SNAPSHOT_SIZES[env.spec_task.id]
    assert env.observation_names == expected


def _assert_blocks_tile(env):
    blocks = env.observation_blocks
    n = env.observation_space.shape[0]
    # in the order of OBSERVATION_BLOCKS, contiguous, covering every element once
    assert list(blocks) == [b.name for b in OBSERVATION_BLOCKS if b.name in blocks]
    bounds = [(s.start, s.stop) for s in blocks.values()]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(stop == start for (_, stop), (start, _) in pairwise(bounds))
    assert all(start < stop for start, stop in bounds)
    for name, s in blocks.items():
        assert all(x == name or x.startswith(f"{name}/") for x in env.observation_names[s])


def test_blocks_tile_the_observation(env):
    _assert_blocks_tile(env)
    assert list(env.observation_blocks) == [block for block, _ in SNAPSHOT[env.spec_task.id]]


def test_blocks_follow_the_options():
    e = ImitationEnv("MuscleWalkingImitation2D-v0", use_target_obs=False, use_GRF=False)
    _assert_blocks_tile(e)
    assert list(e.observation_blocks) == [
        "phase", "q", "qdot", "qddot", "body_pos_rel_pelvis", "body_vel", "activation",
        "norm_fiber_length", "norm_fiber_velocity"]
    assert e.observation_names == [n for n in _expand(SNAPSHOT["MuscleWalkingImitation2D-v0"])
                                   if not n.startswith(("target_", "grf/"))]


def test_block_values_match_the_simulation(env):
    """Each block, found by name, holds what its source says (float64 observation)."""
    env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    sim, L, b = env.sim, env.sim.layout, env.sim.buf
    blk = {name: obs[s] for name, s in env.observation_blocks.items()}
    free = ~sim.locked
    positions = free & ~np.isin(sim.coordinate_names, ["pelvis_tx", "pelvis_ty", "pelvis_tz"])
    axes = 2 if env.spec_task.planar else 3
    q_next, qd_next = env.reference.coordinates_at(env._start + env._step + 1)
    np.testing.assert_array_equal(blk["phase"], [env._phase()])
    np.testing.assert_array_equal(blk["q"], b[L.slice("q")][positions])
    np.testing.assert_array_equal(blk["qdot"], b[L.slice("qdot")][free])
    np.testing.assert_array_equal(blk["qddot"], b[L.slice("qddot")][free])
    np.testing.assert_array_equal(blk["target_q"], q_next[positions])
    np.testing.assert_array_equal(blk["target_qdot"], qd_next[free])
    bpos = b[L.slice("body_pos")].reshape(-1, 3)
    pelvis = sim.body_names.index("pelvis")
    np.testing.assert_array_equal(blk["body_pos_rel_pelvis"],
                                  (np.delete(bpos, pelvis, 0) - bpos[pelvis])[:, :axes].ravel())
    np.testing.assert_array_equal(blk["body_vel"],
                                  b[L.slice("body_vel")].reshape(-1, 3)[:, :axes].ravel())
    grf = b[L.slice("grf")].reshape(-1, 6)
    scale = np.r_[np.full(3, sim.body_weight), np.full(3, sim.body_weight * env.spec_task.height)]
    keep = [0, 1, 5] if env.spec_task.planar else slice(None)
    np.testing.assert_allclose(blk["grf"], (grf / scale)[:, keep].ravel(), rtol=1e-14)
    if sim.muscles:
        lopt = np.array([m.getOptimalFiberLength() for m in sim.muscles])
        np.testing.assert_array_equal(blk["activation"], b[L.slice("activation")])
        np.testing.assert_allclose(blk["norm_fiber_length"], b[L.slice("fiber_length")] / lopt,
                                   rtol=1e-14)
        np.testing.assert_allclose(blk["norm_fiber_velocity"],
                                   b[L.slice("fiber_velocity")] / lopt, rtol=1e-14, atol=1e-300)
    else:
        assert not {"activation", "norm_fiber_length", "norm_fiber_velocity"} & set(blk)


def test_custom_blocks(env):
    """The builder takes any blocks: a GRF-and-phase-only observation."""
    blocks = (ObservationBlock("grf", source="grf", over="contacts",
                               components=("Fy",), scale="body_weight"),
              ObservationBlock("phase", source="phase"))
    layout = build_observation_layout(env.sim, env.spec_task, env.options, blocks)
    contacts = env.sim.contact_names
    assert layout.names == [f"grf/{c}.Fy" for c in contacts] + ["phase"]
    assert layout.blocks == {"grf": slice(0, len(contacts)),
                             "phase": slice(len(contacts), len(contacts) + 1)}
    assert layout.buffer_size == env.sim.layout.size + task_buffer_layout(
        env.sim.coordinate_names).size
    np.testing.assert_array_equal(layout.scale[:-1], 1 / env.sim.body_weight)
    with pytest.raises(ValueError, match="unknown observation scale 'furlong'"):
        build_observation_layout(env.sim, env.spec_task, env.options,
                                 (ObservationBlock("q", source="q", over="coordinates",
                                                   scale="furlong"),))


def test_previous_actions_block_holds_what_the_moving_average_still_applies():
    env = ImitationEnv("TorqueWalkingImitation2D-v0", horizon=3, observe_previous_actions=True)
    block = env.observation_blocks["previous_actions"]
    names = env.observation_names[block]
    acts = env.sim.actuator_names
    assert names == [f"previous_actions/t-{k}.{a}" for k in (1, 2) for a in acts]
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[block], 0.0)   # none taken yet
    rng = np.random.default_rng(0)
    taken = []
    for _ in range(4):
        a = rng.uniform(-1, 1, env.n_actions).astype(np.float32)
        obs, *_ = env.step(a)
        taken.append(a)
        expect = np.concatenate([taken[-1], taken[-2] if len(taken) > 1 else np.zeros(7)])
        np.testing.assert_allclose(obs[block], expect, rtol=1e-6)
    assert "previous_actions" not in ImitationEnv("TorqueWalkingImitation2D-v0",
                                                  horizon=3).observation_blocks
    # with horizon=1 there is no action before this step to observe: refused, not an
    # observation silently without the block asked for
    with pytest.raises(ValueError, match="none with horizon=1"):
        ImitationEnv("TorqueWalkingImitation2D-v0", horizon=1, observe_previous_actions=True)
