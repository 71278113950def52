"""Actuation: how a smoothed action drives the model, and what the effort costs.

Muscle tasks send excitations; torque tasks send target joint angles that PD
controllers track with torques. Both have one interface, so the env steps either
without branching: ``action_space``; ``controls(smoothed, reference_q, frame)`` before
the control step (``smoothed`` is the (1, n_actions) moving average of the last
actions, ``reference_q`` the reference's coordinates at the end of the step, ``frame``
that reference step); and ``effort_cost()`` after it, the cost in the reward's effort
term exp(-cost).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from fastenv import kernels, metabolic

#: Below this speed of progress (m/s) the cost of transport divides by it instead, so
#: standing still or moving backwards does not make the cost explode.
MIN_PROGRESS_SPEED = 0.1


class Actuation:
    """The common interface (see the module docstring)."""

    action_space: gym.spaces.Box

    @property
    def n_actions(self) -> int:
        return self.action_space.shape[0]

    def controls(self, smoothed: np.ndarray, reference_q: np.ndarray, frame: int) -> np.ndarray:
        raise NotImplementedError

    def effort_cost(self) -> float:
        raise NotImplementedError

    def idle(self):
        """No drive until the next ``controls``: called at reset, so that the start
        state's observation (its accelerations) does not depend on how the previous
        episode ended."""
        self.sim.set_controls(np.zeros(self.sim.n_controls))

    def effort_record(self) -> dict:
        """What the last step's effort was made of, for episode logs and evaluation."""
        raise NotImplementedError

    def start_excitation(self, frame: int):
        """Muscle excitations a start state at reference step ``frame`` is built and
        settled with (its activations), or None for the model's defaults."""
        return None


class MuscleActuation(Actuation):
    """``excitations="direct"`` (the original tasks): actions are muscle excitations in
    [0, 1], sent to the model as they are. ``"residual"``: actions in [-1, 1] are
    corrections of ``excitation_range`` times the action to the reference's own
    excitations at the end of the step (those of the Moco solution the reference is a
    state trajectory of, :attr:`fastenv.references.Reference.excitation`), clipped to
    [0, 1]; a zero action plays that solution's excitations open loop. ``"reflex"``:
    the residual excitations plus spinal-like feedback around the reference
    (:class:`Reflex`), so that a zero action tracks the reference closed loop, as the
    PD does for torque tasks. How many excitations the last step clipped is in the
    effort record (``excitation_clipped``).

    Effort: the metabolic cost of transport, Umberger (2003) whole-body metabolic power
    (``kernels.metabolic_rate``) per body weight and speed of progress along the task's
    ``progress_axis`` (forward for gaits, upward for jumping), so faster gaits are not
    penalised for spending more energy per second.
    """

    def __init__(self, sim, task, options, reference=None):
        n = sim.n_controls
        if n != len(sim.muscle_names):
            raise ValueError(f"muscle task needs a model whose actuators are all muscles; "
                             f"{sim.model_path} has {n} controls and "
                             f"{len(sim.muscle_names)} muscles")
        self.sim = sim
        self.progress_axis = task.progress_axis
        self.residual = options["excitations"] in ("residual", "reflex")
        self.reflex = None
        if self.residual:
            self.reference = reference
            self.feedforward = reference_excitations(reference, sim.muscle_names)
            self.excitation_range = float(options["excitation_range"])
            self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
            if options["excitations"] == "reflex":
                self.reflex = Reflex(sim, reference, self.feedforward, options["reflex_gains"])
        else:
            self.action_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.muscle_constants = metabolic.muscle_constants(sim.model, sim.default_state)
        self._rate = np.zeros(1)
        self._excitation = np.zeros(n)
        self._clipped = 0

    def _feedforward_at(self, frame):
        """The feed-forward excitations (model muscle order) at reference step ``frame``."""
        return self.feedforward[self.reference.index(frame)[0]]

    def start_excitation(self, frame):
        return self._feedforward_at(frame) if self.residual else None

    def controls(self, smoothed, reference_q=None, frame=None):
        if not self.residual:
            return smoothed[0]
        ref = self._feedforward_at(frame)
        u = self._excitation
        np.multiply(smoothed[0], self.excitation_range, out=u)
        u += ref
        if self.reflex is not None:
            # the feedback acts on the state now, against the reference at this instant
            u += self.reflex.feedback(frame - 1)
        self._clipped = int(np.count_nonzero((u < 0.0) | (u > 1.0)))
        np.clip(u, 0.0, 1.0, out=u)
        return u

    def effort_cost(self) -> float:
        sim, b, L = self.sim, self.sim.buf, self.sim.layout
        c = self.muscle_constants
        rows = [b[L.slice(k)][None, :] for k in ("excitation", "activation", "fiber_length",
                                                 "fiber_velocity", "active_fiber_force",
                                                 "active_fl_multiplier")]
        kernels.metabolic_rate(*rows, c.opt_fiber_length, c.max_contraction_velocity,
                               c.muscle_mass, c.slow_twitch_ratio, c.basal_rate_W, self._rate)
        v = b[L.slice("com_vel")][self.progress_axis]
        return float(self._rate[0] / (sim.body_weight * max(v, MIN_PROGRESS_SPEED)))

    def effort_record(self) -> dict:
        record = {"metabolic_power": float(self._rate[0])}   # W, whole body
        if self.residual:
            record["excitation_clipped"] = self._clipped
        return record


class Reflex:
    """Spinal-like feedback around the reference for ``excitations="reflex"``.

    Each muscle's excitation rises with its fibre's stretch and lengthening speed
    beyond the reference's at the same instant (a stretch reflex: the muscle resists
    what moves the joint away from the reference), and the hip muscles of the loaded
    leg answer the pelvis's tilt away from the reference's (a trunk reflex: the stance
    hip rights the pelvis, which the joint reflexes alone let the whole body pitch
    over). On a 3D model two frontal-plane terms keep the side-to-side balance that
    the sagittal ones leave to chance: the stance hip's ab- and adductors answer the
    pelvis's list (a lateral trunk reflex), and the swing hip's place the swing foot
    toward the side the centre of mass drifts to, faster than the reference's (foot
    placement, the main way people keep lateral balance in walking). With
    ``reflex_gains`` = (k_length, k_velocity, k_trunk, trunk_rate_s[, k_list, k_step]):

        e_m += k_length * (l_m - l_ref,m) / l_opt,m
             + k_velocity * (v_m - v_ref,m) / (v_max,m * l_opt,m)
             + w_load(m) * k_trunk * sign(r_flex,m) * (tilt_err + trunk_rate_s * tilt_rate_err)
             + w_load(m) * k_list * s(m) * sign(r_add,m) * (list_err + trunk_rate_s * list_rate_err)
             - (1 - w_load(m)) * k_step * s(m) * sign(r_add,m) * com_z_speed_err

    l, v: fibre length and velocity (``Simulation.buf``); l_ref, v_ref: the same at the
    reference's state with the feed-forward's activations; r_flex, r_add: the muscle's
    moment arms about its side's hip flexion and adduction at the reference's first
    frame (hip muscles: over 5 mm); w_load: that foot's share of the vertical ground
    reaction (0 in flight); s: +1 on the right, -1 on the left (the two hips' adduction
    axes point opposite ways); com_z_speed_err: the centre of mass's lateral speed (m/s,
    +z to the right) minus the reference's. A hip torque acts on the pelvis with the
    opposite sign, so a positive tilt error is answered by the stance hip's muscles of
    positive moment arm, which turn the pelvis back (and the other way round). Without
    the last two gains (the 4-gain form) or on a model without ``pelvis_list`` the
    frontal-plane terms are off. The state is read at the start of the 10-ms control
    step and the excitations held through it: a delay of 0-10 ms (plus activation
    dynamics), shorter than the spinal reflexes' 20-40 ms.
    """

    def __init__(self, sim, reference, feedforward, gains):
        self.sim, self.reference = sim, reference
        gains = [float(g) for g in gains] + [0.0] * (6 - len(gains))
        (self.k_length, self.k_velocity, self.k_trunk, self.trunk_rate_s, self.k_list,
         self.k_step) = gains
        muscles = sim.muscles
        self.opt_length = np.array([m.getOptimalFiberLength() for m in muscles])
        self.max_speed = self.opt_length * np.array(
            [m.getMaxContractionVelocity() for m in muscles])
        n = reference.n_frames
        self.ref_length = np.empty((n, len(muscles)))
        self.ref_speed = np.empty((n, len(muscles)))
        for f in range(n):
            state = sim.state_from_coordinates(reference.q[f], reference.qdot[f],
                                               activation=feedforward[f])
            sim.model.realizeVelocity(state)
            self.ref_length[f] = [m.getFiberLength(state) for m in muscles]
            self.ref_speed[f] = [m.getFiberVelocity(state) for m in muscles]
            if f == 0:
                start = state   # the pose the hip moment arms are taken at
        names = sim.coordinate_names
        if "pelvis_tilt" not in names:
            raise ValueError(f"excitations='reflex' needs a pelvis_tilt coordinate; "
                             f"{sim.model_path} has {names}")
        self.tilt = names.index("pelvis_tilt")
        # frontal plane: a 3D model (pelvis list, hip adduction) and gains for it
        self.frontal = "pelvis_list" in names and bool(self.k_list or self.k_step)
        self.list = names.index("pelvis_list") if self.frontal else None
        # each muscle's side, the foot that loads it, and its hip moment arms' signs
        feet = list(sim.contact_names)
        self.foot = np.empty(len(muscles), dtype=np.intp)
        coords = sim.model.getCoordinateSet()
        self.hip_sign = np.zeros(len(muscles))
        self.adduction_sign = np.zeros(len(muscles))   # s(m) * sign(r_add,m)

        def arm_sign(muscle, coordinate):
            arm = muscle.getGeometryPath().computeMomentArm(start, coords.get(coordinate))
            return np.sign(arm) if abs(arm) > 0.005 else 0.0

        for i, m in enumerate(muscles):
            side = m.getName()[-2:]
            foot = [j for j, c in enumerate(feet) if c.endswith(side)]
            if side not in ("_r", "_l") or len(foot) != 1 or f"hip_flexion{side}" not in names:
                raise ValueError(f"excitations='reflex' needs muscles named *_r / *_l with a "
                                 f"foot and a hip_flexion coordinate on their side; muscle "
                                 f"{m.getName()!r}, feet {feet}")
            self.foot[i] = foot[0]
            self.hip_sign[i] = arm_sign(m, f"hip_flexion{side}")
            if self.frontal and f"hip_adduction{side}" in names:
                self.adduction_sign[i] = (1.0 if side == "_r" else -1.0) * arm_sign(
                    m, f"hip_adduction{side}")
        L = sim.layout
        self._length, self._speed = L.slice("fiber_length"), L.slice("fiber_velocity")
        self._q, self._qdot, self._grf = L.slice("q"), L.slice("qdot"), L.slice("grf")
        self._com_speed = L.slice("com_vel")
        self._out = np.empty(len(muscles))
        self._tmp = np.empty(len(muscles))

    def feedback(self, step: int) -> np.ndarray:
        """The excitation added to each muscle at env step ``step`` of the reference
        (this instant), from the state in ``sim.buf``."""
        b, out, tmp = self.sim.buf, self._out, self._tmp
        frame = self.reference.index(step)[0]
        direction = self.reference.direction(step)   # a mirror reference's way back
        np.subtract(b[self._length], self.ref_length[frame], out=out)
        out /= self.opt_length
        out *= self.k_length
        np.multiply(self.ref_speed[frame], direction, out=tmp)
        np.subtract(b[self._speed], tmp, out=tmp)
        tmp /= self.max_speed
        tmp *= self.k_velocity
        out += tmp
        if self.k_trunk or self.frontal:
            load = np.maximum(b[self._grf].reshape(-1, 6)[:, 1], 0.0)
            total = load.sum()
            ref, q, qdot = self.reference, b[self._q], b[self._qdot]
            if self.k_trunk and total > 1e-6:
                j = self.tilt
                error = (q[j] - ref.q[frame, j]
                         + self.trunk_rate_s * (qdot[j] - direction * ref.qdot[frame, j]))
                np.multiply(self.hip_sign, load[self.foot], out=tmp)
                tmp *= self.k_trunk * error / total
                out += tmp
            if self.frontal:
                share = load[self.foot] / total if total > 1e-6 else np.zeros_like(out)
                j = self.list
                list_error = (q[j] - ref.q[frame, j]
                              + self.trunk_rate_s * (qdot[j] - direction * ref.qdot[frame, j]))
                drift = b[self._com_speed][2] - ref.com_velocity_at(step)[2]
                tmp[:] = self.k_list * list_error * share
                tmp -= self.k_step * drift * (1.0 - share)
                tmp *= self.adduction_sign
                out += tmp
        return out


def reference_excitations(reference, muscle_names) -> np.ndarray:
    """The reference's excitations (frames, muscles) in the model's muscle order."""
    name = getattr(reference, "name", None)
    if reference is None or reference.excitation is None:
        raise ValueError(f"excitations='residual' needs a reference with the excitations of "
                         f"its Moco solution (Reference.excitation; every shipped reference "
                         f"has them, jumping3d those of jumping2d); reference {name!r} has none")
    missing = [m for m in muscle_names if m not in reference.muscle_names]
    if missing:
        raise ValueError(f"reference {name!r} has no excitations for muscles {missing} of "
                         f"the model (it has {list(reference.muscle_names)})")
    cols = [list(reference.muscle_names).index(m) for m in muscle_names]
    return np.ascontiguousarray(reference.excitation[:, cols], dtype=float)


class PDActuation(Actuation):
    """Actions in [-1, 1] are target angles, tracked by PD torques limited to
    ±``max_actuation`` (``kernels.pd_control``).

    ``pd_targets="range"`` (the original tasks): the action spans each actuated
    coordinate's whole range, -1 the lower limit and +1 the upper. ``"residual"``: the
    target is the reference's angle at the end of the step plus ``residual_range``
    (rad) times the action, so a zero action asks for the reference, the same action
    means the same offset on every joint and both legs, and the policy learns
    corrections instead of the motion itself.

    ``pd_update="continuous"`` (default): the PD law is a spring-damper on each actuated
    coordinate (``Simulation.set_spring_rest``) that the integrator evaluates at every
    stage, as a simulator's position actuator is. Its rest angle is chosen at the start
    of the step so that the torque there is the PD torque limited to ±max_actuation
    (within the step the torque follows the spring). The stance leg needs stiff joints
    (about m·g·h per radian at the ankle, ~740 N·m/rad) that a PD held for 10 ms
    cannot have on a light swing foot without going unstable; continuously evaluated,
    it can. ``"step"`` (the original package's): torques computed once per step, held by
    the model's coordinate actuators.

    Controls are the held torques over ``max_actuation`` (zero in continuous mode, where
    the springs act). Effort: the RMS of the step-start torques over ``max_actuation``
    (``kernels.torque_cost``). ``torque`` and ``target`` hold the last step's values.
    """

    def __init__(self, sim, task, options, reference=None):
        cn = sim.coordinate_names
        self.sim = sim
        self.coordinates = np.array([cn.index(a) for a in sim.actuator_names], dtype=np.intp)
        self.lower = np.ascontiguousarray(sim.coordinate_range[self.coordinates, 0])
        self.upper = np.ascontiguousarray(sim.coordinate_range[self.coordinates, 1])
        self.max_actuation = float(options["max_actuation"])
        self.residual = options["pd_targets"] == "residual"
        self.residual_range = float(options["residual_range"])
        self.continuous = options["pd_update"] == "continuous"
        if self.continuous and sim.spring_coordinates != list(sim.actuator_names):
            raise ValueError(f"pd_update='continuous' needs a Simulation built with "
                             f"coordinate_springs={list(sim.actuator_names)}, got "
                             f"{sim.spring_coordinates}")
        # the interval the kernel maps [-1, 1] onto: fixed, or moving with the reference
        self._low, self._high = self.lower.copy(), self.upper.copy()
        self.kp, self.kd = self._gains(options)
        self._springs_idle = True
        if self.continuous:
            self.idle()
        n = sim.n_controls
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        self.torque = np.zeros((1, n))
        self.target = np.zeros((1, n))
        self._zero = np.zeros(n)
        self._cost = np.zeros(1)

    def _gains(self, options):
        """Default gains: critically damped joints, stiff enough to carry their load.

        kp = w^2 I (+ 2 m g h in continuous mode) and kd = 2 sqrt(kp I), with
        w = 2 pi pd_bandwidth, I the joint's effective inertia (mass-matrix diagonal at
        the default pose) and m g h the gravitational stiffness of the load the joint
        carries in stance (``Simulation.gravity_stiffness``; an inverted pendulum needs
        kp > m g h to stand, the factor 2 is the margin). Inertia alone gives the ankle
        ~5 N·m/rad where stance needs ~740; the held (``"step"``) law keeps it, as
        stiffer gains on the 15 g·m² foot are unstable when held for 10 ms.
        Scalars or per-actuator arrays in ``kp``/``kd`` override them.
        """
        n = len(self.coordinates)
        bandwidth = options["pd_bandwidth"]
        if bandwidth is None:
            bandwidth = PD_BANDWIDTH[options["pd_update"]]
        w = 2 * np.pi * float(bandwidth)
        inertia = self.sim.joint_inertia()[self.coordinates]
        kp = w * w * inertia
        if self.continuous:
            kp = kp + 2.0 * self.sim.gravity_stiffness()[self.coordinates]
        gains = []
        for key, default in (("kp", kp), ("kd", None)):
            v = options[key]
            if v is None:
                g = default if default is not None else 2.0 * np.sqrt(gains[0] * inertia)
            else:
                g = np.asarray(v, dtype=float)
            if g.ndim == 0:
                g = np.full(n, float(g))
            if g.shape != (n,) or not np.all(np.isfinite(g)) or np.any(g < 0):
                raise ValueError(f"{key} must be a non-negative scalar or {n} values "
                                 f"(actuators {self.sim.actuator_names}), got {v!r}")
            gains.append(np.ascontiguousarray(g, dtype=float))
        return gains

    def controls(self, smoothed, reference_q=None, frame=None):
        b, L = self.sim.buf, self.sim.layout
        q = b[L.slice("q")][self.coordinates][None, :]
        qdot = b[L.slice("qdot")][self.coordinates][None, :]
        if self.residual:
            centre = reference_q[self.coordinates]
            np.subtract(centre, self.residual_range, out=self._low)
            np.add(centre, self.residual_range, out=self._high)
        kernels.pd_control(smoothed, self._low, self._high, q, qdot, self.kp, self.kd,
                           self.max_actuation, self.torque, self.target)
        if not self.continuous:
            return self.torque[0] / self.max_actuation
        if self._springs_idle:
            self.sim.set_spring_gains(self.kp, self.kd)
            self._springs_idle = False
        # the rest angle at which the spring's torque now equals the limited PD torque
        kp = self.kp
        stiff = kp > 0
        rest = np.where(stiff, q[0] + (self.torque[0] + self.kd * qdot[0])
                        / np.where(stiff, kp, 1.0), self.target[0])
        self.sim.set_spring_rest(rest)
        return self._zero

    def idle(self):
        super().idle()
        if self.continuous:
            zero = np.zeros(len(self.coordinates))
            self.sim.set_spring_gains(zero, zero)
            self._springs_idle = True

    def effort_cost(self) -> float:
        kernels.torque_cost(self.torque, self.max_actuation, self._cost)
        return float(self._cost[0])

    def effort_record(self) -> dict:
        return {"torque": self.torque[0].copy(), "target": self.target[0].copy()}


#: pd_update -> the default pd_bandwidth (Hz) of its gains (``PDActuation._gains``).
PD_BANDWIDTH = {"continuous": 6.0, "step": 3.0}

#: TaskSpec.actuation -> its class.
ACTUATIONS = {"muscle": MuscleActuation, "torque": PDActuation}


def make_actuation(sim, task, options, reference=None) -> Actuation:
    """The actuation of ``task`` on ``sim`` with the env's resolved ``options`` (and its
    prepared ``reference``, whose excitations residual excitations correct)."""
    if task.actuation not in ACTUATIONS:
        raise ValueError(f"unknown actuation {task.actuation!r}; known: {sorted(ACTUATIONS)}")
    return ACTUATIONS[task.actuation](sim, task, options, reference)
