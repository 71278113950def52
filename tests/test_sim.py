"""The simulation buffer equals direct OpenSim API queries on a real model state."""
import numpy as np
import opensim as osim
import pytest

from fastenv.sim import Simulation, SimulationError


@pytest.fixture(scope="module")
def stepped(muscle2d_path):
    sim = Simulation(muscle2d_path, push_body="torso")
    rng = np.random.default_rng(0)
    for _ in range(15):
        sim.step(rng.random(sim.n_controls))
    return sim


def test_buffer_equals_opensim_queries(stepped):
    sim, s, m, L = stepped, stepped.state, stepped.model, stepped.layout
    b = sim.buf
    m.realizeAcceleration(s)
    assert b[L.slice("time")][0] == pytest.approx(0.15)
    for j, c in enumerate(sim.coordinates):
        assert b[L.slice("q")][j] == c.getValue(s)
        assert b[L.slice("qdot")][j] == c.getSpeedValue(s)
        assert b[L.slice("qddot")][j] == pytest.approx(c.getAccelerationValue(s), rel=1e-12,
                                                       abs=1e-9)
    for i, name in enumerate(sim.body_names):
        body = m.getBodySet().get(name)
        np.testing.assert_array_equal(b[L.slice("body_pos")][3 * i:3 * i + 3],
                                      body.getPositionInGround(s).to_numpy())
        np.testing.assert_array_equal(b[L.slice("body_vel")][3 * i:3 * i + 3],
                                      body.getLinearVelocityInGround(s).to_numpy())
    np.testing.assert_array_equal(b[L.slice("com_pos")], m.calcMassCenterPosition(s).to_numpy())
    np.testing.assert_array_equal(b[L.slice("com_vel")], m.calcMassCenterVelocity(s).to_numpy())
    for i, mu in enumerate(sim.muscles):
        assert b[L.slice("excitation")][i] == mu.getExcitation(s)
        assert b[L.slice("activation")][i] == mu.getActivation(s)
        assert b[L.slice("fiber_length")][i] == mu.getFiberLength(s)
        assert b[L.slice("fiber_velocity")][i] == pytest.approx(mu.getFiberVelocity(s),
                                                                rel=1e-9, abs=1e-12)
        assert b[L.slice("active_fiber_force")][i] == mu.getActiveFiberForce(s)
    for i, f in enumerate(sim.limit_forces):
        assert b[L.slice("limit_force")][i] == f.calcLimitForce(s)


def test_grf_equals_contact_force_records(stepped):
    sim, s = stepped, stepped.state
    grf = sim.buf[sim.layout.slice("grf")].reshape(-1, 6)
    assert grf[:, 1].sum() > 0.1 * sim.body_weight  # standing on the ground after 0.15 s
    # A foot's row sums its spheres' forces (one HuntCrossleyForce per sphere,
    # named <foot>:<sphere>).
    assert len(sim.contact_forces) == 4 and sim.contact_names == ["foot_r", "foot_l"]
    for c, foot in enumerate(sim.contact_names):
        rec = {}
        for f in sim.contact_forces:
            if f.getName().split(":")[0] == foot:
                labels, values = f.getRecordLabels(), f.getRecordValues(s)
                rec.update({labels.get(i): values.get(i) for i in range(labels.size())})
        for k, comp in enumerate(("force.X", "force.Y", "force.Z",
                                  "torque.X", "torque.Y", "torque.Z")):
            expected = sum(v for lab, v in rec.items()
                           if lab.endswith(comp) and ".ground." not in lab)
            assert grf[c, k] == pytest.approx(expected, rel=1e-12, abs=1e-12)
        ground = sum(v for lab, v in rec.items() if lab.endswith(".ground.force.Y"))
        assert grf[c, 1] == pytest.approx(-ground)  # Newton's third law


def test_grf_counts_a_body_with_two_spheres_once(muscle3d_path):
    """The 3D feet have two toe spheres on one body: a Hunt-Crossley force holding
    both reports that body's total once per sphere (the osim-rl models' foot forces
    did). The foot's force must equal the ground's reaction (Newton's third law),
    toes counted once, on the built model (one force per sphere) and on the base
    model (one force per foot, both toe spheres in it)."""
    from fastenv.envs.variants import VARIANTS, base_model_path
    base = Simulation(str(base_model_path(VARIANTS["muscle3d"].base)))
    for sim, toe_reports in ((Simulation(muscle3d_path), 1), (base, 2)):
        _third_law_with_toes_once(sim, toe_reports)


def _third_law_with_toes_once(sim, toe_reports):
    s = sim.state_from_coordinates(*_sunk_pose(sim), equilibrate=False)
    sim.model.realizeDynamics(s)
    total = sim.vertical_grf(*_sunk_pose(sim))
    ground = 0.0
    toes = 0
    for f in sim.contact_forces:
        labels = [f.getRecordLabels().get(i) for i in range(f.getRecordLabels().size())]
        reports = sum(lab.endswith("toes_r.force.Y") or lab.endswith("toes_l.force.Y")
                      for lab in labels)
        assert reports in (0, 1, toe_reports)
        toes = max(toes, reports)
        values = f.getRecordValues(s)
        ground += sum(values.get(i) for i, lab in enumerate(labels)
                      if lab.endswith(".ground.force.Y") or lab.endswith(".platform.force.Y"))
    assert toes == toe_reports   # the repeated report this guards against, where it occurs
    assert ground < -0.5 * sim.body_weight
    assert total == pytest.approx(-ground, rel=1e-9)


def test_grf_of_a_smooth_contact_model_is_the_sphere_side(muscle2d_path, tmp_path):
    """SmoothSphereHalfSpaceForce reports the sphere's force and the half space's
    equal and opposite one: the foot's GRF is the sphere side, not their (zero) sum."""
    from refgen.moco import smooth_sphere_contacts

    model = osim.Model(str(muscle2d_path))
    model.finalizeConnections()
    smooth_sphere_contacts(osim, model)
    model.initSystem()
    model.printToXML(str(tmp_path / "smooth.osim"))
    sim = Simulation(tmp_path / "smooth.osim", energetics=False)
    q, u = _sunk_pose(sim)
    s = sim.state_from_coordinates(q, u, equilibrate=False)
    sim.model.realizeDynamics(s)
    sphere = 0.0
    for f in sim.contact_forces:
        labels = [f.getRecordLabels().get(i) for i in range(f.getRecordLabels().size())]
        values = f.getRecordValues(s)
        sphere += sum(values.get(i) for i, lab in enumerate(labels)
                      if lab.endswith(".Sphere.force.Y"))
    assert sphere > 0.5 * sim.body_weight
    assert sim.vertical_grf(q, u) == pytest.approx(sphere, rel=1e-9)


def _sunk_pose(sim):
    """Default pose lowered 2 cm: heel and toe spheres in the ground."""
    q = sim.buf[sim.layout.slice("q")].copy()
    q[sim.coordinate_names.index("pelvis_ty")] -= 0.02
    return q, np.zeros_like(q)


def test_controls_drive_the_muscles(muscle2d_path):
    sim = Simulation(muscle2d_path)
    sim.step(np.ones(sim.n_controls))
    for _ in range(10):
        sim.step()
    act = sim.buf[sim.layout.slice("activation")]
    assert np.all(act > 0.9)


def test_snapshot_restore_is_exact(muscle2d_path):
    sim = Simulation(muscle2d_path)
    u = np.full(sim.n_controls, 0.2)
    snap = sim.snapshot()
    runs = []
    for _ in range(2):
        sim.restore(snap)
        for _ in range(5):
            sim.step(u)
        runs.append(sim.buf.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def _run_from(sim, snapshot, steps=5):
    sim.restore(snapshot)
    rng = np.random.default_rng(3)
    out = [sim.buf.copy()]
    for _ in range(steps):
        sim.step(rng.random(sim.n_controls))
        out.append(sim.buf.copy())
    return np.array(out)


@pytest.mark.parametrize("model", ["muscle2d", "torque3d"])
def test_compact_snapshot_restores_bitwise(model):
    """A Snapshot (Y and time over the template State) restores exactly what the full
    ``opensim.State`` restores: reference start states (muscles equilibrated) and a
    state in mid-episode, on a muscle model and on a 3D model with push and springs."""
    from fastenv.envs.variants import variant_path
    from fastenv.sim import Snapshot
    kw = dict(push_body="torso", coordinate_springs="actuated") if model == "torque3d" else {}
    sim = Simulation(variant_path(model), **kw)
    rng = np.random.default_rng(0)
    q0 = np.array([c.getValue(sim.default_state) for c in sim.coordinates])
    states = [sim.state_from_coordinates(q0 + 0.05 * rng.standard_normal(len(q0)),
                                         rng.standard_normal(len(q0)), time=t)
              for t in (0.0, -0.002)]
    sim.restore(states[0])
    for _ in range(3):
        sim.step(rng.random(sim.n_controls))
    states.append(osim.State(sim.state))
    for state in states:
        snap = sim.compact(state)
        assert isinstance(snap, Snapshot) and snap.time == state.getTime()
        assert len(snap.y) == state.getNY() and not snap.y.flags.writeable
        np.testing.assert_array_equal(_run_from(sim, snap), _run_from(sim, state))


def test_snapshot_checks_its_size_and_settle_its_duration(muscle2d_path):
    from fastenv.sim import Snapshot
    sim = Simulation(muscle2d_path)
    with pytest.raises(ValueError, match="state values"):
        sim.restore(Snapshot(0.0, np.zeros(3)))
    for bad in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            sim.settled(sim.snapshot(), bad)


def test_settled_is_the_state_after_that_much_simulation(muscle2d_path):
    """``settled`` equals restoring the start and stepping the same time with zero
    controls (a fresh integrator either way), and leaves the current episode alone."""
    sim = Simulation(muscle2d_path, control_dt=0.002)
    start = sim.compact(sim.state_from_coordinates(
        [c.getValue(sim.default_state) for c in sim.coordinates],
        np.zeros(len(sim.coordinates)), time=-0.002))
    sim.restore(sim.default_state)
    sim.step(np.full(sim.n_controls, 0.3))
    before = (sim.state.getTime(), sim.state.getY().to_numpy().copy())
    settled = sim.settled(start, 0.002)
    assert settled.time == 0.0
    assert sim.state.getTime() == before[0]
    np.testing.assert_array_equal(sim.state.getY().to_numpy(), before[1])
    sim.restore(start)
    sim.step(np.zeros(sim.n_controls))
    np.testing.assert_array_equal(settled.y, sim.state.getY().to_numpy())


def test_state_from_coordinates_sets_values(muscle2d_path):
    sim = Simulation(muscle2d_path)
    q = sim.buf[sim.layout.slice("q")].copy()
    q[sim.coordinate_names.index("knee_angle_r")] = -0.5
    qd = np.zeros_like(q)
    qd[sim.coordinate_names.index("hip_flexion_l")] = 1.5
    s = sim.state_from_coordinates(q, qd)
    assert sim.model.getCoordinateSet().get("knee_angle_r").getValue(s) == -0.5
    assert sim.model.getCoordinateSet().get("hip_flexion_l").getSpeedValue(s) == 1.5


def test_kinematics_poses_every_body(muscle2d_path):
    """Simulation.kinematics reads every body at the given pose and speeds, as the
    buffer does after a restore, and again after other poses (the working State)."""
    sim = Simulation(muscle2d_path)
    q = sim.buf[sim.layout.slice("q")].copy()
    for c, v in (("pelvis_tx", 0.4), ("hip_flexion_r", 0.5), ("knee_angle_l", -0.8)):
        q[sim.coordinate_names.index(c)] = v
    qd = np.linspace(-1.0, 1.0, len(q))
    qd[sim.locked] = 0.0
    sim.kinematics(np.zeros_like(q), -qd)            # another pose first
    pos, vel, com, comv = sim.kinematics(q, qd)
    sim.restore(sim.state_from_coordinates(q, qd, equilibrate=False))
    np.testing.assert_allclose(pos.ravel(), sim.buf[sim.layout.slice("body_pos")], atol=1e-12)
    np.testing.assert_allclose(vel.ravel(), sim.buf[sim.layout.slice("body_vel")], atol=1e-12)
    np.testing.assert_allclose(com, sim.buf[sim.layout.slice("com_pos")], atol=1e-12)
    assert pos[sim.body_names.index("pelvis"), 0] == pytest.approx(0.4)
    assert np.abs(vel[sim.body_names.index("femur_r")]).max() > 0.1


def test_push_moves_the_torso(muscle2d_path):
    results = []
    for f in (0.0, 400.0):
        sim = Simulation(muscle2d_path, push_body="torso")
        sim.set_push([f, 0, 0])
        for _ in range(10):
            sim.step(np.zeros(sim.n_controls))
        results.append(sim.buf[sim.layout.slice("com_pos")][0])
    assert results[1] > results[0] + 0.01


def test_bad_arguments(muscle2d_path, tmp_path):
    with pytest.raises(ValueError, match="unknown integrator 'Euler'"):
        Simulation(muscle2d_path, integrator="Euler")
    with pytest.raises(ValueError, match="accuracy"):
        Simulation(muscle2d_path, accuracy=-1)
    bad = tmp_path / "bad.osim"
    bad.write_text("<OpenSimDocument> not a model")
    with pytest.raises(ValueError, match="cannot load OpenSim model"):
        Simulation(bad)
    with pytest.raises(ValueError, match="unknown bodies"):
        Simulation(muscle2d_path, bodies=["wing"])


def test_non_finite_state_raises_simulation_error(muscle2d_path):
    sim = Simulation(muscle2d_path)
    q = sim.buf[sim.layout.slice("q")].copy()
    qd = np.zeros_like(q)
    qd[0] = np.nan
    sim.restore(sim.state_from_coordinates(q, qd, equilibrate=False))
    with pytest.raises(SimulationError):
        sim.step(np.zeros(sim.n_controls))


def test_reference_state_starts_in_muscle_equilibrium(muscle2d_path):
    """Snapshots for reference-state initialisation equilibrate the muscles for *their*
    pose (a copy of the default state would keep the default pose's fiber lengths)."""
    sim = Simulation(muscle2d_path)
    q = sim.buf[sim.layout.slice("q")].copy()
    q[sim.coordinate_names.index("knee_angle_l")] = -1.0
    q[sim.coordinate_names.index("hip_flexion_l")] = 0.8
    default_lengths = sim.buf[sim.layout.slice("fiber_length")].copy()
    sim.restore(sim.state_from_coordinates(q, np.zeros_like(q)))
    lengths = sim.buf[sim.layout.slice("fiber_length")]
    assert np.abs(lengths - default_lengths).max() > 0.01
    assert np.abs(sim.buf[sim.layout.slice("fiber_velocity")]).max() < 1e-6


def test_gravity_stiffness_is_the_carried_weight_times_its_height(muscle2d_path):
    """m g h per coordinate on the planar model standing: each leg joint carries the
    body above it (ankle > knee > hip); the root's coordinates carry nothing."""
    sim = Simulation(muscle2d_path)
    k = dict(zip(sim.coordinate_names, sim.gravity_stiffness()))
    for side in "rl":
        assert k[f"ankle_angle_{side}"] > k[f"knee_angle_{side}"] > k[f"hip_flexion_{side}"] > 0
    assert k["pelvis_tilt"] == k["pelvis_tx"] == k["pelvis_ty"] == 0.0
    # the ankle carries all but a foot, its centre of mass about 0.9-1.1 m above it
    h = k["ankle_angle_r"] / (0.97 * sim.body_weight)
    assert 0.8 < h < 1.2, h


def _one_step_after(sim, start, change, invalidate_by_hand):
    sim.restore(start)            # a fresh integrator, realized at the start state
    change()
    if invalidate_by_hand:
        sim.state.invalidateAllCacheAtOrAbove(osim.Stage(osim.Stage.Dynamics))
    sim.step()
    return sim.buf.copy()


@pytest.mark.parametrize("kind", ["controls", "spring"])
def test_a_change_between_steps_acts_from_the_first_stage(muscle2d_path, kind):
    """Simbody starts a step from the derivatives cached at the end of the last one; a
    control or spring change must invalidate them, or it acts only from the second
    stage on. Stepping after the change equals stepping after a by-hand invalidation
    of the Dynamics stage (without it, the two differed by up to 39 in the buffer)."""
    sim = Simulation(muscle2d_path, coordinate_springs=["hip_flexion_r", "knee_angle_r"])
    sim.set_spring_gains([300.0, 200.0], [10.0, 5.0])
    rng = np.random.default_rng(1)
    for _ in range(5):
        sim.step(rng.random(sim.n_controls))
    if kind == "controls":
        def change(v):
            return lambda: sim.set_controls(np.full(sim.n_controls, v))
    else:
        def change(v):
            return lambda: sim.set_spring_rest([0.8 * v, -1.2 * v])
    start = sim.snapshot()
    np.testing.assert_array_equal(_one_step_after(sim, start, change(1.0), False),
                                  _one_step_after(sim, start, change(1.0), True))
    assert np.abs(_one_step_after(sim, start, change(1.0), False)
                  - _one_step_after(sim, start, change(0.0), False)).max() > 1e-3


def test_coordinate_springs_are_pd_laws_opensim_evaluates(muscle2d_path):
    sim = Simulation(muscle2d_path, coordinate_springs=["knee_angle_r"])
    sim.set_spring_gains([250.0], [7.0])
    sim.set_spring_rest([-0.4])
    s = osim.State(sim.state)
    c = sim.model.getCoordinateSet().get("knee_angle_r")
    c.setValue(s, -0.1)
    c.setSpeedValue(s, 2.0)
    sim.model.realizeDynamics(s)
    spring = osim.SpringGeneralizedForce.safeDownCast(
        sim.model.getForceSet().get("fastenv_spring_knee_angle_r"))
    assert spring.getRecordValues(s).get(0) == pytest.approx(250.0 * (-0.4 + 0.1) - 7.0 * 2.0)
    with pytest.raises(ValueError, match="coordinate_springs: 'knee' is not a coordinate"):
        Simulation(muscle2d_path, coordinate_springs=["knee"])


def _drive(sims, steps=12):
    """Step ``sims`` in turn, as a worker steps its envs, each with its own controls,
    springs and push; every buffer after every step."""
    rng = np.random.default_rng(3)
    out = []
    for k, sim in enumerate(sims):
        sim.set_spring_gains([300.0 + 50 * k, 100.0 * k], [10.0, 2.0 + k])
        sim.set_push([20.0 * (k + 1), 0.0, -5.0 * k])
    for t in range(steps):
        for k, sim in enumerate(sims):
            if t == steps // 2:
                sim.restore(sim.settled(sim.default_state, 0.002 * (k + 1)))
            sim.set_spring_rest([0.3 * np.sin(t + k), -0.5])
            sim.step(rng.random(sim.n_controls))
            out.append(sim.buf.copy())
    for sim in sims:               # read again after the others stepped
        before = sim.buf.copy()
        sim.read()
        out.append(sim.buf - before)
    return np.array(out)


def test_simulations_sharing_a_model_equal_one_model_each(muscle2d_path):
    """Three simulations on one opensim.Model, stepped in turn with different controls,
    spring gains, rest angles and pushes, give bitwise the buffers of three models;
    each puts its own values back on the model when it takes over (_claim)."""
    from fastenv.sim import shared_simulation
    settings = dict(coordinate_springs=["hip_flexion_r", "knee_angle_r"], push_body="torso")
    separate = [Simulation(muscle2d_path, **settings) for _ in range(3)]
    shared = [shared_simulation(muscle2d_path, **settings) for _ in range(3)]
    assert shared[0].model is shared[1].model is shared[2].model
    assert len({id(s.model) for s in separate}) == 3
    assert shared_simulation(muscle2d_path).model is not shared[0].model   # other settings
    a, b = _drive(separate), _drive(shared)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[0] - a[1]).max() > 1e-3      # the three did differ
    assert [s.export_state()["push"] for s in shared] == [
        s.export_state()["push"] for s in separate]
