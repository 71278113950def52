"""``python -m refgen check NAME|all``: a shipped reference against human norms and its
measured source (the acceptance criteria of issue 14).

Everything is computed from the reference's ``.npz`` put on the env's own model the way
the env puts it there (:func:`fastenv.references.prepare.prepare_reference`: rebuilt if
needed, shifted onto the contact geometry), never from the JSON figures that the
generator wrote: the check has to catch a generator that reports one thing and ships
another.  The criteria, per reference:

* **measured source** (``source.*``): the public recording the reference was tracked
  from (its JSON, followed through ``sagittal_source`` for the derived 3D references),
  time-normalised over one gait cycle from right heel strike (or over the movement from
  quiet standing to the apex, for jumps); per joint the Pearson correlation and the RMS
  difference of hip flexion, knee and ankle angle, each the mean of both legs;
* **vertical GRF** (``grf.*``) of the env's contact model at the reference's poses and
  speeds, by task type (walking, running, countermovement jump);
* **centre of mass** (``com.*``): the vertical force its acceleration implies,
  body weight x (1 + a_y/g), never pulls on the ground and agrees with the contact
  model's on average;
* **coordinate limits** (``limits``): no coordinate past the onset of its
  CoordinateLimitForce, or that force small against the joint's peak moment;
* **seam** (``seam``, looping references): angle, speed and acceleration run through the
  end of the cycle into its start as smoothly as between any two frames inside it;
* **push-off** (``pushoff``, references with excitations): the passive share of the
  plantarflexors' impulse, both ankles pooled, the feed-forward excitations as activations at the
  reference's states on the env's Moco family (people push off with active muscle).

The pure computations (:func:`correlation_rms`, :func:`walking_stance`,
:func:`running_stance`, :func:`jump_figures`, :func:`implied_vertical_force`,
:func:`past_onset_deg`, :func:`seam_ratio`) take plain arrays, so the tests check each on
constructed cases; :func:`check_reference` feeds them OpenSim's figures.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from refgen import MOTIONS_ENV, REFERENCES_DIR, motion_file, motions_dir
from refgen.motion import rounded

#: The command that regenerates the committed expectations (``refgen/check_status.json``).
STATUS_COMMAND = "python -m refgen check all --json refgen/check_status.json"
#: Committed verdicts and figures of every shipped reference (the tests compare the check
#: with them; docs/tables.py writes the docs' table from them).
STATUS_FILE = Path(__file__).resolve().parent / "check_status.json"

#: Task type of each reference, by the motion part of its name (``<motion>2d``/``3d``).
#: The locked-knee and crouch gaits are walking: the walking GRF norms apply to them.
KINDS = {"walking": "walking", "lockedknee": "walking", "palsy": "walking",
         "running": "running", "jumping": "jump"}
JOINTS = {"hip": "hip_flexion", "knee": "knee_angle", "ankle": "ankle_angle"}
SIDES = ("r", "l")
#: Points of the normalised cycle or movement (0-100 %).
NORMALISED_POINTS = 101
#: A foot is on the ground above this vertical force (N), as in the pipeline's gait
#: figures (refgen.moco.CONTACT_THRESHOLD_N); a contact that never reaches
#: GRAZE_BW body weights is a swing foot brushing the floor, not a stance (palsy3d's
#: swing toes drag on it at up to 0.12 body weights; a stance carries more
#: than half the body weight).
CONTACT_N = 20.0
GRAZE_BW = 0.25

# The norms of issue 14's acceptance criteria.  Walking: vertical GRF of each foot has a
# loading and a push-off peak of 1.0-1.3 body weights with a mid-stance trough of
# 0.6-0.9 (Winter 1991, The Biomechanics and Motor Control of Human Gait; Perry 1992).
# Running: impact peak 1.5-2 and active peak about 2.5 body weights at 3-4 m/s
# (Cavanagh & Lafortune 1980, J Biomech 13:397; Munro et al. 1987, J Biomech 20:147),
# duty factor 0.3-0.4 (Novacheck 1998, Gait Posture 7:77).  Countermovement jump: the
# unloading phase falls to about 0.2-0.5 body weights, the feet do not move and the
# trunk stays upright in flight (Linthorne 2001, Am J Phys 69:1198; McMahon et al.
# 2018, Strength Cond J 40:96).
SOURCE_MIN_R = 0.9
SOURCE_MAX_RMS_DEG = 5.0
WALK_HUMP_BW = (1.0, 1.3)
WALK_TROUGH_BW = (0.6, 0.9)
RUN_IMPACT_MAX_BW = 2.2
RUN_ACTIVE_BW = (2.0, 3.0)
RUN_DUTY = (0.3, 0.4)
#: The impact peak lies in the first 20 % of a running stance (20-30 ms of 200-250 ms,
#: Cavanagh & Lafortune 1980); the active peak is the largest peak after it.
RUN_IMPACT_WINDOW = 0.2
JUMP_UNLOADING_MIN_BW = 0.2
JUMP_FOOT_TRAVEL_MAX_M = 0.02
JUMP_FLIGHT_TILT_MAX_DEG = 15.0
COM_MIN_BW = -0.05
COM_MEAN_DIFFERENCE = 0.10
LIMIT_TORQUE_SHARE = 0.05
#: People push off with active plantarflexor force (the Achilles tendon's recoil returns
#: work the fibres did); passive fibre force carries little of the ankle's moment in
#: walking (Whittington et al. 2008, Gait Posture 27:628). Before 2026-12-06 the 3D
#: solutions pushed off with the soleus's and gastrocnemius's passive force (86% of the
#: plantarflexors' impulse on walking3d, 53% running3d, 37% lockedknee3d); once the
#: Achilles tendons were preloaded 16%, 11% and 6%, and 0 on the 2D references.
PUSHOFF_PASSIVE_SHARE = 0.25
PLANTARFLEXORS = ("soleus", "gastroc")
DORSIFLEXOR = "tib_ant"
#: A seam may be this much rougher than the roughest step inside the cycle (the margin
#: tests/test_references.py allows looped motion files; see :func:`seam_ratio`).
SEAM_RATIO = 1.05


@dataclass
class Criterion:
    """One figure of a reference against its threshold: ``verdict`` is ``pass``,
    ``fail`` or ``skip`` (not applicable, or its data is missing: ``note`` says which)."""

    key: str
    label: str
    value: float | list | str | None
    threshold: str
    verdict: str
    note: str = ""
    detail: dict = field(default_factory=dict)


def _verdict(ok) -> str:
    return "pass" if bool(ok) else "fail"


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _within(x, bounds) -> bool:
    return _finite(x) and bounds[0] <= x <= bounds[1]


# ------------------------------------------------------------------ pure computations
def correlation_rms(a, b) -> tuple[float, float]:
    """Pearson correlation and RMS difference of two curves sampled at the same
    normalised times (the RMS in the curves' unit); the correlation is NaN where a
    curve is flat (it has no shape to compare)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 3:
        raise ValueError(f"correlation_rms needs two 1-D curves of the same length >= 3, "
                         f"got shapes {a.shape} and {b.shape}")
    rms = float(np.sqrt(np.mean((a - b) ** 2)))
    sa, sb = a.std(), b.std()
    if sa == 0.0 or sb == 0.0:
        return float("nan"), rms
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)), rms


def periodic_peak(x) -> float:
    """Fractional index of the largest value of a periodic signal: the sample's index
    refined by the parabola through it and its neighbours, so two cycles sampled at
    different rates align to a fraction of a frame."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    k = int(np.argmax(x))
    before, after = x[(k - 1) % n], x[(k + 1) % n]
    curvature = before - 2.0 * x[k] + after
    return float(k + (0.5 * (before - after) / curvature if curvature < 0 else 0.0))


def periodic_resample(values, start: float, points: int = NORMALISED_POINTS) -> np.ndarray:
    """A periodic signal (n frames, first axis) at ``points`` equally spaced phases of
    one cycle beginning at fractional frame ``start`` (linear interpolation)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    frames = (start + np.arange(points) * n / points) % n
    closed = np.concatenate([values, values[:1]])
    return np.interp(frames, np.arange(n + 1), closed)


def movement_resample(values, points: int = NORMALISED_POINTS) -> np.ndarray:
    """A movement (first to last frame) at ``points`` equally spaced times."""
    values = np.asarray(values, dtype=float)
    return np.interp(np.linspace(0.0, len(values) - 1.0, points), np.arange(len(values)),
                     values)


def _runs(mask, *, cyclic: bool) -> list[np.ndarray]:
    """Index arrays of the runs of True in ``mask``; with ``cyclic`` a run may wrap
    from the end into the start."""
    mask = np.asarray(mask, dtype=bool)
    n = len(mask)
    if n == 0 or not mask.any():
        return []
    if mask.all():
        return [np.arange(n)]
    origin = int(np.flatnonzero(~mask)[0]) if cyclic else 0
    order = (origin + np.arange(n)) % n if cyclic else np.arange(n)
    runs, current = [], []
    for i in order:
        if mask[i]:
            current.append(i)
        elif current:
            runs.append(np.array(current))
            current = []
    if current:
        runs.append(np.array(current))
    return runs


def contact_phases(force_bw, *, threshold_bw: float, cyclic: bool,
                   graze_bw: float = GRAZE_BW) -> list[np.ndarray]:
    """Frames of each ground contact of one foot (force in body weights above
    ``threshold_bw``); contacts whose peak stays below ``graze_bw`` are a swing foot
    brushing the floor and are left out."""
    force_bw = np.asarray(force_bw, dtype=float)
    return [run for run in _runs(force_bw > threshold_bw, cyclic=cyclic)
            if force_bw[run].max() >= graze_bw]


def brushing_peak(force_bw, *, threshold_bw: float, cyclic: bool,
                  graze_bw: float = GRAZE_BW) -> float:
    """The largest force (body weights) of the contacts that :func:`contact_phases`
    leaves out as a swing foot brushing the floor; 0 without any."""
    force_bw = np.asarray(force_bw, dtype=float)
    peaks = [force_bw[run].max() for run in _runs(force_bw > threshold_bw, cyclic=cyclic)]
    return float(max([p for p in peaks if p < graze_bw], default=0.0))


def _is_peak(f, k: int) -> bool:
    """An interior local maximum (a plateau's first sample counts)."""
    return 0 < k < len(f) - 1 and f[k] >= f[k - 1] and f[k] > f[k + 1]


def walking_stance(force_bw) -> dict:
    """Loading hump, mid-stance trough and push-off hump (body weights) of one walking
    stance's vertical force.

    The humps are the largest values of the stance's first and second halves and count
    only when they are peaks (a half that only rises or falls has none: a single
    loading peak followed by a steady decline has no push-off hump); the trough is the
    smallest value between two humps.  Absent figures are NaN.
    """
    f = np.asarray(force_bw, dtype=float)
    half = len(f) // 2
    if half < 2:
        return dict(loading_hump=float("nan"), trough=float("nan"),
                    push_off_hump=float("nan"))
    i1 = int(np.argmax(f[:half]))
    i2 = half + int(np.argmax(f[half:]))
    loading = float(f[i1]) if _is_peak(f, i1) else float("nan")
    push_off = float(f[i2]) if _is_peak(f, i2) else float("nan")
    trough = (float(f[i1:i2 + 1].min()) if _finite(loading) and _finite(push_off)
              else float("nan"))
    return dict(loading_hump=loading, trough=trough, push_off_hump=push_off)


def running_stance(force_bw, *, threshold_bw: float) -> dict:
    """Contacts, impact peak, active peak and duty factor of one foot over a running
    cycle (vertical force in body weights, periodic).

    The stance runs from the end of the foot's longest time off the ground to its last
    contact before it, so a stance split by a moment in the air is one stance of two
    contacts.  Impact peak: the largest force in the stance's first
    :data:`RUN_IMPACT_WINDOW`; active peak: the largest peak after it (NaN if the force
    only falls there).  Duty factor: the fraction of the cycle in contact.
    """
    f = np.asarray(force_bw, dtype=float)
    n = len(f)
    contacts = contact_phases(f, threshold_bw=threshold_bw, cyclic=True)
    nan = float("nan")
    if not contacts:
        return dict(contacts=0, impact_peak=nan, active_peak=nan, duty_factor=0.0)
    on = np.zeros(n, dtype=bool)
    for run in contacts:
        on[run] = True
    if on.all():
        return dict(contacts=len(contacts), impact_peak=nan, active_peak=nan,
                    duty_factor=1.0)
    swing = max(_runs(~on, cyclic=True), key=len)
    start = (int(swing[-1]) + 1) % n
    stance_on = np.roll(on, -start)
    stance = np.roll(f, -start)[:int(np.flatnonzero(stance_on)[-1]) + 1]
    k0 = max(1, int(math.ceil(RUN_IMPACT_WINDOW * len(stance))))
    peaks = [stance[k] for k in range(k0, len(stance)) if _is_peak(stance, k)]
    return dict(contacts=len(contacts), impact_peak=float(stance[:k0].max()),
                active_peak=float(max(peaks)) if peaks else nan,
                duty_factor=float(on.mean()))


def jump_figures(total_bw, com_height, toes_horizontal, pelvis_tilt_deg, *,
                 threshold_bw: float) -> dict:
    """Figures of a countermovement jump from quiet standing to the apex.

    ``total_bw`` (T,): vertical GRF of both feet (body weights); ``com_height`` (T,);
    ``toes_horizontal`` (T, feet, 2): horizontal ground positions of each foot's toe
    contact (the part that leaves the ground last); ``pelvis_tilt_deg`` (T,).
    Take-off is where the final airborne stretch (ending at the apex, the last frame)
    begins; unloading minimum: the smallest force up to the bottom of the
    countermovement (the lowest centre of mass before take-off); foot travel: the
    furthest any toe contact moves horizontally from where it stood before take-off;
    flight tilt: the largest change of pelvis tilt from take-off to the apex.
    Without a flight at the end every figure but the unloading minimum over the whole
    motion is NaN.
    """
    total = np.asarray(total_bw, dtype=float)
    com = np.asarray(com_height, dtype=float)
    toes = np.asarray(toes_horizontal, dtype=float)
    tilt = np.asarray(pelvis_tilt_deg, dtype=float)
    air = total < threshold_bw
    nan = float("nan")
    if not air[-1] or air.all():
        return dict(takeoff_frame=None, bottom_frame=int(np.argmin(com)),
                    unloading_min=float(total.min()), foot_travel=nan, flight_tilt=nan)
    takeoff = int(np.flatnonzero(~air)[-1]) + 1
    bottom = int(np.argmin(com[:takeoff]))
    travel = np.linalg.norm(toes[:takeoff] - toes[0], axis=-1).max()
    return dict(takeoff_frame=takeoff, bottom_frame=bottom,
                unloading_min=float(total[:bottom + 1].min()), foot_travel=float(travel),
                flight_tilt=float(np.abs(tilt[takeoff:] - tilt[takeoff]).max()))


def implied_vertical_force(com_vertical_velocity, dt: float, *, cyclic: bool,
                           gravity: float = 9.80665) -> np.ndarray:
    """Vertical ground force (body weights) that the centre of mass's vertical
    acceleration implies, 1 + a_y/g, with a_y the central difference of the vertical
    COM velocity (wrapping around a cycle; second-order one-sided at a movement's
    ends)."""
    v = np.asarray(com_vertical_velocity, dtype=float)
    if cyclic:
        a = (np.roll(v, -1) - np.roll(v, 1)) / (2.0 * dt)
    else:
        a = np.gradient(v, dt, edge_order=2)
    return 1.0 + a / gravity


def past_onset_deg(angle_deg, lower_deg: float, upper_deg: float) -> float:
    """How far (deg) a coordinate goes past the nearer onset of its limit force at
    its worst frame; negative: the margin it keeps inside the range."""
    angle = np.asarray(angle_deg, dtype=float)
    return float(np.maximum(lower_deg - angle, angle - upper_deg).max())


def seam_ratio(q, qdot, qddot, q_offset, dt: float) -> dict:
    """For a looping reference: how rough the seam (last frame into the next cycle's
    first) is against the roughest step inside the cycle, per quantity (the largest
    ratio over the coordinates; <= 1 where the seam is like any other step).

    A seam can sit at the most violent moment of a cycle (a running foot strike), so
    its bare step may well be the cycle's largest: angle and velocity are judged by
    how far their step departs from what their derivative predicts (the corrected
    trapezoid rule, exact for the cubic pieces the references are made of), which a
    jump breaks and a fast smooth change does not; the acceleration, whose derivative
    is not stored, by its bare step (tests/test_references.py's rule).
    """
    q, qdot, qddot = (np.asarray(x, dtype=float) for x in (q, qdot, qddot))
    closed = [np.vstack([x, x[:1] + off]) for x, off in ((q, q_offset), (qdot, 0.0),
                                                          (qddot, 0.0))]
    qc, uc, ac = closed
    mismatch = {
        "angle": np.diff(qc, axis=0) - 0.5 * dt * (uc[:-1] + uc[1:])
        + dt ** 2 / 12.0 * (ac[1:] - ac[:-1]),
        "velocity": np.diff(uc, axis=0) - 0.5 * dt * (ac[:-1] + ac[1:]),
        "acceleration": np.diff(ac, axis=0),
    }
    out = {}
    for name, r in mismatch.items():
        r = np.abs(r)
        # 1e-9: rounding, for cycles whose steps all follow their derivatives exactly
        out[name] = float((r[-1] / (r[:-1].max(axis=0) + 1e-9)).max())
    return out


# ------------------------------------------------------------------ the reference
def kind_of(name: str) -> str:
    """Task type of a reference (``walking``, ``running``, ``jump``) from its name."""
    motion = name[:-2] if name.endswith(("2d", "3d")) else name
    if motion not in KINDS:
        raise ValueError(f"reference {name!r}: expected a name <motion>2d or <motion>3d "
                         f"with motion one of {sorted(KINDS)}")
    return KINDS[motion]


def env_task(name: str):
    """The muscle-driven task that plays the reference (every shipped reference has one);
    its model variant is the env model the check uses."""
    from fastenv.envs import TASKS

    tasks = [t for t in TASKS.values() if t.reference == name]
    if not tasks:
        known = sorted({t.reference for t in TASKS.values()})
        raise ValueError(f"no task plays reference {name!r}; expected one of {known}")
    return next((t for t in tasks if t.actuation == "muscle"), tasks[0])


def _nested(doc: dict, keys: tuple):
    for k in keys:
        if not isinstance(doc, dict) or k not in doc:
            return None
        doc = doc[k]
    return doc


#: Where a reference's JSON names what it was made from, in the order tried: a tracked
#: file, the crouch-gait cycle, or the committed reference a derived one came from.
SOURCE_KEYS = (("tracking_target", "file"), ("tracking_target", "crouch_cycle", "file"),
               ("sagittal_source",), ("tracking_target", "sagittal_source"))


def _source_chain(name: str, references_dir=REFERENCES_DIR):
    """Follow a reference's JSON to what it was made from: ``(found, how, doc)`` with the
    public measured motion's file name (or None), a sentence saying how, and the JSON
    document of the reference that tracked it (None when there is none)."""
    references_dir = Path(references_dir)
    chain, current = [], name
    while True:
        path = references_dir / f"{current}.json"
        if not path.is_file():
            return None, f"no {path.name} in {references_dir}", None
        doc = json.loads(path.read_text())
        found = next((v for keys in SOURCE_KEYS if (v := _nested(doc, keys))), None)
        if not isinstance(found, str):
            return None, f"{current}.json names no tracked motion", None
        if (references_dir / f"{found}.npz").is_file():
            if found in chain + [current]:
                return None, f"{current}.json names {found} in a circle", None
            chain.append(current)
            current = found
            continue
        if (references_dir / found).is_file():
            return None, (f"{current} tracked {found}, a reference of this pipeline, not a "
                          "measured motion"), None
        via = " -> ".join(chain + [current])
        return found, (f"{via} tracked it" if chain else "tracked directly"), doc


def measured_source(name: str, references_dir=REFERENCES_DIR) -> tuple[str | None, str]:
    """The public measured motion a reference was tracked from, following derived
    references to their source (``running3d`` -> ``running2d`` -> the run), and a
    sentence saying how; None when the chain ends at one of the pipeline's own
    references (``lockedknee2d`` tracked the ``walking2d`` cycle) or names nothing."""
    found, how, _ = _source_chain(name, references_dir)
    return found, how


def _foot_sides(sim) -> list[str]:
    """The side (r/l) of each of the model's contact forces, by its name's suffix."""
    sides = []
    for n in sim.contact_names:
        side = n[-1] if n.endswith(("_r", "_l")) else None
        if side is None:
            raise ValueError(f"contact force {n!r} of {sim.model_path}: expected a name "
                             "ending in _r or _l (one contact force per foot)")
        sides.append(side)
    return sides


def foot_forces(sim, q, qdot) -> dict:
    """Vertical ground reaction (N, (T,)) on each foot from the env's contact model at
    the poses and speeds of a reference."""
    sides = _foot_sides(sim)
    loads = np.array([sim.contact_loads(sim.posed_state(qk, uk))[:, 1]
                      for qk, uk in zip(q, qdot)])
    return {s: loads[:, [i for i, x in enumerate(sides) if x == s]].sum(axis=1)
            for s in SIDES}


def limit_torques(sim, q, qdot) -> np.ndarray:
    """Torque (N·m, (T, n_limit)) of each CoordinateLimitForce at each pose and speed."""
    out = np.zeros((len(q), len(sim.limit_forces)))
    for k, (qk, uk) in enumerate(zip(q, qdot)):
        state = sim.posed_state(qk, uk)
        out[k] = [f.calcLimitForce(state) for f in sim.limit_forces]
    return out


def joint_moments(model_path, coordinate_names, q, qdot, qddot) -> np.ndarray:
    """Net generalized force (N·m or N, (T, n_coord)) at each coordinate that produces
    the reference's accelerations under gravity and the contact model's ground
    reaction (inverse dynamics with the muscles, other actuators and the coordinate
    limit forces switched off): the moment the joint's muscles must supply."""
    import opensim as osim

    model = osim.Model(str(model_path))
    for force in model.getForceSet():
        if (force.getConcreteClassName() == "CoordinateLimitForce"
                or osim.Actuator.safeDownCast(force) is not None):
            force.set_appliesForce(False)
    state = model.initSystem()
    coords = list(model.getCoordinateSet())
    if [c.getName() for c in coords] != list(coordinate_names):
        raise ValueError(f"{model_path}: coordinates {[c.getName() for c in coords]} are not "
                         f"the reference's {list(coordinate_names)}")
    u_index = []
    for c in coords:   # each coordinate's mobility: the entry of U its speed moves
        probe = osim.State(state)
        c.setLocked(probe, False)
        before = probe.getU().to_numpy().copy()
        c.setSpeedValue(probe, c.getSpeedValue(probe) + 1.0)
        u_index.append(int(np.flatnonzero(probe.getU().to_numpy() != before)[0]))
    free = [j for j, c in enumerate(coords) if not c.getLocked(state)]
    solver = osim.InverseDynamicsSolver(model)
    out = np.zeros((len(q), len(coords)))
    udot = np.zeros(state.getNU())
    for k in range(len(q)):
        for j in free:
            coords[j].setValue(state, float(q[k, j]), False)
            coords[j].setSpeedValue(state, float(qdot[k, j]))
        model.realizeVelocity(state)
        udot[:] = 0.0
        udot[u_index] = qddot[k]
        out[k] = solver.solve(state, osim.Vector.createFromMat(udot)).to_numpy()[u_index]
    return out


@dataclass
class Posed:
    """A shipped reference on the env's model, and what the check reads from it."""

    name: str
    kind: str
    task: str
    model: str
    model_path: str
    sim: object
    ref: object


def posed_reference(name: str, references_dir=REFERENCES_DIR) -> Posed:
    """Load ``<name>.npz`` from ``references_dir`` and put it on the env's model as the
    env does (rebuilt on it if made for another, ground-aligned)."""
    from fastenv.envs.variants import variant_path
    from fastenv.references import Reference
    from fastenv.references.prepare import prepare_reference
    from fastenv.sim import Simulation

    references_dir = Path(references_dir)
    path = references_dir / f"{name}.npz"
    if not path.is_file():
        names = sorted(p.stem for p in references_dir.glob("*.npz"))
        raise ValueError(f"no reference {name!r} in {references_dir}; expected one of {names}")
    kind = kind_of(name)
    task = env_task(name)
    model_path = str(variant_path(task.model, **task.variant_params))
    sim = Simulation(model_path, energetics=False)
    ref = prepare_reference(sim, Reference.load(path))
    return Posed(name, kind, task.id, task.model, model_path, sim, ref)


# ------------------------------------------------------------------ criteria
def _leg_curves(names, q, joint: str, side: str) -> np.ndarray:
    return np.degrees(q[:, list(names).index(f"{JOINTS[joint]}_{side}")])


def heel_strike_frame(ref) -> float:
    """Fractional frame of right heel strike in a cycle: where the calcaneus is
    furthest ahead of the pelvis along +x (Zeni et al. 2008), the same rule for the
    reference and its measured source."""
    b = list(ref.body_names)
    ahead = ref.body_pos[:, b.index("calcn_r"), 0] - ref.body_pos[:, b.index("pelvis"), 0]
    return periodic_peak(ahead)


def source_curves(posed: Posed, source_file: str,
                  cut_at_s: float | None = None) -> tuple[dict, dict, str]:
    """Normalised hip, knee and ankle angles (deg, per joint and side) of the reference
    and of its measured source, and how the source was cut.

    Gaits: the source is read on the env's model as a user's motion file is
    (:func:`fastenv.references.reference_from_motion`, ``cycle='auto'``: one stride
    between right heel strikes, 6 Hz low-pass); both cycles start at right heel strike
    by the same kinematic rule.  Jumps: the pipeline's own reading of the recording
    (:func:`refgen.tasks2d.jump_target`: quiet standing to the apex, legs averaged,
    half the lumbar extension in the hips), against the reference from its first frame
    to its apex.
    """
    from fastenv.references import reference_from_motion

    path = motion_file(source_file)
    ref = posed.ref
    if posed.kind == "jump":
        from refgen.tasks2d import jump_target

        target = jump_target(path)
        keep = slice(None)
        how = (f"standing {target.info['start_s']:.2f} s to apex {target.info['apex_s']:.2f} s "
               "of the recording, legs averaged")
        if cut_at_s is not None:
            keep = target.time <= cut_at_s + 1e-9
            how = (f"standing {target.info['start_s']:.2f} s to {cut_at_s:.3f} s later (where "
                   "the reference cut the recording), legs averaged")
        src = {(j, s): movement_resample(_leg_curves(target.names, target.values[keep], j, s))
               for j in JOINTS for s in SIDES}
        own = {(j, s): movement_resample(_leg_curves(ref.coordinate_names, ref.q, j, s))
               for j in JOINTS for s in SIDES}
        return own, src, how
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the motion file's columns the model lacks
        measured = reference_from_motion(path, posed.model_path, cycle="auto", sim=posed.sim)
    report = measured.figures.get("motion_file", {})
    if measured.playback != "loop":
        raise ValueError(f"{source_file}: no gait cycle found on {posed.model}")
    h_own, h_src = heel_strike_frame(ref), heel_strike_frame(measured)
    own = {(j, s): periodic_resample(_leg_curves(ref.coordinate_names, ref.q, j, s), h_own)
           for j in JOINTS for s in SIDES}
    src = {(j, s): periodic_resample(_leg_curves(measured.coordinate_names, measured.q, j, s),
                                     h_src) for j in JOINTS for s in SIDES}
    window = report.get("cycle_window_s") or [float("nan")] * 2
    how = f"stride {window[0]:.2f}-{window[1]:.2f} s of the recording"
    return own, src, how


def source_criteria(posed: Posed, references_dir=REFERENCES_DIR) -> tuple[list, dict]:
    """``source.<joint>.r`` and ``source.<joint>.rms`` (mean of both legs), or one
    skipped criterion saying why there is nothing to compare."""
    source, how, doc = _source_chain(posed.name, references_dir)
    info = dict(measured_source=source, measured_source_note=how)
    # a tracked jump cut short of the recording's apex is compared over the same window
    cut_at_s = _nested(doc, ("tracking_target", "cut_at_s")) if doc else None
    if source is None:
        return [Criterion("source", "measured source", None, "-", "skip",
                          note=f"no measured source: {how}")], info
    try:
        own, src, cut = source_curves(posed, source, cut_at_s)
    except FileNotFoundError:
        return [Criterion("source", "measured source", None, "-", "skip",
                          note=f"{source} not found in {motions_dir()} (set --motions DIR "
                               f"or ${MOTIONS_ENV})")], info
    info["measured_source_note"] = f"{how}; {cut}"
    out = []
    for joint in JOINTS:
        per_leg = {s: correlation_rms(own[joint, s], src[joint, s]) for s in SIDES}
        r = float(np.mean([per_leg[s][0] for s in SIDES]))
        rms = float(np.mean([per_leg[s][1] for s in SIDES]))
        info.setdefault("source_legs", {})[joint] = {
            s: dict(r=per_leg[s][0], rms_deg=per_leg[s][1]) for s in SIDES}
        out.append(Criterion(f"source.{joint}.r", f"{joint} correlation with source", r,
                             f">= {SOURCE_MIN_R}", _verdict(_finite(r) and r >= SOURCE_MIN_R)))
        out.append(Criterion(f"source.{joint}.rms", f"{joint} RMS vs source (deg)", rms,
                             f"<= {SOURCE_MAX_RMS_DEG:g}", _verdict(rms <= SOURCE_MAX_RMS_DEG)))
    return out, info


def _span(values) -> list | float | None:
    """[min, max] of the finite values (one number when equal); None when there are
    none."""
    values = [v for v in values if _finite(v)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    return lo if round(lo, 3) == round(hi, 3) else [lo, hi]


def grf_criteria(posed: Posed, feet: dict) -> tuple[list, dict]:
    """The vertical-GRF criteria of the reference's task type; ``feet``: each foot's
    vertical force (N) at every frame."""
    sim, ref = posed.sim, posed.ref
    bw = sim.body_weight
    f = {s: feet[s] / bw for s in SIDES}
    threshold = CONTACT_N / bw
    cyclic = ref.playback == "loop"
    brush = max(brushing_peak(f[s], threshold_bw=threshold, cyclic=cyclic) for s in SIDES)
    brushed = (f"swing foot brushes the floor at up to {brush:.2f} BW (not a stance)"
               if brush > 0 and posed.kind != "jump" else "")
    if posed.kind == "walking":
        stances = [dict(side=s, frames=[int(run[0]), int(run[-1])],
                        **walking_stance(f[s][run]))
                   for s in SIDES for run in contact_phases(f[s], threshold_bw=threshold,
                                                            cyclic=cyclic)]
        out = []
        for key, label, bounds, what in (
                ("loading_hump", "loading hump (BW)", WALK_HUMP_BW, "no loading peak"),
                ("trough", "mid-stance trough (BW)", WALK_TROUGH_BW,
                 "no trough between two humps"),
                ("push_off_hump", "push-off hump (BW)", WALK_HUMP_BW, "no push-off peak")):
            values = [st[key] for st in stances]
            missing = sum(not _finite(v) for v in values)
            ok = bool(values) and all(_within(v, bounds) for v in values)
            note = (f"{what} in {missing} of {len(values)} stances" if missing else "")
            out.append(Criterion(f"grf.{key}", label, _span(values),
                                 f"{bounds[0]:g}-{bounds[1]:g}", _verdict(ok), note=note))
        out[0].note = "; ".join(n for n in (brushed, out[0].note) if n)
        return out, dict(stances=stances, swing_brush_bw=brush)
    if posed.kind == "running":
        per_foot = {s: running_stance(f[s], threshold_bw=threshold) for s in SIDES}
        contacts = max(per_foot[s]["contacts"] for s in SIDES)
        impact = [per_foot[s]["impact_peak"] for s in SIDES]
        active = [per_foot[s]["active_peak"] for s in SIDES]
        duty = [per_foot[s]["duty_factor"] for s in SIDES]
        out = [
            Criterion("grf.contacts_per_step", "ground contacts per stance", contacts, "1",
                      _verdict(all(per_foot[s]["contacts"] == 1 for s in SIDES)),
                      note="the stance foot leaves the ground mid-stance" if contacts > 1
                      else ""),
            Criterion("grf.impact_peak", "impact peak (BW)", _span(impact),
                      f"<= {RUN_IMPACT_MAX_BW:g}",
                      _verdict(all(_finite(v) and v <= RUN_IMPACT_MAX_BW for v in impact))),
            Criterion("grf.active_peak", "active peak (BW)", _span(active),
                      f"{RUN_ACTIVE_BW[0]:g}-{RUN_ACTIVE_BW[1]:g}",
                      _verdict(all(_within(v, RUN_ACTIVE_BW) for v in active)),
                      note="no active peak after the impact" if not all(map(_finite, active))
                      else ""),
            Criterion("grf.duty_factor", "duty factor", _span(duty),
                      f"{RUN_DUTY[0]:g}-{RUN_DUTY[1]:g}",
                      _verdict(all(_within(v, RUN_DUTY) for v in duty))),
        ]
        out[0].note = "; ".join(n for n in (brushed, out[0].note) if n)
        return out, dict(feet=per_foot, swing_brush_bw=brush)
    from refgen.kinematics import FootKinematics
    from refgen.motion import Motion

    toes = FootKinematics(posed.model_path)(
        Motion(np.arange(ref.n_frames) * ref.control_dt, ref.coordinate_names, ref.q))
    horizontal = np.stack([toes[s]["toe"][:, [0, 2]] for s in SIDES], axis=1)
    tilt = np.degrees(ref.q[:, list(ref.coordinate_names).index("pelvis_tilt")])
    jump = jump_figures(f["r"] + f["l"], ref.com_pos[:, 1], horizontal, tilt,
                        threshold_bw=threshold)
    no_flight = "no flight phase at the end" if jump["takeoff_frame"] is None else ""
    out = [
        Criterion("grf.unloading_min", "unloading minimum (BW)", jump["unloading_min"],
                  f">= {JUMP_UNLOADING_MIN_BW:g}",
                  _verdict(jump["unloading_min"] >= JUMP_UNLOADING_MIN_BW)),
        Criterion("grf.foot_travel", "toe travel until take-off (m)", jump["foot_travel"],
                  f"< {JUMP_FOOT_TRAVEL_MAX_M:g}",
                  _verdict(_finite(jump["foot_travel"])
                           and jump["foot_travel"] < JUMP_FOOT_TRAVEL_MAX_M), note=no_flight),
        Criterion("grf.flight_pelvis_tilt", "pelvis tilt change in flight (deg)",
                  jump["flight_tilt"], f"< {JUMP_FLIGHT_TILT_MAX_DEG:g}",
                  _verdict(_finite(jump["flight_tilt"])
                           and jump["flight_tilt"] < JUMP_FLIGHT_TILT_MAX_DEG), note=no_flight),
    ]
    return out, dict(jump=dict(takeoff_s=None if jump["takeoff_frame"] is None
                               else jump["takeoff_frame"] * ref.control_dt,
                               bottom_s=jump["bottom_frame"] * ref.control_dt))


def com_criteria(posed: Posed, feet: dict) -> tuple[list, dict]:
    """The implied vertical force never below -0.05 BW, and on average within 10 % of
    the contact model's (mean absolute difference over the mean contact force)."""
    from fastenv.sim import GRAVITY

    ref, bw = posed.ref, posed.sim.body_weight
    implied = implied_vertical_force(ref.com_vel[:, 1], ref.control_dt,
                                     cyclic=ref.playback == "loop", gravity=GRAVITY)
    contact = (feet["r"] + feet["l"]) / bw
    lowest = float(implied.min())
    difference = float(np.abs(implied - contact).mean() / contact.mean())
    return [
        Criterion("com.implied_min", "COM-implied vertical force, lowest (BW)", lowest,
                  f">= {COM_MIN_BW:g}", _verdict(lowest >= COM_MIN_BW),
                  detail=dict(highest=float(implied.max()),
                              at_s=float(np.argmin(implied) * ref.control_dt))),
        Criterion("com.mean_difference", "mean |implied - contact| / mean contact",
                  difference, f"<= {COM_MEAN_DIFFERENCE:g}",
                  _verdict(difference <= COM_MEAN_DIFFERENCE)),
    ], dict(implied_range_bw=[lowest, float(implied.max())])


def limit_criterion(posed: Posed) -> Criterion:
    """Per limited coordinate: how far past the onset of its limit force it goes and,
    if past, the limit torque's peak over the joint's peak net moment (inverse
    dynamics); it passes inside the range or below :data:`LIMIT_TORQUE_SHARE`."""
    sim, ref = posed.sim, posed.ref
    names = list(ref.coordinate_names)
    torques = limit_torques(sim, ref.q, ref.qdot)
    moments = None
    rows = []
    for i, force in enumerate(sim.limit_forces):
        coordinate = force.get_coordinate()
        j = names.index(coordinate)
        past = past_onset_deg(np.degrees(ref.q[:, j]), force.get_lower_limit(),
                              force.get_upper_limit())
        row = dict(coordinate=coordinate, past_onset_deg=past,
                   limit_torque_nm=float(np.abs(torques[:, i]).max()))
        if past > 0:
            if moments is None:
                moments = joint_moments(posed.model_path, names, ref.q, ref.qdot, ref.qddot)
            peak = float(np.abs(moments[:, j]).max())
            row.update(peak_moment_nm=peak, share=row["limit_torque_nm"] / peak if peak > 0
                       else float("inf"))
        row["ok"] = past <= 0 or row["share"] < LIMIT_TORQUE_SHARE
        rows.append(row)
    worst = max(rows, key=lambda r: (not r["ok"], r.get("share", -1.0), r["past_onset_deg"]))
    failing = [r["coordinate"] for r in rows if not r["ok"]]
    note = (f"{worst['coordinate']}: limit torque {worst['limit_torque_nm']:.0f} N·m = "
            f"{100 * worst['share']:.0f}% of its peak moment" if "share" in worst else
            f"{worst['coordinate']} keeps {-worst['past_onset_deg']:.1f}° inside its range")
    if len(failing) > 1:
        note += f"; also past: {', '.join(c for c in failing if c != worst['coordinate'])}"
    return Criterion("limits", "past limit-force onset (deg)", worst["past_onset_deg"],
                     f"<= 0, or torque < {100 * LIMIT_TORQUE_SHARE:g}% of peak moment",
                     _verdict(not failing), note=note,
                     detail=dict(coordinate=worst["coordinate"],
                                 share=worst.get("share"), coordinates=rows))


def seam_criterion(posed: Posed) -> Criterion:
    ref = posed.ref
    if ref.playback != "loop":
        return Criterion("seam", "seam roughness / largest inside", None,
                         f"<= {SEAM_RATIO:g}", "skip", note=f"playback {ref.playback}: no loop")
    moving = ~posed.sim.locked
    ratios = seam_ratio(ref.q[:, moving], ref.qdot[:, moving], ref.qddot[:, moving],
                        ref.q_offset[moving], ref.control_dt)
    worst = max(ratios.values())
    return Criterion("seam", "seam roughness / largest inside", worst, f"<= {SEAM_RATIO:g}",
                     _verdict(worst <= SEAM_RATIO), detail=ratios)


def ankle_moments(task: str, reference=None) -> dict:
    """The ankle muscles' moments over ``task``'s reference (or the ``reference`` file)
    on the Moco family, the model its excitations were solved on: each frame's state
    with the feed-forward excitations as activations. Per side (``r``/``l``): peaks
    (N·m) of the plantarflexors' (soleus, gastrocnemius) moment from active and from
    passive fibre force and of tibialis anterior's, the passive share of the
    plantarflexors' impulse, tibialis anterior's impulse over theirs, and the three
    muscles' mean excitations (None for a side without them: a prosthetic leg);
    ``both`` pools the sides (over a mirrored half cycle, the two sides together are
    the whole cycle)."""
    from fastenv.env import ImitationEnv

    options = dict(excitations="residual", muscle_model="degroote", contact_model="smooth")
    if reference is not None:
        options["reference"] = str(reference)
    env = ImitationEnv(task, **options)
    try:
        sim, ref = env.sim, env.reference
        feedforward = env.actuation.feedforward
        names = list(sim.muscle_names)
        coordinates = sim.model.getCoordinateSet()
        states = [sim.state_from_coordinates(ref.q[f], ref.qdot[f], activation=feedforward[f])
                  for f in range(ref.n_frames)]
        mean = feedforward.mean(axis=0)
        impulses, out = {}, dict(reference=str(reference or ref.name))
        for side in SIDES:
            muscles = [f"{m}_{side}" for m in (*PLANTARFLEXORS, DORSIFLEXOR)]
            if not set(muscles) <= set(names):
                # the locked-knee models' prosthetic leg has no muscles below the knee
                out[side] = None
                continue
            ankle = coordinates.get(f"ankle_angle_{side}")
            moment = {n: np.zeros((ref.n_frames, 2)) for n in muscles}   # active, passive
            for f, state in enumerate(states):
                sim.model.realizeDynamics(state)
                for n in muscles:
                    m = sim.muscles[names.index(n)]
                    arm = m.getGeometryPath().computeMomentArm(state, ankle)
                    moment[n][f] = (m.getActiveFiberForce(state) * arm,
                                    m.getPassiveFiberForce(state) * arm)
            # plantarflexion is a negative ankle moment in these models
            plantar = -sum(moment[n] for n in muscles[:-1])
            dorsi = moment[muscles[-1]].sum(axis=1)
            impulses[side] = (plantar.clip(0).sum(axis=0), dorsi.clip(0).sum())
            total = impulses[side][0].sum()
            out[side] = dict(plantarflexor_active_peak_Nm=float(plantar[:, 0].max()),
                             plantarflexor_passive_peak_Nm=float(plantar[:, 1].max()),
                             passive_share_of_plantarflexor_impulse=float(
                                 impulses[side][0][1] / total),
                             dorsiflexor_peak_Nm=float(dorsi.max()),
                             dorsiflexor_over_plantarflexor_impulse=float(
                                 impulses[side][1] / total),
                             mean_excitation={n: float(mean[names.index(n)]) for n in muscles})
    finally:
        env.close()
    plantar = sum(i[0] for i in impulses.values())
    out["both"] = dict(passive_share_of_plantarflexor_impulse=float(plantar[1] / plantar.sum()),
                       dorsiflexor_over_plantarflexor_impulse=float(
                           sum(i[1] for i in impulses.values()) / plantar.sum()))
    return out


def pushoff_criterion(posed: Posed, references_dir=REFERENCES_DIR) -> Criterion:
    """The passive share of the plantarflexors' impulse over the reference, both sides
    pooled, with its feed-forward excitations on the Moco family (:func:`ankle_moments`);
    skipped for a reference without excitations."""
    threshold = f"<= {PUSHOFF_PASSIVE_SHARE:g}"
    label = "passive share of plantarflexor impulse"
    if posed.ref.excitation is None:
        return Criterion("pushoff", label, None, threshold, "skip",
                         note="no excitations shipped: no muscle coordination to check")
    moments = ankle_moments(posed.task, Path(references_dir) / f"{posed.name}.npz")
    share = moments["both"]["passive_share_of_plantarflexor_impulse"]
    note = ", ".join(f"{side} {moments[s]['passive_share_of_plantarflexor_impulse']:.2f}"
                     for s, side in zip(SIDES, ("right", "left")) if moments[s])
    return Criterion("pushoff", label, share, threshold,
                     _verdict(share <= PUSHOFF_PASSIVE_SHARE), note=note,
                     detail={s: moments[s] for s in SIDES})


def check_reference(name: str, references_dir=REFERENCES_DIR) -> dict:
    """Every criterion for one reference: ``{'name', 'kind', 'task', 'model',
    'measured_source', 'measured_source_note', 'criteria': {key: figure}, 'verdict'}``
    with ``verdict`` ``fail`` when any criterion fails."""
    posed = posed_reference(name, references_dir)
    ref, sim = posed.ref, posed.sim
    feet = foot_forces(sim, ref.q, ref.qdot)
    criteria, info = source_criteria(posed, references_dir)
    grf, grf_info = grf_criteria(posed, feet)
    com, com_info = com_criteria(posed, feet)
    criteria += grf + com + [limit_criterion(posed), seam_criterion(posed),
                             pushoff_criterion(posed, references_dir)]
    result = dict(name=name, kind=posed.kind, task=posed.task, model=posed.model,
                  playback=ref.playback, **info, **grf_info, **com_info,
                  criteria={c.key: {k: v for k, v in asdict(c).items()
                                    if k != "key" and (v or k not in ("note", "detail"))}
                            for c in criteria})
    result["verdict"] = ("fail" if any(c.verdict == "fail" for c in criteria) else "pass")
    return rounded(result, 4)


def verdicts(result: dict) -> dict:
    """``{criterion: pass|fail|skip}`` of one reference's result."""
    return {k: c["verdict"] for k, c in result["criteria"].items()}


# ------------------------------------------------------------------ output
def _shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "–".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_result(result: dict) -> str:
    """The per-criterion table of one reference, as the command prints it."""
    head = (f"{result['name']}: {result['kind']} on {result['model']} ({result['task']}), "
            f"playback {result['playback']}; measured source: "
            f"{result['measured_source'] or 'none'} ({result['measured_source_note']})")
    rows = [("criterion", "value", "threshold", "verdict")]
    for c in result["criteria"].values():
        rows.append((c["label"], _shown(c["value"]), c["threshold"],
                     c["verdict"].upper() if c["verdict"] == "fail" else c["verdict"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head]
    for (label, value, threshold, verdict), c in zip(rows, [None, *result["criteria"].values()]):
        line = f"  {label:<{widths[0]}}  {value:>{widths[1]}}  {threshold:<{widths[2]}}  {verdict}"
        if c is not None and c.get("note"):
            line += f"  ({c['note']})"
        lines.append(line.rstrip())
    failed = [k for k, c in result["criteria"].items() if c["verdict"] == "fail"]
    lines.append(f"  => {result['verdict'].upper()}"
                 + (f": {len(failed)} criteria violated ({', '.join(failed)})" if failed else ""))
    return "\n".join(lines)


def format_summary(results: list) -> str:
    """One line per reference: passed, failed and skipped criteria, and which failed."""
    lines = ["summary:", f"  {'reference':<13} {'pass':>4} {'fail':>4} {'skip':>4}  failed"]
    for r in results:
        v = list(verdicts(r).values())
        failed = [k for k, x in verdicts(r).items() if x == "fail"]
        lines.append(f"  {r['name']:<13} {v.count('pass'):>4} {v.count('fail'):>4} "
                     f"{v.count('skip'):>4}  {', '.join(failed) or '-'}")
    bad = sum(r["verdict"] == "fail" for r in results)
    lines.append(f"  {bad} of {len(results)} references violate the criteria")
    return "\n".join(lines)


def status_document(results: list) -> dict:
    """The JSON that ``--json`` writes (and :data:`STATUS_FILE` holds)."""
    return dict(command=STATUS_COMMAND,
                note="verdicts and figures of python -m refgen check; regenerate after "
                     "changing a reference or the check",
                references={r["name"]: r for r in results})


def shipped_names(references_dir=REFERENCES_DIR) -> list:
    return sorted(p.stem for p in Path(references_dir).glob("*.npz"))


def run(names, *, json_path=None, references_dir=REFERENCES_DIR, log=print) -> int:
    """Check ``names`` (or ``['all']``), print their tables (and a summary for more than
    one), write ``json_path``; 1 if any reference violates a criterion, else 0."""
    references_dir = Path(references_dir)
    if list(names) == ["all"]:
        names = shipped_names(references_dir)
    results = []
    for name in names:
        result = check_reference(name, references_dir)
        log(format_result(result))
        results.append(result)
    if len(results) > 1:
        log(format_summary(results))
    if json_path:
        Path(json_path).write_text(json.dumps(status_document(results), indent=1,
                                              ensure_ascii=False) + "\n")
        log(f"wrote {json_path}")
    return 1 if any(r["verdict"] == "fail" for r in results) else 0
