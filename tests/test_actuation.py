"""Actuation: muscle excitations and PD targets behind one interface."""
import dataclasses

import numpy as np
import pytest

import fastenv  # noqa: F401  (registers the tasks)
from fastenv import kernels, metabolic
from fastenv.actuation import MuscleActuation, PDActuation, make_actuation
from fastenv.env import ImitationEnv
from fastenv.envs import TASKS

MUSCLE, TORQUE = "MuscleWalkingImitation2D-v0", "TorqueWalkingImitation2D-v0"


@pytest.fixture(scope="module")
def muscle_env():
    e = ImitationEnv(MUSCLE)
    yield e
    e.close()


@pytest.fixture(scope="module")
def torque_env():
    e = ImitationEnv(TORQUE)
    yield e
    e.close()


@pytest.fixture(scope="module")
def held_torque_env():
    """The original package's PD law: torques computed once per step and held."""
    e = ImitationEnv(TORQUE, pd_update="step")
    yield e
    e.close()


def test_env_picks_the_task_actuation(muscle_env, torque_env):
    for env, cls, low in ((muscle_env, MuscleActuation, 0.0), (torque_env, PDActuation, -1.0)):
        act = env.actuation
        assert type(act) is cls
        assert env.action_space is act.action_space
        assert env.n_actions == act.n_actions == env.sim.n_controls
        assert (act.action_space.low == low).all() and (act.action_space.high == 1.0).all()


def test_unknown_actuation_is_refused(torque_env):
    spec = dataclasses.replace(TASKS[TORQUE], actuation="hydraulic")
    with pytest.raises(ValueError, match="unknown actuation 'hydraulic'"):
        make_actuation(torque_env.sim, spec, torque_env.options)


def test_muscle_actions_are_the_excitations(muscle_env):
    smoothed = np.linspace(0.0, 1.0, muscle_env.n_actions)[None, :]
    np.testing.assert_array_equal(muscle_env.actuation.controls(smoothed), smoothed[0])


def test_muscle_effort_is_the_metabolic_cost_of_transport(muscle_env):
    env = muscle_env
    env.reset(seed=0)
    env.action_space.seed(0)
    _, _, _, _, info = env.step(env.action_space.sample())
    sim, b, L = env.sim, env.sim.buf, env.sim.layout
    c = env.actuation.muscle_constants
    rows = [b[L.slice(k)][None, :] for k in ("excitation", "activation", "fiber_length",
                                             "fiber_velocity", "active_fiber_force",
                                             "active_fl_multiplier")]
    power, _ = metabolic.metabolic_rate_numpy(*rows, c.opt_fiber_length,
                                              c.max_contraction_velocity, c.muscle_mass,
                                              c.slow_twitch_ratio, c.basal_rate_W)
    speed = max(b[L.slice("com_vel")][env.spec_task.progress_axis], 0.1)
    assert info["effort_cost"] == env.actuation.effort_cost()
    assert info["effort_cost"] == power[0] / (sim.body_weight * speed)


def test_pd_targets_span_the_coordinate_range(torque_env):
    act = torque_env.actuation
    n = act.n_actions
    for a, bound in ((-1.0, act.lower), (1.0, act.upper)):
        act.controls(np.full((1, n), a))
        np.testing.assert_allclose(act.target[0], bound, rtol=1e-15, atol=1e-15)
    cn = torque_env.sim.coordinate_names
    np.testing.assert_array_equal(act.lower, torque_env.sim.coordinate_range[
        [cn.index(a) for a in torque_env.sim.actuator_names], 0])


def test_held_pd_controls_are_normalised_torques(held_torque_env):
    env = held_torque_env
    env.reset(seed=1)
    act = env.actuation
    rng = np.random.default_rng(0)
    smoothed = rng.uniform(-1, 1, (1, act.n_actions))
    controls = act.controls(smoothed)
    b, L = env.sim.buf, env.sim.layout
    torque, target = kernels.pd_control_numpy(
        smoothed, act.lower, act.upper, b[L.slice("q")][act.coordinates][None, :],
        b[L.slice("qdot")][act.coordinates][None, :], act.kp, act.kd, 200.0)
    np.testing.assert_array_equal(act.torque, torque)
    np.testing.assert_array_equal(act.target, target)
    np.testing.assert_array_equal(controls, torque[0] / 200.0)
    np.testing.assert_array_equal(act.effort_cost(), kernels.torque_cost_numpy(torque, 200.0)[0])


def test_held_env_step_sends_the_pd_torques_and_prices_them(held_torque_env):
    env = held_torque_env
    env.reset(seed=2)
    env.action_space.seed(2)
    _, _, _, _, info = env.step(env.action_space.sample())
    act, L = env.actuation, env.sim.layout
    np.testing.assert_array_equal(env.sim.buf[L.slice("controls")], act.torque[0] / 200.0)
    assert info["effort_cost"] == act.effort_cost()


def test_continuous_pd_springs_start_the_step_at_the_limited_pd_torque(torque_env):
    """pd_update="continuous": the coordinate actuators are idle and each actuated
    coordinate's spring, evaluated by OpenSim at the step's start state, gives exactly
    the PD torque limited to ±max_actuation."""
    import opensim as osim
    env = torque_env
    env.reset(seed=3)
    env.step(np.zeros(env.n_actions, np.float32))    # moving, so the damping acts too
    act, sim = env.actuation, env.sim
    smoothed = np.random.default_rng(1).uniform(-1, 1, (1, act.n_actions))
    controls = act.controls(smoothed)
    np.testing.assert_array_equal(controls, 0.0)
    assert np.abs(act.torque).max() == 200.0          # some are limited
    s = osim.State(sim.state)
    sim.model.realizeDynamics(s)
    spring = [osim.SpringGeneralizedForce.safeDownCast(
        sim.model.getForceSet().get(f"fastenv_spring_{c}")) for c in sim.actuator_names]
    got = [f.getRecordValues(s).get(0) for f in spring]
    np.testing.assert_allclose(got, act.torque[0], rtol=1e-9, atol=1e-9)
    assert sim.spring_coordinates == sim.actuator_names
    np.testing.assert_array_equal(act.effort_cost(),
                                  kernels.torque_cost_numpy(act.torque, 200.0)[0])


def test_default_pd_gains_carry_the_load_and_are_critically_damped(torque_env,
                                                                   held_torque_env):
    """Continuous: kp = (2 pi 6 Hz)^2 I + 2 m g h; held: kp = (2 pi 3 Hz)^2 I (stiffer
    is unstable when held for 10 ms); kd = 2 sqrt(kp I) for both."""
    for env, hz, load in ((torque_env, 6.0, 2.0), (held_torque_env, 3.0, 0.0)):
        act, sim = env.actuation, env.sim
        inertia = sim.joint_inertia()[act.coordinates]
        kp = (2 * np.pi * hz) ** 2 * inertia + load * sim.gravity_stiffness()[act.coordinates]
        np.testing.assert_allclose(act.kp, kp, rtol=1e-12)
        np.testing.assert_allclose(act.kd, 2 * np.sqrt(kp * inertia), rtol=1e-12)
    ankle = torque_env.sim.actuator_names.index("ankle_angle_r")
    assert torque_env.actuation.kp[ankle] > 1000 > 10 > held_torque_env.actuation.kp[ankle]


@pytest.mark.parametrize("task", ["TorqueWalkingImitation2D-v0", "TorqueWalkingImitation3D-v0",
                                  "TorqueLockedKneeImitation2D-v0",
                                  # ~26 s: the running model's steps are slow
                                  pytest.param("TorqueRunningImitation2D-v0",
                                               marks=pytest.mark.slow)])
def test_reference_as_target_tracks_a_full_cycle(task):
    """The default PD with the reference as its target (residual mode, zero action)
    follows the reference for a gait cycle and a half without falling: the actuation
    can carry the body, so a policy learns corrections, not balance from scratch.
    Walking tracks within 6 deg RMS; running, with its flight phases, only has to stay
    up (17 deg RMS over 6 s). The held PD of the original package
    falls within five cycles (after 1.65 s on walking2d, 3.9 s on walking3d)."""
    env = ImitationEnv(task, mode="test", pd_targets="residual")
    env.reset(seed=0)
    cycle = env.reference.n_frames
    errors = []
    for _ in range(int(1.5 * cycle)):
        _, _, terminated, truncated, info = env.step(np.zeros(env.n_actions, np.float32))
        assert not (terminated or truncated), (task, len(errors), info)
        q_ref, _ = env.reference.coordinates_at(env._start + env._step)
        j = env._imitate_coords
        errors.append(env.sim.buf[env.sim.layout.slice("q")][j] - q_ref[j])
    rms = np.degrees(np.sqrt(np.mean(np.square(errors))))
    if "Running" not in task:
        assert rms < 6.0, (task, rms)
    held = ImitationEnv(task, mode="test", pd_targets="residual", pd_update="step")
    held.reset(seed=0)
    zero = np.zeros(env.n_actions, np.float32)
    fell = any(any(held.step(zero)[2:4]) for _ in range(5 * cycle))   # stops at the fall
    assert fell, (task, "the held PD stayed up for five cycles")
    env.close()
    held.close()


def test_pd_gain_options(torque_env):
    sim, spec = torque_env.sim, TASKS[TORQUE]
    n = sim.n_controls
    opts = {**torque_env.options, "kp": 300.0, "kd": list(range(n)), "max_actuation": 150.0}
    act = PDActuation(sim, spec, opts)
    np.testing.assert_array_equal(act.kp, np.full(n, 300.0))
    np.testing.assert_array_equal(act.kd, np.arange(n, dtype=float))
    assert act.max_actuation == 150.0
    for bad in ([1.0, 2.0], -1.0, np.nan):
        with pytest.raises(ValueError, match=f"kp must be a non-negative scalar or {n} values"):
            PDActuation(sim, spec, {**opts, "kp": bad})


def test_muscle_actuation_needs_an_all_muscle_model(torque_env):
    with pytest.raises(ValueError, match="needs a model whose actuators are all muscles"):
        MuscleActuation(torque_env.sim, TASKS[MUSCLE], torque_env.options)


@pytest.mark.parametrize("task", [TORQUE, "TorqueLockedKneeImitation3D-v0"])
def test_residual_targets_centre_on_the_reference(task):
    """pd_targets="residual": a zero action asks for the reference's angle at the end of
    the step, ±1 for that angle ± residual_range, on every actuated coordinate."""
    env = ImitationEnv(task, mode="test", pd_targets="residual", residual_range=0.3,
                       horizon=1)
    act = env.actuation
    env.reset(seed=0)
    for k, a in enumerate((0.0, 1.0, -1.0, 0.5)):
        q_next, _ = env.reference.coordinates_at(k + 1)
        env.step(np.full(env.n_actions, a, np.float32))
        np.testing.assert_allclose(act.target[0], q_next[act.coordinates] + 0.3 * a,
                                   rtol=0, atol=1e-12)
    range_env = ImitationEnv(task, mode="test", horizon=1)
    range_env.reset(seed=0)
    range_env.step(np.zeros(env.n_actions, np.float32))
    ra = range_env.actuation
    np.testing.assert_allclose(ra.target[0], 0.5 * (ra.lower + ra.upper), atol=1e-12)
    with pytest.raises(ValueError, match="pd_targets must be 'range' or 'residual'"):
        ImitationEnv(task, pd_targets="relative")
    with pytest.raises(ValueError, match="residual_range must be"):
        ImitationEnv(task, pd_targets="residual", residual_range=0)


def test_pd_update_and_bandwidth_options_are_checked():
    with pytest.raises(ValueError, match="pd_update must be 'continuous' or 'step', got 'held'"):
        ImitationEnv(TORQUE, pd_update="held")
    with pytest.raises(ValueError, match="pd_bandwidth must be a frequency in Hz > 0"):
        ImitationEnv(TORQUE, pd_bandwidth=0)
    # the bandwidth only sets the default kp (kd follows kp): with kp given it would
    # change nothing, so it is refused rather than ignored
    with pytest.raises(ValueError, match=r"pd_bandwidth=50.0: applies with kp=None, not 300"):
        ImitationEnv(TORQUE, kp=300.0, pd_bandwidth=50.0)


@pytest.mark.parametrize("option, value, message", [
    ("physics", ["fast"], r"^physics must be one of .*, got \['fast'\]"),
    ("mode", np.array(["train", "test"]), r"^mode must be one of .*, got array"),
    ("integrator", ["RK"], r"^unknown integrator \['RK'\]; expected one of"),
    ("reference", ["walking2d"], r"^reference must be a shipped reference's name"),
    ("muscle_model", np.array(["thelen"]), r"^muscle_model must be one of"),
    ("reference_options", np.zeros(2), r"^reference_options must be a dict")])
def test_options_of_the_wrong_type_are_named(option, value, message):
    """A list or an array where a name is expected is a one-line ValueError naming the
    option (it was a TypeError, unhashable, or NumPy's ambiguous truth value)."""
    with pytest.raises(ValueError, match=message):
        ImitationEnv(TORQUE if option != "muscle_model" else "MuscleWalkingImitation2D-v0",
                     **{option: value})


# ---------------------------------------------------------------- residual excitations
@pytest.fixture(scope="module")
def residual_muscle_env():
    e = ImitationEnv(MUSCLE, mode="test", excitations="residual", episode_seconds=1.0)
    yield e
    e.close()


def test_residual_excitations_correct_the_reference_feedforward(residual_muscle_env):
    env = residual_muscle_env
    act = env.actuation
    assert (act.action_space.low == -1.0).all() and (act.action_space.high == 1.0).all()
    ref = env.reference
    cols = [ref.muscle_names.index(m) for m in env.sim.muscle_names]
    frame = ref.n_frames + 7                    # the loop wraps: frame 7's excitations
    feedforward = ref.excitation[7, cols]
    zero = np.zeros((1, env.n_actions))
    np.testing.assert_allclose(act.controls(zero, None, frame), feedforward)
    assert act.effort_record()["excitation_clipped"] == 0
    push = np.full((1, env.n_actions), 1.0)
    expected = np.clip(feedforward + 0.2, 0.0, 1.0)
    np.testing.assert_allclose(act.controls(push, None, frame), expected)
    assert act.effort_record()["excitation_clipped"] == int((feedforward + 0.2 > 1.0).sum())
    pull = np.full((1, env.n_actions), -1.0)
    np.testing.assert_allclose(act.controls(pull, None, frame), np.clip(feedforward - 0.2, 0, 1))
    assert act.effort_record()["excitation_clipped"] == int((feedforward < 0.2).sum()) > 0


def test_residual_excitations_start_from_the_feedforward_activations(residual_muscle_env):
    """The start state's muscles are active as in the solution the feed-forward is
    from (settled 2 ms under that excitation), not at the model's default 0.05: on the
    current walking2d, from the default a zero action left the imitated joints 22 deg RMS
    from the reference within 0.3 s, from the feed-forward's activations 13 deg (the
    feed-forward was solved on Moco's muscle and contact models, not the env's)."""
    env = residual_muscle_env
    env.reset(seed=0)
    act = env.sim.buf[env.sim.layout.slice("activation")]
    np.testing.assert_allclose(act, env.actuation.start_excitation(0), atol=0.02)
    errors = []
    for _ in range(30):
        env.step(np.zeros(env.n_actions, np.float32))
        q_ref, _ = env.reference.coordinates_at(env._start + env._step)
        errors.append(env.sim.buf[env.sim.layout.slice("q")][env._imitate_coords]
                      - q_ref[env._imitate_coords])
    assert np.degrees(np.sqrt(np.mean(np.square(errors)))) < 15.0


def _reference_without_excitations(tmp_path) -> str:
    """jumping3d's motion saved without its excitations, as a kinematic reference of a
    user's would be."""
    from fastenv.references import load_reference
    ref = load_reference("jumping3d")
    ref.excitation = ref.muscle_names = None
    ref.name = "kinematic_jump"
    return str(ref.save(tmp_path / "kinematic_jump.npz"))


def test_residual_excitations_are_refused_where_they_cannot_apply(tmp_path):
    with pytest.raises(ValueError, match="excitations='residual' applies to muscle tasks"):
        ImitationEnv(TORQUE, excitations="residual")
    with pytest.raises(ValueError, match="excitations must be 'direct', 'residual' or 'reflex', "
                                         "got 'ff'"):
        ImitationEnv(MUSCLE, excitations="ff")
    with pytest.raises(ValueError, match="excitation_range must be an excitation within"):
        ImitationEnv(MUSCLE, excitations="residual", excitation_range=1.5)
    # a reference without excitations (a kinematic one, or a user's motion file)
    with pytest.raises(ValueError, match="reference 'kinematic_jump' has none"):
        ImitationEnv("MuscleJumpingImitation3D-v0", excitations="residual",
                     reference=_reference_without_excitations(tmp_path))


# ---------------------------------------------------------------- reflex excitations
MOCO_FAMILY = dict(muscle_model="degroote", contact_model="smooth")


def _zero_action_episode(env, seed=0, steps=1000):
    """Seconds up and mean joint RMSE (deg) under a zero action."""
    env.reset(seed=seed)
    rmse = []
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(np.zeros(env.n_actions, np.float32))
        rmse.append(np.degrees(np.sqrt(info["joint_mse"])))
        if terminated or truncated:
            break
    return len(rmse) * env.sim.control_dt, float(np.mean(rmse))


def test_reflexes_track_the_reference_closed_loop():
    """A zero action plays the feed-forward with the reflexes: on the model walking2d was
    solved on it walks 2.6 s at 10 deg RMS from the reference, where the feed-forward
    alone falls after 1.3 s at 31 deg (both from frame 0)."""
    up, rmse = {}, {}
    for mode in ("residual", "reflex"):
        env = ImitationEnv(MUSCLE, mode="test", excitations=mode, episode_seconds=6,
                           **MOCO_FAMILY)
        up[mode], rmse[mode] = _zero_action_episode(env)
        env.close()
    assert up["residual"] < 1.5 and rmse["residual"] > 20, (up, rmse)
    assert up["reflex"] > 2.0 and rmse["reflex"] < 12, (up, rmse)


def test_the_locked_knee_walk_has_its_predicted_excitations():
    """lockedknee2d ships the excitations of its predictive Moco solution, one per muscle
    of the locked-knee model (15: the locked leg's gastrocnemius, soleus and tibialis
    anterior removed): it starts activated as that solution, and the reflexes keep a zero
    action up 1.72 s from frame 0, where the feed-forward alone falls after 0.87 s."""
    up, rmse = {}, {}
    for mode in ("residual", "reflex"):
        env = ImitationEnv("MuscleLockedKneeImitation2D-v0", mode="test", excitations=mode,
                           episode_seconds=6, **MOCO_FAMILY)
        assert env.n_actions == 15 and env.reference.excitation.shape == (107, 15)
        env.reset(seed=0)
        act = env.sim.buf[env.sim.layout.slice("activation")]
        np.testing.assert_allclose(act, env.actuation.start_excitation(0), atol=0.02)
        up[mode], rmse[mode] = _zero_action_episode(env)
        env.close()
    assert up["residual"] < 1.2 and up["reflex"] > 1.4, (up, rmse)
    assert rmse["reflex"] < rmse["residual"], (up, rmse)


def test_reflex_feedback_is_the_documented_law():
    """Every term against its own computation from OpenSim calls on the env's state."""
    gains = (20.0, 5.0, 6.0, 0.3)
    env = ImitationEnv(MUSCLE, mode="test", excitations="reflex", reflex_gains=gains,
                       **MOCO_FAMILY)
    env.reset(seed=0)
    for _ in range(7):       # a few steps in: the state has left the reference
        env.step(np.full(env.n_actions, 0.3, np.float32))
    sim, ref, act = env.sim, env.reference, env.actuation
    frame = env._start + env._step
    state, muscles = sim.state, sim.muscles
    sim.model.realizeVelocity(state)
    at_ref = sim.state_from_coordinates(ref.q[frame], ref.qdot[frame],
                                        activation=act.feedforward[frame])
    sim.model.realizeVelocity(at_ref)
    lopt = np.array([m.getOptimalFiberLength() for m in muscles])
    vmax = lopt * np.array([m.getMaxContractionVelocity() for m in muscles])
    length = np.array([m.getFiberLength(state) - m.getFiberLength(at_ref) for m in muscles])
    speed = np.array([m.getFiberVelocity(state) - m.getFiberVelocity(at_ref) for m in muscles])
    tilt = sim.coordinate_names.index("pelvis_tilt")
    tilt_error = (state.getQ().get(tilt) - ref.q[frame][tilt]
                  + 0.3 * (state.getU().get(tilt) - ref.qdot[frame][tilt]))
    loads = sim.contact_loads(state)[:, 1]
    share = np.maximum(loads, 0) / np.maximum(loads, 0).sum()
    hip = {side: sim.model.getCoordinateSet().get(f"hip_flexion{side}") for side in ("_r", "_l")}
    start = sim.state_from_coordinates(ref.q[0], ref.qdot[0], equilibrate=False)
    expected = []
    for i, m in enumerate(muscles):
        side = m.getName()[-2:]
        arm = m.getGeometryPath().computeMomentArm(start, hip[side])
        trunk = share[0 if side == "_r" else 1] * np.sign(arm) * (abs(arm) > 0.005)
        expected.append(20.0 * length[i] / lopt[i] + 5.0 * speed[i] / vmax[i]
                        + 6.0 * trunk * tilt_error)
    assert share.min() >= 0 and loads.max() > 0
    np.testing.assert_allclose(act.reflex.feedback(frame), expected,
                               rtol=1e-6, atol=1e-9)
    # and the excitations sent: feed-forward of the step's end + action + feedback
    zero = np.zeros((1, env.n_actions))
    u = act.controls(zero, None, frame + 1)
    np.testing.assert_allclose(u, np.clip(act.feedforward[ref.index(frame + 1)[0]]
                                          + np.array(expected), 0.0, 1.0), atol=1e-9)
    env.close()


def test_frontal_plane_reflexes_are_the_documented_law():
    """The 6-gain form adds, on a 3D model, the stance hip's answer to the pelvis's list
    and the swing hip's foot placement against the centre of mass's lateral drift; the
    difference to the 4-gain form is those two terms, from OpenSim's moment arms."""
    task = "MuscleWalkingImitation3D-v0"
    base, frontal = (2.5, 1.0, 1.5, 0.3), (2.5, 1.0, 1.5, 0.3, 1.5, 1.0)
    envs = {g: ImitationEnv(task, mode="test", excitations="reflex", reflex_gains=g,
                            **MOCO_FAMILY) for g in (base, frontal)}
    env = envs[frontal]
    env.reset(seed=0)
    for _ in range(10):   # far enough from the reference for both terms to act
        env.step(np.full(env.n_actions, 0.2, np.float32))
    sim, ref = env.sim, env.reference
    frame = env._start + env._step
    other = envs[base]   # the same state in the 4-gain env's buffer
    other.sim.buf[:] = sim.buf
    got = env.actuation.reflex.feedback(frame) - other.actuation.reflex.feedback(frame)
    names = sim.coordinate_names
    j = names.index("pelvis_list")
    q, qd = sim.buf[sim.layout.slice("q")], sim.buf[sim.layout.slice("qdot")]
    list_error = q[j] - ref.q[frame, j] + 0.3 * (qd[j] - ref.qdot[frame, j])
    drift = sim.buf[sim.layout.slice("com_vel")][2] - ref.com_velocity_at(frame)[2]
    loads = np.maximum(sim.buf[sim.layout.slice("grf")].reshape(-1, 6)[:, 1], 0.0)
    share = loads / loads.sum()
    start = sim.state_from_coordinates(ref.q[0], ref.qdot[0], equilibrate=False)
    coords = sim.model.getCoordinateSet()
    expected = []
    for m in sim.muscles:
        side = m.getName()[-2:]
        arm = m.getGeometryPath().computeMomentArm(start, coords.get(f"hip_adduction{side}"))
        sign = (1 if side == "_r" else -1) * np.sign(arm) * (abs(arm) > 0.005)
        w = share[0 if side == "_r" else 1]
        expected.append(sign * (1.5 * list_error * w - 1.0 * drift * (1 - w)))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert np.abs(expected).max() > 1e-3   # the terms act in this state
    abd = sim.muscle_names.index("abd_r")
    assert np.sign(expected[abd]) != 0
    for e in envs.values():
        e.close()
    # a 2D model has no frontal plane: gains for it would be ignored, so they are refused
    # (zeros are what the 4-gain form means and pass)
    with pytest.raises(ValueError, match="k_list and k_step act in the frontal plane"):
        ImitationEnv(MUSCLE, mode="test", excitations="reflex", reflex_gains=frontal)
    ImitationEnv(MUSCLE, mode="test", excitations="reflex",
                 reflex_gains=(*base, 0.0, 0.0)).close()


def test_reflex_without_gains_is_the_residual_excitations():
    runs = []
    for mode, extra in (("residual", {}), ("reflex", {"reflex_gains": [0, 0, 0, 0]})):
        env = ImitationEnv(MUSCLE, mode="test", excitations=mode, **extra)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        obs = [env.step(rng.uniform(-1, 1, env.n_actions).astype(np.float32))[0]
               for _ in range(10)]
        runs.append(np.array(obs))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_reflex_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"reflex_gains must be 6 numbers >= 0 \(k_length, "
                                         r"k_velocity, k_trunk, trunk_rate_s, k_list, k_step; "
                                         r"or the first 4, .*got \[1, 2\]"):
        ImitationEnv(MUSCLE, excitations="reflex", reflex_gains=[1, 2])
    with pytest.raises(ValueError, match="reflex_gains must be 6 numbers"):
        ImitationEnv(MUSCLE, excitations="reflex", reflex_gains=[1, 2, -3, 0])
    with pytest.raises(ValueError, match="excitations='reflex' applies to muscle tasks"):
        ImitationEnv(TORQUE, excitations="reflex")
    with pytest.raises(ValueError, match="reference 'kinematic_jump' has none"):
        ImitationEnv("MuscleJumpingImitation3D-v0", excitations="reflex",
                     reference=_reference_without_excitations(tmp_path))


def test_reflexes_in_the_vector_env_equal_single_envs():
    """Two envs of one worker share one model; each env's reflex reads its own state."""
    from fastenv.vector import OsimVectorEnv
    options = dict(excitations="reflex", **MOCO_FAMILY)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (15, 2, 18)).astype(np.float32)
    venv = OsimVectorEnv(MUSCLE, 2, num_workers=1, **options)
    try:
        obs, _ = venv.reset(seed=3)
        vector = [obs] + [venv.step(a)[0] for a in actions]
    finally:
        venv.close()
    for i in range(2):
        env = ImitationEnv(MUSCLE, **options)
        single = [env.reset(seed=3 + i)[0]] + [env.step(a[i])[0] for a in actions]
        env.close()
        np.testing.assert_array_equal(np.array(vector)[:, i], np.array(single))


@pytest.mark.parametrize("task, legs", [("TorqueWalkingImitation2D-v0", 6),
                                        ("TorqueLockedKneeImitation3D-v0", 6)])
def test_pelvis_residuals_off_leaves_the_legs_alone(task, legs):
    """pelvis_residuals=False: no actuator on the pelvis rotations (the residual moments
    from the ground), the legs' only; evaluation reports the pelvis moments otherwise."""
    from fastenv.evaluate import run_episode
    with_pelvis = ImitationEnv(task, pd_targets="residual", mode="test", log=True,
                               episode_seconds=0.1)
    legs_only = ImitationEnv(task, pelvis_residuals=False)
    try:
        pelvis = [a for a in with_pelvis.sim.actuator_names if a.startswith("pelvis_")]
        assert pelvis and legs_only.sim.actuator_names == [
            a for a in with_pelvis.sim.actuator_names if a not in pelvis]
        assert legs_only.action_space.shape == (legs,)
        legs_only.reset(seed=0)
        legs_only.step(np.zeros(legs, np.float32))
        zero = np.zeros(with_pelvis.action_space.shape, np.float32)
        ep = run_episode(with_pelvis, lambda obs: zero, seed=0)
        k = [with_pelvis.sim.actuator_names.index(a) for a in pelvis]
        norms = [np.linalg.norm(r["torque"][k]) for r in ep["records"][1:]]
        assert ep["pelvis_moment_nm"] == pytest.approx(np.mean(norms))
        assert ep["pelvis_moment_nm"] > 1
    finally:
        with_pelvis.close()
        legs_only.close()


def test_pelvis_residuals_is_a_torque_option():
    with pytest.raises(ValueError, match="pelvis_residuals"):
        ImitationEnv("MuscleWalkingImitation2D-v0", pelvis_residuals=False)
    with pytest.raises(ValueError, match="pelvis_residuals"):
        ImitationEnv("TorqueWalkingImitation2D-v0", pelvis_residuals="no")
    # a model of your own is used as it is: the option would be ignored
    with pytest.raises(ValueError, match=r"pelvis_residuals=False: applies with model=None"):
        ImitationEnv("TorqueWalkingImitation2D-v0", pelvis_residuals=False, model="own.osim")
