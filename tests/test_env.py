"""The single envs: Gymnasium API, options, episodes, bad input."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import fastenv  # noqa: F401  (registers the tasks)
from fastenv.env import ImitationEnv
from fastenv.envs import TASKS as ENV_TASKS
from fastenv.envs import applicable_options, resolve_options

TASKS = ["MuscleWalkingImitation2D-v0", "TorqueWalkingImitation2D-v0"]


@pytest.fixture(scope="module", params=TASKS)
def env(request):
    e = ImitationEnv(request.param)
    yield e
    e.close()


@pytest.mark.parametrize("task", TASKS)
def test_make_and_check_env(task):
    e = gym.make(task)
    check_env(e.unwrapped, skip_render_check=True)
    assert isinstance(e.unwrapped, ImitationEnv)
    e.close()


def test_observation_layout_is_named(env):
    names = env.observation_names
    assert len(names) == env.observation_space.shape[0] == len(set(names))
    assert names[0] == "phase"
    assert "q/pelvis_tx" not in names and "q/pelvis_ty" not in names
    assert "q/knee_angle_r" in names and "target_q/knee_angle_r" in names
    assert "body_pos_rel_pelvis/torso.y" in names and "body_pos_rel_pelvis/torso.z" not in names
    if env.spec_task.actuation == "muscle":
        assert "activation/vasti_r" in names and "norm_fiber_velocity/soleus_l" in names


def test_observation_values_match_simulation(env):
    obs, _ = env.reset(seed=3)
    obs, *_ = env.step(env.action_space.sample())
    sim, L = env.sim, env.sim.layout
    names = env.observation_names
    b = sim.buf
    knee = sim.coordinate_names.index("knee_angle_r")
    assert obs[names.index("q/knee_angle_r")] == np.float32(b[L.slice("q")][knee])
    torso, pelvis = sim.body_names.index("torso"), sim.body_names.index("pelvis")
    bp = b[L.slice("body_pos")].reshape(-1, 3)
    assert obs[names.index("body_pos_rel_pelvis/torso.y")] == np.float32(
        bp[torso, 1] - bp[pelvis, 1]
    )
    grf = b[L.slice("grf")].reshape(-1, 6)
    assert obs[names.index(f"grf/{sim.contact_names[0]}.Fy")] == np.float32(
        grf[0, 1] / sim.body_weight
    )
    q_next, _ = env.reference.coordinates_at(env._start + env._step + 1)
    assert obs[names.index("target_q/knee_angle_r")] == np.float32(q_next[knee])


def test_reward_terms_in_info(env):
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    for k in ("total", "imitation", "effort", "smoothness", "phase", "effort_cost"):
        assert k in info
    assert reward == info["total"]
    assert reward == pytest.approx(
        info["imitation"] + 0.2 * info["effort"] + 0.1 * info["smoothness"]
    )
    assert 0 < info["imitation"] <= 1.3


def test_reference_state_initialisation_is_on_the_ground(env):
    """The reference state (``start_settle=0``; torque tasks' default) stands on the
    ground with about body weight, at exactly the start frame's pose, at time 0."""
    e = env if env.options["start_settle"] == 0 else ImitationEnv(env.spec_task.id,
                                                                   start_settle=0)
    e.reset(seed=0, options={"start_frame": 0})
    sim = e.sim
    vgrf = sim.buf[sim.layout.slice("grf")].reshape(-1, 6)[:, 1].sum() / sim.body_weight
    assert 0.5 < vgrf < 1.5
    q0, _ = e.reference.coordinates_at(0)
    np.testing.assert_allclose(sim.buf[sim.layout.slice("q")], q0, atol=1e-9)
    assert sim.state.getTime() == 0.0


def test_settled_start_states():
    """Muscle tasks start settled (``start_settle``, 2 ms): the first milliseconds'
    accelerations of thousands of rad/s² (muscle and contact forces the reference's
    speeds do not balance) are behind the start state, which stays within 0.5° of the
    reference; ``start_settle=0`` is the reference state itself. Built once per frame,
    deterministic, and reused."""
    settled = ImitationEnv("MuscleWalkingImitation2D-v0")
    raw = ImitationEnv("MuscleWalkingImitation2D-v0", start_settle=0)
    assert settled.options["start_settle"] == 0.002
    sim = settled.sim
    L = sim.layout
    peaks = []
    for frame in (0, 12, 30):
        settled.reset(seed=0, options={"start_frame": frame})
        raw.reset(seed=0, options={"start_frame": frame})
        q_ref, qd_ref = raw.reference.coordinates_at(frame)
        np.testing.assert_allclose(raw.sim.buf[L.slice("q")], q_ref, atol=1e-12)
        np.testing.assert_allclose(raw.sim.buf[L.slice("qdot")], qd_ref, atol=1e-12)
        dq = np.abs(sim.buf[L.slice("q")] - q_ref)
        assert dq[sim.rotational].max() < np.radians(0.5) and dq[~sim.rotational].max() < 1e-3
        assert sim.buf[L.slice("grf")].reshape(-1, 6)[:, 1].sum() > 0.1 * sim.body_weight
        assert 0.0 < np.abs(sim.buf[L.slice("qdot")] - qd_ref).max() < 10.0
        # the reference state's transient (thousands of rad/s^2) is damped, never raised
        peaks.append((np.abs(raw.sim.buf[L.slice("qddot")]).max(),
                      np.abs(sim.buf[L.slice("qddot")]).max()))
        assert peaks[-1][1] <= peaks[-1][0]
        first = settled._snapshots[frame]
        obs, _ = settled.reset(options={"start_frame": frame})
        assert settled._snapshots[frame] is first
        assert sim.state.getTime() == 0.0
    raw_peak, settled_peak = np.max(peaks, axis=0)
    assert raw_peak > 5000 and settled_peak < 0.5 * raw_peak, peaks
    again = ImitationEnv("MuscleWalkingImitation2D-v0")
    again.reset(seed=0, options={"start_frame": 30})
    np.testing.assert_array_equal(again._snapshots[30].y, settled._snapshots[30].y)
    torque = ImitationEnv("TorqueWalkingImitation2D-v0")
    assert torque.options["start_settle"] == 0.0
    half_cycle = torque.reference.cycle_steps // 2   # train episodes start in it
    assert torque.build_start_states() == len(torque._snapshots) == half_cycle
    for bad in (-0.001, 0.5, "2ms", True):
        with pytest.raises(ValueError, match="start_settle"):
            ImitationEnv("MuscleWalkingImitation2D-v0", start_settle=bad)
    for e in (settled, raw, again, torque):
        e.close()


def test_same_seed_same_rollout(env):
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=42)
        env.action_space.seed(7)
        traj = [obs]
        for _ in range(20):
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            traj.append(obs)
            if term or trunc:
                break
        runs.append(np.array(traj))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_test_mode_starts_at_frame_zero():
    e = ImitationEnv(TASKS[1], mode="test")
    for seed in range(3):
        _, info = e.reset(seed=seed)
        assert info["frame"] == 0
    assert e.episode_steps == 2 * e.reference.cycle_steps


@pytest.mark.parametrize("task", TASKS)
def test_random_steps_with_autoreset(task):
    """400 random steps: several falls and resets (random actions fall in well under
    a second); the soak test in bench/soak.py runs for hours."""
    e = gym.make(task)
    e.reset(seed=0)
    e.action_space.seed(0)
    episodes = 0
    for _ in range(400):
        obs, r, term, trunc, info = e.step(e.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(r)
        assert "sim_error" not in info
        if term or trunc:
            episodes += 1
            e.reset()
    assert episodes >= 1
    e.close()


def test_config_dict_and_keywords():
    e = ImitationEnv(TASKS[1], config={"mode": "test", "r_weights": [1.0, 0.0, 0.0]}, horizon=1)
    assert e.mode == "test" and e.r_weights == (1.0, 0.0, 0.0)
    e.reset(seed=0)
    _, r, *_, info = e.step(e.action_space.sample())
    assert r == pytest.approx(info["imitation"])
    no_target = ImitationEnv(TASKS[1], use_target_obs=False, use_GRF=False)
    assert not any(n.startswith(("target_", "grf/")) for n in no_target.observation_names)


def test_bad_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['speed'\]; valid options"):
        ImitationEnv(TASKS[0], speed=2)
    with pytest.raises(ValueError, match=r"treadmill_speed'\]; .* go in reference_options"):
        ImitationEnv(TASKS[0], treadmill_speed=1.2)
    env = ImitationEnv(TASKS[0])
    for frame in (2.5, -5, 10**6, True):   # 2.5 was truncated to frame 2 without a word
        with pytest.raises(ValueError, match=rf"start_frame must be an int in \[0, "
                                             rf"{env.reference.n_frames}\), got {frame}"):
            env.reset(options={"start_frame": frame})
    env.reset(options={"start_frame": np.int64(3)})
    env.close()
    with pytest.raises(ValueError, match="mode must be one of"):
        ImitationEnv(TASKS[0], mode="eval")
    with pytest.raises(ValueError, match="unknown task 'FlyingImitation2D-v0'"):
        ImitationEnv("FlyingImitation2D-v0")
    with pytest.raises(ValueError, match="kp must be"):
        ImitationEnv(TASKS[1], kp=[1.0, 2.0])
    # refused before any model loads; "no" and "yes" are both truthy, and were read so
    for options, match in ((dict(use_GRF="no"), "use_GRF must be True or False, got 'no'"),
                           (dict(apply_perturbations="yes"), "apply_perturbations must be"),
                           (dict(align_ground=None), "align_ground must be True or False"),
                           (dict(log=2), "log must be True or False, got 2"),
                           (dict(horizon=True), r"horizon must be an int in \[1, 100\] "
                                                r"\(control steps of actions averaged\), "
                                                r"got True"),
                           (dict(horizon=10**6), r"horizon must be an int in \[1, 100\]"),
                           (dict(observe_previous_actions=True, horizon=1),
                            "observes the horizon - 1 actions before this step, none with "
                            "horizon=1"),
                           (dict(max_actuation="200"), "max_actuation must be > 0"),
                           (dict(r_weights=["a", 0, 0]), "r_weights must be")):
        with pytest.raises(ValueError, match=match):
            resolve_options(**options)
    assert resolve_options(use_GRF=0, log=np.True_)["use_GRF"] == 0


@pytest.mark.parametrize("options, match", [
    (dict(kp="abc"), "kp must be a gain >= 0 .* got 'abc'"),
    (dict(kd=["x"]), r"kd must be a gain >= 0 .* got \['x'\]"),
    (dict(accuracy="abc"), "accuracy must be the integrator's relative accuracy .* got 'abc'"),
    (dict(accuracy=2.0), "accuracy must be .* within \\(0, 1\\)"),
    (dict(episode_seconds=float("inf")), "episode_seconds must be .* got inf"),
    (dict(episode_seconds=True), "episode_seconds must be .* got True"),
    (dict(start_noise=True), "start_noise must be"),
    (dict(config="x"), "config must be a dict .* got str 'x'"),
    (dict(model=5), "model must be the path of an .osim file, got 5"),
    (dict(reflex_gains=[1, 1, 1, 1]), r"reflex_gains=\[1, 1, 1, 1\]: applies to muscle tasks; "
                                      "TorqueWalkingImitation2D-v0 is torque-driven"),
    (dict(excitation_range=0.5), "excitation_range=0.5: applies to muscle tasks"),
])
def test_bad_option_values_are_named(options, match):
    """Wrong types and values, and options the task would ignore, are one-line errors
    naming the option and what it takes (they were a TypeError from a comparison, a
    float() message without the option's name, an OverflowError, or silently ignored)."""
    config = options.pop("config", None)
    with pytest.raises(ValueError, match=match) as err:
        resolve_options(config, task=ENV_TASKS["TorqueWalkingImitation2D-v0"], **options)
    assert "\n" not in str(err.value)


def test_options_of_the_other_actuation_are_refused():
    muscle = ENV_TASKS["MuscleWalkingImitation2D-v0"]
    with pytest.raises(ValueError, match=r"pd_targets='residual', residual_range=0.2: apply "
                                         "to torque tasks; MuscleWalkingImitation2D-v0 is "
                                         "muscle-driven and would ignore them"):
        resolve_options(task=muscle, pd_targets="residual", residual_range=0.2)
    for key, value in (("kp", 10.0), ("kd", 1.0), ("pd_bandwidth", 3.0), ("pd_update", "step")):
        with pytest.raises(ValueError, match=f"{key}=.*applies to torque tasks"):
            resolve_options(task=muscle, **{key: value})
    # at their defaults they change nothing and pass; so does the original config's
    # max_actuation, one of its nine keys, which it passed to every env
    resolve_options(task=muscle, pd_targets="range", residual_range=0.5, max_actuation=100)
    resolve_options(task=ENV_TASKS["TorqueWalkingImitation2D-v0"],
                    reflex_gains=[2.5, 1, 1.5, 0.3], excitation_range=0.2)
    # a training config's table for every task keeps what the task reads
    table = dict(reward="tracking", pd_targets="residual", residual_range=0.2)
    assert applicable_options(muscle, table) == dict(reward="tracking")
    assert applicable_options(ENV_TASKS["TorqueWalkingImitation2D-v0"], table) == table


def test_options_whose_switch_is_off_are_refused():
    """residual_range without residual PD targets, excitation_range and reflex_gains
    without the excitations that read them, frontal reflex gains on a planar model: each
    would change nothing, so each is refused; a config for every task leaves them out."""
    torque, muscle = (ENV_TASKS[f"{k}WalkingImitation2D-v0"] for k in ("Torque", "Muscle"))
    with pytest.raises(ValueError, match=r"^residual_range=0.2: applies with "
                                         r"pd_targets='residual', not 'range'; "
                                         r"TorqueWalkingImitation2D-v0 would ignore it$"):
        resolve_options(task=torque, residual_range=0.2)
    resolve_options(task=torque, residual_range=0.2, pd_targets="residual")
    with pytest.raises(ValueError, match=r"excitation_range=0.3: applies with excitations in "
                                         r"\['residual', 'reflex'\], not 'direct'"):
        resolve_options(task=muscle, excitation_range=0.3)
    with pytest.raises(ValueError, match=r"reflex_gains=\[1, 1, 1, 1\]: applies with "
                                         r"excitations='reflex', not 'residual'"):
        resolve_options(task=muscle, excitations="residual", reflex_gains=[1, 1, 1, 1])
    resolve_options(task=muscle, excitations="residual", excitation_range=0.3)
    frontal = [2.5, 1, 1.5, 0.3, 2.0, 1]
    with pytest.raises(ValueError, match=r"k_list and k_step act in the frontal plane and "
                                         r"MuscleWalkingImitation2D-v0 is planar"):
        resolve_options(task=muscle, excitations="reflex", reflex_gains=frontal)
    resolve_options(task=muscle, excitations="reflex", reflex_gains=[*frontal[:4], 0, 0])
    resolve_options(task=ENV_TASKS["MuscleWalkingImitation3D-v0"], excitations="reflex",
                    reflex_gains=frontal)
    table = dict(excitations="reflex", reflex_gains=frontal, pd_targets="residual",
                 residual_range=0.2)
    assert applicable_options(muscle, table) == dict(excitations="reflex",
                                                     reflex_gains=frontal[:4])
    assert applicable_options(torque, dict(pd_targets="range", residual_range=0.2)) == dict(
        pd_targets="range")


def test_a_model_file_that_does_not_load_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"cannot load OpenSim model '.*nope.osim': no such "
                                         r"file \(expected the path of an .osim file\)"):
        ImitationEnv(TASKS[1], model=str(tmp_path / "nope.osim"))
    bad = tmp_path / "bad.osim"
    bad.write_text('<OpenSimDocument Version="40000"><Model name="x"><bad')
    with pytest.raises(ValueError, match="cannot load OpenSim model .*Failed to load the Xml "
                                         "file") as err:
        ImitationEnv(TASKS[1], model=str(bad))
    assert "\n" not in str(err.value) and "Thrown at" not in str(err.value)


def test_reference_options_take_a_motion_file_in_either_case():
    """A .MOT or .Sto file is a motion file to reference_options, as it is to the loader."""
    task = ENV_TASKS["MuscleWalkingImitation2D-v0"]
    for name in ("walk.MOT", "walk.Sto", "walk.mot"):
        resolve_options(task=task, reference=name, reference_options={"cycle": "auto"})
    with pytest.raises(ValueError, match=r"apply to a motion-file reference .* got "
                                         r"'walk.NPZ'"):
        resolve_options(task=task, reference="walk.NPZ", reference_options={"cycle": "auto"})


def test_step_before_reset_and_runtime_options():
    env = ImitationEnv(TASKS[1])
    with pytest.raises(gym.error.ResetNeeded, match=r"step\(\) called before reset\(\)"):
        env.step(np.zeros(env.action_space.shape, np.float32))
    env.set_option("mode", "test")
    env.set_option("start_noise", 0.05)
    assert env.mode == "test" and env.options["start_noise"] == 0.05
    env.set_option("episode_seconds", 1.0)
    assert env.episode_steps == 100
    with pytest.raises(ValueError, match="mode must be one of"):
        env.set_option("mode", "bogus")
    with pytest.raises(ValueError, match="option 'physics' is fixed when the env is built"):
        env.set_option("physics", "fast")
    with pytest.raises(ValueError, match="unknown option 'foo'; options that can change"):
        env.set_option("foo", 1)
    assert env.get_option("episode_seconds") == 1.0
    env.close()


def test_runtime_options_changed_mid_episode_apply_from_the_next_reset():
    """As set_option promises: an episode keeps the length and logging it started with."""
    env = ImitationEnv(TASKS[1], mode="test")
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, np.float32)
    for _ in range(10):
        env.step(zero)
    full = env.episode_steps
    env.set_option("episode_seconds", 0.05)   # 5 steps: already past it
    env.set_option("log", True)
    assert env.episode_steps == full
    assert not env.step(zero)[3] and env.episode_log == []
    env.reset(seed=0)
    assert env.episode_steps == 5 and len(env.episode_log) == 1   # the start state
    truncated = [env.step(zero)[3] for _ in range(5)]
    assert truncated == [False] * 4 + [True] and len(env.episode_log) == 6
    env.close()


def test_an_option_given_twice_differently_is_refused():
    """config= (the original package's dict) and a keyword naming the same option with
    another value: neither silently wins."""
    with pytest.raises(ValueError, match=r"option\(s\) \['mode'\] given twice with different "
                                         r"values"):
        ImitationEnv(TASKS[0], config={"mode": "test"}, mode="train")
    ImitationEnv(TASKS[0], config={"mode": "test"}, mode="test").close()


def test_bad_actions(env):
    env.reset(seed=0)
    n = env.action_space.shape[0]
    with pytest.raises(ValueError, match=rf"expected \({n},\)"):
        env.step(np.zeros(n + 1, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        env.step(np.array(["a"] * n))
    bad = np.zeros(n, np.float32)
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values at indices \[2\]"):
        env.step(bad)


def test_nan_actions_zero_option():
    e = ImitationEnv(TASKS[0], nan_actions="zero")
    e.reset(seed=0)
    a = np.full(e.action_space.shape, np.inf, np.float32)
    obs, r, term, trunc, info = e.step(a)
    assert info["nan_action"] and np.isfinite(obs).all()


def test_out_of_range_actions_are_clipped_and_counted():
    e = ImitationEnv(TASKS[0], nan_actions="zero")
    e.reset(seed=0)
    *_, info = e.step(np.full(e.action_space.shape, 5.0, np.float32))
    assert np.all(e.sim.buf[e.sim.layout.slice("excitation")] == 1.0)
    assert info["action_clipped"] == e.action_space.shape[0]
    a = np.full(e.action_space.shape, 0.5, np.float32)
    a[[1, 4]], a[2] = (-0.1, 1.2), np.nan      # the NaN is replaced, not clipped
    *_, info = e.step(a)
    assert info["action_clipped"] == 2 and info["nan_action"]
    *_, info = e.step(np.full(e.action_space.shape, 0.5, np.float32))
    assert info["action_clipped"] == 0


def test_perturbations_push_the_torso():
    e = ImitationEnv(TASKS[1], apply_perturbations=True)
    e.reset(seed=0)
    pushes = 0
    for _ in range(300):
        _, _, term, trunc, _ = e.step(e.action_space.sample())
        pushes += e._push_left == 20
        if term or trunc:
            e.reset()
    assert pushes >= 1


def test_perturbation_force_sets_the_pushes_range():
    """The same seeded pushes scale with perturbation_force (the task's 50 N by
    default); the option needs apply_perturbations, and a bad force is refused."""
    peaks = {}
    for force in (None, 150.0):
        e = ImitationEnv(TASKS[1], apply_perturbations=True, perturbation_force=force)
        e.reset(seed=0)
        pushes = []
        for _ in range(300):
            e.step(np.zeros(e.action_space.shape, np.float32))
            pushes.append(e.sim._push_value.copy())
        peaks[force] = np.abs(pushes).max()
        assert np.abs(pushes).max() <= (force or 50.0)
    assert peaks[None] > 0 and np.isclose(peaks[150.0], 3 * peaks[None])
    with pytest.raises(ValueError, match="perturbation_force.*apply_perturbations=True"):
        ImitationEnv(TASKS[1], perturbation_force=150.0)
    with pytest.raises(ValueError, match=r"perturbation_force must be a force in N.*-1"):
        ImitationEnv(TASKS[1], apply_perturbations=True, perturbation_force=-1)


def test_user_reference_file():
    from conftest import shared_motion

    path = shared_motion("gait10dof18musc_subject01_walk_ik.mot")
    e = ImitationEnv(TASKS[1], reference=str(path), mode="test")
    _, info = e.reset(seed=0)
    assert e.reference.playback == "once" and info["frame"] == 0
    vgrf = e.sim.buf[e.sim.layout.slice("grf")].reshape(-1, 6)[:, 1].sum() / e.sim.body_weight
    assert 0.5 < vgrf < 1.5


@pytest.mark.parametrize("num_envs", [1, 2])
def test_quick_start_command(num_envs, capsys):
    from fastenv.__main__ import main

    assert main(["rollout", "--steps", "20", "--num-envs", str(num_envs), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{num_envs} env(s)" in out and "steps/s" in out


def test_physics_presets():
    from fastenv.envs import PHYSICS, TASKS, resolve_options

    muscle, torque = TASKS["MuscleWalkingImitation2D-v0"], TASKS["TorqueWalkingImitation2D-v0"]
    for spec in (muscle, torque):
        d = resolve_options(task=spec)
        assert (d["integrator"], d["accuracy"]) == (spec.integrator, spec.accuracy)
        assert (spec.integrator, spec.accuracy, 0.0) == PHYSICS["default"][spec.actuation]
        assert d["min_step"] == 0.0
        f = resolve_options(task=spec, physics="fast")
        assert (f["integrator"], f["accuracy"], f["min_step"]) == PHYSICS["fast"][spec.actuation]
    # the Moco family's muscles have their own fast column (a shorter minimum step)
    f = resolve_options(task=muscle, physics="fast", muscle_model="degroote")
    assert (f["integrator"], f["accuracy"], f["min_step"]) == PHYSICS["fast"]["muscle_degroote"]
    assert PHYSICS["fast"]["muscle_degroote"][2] < PHYSICS["fast"]["muscle"][2]
    # explicit settings win over the preset
    o = resolve_options(task=muscle, physics="fast", accuracy=1e-4)
    assert (o["integrator"], o["accuracy"]) == ("SemiExplicitEuler2", 1e-4)
    with pytest.raises(ValueError, match="physics must be one of .*'turbo'"):
        resolve_options(physics="turbo")


@pytest.mark.parametrize("muscle_model", ["thelen", "degroote"])
def test_fast_physics_keeps_episodes_of_full_excitation(muscle_model):
    """physics="fast" must not end episodes that the default physics does not. Every
    muscle fully excited is the stiffest case: with the Thelen muscles' 1.5-ms minimum
    step (and still with 0.5 ms), the rigid-tendon DeGroote-Fregly muscles, whose
    force-velocity damping on the light feet is stiff, blew the ankles up to 10^4 rad/s²
    within 4-8 steps, ending episodes by the acceleration rule; both models fall after
    0.77 s with the default physics."""
    ends = {}
    for physics in ("default", "fast"):
        env = ImitationEnv("MuscleWalkingImitation2D-v0", physics=physics,
                           muscle_model=muscle_model, contact_model="smooth")
        env.reset(seed=1)
        causes, steps = [], 0
        while len(causes) < 2 and steps < 400:
            _, _, terminated, truncated, info = env.step(np.ones(env.n_actions, np.float32))
            steps += 1
            assert "sim_error" not in info
            if terminated or truncated:
                causes.append([k for k, v in env.termination_causes().items() if v])
                env.reset()
        env.close()
        ends[physics] = (steps, causes)
    assert all(c == ["fall"] for c in ends["fast"][1]), ends
    assert ends["fast"][0] > 0.8 * ends["default"][0], ends


@pytest.mark.parametrize("task", TASKS)
def test_tracking_reward_option(task):
    """reward="tracking": the same kernel inputs as the reward the env logs, its terms in
    info; the vector env carries the extra terms too."""
    from fastenv import kernels
    env = ImitationEnv(task, reward="tracking", mode="test", log=True)
    assert env.reward_terms == kernels.TRACKING_REWARD_TERMS
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        _, r, term, trunc, info = env.step(env.action_space.sample())
    assert set(kernels.TRACKING_REWARD_TERMS) <= set(info)
    assert r == info["total"] and 0 < info["pose"] <= 1 and 0 < info["com_velocity"] <= 1
    imitation = (0.5 + env.r_weights[0]) * (0.6 * info["pose"] + 0.2 * info["velocity"]
                                            + 0.2 * info["com_velocity"])
    assert info["imitation"] == pytest.approx(imitation)
    original = ImitationEnv(task)
    original.reset(seed=0)
    assert "pose" not in original.step(original.action_space.sample())[-1]
    venv = gym.make_vec(task, num_envs=2, vectorization_mode="vector_entry_point",
                        num_workers=1, reward="tracking")
    try:
        venv.reset(seed=0)
        info = venv.step(venv.action_space.sample())[-1]
        assert info["_pose"].all() and ((0 < info["pose"]) & (info["pose"] <= 1)).all()
    finally:
        venv.close()
    with pytest.raises(ValueError, match="reward must be 'original' or 'tracking'"):
        ImitationEnv(task, reward="deepmimic")


@pytest.mark.parametrize("task, options", [
    ("MuscleWalkingImitation2D-v0", {}),
    ("TorqueWalkingImitation2D-v0", {}),
    ("TorqueWalkingImitation2D-v0", {"pd_update": "step"})])
def test_reset_does_not_depend_on_how_the_last_episode_ended(task, options):
    """The actuation idles at reset: the start observation (accelerations included) and
    the first step are the same whatever the previous episode's last action was."""
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, **options)
    low, high = env.action_space.low, env.action_space.high
    runs = []
    for last in (low, high):
        env.reset(seed=3)
        env.step(last)
        obs, _ = env.reset(seed=3)
        runs.append((obs, env.step(np.zeros_like(low))[0]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    env.close()


def test_a_copied_or_pickled_env_continues_the_episode():
    """copy.deepcopy and pickle rebuild the env (an OpenSim model cannot be copied) from
    its task and options and continue the episode: the same options, spec, log and
    state, stepping as the original within integrator accuracy, independently of it."""
    import copy
    import pickle
    env = gym.make("TorqueWalkingImitation2D-v0", log=True, start_noise=0.01,
                   physics="fast")
    env.reset(seed=3)
    env.unwrapped.set_option("episode_seconds", 1.0)   # from the next reset: kept pending
    for _ in range(4):
        env.step(env.action_space.sample())
    copies = [copy.deepcopy(env), pickle.loads(pickle.dumps(env))]
    q = env.unwrapped.observation_blocks["q"]
    for c in copies:
        assert c.spec == env.spec and c.unwrapped.options == env.unwrapped.options
        assert len(c.unwrapped.episode_log) == len(env.unwrapped.episode_log) == 5
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 7)).astype(np.float32)
    for a in actions:
        obs = env.step(a)[0]
        for c in copies:
            assert np.allclose(c.step(a)[0][q], obs[q], atol=1e-6)
    assert all(len(c.unwrapped.episode_log) == 11 for c in (env, *copies))
    # independent: a copy's steps leave the original where it was
    before = env.unwrapped.get_state()["sim"]
    copies[0].step(actions[0])
    after = env.unwrapped.get_state()["sim"]
    assert all(np.array_equal(np.asarray(before[k]), np.asarray(after[k])) for k in before)
    # a copy of an env never reset needs a reset, as the original does
    fresh = copy.deepcopy(gym.make("TorqueWalkingImitation2D-v0"))
    with pytest.raises(gym.error.ResetNeeded):
        fresh.step(fresh.action_space.sample())
    obs, _ = fresh.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    for e in (env, *copies, fresh):
        e.close()


def test_set_state_carries_the_options_changed_between_episodes():
    """``recycle_every`` moves an episode to an env built with the original options:
    the options ``set_option`` changed (a vector env's ``set_attr``: test mode, episode
    length, logging) go with the state, or the next episodes would silently revert."""
    env = ImitationEnv("TorqueWalkingImitation2D-v0")
    env.reset(seed=0)
    for name, value in dict(mode="test", episode_seconds=0.3, start_noise=0.01).items():
        env.set_option(name, value)
    env.set_option("log", True)
    env.reset(seed=1)
    env.step(np.zeros(7, np.float32))
    moved = ImitationEnv("TorqueWalkingImitation2D-v0")
    moved.set_state(env.get_state())
    assert moved.options == env.options and moved.mode == "test"
    assert len(moved.episode_log) == 2
    moved.step(np.zeros(7, np.float32))
    assert len(moved.episode_log) == 3          # still logging the episode it continues
    _, info = moved.reset()
    assert info["frame"] == 0 and moved.episode_steps == 30   # test mode, 0.3 s
    for e in (env, moved):
        e.close()


def test_what_docs_say_the_observation_and_reward_hold():
    """docs/tasks.md: the elements that repeat others in 2D, and the first action's
    smoothness against zeros (the actions before an episode's first)."""
    e = ImitationEnv("MuscleWalkingImitation2D-v0")
    try:
        e.reset(seed=0)
        a = np.full(18, 0.5, np.float32)
        obs, *_, info = e.step(a)
        assert info["smoothness"] == pytest.approx(np.exp(-np.linalg.norm(a)))   # 0.12
        obs, *_, info = e.step(a)
        assert info["smoothness"] == 1.0
        at = {name: k for k, name in enumerate(e.observation_names)}
        repeats = [("body_vel/pelvis.x", "qdot/pelvis_tx"), ("body_vel/pelvis.y", "qdot/pelvis_ty")]
        repeats += [(f"{block}/femur_r.{ax}", f"{block}/femur_l.{ax}")
                    for block in ("body_pos_rel_pelvis", "body_vel") for ax in "xy"]
        for one, other in repeats:
            assert obs[at[one]] == obs[at[other]], (one, other)
        assert obs[at["body_vel/femur_r.x"]] != 0.0
    finally:
        e.close()
