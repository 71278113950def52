"""The single imitation env: one class for every task, configured by a TaskSpec.

Per step: validate the action, smooth it (moving average), turn it into controls
(excitations, or PD torques towards target angles), integrate one 10 ms control step,
then build the observation with one gather kernel over the simulation buffer and the
reward with the reward kernels. Resets restore cached compact snapshots of start
states built from the reference (reference-state initialisation without
re-equilibrating muscles; muscle tasks' start states are settled, see ``_start_state``).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from fastenv import kernels
from fastenv.actuation import make_actuation
from fastenv.envs import (  # noqa: F401
    OPTIONS,
    RUNTIME_OPTIONS,
    TASKS,
    TaskSpec,
    is_int,
    resolve_options,
)
from fastenv.errors import warn_caller
from fastenv.observation import (
    build_observation_layout,
    previous_action_names,
    task_buffer_layout,
)
from fastenv.references.prepare import prepared_reference
from fastenv.sim import Simulation, SimulationError, shared_simulation

PUSH_PROBABILITY = 0.01   # per control step between pushes: one every ~1.2 s
PUSH_STEPS = 20           # each push lasts 0.2 s


class ImitationEnv(gym.Env):
    """Imitate a reference motion with an OpenSim model (muscle- or torque-driven).

    Observation: one flat vector; ``observation_names`` names every element.
    Reward: imitation + w_effort * effort + w_action * smoothness, every term in
    ``info`` (see ``fastenv.kernels.imitation_reward``).
    Termination: torso below ``min_torso_height``, any coordinate-limit force above
    ``max_limit_force`` or coordinate acceleration above ``max_acceleration``.
    Truncation: end of the episode (train: ``episode_cycles`` reference cycles from a
    random start in the first half cycle; test: from frame 0, the same length, or the
    whole motion for a play-once reference), or a simulator failure
    (``info['sim_error']``). With a minimum integrator step (the ``fast`` preset), a
    step that diverges is integrated again without it first (``info['integrator_retry']``).
    Actions outside the action space are clipped and counted (``info['action_clipped']``).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 100}

    #: Scalar infos this env returns from every ``step``/``reset`` (name -> dtype): a
    #: vector env carries them in shared memory; any other info key (``sim_error``
    #: messages) travels with the worker's completion message.
    info_scalars = {**{term: np.float64 for term in kernels.TRACKING_REWARD_TERMS},
                    "effort_cost": np.float64, "phase": np.float64, "frame": np.int64,
                    "nan_action": np.bool_, "action_clipped": np.int64,
                    "integrator_retry": np.bool_}

    def __init__(self, task: str | TaskSpec = "MuscleWalkingImitation2D-v0", config=None,
                 render_mode: str | None = None, **kwargs):
        if isinstance(task, str):
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
            task = TASKS[task]
        self.spec_task = task
        self.options = opts = resolve_options(config, task=task, **kwargs)
        self.mode = opts["mode"]
        self.render_mode = self._render_mode(render_mode, opts)
        self._renderer = self._window = None
        w = opts["r_weights"] if opts["r_weights"] is not None else task.r_weights
        self.r_weights = tuple(float(x) for x in w)

        # --- model and simulation ----------------------------------------------
        if opts["model"] is not None:
            model_path = str(opts["model"])
        else:
            from fastenv.envs.variants import variant_path
            params = dict(task.variant_params)
            if task.actuation == "torque":
                params["max_actuation"] = float(opts["max_actuation"])
                params["pelvis_residuals"] = bool(opts["pelvis_residuals"])
            model_path = str(variant_path(task.model, muscle_model=opts["muscle_model"],
                                          contact_model=opts["contact_model"], **params))
        self.model_path = model_path
        # share_model: one opensim.Model for every env of this process with the same
        # file and settings (each its own State and integrator): bitwise the same
        # results, and faster stepped in turn, as a pool worker does
        make = shared_simulation if opts["share_model"] else Simulation
        self.sim = sim = make(model_path, integrator=opts["integrator"],
                              accuracy=opts["accuracy"], min_step=opts["min_step"],
                              max_acceleration=task.max_acceleration,
                              energetics=task.actuation == "muscle",
                              push_body="torso" if opts["apply_perturbations"] else None,
                              coordinate_springs="actuated" if (
                                  task.actuation == "torque"
                                  and opts["pd_update"] == "continuous") else ())
        cn = sim.coordinate_names
        self._free = np.flatnonzero(~sim.locked)
        # imitation compares rotations only: translations are covered by the COM term
        self._imitate_coords = np.array([j for j in self._free if sim.rotational[j]],
                                        dtype=np.intp)
        #: the coordinates the imitation reward compares (rotational, not locked)
        self.imitated_coordinates = [cn[j] for j in self._imitate_coords]
        self._axes = 2 if task.planar else 3

        # --- reference: on this model, aligned with its ground (fastenv.references.prepare;
        # shared by all envs of a process) ---------------------------------------------
        ref = opts["reference"] if opts["reference"] is not None else task.reference
        self.reference = prepared_reference(sim, ref, align_ground=opts["align_ground"],
                                            options=opts["reference_options"])
        self._check_episode_seconds()

        # --- actuation ----------------------------------------------------------
        #: muscle excitations or PD targets (``fastenv.actuation``)
        self.actuation = make_actuation(sim, task, opts, self.reference)
        self.action_space = self.actuation.action_space
        self.n_actions = n_act = self.actuation.n_actions

        # --- buffers and observation layout ---------------------------------------
        task_layout = task_buffer_layout(
            cn, previous_action_names(sim.actuator_names, opts["horizon"])
            if opts["observe_previous_actions"] else ())
        self._task_buf = np.zeros(task_layout.size)   # phase, targets, previous actions
        self._previous_actions = self._task_buf[task_layout.slice("previous_actions")]
        layout = build_observation_layout(sim, task, opts)
        self._buf = np.zeros((1, layout.buffer_size))   # [sim.buf | task buffer]
        self._src, self._ref, self._scale = layout.src, layout.ref, layout.scale
        self.observation_names = layout.names
        #: observation block name -> its slice of the observation (``fastenv.observation``)
        self.observation_blocks = layout.blocks
        dtype = np.float32 if opts["obs_dtype"] == "float32" else np.float64
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (len(self._src),), dtype)
        self._obs = np.zeros((1, len(self._src)), dtype)
        self._history = np.zeros((1, opts["horizon"], n_act))
        self._count = np.zeros(1, dtype=np.intp)
        self._smoothed = np.zeros((1, n_act))
        self._prev_action = np.zeros((1, n_act))
        #: the reward's terms, in ``info`` under these names (``reward`` option)
        self.reward_terms = (kernels.TRACKING_REWARD_TERMS if opts["reward"] == "tracking"
                             else kernels.REWARD_TERMS)
        self._terms = np.zeros((1, len(self.reward_terms)))
        self._snapshots: dict[int, object] = {}
        self._step = 0
        self._start = 0
        self._push_left = 0
        self._episode_steps: int | None = None   # set at each reset
        self._logging = False
        self.episode_log: list[dict] = []

    def set_option(self, name: str, value):
        """Change a :data:`fastenv.envs.RUNTIME_OPTIONS` option, checked as ``gym.make`` checks it;
        it applies from the next reset."""
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r}; options that can change between "
                             f"episodes: {list(RUNTIME_OPTIONS)}")
        if name not in RUNTIME_OPTIONS:
            raise ValueError(f"option {name!r} is fixed when the env is built (options that "
                             f"can change between episodes: {list(RUNTIME_OPTIONS)}); "
                             f"make a new env with {name}=...")
        self.options = resolve_options(task=self.spec_task, **dict(self.options, **{name: value}))
        if name == "mode":
            self.mode = value
        if name == "episode_seconds":
            self._check_episode_seconds()

    def get_option(self, name: str):
        """The value of env option ``name`` (as resolved: a preset's integrator, not None)."""
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r}; valid options: {sorted(OPTIONS)}")
        return self.options[name]

    # ------------------------------------------------------------------ episode
    @property
    def episode_steps(self) -> int:
        """This episode's length in control steps, fixed at its reset (an
        ``episode_seconds`` set during an episode applies from the next one)."""
        if self._episode_steps is None:
            return self._length_of_next_episode()
        return self._episode_steps

    def _asked_steps(self) -> int | None:
        """``episode_seconds`` in control steps (None: not set)."""
        seconds = self.options["episode_seconds"]
        return None if seconds is None else max(1, round(seconds / self.sim.control_dt))

    def _length_of_next_episode(self) -> int:
        ref, asked = self.reference, self._asked_steps()
        if ref.playback == "once":   # the motion's end ends the episode, if it comes first
            left = ref.n_frames - 1 - self._start
            return left if asked is None else min(asked, left)
        if asked is not None:
            return asked
        return self.spec_task.episode_cycles * ref.cycle_steps

    def _check_episode_seconds(self):
        """Warn when ``episode_seconds`` asks for more steps than a reference played once
        holds from its first frame: its episodes end where the motion does, not at a
        pose held still."""
        ref, asked = self.reference, self._asked_steps()
        if ref.playback == "once" and asked is not None and asked > ref.n_frames - 1:
            seconds = self.options["episode_seconds"]
            length = (ref.n_frames - 1) * self.sim.control_dt
            warn_caller(f"episode_seconds={seconds:g} is longer than reference {ref.name!r}, "
                        f"played once ({length:.2f} s from its first frame): its episodes "
                        "end where it ends; cycle='auto' in reference_options loops a gait")

    def _start_state(self, q, qd, frame=0):
        """The start state (compact) for reference coordinates ``q``, ``qd`` (of reference
        step ``frame``).

        ``start_settle`` = T > 0: the model is released T seconds before the frame, at
        the reference's pose moved back along its speeds (q - T·qd, qd; muscles in
        equilibrium), and simulated for T with zero controls, so that the state at the
        frame's time has passed the first milliseconds' transient (``Simulation.
        settled``); time 0 is still the frame's time. The pose then differs from the
        reference's by what those milliseconds of physics do (≤ 0.35° at 2 ms on
        walking2d), and so do the speeds of the feet (a few rad/s). T = 0: the reference
        state itself.

        With residual excitations the muscles start at the feed-forward's excitation of
        the frame as their activation, and settle under that excitation: the state of
        the Moco solution the feed-forward comes from, not the model's default 0.05."""
        settle = self.options["start_settle"]
        drive = self.actuation.start_excitation(frame)
        if not settle:
            return self.sim.compact(self.sim.state_from_coordinates(q, qd, activation=drive))
        start = self.sim.state_from_coordinates(np.asarray(q) - settle * np.asarray(qd), qd,
                                                time=-settle, activation=drive)
        return self.sim.settled(start, settle, controls=drive)

    def _snapshot(self, frame: int):
        """Cached start state for a start frame, built on first use; compact snapshots
        (about 0.5 KB each) keep memory flat however many frames are drawn."""
        snap = self._snapshots.get(frame)
        if snap is None:
            snap = self._start_state(*self.reference.coordinates_at(frame), frame)
            self._snapshots[frame] = snap
        return snap

    def build_start_states(self) -> int:
        """Build every train-mode start state now; they are otherwise built when their
        frame is first drawn, each costing about one unsettled first step (a benchmark
        that should time steps, not builds, calls this first, e.g. through
        ``OsimVectorEnv.call``). Returns how many there are."""
        half = self._train_start_frames()
        for frame in range(half):
            self._snapshot(frame)
        return half

    def _train_start_frames(self) -> int:
        """Train episodes start at a random frame of the first half cycle."""
        return min(max(1, self.reference.cycle_steps // 2), self.reference.n_frames)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options:
            unknown = sorted(set(options) - {"start_frame"})
            if unknown:
                raise ValueError(f"unknown reset option(s) {unknown}; valid: ['start_frame']")
        if options and "start_frame" in options:
            start = options["start_frame"]
            if not (is_int(start) and 0 <= start < self.reference.n_frames):
                raise ValueError(f"start_frame must be an int in [0, "
                                 f"{self.reference.n_frames}), got {start!r}")
            start = int(start)
        elif self.mode == "train":
            start = int(self.np_random.integers(0, self._train_start_frames()))
        else:
            start = 0
        self._start, self._step = start, 0
        # runtime options changed during the last episode take effect here, not mid-episode
        self._episode_steps = self._length_of_next_episode()
        self._logging = bool(self.options["log"])
        # no drive and no push from the previous episode, neither in a start state being
        # settled nor in the start state's observation (its accelerations)
        self.actuation.idle()
        self.sim.set_push(np.zeros(3)) if self.sim.push_body else None
        self._push_left = 0
        if self.options["start_noise"] > 0:
            # seeded spread around the reference pose (evaluation episodes that differ):
            # joint angles ~ N(q_ref, start_noise), not cached
            q, qd = self.reference.coordinates_at(start)
            q = q.copy()
            q[self._imitate_coords] += self.np_random.normal(
                0.0, self.options["start_noise"], len(self._imitate_coords))
            self.sim.restore(self._start_state(q, qd, start))
        else:
            self.sim.restore(self._snapshot(start))
        self._history[:] = 0.0
        self._count[:] = 0
        self._prev_action[:] = 0.0
        self.episode_log = []
        if self._logging:   # the start state (step 0), then one record per step
            self.episode_log.append(self._log_record(self.sim.buf[self.sim.layout.slice("q")],
                                                     self.reference.coordinates_at(start)[0]))
        self._write_task_buffer()
        obs = self._observe()
        info = {"phase": self._phase(), "frame": start}
        if self.render_mode == "human":
            self.render()
        return obs, info

    # ------------------------------------------------------------------ step
    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}; expected {self.action_space.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"action has dtype {a.dtype}; expected a real number dtype "
                             f"(float32 as in action_space)")
        a = a.astype(np.float64)
        bad = ~np.isfinite(a)
        if bad.any():
            if self.options["nan_actions"] == "raise":
                raise ValueError(f"action has non-finite values at indices "
                                 f"{np.flatnonzero(bad).tolist()}: {a[bad].tolist()}; pass "
                                 f"nan_actions='zero' to replace them with 0 instead")
            a[bad] = 0.0
        low, high = self.action_space.low, self.action_space.high
        # clipping is reported, not silent: Gaussian policies often sample past the bounds
        clipped = int(np.count_nonzero((a < low) | (a > high)))
        return np.clip(a, low, high), bool(bad.any()), clipped

    def _phase(self) -> float:
        ref = self.reference
        k = self._start + self._step
        return (k % ref.cycle_steps) / ref.cycle_steps

    def _write_task_buffer(self):
        """Phase and the next reference frame's coordinates (target observation)."""
        n = len(self.sim.coordinate_names)
        q, qd = self.reference.coordinates_at(self._start + self._step + 1)
        self._next_reference_q = q   # also the centre of residual PD targets
        tb = self._task_buf
        tb[0] = self._phase()
        tb[1:1 + n] = q
        tb[1 + n:1 + 2 * n] = qd
        # the actions before this step that the moving average still holds, newest
        # first (ring buffer kernels.smooth_action writes at count % horizon); zero
        # where the episode has not taken them yet
        history, count = self._history[0], int(self._count[0])
        horizon = len(history) if len(self._previous_actions) else 1
        for k in range(1, horizon):
            row = self._previous_actions[(k - 1) * self.n_actions:k * self.n_actions]
            row[:] = history[(count - k) % horizon] if count - k >= 0 else 0.0

    def _observe(self):
        L = self.sim.layout.size
        self._buf[0, :L] = self.sim.buf
        self._buf[0, L:] = self._task_buf
        if self._obs.dtype == np.float32:
            kernels.gather_observation(self._buf, self._src, self._ref, self._scale, self._obs)
        else:
            kernels.gather_observation64(self._buf, self._src, self._ref, self._scale,
                                         self._obs)
        return self._obs[0].copy()

    def step(self, action):
        if not self._started:
            raise gym.error.ResetNeeded("step() called before reset(); call reset() first")
        a, nan_flag, clipped = self._check_action(action)
        sim = self.sim
        kernels.smooth_action(self._history, self._count, a[None, :], self._smoothed)
        self._count += 1
        controls = self.actuation.controls(self._smoothed, self._next_reference_q,
                                           self._start + self._step + 1)
        if self.options["apply_perturbations"]:
            self._perturb()
        info = {}
        try:
            sim.step(controls)
        except SimulationError as exc:
            self._step += 1
            info = {"sim_error": str(exc), "phase": self._phase(), "nan_action": nan_flag,
                    "action_clipped": clipped, "integrator_retry": sim.last_step_retried}
            # the last valid observation (the previous step's, bitwise): the failed
            # state is not one, and may not be finite
            obs = self._obs[0].copy()
            if self.render_mode == "human":   # the failed step is shown too: the ghost
                self.render()                 # and the camera, the model dropped
            return obs, 0.0, False, True, info
        self._step += 1
        # reward: the model state against the reference at the same instant
        k = self._start + self._step
        q_ref, qdot_ref = self.reference.coordinates_at(k)
        L = sim.layout
        qs = sim.buf[L.slice("q")]
        com = sim.buf[L.slice("com_pos")][: self._axes]
        com_ref = self.reference.com_at(k)[: self._axes]
        w_im, w_eff, w_act = self.r_weights
        cost = np.array([self.actuation.effort_cost()])
        j = self._imitate_coords
        if self.options["reward"] == "tracking":
            kernels.tracking_reward(
                qs[j][None, :], q_ref[j][None, :], sim.buf[L.slice("qdot")][j][None, :],
                qdot_ref[j][None, :], sim.buf[L.slice("com_vel")][None, : self._axes],
                self.reference.com_velocity_at(k)[None, : self._axes], com[None, :],
                com_ref[None, :], a[None, :], self._prev_action, cost, w_im, w_eff, w_act,
                self._terms)
        else:
            kernels.imitation_reward(qs[j][None, :], q_ref[j][None, :], com[None, :],
                                     com_ref[None, :], a[None, :], self._prev_action, cost,
                                     w_im, w_eff, w_act, self._terms)
        self._prev_action[0] = a
        self._write_task_buffer()
        obs = self._observe()
        terminated = any(self.termination_causes().values())
        truncated = (not terminated) and self._step >= self.episode_steps
        reward = float(self._terms[0, 0])
        info = {name: float(v) for name, v in zip(self.reward_terms, self._terms[0])}
        info.update(effort_cost=float(cost[0]), phase=self._phase(), nan_action=nan_flag,
                    action_clipped=clipped, integrator_retry=sim.last_step_retried)
        if self._logging:
            self.episode_log.append(self._log_record(qs, q_ref, action=a.copy(),
                                                     **self.actuation.effort_record(), **info))
        if self.render_mode == "human":
            self.render()
        return obs, reward, terminated, truncated, info

    def termination_causes(self) -> dict[str, bool]:
        """Which of the task's termination rules the current state breaks: the torso
        below ``min_torso_height`` (a fall), a joint-limit force beyond
        ``max_limit_force``, a coordinate acceleration beyond ``max_acceleration``."""
        sim, t = self.sim, self.spec_task
        L = sim.layout
        torso = sim.body_names.index("torso")
        return {
            "fall": bool(sim.buf[L.slice("body_pos")][3 * torso + 1] < t.min_torso_height),
            "limit_force": bool(np.abs(sim.buf[L.slice("limit_force")]).max(initial=0.0)
                                > t.max_limit_force),
            "acceleration": bool(np.abs(sim.buf[L.slice("qddot")]).max() > t.max_acceleration)}

    def _log_record(self, q, q_ref, **extra) -> dict:
        """One ``episode_log`` entry: the state against the reference at this instant
        (coordinates in model order, centre of mass in the ground frame)."""
        sim = self.sim
        return {"step": self._step, "time": self._step * sim.control_dt, "q": q.copy(),
                "q_ref": q_ref.copy(), "com": sim.buf[sim.layout.slice("com_pos")].copy(),
                "com_ref": self.reference.com_at(self._start + self._step).copy(),
                "grf": sim.buf[sim.layout.slice("grf")].copy(),
                "state": sim.model.getStateVariableValues(sim.state).to_numpy().copy(),
                **extra}

    def write_motion(self, path) -> dict:
        """Write this episode (``log=True``) for the OpenSim GUI: ``<stem>.mot`` with the
        coordinates (degrees), ``<stem>_states.sto`` with every state variable, and
        ``<stem>.osim``, the model they belong to (fastenv.references.write_rollout)."""
        if not self._logging or not self.episode_log:
            raise ValueError("write_motion needs a recorded episode: make the env with "
                             "log=True and reset it")
        from fastenv.references import write_rollout
        log, sim = self.episode_log, self.sim
        return write_rollout(path, [r["time"] for r in log], sim.coordinate_names,
                             sim.rotational, [r["q"] for r in log], sim.state_variable_names,
                             [r["state"] for r in log], self.model_path)

    def _perturb(self):
        """Random horizontal pushes on the torso (±perturbation_force N, the option or
        else the task's, 0.2 s each)."""
        if self._push_left > 0:
            self._push_left -= 1
            if self._push_left == 0:
                self.sim.set_push(np.zeros(3))
            return
        if self.np_random.random() < PUSH_PROBABILITY:
            f = self.options["perturbation_force"] or self.spec_task.perturbation_force
            push = np.zeros(3)
            push[0] = self.np_random.uniform(-f, f)
            if not self.spec_task.planar:
                push[2] = self.np_random.uniform(-f, f)
            self.sim.set_push(push)
            self._push_left = PUSH_STEPS

    @property
    def _started(self) -> bool:
        """Whether an episode has begun: the first reset sets the next reference frame."""
        return hasattr(self, "_next_reference_q")

    @property
    def integrate_seconds(self) -> float:
        """Wall time this env has spent inside ``Manager.integrate`` (profiling)."""
        return self.sim.integrate_seconds

    def get_state(self) -> dict:
        """Picklable state of the episode in progress (simulation, action history,
        counters, RNG, the episode log, and the options changed by :meth:`set_option`,
        which the episodes to come read): :meth:`set_state` on an env built with the
        same arguments, in any process, continues it, as ``recycle_every`` does. The
        integrator restarts its step-size control, so the continuation equals the
        original within integrator accuracy, not bitwise."""
        return dict(sim=self.sim.export_state(), start=self._start, step=self._step,
                    history=self._history.copy(), count=self._count.copy(),
                    prev_action=self._prev_action.copy(), push_left=self._push_left,
                    episode_steps=self._episode_steps, rng=self.np_random.bit_generator.state,
                    options={k: self.options[k] for k in RUNTIME_OPTIONS},
                    logging=self._logging, episode_log=list(self.episode_log))

    def set_state(self, state: dict):
        if "options" in state:   # the new env was built with the options before set_option
            self.options = resolve_options(task=self.spec_task,
                                           **dict(self.options, **state["options"]))
            self.mode = self.options["mode"]
            self._logging, self.episode_log = state["logging"], list(state["episode_log"])
        self.sim.import_state(state["sim"])
        self._start, self._step = state["start"], state["step"]
        self._history[:] = state["history"]
        self._count[:] = state["count"]
        self._prev_action[:] = state["prev_action"]
        self._push_left = state["push_left"]
        self._episode_steps = state["episode_steps"]
        self.np_random.bit_generator.state = state["rng"]
        self._write_task_buffer()

    def __reduce__(self):
        """Pickling and ``copy.deepcopy``: an OpenSim model cannot be copied, so the copy
        is built again from this env's task and resolved options (in the receiving
        process) and continues the episode in progress through :meth:`set_state`, its
        episode log included (start states are built again); it then steps as this env
        would, within integrator accuracy (the integrator's step-size control restarts)."""
        episode = self.get_state() if self._started else None
        return (_rebuilt, (self.spec_task, dict(self.options), self.render_mode, self.spec,
                           episode))

    # ------------------------------------------------------------------ rendering
    def _render_mode(self, render_mode, opts):
        """Checked ``render_mode``; the original ``visualize=True`` means "human"."""
        from fastenv.render import parse_size, parse_view
        if opts["visualize"]:
            if render_mode not in (None, "human"):
                raise ValueError(f"visualize=True opens a window (render_mode='human'); "
                                 f"it contradicts render_mode={render_mode!r}")
            render_mode = "human"
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} "
                             f"or None, got {render_mode!r}")
        parse_view(opts["render_view"], self.spec_task.planar)
        parse_size(opts["render_size"])
        if render_mode == "human":
            from fastenv.render import require_display
            require_display()
        return render_mode

    @property
    def renderer(self):
        """The ``fastenv.render.Renderer`` of this env (built on first use)."""
        if self._renderer is None:
            from fastenv.render import Renderer
            self._renderer = Renderer(self.sim, planar=self.spec_task.planar,
                                      view=self.options["render_view"],
                                      size=self.options["render_size"],
                                      height=self.spec_task.height)
        return self._renderer

    def render(self):
        """The model now, its reference pose as a translucent ghost, ground reaction
        forces and (muscle tasks) muscle activations: an (H, W, 3) uint8 frame for
        ``render_mode="rgb_array"``; shown in a window (and None returned) for "human"."""
        if self.render_mode is None:
            gym.logger.warn("render() needs a render_mode: make the env with "
                            "render_mode='rgb_array' (frames) or 'human' (a window)")
            return None
        if not self._started:   # no episode yet: nothing to show
            raise gym.error.ResetNeeded("render() called before reset(); call reset() first")
        sim = self.sim
        frame = self.renderer.frame(
            ghost=self.reference.coordinates_at(self._start + self._step),
            activation=sim.buf[sim.layout.slice("activation")] if sim.muscles else None,
            grf=sim.buf[sim.layout.slice("grf")], time=self._step * sim.control_dt)
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            from fastenv.render import Window
            self._window = Window(frame.shape[1], frame.shape[0], self.metadata["render_fps"],
                                  title=self.spec_task.id)
        self._window.show(frame)
        return None

    def close(self):
        if self._window is not None:
            self._window.close()
            self._window = None
        self._snapshots.clear()


def _rebuilt(task, options, render_mode, spec, episode):
    """An :class:`ImitationEnv` unpickled (:meth:`ImitationEnv.__reduce__`)."""
    env = ImitationEnv(task, render_mode=render_mode, **options)
    env.spec = spec
    if episode is not None:
        env.set_state(episode)
    return env
