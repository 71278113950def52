"""The seed-style baseline: MuscleWalkingImitation2D computed the way osim-rl did it.

This env exists for ``fastenv.benchmark``: it answers "how fast was this task before
fastenv?" with a faithful, working implementation of the *same* task (same model
file, same prepared reference, same integrator, accuracy and 10 ms control step,
the same 152 observation elements and the same reward formula) written in the style
of the original BioImitation-Gym/osim-rl packages:

* actions reach the model through a ``PrescribedController`` holding one ``Constant``
  per actuator, updated with ``setValue`` every step;
* every step creates a new ``opensim.Manager`` and integrates one control step;
* after every step the whole state is described element by element into nested dicts
  (``coordinate.getValue``, ``body.getTransformInGround(s).p()[i]``, velocities and
  accelerations of every body, ``getRecordValues`` of every force, muscle getters
  one by one, the centre of mass); the observation and the reward are read from
  those dicts;
* the reference is a pandas DataFrame indexed by time and looked up by the
  simulation time every step;
* the metabolic cost comes from OpenSim's ``Umberger2010MuscleMetabolicsProbe``
  (configured like fastenv's kernel, which equals the probe to rounding);
* every reset builds a fresh State with ``model.initializeState()``, sets the
  reference coordinates and calls ``model.equilibrateMuscles``.

Physics agree with :class:`fastenv.env.ImitationEnv`: on the same state the
observations agree to rounding, and so does the first control step from it (both
integrate it with a freshly started integrator). Later steps differ only because a new
Manager restarts the error-controlled integrator's step-size sequence every 10 ms
(fastenv keeps one Manager per episode): the trajectories differ by the integrator's
error, which shrinks with ``accuracy`` (tests/test_benchmark.py).
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import opensim

from fastenv.envs import TASKS, resolve_options
from fastenv.metabolic import AEROBIC_FACTOR, BASAL_COEFFICIENT, BASAL_EXPONENT, slow_twitch_ratio
from fastenv.sim.simulation import INTEGRATORS, contact_foot

opensim.Logger.setLevelString("error")

PELVIS_TRANSLATIONS = ("pelvis_tx", "pelvis_ty", "pelvis_tz")
SEED_STYLE_OPTIONS = ("mode", "reference", "integrator", "accuracy", "r_weights", "horizon",
                      "use_target_obs", "use_GRF", "obs_dtype", "align_ground")


def prepared_reference(task, options):
    """The reference exactly as ImitationEnv prepares it for this task and model.

    Preparation (kinematics recomputed on the model, ground alignment) is data
    preparation, not stepping: the original packages read an already prepared file.
    Borrowing fastenv's result guarantees both envs imitate the very same numbers.
    """
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, **options)
    try:
        return env.reference, list(env.observation_names)
    finally:
        env.close()


class SeedStyleEnv(gym.Env):
    """MuscleWalkingImitation2D-v0 stepped and observed in the osim-rl style.

    Options are a subset of ImitationEnv's (``SEED_STYLE_OPTIONS``) with the same
    defaults; ``observation_names`` lists the elements in ImitationEnv's order.
    """

    metadata = {"render_modes": []}

    def __init__(self, task: str = "MuscleWalkingImitation2D-v0", **kwargs):
        unknown = sorted(set(kwargs) - set(SEED_STYLE_OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; the seed-style env takes "
                             f"{list(SEED_STYLE_OPTIONS)}")
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
        spec = self.spec_task = TASKS[task]
        if spec.actuation != "muscle":
            raise ValueError(f"the seed-style env reproduces muscle tasks only, {task!r} is "
                             f"{spec.actuation}-driven")
        opts = self.options = resolve_options(task=spec, **kwargs)
        if opts["integrator"] not in INTEGRATORS:
            raise ValueError(f"unknown integrator {opts['integrator']!r}")
        self.mode = opts["mode"]
        w = opts["r_weights"] if opts["r_weights"] is not None else spec.r_weights
        self.w_imitate, self.w_effort, self.w_action = (float(x) for x in w)
        self.stepsize = 0.01
        self.integrator_accuracy = float(opts["accuracy"])
        self.integrator_method = INTEGRATORS[opts["integrator"]]
        self.horizon = int(opts["horizon"])

        ref_opts = {k: opts[k] for k in ("reference", "align_ground", "use_target_obs",
                                         "use_GRF")}
        reference, fastenv_names = prepared_reference(task, ref_opts)
        self.playback = reference.playback
        if self.playback not in ("loop", "once"):
            raise ValueError(f"seed-style env plays 'loop' or 'once' references, "
                             f"{reference.name!r} is {self.playback!r}")
        self.n_frames = reference.n_frames
        self.cycle_steps = reference.cycle_steps

        # --- model: osim-rl's OsimModel ---------------------------------------------
        from fastenv.envs.variants import variant_path
        self.model_path = str(variant_path(spec.model, **spec.variant_params))
        self.model = opensim.Model(self.model_path)
        self.brain = opensim.PrescribedController()
        self.muscleSet = self.model.getMuscles()
        self.forceSet = self.model.getForceSet()
        self.bodySet = self.model.getBodySet()
        self.jointSet = self.model.getJointSet()
        self.actuatorSet = self.model.getActuators()
        for j in range(self.actuatorSet.getSize()):
            func = opensim.Constant(0.0)
            self.brain.addActuator(self.actuatorSet.get(j))
            self.brain.prescribeControlForActuator(self.actuatorSet.get(j).getName(), func)
        self.model.addController(self.brain)
        self.probe = opensim.Umberger2010MuscleMetabolicsProbe()
        self.probe.setName("metabolics")
        self.probe.set_aerobic_factor(AEROBIC_FACTOR)
        self.probe.set_basal_coefficient(BASAL_COEFFICIENT)
        self.probe.set_basal_exponent(BASAL_EXPONENT)
        self.model.addProbe(self.probe)
        for i in range(self.muscleSet.getSize()):
            name = self.muscleSet.get(i).getName()
            self.probe.addMuscle(name, slow_twitch_ratio(name))
        self.state = self.model.initSystem()
        self.noutput = self.actuatorSet.getSize()
        self.manager = None
        self.mass = self.model.getTotalMass(self.state)
        self.weight = self.mass * -self.model.getGravity().get(1)

        # --- names, in the model's set order ---------------------------------------
        coords = self.model.getCoordinateSet()
        self.coordinate_names = [coords.get(i).getName() for i in range(coords.getSize())]
        self.free = [c for c in self.coordinate_names
                     if not coords.get(c).getLocked(self.state)]
        self.pos_coords = [c for c in self.free if c not in PELVIS_TRANSLATIONS]
        self.imitate_coords = [c for c in self.free if coords.get(c).getMotionType() == 1]
        self.coord_joint = {}                     # coordinate -> (joint, index in joint)
        for j in range(self.jointSet.getSize()):
            joint = self.jointSet.get(j)
            for k in range(joint.numCoordinates()):
                self.coord_joint[joint.get_coordinates(k).getName()] = (joint.getName(), k)
        self.body_names = [self.bodySet.get(i).getName() for i in range(self.bodySet.getSize())]
        self.muscle_names = [self.muscleSet.get(i).getName()
                             for i in range(self.muscleSet.getSize())]
        self.lopt = {m: self.muscleSet.get(m).getOptimalFiberLength() for m in self.muscle_names}
        self.contacts = {}            # foot -> [(force name, force/torque idx lists)]
        self.limit_force_names = []
        for i in range(self.forceSet.getSize()):
            force = self.forceSet.get(i)
            cls = force.getConcreteClassName()
            if cls == "CoordinateLimitForce":
                self.limit_force_names.append(force.getName())
            elif cls in ("HuntCrossleyForce", "SmoothSphereHalfSpaceForce",
                         "ElasticFoundationForce"):
                labels = force.getRecordLabels()
                idx = {"force": [], "torque": []}
                for k in range(labels.size()):
                    parts = labels.get(k).split(".")
                    if len(parts) >= 3 and parts[-3] not in ("ground", "platform") \
                            and parts[-2] in idx:
                        idx[parts[-2]].append(k)
                # fastenv's models give each sphere its own force ("foot_r:r_heel"):
                # a foot's forces are summed, as the per-foot forces of osim-rl were.
                foot = contact_foot(force.getName())
                self.contacts.setdefault(foot, []).append((force.getName(), idx))
        self.axes = 2 if spec.planar else 3

        # --- reference as a DataFrame indexed by time ------------------------------
        import pandas as pd
        columns = {}
        names = list(reference.coordinate_names)
        for c in self.coordinate_names:
            columns[f"q/{c}"] = reference.q[:, names.index(c)]
            columns[f"qdot/{c}"] = reference.qdot[:, names.index(c)]
            columns[f"q_offset/{c}"] = np.full(self.n_frames, reference.q_offset[names.index(c)])
        for a, ax in enumerate("xyz"):
            columns[f"com/{ax}"] = reference.com_pos[:, a]
            columns[f"com_offset/{ax}"] = np.full(self.n_frames, reference.pos_offset[a])
        time = np.round(np.arange(self.n_frames) * self.stepsize, 10)
        self.ref = pd.DataFrame(columns, index=pd.Index(time, name="time"))

        self.observation_names = self._observation_names()
        if self.observation_names != fastenv_names:
            raise RuntimeError("seed-style observation layout differs from ImitationEnv's")
        dtype = np.float32 if opts["obs_dtype"] == "float32" else np.float64
        self.observation_space = gym.spaces.Box(-np.inf, np.inf,
                                                (len(self.observation_names),), dtype)
        self.action_space = gym.spaces.Box(0.0, 1.0, (self.noutput,), np.float32)
        self.start_frame = 0
        self.istep = 0
        self.history = [None] * self.horizon
        self.prev_action = np.zeros(self.noutput)
        self.state_desc = None

    # ------------------------------------------------------------------ OsimModel
    def actuate(self, action):
        """Excitations into the controller's Constant functions, one by one."""
        functions = self.brain.get_ControlFunctions()
        for j in range(functions.getSize()):
            func = opensim.Constant.safeDownCast(functions.get(j))
            func.setValue(float(action[j]))

    def integrate(self):
        """One control step with a new Manager (osim-rl's reset_manager + integrate)."""
        manager = opensim.Manager(self.model)
        manager.setIntegratorMethod(self.integrator_method)
        manager.setIntegratorAccuracy(self.integrator_accuracy)
        manager.initialize(self.state)
        self.manager = manager   # integrate() returns a State the Manager owns
        self.state = self.manager.integrate(self.stepsize * (self.istep + 1))

    def compute_state_desc(self):
        """Everything about the state, queried element by element into nested dicts."""
        s, model = self.state, self.model
        model.realizeAcceleration(s)
        res = {"joint_pos": {}, "joint_vel": {}, "joint_acc": {}}
        for i in range(self.jointSet.getSize()):
            joint = self.jointSet.get(i)
            name = joint.getName()
            n = joint.numCoordinates()
            res["joint_pos"][name] = [joint.get_coordinates(k).getValue(s) for k in range(n)]
            res["joint_vel"][name] = [joint.get_coordinates(k).getSpeedValue(s)
                                      for k in range(n)]
            res["joint_acc"][name] = [joint.get_coordinates(k).getAccelerationValue(s)
                                      for k in range(n)]
        for key in ("body_pos", "body_vel", "body_acc", "body_pos_rot", "body_vel_rot",
                    "body_acc_rot"):
            res[key] = {}
        for i in range(self.bodySet.getSize()):
            body = self.bodySet.get(i)
            name = body.getName()
            res["body_pos"][name] = [body.getTransformInGround(s).p()[k] for k in range(3)]
            res["body_vel"][name] = [body.getVelocityInGround(s).get(1).get(k)
                                     for k in range(3)]
            res["body_acc"][name] = [body.getAccelerationInGround(s).get(1).get(k)
                                     for k in range(3)]
            res["body_pos_rot"][name] = [
                body.getTransformInGround(s).R().convertRotationToBodyFixedXYZ().get(k)
                for k in range(3)]
            res["body_vel_rot"][name] = [body.getVelocityInGround(s).get(0).get(k)
                                         for k in range(3)]
            res["body_acc_rot"][name] = [body.getAccelerationInGround(s).get(0).get(k)
                                         for k in range(3)]
        res["forces"] = {}
        for i in range(self.forceSet.getSize()):
            force = self.forceSet.get(i)
            values = force.getRecordValues(s)
            res["forces"][force.getName()] = [values.get(k) for k in range(values.size())]
        res["muscles"] = {}
        for i in range(self.muscleSet.getSize()):
            muscle = self.muscleSet.get(i)
            res["muscles"][muscle.getName()] = {
                "excitation": muscle.getExcitation(s),
                "activation": muscle.getActivation(s),
                "fiber_length": muscle.getFiberLength(s),
                "fiber_velocity": muscle.getFiberVelocity(s),
                "fiber_force": muscle.getFiberForce(s),
            }
        res["misc"] = {
            "mass_center_pos": [model.calcMassCenterPosition(s)[k] for k in range(3)],
            "mass_center_vel": [model.calcMassCenterVelocity(s)[k] for k in range(3)],
            "mass_center_acc": [model.calcMassCenterAcceleration(s)[k] for k in range(3)],
            "metabolic_rate": self.probe.getProbeOutputs(s).get(0),
        }
        return res

    def get_state_desc(self):
        if self.state_desc is None:
            self.state_desc = self.compute_state_desc()
        return self.state_desc

    # ------------------------------------------------------------------ reference
    def reference_at(self, t):
        """Reference row for simulation time ``t`` (DataFrame lookup by time)."""
        k = int(round(t / self.stepsize)) + self.start_frame
        if self.playback == "loop":
            frame, cycles = k % self.n_frames, k // self.n_frames
        else:
            frame, cycles = min(k, self.n_frames - 1), 0
        row = self.ref.iloc[self.ref.index.get_indexer([frame * self.stepsize],
                                                       method="nearest")[0]]
        q = {c: row[f"q/{c}"] + cycles * row[f"q_offset/{c}"] for c in self.coordinate_names}
        qdot = {c: row[f"qdot/{c}"] for c in self.coordinate_names}
        com = [row[f"com/{ax}"] + cycles * row[f"com_offset/{ax}"] for ax in "xyz"]
        return q, qdot, com

    # ------------------------------------------------------------------ observation
    def _observation_names(self):
        names = ["phase"]
        names += [f"q/{c}" for c in self.pos_coords]
        names += [f"qdot/{c}" for c in self.free]
        names += [f"qddot/{c}" for c in self.free]
        if self.options["use_target_obs"]:
            names += [f"target_q/{c}" for c in self.pos_coords]
            names += [f"target_qdot/{c}" for c in self.free]
        axes = "xyz"[: self.axes]
        names += [f"body_pos_rel_pelvis/{b}.{ax}" for b in self.body_names if b != "pelvis"
                  for ax in axes]
        names += [f"body_vel/{b}.{ax}" for b in self.body_names for ax in axes]
        names += [f"activation/{m}" for m in self.muscle_names]
        names += [f"norm_fiber_length/{m}" for m in self.muscle_names]
        names += [f"norm_fiber_velocity/{m}" for m in self.muscle_names]
        if self.options["use_GRF"]:
            comps = ("Fx", "Fy", "Mz") if self.axes == 2 else ("Fx", "Fy", "Fz", "Mx", "My",
                                                               "Mz")
            names += [f"grf/{c}.{k}" for c in self.contacts for k in comps]
        return names

    def coordinate(self, d, key, c):
        joint, k = self.coord_joint[c]
        return d[key][joint][k]

    def grf(self, d, foot):
        """Force (3) and moment (3) of the ground on the bodies of ``foot``."""
        force, torque = [0.0] * 3, [0.0] * 3
        for name, idx in self.contacts[foot]:
            values = d["forces"][name]
            for a in range(3):
                force[a] += sum(values[i] for i in idx["force"][a::3])
                torque[a] += sum(values[i] for i in idx["torque"][a::3])
        return force + torque

    def get_observation(self):
        d = self.get_state_desc()
        t = self.state.getTime()
        k = self.start_frame + int(round(t / self.stepsize))
        obs = [(k % self.cycle_steps) / self.cycle_steps]
        obs += [self.coordinate(d, "joint_pos", c) for c in self.pos_coords]
        obs += [self.coordinate(d, "joint_vel", c) for c in self.free]
        obs += [self.coordinate(d, "joint_acc", c) for c in self.free]
        if self.options["use_target_obs"]:
            q, qdot, _ = self.reference_at(t + self.stepsize)
            obs += [q[c] for c in self.pos_coords]
            obs += [qdot[c] for c in self.free]
        pelvis = d["body_pos"]["pelvis"]
        for b in self.body_names:
            if b != "pelvis":
                obs += [d["body_pos"][b][a] - pelvis[a] for a in range(self.axes)]
        for b in self.body_names:
            obs += [d["body_vel"][b][a] for a in range(self.axes)]
        obs += [d["muscles"][m]["activation"] for m in self.muscle_names]
        obs += [d["muscles"][m]["fiber_length"] / self.lopt[m] for m in self.muscle_names]
        obs += [d["muscles"][m]["fiber_velocity"] / self.lopt[m] for m in self.muscle_names]
        if self.options["use_GRF"]:
            wh = self.weight * self.spec_task.height
            keep = (0, 1, 5) if self.axes == 2 else range(6)
            for c in self.contacts:
                g = self.grf(d, c)
                obs += [g[i] / (self.weight if i < 3 else wh) for i in keep]
        return np.array(obs, dtype=self.observation_space.dtype)

    # ------------------------------------------------------------------ reward, done
    def get_reward(self, action):
        d = self.get_state_desc()
        q_ref, _, com_ref = self.reference_at(self.state.getTime())
        mse = sum((self.coordinate(d, "joint_pos", c) - q_ref[c]) ** 2
                  for c in self.imitate_coords) / len(self.imitate_coords)
        com = d["misc"]["mass_center_pos"]
        com_err = sum((com[a] - com_ref[a]) ** 2 for a in range(self.axes))
        imitation = (0.5 + self.w_imitate) * math.exp(-30.0 * mse) * math.exp(-20.0 * com_err)
        speed = d["misc"]["mass_center_vel"][self.spec_task.progress_axis]
        cost = d["misc"]["metabolic_rate"] / (self.weight * max(speed, 0.1))
        effort = math.exp(-cost)
        smoothness = math.exp(-math.sqrt(sum((a - p) ** 2
                                             for a, p in zip(action, self.prev_action))))
        total = imitation + self.w_effort * effort + self.w_action * smoothness
        return total, dict(total=total, imitation=imitation, effort=effort,
                           smoothness=smoothness, joint_mse=mse, com_error=com_err,
                           effort_cost=cost)

    def is_done(self):
        d = self.get_state_desc()
        t = self.spec_task
        if d["body_pos"]["torso"][1] < t.min_torso_height:
            return True
        if any(abs(d["forces"][f][0]) > t.max_limit_force for f in self.limit_force_names):
            return True
        return any(abs(a) > t.max_acceleration for acc in d["joint_acc"].values()
                   for a in acc)

    def episode_steps(self):
        if self.playback == "once":
            return self.n_frames - 1 - self.start_frame
        return self.spec_task.episode_cycles * self.cycle_steps

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "start_frame" in options:
            start = int(options.pop("start_frame"))
            if not 0 <= start < self.n_frames:
                raise ValueError(f"start_frame must be in [0, {self.n_frames}), got {start}")
        elif self.mode == "train":
            half = max(1, self.cycle_steps // 2)
            start = int(self.np_random.integers(0, min(half, self.n_frames)))
        else:
            start = 0
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}")
        self.start_frame, self.istep = start, 0
        q, qdot, _ = self.reference_at(0.0)
        self.state = self.model.initializeState()
        coords = self.model.getCoordinateSet()
        for c in self.free:
            coords.get(c).setValue(self.state, q[c], False)
            coords.get(c).setSpeedValue(self.state, qdot[c])
        self.model.equilibrateMuscles(self.state)
        self.state.setTime(0)
        self.manager = None
        self.history = [None] * self.horizon
        self.prev_action = np.zeros(self.noutput)
        self.state_desc = None
        obs = self.get_observation()
        return obs, {"phase": float(obs[0]), "frame": start}

    def step(self, action):
        a = np.asarray(action)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}; expected {self.action_space.shape}")
        a = np.clip(a.astype(np.float64), 0.0, 1.0)
        # moving average of the last `horizon` actions, kept in a ring and summed in
        # slot order like fastenv's kernel, so the excitations are bitwise equal
        self.history[self.istep % self.horizon] = a
        filled = min(self.istep + 1, self.horizon)
        smoothed = np.zeros(self.noutput)
        for h in self.history[:filled]:
            smoothed = smoothed + h
        smoothed = smoothed / filled
        self.actuate(smoothed)
        try:
            self.integrate()
            self.state_desc = None
            obs = self.get_observation()
            if not np.isfinite(obs).all():
                raise RuntimeError("non-finite state")
        except Exception as exc:   # Simbody reports integrator failures as RuntimeError
            self.istep += 1
            self.state_desc = None
            obs = np.zeros(self.observation_space.shape, self.observation_space.dtype)
            return obs, 0.0, False, True, {"sim_error": str(exc)}
        self.istep += 1
        reward, info = self.get_reward(a)
        self.prev_action = a
        terminated = bool(self.is_done())
        truncated = (not terminated) and self.istep >= self.episode_steps()
        info["phase"] = float(obs[0])
        return obs, float(reward), terminated, truncated, info

    def set_state(self, state, start_frame: int = 0, istep: int = 0, *, model=None):
        """Continue from the values of an OpenSim State (osim-rl's ``set_state``).

        ``model``: the model ``state`` belongs to when it is not this env's (e.g. an
        ImitationEnv's). A State cannot be used with another System (this one has a
        controller and a probe more), so values are copied by state-variable name.
        """
        if model is None:
            self.state = opensim.State(state)
        else:
            new = self.model.initializeState()
            names = model.getStateVariableNames()
            for i in range(names.getSize()):
                name = names.get(i)
                self.model.setStateVariableValue(new, name,
                                                 model.getStateVariableValue(state, name))
            new.setTime(state.getTime())
            self.state = new
        self.start_frame, self.istep = int(start_frame), int(istep)
        self.state_desc = None

    def close(self):
        self.manager = None
