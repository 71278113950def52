"""3D references derived from fastenv's 2D ones, and the cerebral-palsy crouch gait.

Why: the 3D tasks need gait cycles for the 3D models (``muscle3d``,
``muscle3d_lockedknee``, ``palsy3d``).  The sagittal motion of walking, running,
jumping and locked-knee walking is already solved with Moco for the 2D model,
whose sagittal coordinates have the same names and segment geometry as the 3D
model's; what a 3D model adds is the out-of-plane motion (``pelvis_list``,
``pelvis_rotation``, ``pelvis_tz``, ``hip_adduction_r/l``; ``hip_rotation`` is
locked in these models).  That comes from measured 3D motions, aligned in
phase with the 2D cycle by gait events, so each 3D reference keeps the 2D
solution's timing, stride and speed.  Such a cycle is *kinematic*: body
kinematics computed by OpenSim on the 3D model, not a dynamic solution of it
(its figures say ``"kind": "kinematic"`` and where its out-of-plane data come
from).  ``walking3d``, ``running3d``, ``lockedknee3d`` and ``palsy3d`` go one step
further: a Moco tracking
solve with the 3D model makes the kinematic cycle dynamically consistent
(:func:`track_and_write`; ``"kind": "moco_tracking"``).  ``walking3d`` and
``running3d`` take only the 2D cycle's stride, timing and pelvis translations: their
sagittal angles are the measured motion's as the 2D reference tracks it (and
walking3d's force plates too; :func:`measured_sagittal`).

How, per reference (``python -m refgen generate NAME``):

* gait events are found from kinematics alone, on the 2D cycle and on the
  measured 3D motion alike, so both are timed by the same rule: for walking
  Zeni et al. 2008 (heel strike when the heel is furthest ahead of the pelvis,
  toe off when the toes are furthest behind it; the measured walk has no
  pelvis height), for running the height of each foot's lowest contact sphere;
  a piecewise-linear phase warp maps the measured cycle's events (heel strikes
  and toe offs of both feet) onto the 2D cycle's;
* a measured cycle is made periodic by spreading its seam error linearly;
  when the 2D cycle is left/right symmetric (walking2d, running2d) the
  out-of-plane data are symmetrised too (left = right half a cycle later,
  pelvis list/rotation/lateral position antisymmetric);
* the lateral pelvis translation of walking is not in the measured walk: it is
  derived so that the stance foot does not slide sideways (the pelvis moves
  opposite to the stance foot's contact point relative to it, blended over
  double support), which gives the pelvis sway that the hip adduction and
  pelvis list of the data imply;
* the 2D and 3D feet carry different contact spheres, so the pelvis height is
  set frame by frame for the 3D model's vertical contact force to be the 2D
  solution's (in body weights; walking3d's then the force plates' total, with the
  measured angles; lockedknee3d's body weight at every frame, quasi-static), then
  shifted so that its mean over the cycle is body weight (the env's ground alignment,
  which then finds nothing to do).  running3d keeps the 2D run's height and jumping3d
  the 2D jump's, each shifted once.

``palsy3d`` is a crouch gait for the scaled child model; see
:func:`palsy3d_cycle` and :func:`generate_palsy3d`.

Outputs per reference in the ``--out`` folder (by default the checkout's
``envs/references/``, where the committed 2D references they derive from are read
too): ``NAME.npz`` (the env's reference, :class:`fastenv.references.Reference`),
``NAME.json`` (figures and provenance), ``NAME_coordinates.sto`` (coordinate values
and speeds of every unlocked coordinate at the control step, one full cycle with both
ends like ``walking2d_coordinates.sto``; radians and metres) and, for Moco-tracked
ones, ``NAME_solution.sto`` (the Moco solution: states and excitations).  Generating
reads public motions from :func:`refgen.motions_dir` (never copied into the project).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastenv.references import (
    MIRROR_NEGATED,
    Reference,
    build_reference,
    excitations_on_frames,
    periodic_spline,
)
from refgen import REFERENCES_DIR, moco, motion_file
from refgen.check import brushing_peak, contact_phases
from refgen.kinematics import SIDES, ContactProbe, FootKinematics, save_in
from refgen.moco import SolveSettings
from refgen.motion import (
    Motion,
    is_translation,
    plain,
    read_coordinates,
    rounded,
    write_coordinates_sto,
)

#: What a 3D model adds to the 2D model's coordinates (hip_rotation is locked).
OUT_OF_PLANE = ("pelvis_list", "pelvis_rotation", "pelvis_tz", "hip_adduction_r",
                "hip_adduction_l")
#: Events of a walking/running cycle in the order they occur from right heel strike.
EVENT_ORDER = ("hs_r", "to_l", "hs_l", "to_r")
#: Phase resolution of periodic signals handled here (samples per cycle).
GRID_SIZE = 400
GRID = np.arange(GRID_SIZE) / GRID_SIZE

#: Public measured motions (in :func:`refgen.motions_dir`): out-of-plane motion of
#: walking and running, and the crouch gait of palsy3d.
WALKING_MOTION = "tutorial_gait2392_normal.mot"
RUNNING_MOTION = "hamner_subject02_running_ik.mot"
CROUCH_MOTION = "tutorial_gait2392_crouch2.mot"


def committed_file(filename: str, name: str, out_dir=None) -> Path:
    """A committed reference's file ``filename``: in ``out_dir`` if there, else in the
    checkout's envs/references/."""
    for folder in ([Path(out_dir)] if out_dir else []) + [REFERENCES_DIR]:
        path = folder / filename
        if path.is_file():
            return path
    raise FileNotFoundError(f"{REFERENCES_DIR / filename} does not exist: a 3D reference "
                            f"is derived from the committed reference {name!r}; generate it "
                            f"first ({moco.COMMAND} {name})")


def load_committed(name: str, out_dir=None) -> Reference:
    """A committed reference: ``NAME.npz`` in ``out_dir`` if there, else in the checkout's
    envs/references/."""
    return Reference.load(committed_file(f"{name}.npz", name, out_dir))


def cycle_of(ref: Reference) -> Motion:
    """A reference's frames; a looping one closed (last row = first row + one stride)."""
    q = ref.q.copy()
    if ref.playback == "loop":
        q = np.vstack([q, q[0] + ref.q_offset])
    return Motion(np.arange(len(q)) * ref.control_dt, list(ref.coordinate_names), q)


def periodic_gradient(values: np.ndarray, dt: float) -> np.ndarray:
    """Central differences of samples of one period (no repeated end row)."""
    return (np.roll(values, -1, axis=0) - np.roll(values, 1, axis=0)) / (2 * dt)


# --------------------------------------------------------------------------- events
def _refine(y: np.ndarray, k: int, periodic: bool) -> float:
    """Sub-sample position of the extremum at sample k (parabola through 3 samples)."""
    n = len(y)
    if not periodic and (k == 0 or k == n - 1):
        return float(k)
    a, b, c = y[(k - 1) % n], y[k], y[(k + 1) % n]
    den = a - 2 * b + c
    return float(k + (0.5 * (a - c) / den if abs(den) > 1e-15 else 0.0))


def relative_foot_x(feet: dict) -> dict:
    """Heel and toe x relative to the pelvis origin, per side (Zeni's signals)."""
    px = feet["pelvis"][:, 0]
    return {s: {"heel": feet[s]["heel"][:, 0] - px, "toe": feet[s]["toe"][:, 0] - px}
            for s in SIDES}


def cycle_events(cycle: Motion, feet: dict) -> dict:
    """Phase (0-1) of heel strikes and toe offs in a closed periodic cycle.

    One event of each kind per cycle: heel strike where the heel is furthest
    ahead of the pelvis, toe off where the toes are furthest behind it.
    """
    rel = relative_foot_x(feet)
    n = len(cycle.time) - 1            # last row closes the cycle
    events = {}
    for s in SIDES:
        heel, toe = rel[s]["heel"][:n], rel[s]["toe"][:n]
        events[f"hs_{s}"] = (_refine(heel, int(np.argmax(heel)), True) / n) % 1.0
        events[f"to_{s}"] = (_refine(-toe, int(np.argmin(toe)), True) / n) % 1.0
    return events


def stride_events(motion: Motion, feet: dict, min_gap_s: float = 0.4) -> dict:
    """Times of every heel strike and toe off in a multi-stride motion."""
    rel = relative_foot_x(feet)
    dt = float(np.median(np.diff(motion.time)))
    gap = max(2, int(round(min_gap_s / dt)))

    def maxima(y):
        return np.array([np.interp(_refine(y, k, False), np.arange(len(y)), motion.time)
                         for k in moco.local_maxima(y, gap)])

    out = {}
    for s in SIDES:
        out[f"hs_{s}"] = maxima(rel[s]["heel"])
        out[f"to_{s}"] = maxima(-rel[s]["toe"])
    return out


#: A foot whose lowest contact sphere is within this height (m) of its lowest level
#: in the motion is on the ground (height-based events, for running).
CONTACT_HEIGHT_M = 0.02


def _crossings(y: np.ndarray, level: float, periodic: bool):
    """Sub-sample indices where y falls below ``level`` and where it rises above it."""
    n = len(y)
    idx = np.arange(n) if periodic else np.arange(n - 1)
    a, b = y[idx], y[(idx + 1) % n]
    frac = lambda k: k + (level - a[k]) / (b[k] - a[k])  # noqa: E731
    down = [frac(k) for k in np.flatnonzero((a >= level) & (b < level))]
    up = [frac(k) for k in np.flatnonzero((a < level) & (b >= level))]
    return np.array(down), np.array(up)


def _lowest(feet: dict, side: str) -> np.ndarray:
    return np.minimum(feet[side]["heel_bottom"], feet[side]["toe_bottom"])


def _bridged(down: np.ndarray, up: np.ndarray, n: int, *, max_gap: float):
    """Touchdowns and lift-offs of a periodic signal of ``n`` samples without the
    lift-offs that a touchdown follows within ``max_gap`` samples: a foot that rises a
    few millimetres above the contact level between heel and toe contact is still in
    stance (running2d on the 3D feet: heel down 19 mm above the toe's lowest level,
    up to 28 mm, then flat)."""
    if len(down) < 2 or len(down) != len(up):
        return down, up
    keep_up, keep_down = [], []
    for u in up:
        later = (down - u) % n
        if later.min() >= max_gap:
            keep_up.append(u)
    for d in down:
        earlier = (d - up) % n
        if earlier.min() >= max_gap:
            keep_down.append(d)
    return np.array(keep_down), np.array(keep_up)


def cycle_height_events(cycle: Motion, feet: dict, threshold: float = CONTACT_HEIGHT_M,
                        max_gap: float = 0.1) -> dict:
    """Phase of heel strikes and toe offs of a closed cycle from foot heights.

    Why: Zeni's kinematic rule (:func:`cycle_events`) is made for walking; in
    running the swing foot retracts before touchdown and keeps moving back
    after toe off, so its extremes are far from contact.  Here a foot is on
    the ground while its lowest contact sphere is within ``threshold`` of the
    lowest level it reaches; that needs real pelvis heights (a Moco solution,
    a recording with pelvis_ty), not a constant one.  A lift-off followed by a
    touchdown within ``max_gap`` of the cycle does not count (:func:`_bridged`).
    """
    n = len(cycle.time) - 1
    events = {}
    for s in SIDES:
        h = _lowest(feet, s)[:n]
        down, up = _bridged(*_crossings(h, h.min() + threshold, periodic=True), n,
                            max_gap=max_gap * n)
        if len(down) != 1 or len(up) != 1:
            raise ValueError(f"foot {s}: {len(down)} touchdowns and {len(up)} lift-offs in one "
                             "cycle (expected one each)")
        events[f"hs_{s}"], events[f"to_{s}"] = (down[0] / n) % 1.0, (up[0] / n) % 1.0
    return events


def stride_height_events(motion: Motion, feet: dict,
                         threshold: float = CONTACT_HEIGHT_M) -> dict:
    """Times of every touchdown and lift-off in a multi-stride motion (see above)."""
    out = {}
    for s in SIDES:
        h = _lowest(feet, s)
        down, up = _crossings(h, np.percentile(h, 2) + threshold, periodic=False)
        ix = np.arange(len(motion.time))
        out[f"hs_{s}"] = np.interp(down, ix, motion.time)
        out[f"to_{s}"] = np.interp(up, ix, motion.time)
    return out


def event_order(events: dict) -> tuple:
    """Event names in the order they occur from right heel strike.

    Walking: right heel strike, left toe off, left heel strike, right toe off;
    running (with flight phases): right heel strike, right toe off, left heel
    strike, left toe off.
    """
    return tuple(sorted(events, key=lambda e: (events[e] - events["hs_r"]) % 1.0))


def _unwrapped(events: dict, order) -> np.ndarray:
    """Event phases in ``order``, unwrapped to increase from the first one."""
    x = [events[order[0]]]
    for e in order[1:]:
        v = events[e]
        while v <= x[-1]:
            v += 1.0
        x.append(v)
    if x[-1] - x[0] >= 1.0:
        raise ValueError(f"events {events} are not in the order {order} within one cycle")
    return np.array(x)


def phase_map(target: dict, source: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Piecewise-linear map from the target cycle's phase to the source cycle's.

    Each event of the target (heel strikes and toe offs of both feet) lands on
    the same event of the source; both cycles must have their events in the
    same order (a walk is not warped onto a run).
    """
    order = event_order(target)
    if event_order(source) != order:
        raise ValueError(f"gait events occur in a different order: target {order}, "
                         f"source {event_order(source)}")
    kt, ks = _unwrapped(target, order), _unwrapped(source, order)
    kt, ks = np.append(kt, kt[0] + 1.0), np.append(ks, ks[0] + 1.0)

    def f(phase):
        u = (np.asarray(phase, dtype=float) - kt[0]) % 1.0 + kt[0]
        return np.interp(u, kt, ks) % 1.0
    return f


def periodic_samples(cycle: Motion, names) -> dict:
    """Signals of a closed cycle on GRID (phase), seam error spread linearly."""
    t = cycle.time
    u = (t - t[0]) / (t[-1] - t[0])
    out = {}
    for n in names:
        y = cycle.column(n).copy()
        y -= u * (y[-1] - y[0])
        out[n] = np.interp(GRID, u[:-1], y[:-1], period=1.0)
    return out


def at_phase(signal: np.ndarray, phase) -> np.ndarray:
    """A periodic GRID signal at arbitrary phases."""
    return np.interp(np.asarray(phase, dtype=float) % 1.0, GRID, signal, period=1.0)


def symmetrise(signals: dict) -> dict:
    """Left/right symmetric out-of-plane signals (GRID samples, right heel strike at 0).

    Half a cycle later the left leg does what the right leg did and the pelvis
    mirrors its sideways motion: list, rotation and lateral position change sign.
    """
    h = GRID_SIZE // 2
    out = dict(signals)
    for n in ("pelvis_list", "pelvis_rotation", "pelvis_tz"):
        if n in signals:
            out[n] = 0.5 * (signals[n] - np.roll(signals[n], -h))
    if "hip_adduction_r" in signals and "hip_adduction_l" in signals:
        right = 0.5 * (signals["hip_adduction_r"] + np.roll(signals["hip_adduction_l"], -h))
        out["hip_adduction_r"] = right
        out["hip_adduction_l"] = np.roll(right, h)
    return out


def is_symmetric(events: dict, tol: float = 0.02) -> bool:
    """Left heel strike half a cycle after the right one (and toe offs likewise)."""
    d_hs = (events["hs_l"] - events["hs_r"]) % 1.0
    d_to = (events["to_l"] - events["to_r"]) % 1.0
    return abs(d_hs - 0.5) < tol and abs(d_to - 0.5) < tol


# ------------------------------------------------------------- pelvis from no-slip
def stance_weight(phase: np.ndarray, events: dict) -> np.ndarray:
    """Share of the right foot in supporting the body (1: right single support).

    Walking order (right heel strike, left toe off, left heel strike, right toe
    off): the load moves linearly to the foot that struck during each double
    support.  A gait with flight phases has no such order and is refused.
    """
    if event_order(events) != EVENT_ORDER:
        raise ValueError(f"stance weights need a walking gait (events in the order "
                         f"{EVENT_ORDER}), got {event_order(events)}")
    k = _unwrapped(events, EVENT_ORDER)
    k = np.append(k, k[0] + 1.0)
    u = (np.asarray(phase) - k[0]) % 1.0 + k[0]
    return np.interp(u, k, [0.0, 1.0, 1.0, 0.0, 0.0])


def contact_point(feet: dict, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Position (T,3) of the foot's lower contact sphere (heel or toe) and its bottom height."""
    heel_low = feet[side]["heel_bottom"] <= feet[side]["toe_bottom"]
    pos = np.where(heel_low[:, None], feet[side]["heel"], feet[side]["toe"])
    bottom = np.minimum(feet[side]["heel_bottom"], feet[side]["toe_bottom"])
    return pos, bottom


def no_slip_translation(cycle: Motion, feet: dict, events: dict, axis: int) -> np.ndarray:
    """Pelvis translation along ground ``axis`` (0: x, 2: z) for which the feet do not slide.

    ``feet`` are computed with that pelvis translation at zero, i.e. relative
    to it.  The pelvis velocity is minus the velocity of the supporting foot's
    contact point (heel or toes, whichever is lower), blended by
    :func:`stance_weight`; for z the integral is made periodic (its drift is
    spread linearly) and centred, for x it keeps the stride it produces.
    """
    n = len(cycle.time) - 1
    dt = (cycle.time[-1] - cycle.time[0]) / n
    phase = np.arange(n) / n
    w = stance_weight(phase, events)
    v = np.zeros(n)
    for s, ws in (("r", w), ("l", 1.0 - w)):
        # velocity of the contact point relative to the pelvis, per stance sphere:
        # differentiate heel and toe separately so a heel-to-toe switch is no jump
        vel = {part: periodic_gradient(feet[s][part][:n, axis], dt) for part in ("heel", "toe")}
        heel_low = feet[s]["heel_bottom"][:n] <= feet[s]["toe_bottom"][:n]
        vs = np.where(heel_low, vel["heel"], vel["toe"])
        v -= ws * vs
    x = np.concatenate([[0.0], np.cumsum(0.5 * (v + np.roll(v, -1)) * dt)])
    if axis != 0:
        x -= np.linspace(0.0, x[-1], n + 1)
        x -= x[:-1].mean()
    return x


def no_slip_height(cycle: Motion, feet: dict, events: dict) -> np.ndarray:
    """Pelvis height change that keeps the supporting foot's lowest point on one level.

    ``feet`` computed at the cycle's pelvis height; returned values are the
    height to add (mean zero; the ground alignment sets the level).
    """
    n = len(cycle.time) - 1
    w = stance_weight(np.arange(n + 1) / n, events)
    lift = -(w * contact_point(feet, "r")[1] + (1.0 - w) * contact_point(feet, "l")[1])
    lift[-1] = lift[0]
    return lift - lift[:-1].mean()


# ------------------------------------------------------------------- ground and GRF
def align_ground(model_path, cycle: Motion, speeds: np.ndarray, frames: int = 50,
                 start_only: bool = False) -> float:
    """Pelvis-height shift (m) for which the mean vertical contact force is body weight.

    The env's own ground alignment (:func:`fastenv.references.prepare.ground_offset`:
    over a periodic cycle, or from rest to the apex of a jump, mean vertical ground
    reaction equals body weight) on up to ``frames`` rows of the cycle (its first
    row alone with ``start_only``: a jump's quiet standing, as the env aligns it),
    so that the env later finds next to nothing to shift.
    """
    from fastenv.references.prepare import ground_offset
    from fastenv.sim import Simulation

    sim = Simulation(model_path, energetics=False)
    n = len(cycle.time) - 1 if len(cycle.time) > 2 else len(cycle.time)
    idx = np.unique(np.linspace(0, n - 1, min(frames, n)).astype(int))
    if start_only:
        idx = np.array([0])
    q = np.tile(sim.buf[sim.layout.slice("q")], (len(idx), 1))
    qdot = np.zeros_like(q)
    for j, name in enumerate(cycle.names):
        if name in sim.coordinate_names:
            q[:, sim.coordinate_names.index(name)] = cycle.values[idx, j]
            qdot[:, sim.coordinate_names.index(name)] = speeds[idx, j]
    dy = ground_offset(sim, q, qdot)
    if dy is None:
        raise ValueError("cannot align the motion with the ground: the mean contact force "
                         "does not cross body weight within +-0.3 m of pelvis height")
    return dy


def reference_forces(ref: Reference, probe: ContactProbe) -> dict:
    """Vertical contact force on each foot (N) along a reference's frames."""
    motion = Motion(np.arange(ref.n_frames) * ref.control_dt, ref.coordinate_names,
                    ref.q.copy())
    return probe(motion, ref.qdot)


def vertical_force_profile(ref: Reference, model_path) -> np.ndarray:
    """Total vertical contact force along a reference, in body weights of its model."""
    probe = ContactProbe(model_path)
    f = reference_forces(ref, probe)
    return (f["r"] + f["l"]) / probe.body_weight


def _lowpass_periodic(y: np.ndarray, harmonics: int) -> np.ndarray:
    """Keep the first ``harmonics`` Fourier harmonics of one period of samples."""
    c = np.fft.rfft(y)
    c[harmonics + 1:] = 0.0
    return np.fft.irfft(c, len(y))


def fit_heights(model_path, cycle: Motion, target_bw: np.ndarray, *, cyclic: bool,
                probe=None, min_bw: float = 0.05, harmonics: int = 8
                ) -> tuple[np.ndarray, list]:
    """Pelvis-height offsets (m) per row that give each pose a target vertical force,
    and the rows fitted at rest (see below).

    Why: the 2D and 3D models carry different contact spheres (the 3D heel sits
    2 cm lower, its toes are two smaller spheres), so the 2D solution's pelvis
    height would load the 3D feet quite differently frame by frame (one
    constant shift leaves double support at a third of body weight).  Each
    frame's height is set so that the 3D model's total vertical contact force,
    in body weights, is the 2D solution's at the 2D solution's speeds; frames
    without contact (flight, below ``min_bw``) take offsets interpolated from
    their neighbours.  A gait cycle's offsets keep their first ``harmonics``
    harmonics: frame-wise fits jitter by fractions of a millimetre at heel
    strike, which would show as vertical speed and, through the contact's
    damping, as force.  The contact damping of the offsets' own speed is not
    fitted (a dynamic solve would be needed), so the final forces follow the
    target only approximately: :func:`contact_figures` reports them.
    """
    probe = probe or ContactProbe(model_path)
    n = len(cycle.time) - 1 if cyclic else len(cycle.time)
    j = cycle.names.index("pelvis_ty")
    base = cycle.values[:, j].copy()
    target = np.asarray(target_bw, dtype=float)[:n] * probe.body_weight
    fit = target > min_bw * probe.body_weight
    if fit.sum() < 2:
        raise ValueError("the target has fewer than two frames with ground contact")
    speeds = cycle_speeds(cycle) if cyclic else np.gradient(cycle.values, cycle.time, axis=0)
    found = np.zeros(n)
    static_rows = []
    for k in np.flatnonzero(fit):
        row = Motion(cycle.time[k:k + 1], cycle.names, cycle.values[k:k + 1].copy())
        sp = speeds[k:k + 1]

        def force(h, row, k, sp):
            row.values[0, j] = base[k] + h
            f = probe(row, sp)
            return f["r"][0] + f["l"][0]

        # Bracket in 5 mm steps: a sphere pushed through the floor past its centre
        # loses contact, so the force is monotonic in the height only near contact.
        steps = 0.005 * np.arange(21)
        lo = next((-h for h in steps if force(-h, row, k, sp) > target[k]), None)
        hi = next((h for h in steps if force(h, row, k, sp) < target[k]), None)
        if lo is None:
            # A foot that leaves the floor faster than the contact's damping allows
            # (Hunt-Crossley clamps at zero) carries no force at any depth: fit
            # this frame statically (at rest) instead.
            sp = np.zeros_like(sp)
            static_rows.append(int(k))
            lo = next((-h for h in steps if force(-h, row, k, sp) > target[k]), None)
            hi = next((h for h in steps if force(h, row, k, sp) < target[k]), None)
        if lo is None or hi is None:
            raise ValueError(f"row {k}: no pelvis height within 10 cm gives the target "
                             f"vertical force {target[k]:.0f} N")
        while hi - lo > 2e-5:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if force(mid, row, k, sp) > target[k] else (lo, mid)
        found[k] = 0.5 * (lo + hi)
    idx, x = np.flatnonzero(fit), np.arange(n)
    if cyclic:
        dy = _lowpass_periodic(np.interp(x, idx, found[idx], period=n), harmonics)
        dy = np.append(dy, dy[0])
    else:
        dy = np.interp(x, idx, found[idx])
    cycle.values[:, j] = base + dy
    return dy, static_rows


# ------------------------------------------------------------------ out-of-plane data
def cycle_speeds(cycle: Motion) -> np.ndarray:
    """Time derivative of a closed cycle (periodic differences; strides kept)."""
    n = len(cycle.time) - 1
    dt = (cycle.time[-1] - cycle.time[0]) / n
    drift = cycle.values[-1] - cycle.values[0]
    base = cycle.values[:n] - np.outer(np.arange(n) / n, drift)
    v = periodic_gradient(base, dt) + drift / (n * dt)
    return np.vstack([v, v[:1]])


def ensemble_cycle(motion: Motion, feet: dict, names, events=None) -> tuple[dict, dict, int]:
    """Average stride of a multi-stride recording, as GRID signals from right heel strike.

    Every complete stride (right heel strike to the next, with one of each
    other event in between) is warped onto the mean event phases, its linear
    drift between its two ends removed (treadmill subjects wander sideways),
    and the strides are averaged; translations are centred on their mean.
    ``events``: event times as from :func:`stride_events` (default) or
    :func:`stride_height_events`.
    Returns (signals, mean events, strides).
    """
    ev = events if events is not None else stride_events(motion, feet)
    strides = []
    for a, b in zip(ev["hs_r"][:-1], ev["hs_r"][1:]):
        inside = {e: ev[e][(ev[e] > a) & (ev[e] < b)] for e in ("to_r", "hs_l", "to_l")}
        if all(len(v) == 1 for v in inside.values()):
            strides.append((a, b, {e: float((v[0] - a) / (b - a)) for e, v in inside.items()}))
    if not strides:
        raise ValueError("no complete stride (right heel strike to right heel strike with "
                         "one left heel strike and both toe offs) found")
    mean = {e: float(np.mean([s[2][e] for s in strides])) for e in ("to_r", "hs_l", "to_l")}
    mean["hs_r"] = 0.0
    acc = {n: np.zeros(GRID_SIZE) for n in names}
    for a, b, rel in strides:
        f = phase_map(mean, {**rel, "hs_r": 0.0})
        u = f(GRID)
        for n in names:
            y = motion.column(n)
            ya, yb = np.interp([a, b], motion.time, y)
            # angles keep their level; a translation is taken about the stride's path
            base = ya if is_translation(n) else 0.0
            acc[n] += np.interp(a + u * (b - a), motion.time, y) - base - u * (yb - ya)
    out = {n: v / len(strides) for n, v in acc.items()}
    for n in out:
        if is_translation(n):
            out[n] -= out[n].mean()
    return out, mean, len(strides)


def warp_out_of_plane(signals: dict, source_events: dict, target_events: dict,
                      symmetric: bool) -> dict:
    """Source-cycle GRID signals re-timed onto the target cycle's phase (GRID)."""
    f = phase_map(target_events, source_events)
    warped = {n: at_phase(v, f(GRID)) for n, v in signals.items()}
    return symmetrise(warped) if symmetric else warped


def _ranges_deg(cycle: Motion, names) -> dict:
    out = {}
    for n in names:
        if n in cycle.names:
            y = cycle.column(n)
            y = y if is_translation(n) else np.degrees(y)
            out[f"{n}_range{'_m' if is_translation(n) else '_deg'}"] = [float(y.min()),
                                                                        float(y.max())]
    return out


# ------------------------------------------------------------------------ the build
def sagittal_on(model_path, ref2d: Reference) -> Motion:
    """The 2D reference's coordinates as a motion of the 3D model (out-of-plane at 0)."""
    from fastenv.sim import Simulation

    sim = Simulation(model_path, energetics=False)
    cycle = cycle_of(ref2d)
    names = [c for j, c in enumerate(sim.coordinate_names) if not sim.locked[j]]
    values = np.zeros((len(cycle.time), len(names)))
    for j, c in enumerate(names):
        if c in cycle.names:
            values[:, j] = cycle.column(c)
    return Motion(cycle.time.copy(), names, values)


def contact_figures(ref: Reference, model_path, probe=None) -> dict:
    """Vertical contact force of the 3D model along a reference (its own contact model).

    For a kinematic reference these forces are those of the contact model at
    the prescribed poses and speeds, not a dynamic solution: they show that the
    feet load and unload where the gait events say, and how the body weight
    is shared in double support.
    """
    probe = probe or ContactProbe(model_path)
    f = reference_forces(ref, probe)
    bw = probe.body_weight
    # a swing foot brushing the floor is not a stance (the check's rule)
    cyclic = ref.playback == "loop"
    on = {s: np.zeros(len(f[s]), dtype=bool) for s in SIDES}
    for s in SIDES:
        for run in contact_phases(f[s] / bw, threshold_bw=moco.CONTACT_THRESHOLD_N / bw,
                                  cyclic=cyclic):
            on[s][run] = True
    both = on["r"] & on["l"]
    total = (f["r"] + f["l"]) / bw
    out = dict(duty_factor_r=float(on["r"].mean()), duty_factor_l=float(on["l"].mean()),
               swing_brush_bw=max(brushing_peak(f[s] / bw, cyclic=cyclic,
                                                threshold_bw=moco.CONTACT_THRESHOLD_N / bw)
                                  for s in SIDES),
               double_support_fraction=float(both.mean()),
               flight_fraction=float((~on["r"] & ~on["l"]).mean()),
               peak_vertical_grf_bw=float(max(f["r"].max(), f["l"].max()) / bw),
               mean_vertical_grf_bw=float(total.mean()))
    if both.any():
        out["double_support_vertical_grf_bw"] = [float(total[both].min()),
                                                 float(total[both].max())]
    return out


def step_width(cycle: Motion, feet: dict, events: dict) -> float:
    """Lateral distance (m) between the right and left feet's contact points in stance."""
    n = len(cycle.time) - 1
    w = stance_weight(np.arange(n) / n, events)
    zr = contact_point(feet, "r")[0][:n, 2]
    zl = contact_point(feet, "l")[0][:n, 2]
    return float(zr[w > 0.99].mean() - zl[w < 0.01].mean())


def write_reference_coordinates(path, ref: Reference, name: str, model_path) -> Path:
    """The reference's unlocked coordinates and speeds at the control step (cycle closed
    for a loop) as a coordinates file (:func:`refgen.motion.write_coordinates_sto`)."""
    from fastenv.sim import Simulation

    sim = Simulation(model_path, energetics=False)
    free = [j for j, c in enumerate(ref.coordinate_names) if not sim.locked[j]]
    q, qd = ref.q[:, free], ref.qdot[:, free]
    if ref.playback == "loop":
        q = np.vstack([q, q[0] + ref.q_offset[free]])
        qd = np.vstack([qd, qd[:1]])
    motion = Motion(np.arange(len(q)) * ref.control_dt,
                    [ref.coordinate_names[j] for j in free], q, qd)
    return write_coordinates_sto(path, motion, name)


def finish(name: str, model_path, cycle: Motion, *, cyclic: bool, playback: str,
           doc: dict, out_dir, log=print, events: dict | None = None,
           excitations: dict | None = None) -> dict:
    """Ground-align a derived motion, build its Reference and write npz, json and sto
    to ``out_dir``; with the ``excitations`` ({muscle: values on ``cycle.time``}) of
    the Moco solution the motion is, for ``excitations="residual"``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = ContactProbe(model_path)
    speeds = cycle_speeds(cycle) if cyclic else np.gradient(cycle.values, cycle.time, axis=0)
    if playback == "mirror":
        speeds[0] = 0.0          # a jump starts at rest (build_reference's start_at_rest)
    dy = align_ground(model_path, cycle, speeds, start_only=playback == "mirror")
    cycle.values[:, cycle.names.index("pelvis_ty")] += dy
    log(f"[{name}] pelvis height shifted {dy * 1000:+.1f} mm onto the model's contact spheres")
    figures = dict(doc.pop("figures", {}))
    figures["pelvis_ty_shift_m"] = dy
    if cyclic:
        tx = cycle.column("pelvis_tx")
        duration = float(cycle.time[-1] - cycle.time[0])
        figures.update(cycle_duration_s=duration, stride_length_m=float(tx[-1] - tx[0]),
                       speed_m_s=float((tx[-1] - tx[0]) / duration))
        if events is not None:
            feet = FootKinematics(model_path)(cycle)
            if event_order(events) == EVENT_ORDER:
                figures["step_width_m"] = step_width(cycle, feet, events)
    for s in SIDES:
        k = f"knee_angle_{s}"
        if k in cycle.names and np.ptp(cycle.column(k)) > 0:
            flex = -np.degrees(cycle.column(k))
            figures[f"knee_flexion_{s}_range_deg"] = [float(flex.min()), float(flex.max())]
    figures.update(_ranges_deg(cycle, OUT_OF_PLANE))
    ref = build_reference(model_path, cycle.time, cycle.names, cycle.values,
                          control_dt=0.01, cyclic=cyclic, playback=playback, name=name,
                          source=doc.get("command", ""), figures=figures,
                          start_at_rest=playback == "mirror", excitations=excitations)
    ref.figures.update(contact_figures(ref, model_path, probe))
    ref.figures = rounded(ref.figures)
    npz = ref.save(out_dir / f"{name}.npz")
    sto = write_reference_coordinates(out_dir / f"{name}_coordinates.sto", ref, name,
                                      model_path)
    doc = dict(name=name, **doc, figures=ref.figures)
    (out_dir / f"{name}.json").write_text(
        json.dumps(rounded(doc), indent=2, default=plain) + "\n")
    log(f"[{name}] wrote {npz.name}, {sto.name}, {name}.json")
    return doc


# ------------------------------------------------------------------ the references
@dataclass
class OutOfPlane:
    """Out-of-plane signals of a source cycle: GRID samples over its own phase."""

    signals: dict
    events: dict | None
    source: str
    info: dict


def insert(cycle: Motion, signals: dict) -> None:
    """Set GRID signals (target phase) as columns of a closed cycle."""
    n = len(cycle.time) - 1
    phase = np.arange(n + 1) / n
    for name, sig in signals.items():
        cycle.set(name, at_phase(sig, phase))


def derive_cycle_from_2d(name: str, name2d: str, variant: str,
                         out_of_plane: OutOfPlane | None, *, variant2d: str, command: str,
                         out_dir=None, quasi_static: bool = False, harmonics: int = 8,
                         standing_offset: bool = False, keep_2d_height: bool = False,
                         circumduction: tuple = ()
                         ) -> tuple[Motion, dict, dict | None, bool, str]:
    """A 3D cycle from a committed 2D one plus out-of-plane data (see the module doc).

    ``out_of_plane`` None keeps the out-of-plane coordinates at zero (a
    symmetric vertical jump).  Without measured ``pelvis_tz`` a walking gait
    gets the no-slip lateral pelvis motion.  The pelvis height is fitted
    frame by frame to the 2D solution's vertical contact force
    (:func:`fit_heights`; ``variant2d`` is the 2D model it was solved for),
    or with ``quasi_static`` so that the contact carries body weight at every
    frame (as for palsy3d), or with ``standing_offset`` shifted by one constant that
    makes the first frame (quiet standing) carry body weight: the 2D solution's own
    vertical motion, and so its centre-of-mass force, kept (a jump: frame-by-frame
    fits without a cycle's harmonics to smooth them jittered into -7.9 body weights),
    or with ``keep_2d_height`` not changed at all (the env's ground alignment then
    shifts the cycle so that its mean contact force is body weight: running3d's
    frame-by-frame fit implied -2.1 BW).
    Returns (closed cycle or frames, json document, gait events or None,
    cyclic, playback).
    """
    from fastenv.envs.variants import variant_path

    model = variant_path(variant)
    ref2d = load_committed(name2d, out_dir)
    cycle = sagittal_on(model, ref2d)
    cyclic = ref2d.playback == "loop"
    doc = dict(description=f"{name}: the committed {name2d} reference on the 3D model "
                           f"{variant}, out-of-plane coordinates added",
               kind="kinematic", model=f"fastenv variant {variant}", sagittal_source=name2d,
               command=command)
    figures = dict(kind="kinematic", sagittal_source=name2d)
    events = None
    if out_of_plane is None:
        figures["out_of_plane_source"] = "none: out-of-plane coordinates held at zero"
        doc["out_of_plane"] = dict(source=figures["out_of_plane_source"])
    else:
        if not cyclic:
            raise ValueError(f"{name2d} is not a gait cycle: out-of-plane data need one")
        fk = FootKinematics(model)
        base_feet = fk(cycle)
        events = (cycle_height_events(cycle, base_feet) if out_of_plane.info.get("events") ==
                  "foot height" else cycle_events(cycle, base_feet))
        symmetric = is_symmetric(events)
        warped = warp_out_of_plane(out_of_plane.signals, out_of_plane.events, events, symmetric)
        insert(cycle, warped)
        info = dict(source=out_of_plane.source, **out_of_plane.info,
                    source_events=out_of_plane.events, target_events=events,
                    alignment="piecewise-linear phase warp mapping the source's gait events "
                              "onto the target's (" + (
                                  "touchdown / lift-off from foot heights" if
                                  out_of_plane.info.get("events") == "foot height" else
                                  "Zeni: heel furthest ahead of / toes furthest behind the "
                                  "pelvis") + ")",
                    symmetrised=symmetric)
        if "pelvis_tz" not in warped:
            flat = Motion(cycle.time, list(cycle.names), cycle.values.copy())
            flat.set("pelvis_tz", 0.0)
            cycle.set("pelvis_tz", no_slip_translation(flat, fk(flat), events, axis=2))
            info["pelvis_tz"] = ("derived: the stance foot's contact point does not slide "
                                 "sideways (load shared linearly over double support)")
        figures["out_of_plane_source"] = out_of_plane.source
        doc["out_of_plane"] = info
    # the 2D solution's vertical contact force, frame by frame, on the 3D feet
    if keep_2d_height:
        dy = np.zeros(len(cycle.time))
        doc["pelvis_height"] = (f"{name2d}'s pelvis height, shifted once by the env's ground "
                                "alignment: the 2D solution's vertical motion kept")
    elif standing_offset:
        # (fit_heights fits frames independently and needs two: the second is ignored)
        first, _ = fit_heights(model, Motion(cycle.time[:2], cycle.names, cycle.values[:2].copy()),
                               np.ones(2), cyclic=False)
        dy = np.full(len(cycle.time), float(first[0]))
        cycle.values[:, cycle.names.index("pelvis_ty")] += dy
        doc["pelvis_height"] = (f"{name2d}'s pelvis height shifted by {dy[0] * 1000:+.1f} mm, "
                                "the height at which the 3D model's first frame (quiet "
                                "standing) carries body weight: the 2D solution's vertical "
                                "motion kept")
    elif quasi_static:
        dy, _ = fit_heights(model, cycle, np.ones(len(cycle.time)), cyclic=cyclic,
                         harmonics=harmonics)
        doc["pelvis_height"] = ("quasi-static: per frame, the height at which the 3D model's "
                                "contact carries body weight; offsets from "
                                f"{name2d}'s pelvis height "
                                f"{dy.min() * 1000:+.1f} to {dy.max() * 1000:+.1f} mm")
    else:
        target_bw = vertical_force_profile(ref2d, variant_path(variant2d))
        dy, static = fit_heights(model, cycle, target_bw, cyclic=cyclic,
                                 harmonics=harmonics)
        doc["pelvis_height"] = (f"per frame, the height at which the 3D model's vertical "
                                f"contact force (in body weights) is that of {name2d} on "
                                f"{variant2d}; offsets from {name2d}'s pelvis height "
                                f"{dy.min() * 1000:+.1f} to {dy.max() * 1000:+.1f} mm"
                                + (f"; frames {static} fitted at rest (no force at any "
                                   "depth at the reference speeds)" if static else ""))
    if circumduction:
        # after the height fit: the floor is where the fitted stance foot stands
        side, lo, hi = circumduction
        figures["circumduction"] = doc["circumduction"] = circumduct(
            cycle, model, side, (lo, hi))
        if quasi_static:   # the swing foot no longer touches: the stance foot alone
            more, _ = fit_heights(model, cycle, np.ones(len(cycle.time)), cyclic=cyclic,
                                  harmonics=harmonics)
            dy = dy + more
    figures["pelvis_ty_fit_offset_mm"] = [float(dy.min() * 1000), float(dy.max() * 1000)]
    doc["figures"] = figures
    return cycle, doc, events, cyclic, ref2d.playback


def circumduct(cycle: Motion, model_path, side: str, window: tuple,
               clearance_m: float = 0.005, max_deg: float = 25.0) -> dict:
    """Abduct the ``side`` hip in ``window`` (fractions of the cycle) so that its foot's
    lowest contact sphere stays ``clearance_m`` above the floor (in place).

    Why: a straight (locked) leg is longer than the bent leg it replaces, and on the
    3D feet the locked foot of ``lockedknee2d``'s vaulting scraped the floor through its
    swing (0.04-0.13 body weights); people walking with a locked knee circumduct.  The
    abduction needed frame by frame (bisection) is covered by one smooth bump, a half
    sine over the window, so the target stays twice differentiable; the clearance is
    asked where the bump is at least 0.7 of its peak (the window's edges are lift-off
    and landing).  Returns the bump's peak (deg) and the frames that needed it.
    """
    fk = FootKinematics(model_path)
    u = (cycle.time - cycle.time[0]) / (cycle.time[-1] - cycle.time[0])
    lo, hi = window
    bump = np.sin(np.pi * np.clip((u - lo) / (hi - lo), 0.0, 1.0))
    inside = np.flatnonzero(bump >= 0.7)
    j = cycle.names.index(f"hip_adduction_{side}")
    sub = Motion(cycle.time[inside], cycle.names, cycle.values[inside].copy())
    base = sub.values[:, j].copy()

    def lowest(extra):
        sub.values[:, j] = base - extra
        return _lowest(fk(sub), side)

    need = np.zeros(len(inside))
    short = lowest(need) < clearance_m
    a, b = np.zeros(len(inside)), np.full(len(inside), np.radians(max_deg))
    for _ in range(30):   # every frame's bisection in step
        mid = 0.5 * (a + b)
        clear = lowest(mid) >= clearance_m
        b, a = np.where(clear, mid, b), np.where(clear, a, mid)
    need[short] = b[short]
    peak = min(float(np.max(need / bump[inside])) if short.any() else 0.0,
               np.radians(max_deg))
    cycle.values[:, j] -= peak * bump
    return dict(side=side, window=list(window), clearance_m=clearance_m,
                peak_abduction_deg=float(np.degrees(peak)), frames_needing_it=int(short.sum()))


def derive_from_2d(name: str, name2d: str, variant: str, out_of_plane: OutOfPlane | None, *,
                   variant2d: str, command: str, out_dir, quasi_static: bool = False,
                   harmonics: int = 8, standing_offset: bool = False,
                   keep_2d_height: bool = False, log=print) -> dict:
    """Derive a kinematic 3D reference (:func:`derive_cycle_from_2d`) and write it."""
    from fastenv.envs.variants import variant_path

    cycle, doc, events, cyclic, playback = derive_cycle_from_2d(
        name, name2d, variant, out_of_plane, variant2d=variant2d, command=command,
        out_dir=out_dir, quasi_static=quasi_static, harmonics=harmonics,
        standing_offset=standing_offset, keep_2d_height=keep_2d_height)
    return finish(name, variant_path(variant), cycle, cyclic=cyclic, playback=playback,
                  doc=doc, out_dir=out_dir, log=log, events=events)


def measured_walk(model_path, motion=None) -> OutOfPlane:
    """Out-of-plane signals of the measured normal walk (one cycle, 0-1 s, gait2392 names)."""
    path = motion_file(WALKING_MOTION, motion)
    src = read_coordinates(path, from_zero=True)
    events = cycle_events(src, FootKinematics(model_path)(src))
    names = [n for n in OUT_OF_PLANE if n in src.names]
    return OutOfPlane(periodic_samples(src, names), events, path.name,
                      dict(columns=names, cycle="the file's one cycle, seam error spread "
                                                "linearly"))


#: Sagittal coordinates that walking3d and running3d track from the measured motion
#: itself (as their 2D references do) instead of from the 2D solution.
MEASURED_SAGITTAL = ("pelvis_tilt", "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
                     "hip_flexion_l", "knee_angle_l", "ankle_angle_l")


def measured_sagittal(cycle: Motion, model3d, motion: Path, *, name2d: str,
                      flight: bool = False, strides: str = "first", grf: Path | None = None
                      ) -> tuple[dict, moco.ForceTarget | None, dict]:
    """A measured gait's sagittal angles (and force plates) on ``cycle``'s clock.

    The same target as the 2D reference ``name2d`` tracks
    (:func:`refgen.moco.half_cycle_target` with ``flight`` and ``strides``: left and
    right averaged; the forces of ``grf`` by :func:`refgen.moco.half_cycle_forces`),
    mirrored into a full cycle and resampled onto ``cycle``, a 3D cycle made from
    ``name2d`` (same stride time).  Why: tracking the 2D solution, a 3D solve
    compounds the 2D solve's error with its own (walking3d's ankle r 0.86 with the
    measured walk, against walking2d's 0.91).  The phase is the one that brings the
    measured angles closest to ``cycle``'s (a 2D solution may start at its own foot
    strike, the target at the kinematic one); the forces are scaled to the 3D
    model's weight.  Returns ({coordinate: values}, forces or None, how they were made).
    """
    import opensim as osim

    from fastenv.envs.variants import variant_path

    half = moco.half_cycle_target(motion, model_path=str(variant_path("muscle2d")),
                                  flight=flight, strides=strides)
    full = moco.mirror_half_cycle(half)
    period = float(full.time[-1])
    t = cycle.time - cycle.time[0]
    if abs(t[-1] - period) > 0.02:
        raise ValueError(f"{motion.name}: stride {period:.3f} s, the 3D cycle's "
                         f"{t[-1]:.3f} s; expected the same stride")
    joints = [n for n in MEASURED_SAGITTAL if n != "pelvis_tilt"]

    def at(shift, names):
        phase = (t / t[-1] + shift) % 1.0
        return {n: np.interp(phase * period, full.time, full.column(n)) for n in names}

    shifts = np.linspace(-0.1, 0.1, 401)
    misfit = [np.mean([np.mean((v - cycle.column(n)) ** 2) for n, v in at(s, joints).items()])
              for s in shifts]
    shift = float(shifts[int(np.argmin(misfit))])
    values = at(shift, MEASURED_SAGITTAL)
    info = dict(file=motion.name, coordinates=list(MEASURED_SAGITTAL),
                **{k: v for k, v in half.info.items() if k != "pelvis_ty_shift_m"},
                phase_shift_of_cycle=round(shift, 4),
                **{f"rms_from_{name2d}_deg": {n: round(float(np.degrees(np.sqrt(np.mean(
                    (values[n] - cycle.column(n)) ** 2)))), 2) for n in MEASURED_SAGITTAL}},
                how=f"{name2d}'s target ({strides} stride, left and right averaged), "
                    f"mirrored into a full cycle, shifted in phase to fit {name2d}'s angles "
                    "best" + ("; forces scaled to the 3D model's weight" if grf else ""))
    if grf is None:
        return values, None, info
    model = osim.Model(str(model3d))
    weight = model.getTotalMass(model.initSystem()) * 9.80665
    plates = moco.half_cycle_forces(grf, motion, half, weight)
    both = {"r": np.vstack([plates.forces["r"], plates.forces["l"][1:]]),
            "l": np.vstack([plates.forces["l"], plates.forces["r"][1:]])}
    times = np.concatenate([plates.time, plates.time[1:] + plates.time[-1]])
    phase = (t / t[-1] + shift) % 1.0
    forces = moco.ForceTarget(
        t, {side: np.column_stack([np.interp(phase * period, times, f[:, k]) for k in (0, 1)])
            for side, f in both.items()},
        source=plates.source, info=dict(plates.info))
    info["grf_file"] = Path(plates.source).name
    return values, forces, info


def use_measured_sagittal(cycle: Motion, doc: dict, values: dict, info: dict,
                          name2d: str) -> None:
    """Put the measured angles into a 3D cycle derived from ``name2d`` and say so in its
    document (the check then follows it to the measurement, not to ``name2d``)."""
    for n, v in values.items():
        cycle.set(n, v)
    doc["sagittal_source"] = info["file"]
    doc["pelvis_translations_source"] = name2d
    doc["measured_sagittal"] = info
    doc["figures"]["sagittal_source"] = info["file"]


def measured_run(model_path, motion=None) -> OutOfPlane:
    """Average stride of the measured treadmill run (many strides, gait2392 names)."""
    path = motion_file(RUNNING_MOTION, motion)
    src = read_coordinates(path, from_zero=True)
    names = [n for n in OUT_OF_PLANE if n in src.names]
    feet = FootKinematics(model_path)(src)
    signals, events, count = ensemble_cycle(src, feet, names, stride_height_events(src, feet))
    return OutOfPlane(signals, events, path.name,
                      dict(columns=names, strides_averaged=count, events="foot height",
                           cycle="average of every complete stride, each warped onto the mean "
                                 "event phases with its end-to-end drift removed"))


def walking3d_out_of_plane(model_path, out_dir=None) -> OutOfPlane:
    """Out-of-plane signals of the committed walking3d reference (for locked-knee walking)."""
    ref = load_committed("walking3d", out_dir)
    cycle = cycle_of(ref)
    events = cycle_events(cycle, FootKinematics(model_path)(cycle))
    names = [n for n in OUT_OF_PLANE if n != "pelvis_tz"]
    return OutOfPlane(periodic_samples(cycle, names), events, "walking3d (committed reference; "
                      f"its out-of-plane data from {WALKING_MOTION})", dict(columns=names))


# ------------------------------------------------------------------ crouch gait (palsy3d)
#: Assumed average walking speed of the crouch-gait subject (m/s): children with
#: spastic diplegia in crouch walk slower than their typically developing peers
#: (about 1.2 m/s); the file has no forward progression, so a speed must be chosen.
CROUCH_SPEED = 0.9
#: Samples per cycle of the derived crouch cycle (before resampling at the control step).
CROUCH_ROWS = 100


def stance_knee_flexion(cycle: Motion, events: dict) -> dict:
    """Least knee flexion (deg, positive) of each leg during its stance (heel strike to toe off)."""
    n = len(cycle.time) - 1
    phase = np.arange(n) / n
    out = {}
    for s in SIDES:
        a, b = events[f"hs_{s}"], events[f"to_{s}"]
        stance = ((phase - a) % 1.0) <= ((b - a) % 1.0)
        out[s] = float((-np.degrees(cycle.column(f"knee_angle_{s}")[:n]))[stance].min())
    return out


SAGITTAL = ("pelvis_tilt", "hip_flexion_r", "knee_angle_r", "ankle_angle_r", "hip_flexion_l",
            "knee_angle_l", "ankle_angle_l")


def crouch_cycle(model_path, motion=None, speed: float = CROUCH_SPEED,
                 walk_motion=None) -> tuple[Motion, dict]:
    """The measured crouch-gait cycle made a walking cycle of the child model.

    The file holds one cycle normalised to 0-1 s with no forward progression
    and a constant pelvis height.  Its sagittal angles (pelvis tilt, hips,
    knees, ankles) are used as they are, seam error spread linearly.  Its
    frontal and transverse angles are not: they go with 10-30 deg of hip
    rotation, which ``palsy3d`` (like the osim-rl 3D model) has locked, and
    without it they move each stance foot 6-30 cm sideways under the pelvis,
    which no lateral pelvis motion can reconcile with a planted foot.  So the
    out-of-plane angles come from the measured normal walk, re-timed onto the
    crouch cycle's own gait events (as for walking3d).  Forward, lateral and
    vertical pelvis motion are those for which the supporting foot neither
    slides nor sinks (:func:`no_slip_translation`, :func:`no_slip_height`);
    the cycle lasts the stride that gives over the assumed ``speed``.
    Returns (closed cycle, info).
    """
    from fastenv.sim import Simulation

    path = motion_file(CROUCH_MOTION, motion)
    src = read_coordinates(path, from_zero=True)
    missing = [c for c in SAGITTAL if c not in src.names]
    if missing:
        raise ValueError(f"{path.name} lacks coordinates {missing}")
    sim = Simulation(model_path, energetics=False)
    signals = periodic_samples(src, SAGITTAL)
    phase = np.arange(CROUCH_ROWS + 1) / CROUCH_ROWS
    ty = float(sim.buf[sim.layout.slice("q")][sim.coordinate_names.index("pelvis_ty")])
    names = [*SAGITTAL, *OUT_OF_PLANE, "pelvis_tx", "pelvis_ty"]
    cycle = Motion(phase.copy(), names, np.zeros((len(phase), len(names))))
    for c in SAGITTAL:
        cycle.set(c, at_phase(signals[c], phase))
    cycle.set("pelvis_ty", ty)
    fk = FootKinematics(model_path)
    events = cycle_events(cycle, fk(cycle))
    walk = measured_walk(model_path, walk_motion)
    insert(cycle, warp_out_of_plane(walk.signals, walk.events, events, symmetric=False))
    feet = fk(cycle)
    # stride from the one-second cycle, then the duration that gives `speed`
    stride = float(no_slip_translation(cycle, feet, events, axis=0)[-1])
    duration = stride / speed
    cycle.time = phase * duration
    cycle.set("pelvis_tx", no_slip_translation(cycle, feet, events, axis=0))
    cycle.set("pelvis_tz", no_slip_translation(cycle, feet, events, axis=2))
    cycle.set("pelvis_ty", ty + no_slip_height(cycle, feet, events))
    info = dict(file=path.name, sagittal=list(SAGITTAL),
                out_of_plane=f"{walk.source}, re-timed onto the crouch cycle's gait events",
                speed_assumed_m_s=speed, stride_m=stride, cycle_duration_s=duration,
                cadence_steps_per_min=120.0 / duration, events=events)
    return cycle, info


def forces_on_cycle(time: np.ndarray, target: moco.ForceTarget,
                    scale: float) -> moco.ForceTarget:
    """A periodic cycle's forces ``target`` on the clock ``time`` of another cycle of
    the same gait (by phase: both start at the same event), times ``scale``."""
    u = (time - time[0]) / (time[-1] - time[0])
    s = target.time / target.time[-1]
    zeros = np.zeros(len(u))
    return moco.ForceTarget(
        time - time[0],
        {side: np.column_stack([zeros, scale * np.interp(u, s[:-1], f[:-1, 1], period=1.0)])
         for side, f in target.forces.items()},
        source=target.source, info=dict(target.info))


def palsy3d_cycle(*, motion=None, command: str = "", log=print) -> tuple[Motion, dict, dict]:
    """Kinematic crouch-gait cycle for ``palsy3d`` (see :func:`crouch_cycle`).

    The pelvis height is set for quasi-static support: at every frame the
    contact carries body weight (the file has no pelvis height, and a
    no-slip height leaves both feet fully loaded in double support).
    Returns (closed cycle, json document, gait events).
    """
    from fastenv.envs.variants import variant_path

    model = variant_path("palsy3d")
    cycle, info = crouch_cycle(model, motion)
    events = info["events"]
    knee = stance_knee_flexion(cycle, events)
    log(f"[palsy3d] stride {info['stride_m']:.3f} m in {info['cycle_duration_s']:.3f} s; "
        f"least stance knee flexion r {knee['r']:.1f}, l {knee['l']:.1f} deg")
    dy, _ = fit_heights(model, cycle, np.ones(len(cycle.time)), cyclic=True)
    info["pelvis_height"] = ("no-slip height of the supporting foot, then per frame the height "
                             "at which the contact carries body weight (quasi-static; "
                             f"offsets {dy.min() * 1000:+.1f} to {dy.max() * 1000:+.1f} mm)")
    figures = dict(kind="kinematic", source=info["file"],
                   out_of_plane_source=info["out_of_plane"],
                   min_stance_knee_flexion_deg=[knee["r"], knee["l"]],
                   speed_assumed_m_s=info["speed_assumed_m_s"],
                   cadence_steps_per_min=info["cadence_steps_per_min"])
    doc = dict(description="palsy3d: crouch gait of a child with spastic diplegia on the "
                           "palsy3d model (1.61 m, 41.5 kg), from a measured crouch-gait cycle",
               kind="kinematic", model="fastenv variant palsy3d", command=command,
               crouch_cycle=info,
               assumptions=f"forward speed {info['speed_assumed_m_s']} m/s (the file has no "
                           "forward progression); the stride follows from the kinematics on "
                           "the child model with a non-sliding stance foot, the cycle duration "
                           "from stride / speed; out-of-plane angles of a normal walk (the "
                           "model's hip rotation is locked)",
               figures=figures)
    return cycle, doc, events


def track_and_write(name: str, variant: str, target: Motion, doc: dict, events: dict, *,
                    symmetric: bool, meshes=(25,), settings: TrackingSettings | None = None,
                    work_dir=None, out_dir, resume: bool = False, guess=None,
                    log=print, forces=None) -> dict:
    """Moco tracking of a kinematic 3D cycle; writes the solution as the reference
    (to ``out_dir``).

    Each mesh in ``meshes`` is solved in turn, each from the previous
    solution (coarse first).  If the last stage does not converge the
    reference is not written and a RuntimeError says so (the kinematic one
    stays).  ``doc`` is the kinematic cycle's document: it becomes the
    ``tracking_target`` entry of the new one.  ``guess``: a Moco solution
    (.sto) of the same model as the first stage's initial guess instead of
    the kinematic target (warm start from an earlier solve, e.g. the
    committed ``<name>_solution.sto`` that this writes beside the reference).
    """
    import dataclasses

    import opensim as osim

    from fastenv.envs.variants import variant_path

    model = variant_path(variant)
    settings = settings or TrackingSettings()
    out_dir, work_dir = moco.output_dirs(out_dir, work_dir, name)
    labels = [f"{name}_tracking_{mesh}" for mesh in meshes]

    def solve(label, mesh, guess_file):
        # the first stage starts from ``guess`` (or the kinematic target), each later
        # one from the previous stage's solution file
        stage = dataclasses.replace(settings, mesh=int(mesh))
        solution, info = solve_tracking(model, target, symmetric=symmetric, settings=stage,
                                        work_dir=work_dir, label=label, log=log,
                                        guess_file=guess_file, forces=forces)
        if guess_file is not None:
            info["initial_guess"] = Path(guess_file).name
        return solution, info

    plan = [(label, mesh, lambda _, label=label, mesh=mesh, i=i: solve(
        label, mesh, guess if i == 0 else work_dir / f"{labels[i - 1]}_solution.sto"))
        for i, (label, mesh) in enumerate(zip(labels, meshes, strict=True))]
    solutions, stages = moco.run_stages(
        plan, work_dir=work_dir, resume=resume, log=log,
        stop_unless_converged=f"the kinematic {name} reference is kept")
    solution = solutions[labels[-1]]
    # the solution itself (states, controls) ships beside the reference: its muscle
    # excitations, and a warm start (--guess) for regenerating it
    solution.write(str(out_dir / f"{name}_solution.sto"))
    cycle = motion_from_solution(solution, target.names, symmetric=symmetric)
    excitations = muscle_excitations_from_solution(solution, symmetric=symmetric)
    errors = tracking_errors_deg(cycle, target)
    hip_rot = [np.degrees(np.abs(np.asarray(solution.getStateMat(s))).max())
               for s in solution.getStateNames() if "hip_rotation" in s and s.endswith("/value")]
    figures = {k: v for k, v in doc.get("figures", {}).items()
               if k in ("out_of_plane_source", "sagittal_source", "source", "speed_assumed_m_s",
                        "min_stance_knee_flexion_deg", "cadence_steps_per_min")}
    figures.update(kind="moco_tracking",
                   tracking_rms_deg={k: v for k, v in errors.items() if not is_translation(k)},
                   tracking_rms_mm={k: v for k, v in errors.items() if is_translation(k)},
                   hip_rotation_peak_deg=max(hip_rot) if hip_rot else 0.0)
    if "min_stance_knee_flexion_deg" in figures:
        knee = stance_knee_flexion(cycle, events)
        figures["min_stance_knee_flexion_deg"] = [knee["r"], knee["l"]]
    if settings.reserve_torque > 0:
        figures["reserves"] = reserve_figures(model, settings, solution)
        log(f"[{name}] reserve torques: largest share of a joint moment "
            f"{figures['reserves']['max_share_of_joint_moment']:.1%}")
    target_doc = {k: v for k, v in doc.items() if k not in ("figures", "command")}
    target_doc["figures"] = {k: v for k, v in doc.get("figures", {}).items()}
    new_doc = dict(
        description=doc.get("description", name) + "; made dynamically consistent by an "
                    "OpenSim Moco tracking solve",
        kind="moco_tracking", model=doc.get("model"), command=doc.get("command"),
        moco=dict(opensim_version=osim.GetVersion(), symmetric_half_cycle=symmetric,
                  model_changes="smooth sphere contacts (same spheres and contact parameters), "
                                "DeGroote-Fregly muscles with rigid tendons, back welded at "
                                "its locked angle, locked hip rotations held by a "
                                f"{settings.hip_rotation_stiffness:g} N m/rad spring",
                  settings={k: v for k, v in dataclasses.asdict(settings).items()
                            if k not in ("verbose", "output_interval", "mesh")},
                  stages=stages),
        tracking_target=target_doc, figures=figures)
    return finish(name, model, cycle, cyclic=True, playback="loop", doc=new_doc,
                  out_dir=out_dir, log=log, events=events, excitations=excitations)


# ------------------------------------------------------------------ command line
def _command(name: str, args) -> str:
    cmd = f"{moco.COMMAND} {name}"
    if getattr(args, "motion", None):
        cmd += f" --motion {Path(args.motion).name}"
    return cmd


def _out(args) -> Path:
    """The folder a generator writes to: ``args.out`` (the command line's ``--out``,
    by default the checkout's envs/references/)."""
    if getattr(args, "out", None) is None:
        raise ValueError("no output folder: pass out=DIR (the command line's --out)")
    return Path(args.out)


def _log(args):
    return getattr(args, "log", None) or print


def generate_walking3d(args) -> dict:
    """The measured walk on muscle3d: its sagittal angles and force plates (as walking2d
    tracks them, :func:`measured_sagittal`), walking2d's pelvis translations and
    the out-of-plane motion of the measured normal walk, made dynamically consistent by
    a Moco tracking solve (symmetric half cycle; ``args.kinematic``: the kinematic
    cycle itself)."""
    from fastenv.envs.variants import variant_path

    model = variant_path("muscle3d")
    cycle, doc, *rest = derive_cycle_from_2d(
        "walking3d", "walking2d", "muscle3d", measured_walk(model, getattr(args, "motion", None)),
        variant2d="muscle2d", command=_command("walking3d", args), out_dir=_out(args))
    values, forces, info = measured_sagittal(
        cycle, model, motion_file(moco.DEFAULT_MOTION), name2d="walking2d",
        grf=motion_file(moco.DEFAULT_GRF))
    use_measured_sagittal(cycle, doc, values, info, "walking2d")
    # the new angles move the feet: the pelvis height is fitted again, now to the force
    # plates' total (walking2d's force was fitted with walking2d's angles)
    probe = ContactProbe(model)
    dy, static = fit_heights(model, cycle, (forces.forces["r"][:, 1] + forces.forces["l"][:, 1])
                             / probe.body_weight, cyclic=True, probe=probe)
    doc["pelvis_height"] += (f"; then, with the measured angles, per frame the height at "
                             f"which the 3D feet carry the force plates' total (offsets "
                             f"{dy.min() * 1000:+.1f} to {dy.max() * 1000:+.1f} mm"
                             + (f", frames {static} at rest" if static else "") + ")")
    doc["description"] = ("walking3d: the measured walk's sagittal angles on the 3D model "
                          "muscle3d, walking2d's pelvis translations, out-of-plane "
                          "coordinates added")
    # weights tried, each scored by `python -m refgen check walking3d` (warm-started):
    # hips and ankles 3x without forces: ankle r 0.85, push-off hump 1.50 BW; ankles 6x,
    # forces 0.002: ankle r 0.90, push-off 1.33; forces 0.006: loading hump 0.97;
    # forces 0.004: loading 0.98, and with knees 3x too every criterion passes (these);
    # adding pelvis tilt 4x and list 3x: ankle r 0.895; keeping the swing foot off the
    # floor (moco.Settings.swing_windows): hip 6.2 deg RMS, ankle r 0.74.  Kept off only
    # where its toes brushed it (up to 0.13 BW at 85-88% of the cycle), 83-92% of the
    # cycle (66-84% of the half cycle, mirrored onto the left foot), every criterion
    # passes and nothing brushes (warm-started from the solve without the window; from
    # the kinematic guess it ends in a worse optimum: hip 5.1 deg RMS, ankle r 0.85)
    return write_3d("walking3d", "muscle3d", (cycle, doc, *rest), args,
                    TrackingSettings(coordinate_weights={
                        "hip_flexion_r": 3.0, "hip_flexion_l": 3.0,
                        "knee_angle_r": 3.0, "knee_angle_l": 3.0,
                        "ankle_angle_r": 6.0, "ankle_angle_l": 6.0},
                        grf_tracking_weight=0.004, swing_windows=(("l", 0.66, 0.84),)),
                    symmetric=True, forces=forces)


def generate_running3d(args) -> dict:
    """The measured treadmill run on muscle3d: its mean stride's sagittal angles (as
    running2d tracks them, :func:`measured_sagittal`) and out-of-plane motion with
    running2d's stride, timing and pelvis translations, made dynamically consistent by
    a Moco tracking solve (symmetric half cycle, at the target's speed, running2d's
    tracking weight and swing windows; ``args.kinematic``: the kinematic cycle, which
    keeps the 2D run's own vertical motion: a frame-by-frame height fit implied
    -2.1 BW).  Tracking running2d's solution instead, at weight 10, it was 5.9 / 7.5 /
    6.0 deg RMS (hip, knee, ankle) from the measured run; the measured angles at
    weight 10: 4.7 / 5.5 / 5.4."""
    from fastenv.envs.variants import variant_path
    from refgen.tasks2d import RunningSettings

    model = variant_path("muscle3d")
    cycle, doc, *rest = derive_cycle_from_2d(
        "running3d", "running2d", "muscle3d", measured_run(model, getattr(args, "motion", None)),
        variant2d="muscle2d", command=_command("running3d", args), out_dir=_out(args),
        keep_2d_height=True)
    settings2d = RunningSettings()
    values, _, info = measured_sagittal(
        cycle, model, motion_file(RUNNING_MOTION, getattr(args, "motion", None)),
        name2d="running2d", flight=True, strides=settings2d.strides)
    use_measured_sagittal(cycle, doc, values, info, "running2d")
    # knees 3x, ankles 2x since the Achilles preload (2026-12-06): at knees 2x alone the
    # ankle was 5.10 deg RMS from the run, at knees and ankles 2x the knee 5.15
    return write_3d("running3d", "muscle3d", (cycle, doc, *rest), args,
                    TrackingSettings(track_speed=True, tracking_weight=settings2d.tracking_weight,
                                     swing_windows=settings2d.swing_windows,
                                     coordinate_weights={"knee_angle_r": 3.0,
                                                         "knee_angle_l": 3.0,
                                                         "ankle_angle_r": 2.0,
                                                         "ankle_angle_l": 2.0}),
                    symmetric=True)


def generate_jumping3d(args) -> dict:
    """jumping2d on muscle3d; a symmetric vertical jump has no out-of-plane motion, and
    the 2D jump's vertical motion is kept (one standing offset); its excitations are
    jumping2d's (:func:`attach_borrowed_excitations`)."""
    doc = derive_from_2d("jumping3d", "jumping2d", "muscle3d", None, variant2d="muscle2d",
                         command=_command("jumping3d", args), out_dir=_out(args),
                         standing_offset=True, log=_log(args))
    attach_borrowed_excitations("jumping3d", references_dir=REFERENCES_DIR,
                                out_dir=_out(args), log=_log(args))
    return doc


def generate_lockedknee3d(args) -> dict:
    """lockedknee2d on muscle3d_lockedknee + walking3d's out-of-plane motion, the locked
    leg circumducted in its swing (:func:`circumduct`), made dynamically consistent by
    a Moco tracking solve (full cycle: the gait is asymmetric; the swing feet kept off
    the floor in lockedknee2d's swing windows; ``args.kinematic``: the kinematic cycle).

    Quasi-static pelvis height of the kinematic cycle: the vaulting gait's height
    offsets change too fast (4-34 mm within a step) for the per-frame fit to the 2D
    force to hold at the 3D speeds (the contact damping of the offsets' speed is not
    fitted): the first double support carried 1.68 body weights that way.
    16 harmonics (not 8) let the height follow the locked leg's landing.
    """
    from fastenv.envs.variants import variant_path
    from refgen.tasks2d import LockedKneeSettings, cycle_forces

    derived = derive_cycle_from_2d(
        "lockedknee3d", "lockedknee2d", "muscle3d_lockedknee",
        walking3d_out_of_plane(variant_path("muscle3d"), _out(args)),
        variant2d="muscle2d_lockedknee", quasi_static=True, harmonics=16,
        circumduction=LOCKED_LEG_CIRCUMDUCTION,
        command=_command("lockedknee3d", args), out_dir=_out(args))
    # lockedknee2d's own foot forces tracked too (as walking3d tracks walking2d's force
    # plates): without them the 3D solve loaded the sound leg to 2.40 BW at heel strike
    # and sagged to 0.54 BW in mid-stance
    path2d = committed_file("lockedknee2d_coordinates.sto", "lockedknee2d", _out(args))
    model2d = str(variant_path("muscle2d_lockedknee"))
    forces2d = cycle_forces(path2d, model2d)
    forces = forces_on_cycle(derived[0].time, forces2d, ContactProbe(
        variant_path("muscle3d_lockedknee")).body_weight / moco.body_weight_n(model2d))
    derived[1]["grf_target"] = dict(file=path2d.name, **forces.info)
    # straight on 25 intervals: from the kinematic cycle the 10-interval stage (107 ms
    # intervals over the full cycle) stayed infeasible (primal infeasibility 150-600).
    # The centre of mass's acceleration peaks flattened as in lockedknee2d: with the
    # forces alone the locked leg landed at 1.73 BW (1.38 at weight 4e-4, 1.32 at 1.2e-3).
    # The locked leg pushes off as in lockedknee2d: at 96 % of the cycle it is alone on
    # the floor, where its late-stance peak was 0.95 BW, and the ground carries at least
    # 1.03 BW (the mesh point 0.96 of 25 intervals)
    return write_3d("lockedknee3d", "muscle3d_lockedknee", derived, args,
                    TrackingSettings(swing_windows=LockedKneeSettings().swing_windows,
                                     meshes=(25,), grf_tracking_weight=0.004,
                                     com_acceleration_weight=3e-3,
                                     com_force_bounds=((0.95, 0.97, 1.03, None),)),
                    symmetric=False, forces=forces)


#: (side, start, end) of lockedknee3d's circumduction: the locked leg's swing, from
#: lift-off to landing, as fractions of the cycle from right heel strike
LOCKED_LEG_CIRCUMDUCTION = ("l", 0.2, 0.6)


def generate_palsy3d(args) -> dict:
    """Crouch gait of the palsy3d child, made dynamically consistent by Moco.

    The measured crouch-gait cycle on the child model (:func:`palsy3d_cycle`)
    is the tracking target of a full-cycle (asymmetric) Moco tracking solve
    with the palsy3d model's own weakened, contractured muscles; the solution
    is the reference.  ``args.kinematic`` writes the kinematic target instead.
    """
    cycle, doc, events = palsy3d_cycle(motion=getattr(args, "motion", None),
                                       command=_command("palsy3d", args), log=_log(args))
    # knees weighted 3x: at 1x the left knee extended 8-9 deg more than the measured
    # crouch at 5-15 % of the cycle (knee r 0.88 with the source, 0.94 at 3x).
    # The recording has no pelvis height, so the vertical motion is the solver's: left
    # free it fell through the right stance to 0.43 BW with no push-off.  Bounds on the
    # force the centre of mass implies (fractions of the cycle, the right foot alone
    # on the floor in 0.07-0.41) give it a walking stance: loading at most 1.26 BW, at
    # least 0.66 BW through mid and late right stance (enforced inside the mesh
    # intervals too: at the mesh points alone it dipped to 0.55 between them), a push-off
    # of at least 1.03 BW, and at least 0.76 BW late in the left stance (its trough).
    # On the preloaded Achilles tendons (2026-12-06) the left loading rose to 1.35 BW:
    # at most 1.26 BW in 0.42-0.67 too (the left foot's loading, the right pushing off
    # and lifting); bounding the double support at 0-0.07 as well took the left
    # push-off down to 0.96 BW.
    return write_3d("palsy3d", "palsy3d", (cycle, doc, events, True, "loop"), args,
                    TrackingSettings(coordinate_weights={"knee_angle_r": 3.0,
                                                         "knee_angle_l": 3.0},
                                     com_force_bounds=((0.07, 0.17, None, 1.26),
                                                       (0.42, 0.67, None, 1.26),
                                                       (0.25, 0.55, 0.66, None),
                                                       (0.35, 0.41, 1.03, None),
                                                       (0.91, 0.97, 0.76, None)),
                                     path_constraints_inside_intervals=True),
                    symmetric=False)


def _tendon_preload(variant: str, settings: TrackingSettings, args) -> float:
    """The solve's Achilles preload: ``--rigid-tendon-preload``, else the settings', else
    the env's Moco family's for ``variant``, so a solution drives the model it was solved
    on."""
    from fastenv.envs.variants import VARIANTS

    given = getattr(args, "rigid_tendon_preload", None)
    if given is not None:
        return float(given)
    if settings.rigid_tendon_preload is not None:
        return float(settings.rigid_tendon_preload)
    return VARIANTS[variant].dgf_tendon_preload


def write_3d(name: str, variant: str, derived: tuple, args, settings: TrackingSettings | None,
             *, symmetric: bool, forces=None) -> dict:
    """Write a 3D reference from its kinematic cycle ``derived`` = (cycle, doc,
    events, cyclic, playback): a Moco tracking solve of it with ``settings``
    (:func:`track_and_write`), or the kinematic cycle itself when ``settings``
    is None or ``args.kinematic`` is set.  The command-line options (threads,
    mesh intervals, iterations, work folder, resume, guess) apply to the solve.
    """
    import dataclasses

    from fastenv.envs.variants import variant_path

    cycle, doc, events, cyclic, playback = derived
    log = _log(args)
    if settings is None or getattr(args, "kinematic", False):
        return finish(name, variant_path(variant), cycle, cyclic=cyclic, playback=playback,
                      doc=doc, out_dir=_out(args), log=log, events=events)
    settings = dataclasses.replace(
        settings, threads=getattr(args, "threads", None) or settings.threads,
        passive_fiber_forces=settings.passive_fiber_forces
        and not getattr(args, "no_passive_fiber_forces", False),
        rigid_tendon_preload=_tendon_preload(variant, settings, args),
        verbose=not getattr(args, "quiet", False),
        output_interval=getattr(args, "output_interval", 0) or 0,
        max_iterations=getattr(args, "max_iterations", None) or settings.max_iterations)
    mesh = getattr(args, "mesh_intervals", None)
    if mesh:
        settings.meshes = (min(settings.meshes[0], mesh), mesh) if mesh > settings.meshes[0] \
            else (mesh,)
    if getattr(args, "guess", None):
        settings.meshes = settings.meshes[-1:]    # a warm start needs no coarse stage
    return track_and_write(name, variant, cycle, doc, events, symmetric=symmetric,
                           meshes=settings.meshes, settings=settings,
                           work_dir=getattr(args, "work_dir", None) or f"/tmp/fastenv_{name}",
                           out_dir=_out(args), resume=getattr(args, "resume", False),
                           guess=getattr(args, "guess", None), log=log, forces=forces)


#: The 3D references made by a Moco tracking solve (jumping3d is kinematic).
TRACKED_3D = ("walking3d", "running3d", "lockedknee3d", "palsy3d")

#: name -> (generator(args), one-line description), as ``__main__.GENERATORS``.
GENERATORS_3D: dict[str, tuple[Callable, str]] = {
    "walking3d": (generate_walking3d, "3D walking cycle of muscle3d: Moco tracking of the "
                                      "measured walk's joint angles and force plates (as "
                                      "walking2d) with measured out-of-plane motion "
                                      "(--kinematic: without the solve)"),
    "running3d": (generate_running3d, "3D running cycle of muscle3d: Moco tracking of the "
                                      "measured run's mean stride (as running2d) with measured "
                                      "out-of-plane motion (--kinematic: without the solve)"),
    "jumping3d": (generate_jumping3d, "3D vertical jump of muscle3d: jumping2d, no out-of-plane "
                                      "motion (kinematic)"),
    "lockedknee3d": (generate_lockedknee3d, "3D locked-knee walking of muscle3d_lockedknee: "
                                            "Moco tracking of lockedknee2d plus walking3d's "
                                            "out-of-plane motion, the locked leg circumducted "
                                            "(--kinematic: without the solve)"),
    "palsy3d": (generate_palsy3d, "crouch gait of the palsy3d child model: Moco tracking of a "
                                  "measured crouch-gait cycle (--kinematic: the cycle itself)"),
}


# ------------------------------------------------------------------ Moco tracking (3D)
@dataclass
class TrackingSettings(SolveSettings):
    """Knobs of a 3D Moco tracking solve; the defaults made the committed ones.

    The tracking target is a kinematic 3D reference; the solve makes it
    dynamically consistent: muscle-driven (DeGroote-Fregly muscles, rigid
    tendons, passive fibre forces), smooth sphere contacts in place of
    Hunt-Crossley, and a reserve torque on every joint (not on the pelvis:
    no residual forces).  Why reserves and passive forces: without reserves,
    or with them but without passive fibre forces, IPOPT stalled on palsy3d
    (primal infeasibility 150-350 after 40-60 iterations); with both it
    converged, and the reserves end up supplying a few per cent of the joint
    moments (reported as ``figures['reserves']``).
    """

    mesh: int = 25                     # mesh intervals over the solved duration
    #: the stages' meshes, each solved from the previous solution: a coarse
    #: first solve converged from the kinematic guess where a direct
    #: 25-interval one stalled (walking3d)
    meshes: tuple = (10, 25)
    tracking_weight: float = 10.0      # per (rad^2 s) of coordinate error
    effort_weight: float = 1.0         # sum of squared excitations
    #: per-state tracking weights relative to rotations: forward progression only
    #: guides the speed; lateral sway and height follow from the dynamics.
    translation_weights: dict = None
    #: relative tracking weights of rotational coordinates (default 1)
    coordinate_weights: dict = field(default_factory=dict)
    passive_fiber_forces: bool = True
    #: > 0: the compliant (Achilles) tendons' slack lengths are set to their length at
    #: this many maximum isometric forces before they become rigid
    #: (fastenv.envs.variants.preload_rigid_tendons); 0: the model's slack lengths;
    #: None: as the env's Moco family of the variant (``VariantSpec.dgf_tendon_preload``)
    rigid_tendon_preload: float | None = None
    #: hip_rotation is locked in the env's models; Moco refuses locked coordinates
    #: of a 3-DOF hip, so a stiff rotational spring (N m/rad) holds it at zero.
    hip_rotation_stiffness: float = 2000.0
    #: weight of tracking the target's calcaneus positions (per m^2 s): keeps the
    #: step width and foot paths, which joint-angle tracking alone trades away
    foot_tracking_weight: float = 100.0
    reserve_torque: float = 20.0       # N m per unit control on each joint; 0: none
    reserve_weight: float = 10.0       # effort weight of the reserve controls
    #: bound each coordinate with a CoordinateLimitForce at that force's onset: a
    #: tracked target past the onset (walking2d's knee extends 5 deg, the 3D knee's
    #: limit begins at 0) otherwise leans on the limit force (36 N m in walking3d,
    #: 25% of the knee's peak moment), which no joint does in people
    limit_onset_bounds: bool = True
    #: (side, start, end) fractions of the solved interval in which that foot's
    #: contact spheres stay a radius above the floor (moco.add_swing_clearance): without
    #: them running3d's swing toes struck the floor at 0.5-0.8 BW in late swing
    swing_windows: tuple = ()
    #: pelvis_tx ends where the target's does, so the solve keeps the target's speed
    #: (running: tracked with a small weight, a 2D run slowed from 3.71 to 2.67 m/s)
    track_speed: bool = False
    #: weight (per N, squared error over body weight) of tracking each foot's vertical
    #: ground reaction force given to the solve (``forces``); 0: not tracked
    grf_tracking_weight: float = 0.0
    #: weight of the integral of the centre of mass's vertical acceleration to the
    #: power ``com_acceleration_exponent`` (moco.com_acceleration_goal): flattens
    #: peaks of the total vertical ground force; 0: no such term
    com_acceleration_weight: float = 0.0
    com_acceleration_exponent: int = 6
    #: (start, end, min_bw, max_bw) fractions of the solved interval in which the total
    #: vertical ground force implied by the centre of mass's acceleration stays within
    #: [min_bw, max_bw] body weights (moco.add_com_force_bounds; None: unbounded that way)
    com_force_bounds: tuple = ()
    max_iterations: int = 1000

    def __post_init__(self):
        if self.translation_weights is None:
            self.translation_weights = {"pelvis_tx": 0.2, "pelvis_ty": 1.0, "pelvis_tz": 0.1}


#: Coordinates whose sign flips from one half of a symmetric gait cycle to the other:
#: the runtime's list, which also mirrors users' half-cycle files (the lumbar bending and
#: rotation it names are not in these models)
ANTISYMMETRIC = MIRROR_NEGATED


def contact_spheres(model) -> list:
    """Names of the model's contact spheres (``r_heel``, ``r_toe1``, ...)."""
    import opensim as osim

    return [g.getName() for g in model.getContactGeometrySet()
            if osim.ContactSphere.safeDownCast(g) is not None]


def moco_processor(model_path, settings: TrackingSettings):
    """Moco-ready 3D model: smooth sphere contacts, locked coordinates handled.

    Why each change: Moco needs twice-differentiable dynamics (Hunt-Crossley
    contacts become one SmoothSphereHalfSpaceForce per contact sphere, same
    stiffness, dissipation and friction; Thelen muscles become DeGroote-Fregly
    ones with rigid tendons), and it refuses locked coordinates: the back
    (one locked coordinate) is welded at its locked angle, a locked knee and
    ankle (``muscle3d_lockedknee``) are welded at their locked pose
    (:func:`refgen.moco.weld_locked_joints`), the locked hip
    rotations are unlocked and held by a stiff spring.
    """
    import opensim as osim

    from fastenv.envs.variants import preload_rigid_tendons

    model = osim.Model(str(model_path))
    model.finalizeConnections()
    moco.smooth_sphere_contacts(osim, model, label=str(model_path))
    welds, locked_joints = [], []
    coords = model.updCoordinateSet()
    for joint in model.getJointSet():
        names = [joint.get_coordinates(k).getName() for k in range(joint.numCoordinates())]
        locked = [n for n in names if coords.get(n).get_locked()]
        if not locked:
            continue
        if len(names) == 1 and joint.getName() != "back":
            locked_joints.append(joint.getName())     # the locked knee and ankle
        elif joint.getConcreteClassName() == "PinJoint" and len(names) == 1:
            moco.fold_pin_angle(osim, model, joint.getName())   # the back
            welds.append(joint.getName())
        elif set(locked) <= {"hip_rotation_r", "hip_rotation_l"}:
            for n in locked:
                c = coords.get(n)
                c.setDefaultLocked(False)
                spring = osim.SpringGeneralizedForce(n)
                spring.setName(f"lock_{n}")
                spring.setStiffness(settings.hip_rotation_stiffness)
                spring.setViscosity(0.05 * settings.hip_rotation_stiffness)
                spring.setRestLength(c.getDefaultValue())
                model.addForce(spring)
        else:
            raise ValueError(f"joint {joint.getName()}: locked coordinates {locked} are not "
                             "supported by the 3D tracking solve")
    if locked_joints:
        # welded at the locked pose, their path points fixed there (as in 2D)
        moco.weld_locked_joints(model, locked_joints)
    if settings.reserve_torque > 0:
        for c in model.getCoordinateSet():
            n = c.getName()
            if n.startswith("pelvis_") or c.get_locked() or n.startswith("lumbar"):
                continue
            act = osim.CoordinateActuator(n)
            act.setName(f"reserve_{n}")
            act.setOptimalForce(settings.reserve_torque)
            act.setMinControl(-1.0)
            act.setMaxControl(1.0)
            model.addForce(act)
    if settings.swing_windows:
        moco.add_centre_stations(osim, model, contact_spheres(model))
    if settings.rigid_tendon_preload:
        preload_rigid_tendons(model, settings.rigid_tendon_preload)
    model.finalizeFromProperties()
    model.finalizeConnections()
    return moco.dgf_processor(osim, model, welds=welds,
                              fiber_curve_width=settings.fiber_curve_width,
                              passive_fiber_forces=settings.passive_fiber_forces)


def solve_tracking(model_path, target: Motion, *, symmetric: bool, settings: TrackingSettings,
                   work_dir, label: str, log=print, guess_file=None, forces=None):
    """Track a closed 3D cycle with the muscle-driven, contact-driven model.

    ``symmetric``: solve half a cycle whose end is the mirror of its start
    (left and right swapped, ``ANTISYMMETRIC`` coordinates negated), as the 2D
    pipeline does; otherwise the whole cycle, periodic.  ``forces``: a
    :class:`refgen.moco.ForceTarget` on the target's clock (from its first frame),
    tracked with ``settings.grf_tracking_weight``.  Returns (solution, info); the
    solution is also written to ``work_dir/<label>_solution.sto``.
    """
    import opensim as osim

    work_dir = Path(work_dir)
    proc = moco_processor(model_path, settings)
    model = proc.process()
    model.initSystem()
    paths = {c.getName(): c.getAbsolutePathString() for c in model.getCoordinateSet()}
    names = [n for n in target.names if n in paths]
    duration = float(target.time[-1] - target.time[0])
    final = duration / 2 if symmetric else duration
    keep = target.time <= final + 1e-9
    t = target.time[keep] - target.time[0]
    study = osim.MocoStudy()
    study.setName(label)
    problem = study.updProblem()
    problem.setModelProcessor(proc)
    problem.setTimeBounds(0, final)
    onsets = moco.limit_onsets(model) if settings.limit_onset_bounds else {}
    for n in names:
        y = target.column(n)
        if n == "pelvis_tx":
            lo, hi = y.min() - 0.3, y.max() + 0.3
            if settings.track_speed:   # the end too: the measured speed exactly
                problem.setStateInfo(f"{paths[n]}/value", [lo, hi], float(y[0]),
                                     float(np.interp(final, target.time - target.time[0], y)))
            else:
                problem.setStateInfo(f"{paths[n]}/value", [lo, hi], float(y[0]))
            problem.setStateInfo(f"{paths[n]}/speed", [0.1, 3.0 * (y[-1] - y[0]) / duration + 1.0])
        else:
            margin = 0.08 if is_translation(n) else np.radians(15.0)
            lo, hi = onsets.get(n, (-np.inf, np.inf))
            problem.setStateInfo(f"{paths[n]}/value", [max(y.min() - margin, lo),
                                                      min(y.max() + margin, hi)])
    for n in ("hip_rotation_r", "hip_rotation_l"):
        if n in paths and n not in names:
            problem.setStateInfo(f"{paths[n]}/value", [-np.radians(10), np.radians(10)])

    problem.addGoal(moco.tracking_goal(osim, model, "tracking", settings.tracking_weight, t,
                                       {n: target.column(n)[keep] for n in names},
                                       [*settings.translation_weights.items(),
                                        *settings.coordinate_weights.items()]))
    if settings.foot_tracking_weight > 0:
        problem.addGoal(moco.foot_tracking_goal(
            osim, model, settings.foot_tracking_weight, t,
            {n: target.column(n)[keep] for n in target.names}, model_path))
    effort = osim.MocoControlGoal("effort", settings.effort_weight)
    for act in model.getActuators():
        if act.getName().startswith("reserve_"):
            effort.setWeightForControl(act.getAbsolutePathString(), settings.reserve_weight)
    problem.addGoal(effort)
    if forces is not None and settings.grf_tracking_weight > 0:
        spheres = contact_spheres(model)
        problem.addGoal(moco.contact_tracking_goal(
            osim, model, forces, settings.grf_tracking_weight, work_dir,
            spheres={s: [n for n in spheres if n.startswith(f"{s}_")] for s in SIDES}))
    if settings.com_acceleration_weight > 0:
        problem.addGoal(moco.com_acceleration_goal(osim, settings.com_acceleration_weight,
                                                   settings.com_acceleration_exponent))

    moco.add_com_force_bounds(osim, problem, settings.com_force_bounds, final)
    if settings.swing_windows:
        spheres = contact_spheres(model)
        moco.add_swing_clearance(osim, problem, model, settings.swing_windows, final,
                                 {s: [n for n in spheres if n.startswith(f"{s}_")]
                                  for s in SIDES})
    problem.addGoal(moco.periodicity_goal(osim, model, symmetric=symmetric,
                                          negated=ANTISYMMETRIC, name="periodicity"))

    solver = moco.configure_solver(study, settings, settings.mesh)
    if guess_file is not None:
        guess = osim.MocoTrajectory(str(guess_file))
        guess.resampleWithNumTimes(2 * int(settings.mesh) + 1)
    else:
        guess = moco.kinematic_guess(osim, solver, model, target.time - target.time[0],
                                     target.as_dict(), end=final)
    solver.setGuess(guess)
    log(f"[{label}] {settings.mesh} mesh intervals over {final:.3f} s "
        f"({'half cycle, symmetric' if symmetric else 'full cycle'})")
    return moco.solve_stage(study, label, settings.mesh, work_dir, log)


def reserve_figures(model_path, settings: TrackingSettings, solution) -> dict:
    """How much of each joint moment the reserve torques supply.

    Per coordinate: peak and RMS reserve torque (N m) and the peak of the
    muscle moment (sum over muscles of tendon force times moment arm) for
    comparison; ``max_share_of_joint_moment`` is the largest ratio of peak
    reserve to peak net actuator moment (muscles + reserve) over all joints.
    The usual acceptance rule for tracking simulations keeps reserves to a few
    per cent of the net joint moment.
    """
    import opensim as osim

    model = moco_processor(model_path, settings).process()
    state = model.initSystem()
    muscles = [m for m in model.getMuscles()]
    reserves = {a.getName()[len("reserve_"):]: a for a in model.getActuators()
                if a.getName().startswith("reserve_")}
    outputs = [f"{m.getAbsolutePathString()}|tendon_force" for m in muscles]
    outputs += [f"{a.getAbsolutePathString()}|actuation" for a in reserves.values()]
    # output paths are regular expressions: escape the '|' between path and output
    table = osim.analyzeMocoTrajectory(model, solution, moco.std_strings(
        osim, [o.replace("|", "\\|") for o in outputs]))
    labels = list(table.getColumnLabels())
    data = table.getMatrix().to_numpy()
    force = data[:, [labels.index(o) for o in outputs[:len(muscles)]]]
    t = np.asarray(solution.getTimeMat()).ravel()
    states = list(solution.getStateNames())
    coords = model.getCoordinateSet()
    values = {c.getName(): np.asarray(solution.getStateMat(
        f"{c.getAbsolutePathString()}/value")).ravel()
        for c in coords if f"{c.getAbsolutePathString()}/value" in states}
    moment = {n: np.zeros(len(t)) for n in reserves}
    for k in range(len(t)):
        for n, v in values.items():
            coords.get(n).setValue(state, float(v[k]), False)
        model.realizePosition(state)
        for n in reserves:
            arms = np.array([m.computeMomentArm(state, coords.get(n)) for m in muscles])
            moment[n][k] = float(arms @ force[k])
    per = {}
    for n, a in reserves.items():
        tau = data[:, labels.index(f"{a.getAbsolutePathString()}|actuation")]
        net = np.abs(moment[n] + tau).max()
        per[n] = dict(peak_nm=float(np.abs(tau).max()), rms_nm=float(np.sqrt(np.mean(tau ** 2))),
                      peak_muscle_moment_nm=float(np.abs(moment[n]).max()),
                      share=float(np.abs(tau).max() / net) if net > 0 else 0.0)
    return dict(optimal_torque_nm=settings.reserve_torque,
                max_peak_nm=max(v["peak_nm"] for v in per.values()),
                max_share_of_joint_moment=max(v["share"] for v in per.values()),
                per_coordinate=per)


def motion_from_solution(solution, names, *, symmetric: bool) -> Motion:
    """Coordinate values (and speeds) of a tracking solution as a closed cycle, mirrored
    into the full cycle if it is a symmetric half (:data:`ANTISYMMETRIC` coordinates
    change sign); coordinates of ``names`` that the solution lacks are left out."""
    half = moco.solution_motion(solution, names, zeros_for_missing=False)
    return moco.mirror_half_cycle(half, negated=ANTISYMMETRIC) if symmetric else half


def muscle_excitations_from_solution(solution, *, symmetric: bool) -> dict:
    """{muscle: excitation} of a tracking solution over the cycle that
    :func:`motion_from_solution` makes of it (a symmetric half is continued by its
    mirror image, left and right muscles swapped); the reserve torques' controls are
    left out: the env model has no reserves."""
    names, values = moco.solution_excitations(solution)
    keep = [j for j, n in enumerate(names) if not n.startswith("reserve_")]
    names, values = [names[j] for j in keep], values[:, keep]
    if symmetric:
        values = np.vstack([values, values[1:, moco.swapped_columns(names)]])
    return dict(zip(names, values.T))


def tracked_symmetry(doc_path: Path) -> bool | None:
    """Whether the 3D Moco tracking solve a reference's JSON file describes was a
    symmetric half cycle; None if the reference is no such solve."""
    return json.loads(Path(doc_path).read_text()).get("moco", {}).get("symmetric_half_cycle")


def tracked_3d_names(references_dir: Path) -> list[str]:
    """The references in ``references_dir`` that are 3D Moco tracking solutions."""
    return sorted(p.stem for p in Path(references_dir).glob("*.json")
                  if tracked_symmetry(p) is not None)


def solution_names(references_dir: Path) -> list[str]:
    """The references in ``references_dir`` whose Moco solution ships beside them and
    whose excitations :func:`attach_solution_excitations` can put on their frames: the
    3D tracking solves, the 2D gait cycles (tracked or predicted) and the 2D jump."""
    from refgen.tasks2d import GAIT_CYCLE_SETTINGS

    return sorted(n for n in {*tracked_3d_names(references_dir), *GAIT_CYCLE_SETTINGS,
                              "jumping2d"}
                  if (Path(references_dir) / f"{n}_solution.sto").is_file())


def solution_cycle(name: str, solution, doc_path: Path, coordinate_names) -> tuple:
    """(gait cycle, {muscle: excitation}) of a shipped reference's Moco solution, as
    the reference was made of it: a 3D tracking solve's half cycle continued by its
    mirror image, a 2D gait cycle (:data:`refgen.tasks2d.GAIT_CYCLE_SETTINGS`)
    mirrored when solved as a half and started at the right heel strike."""
    from refgen.tasks2d import GAIT_CYCLE_SETTINGS

    symmetric = tracked_symmetry(doc_path)
    if symmetric is not None:
        return (motion_from_solution(solution, coordinate_names, symmetric=bool(symmetric)),
                muscle_excitations_from_solution(solution, symmetric=bool(symmetric)))
    if name in GAIT_CYCLE_SETTINGS:
        excitations = {}
        cycle, _ = moco.analyse_gait(solution, GAIT_CYCLE_SETTINGS[name](),
                                     moco.body_weight_n(), excitations)
        return cycle, excitations
    raise ValueError(f"reference {name!r} is neither a 3D Moco tracking solve "
                     f"({doc_path.name} has no moco.symmetric_half_cycle) nor a 2D gait "
                     f"cycle ({', '.join(sorted(GAIT_CYCLE_SETTINGS))})")


def attach_solution_excitations(name: str, *, references_dir: Path, out_dir: Path | None = None,
                                log=print) -> dict:
    """Put the muscle excitations of a shipped reference's Moco solution
    (``<name>_solution.sto`` beside it) into its ``.npz``, on its frames, as
    :func:`fastenv.references.build_reference` writes them; nothing is solved and every
    other array is kept. The solution's coordinates at the frames must agree with the
    reference's (within ``MAX_FRAME_MISMATCH_DEG``), so that the excitations are those
    of the motion shipped. Saves to ``out_dir`` (default ``references_dir``); returns
    the figures of the match."""
    import opensim as osim

    references_dir = Path(references_dir)
    src, sto = references_dir / f"{name}.npz", references_dir / f"{name}_solution.sto"
    doc_path = references_dir / f"{name}.json"
    if not (src.is_file() and sto.is_file() and doc_path.is_file()):
        raise ValueError(f"reference {name!r}: needs {src.name}, {sto.name} and "
                         f"{doc_path.name} in {references_dir}")
    ref = Reference.load(src)
    solution = osim.MocoTrajectory(str(sto))
    if ref.playback == "mirror":   # the 2D jump, up to the apex
        from refgen.tasks2d import jump_excitations

        muscles, excitation, worst = jump_excitations(
            ref, solution, json.loads(doc_path.read_text()))
        if worst > MAX_FRAME_MISMATCH_DEG:
            raise RuntimeError(f"reference {name!r}: its angles differ from {sto.name}'s by "
                               f"{worst:.2f} deg at its frames (at most "
                               f"{MAX_FRAME_MISMATCH_DEG} expected); not the motion of that "
                               "solution")
        ref.muscle_names, ref.excitation = muscles, excitation
        save_in(ref, out_dir or references_dir)
        log(f"[{name}] {len(muscles)} muscle excitations from {sto.name} on {ref.n_frames} "
            f"frames up to the apex (the same frames back down); the frames match the "
            f"solution within {worst:.1e} deg")
        return dict(name=name, muscles=len(muscles), max_mismatch_deg=worst)
    if ref.playback != "loop":
        raise ValueError(f"reference {name!r}: playback {ref.playback!r}, expected a "
                         "'loop' (a gait cycle) or a 'mirror' (the 2D jump)")
    cycle, excitations = solution_cycle(name, solution, doc_path, ref.coordinate_names)
    u = np.arange(ref.n_frames) / ref.n_frames          # the frames' cycle fractions
    # the shipped frames against the solution's angles, resampled as build_reference
    # resamples a cycle; translations are shifted onto the ground and advanced by
    # strides, and a constant column is locked in the env model (held by a spring in
    # Moco, or welded), so only the moving rotations are compared
    expected = periodic_spline(cycle.time, cycle.values, cycle.values[-1] - cycle.values[0])(u)
    mismatch = rotation_mismatch_deg(ref, cycle.names, expected)
    worst = max(mismatch, key=mismatch.get)
    if mismatch[worst] > MAX_FRAME_MISMATCH_DEG:
        raise RuntimeError(f"reference {name!r}: {worst} differs from {sto.name} by "
                           f"{mismatch[worst]:.2f} deg at its frames (at most "
                           f"{MAX_FRAME_MISMATCH_DEG} expected); not the motion of that "
                           "solution")
    ref.muscle_names = list(excitations)
    ref.excitation = excitations_on_frames(
        excitations, cycle.time, cycle.time[0] + u * (cycle.time[-1] - cycle.time[0]))
    save_in(ref, out_dir or references_dir)
    log(f"[{name}] {len(excitations)} muscle excitations from {sto.name} on "
        f"{ref.n_frames} frames; the frames match the solution within "
        f"{mismatch[worst]:.1e} deg ({worst})")
    return dict(name=name, muscles=len(excitations), max_mismatch_deg=mismatch[worst])


#: How far (deg) a shipped reference's angles may be from its Moco solution's, resampled
#: on its frames: rounding only (the shipped ones agree within 1e-13 deg).
MAX_FRAME_MISMATCH_DEG = 1e-6

#: Kinematic references that take the shipped excitations of the 2D reference whose
#: motion they are, frame for frame, on the same-named muscles of their model (name ->
#: (2D reference, model variant)): a feed-forward for ``excitations="residual"`` and
#: ``"reflex"``, which the reflexes and a policy correct, not a 3D solution's.
#: jumping3d is jumping2d's sagittal motion on muscle3d (no Moco solve of it converged
#: within the check's criteria, docs/references.md).
BORROWED_EXCITATIONS = {"jumping3d": ("jumping2d", "muscle3d")}

#: The excitation of a muscle the 2D model lacks (muscle3d's hip ab- and adductors,
#: which a symmetric jump does not need): the lower bound of every shipped Moco
#: solution's excitations.
LEAST_EXCITATION = 0.01


def rotation_mismatch_deg(ref, names, values) -> dict[str, float]:
    """Per coordinate of ``names`` (the columns of ``values``, on ``ref``'s frames) that
    ``ref`` moves and that is a rotation: the largest difference in deg from ``ref.q``.
    Translations are left out (a reference's are shifted onto the ground and advanced
    by strides), and so are columns ``ref`` holds constant (locked in the env model) or
    lacks."""
    column = {c: k for k, c in enumerate(ref.coordinate_names)}
    return {c: float(np.degrees(np.abs(values[:, j] - ref.q[:, column[c]]).max()))
            for j, c in enumerate(names)
            if c in column and not is_translation(c) and np.ptp(ref.q[:, column[c]]) > 0}


def borrowed_excitations(ref, source, muscle_names) -> tuple[np.ndarray, float]:
    """(excitations on ``ref``'s frames for ``muscle_names``, the largest angle difference
    in deg between the two references' shared moving rotations): ``source``'s excitations
    where it has the muscle, :data:`LEAST_EXCITATION` where it has not. The frames must
    be ``source``'s: the same count, control step and playback."""
    if source.excitation is None:
        raise ValueError(f"reference {source.name!r} ships no excitations to borrow")
    if (ref.n_frames, ref.control_dt, ref.playback) != (source.n_frames, source.control_dt,
                                                        source.playback):
        raise ValueError(f"reference {ref.name!r} ({ref.n_frames} frames of "
                         f"{ref.control_dt} s, {ref.playback}) does not have the frames of "
                         f"{source.name!r} ({source.n_frames}, {source.control_dt} s, "
                         f"{source.playback})")
    # the rotations the source moves, on ref's frames
    mismatch = max(rotation_mismatch_deg(source, ref.coordinate_names, ref.q).values(),
                   default=0.0)
    column = {m: i for i, m in enumerate(source.muscle_names)}
    excitation = np.stack([source.excitation[:, column[m]] if m in column
                           else np.full(source.n_frames, LEAST_EXCITATION)
                           for m in muscle_names], axis=1)
    return excitation, mismatch


def attach_borrowed_excitations(name: str, *, references_dir: Path, out_dir: Path | None = None,
                                log=print) -> dict:
    """Put the excitations of the 2D reference that ``name`` is the motion of
    (:data:`BORROWED_EXCITATIONS`) into ``name``'s ``.npz`` and say so in its ``.json``;
    every other array is kept. The 2D reference is read from ``out_dir`` if there, else
    from ``references_dir`` (as the 3D generators read it); writes to ``out_dir``
    (default ``references_dir``)."""
    import opensim as osim

    from fastenv.envs.variants import variant_path
    source_name, variant = BORROWED_EXCITATIONS[name]
    references_dir = Path(references_dir)
    target = Path(out_dir or references_dir)
    ref = Reference.load(committed_file(f"{name}.npz", name, out_dir or references_dir))
    source = Reference.load(committed_file(f"{source_name}.npz", source_name, out_dir))
    model = osim.Model(str(variant_path(variant)))   # held: its muscle set lives in it
    muscles = model.getMuscles()
    names = [muscles.get(i).getName() for i in range(muscles.getSize())]
    excitation, worst = borrowed_excitations(ref, source, names)
    if worst > MAX_FRAME_MISMATCH_DEG:
        raise RuntimeError(f"reference {name!r}: its angles differ from {source_name}'s by "
                           f"{worst:.2f} deg at its frames (at most {MAX_FRAME_MISMATCH_DEG} "
                           f"expected); not that motion")
    ref.muscle_names, ref.excitation = names, excitation
    save_in(ref, target)
    lacking = [m for m in names if m not in source.muscle_names]
    doc_path = committed_file(f"{name}.json", name, out_dir or references_dir)
    doc = json.loads(doc_path.read_text())
    doc["excitations"] = (f"{source_name}'s Moco excitations, frame for frame, on the "
                          f"same-named muscles of {variant} (a feed-forward, not a 3D "
                          f"solution's); {', '.join(lacking)}: {LEAST_EXCITATION:g}, the "
                          f"lower bound of the Moco solutions' excitations")
    (target / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(f"[{name}] {len(names)} muscle excitations: {len(names) - len(lacking)} from "
        f"{source_name} (the frames match within {worst:.1e} deg), {len(lacking)} at "
        f"{LEAST_EXCITATION:g}")
    return dict(name=name, muscles=len(names), borrowed_from=source_name,
                max_mismatch_deg=worst)


def tracking_errors_deg(solution_cycle: Motion, target: Motion) -> dict:
    """RMS difference (deg, or mm for translations) of each tracked coordinate."""
    out = {}
    tt = target.time - target.time[0]
    ts = solution_cycle.time - solution_cycle.time[0]
    for n in solution_cycle.names:
        if n not in target.names:
            continue
        y = np.interp(tt, ts, solution_cycle.column(n))
        e = y - target.column(n)
        if n == "pelvis_tx":
            continue
        out[n] = float(np.sqrt(np.mean(e ** 2)) * (1000.0 if is_translation(n)
                                                   else np.degrees(1.0)))
    return out
