"""One OpenSim model instance: controls in, flat NumPy arrays out, State snapshots.

Everything observations and rewards need is written after each control step into
one preallocated float64 buffer (``Simulation.buf``) whose segments are named in
``Simulation.layout``; kernels read that buffer by index. SWIG calls per step are
kept to bulk getters (``getQ/getU/getUDot/getY/getYDot().to_numpy()``) plus one call
per body, muscle quantity and contact force; index maps into the state vectors are
built once at load time by perturbation, so no name lookups happen per step.
"""
from __future__ import annotations

import copy
import math
import os
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import opensim as osim

osim.Logger.setLevelString("error")  # OpenSim logs every integrate() call at info level
osim.Logger.removeFileSink()          # and would write opensim.log into the user's cwd

INTEGRATORS = {
    "RungeKuttaMerson": osim.Manager.IntegratorMethod_RungeKuttaMerson,
    "RungeKuttaFeldberg": osim.Manager.IntegratorMethod_RungeKuttaFeldberg,
    "RungeKutta3": osim.Manager.IntegratorMethod_RungeKutta3,
    "RungeKutta2": osim.Manager.IntegratorMethod_RungeKutta2,
    "SemiExplicitEuler2": osim.Manager.IntegratorMethod_SemiExplicitEuler2,
    "ExplicitEuler": osim.Manager.IntegratorMethod_ExplicitEuler,
    "CPodes": osim.Manager.IntegratorMethod_CPodes,
    "Verlet": osim.Manager.IntegratorMethod_Verlet,
}

GRAVITY = 9.80665


class SimulationError(RuntimeError):
    """The integrator failed or the state became non-finite (episode must end)."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A State in compact form: its time and its continuous state ``y`` (Simbody's Y:
    q, u and the muscles' states), a few hundred bytes instead of the ≈0.28 MB of an
    ``opensim.State`` with its cache. The rest of a State (discrete variables,
    modelling options) is the same in every State a :class:`Simulation` makes, so
    :meth:`Simulation.restore` takes it from one template, ``default_state``; the
    restored simulation is bitwise the one restored from the full State (tested)."""

    time: float
    y: np.ndarray


@dataclass
class Layout:
    """Names and index ranges of the segments of a flat float64 buffer."""

    segments: dict = field(default_factory=dict)   # name -> (start, stop)
    element_names: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.element_names)

    def add(self, name: str, elements: list[str]) -> slice:
        if name in self.segments:
            raise ValueError(f"segment {name!r} already in layout")
        start = self.size
        self.element_names.extend(f"{name}/{e}" for e in elements)
        self.segments[name] = (start, self.size)
        return slice(start, self.size)

    def slice(self, name: str) -> slice:
        start, stop = self.segments[name]
        return slice(start, stop)

    def index(self, name: str, element: str) -> int:
        return self.element_names.index(f"{name}/{element}")


def contact_foot(force_name: str) -> str:
    """The foot a contact force belongs to: ``foot_r`` for ``foot_r:r_heel`` (one
    sphere's force of several making up a foot, as fastenv.envs.variants builds them),
    the name itself for a force of a whole foot."""
    return force_name.split(":")[0]


def foot_record_indices(labels) -> list[int]:
    """Indices of a contact force's record labels that carry the load on the foot.

    A contact force reports force and torque (``<name>.<body>.force.X`` ...) on
    every body of its contact pairs; the ground reaction on the foot is the sum
    over the foot bodies, so the reacting side is left out: the ground or
    platform (HuntCrossleyForce) and the half space (SmoothSphereHalfSpaceForce,
    whose ``Sphere`` and ``HalfSpace`` reports would cancel).  A Hunt-Crossley
    body with several spheres (the 3D model's two toe spheres) is reported once
    per sphere, each time with the body's total: only its first report counts,
    or the toes' force would be doubled.
    """
    reaction = ("ground", "platform", "HalfSpace")
    idx, seen = [], set()
    for i, lab in enumerate(labels):
        parts = lab.split(".")
        if len(parts) >= 3 and parts[-2] in ("force", "torque") and parts[-3] not in reaction \
                and lab not in seen:
            seen.add(lab)
            idx.append(i)
    return idx


#: How long (s) the minimum step stays off after the first retry of an episode; each
#: further retry in the episode doubles it (:meth:`Simulation.step`).
MIN_STEP_HOLD = 0.05


class Simulation:
    """An OpenSim model stepped at a fixed control step with zero-order-hold controls.

    Parameters
    ----------
    model_path: .osim file.
    control_dt: control step in seconds (10 ms as in the original package).
    integrator, accuracy: ``opensim.Manager`` integrator method and accuracy.
    min_step: the integrator's minimum step size in seconds (0: Simbody's default, no
        minimum). Where the error estimate asks for a smaller step, the step is taken at
        this size anyway: speed bought with accuracy (the ``fast`` physics preset). A
        control step on which that diverges (an integrator error, a non-finite state, or
        a coordinate acceleration beyond ``max_acceleration`` at its end) is integrated
        once more from its start without the minimum, which then stays off for
        :data:`MIN_STEP_HOLD` s, twice as long after each further retry, until the next
        :meth:`restore` (counted: :attr:`retried_steps`, :attr:`last_step_retried`).
    max_acceleration: the coordinate acceleration (rad/s² or m/s²) beyond which a step
        taken with the minimum step counts as diverged (the env passes its task's
        termination bound, so that an episode is never ended by the minimum step's
        instability: stiff rigid-tendon muscles fully excited swung an unloaded foot to
        10^4 rad/s² within a few 1.5-ms steps). Without the minimum it is not checked:
        the task's own rules judge the physics.
    bodies: names of bodies whose ground-frame position/velocity are extracted
        (default: all bodies).
    energetics: also extract per-muscle fiber force and force-length multiplier
        (needed by the metabolic cost; 2 SWIG calls per muscle per step).
    push_body: add a ground-frame force on this body (external perturbations) whose
        value :meth:`set_push` changes between steps.
    coordinate_springs: coordinates (or ``"actuated"``: those of the model's
        ``CoordinateActuator`` components) that get a linear spring-damper
        (``SpringGeneralizedForce``) whose rest angle and gains change between steps
        (:meth:`set_spring_gains`, :meth:`set_spring_rest`): a PD controller that the
        integrator evaluates at every stage instead of once per control step.

    Several simulations of one process may share one ``opensim.Model`` (see
    :func:`shared_simulation`): each keeps its own State, integrator, controls, push and
    springs, and puts the last three on the model whenever it takes over from another
    (:meth:`_claim`), so that stepping them in turn gives bitwise the results of one
    model each.
    """

    def __init__(self, model_path, *, control_dt=0.01, integrator="SemiExplicitEuler2",
                 accuracy=1e-3, bodies=None, energetics=True, push_body=None,
                 coordinate_springs=(), min_step=0.0, max_acceleration=math.inf):
        if not (isinstance(integrator, str) and integrator in INTEGRATORS):
            raise ValueError(f"unknown integrator {integrator!r}; expected one of "
                             f"{sorted(INTEGRATORS)}")
        if not (accuracy > 0 and math.isfinite(accuracy)):
            raise ValueError(f"accuracy must be a positive number, got {accuracy!r}")
        if not control_dt > 0:
            raise ValueError(f"control_dt must be > 0, got {control_dt!r}")
        self.model_path = str(model_path)
        self.control_dt = float(control_dt)
        self.integrator = integrator
        self.accuracy = float(accuracy)
        if not (isinstance(min_step, (int, float)) and 0 <= min_step < control_dt):
            raise ValueError(f"min_step must be a step size in s within [0, control_dt = "
                             f"{control_dt}), got {min_step!r}")
        self.min_step = float(min_step)
        if not (isinstance(max_acceleration, (int, float)) and max_acceleration > 0):
            raise ValueError(f"max_acceleration must be a positive number (rad/s² or m/s²), "
                             f"got {max_acceleration!r}")
        self.max_acceleration = float(max_acceleration)
        self.retried_steps = 0           # control steps integrated again without min_step
        self.last_step_retried = False
        self._min_step_back_at = None    # when the minimum comes back after a retry (s)
        self._episode_retries = 0
        if not os.path.isfile(self.model_path):
            raise ValueError(f"cannot load OpenSim model {self.model_path!r}: no such file "
                             "(expected the path of an .osim file)")
        try:
            self.model = osim.Model(self.model_path)
        except Exception as exc:  # OpenSim raises RuntimeError with its own message
            # one line, without the SWIG wrapper's prefix and the C++ source locations
            lines = [ln.strip() for ln in str(exc).split("': ", 1)[-1].splitlines()]
            text = " ".join(ln for ln in lines if ln and not ln.startswith(
                ("Thrown at", "SimTK Exception thrown at", "(Required condition")))
            raise ValueError(f"cannot load OpenSim model {self.model_path!r}: {text}") from exc
        model = self.model
        self.push_body = push_body
        if push_body is not None:
            if not model.getBodySet().contains(push_body):
                raise ValueError(f"push_body {push_body!r} is not a body of {self.model_path}")
            push = osim.PrescribedForce("fastenv_push", model.getBodySet().get(push_body))
            push.setForceIsInGlobalFrame(True)
            push.setForceFunctions(osim.Constant(0), osim.Constant(0), osim.Constant(0))
            model.addForce(push)
        if coordinate_springs == "actuated":   # the coordinates of CoordinateActuators
            coordinate_springs = [
                osim.CoordinateActuator.safeDownCast(a).get_coordinate()
                for a in model.getActuators()
                if a.getConcreteClassName() == "CoordinateActuator"]
        self.spring_coordinates = list(coordinate_springs)
        known = [c.getName() for c in model.getCoordinateSet()]
        for name in self.spring_coordinates:
            if name not in known:
                raise ValueError(f"coordinate_springs: {name!r} is not a coordinate of "
                                 f"{self.model_path}; coordinates: {known}")
            spring = osim.SpringGeneralizedForce(name)
            spring.setName(f"fastenv_spring_{name}")
            model.addForce(spring)
        try:
            state = model.initSystem()
        except Exception as exc:
            raise ValueError(f"cannot initialise OpenSim model {self.model_path!r}: {exc}") from exc
        if push_body is not None:
            funcs = osim.PrescribedForce.safeDownCast(
                model.getForceSet().get("fastenv_push")).updForceFunctions()
            self._push = [osim.Constant.safeDownCast(funcs.get(i)) for i in range(3)]
        # properties read at every force evaluation, so setting them needs no re-init
        self._springs = [osim.SpringGeneralizedForce.safeDownCast(
            model.getForceSet().get(f"fastenv_spring_{name}"))
            for name in self.spring_coordinates]
        # This simulation's own values of what lives on the model (controls: in buf),
        # put back on it by _claim when another simulation sharing it stepped last.
        self._push_value = np.zeros(3)
        self._spring_values = np.array([[sp.getStiffness(), sp.getViscosity(),
                                         sp.getRestLength()] for sp in self._springs],
                                       dtype=float).reshape(-1, 3)
        self._initial_springs = self._spring_values.copy()
        self._token = object()       # who this simulation is, to the model it may share
        self._model_user = [self._token]   # shared by every simulation of this model

        # --- components -------------------------------------------------------
        self.coordinates = [c for c in model.getCoordinateSet()]
        self.coordinate_names = [c.getName() for c in self.coordinates]
        self.locked = np.array([c.getLocked(state) for c in self.coordinates])
        self.rotational = np.array([c.getMotionType() == 1 for c in self.coordinates])
        self.coordinate_range = np.array(
            [[c.getRangeMin(), c.getRangeMax()] for c in self.coordinates])
        all_bodies = [b.getName() for b in model.getBodySet()]
        self.body_names = list(all_bodies if bodies is None else bodies)
        unknown = sorted(set(self.body_names) - set(all_bodies))
        if unknown:
            raise ValueError(f"unknown bodies {unknown}; model has {all_bodies}")
        self._bodies = [model.getBodySet().get(b) for b in self.body_names]
        self.muscles = [m for m in model.getMuscles()]
        self.muscle_names = [m.getName() for m in self.muscles]
        self.actuator_names = [a.getName() for a in model.getActuators()]
        self.n_controls = model.getNumControls()
        self.contact_forces = []
        for f in model.getForceSet():
            cls = f.getConcreteClassName()
            if cls in ("HuntCrossleyForce", "SmoothSphereHalfSpaceForce",
                       "ElasticFoundationForce"):
                self.contact_forces.append(f)
        # A force named "<foot>:<part>" is one of several making up a foot's contact
        # (one smooth sphere each, fastenv.envs.variants): they share the row "<foot>",
        # so a model's GRF rows are its feet whichever contact model it has.
        feet = [contact_foot(f.getName()) for f in self.contact_forces]
        self.contact_names = list(dict.fromkeys(feet))
        self._contact_row = [self.contact_names.index(foot) for foot in feet]
        self._contact_first = [feet.index(foot) == i for i, foot in enumerate(feet)]
        self._contact_idx = [self._foot_record_indices(f) for f in self.contact_forces]
        self.limit_forces = [osim.CoordinateLimitForce.safeDownCast(f)
                             for f in model.getForceSet()
                             if f.getConcreteClassName() == "CoordinateLimitForce"]
        self.limit_names = [f.getName() for f in self.limit_forces]
        self.energetics = bool(energetics) and bool(self.muscles)
        self.body_mass = model.getTotalMass(state)
        names = model.getStateVariableNames()
        #: every state variable's path, in ``Model.getStateVariableValues`` order
        self.state_variable_names = [names.get(i) for i in range(names.getSize())]
        self.body_weight = self.body_mass * GRAVITY

        # --- index maps into bulk state vectors --------------------------------
        # Simbody's Y is [q, u, z]; map every state variable by perturbing it once.
        probe = osim.State(state)
        for c in self.coordinates:  # locked coordinates refuse new values
            c.setLocked(probe, False)
        sv_names = [model.getStateVariableNames().get(i)
                    for i in range(model.getNumStateVariables())]
        y_of = {}
        y0 = probe.getY().to_numpy().copy()
        for name in sv_names:
            v = model.getStateVariableValue(probe, name)
            model.setStateVariableValue(probe, name, v + 1.0)
            diff = np.flatnonzero(probe.getY().to_numpy() != y0)
            model.setStateVariableValue(probe, name, v)
            if len(diff) != 1:
                raise RuntimeError(f"cannot map state variable {name} to one Y index")
            y_of[name] = int(diff[0])
        nq = probe.getNQ()
        paths = [c.getAbsolutePathString() for c in self.coordinates]
        self._q_idx = np.array([y_of[p + "/value"] for p in paths], dtype=np.intp)
        self._u_idx = np.array([y_of[p + "/speed"] - nq for p in paths], dtype=np.intp)
        self._act_idx = np.array([y_of.get(m.getAbsolutePathString() + "/activation", -1)
                                  for m in self.muscles], dtype=np.intp)
        self._len_idx = np.array([y_of.get(m.getAbsolutePathString() + "/fiber_length", -1)
                                  for m in self.muscles], dtype=np.intp)
        self._act_in_y = bool(len(self._act_idx)) and (self._act_idx >= 0).all()
        self._len_in_y = bool(len(self._len_idx)) and (self._len_idx >= 0).all()

        # --- buffer -----------------------------------------------------------
        L = self.layout = Layout()
        L.add("zero", ["0"])
        self._s_time = L.add("time", ["t"])
        cn = self.coordinate_names
        self._s_q = L.add("q", cn)
        self._s_qd = L.add("qdot", cn)
        self._s_qdd = L.add("qddot", cn)
        xyz = ["x", "y", "z"]
        self._s_bpos = L.add("body_pos", [f"{b}.{a}" for b in self.body_names for a in xyz])
        self._s_bvel = L.add("body_vel", [f"{b}.{a}" for b in self.body_names for a in xyz])
        self._s_com = L.add("com_pos", xyz)
        self._s_comv = L.add("com_vel", xyz)
        mn = self.muscle_names
        self._s_exc = L.add("excitation", mn)
        self._s_act = L.add("activation", mn)
        self._s_len = L.add("fiber_length", mn)
        self._s_vel = L.add("fiber_velocity", mn)
        self._s_ffor = L.add("active_fiber_force", mn)
        self._s_flm = L.add("active_fl_multiplier", mn)
        self._s_grf = L.add("grf", [f"{c}.{k}" for c in self.contact_names
                                    for k in ("Fx", "Fy", "Fz", "Mx", "My", "Mz")])
        self._s_lim = L.add("limit_force", self.limit_names)
        self._s_ctrl = L.add("controls", self.actuator_names)
        self.buf = np.zeros(L.size)
        self._grf = self.buf[self._s_grf].reshape(-1, 6)
        self._bpos = self.buf[self._s_bpos].reshape(-1, 3)
        self._bvel = self.buf[self._s_bvel].reshape(-1, 3)

        # --- state and integrator ---------------------------------------------
        model.equilibrateMuscles(state)
        self.default_state = osim.State(state)
        self._manager = None
        self.state = None
        self._dynamics_stage = osim.Stage(osim.Stage.Dynamics)
        self.integrate_seconds = 0.0   # wall time inside Manager.integrate (profiling)
        self.restore(self.default_state)

    def sharing_model(self) -> Simulation:
        """A new simulation of this one's ``opensim.Model`` object, at the default
        state, with the same settings: its own State, integrator, buffer, controls,
        push and springs, and none of the model's load and ``initSystem`` (nor its
        memory). Envs of one worker step in turn, and on one shared model their steps
        find the model's data still in the core's caches (measured in
        docs/performance.md); each simulation's results are bitwise those of a model
        of its own (tests/test_sim.py). What is changed on ``model`` itself (a
        muscle's strength) changes it for every simulation sharing it."""
        other = copy.copy(self)
        other._token = object()
        other.buf = np.zeros(self.layout.size)
        other._grf = other.buf[self._s_grf].reshape(-1, 6)
        other._bpos = other.buf[self._s_bpos].reshape(-1, 3)
        other._bvel = other.buf[self._s_bvel].reshape(-1, 3)
        other._push_value = np.zeros(3)
        other._spring_values = self._initial_springs.copy()
        other.retried_steps = 0
        other.last_step_retried = False
        other.integrate_seconds = 0.0
        other._manager = other.state = None
        other.restore(other.default_state)
        return other

    def _claim(self, controls: bool = True):
        """Put this simulation's controls, push and springs on the model, which another
        simulation sharing it may have used since this one last did. Its own State
        was realized only with its own values, so its cache stays valid.
        ``controls=False``: the caller is about to set new controls itself."""
        if self._model_user[0] is self._token:
            return
        self._model_user[0] = self._token
        if controls:
            self.model.setDefaultControls(osim.Vector.createFromMat(
                np.ascontiguousarray(self.buf[self._s_ctrl])))
        if self.push_body is not None:
            for f, v in zip(self._push, self._push_value):
                f.setValue(float(v))
        for spring, (k, c, rest) in zip(self._springs, self._spring_values):
            spring.setStiffness(float(k))
            spring.setViscosity(float(c))
            spring.setRestLength(float(rest))

    # ------------------------------------------------------------------ helpers
    def _foot_record_indices(self, force):
        """Record-value indices (n_body, 6) of force/torque on a contact's foot bodies."""
        labels = [force.getRecordLabels().get(i) for i in range(force.getRecordLabels().size())]
        idx = foot_record_indices(labels)
        if len(idx) % 6:
            raise RuntimeError(f"unexpected record labels for {force.getName()}: {labels}")
        return np.array(idx, dtype=np.intp).reshape(-1, 6)

    def _new_manager(self, state, min_step=None):
        mgr = self._configured_manager(min_step)
        mgr.initialize(state)
        return mgr

    def _configured_manager(self, min_step=None):
        """A Manager with this simulation's integrator settings, not yet initialized
        (settings such as storage must come before ``initialize``); ``min_step`` None:
        the simulation's own minimum step."""
        mgr = osim.Manager(self.model)
        mgr.setIntegratorMethod(INTEGRATORS[self.integrator])
        mgr.setIntegratorAccuracy(self.accuracy)
        min_step = self.min_step if min_step is None else min_step
        if min_step > 0:
            mgr.setIntegratorMinimumStepSize(min_step)
        return mgr

    # ------------------------------------------------------------------ state
    def state_from_coordinates(self, q, qdot, *, time=0.0, equilibrate=True, activation=None):
        """A new State with coordinate values/speeds set (muscles in equilibrium).

        ``q``/``qdot`` are in model coordinate order; locked coordinates keep their
        locked values. ``activation`` (muscle order): the muscles' activations, else the
        model's defaults. Used to build reference-state initialisation snapshots once.
        """
        self._claim()
        y0 = self.default_state.getY()
        if activation is not None and self._act_in_y:
            y = y0.to_numpy().copy()
            y[self._act_idx] = np.asarray(activation, dtype=float)
            y0 = osim.Vector.createFromMat(y)
        s = osim.State(self.default_state)
        if activation is not None:
            s.setY(y0)
        s.setTime(float(time))
        Q = s.getQ().to_numpy().copy()
        U = s.getU().to_numpy().copy()
        free = ~self.locked
        Q[self._q_idx[free]] = np.asarray(q, dtype=float)[free]
        U[self._u_idx[free]] = np.asarray(qdot, dtype=float)[free]
        U[self._u_idx[self.locked]] = 0.0
        if equilibrate and self.muscles:
            # equilibrateMuscles on a *copied* State silently keeps the fiber lengths of
            # the pose it was copied at (stale path-length cache), so the equilibrium
            # is solved on the model's own working State and its Y is copied over.
            # Equilibrium with the motion's speeds (as osim-rl did); where Thelen's
            # solver diverges with them, the static equilibrium at the pose.
            w = self.model.updWorkingState()
            w.setY(y0)
            w.setQ(osim.Vector.createFromMat(Q))
            w.setU(osim.Vector.createFromMat(U))
            try:
                self.model.equilibrateMuscles(w)
            except Exception:
                w.setY(y0)
                w.setQ(osim.Vector.createFromMat(Q))
                try:
                    self.model.equilibrateMuscles(w)
                except Exception as exc:
                    raise SimulationError(f"cannot equilibrate the muscles at this pose: "
                                          f"{str(exc).splitlines()[0]}") from exc
                w.setU(osim.Vector.createFromMat(U))
            s.setY(w.getY())
        else:
            s.setQ(osim.Vector.createFromMat(Q))
            s.setU(osim.Vector.createFromMat(U))
        self.model.realizeVelocity(s)
        return s

    def compact(self, state) -> Snapshot:
        """``state`` (an ``opensim.State`` of this model) as a :class:`Snapshot`."""
        y = state.getY().to_numpy().copy()
        y.setflags(write=False)   # shared by every restore from it
        return Snapshot(float(state.getTime()), y)

    def _full_state(self, snapshot):
        """A new ``opensim.State`` from a :class:`Snapshot` or a copy of a State."""
        if not isinstance(snapshot, Snapshot):
            return osim.State(snapshot)
        if len(snapshot.y) != self.default_state.getNY():
            raise ValueError(f"snapshot has {len(snapshot.y)} state values; this model has "
                             f"{self.default_state.getNY()}")
        s = osim.State(self.default_state)
        s.setTime(snapshot.time)
        s.setY(osim.Vector.createFromMat(np.ascontiguousarray(snapshot.y, dtype=float)))
        return s

    def settled(self, start, seconds: float, controls=None) -> Snapshot:
        """``start`` (a Snapshot or State) simulated for ``seconds`` with zero controls
        (or ``controls``), on an integrator of its own (the current episode's is
        untouched; its controls are zeroed afterwards, as :meth:`restore` does). What
        springs and pushes are set acts.

        A start state built from reference kinematics is not one the model reaches by
        itself: its feet accelerate at thousands of rad/s² in the first milliseconds
        (muscle and contact forces that the reference's speeds do not balance), and the
        error-controlled integrator crawls through that transient with 0.1-ms steps.
        Settling once, when a start state is built, moves that work out of every
        episode's first step."""
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        self.set_controls(np.zeros(self.n_controls) if controls is None else controls)
        s = self._full_state(start)
        t_end = s.getTime() + seconds
        manager = self._new_manager(s)   # owns the State integrate returns: keep it alive
        try:
            snap = self.compact(manager.integrate(t_end))
        except Exception as exc:
            raise SimulationError(f"integrator failed settling the start state: "
                                  f"{str(exc).splitlines()[0]}") from exc
        finally:
            if controls is not None:
                self.set_controls(np.zeros(self.n_controls))
        if not np.isfinite(snap.y).all():
            raise SimulationError("non-finite state after settling the start state")
        return snap

    def export_state(self) -> dict:
        """Everything needed to continue this simulation in another process."""
        return dict(y=self.state.getY().to_numpy().copy(), time=self.state.getTime(),
                    controls=self.buf[self._s_ctrl].copy(),
                    push=self._push_value.tolist() if self.push_body else None,
                    min_step_on=self._min_step_on, min_step_back_at=self._min_step_back_at,
                    episode_retries=self._episode_retries)

    def import_state(self, saved: dict):
        """Continue from :meth:`export_state` output (same model file)."""
        # an episode that diverged at the minimum step goes on without it here too, and
        # gets it back when it would have there
        self.restore(Snapshot(float(saved["time"]), np.asarray(saved["y"], dtype=float)),
                     min_step=saved.get("min_step_on", True))
        self._min_step_back_at = saved.get("min_step_back_at")
        self._episode_retries = saved.get("episode_retries", 0)
        if saved.get("push") is not None:
            self.set_push(saved["push"])
        self.set_controls(saved["controls"])
        self.read()

    def snapshot(self) -> Snapshot:
        """The current state, compact (restore it with :meth:`restore`)."""
        return self.compact(self.state)

    def restore(self, snapshot, *, min_step=True):
        """Continue from ``snapshot``, a :class:`Snapshot` or an ``opensim.State`` (copied;
        no initSystem, no equilibration). ``min_step=False``: on an integrator without
        the minimum step (an episode that diverged at it, moved by :meth:`import_state`).

        Controls are zeroed *before* the Manager realizes the copy, so what it caches
        never depends on the previous episode's last action (determinism).
        """
        self.set_controls(np.zeros(self.n_controls))
        self._continue_from(self._full_state(snapshot), min_step_on=min_step)
        self._min_step_back_at, self._episode_retries = None, 0
        self.read()

    def _continue_from(self, state, *, min_step_on: bool):
        """Integrate on from ``state`` (copied) on a new integrator, with the minimum
        step or without it."""
        self._min_step_on = min_step_on and self.min_step > 0
        self._manager = self._new_manager(state, min_step=None if self._min_step_on else 0.0)
        self.state = self._manager.getState()  # the integrator's own State

    # ------------------------------------------------------------------ stepping
    def _forces_changed(self):
        """Make the integrator see new controls, spring settings or push forces from the
        first stage of the next step on. Its State keeps the accelerations it computed at
        the end of the last step, and Simbody reuses them as the next step's start
        derivatives unless the Dynamics stage is invalidated: a changed control or spring
        would otherwise act only from the second stage on (measured: up to 39 in the
        buffer after one 10-ms step of the 2D torque model)."""
        if self.state is not None:
            self.model.markControlsAsInvalid(self.state)
            self.state.invalidateAllCacheAtOrAbove(self._dynamics_stage)

    def set_push(self, force):
        """Ground-frame force (N) on ``push_body``, held until changed."""
        self._claim()
        self._push_value[:] = [float(v) for v in force]
        for f, v in zip(self._push, self._push_value):
            f.setValue(float(v))
        self._forces_changed()

    def set_spring_gains(self, stiffness, viscosity):
        """Per spring coordinate: stiffness (N·m/rad or N/m) and viscosity (per speed)."""
        self._claim()
        for j, (spring, k, c) in enumerate(zip(self._springs, stiffness, viscosity,
                                               strict=True)):
            spring.setStiffness(float(k))
            spring.setViscosity(float(c))
            self._spring_values[j, :2] = float(k), float(c)
        self._forces_changed()

    def set_spring_rest(self, rest):
        """Per spring coordinate: the rest value, held until changed."""
        self._claim()
        for j, (spring, r) in enumerate(zip(self._springs, rest, strict=True)):
            spring.setRestLength(float(r))
            self._spring_values[j, 2] = float(r)
        self._forces_changed()

    def set_controls(self, controls):
        """Actuator controls (excitations or normalised torques), held for the step."""
        self._claim(controls=False)
        controls = np.ascontiguousarray(controls, dtype=np.float64)
        self.model.setDefaultControls(osim.Vector.createFromMat(controls))
        self.buf[self._s_ctrl] = controls
        self._forces_changed()

    def step(self, controls=None):
        """Integrate one control step; raises SimulationError on integrator failure.

        With a minimum step, the integrator takes steps its error estimate rejects, and
        with stiff muscles or contacts that can diverge within a control step (measured:
        6 and 13 of 3,000 random-action steps of MuscleRunningImitation2D-v0 at 1.25 and
        1.5 ms, none without a minimum), or end it with a coordinate acceleration beyond
        ``max_acceleration`` (fully excited muscles on the 2D walk, palsy and locked-knee
        models, within 4-8 steps at 1.5 ms). Such a step is integrated once more from its
        start without the minimum, on a fresh integrator that carries on without it for
        a while: the state that diverged is a stiff one, and with the minimum back on
        at once the next steps diverged too (11 of the next 20 in a probed running
        episode). The minimum comes back :data:`MIN_STEP_HOLD` s later (on a fresh
        integrator), and each further retry in the episode doubles the wait, because a
        stiff phase passes: kept off until the reset instead, fully excited muscles ran
        16-62% of the steps of 600-step random runs without it."""
        if controls is not None:
            self.set_controls(controls)
        self._claim()
        if self._min_step_back_at is not None \
                and self.state.getTime() >= self._min_step_back_at - 1e-9:
            self._continue_from(self.state, min_step_on=True)
            self._min_step_back_at = None
        t_next = self.state.getTime() + self.control_dt
        start = self.snapshot() if self._min_step_on else None
        self.last_step_retried = False
        failure = self._integrate_to(t_next, bounded=start is not None)
        if failure is not None and start is not None:
            self._continue_from(self._full_state(start), min_step_on=False)
            self.last_step_retried = True
            self.retried_steps += 1
            self._episode_retries += 1
            self._min_step_back_at = t_next + MIN_STEP_HOLD * 2 ** (self._episode_retries - 1)
            failure = self._integrate_to(t_next)
            if failure is not None:
                failure = f"{failure} (integrated again without the minimum step)"
        if failure is not None:
            raise SimulationError(failure)

    def _integrate_to(self, t_next, bounded: bool = False) -> str | None:
        """Advance the current integrator to ``t_next`` and read; the failure, or None
        (``bounded``: an acceleration beyond ``max_acceleration`` is one)."""
        t0 = time.perf_counter()
        try:
            self.state = self._manager.integrate(t_next)
        except Exception as exc:  # Simbody reports failures as RuntimeError
            return f"integrator failed at t={t_next:.4f}s: {exc}"
        finally:
            self.integrate_seconds += time.perf_counter() - t0
        self.read()
        if not np.isfinite(self.buf).all():
            return f"non-finite state at t={t_next:.4f}s"
        if bounded and np.abs(self.buf[self._s_qdd]).max() > self.max_acceleration:
            return (f"a coordinate acceleration beyond {self.max_acceleration:g} at "
                    f"t={t_next:.4f}s with the minimum step")
        return None

    def read(self):
        """Fill ``buf`` from the current state (realizes it to Acceleration)."""
        self._claim()
        s, m, b = self.state, self.model, self.buf
        m.realizeAcceleration(s)
        b[self._s_time] = s.getTime()
        b[self._s_q] = s.getQ().to_numpy()[self._q_idx]
        b[self._s_qd] = s.getU().to_numpy()[self._u_idx]
        b[self._s_qdd] = s.getUDot().to_numpy()[self._u_idx]
        for i, body in enumerate(self._bodies):
            self._bpos[i] = body.getPositionInGround(s).to_numpy()
            self._bvel[i] = body.getLinearVelocityInGround(s).to_numpy()
        b[self._s_com] = m.calcMassCenterPosition(s).to_numpy()
        b[self._s_comv] = m.calcMassCenterVelocity(s).to_numpy()
        if self.muscles:
            b[self._s_exc] = b[self._s_ctrl][: len(self.muscles)] if len(
                self.actuator_names) == len(self.muscles) else [
                mu.getExcitation(s) for mu in self.muscles]
            y = s.getY().to_numpy()
            if self._act_in_y:
                b[self._s_act] = y[self._act_idx]
            else:
                b[self._s_act] = [mu.getActivation(s) for mu in self.muscles]
            if self._len_in_y:
                b[self._s_len] = y[self._len_idx]
                b[self._s_vel] = s.getYDot().to_numpy()[self._len_idx]
            else:
                b[self._s_len] = [mu.getFiberLength(s) for mu in self.muscles]
                b[self._s_vel] = [mu.getFiberVelocity(s) for mu in self.muscles]
            if self.energetics:
                b[self._s_ffor] = [mu.getActiveFiberForce(s) for mu in self.muscles]
                b[self._s_flm] = [mu.getActiveForceLengthMultiplier(s) for mu in self.muscles]
        self._contact_rows(s, self._grf)
        if self.limit_forces:
            b[self._s_lim] = [f.calcLimitForce(s) for f in self.limit_forces]

    def integrate_raw(self, n_steps, controls):
        """Physical limit: ``n_steps`` bare Manager.integrate calls, nothing read."""
        self.set_controls(controls)
        t = self.state.getTime()
        for _ in range(n_steps):
            t += self.control_dt
            self.state = self._manager.integrate(t)

    def _posed_state(self, q, qdot):
        """The model's working State at coordinates ``q``/``qdot`` (model order; locked
        coordinates at their locked values, muscles at their defaults), realized to
        Velocity. Not a copy: a State copied from a realized one keeps OpenSim's lazily
        cached frame transforms of the pose it was copied at until it has been realized
        and changed once more, so bodies read on a fresh copy (those that muscles or
        contacts had touched: pelvis, femurs, tibias, calcanei) sat at the default pose
        with zero velocity, while the centre of mass (Simbody's own cache) was right."""
        s = self.state_from_coordinates(q, qdot, equilibrate=False)   # claims the model
        w = self.model.updWorkingState()
        w.setTime(s.getTime())
        w.setY(s.getY())
        self.model.realizeVelocity(w)
        return w

    def kinematics(self, q, qdot):
        """Body positions/velocities (n_body, 3) and COM position/velocity (3,) in ground
        for given coordinates, with exactly the quantities ``read`` extracts."""
        s = self._posed_state(q, qdot)
        pos = np.array([b.getPositionInGround(s).to_numpy() for b in self._bodies])
        vel = np.array([b.getLinearVelocityInGround(s).to_numpy() for b in self._bodies])
        com = self.model.calcMassCenterPosition(s).to_numpy()
        comv = self.model.calcMassCenterVelocity(s).to_numpy()
        return pos, vel, com, comv

    def vertical_grf(self, q, qdot):
        """Total vertical contact force (N) for given coordinates, muscles at default.
        On the posed working State, like :meth:`kinematics`; the contact forces were
        right on a copied State as well (Hunt-Crossley and smooth spheres: equal values)."""
        s = self._posed_state(q, qdot)
        self.model.realizeDynamics(s)
        total = 0.0
        for f, idx in zip(self.contact_forces, self._contact_idx):
            rv = f.getRecordValues(s)
            total += np.array([rv.get(k) for k in range(rv.size())])[idx[:, 1]].sum()
        return total

    def gravity_stiffness(self):
        """Per coordinate, in coordinate order: m·g·h (N·m/rad), the gravitational torque
        per radian that the joint must resist when the model stands on the bodies
        distal to it, at the default pose: m is the mass the joint carries (everything
        but the child body's subtree) and h the height of that mass's centre above the
        joint. About 0 for the root's coordinates, whose subtree is the whole model."""
        model, s = self.model, osim.State(self.default_state)
        model.realizePosition(s)
        children: dict[str, list[str]] = {}
        for joint in model.getJointSet():
            parent = joint.getParentFrame().findBaseFrame().getName()
            children.setdefault(parent, []).append(joint.getChildFrame().findBaseFrame().getName())
        bodies = {b.getName(): b for b in model.getBodySet()}
        mass = {n: b.getMass() for n, b in bodies.items()}
        com = {n: b.findStationLocationInGround(s, b.getMassCenter()).to_numpy()
               for n, b in bodies.items()}
        total_m = sum(mass.values())
        total_mc = sum(mass[n] * com[n] for n in bodies)

        def subtree(name):
            out, stack = [], [name]
            while stack:
                n = stack.pop()
                out.append(n)
                stack.extend(children.get(n, []))
            return [n for n in out if n in bodies]

        k = np.zeros(len(self.coordinates))
        for j, c in enumerate(self.coordinates):
            joint = c.getJoint()
            sub = subtree(joint.getChildFrame().findBaseFrame().getName())
            m = total_m - sum(mass[n] for n in sub)
            if m <= 1e-9 or not self.rotational[j]:
                continue
            c_sup = (total_mc - sum(mass[n] * com[n] for n in sub)) / m
            h = c_sup[1] - joint.getChildFrame().getPositionInGround(s).to_numpy()[1]
            k[j] = m * GRAVITY * max(h, 0.0)
        return k

    def joint_inertia(self):
        """Diagonal of the mass matrix at the default pose, in coordinate order
        (kg·m² for rotations, kg for translations): each joint's effective inertia."""
        s = osim.State(self.default_state)
        self.model.realizePosition(s)
        M = osim.Matrix()
        self.model.getMatterSubsystem().calcM(s, M)
        return np.array([M.get(int(i), int(i)) for i in self._u_idx])

    # ------------------------------------------------------------------ rendering
    def visual_geometry(self) -> dict:
        """What a renderer draws, read from the model once.

        ``frames``: the paths of the frames that carry something to draw (every body,
        and any offset frame a mesh hangs on); ``meshes``: (frame index, ``.vtp`` file
        name, scale factors) of each visible attached ``Mesh``; ``bare_bodies``: frame
        indices of bodies (ground excluded) with no mesh, drawn as simple shapes;
        ``spheres``: per contact (a foot of ``contact_names``), (frame index, centre in
        that frame, radius) of its contact spheres (where its ground reaction acts).
        :meth:`frame_transforms` returns the frames' poses in this order.
        """
        model = self.model
        frames, index = [], {}

        def frame_index(frame):
            path = frame.getAbsolutePathString()
            if path not in index:
                index[path] = len(frames)
                frames.append(frame)
            return index[path]

        bodies = [b for b in model.getBodySet()]
        for b in bodies:
            frame_index(b)
        meshes, carrying = [], set()
        for c in model.getComponentsList():
            if c.getConcreteClassName() != "Mesh":
                continue
            mesh = osim.Mesh.safeDownCast(c)
            if not mesh.get_Appearance().get_visible():
                continue
            frame = mesh.getFrame()
            k = frame_index(frame)
            carrying.add(frame.findBaseFrame().getAbsolutePathString())
            meshes.append((k, mesh.getGeometryFilename(),
                           np.array([mesh.get_scale_factors()[i] for i in range(3)])))
        bare = [index[b.getAbsolutePathString()] for b in bodies
                if b.getAbsolutePathString() not in carrying]
        spheres_of_body: dict[str, list] = {}
        for g in model.getContactGeometrySet():
            sphere = osim.ContactSphere.safeDownCast(g)
            if sphere is None:
                continue
            frame = sphere.getFrame()
            spheres_of_body.setdefault(frame.findBaseFrame().getName(), []).append(
                (frame_index(frame), sphere.get_location().to_numpy().copy(),
                 sphere.getRadius()))
        spheres = [[] for _ in self.contact_names]
        for f, row in zip(self.contact_forces, self._contact_row):
            if f.getConcreteClassName() == "SmoothSphereHalfSpaceForce":   # its own sphere
                sphere = osim.ContactSphere.safeDownCast(f.getConnectee("sphere"))
                spheres[row].append((frame_index(sphere.getFrame()),
                                     sphere.get_location().to_numpy().copy(),
                                     sphere.getRadius()))
                continue
            labels = [f.getRecordLabels().get(i) for i in range(f.getRecordLabels().size())]
            loaded = {labels[i].split(".")[-3] for i in foot_record_indices(labels)}
            spheres[row].extend(s for body in sorted(loaded)
                                for s in spheres_of_body.get(body, []))
        self._render_frames = frames
        return dict(frames=[f.getAbsolutePathString() for f in frames], meshes=meshes,
                    bare_bodies=bare, spheres=spheres)

    def frame_transforms(self, state=None) -> np.ndarray:
        """(n_frames, 3, 4): rotation and origin in ground of each frame of
        :meth:`visual_geometry`, at ``state`` (default: the current one), realized to
        Position here."""
        self._claim()
        s = self.state if state is None else state
        self.model.realizePosition(s)
        frames = self._render_frames
        out = np.empty((len(frames), 3, 4))
        for k, frame in enumerate(frames):
            T = frame.getTransformInGround(s)
            R = T.R()
            out[k, :, :3] = [[R.get(i, j) for j in range(3)] for i in range(3)]
            out[k, :, 3] = T.p().to_numpy()
        return out

    def muscle_paths(self, state=None) -> list[np.ndarray]:
        """Per muscle, its current path points in ground (k, 3), at ``state``."""
        self._claim()
        s = self.state if state is None else state
        self.model.realizePosition(s)
        out = []
        for m in self.muscles:
            path = m.getGeometryPath().getCurrentPath(s)
            out.append(np.array([path.get(i).getLocationInGround(s).to_numpy()
                                 for i in range(path.getSize())]).reshape(-1, 3))
        return out

    def contact_loads(self, state) -> np.ndarray:
        """(n_contact, 6) ground reaction on the feet at ``state`` (Fx, Fy, Fz, Mx, My,
        Mz per contact force, as ``buf``'s "grf"), for states that were not stepped
        (a reference pose); realizes ``state`` to Dynamics."""
        self._claim()
        self.model.realizeDynamics(state)
        return self._contact_rows(state, np.zeros((len(self.contact_names), 6)))

    def _contact_rows(self, state, out):
        """Fill ``out`` (n_contact, 6) with each foot's load at ``state`` (Dynamics)."""
        for f, idx, row, first in zip(self.contact_forces, self._contact_idx,
                                      self._contact_row, self._contact_first):
            load = f.getRecordValues(state).getAsVector().to_numpy()[idx].sum(axis=0)
            if first:
                out[row] = load
            else:
                out[row] += load
        return out

    def posed_state(self, q, qdot=None):
        """The model's working State at coordinates ``q``/``qdot`` (zero speeds by
        default; locked coordinates at their locked values), realized to Velocity, to
        draw a pose or read its contact loads: valid until the next call. Muscle states
        are whatever the working State holds (see ``_posed_state`` for why not a copy)."""
        self._claim()
        if not hasattr(self, "_pose_q0"):
            self._pose_q0 = self.default_state.getQ().to_numpy().copy()
            self._pose_u0 = np.zeros(self.default_state.getNU())
        free = ~self.locked
        Q, U = self._pose_q0.copy(), self._pose_u0.copy()
        Q[self._q_idx[free]] = np.asarray(q, dtype=float)[free]
        if qdot is not None:
            U[self._u_idx[free]] = np.asarray(qdot, dtype=float)[free]
        w = self.model.updWorkingState()
        w.setQ(osim.Vector.createFromMat(Q))
        w.setU(osim.Vector.createFromMat(U))
        self.model.realizeVelocity(w)
        return w


_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def shared_simulation(model_path, **settings) -> Simulation:
    """A :class:`Simulation` of ``model_path`` with ``settings`` (its keyword arguments)
    that shares its ``opensim.Model`` with any other made here with the same file and
    settings while that one lives (:meth:`Simulation.sharing_model`); the first is
    loaded as usual."""
    key = (str(model_path), *sorted((k, tuple(v) if isinstance(v, list) else v)
                                    for k, v in settings.items()))
    first = _SHARED.get(key)
    if first is not None:
        return first.sharing_model()
    sim = Simulation(model_path, **settings)
    _SHARED[key] = sim
    return sim
