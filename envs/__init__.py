"""The task suite as data: one :class:`TaskSpec` per Gymnasium ID.

A task is a model variant + a reference motion + the rules of the episode. Adding a
task means adding a spec to ``TASKS``; there is one env class
(:class:`fastenv.env.ImitationEnv`) for all of them. This package is installed as
``fastenv.envs`` and also holds the variant builders (``variants.py``) and the
generated reference motions (``references/*.npz``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TaskSpec:
    """Everything that distinguishes one task from another.

    model: variant name (see ``fastenv.envs.variants.VARIANTS``).
    actuation: "muscle" (actions are excitations in [0, 1]) or "torque" (actions in
        [-1, 1] are target joint angles over the coordinate range, PD-controlled).
    reference: shipped reference name (``references/<name>.npz``).
    planar: 2-D task (observations keep x and y of body vectors only).
    height: subject height in m (normalises GRF moments).
    min_torso_height, max_limit_force, max_acceleration: termination thresholds.
    progress_axis: ground axis of progress for the metabolic cost of transport
        (0 = forward x for gaits, 1 = vertical y for jumping).
    episode_cycles: train-mode episode length in reference cycles.
    integrator, accuracy: default physics settings, chosen per actuation from the
        integrator tables in README (``bench/integrators.py``): muscle models
        SemiExplicitEuler2 at 1e-3, torque models RungeKutta3 at 1e-3 (chosen when PD
        torques at 1e-2 diverged; with today's continuous PD RungeKutta3 at 1e-2 stays
        within 0.01 deg over 1 s, docs/physics.md, but 1e-3 is kept: the trained
        baselines ran on it).
    """

    id: str
    model: str
    actuation: str
    reference: str
    planar: bool
    height: float = 1.80
    min_torso_height: float = 0.75
    max_limit_force: float = 1000.0
    max_acceleration: float = 1e4
    progress_axis: int = 0
    episode_cycles: int = 2
    r_weights: tuple = (0.8, 0.2, 0.1)
    perturbation_force: float = 50.0
    integrator: str = "SemiExplicitEuler2"
    accuracy: float = 1e-3
    variant_params: dict = field(default_factory=dict)


#: Physics presets per actuation, chosen from measurements (docs/physics.md;
#: ``bench/integrators.py`` and ``bench/physics_presets.py``). Each is (integrator, accuracy,
#: min_step in s; 0 is no minimum). "fast" trades accuracy for speed: with the stiff Thelen muscles
#: and contacts, loosening the accuracy alone buys little (SemiExplicitEuler2 at 1e-2: 1.22x fewer
#: instructions per cycle than the default), because the error estimate keeps asking for
#: sub-millisecond steps; a minimum step caps that: 1.5 ms makes 1.67x fewer realizations on the
#: walking cycle (1.25 ms: 1.58x) at 4.2 deg from a tight run (1.25 ms: 2.7 deg). Where a step
#: diverges at the minimum, or ends beyond the task's acceleration bound, the simulation integrates
#: it again without the minimum and keeps the minimum off for ``MIN_STEP_HOLD`` s, doubling with
#: each further retry in the episode (``Simulation.step``; counts per task in docs/physics.md,
#: "Diverged steps"). The torque models' PD springs and contacts bound RungeKutta3's step by
#: stability more than by accuracy (at 1e-1 it rejected one trial step in five and still took 3
#: realizations per step, 1.38x the default's steps/s on the locked knee); SemiExplicitEuler2 takes
#: 2 per step, and with a 0.5-ms minimum it makes 2.8-3.2x fewer realizations than the default on
#: every torque task, within 1.4-2.2 deg of a tight run (locked knee 3.4 deg), with the same episode
#: ends under random actions (a 1-ms minimum made more: spurious acceleration terminations).
#: "accurate" is for checking results against the defaults.
PHYSICS = {
    "default": {"muscle": ("SemiExplicitEuler2", 1e-3, 0.0),
                "muscle_degroote": ("SemiExplicitEuler2", 1e-3, 0.0),
                "torque": ("RungeKutta3", 1e-3, 0.0)},
    "fast": {"muscle": ("SemiExplicitEuler2", 1e-2, 1.5e-3),
             "muscle_degroote": ("SemiExplicitEuler2", 1e-2, 0.0),
             "torque": ("SemiExplicitEuler2", 1e-2, 5e-4)},
    "accurate": {"muscle": ("RungeKutta3", 1e-5, 0.0),
                 "muscle_degroote": ("RungeKutta3", 1e-5, 0.0),
                 "torque": ("RungeKutta3", 1e-5, 0.0)},
}


def physics_column(actuation: str, muscle_model: str) -> str:
    """The column of :data:`PHYSICS` for a task's actuation and muscle model."""
    return "muscle_degroote" if actuation == "muscle" and muscle_model == "degroote" \
        else actuation


#: The settings a physics preset sets, in the order of its tuples.
PHYSICS_SETTINGS = ("integrator", "accuracy", "min_step")

#: ``start_settle`` default per actuation (seconds; ``bench/first_step.py``). A muscle
#: model released at a reference pose spends its first milliseconds in a transient (feet
#: accelerated at thousands of rad/s² by muscle and contact forces that the reference's
#: speeds do not balance) that made the first step cost about three average steps;
#: settled start states skip it. Without actuation during the settle a torque model's
#: feet would swing freely (ankle speeds off by 50 rad/s after 1 ms), and its first step
#: costs little more than an average one, so torque tasks start from the reference.
START_SETTLE = {"muscle": 0.002, "torque": 0.0}


def _task(actuation: str, motion: str, dim: str, **rules) -> TaskSpec:
    """One cell of the task table: {Muscle,Torque} x motion x {2D,3D}."""
    locked = motion == "lockedknee"
    name = {"walking": "Walking", "running": "Running", "jumping": "Jumping",
            "lockedknee": "LockedKnee", "palsy": "Palsy"}[motion]
    model = ("palsy3d" if motion == "palsy" else
             f"{actuation}{dim}" + ("_lockedknee" if locked else ""))
    physics = dict(zip(("integrator", "accuracy"), PHYSICS["default"][actuation][:2]))
    return TaskSpec(id=f"{actuation.capitalize()}{name}Imitation{dim.upper()}-v0",
                    model=model, actuation=actuation, reference=f"{motion}{dim}",
                    planar=dim == "2d", **physics, **rules)


# Running and jumping allow the larger forces and accelerations of impacts; jumping
# ends when the torso drops to the floor and measures its effort per metre *upwards*.
_RUNNING = dict(max_limit_force=1e4, max_acceleration=1e6)
_JUMPING = dict(max_limit_force=1e4, max_acceleration=1e6, min_torso_height=0.3,
                progress_axis=1)

TASKS: dict[str, TaskSpec] = {
    spec.id: spec for spec in (
        *(_task(act, "walking", dim) for act in ("muscle", "torque") for dim in ("2d", "3d")),
        *(_task(act, "running", dim, **_RUNNING) for act in ("muscle", "torque")
          for dim in ("2d", "3d")),
        *(_task(act, "jumping", dim, **_JUMPING) for act in ("muscle", "torque")
          for dim in ("2d", "3d")),
        *(_task(act, "lockedknee", dim) for act in ("muscle", "torque")
          for dim in ("2d", "3d")),
        _task("muscle", "palsy", "3d", height=1.61),
    )
}


# Env options (keyword arguments of every task) and their defaults.
OPTIONS = dict(
    mode="train", max_actuation=200.0, r_weights=None, use_target_obs=True, use_GRF=True,
    horizon=5, apply_perturbations=False, perturbation_force=None, log=False,
    physics="default", integrator=None, accuracy=None, min_step=None, nan_actions="raise",
    kp=None, kd=None, pd_bandwidth=None,
    model=None, reference=None, reference_options=None,
    align_ground=True, obs_dtype="float32", visualize=False, episode_seconds=None,
    start_noise=0.0, pd_targets="range", residual_range=0.5, observe_previous_actions=False,
    pd_update="continuous", start_settle=None, excitations="direct", excitation_range=0.2,
    reflex_gains=(2.5, 1.0, 1.5, 0.3),
    muscle_model="thelen", contact_model="hunt_crossley",
    reward="original", render_view=None, render_size=(640, 480), share_model=False,
    pelvis_residuals=True,
)

#: the longest action average (``horizon``, control steps): 1 s, far beyond what smooths
#: a policy's actions; a larger value would only allocate a history that large
MAX_HORIZON = 100

#: options that may change between episodes (``ImitationEnv.set_option``, a vector
#: env's ``set_attr`` and ``get_attr``); the others build the model, reference and spaces
RUNTIME_OPTIONS = ("mode", "episode_seconds", "start_noise", "log")
#: ``muscle_model`` / ``contact_model`` values (``fastenv.envs.variants`` builds them):
#: the osim-rl originals first, then the Moco model family.
MUSCLE_MODELS = ("thelen", "degroote")
CONTACT_MODELS = ("hunt_crossley", "smooth")
MODES = ("train", "test")

# the options that switch something on or off
_FLAGS = ("use_target_obs", "use_GRF", "apply_perturbations", "log", "align_ground",
          "visualize", "observe_previous_actions", "share_model", "pelvis_residuals")


#: options that only one kind of actuation reads: set on a task of the other kind they
#: would change nothing, so they are refused (``applicable_options`` drops them from a
#: training config meant for every task)
ACTUATION_OPTIONS = {
    "torque": ("pd_targets", "residual_range", "kp", "kd", "pd_bandwidth", "pd_update",
               "pelvis_residuals"),
    "muscle": ("excitations", "excitation_range", "reflex_gains", "muscle_model"),
}


#: options read only with another option at one of these values (``residual_range`` only
#: scales residual PD targets, ...): set away from their defaults without it they would
#: change nothing, so they are refused too
DEPENDENT_OPTIONS = {
    "residual_range": ("pd_targets", ("residual",)),
    "excitation_range": ("excitations", ("residual", "reflex")),
    "reflex_gains": ("excitations", ("reflex",)),
    "perturbation_force": ("apply_perturbations", (True,)),
    # the bandwidth sets the default kp (and so kd = 2 sqrt(kp I)); a given kp leaves it
    # nothing to set
    "pd_bandwidth": ("kp", (None,)),
    # the task's model variant is built without the pelvis actuators; a given model is not
    "pelvis_residuals": ("model", (None,)),
}
#: reflex gains beyond these act in the frontal plane (k_list, k_step), which a planar
#: model does not have
PLANAR_REFLEX_GAINS = 4


def _ignored_reasons(task: TaskSpec, options: dict) -> dict[str, str]:
    """{option: why ``task`` would ignore it} for the options in ``options`` set away
    from their defaults that it does not read."""
    other = "muscle" if task.actuation == "torque" else "torque"
    why = {k: f"to {other} tasks" for k in ACTUATION_OPTIONS[other]
           if k in options and not _same(options[k], OPTIONS[k])}
    for k, (switch, values) in DEPENDENT_OPTIONS.items():
        setting = options.get(switch, OPTIONS[switch])
        if (k not in why and k in options and not _same(options[k], OPTIONS[k])
                and not any(_same(setting, v) for v in values)):
            why[k] = (f"with {switch}={values[0]!r}" if len(values) == 1 else
                      f"with {switch} in {list(values)}") + f", not {setting!r}"
    return why


def inapplicable_options(task: TaskSpec, options: dict) -> list[str]:
    """The options in ``options`` set away from their defaults that ``task`` does not
    read: those of the other actuation (:data:`ACTUATION_OPTIONS`) and those whose
    switch is off (:data:`DEPENDENT_OPTIONS`)."""
    return list(_ignored_reasons(task, options))


def _frontal_gains_on_a_plane(task: TaskSpec, options: dict) -> bool:
    """Frontal-plane reflex gains (``reflex_gains[4:]``, not 0) for a planar task."""
    gains = options.get("reflex_gains", OPTIONS["reflex_gains"])
    return (task.planar and isinstance(gains, (list, tuple))
            and len(gains) > PLANAR_REFLEX_GAINS
            and any(g != 0 for g in gains[PLANAR_REFLEX_GAINS:]))


def applicable_options(task: TaskSpec, options: dict) -> dict:
    """``options`` without those ``task`` does not read: a training config's options
    for every task (the packaged ``[task]`` tables), or a run saved before such options
    were refused, in which they had no effect. Frontal-plane reflex gains are left out
    for a planar task, which never read them (its first four gains are kept)."""
    drop = set(inapplicable_options(task, options))
    kept = {k: v for k, v in options.items() if k not in drop}
    if "reflex_gains" in kept and _frontal_gains_on_a_plane(task, kept):
        kept["reflex_gains"] = list(kept["reflex_gains"][:PLANAR_REFLEX_GAINS])
    return kept


#: Options of a reference made from a motion file (the env option ``reference_options``,
#: keyword arguments of :func:`fastenv.references.reference_from_motion`) and their defaults.
REFERENCE_OPTIONS = dict(cycle=None, treadmill_speed=0.0, lowpass_hz=6.0, negate=())


def check_reference_options(options) -> dict:
    """``options`` (a dict or None) over :data:`REFERENCE_OPTIONS`, every value checked:
    ``cycle`` None/``"once"`` (play the motion once), ``"auto"`` (detect a gait cycle
    and loop it) or a ``(t0, t1)`` window in s; ``treadmill_speed`` a belt speed in
    m/s within [0, 10]; ``lowpass_hz`` a cut-off frequency > 0 or None; ``negate`` the
    coordinates whose sign the file has the other way round (a list of names)."""
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise ValueError(f"reference_options must be a dict with keys from "
                         f"{sorted(REFERENCE_OPTIONS)}, got {options!r}")
    unknown = sorted(set(options) - set(REFERENCE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reference option(s) {unknown}; valid: "
                         f"{sorted(REFERENCE_OPTIONS)}")
    opts = {**REFERENCE_OPTIONS, **options}
    c = opts["cycle"]
    window = (isinstance(c, (tuple, list)) and len(c) == 2 and all(map(is_number, c))
              and c[0] < c[1])
    if not (c is None or (isinstance(c, str) and c in ("once", "auto")) or window):
        raise ValueError(f"reference option cycle must be 'auto', 'once', None or a (t0, t1) "
                         f"time window in s with t0 < t1, got {c!r}")
    v = opts["treadmill_speed"]
    if not (is_number(v) and 0 <= v <= 10):
        raise ValueError(f"reference option treadmill_speed must be a belt speed in m/s "
                         f"within [0, 10], got {v!r}")
    f = opts["lowpass_hz"]
    if not (f is None or (is_number(f) and f > 0)):
        raise ValueError(f"reference option lowpass_hz must be a cut-off frequency in Hz > 0 "
                         f"or None, got {f!r}")
    n = opts["negate"]
    if not (isinstance(n, (tuple, list)) and all(isinstance(x, str) for x in n)):
        raise ValueError(f"reference option negate must be a list of coordinate names whose "
                         f"sign the file has the other way round, got {n!r}")
    opts["negate"] = tuple(n)
    if window:
        opts["cycle"] = (float(c[0]), float(c[1]))
    return opts


def is_int(value) -> bool:
    """An integer, and not a bool (``True`` would otherwise count as 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_flag(value) -> bool:
    """True or False, or 1 or 0 (not a string: "no" is truthy, and read as a flag it
    would mean the opposite)."""
    return isinstance(value, (bool, np.bool_)) or (is_int(value) and value in (0, 1))


def is_number(value) -> bool:
    """A finite real number, not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value)))


def _same(a, b) -> bool:
    """Whether two option values are equal (arrays and lists included)."""
    try:
        return bool(np.array_equal(a, b)) if isinstance(a, list | tuple | np.ndarray) \
            else bool(a == b)
    except (TypeError, ValueError):
        return False


def _one_of(value, choices) -> bool:
    """Whether ``value`` is one of the names ``choices``; False for anything that is not
    a string (a list or an array would raise on ``in``, not name the option)."""
    return isinstance(value, str) and value in choices


def resolve_options(config=None, *, task: TaskSpec | None = None, **kwargs) -> dict:
    """Merge the original ``config=`` dict with keyword options; reject unknown names.
    With ``task``, integrator, accuracy and min_step left at None come from the
    ``physics`` preset (:data:`PHYSICS`; "default" is the task's own integrator and
    accuracy)."""
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"config must be a dict of the original package's options "
                         f"(visualize, mode, ...), got {type(config).__name__} {config!r}")
    both = sorted(k for k in set(config or {}) & set(kwargs)
                  if (config[k] is not kwargs[k]) and not _same(config[k], kwargs[k]))
    if both:
        raise ValueError(f"option(s) {both} given twice with different values, in config= "
                         f"({ {k: config[k] for k in both} }) and as keywords "
                         f"({ {k: kwargs[k] for k in both} }); expected one of them")
    opts = dict(OPTIONS)
    for source in (config or {}, kwargs):
        unknown = sorted(set(source) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; valid options: {sorted(OPTIONS)} "
                             "(a motion file's own options, such as treadmill_speed or "
                             "cycle, go in reference_options={...})")
        opts.update(source)
    if not _one_of(opts["physics"], PHYSICS):
        raise ValueError(f"physics must be one of {sorted(PHYSICS)}, got {opts['physics']!r}")
    if not _one_of(opts["muscle_model"], MUSCLE_MODELS):
        raise ValueError(f"muscle_model must be one of {list(MUSCLE_MODELS)}, "
                         f"got {opts['muscle_model']!r}")
    if not _one_of(opts["contact_model"], CONTACT_MODELS):
        raise ValueError(f"contact_model must be one of {list(CONTACT_MODELS)}, "
                         f"got {opts['contact_model']!r}")
    if task is not None:
        # explicit integrator/accuracy/min_step win over the preset
        column = physics_column(task.actuation, opts["muscle_model"])
        preset = dict(zip(PHYSICS_SETTINGS, PHYSICS[opts["physics"]][column]))
        for key in PHYSICS_SETTINGS:
            if opts[key] is None:
                opts[key] = (getattr(task, key) if opts["physics"] == "default"
                             and key != "min_step" else preset[key])
        if opts["start_settle"] is None:
            opts["start_settle"] = START_SETTLE[task.actuation]
    if opts["accuracy"] is not None and not (is_number(opts["accuracy"])
                                             and 0 < opts["accuracy"] < 1):
        raise ValueError(f"accuracy must be the integrator's relative accuracy within (0, 1) "
                         f"or None (the preset's), got {opts['accuracy']!r}")
    if opts["min_step"] is not None and not (
            is_number(opts["min_step"]) and 0 <= opts["min_step"] < 0.01):
        raise ValueError(f"min_step must be the integrator's minimum step in s within "
                         f"[0, 0.01) or None (the preset's), got {opts['min_step']!r}")
    if opts["start_settle"] is not None and not (
            is_number(opts["start_settle"]) and 0 <= opts["start_settle"] <= 0.01):
        raise ValueError(f"start_settle must be a number of seconds within [0, 0.01] or None "
                         f"(the task's default), got {opts['start_settle']!r}")
    if task is not None and task.actuation != "muscle" and opts["muscle_model"] != "thelen":
        raise ValueError(f"muscle_model={opts['muscle_model']!r} applies to muscle tasks; "
                         f"{task.id} is torque-driven (leave muscle_model at 'thelen')")
    if opts["model"] is not None and not isinstance(opts["model"], (str, os.PathLike)):
        raise ValueError(f"model must be the path of an .osim file, got {opts['model']!r}")
    if opts["model"] is not None and (opts["muscle_model"], opts["contact_model"]) != (
            MUSCLE_MODELS[0], CONTACT_MODELS[0]):
        raise ValueError(f"muscle_model/contact_model build the task's model variant; with "
                         f"your own model={str(opts['model'])!r} leave them at their defaults")
    for flag in _FLAGS:
        if not is_flag(opts[flag]):
            raise ValueError(f"{flag} must be True or False, got {opts[flag]!r}")
    if not _one_of(opts["mode"], MODES):
        raise ValueError(f"mode must be one of {MODES}, got {opts['mode']!r}")
    if not _one_of(opts["nan_actions"], ("raise", "zero")):
        raise ValueError(f"nan_actions must be 'raise' or 'zero', got {opts['nan_actions']!r}")
    if not (is_int(opts["horizon"]) and 1 <= opts["horizon"] <= MAX_HORIZON):
        raise ValueError(f"horizon must be an int in [1, {MAX_HORIZON}] (control steps "
                         f"of actions averaged), got {opts['horizon']!r}")
    if opts["observe_previous_actions"] and opts["horizon"] == 1:
        raise ValueError("observe_previous_actions=True observes the horizon - 1 actions "
                         "before this step, none with horizon=1; set horizon >= 2 or leave "
                         "observe_previous_actions off")
    if not (is_number(opts["max_actuation"]) and opts["max_actuation"] > 0):
        raise ValueError(f"max_actuation must be > 0, got {opts['max_actuation']!r}")
    if opts["r_weights"] is not None and not (
            isinstance(opts["r_weights"], (list, tuple, np.ndarray))
            and len(opts["r_weights"]) == 3 and all(is_number(w) for w in opts["r_weights"])):
        raise ValueError(f"r_weights must be [w_imitate, w_effort, w_action], "
                         f"got {opts['r_weights']!r}")
    if opts["episode_seconds"] is not None and not (
            is_number(opts["episode_seconds"]) and opts["episode_seconds"] > 0):
        raise ValueError(f"episode_seconds must be a number of seconds > 0 or None, "
                         f"got {opts['episode_seconds']!r}")
    if opts["perturbation_force"] is not None and not (
            is_number(opts["perturbation_force"]) and 0 < opts["perturbation_force"] <= 1000):
        raise ValueError(f"perturbation_force must be a force in N within (0, 1000] or None "
                         f"(the task's), got {opts['perturbation_force']!r}")
    if not (is_number(opts["start_noise"]) and 0 <= opts["start_noise"] <= 0.2):
        raise ValueError(f"start_noise must be a joint-angle standard deviation in rad "
                         f"within [0, 0.2], got {opts['start_noise']!r}")
    if not _one_of(opts["reward"], ("original", "tracking")):
        raise ValueError(f"reward must be 'original' or 'tracking', got {opts['reward']!r}")
    if not _one_of(opts["pd_targets"], ("range", "residual")):
        raise ValueError(f"pd_targets must be 'range' or 'residual', got {opts['pd_targets']!r}")
    if not _one_of(opts["excitations"], ("direct", "residual", "reflex")):
        raise ValueError(f"excitations must be 'direct', 'residual' or 'reflex', got "
                         f"{opts['excitations']!r}")
    gains = opts["reflex_gains"]
    if not (isinstance(gains, (list, tuple)) and len(gains) in (4, 6)
            and all(is_number(g) and g >= 0 for g in gains)):
        raise ValueError(f"reflex_gains must be 6 numbers >= 0 (k_length, k_velocity, "
                         f"k_trunk, trunk_rate_s, k_list, k_step; or the first 4, without "
                         f"the frontal-plane reflexes), got {gains!r}")
    if task is not None and task.actuation != "muscle" and opts["excitations"] != "direct":
        raise ValueError(f"excitations={opts['excitations']!r} applies to muscle tasks; "
                         f"{task.id} is torque-driven (see pd_targets='residual')")
    if not (is_number(opts["excitation_range"]) and 0 < opts["excitation_range"] <= 1):
        raise ValueError(f"excitation_range must be an excitation within (0, 1], got "
                         f"{opts['excitation_range']!r}")
    if not _one_of(opts["pd_update"], ("continuous", "step")):
        raise ValueError(f"pd_update must be 'continuous' or 'step', got {opts['pd_update']!r}")
    if opts["pd_bandwidth"] is not None and not (
            is_number(opts["pd_bandwidth"]) and opts["pd_bandwidth"] > 0):
        raise ValueError(f"pd_bandwidth must be a frequency in Hz > 0 or None, got "
                         f"{opts['pd_bandwidth']!r}")
    if not (is_number(opts["residual_range"]) and opts["residual_range"] > 0):
        raise ValueError(f"residual_range must be an angle in rad > 0, got "
                         f"{opts['residual_range']!r}")
    for key in ("kp", "kd"):
        # the count per actuator is checked against the model by the actuation
        v = opts[key]
        values = v if isinstance(v, (list, tuple, np.ndarray)) else [v]
        if v is not None and not (len(values) and all(is_number(g) and g >= 0
                                                      for g in np.ravel(values))):
            raise ValueError(f"{key} must be a gain >= 0 (one for every actuator, or a list "
                             f"of one per actuator) or None (load-scaled), got {v!r}")
    if task is not None and (why := _ignored_reasons(task, opts)):
        groups: dict[str, list[str]] = {}
        for k, reason in why.items():
            groups.setdefault(reason, []).append(f"{k}={opts[k]!r}")
        raise ValueError("; ".join(f"{', '.join(keys)}: {'applies' if len(keys) == 1 else 'apply'}"
                                   f" {reason}" for reason, keys in groups.items())
                         + f"; {task.id}"
                         + (f" is {task.actuation}-driven and" if any(
                             r.startswith("to ") for r in groups) else "")
                         + " would ignore " + ("it" if len(why) == 1 else "them"))
    if task is not None and _frontal_gains_on_a_plane(task, opts):
        raise ValueError(f"reflex_gains={list(opts['reflex_gains'])!r}: k_list and k_step "
                         f"act in the frontal plane and {task.id} is planar; give the "
                         f"first {PLANAR_REFLEX_GAINS} gains")
    ref = opts["reference"]
    if ref is not None and not (isinstance(ref, (str, os.PathLike)) or hasattr(ref, "playback")):
        raise ValueError(f"reference must be a shipped reference's name, the path of a "
                         f".mot/.sto/.npz file or a Reference, got {ref!r}")
    if opts["reference_options"] is not None:   # a dict, checked (an array: refused there)
        check_reference_options(opts["reference_options"])
    if opts["reference_options"]:
        if ref is None or os.path.splitext(str(ref))[1].lower() not in (".mot", ".sto"):
            what = ("the task's shipped reference" if ref is None else f"Reference {ref.name!r}"
                    if hasattr(ref, "playback") else repr(str(ref)))
            raise ValueError(f"reference_options apply to a motion-file reference "
                             f"(reference='<file>.mot' or .sto), got {what}")
    if not _one_of(opts["obs_dtype"], ("float32", "float64")):
        raise ValueError(f"obs_dtype must be 'float32' or 'float64', got {opts['obs_dtype']!r}")
    return opts
