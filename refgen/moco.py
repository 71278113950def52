"""OpenSim Moco pipeline that generates fastenv's 2D walking reference.

The pieces (Moco-ready model, motion targets, tracking and predictive stages,
cycle assembly, gait figures, files) are shared with the running, jumping and
locked-knee generators of :mod:`refgen.tasks2d` and the 3D Moco tracking of
:mod:`refgen.derive3d`.

Why this exists: fastenv imitates reference gaits that it computes itself, for
its own 2D muscle model, instead of shipping someone else's data.  ``walking2d``
(:class:`WalkingSettings`, ``reference_stage="tracking"``) is

1. ``tracking``: track one symmetrised half gait cycle of a real walking motion
   (measured treadmill walking by default, made overground) with the
   muscle-driven, contact-driven model: a dynamically consistent gait;
2. ``tracking_grf``: the same problem from that solution with the measured vertical
   ground reaction forces tracked too (in both, the swing foot kept off the floor);
3. mirror the half cycle into a full cycle and measure gait figures from the
   contact forces of the solution.

``reference_stage="predictive"`` (walking2d until 2026-11; lockedknee2d's default)
goes on from the tracking solution instead: ``predictive_coarse``, a periodic
half cycle at ``Settings.speed`` (1.3 m/s) that minimises muscle effort (cubed
excitations per metre) plus a small pull towards the measured joint angles, with the
swing foot kept off the floor (see Settings for why each ingredient is there), then
``predictive_fine`` on a twice finer mesh unless ``coarse_only``.  A bare predictive
solve from a standing guess ends in a crouched gait (a poor local optimum), hence the
tracking solution as its start.

Output files (the ``--out`` folder, by default the checkout's ``envs/references/``)
----------------------------------------------------------------------------------
``walking2d_coordinates.sto`` -- :func:`refgen.motion.write_coordinates_sto`: OpenSim
storage, tab separated: header lines up to ``endheader`` (``inDegrees=no``), then a
row of column labels, then one row per sample.  Columns: ``time`` (s, starting at 0
at right heel strike, on a uniform grid), then the value of every unlocked
coordinate of the 2D model in model order (``pelvis_tilt``, ``pelvis_tx``,
``pelvis_ty``, ``hip_flexion_r``, ``knee_angle_r``, ``ankle_angle_r``,
``hip_flexion_l``, ``knee_angle_l``, ``ankle_angle_l``; radians, metres for
``pelvis_tx``/``pelvis_ty``), then the
speed of each in the same order named ``<coordinate>_speed`` (rad/s, m/s).
The rows cover one full gait cycle and include both ends: the last row is the
first state again (up to the periodicity tolerance) with ``pelvis_tx``
advanced by one stride.  Knee flexion is negative (model convention).

``walking2d.json`` -- figures of the solution (see :func:`gait_figures`) and of
the solves (wall time and iterations per stage, mesh sizes, objective weights,
OpenSim version).

Inputs: the base model is osim-rl's ``gait9dof18musc.osim`` as fastenv finds it
(:func:`fastenv.envs.variants.base_model_path`), and the tracking target is a public
motion read from :func:`refgen.motions_dir` at generation time (or a user's file).
Neither is copied into the repository.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastenv.envs.variants import base_model_path
from fastenv.sim import GRAVITY
from refgen import motion_file
from refgen.kinematics import ContactProbe, FootKinematics, PosedModel
from refgen.motion import (
    Motion,
    Target,
    read_coordinates,
    read_coordinates_sto,
    rounded,
    write_coordinates_sto,
)

#: The public measured walk that walking2d tracks first (in :func:`refgen.motions_dir`).
DEFAULT_MOTION = "gait10dof18musc_subject01_walk_ik.mot"
#: The ground reaction forces measured with it (same trial, same clock).
DEFAULT_GRF = "gait10dof18musc_subject01_walk_grf.mot"
#: The 2D base model (osim-rl's), through :func:`fastenv.envs.variants.base_model_path`.
BASE_MODEL = "gait9dof18musc.osim"
#: The command that generates a reference, as recorded in the files it writes.
COMMAND = "python -m refgen generate"

#: Unlocked coordinates of the 2D model, in model order.
COORDINATES = (
    "pelvis_tilt", "pelvis_tx", "pelvis_ty",
    "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
    "hip_flexion_l", "knee_angle_l", "ankle_angle_l",
)
TRANSLATIONS = ("pelvis_tx", "pelvis_ty")
#: Contact spheres of gait9dof18musc, per foot.
FOOT_SPHERES = {"r": ("r_heel", "r_toe"), "l": ("l_heel", "l_toe")}
#: Name prefix of the stations at the contact-sphere centres.
CENTRE_PREFIX = "centre_"
#: Vertical force (N) above which a foot counts as on the ground.
CONTACT_THRESHOLD_N = 20.0
#: How far the model's compliant foot spheres sink under body weight (m);
#: the tracking target's pelvis height is set for this, otherwise the swing
#: foot of the tracking solution drags on the floor.
FOOT_PENETRATION_M = 0.03


def model_file(model_path=None) -> str:
    """``model_path``, by default the 2D base model (a string, as OpenSim wants it)."""
    return str(model_path or base_model_path(BASE_MODEL))


def _osim():
    # The logging level is process-wide: library calls leave it alone (the generate
    # command raises it to "warn" so a user running a solve sees Moco's warnings).
    import opensim

    return opensim


def std_strings(osim, items):
    """An OpenSim ``StdVectorString`` of ``items``."""
    v = osim.StdVectorString()
    for s in items:
        v.append(s)
    return v


def osim_vector(osim, values):
    """An OpenSim ``Vector`` of ``values``."""
    v = osim.Vector(len(values), 0.0)
    for i, x in enumerate(values):
        v.set(i, float(x))
    return v


def swap_side(name: str) -> str:
    """Left/right counterpart of a coordinate, state or control name/path."""
    out = []
    for part in name.split("/"):
        for a, b in (("_r", "_l"), ("_l", "_r")):
            if part.endswith(a):
                part = part[: -len(a)] + b
                break
            if part.endswith(a + "_speed"):
                part = part[: -len(a) - 6] + b + "_speed"
                break
        out.append(part)
    return "/".join(out)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
def smooth_sphere_contacts(osim, model, *, spheres=None, floor=None,
                           label: str = "model") -> None:
    """Replace the model's HuntCrossleyForces by one SmoothSphereHalfSpaceForce per
    contact sphere, with the Hunt-Crossley stiffness, dissipation and friction.

    ``spheres`` (names, in the order the forces are added) and ``floor`` (the
    half space's name) default to every ContactSphere and the ContactHalfSpace
    of the model's contact geometry.
    """
    forces = model.updForceSet()
    params = None
    for i in reversed(range(forces.getSize())):
        force = forces.get(i)
        if force.getConcreteClassName() == "HuntCrossleyForce":
            hc = osim.HuntCrossleyForce.safeDownCast(force)
            params = dict(
                stiffness=hc.getStiffness(), dissipation=hc.getDissipation(),
                static_friction=hc.getStaticFriction(),
                dynamic_friction=hc.getDynamicFriction(),
                viscous_friction=hc.getViscousFriction(),
            )
            forces.remove(i)
    if params is None:
        raise ValueError(f"{label} has no HuntCrossleyForce to convert")
    geometry = model.getContactGeometrySet()
    if spheres is None or floor is None:
        kinds = [(geometry.get(i).getConcreteClassName(), geometry.get(i).getName())
                 for i in range(geometry.getSize())]
        spheres = spheres or [n for k, n in kinds if k == "ContactSphere"]
        floor = floor or next(n for k, n in kinds if k == "ContactHalfSpace")
    half_space = osim.ContactHalfSpace.safeDownCast(geometry.get(floor))
    for sphere_name in spheres:
        sphere = osim.ContactSphere.safeDownCast(geometry.get(sphere_name))
        force = osim.SmoothSphereHalfSpaceForce(f"contact_{sphere_name}", sphere, half_space)
        force.set_stiffness(params["stiffness"])
        force.set_dissipation(params["dissipation"])
        force.set_static_friction(params["static_friction"])
        force.set_dynamic_friction(params["dynamic_friction"])
        force.set_viscous_friction(params["viscous_friction"])
        # A wider stick-slip transition than Hunt-Crossley's 0.1 m/s keeps
        # the friction force smooth enough for the NLP solver.
        force.set_transition_velocity(0.2)
        model.addForce(force)


def build_contact_model(model_path: str | None = None):
    """gait9dof18musc with smooth contacts and the back welded at its locked angle.

    Why: Moco needs twice-differentiable dynamics, so the Hunt-Crossley foot
    contacts become one SmoothSphereHalfSpaceForce per contact sphere (same
    spheres, stiffness, dissipation and friction as the model's own contact);
    Moco refuses locked coordinates, so the ``back`` joint will be welded,
    and its parent frame is rotated first so the torso keeps the locked
    lumbar_extension angle.  The coordinate limit forces stay: they are smooth
    and belong to the model the reference is meant for.
    """
    osim = _osim()
    model = osim.Model(model_file(model_path))
    model.finalizeConnections()
    smooth_sphere_contacts(osim, model,
                           spheres=[n for names in FOOT_SPHERES.values() for n in names],
                           floor="platform")
    fold_pin_angle(osim, model, "back")
    model.finalizeFromProperties()
    model.finalizeConnections()
    return model


def fold_pin_angle(osim, model, joint: str) -> None:
    """Put a one-coordinate PinJoint's default angle into its parent frame and zero
    the coordinate, so that welding the joint keeps the child's pose.

    A PinJoint turns about the z axis of its parent frame, and body-fixed XYZ
    angles end with z: adding the angle there keeps the pose.
    """
    pin = model.updJointSet().get(joint)
    coordinate = pin.upd_coordinates(0)
    parent = pin.upd_frames(0)
    orient = parent.get_orientation()
    parent.set_orientation(osim.Vec3(orient.get(0), orient.get(1),
                                     orient.get(2) + coordinate.getDefaultValue()))
    coordinate.setDefaultValue(0.0)


def dgf_processor(osim, model, *, welds=(), fiber_curve_width: float = 1.5,
                  passive_fiber_forces: bool = False):
    """ModelProcessor of a Moco-ready model: ``welds`` (joints whose angle
    :func:`fold_pin_angle` moved into the parent frame) welded, DeGroote-Fregly
    muscles with rigid tendons, optionally without passive fibre force and with a
    wider active force-length curve."""
    proc = osim.ModelProcessor(model)
    if welds:
        proc.append(osim.ModOpReplaceJointsWithWelds(std_strings(osim, welds)))
    proc.append(osim.ModOpReplaceMusclesWithDeGrooteFregly2016())
    if not passive_fiber_forces:
        proc.append(osim.ModOpIgnorePassiveFiberForcesDGF())
    if fiber_curve_width != 1.0:
        proc.append(osim.ModOpScaleActiveFiberForceCurveWidthDGF(fiber_curve_width))
    proc.append(osim.ModOpIgnoreTendonCompliance())
    return proc


def weld_locked_joints(model, joints) -> None:
    """Replace ``joints`` by WeldJoints that hold their child bodies where the
    joints' (locked) coordinates put them.

    Why not ``ModOpReplaceJointsWithWelds``: it welds the joint frames
    together, which drops the knee's coordinate-driven translation (the shank
    would jump 0.4 m up into the thigh), and it leaves the muscle path points
    that move with the removed coordinates dangling.  Here the weld keeps each
    child body's pose in its parent at the default (locked) state, and every
    conditional or moving path point driven by a removed coordinate becomes a
    fixed point where it is at that state (or disappears when inactive there),
    so muscle lengths and moment arms at the other joints are unchanged.
    """
    osim = _osim()
    state = model.initSystem()
    joint_set = model.updJointSet()
    removed = set()
    for name in joints:
        joint = joint_set.get(name)
        removed.update(joint.get_coordinates(i).getName() for i in range(joint.numCoordinates()))
    for muscle in model.getMuscles():
        points = muscle.updGeometryPath().updPathPointSet()
        for k in reversed(range(points.getSize())):
            point = points.get(k)
            drivers = {point.getSocket(n).getConnecteePath().rsplit("/", 1)[-1]
                       for n in point.getSocketNames() if "coordinate" in n}
            if not drivers & removed:
                continue
            active = point.isActive(state)
            loc = point.getLocation(state)
            location = osim.Vec3(loc.get(0), loc.get(1), loc.get(2))
            frame = point.getParentFrame().getAbsolutePathString()
            point_name = point.getName()
            points.remove(k)
            if active:
                fixed = osim.PathPoint()
                fixed.setName(point_name)
                fixed.set_location(location)
                fixed.updSocket("parent_frame").setConnecteePath(frame)
                fixed.thisown = False  # the path point set owns it now
                points.insert(k, fixed)
    welds = []
    for name in joints:
        joint = joint_set.get(name)
        parent = model.getBodySet().get(joint.getParentFrame().findBaseFrame().getName())
        child = model.getBodySet().get(joint.getChildFrame().findBaseFrame().getName())
        pose = child.findTransformBetween(state, parent)  # child in parent
        angles = pose.R().convertRotationToBodyFixedXYZ()
        welds.append(osim.WeldJoint(name, parent, pose.p(), angles, child,
                                    osim.Vec3(0.0), osim.Vec3(0.0)))
        joint_set.remove(joint_set.getIndex(name))
    for weld in welds:
        model.addJoint(weld)
    model.finalizeFromProperties()
    model.finalizeConnections()


def add_centre_stations(osim, model, sphere_names) -> None:
    """A station at the centre of each named contact sphere (``centre_<sphere>``): their
    heights are what the swing-clearance constraints bound (no effect on the
    dynamics)."""
    for sphere_name in sphere_names:
        sphere = osim.ContactSphere.safeDownCast(model.getContactGeometrySet().get(sphere_name))
        station = osim.Station(sphere.getFrame(), sphere.get_location())
        station.setName(f"{CENTRE_PREFIX}{sphere_name}")
        model.addComponent(station)


def model_processor(model_path: str | None = None, *, fiber_curve_width: float = 1.5,
                    passive_fiber_forces: bool = False, weld: tuple = ()):
    """Moco-ready model: smooth contacts, welded back, DeGroote-Fregly muscles.

    Rigid tendons and no passive fibre force make the problem smaller and
    smoother (as in Moco's 2D walking example); the wider active
    force-length curve (1.5) lets muscles produce force over the fibre lengths
    of this model's walking range.  ``weld`` names joints whose coordinates
    the env model locks (the locked-knee variant): Moco refuses locked
    coordinates, so they are welded at their locked pose
    (:func:`weld_locked_joints`).
    """
    osim = _osim()
    model = build_contact_model(model_path)
    if weld:
        weld_locked_joints(model, weld)
    add_centre_stations(osim, model, [n for spheres in FOOT_SPHERES.values() for n in spheres])
    model.finalizeConnections()
    return dgf_processor(osim, model, welds=("back",), fiber_curve_width=fiber_curve_width,
                         passive_fiber_forces=passive_fiber_forces)


# --------------------------------------------------------------------------
# Motion files and the tracking target
# --------------------------------------------------------------------------
def read_gait_motion(path, *, knee_flexion_positive: bool = False, extra: tuple = ()) -> Motion:
    """A .mot/.sto motion of the 2D model's coordinates (:data:`COORDINATES`, all
    required) and the ``extra`` ones it has, in rad / m
    (:func:`refgen.motion.read_coordinates`)."""
    return read_coordinates(path, COORDINATES + tuple(extra), required=COORDINATES,
                            knee_flexion_positive=knee_flexion_positive)


def foot_kinematics(time, coords, model_path: str | None = None):
    """Per contact sphere of :data:`FOOT_SPHERES`: centre x and bottom height (ground
    frame) along a motion given as {coordinate: values on ``time``}."""
    feet = FootKinematics(model_file(model_path))(Target.of(time, coords))
    parts = ("heel", "toe")
    centre_x = {n: feet[side][part][:, 0] for side, names in FOOT_SPHERES.items()
                for n, part in zip(names, parts)}
    bottom = {n: feet[side][f"{part}_bottom"] for side, names in FOOT_SPHERES.items()
              for n, part in zip(names, parts)}
    return centre_x, bottom


def local_maxima(x: np.ndarray, min_gap: int) -> np.ndarray:
    """Indices of the local maxima of ``x`` at least ``min_gap`` samples apart (the
    highest kept first), in increasing order."""
    idx = [k for k in range(1, len(x) - 1) if x[k] >= x[k - 1] and x[k] > x[k + 1]]
    kept: list[int] = []
    for k in sorted(idx, key=lambda k: -x[k]):
        if all(abs(k - j) >= min_gap for j in kept):
            kept.append(k)
    return np.array(sorted(kept), dtype=int)


def gait_strides(path, *, model_path: str | None = None, flight: bool = False):
    """Strides of a measured gait, from kinematics alone.

    Heel strikes follow Zeni et al. 2008 (the heel is furthest ahead of the pelvis at
    heel strike), so any motion of this model's coordinates works, with or without
    force data.  Walking speed is the rate at which the stance heel moves back
    relative to the pelvis, which holds on a treadmill and overground alike.
    ``flight`` (running): the speed is averaged over the samples with a foot near the
    floor only; in flight the lowest sphere is a swinging foot.

    Returns ``(t, q, strides, speed)``: the motion's time and coordinates (dict),
    the complete strides as (right heel strike, left heel strike, next right heel
    strike) row indices, and ``speed(a, b)``, the speed over rows ``a``..``b``.
    """
    motion = read_gait_motion(path)
    t, q = motion.time, motion.as_dict()
    centre_x, bottom = foot_kinematics(t, q, model_path)
    dt = float(np.median(np.diff(t)))
    rel = {s: centre_x[FOOT_SPHERES[s][0]] - q["pelvis_tx"] for s in FOOT_SPHERES}
    gap = max(3, int(round(0.5 / dt)))
    hs_r, hs_l = local_maxima(rel["r"], gap), local_maxima(rel["l"], gap)
    strides = []
    for a, b in zip(hs_r[:-1], hs_r[1:]):
        mids = hs_l[(hs_l > a) & (hs_l < b)]
        if len(mids) == 1:
            strides.append((int(a), int(mids[0]), int(b)))
    # The lowest contact sphere rests on the floor (the belt, on a treadmill),
    # so minus its velocity relative to the pelvis is the pelvis's velocity
    # over the floor; its mean over the cycle is the walking speed.
    names = list(bottom)
    lowest = np.argmin(np.array([bottom[n] for n in names]), axis=0)
    rel_v = np.array([np.gradient(centre_x[n] - q["pelvis_tx"], t) for n in names])
    pelvis_v = -rel_v[lowest, np.arange(len(t))]
    low_all = np.min(np.array([bottom[n] for n in names]), axis=0)

    def speed(a: int, b: int) -> float:
        if flight:
            low = low_all[a:b + 1]
            grounded = low < np.percentile(low, 10) + 0.02
            return float(np.mean(pelvis_v[a:b + 1][grounded]))
        return float(np.trapezoid(pelvis_v[a:b + 1], t[a:b + 1]) / (t[b] - t[a]))
    return t, q, strides, speed


def _no_cycle(path):
    return ValueError(f"{path}: no complete gait cycle (right heel strike, left heel "
                      "strike, right heel strike) found")


def _belt_speed(t, q, speed_of, a: int, b: int) -> float:
    """Belt speed of a treadmill stride (rows ``a``..``b`` of :func:`gait_strides`' output):
    the walking speed minus the pelvis's own progression (0 overground)."""
    return speed_of(a, b) - (q["pelvis_tx"][b] - q["pelvis_tx"][a]) / (t[b] - t[a])


def _on_the_floor(s, out: dict, model_path) -> float:
    """Shift ``out``'s pelvis height so the feet just touch the model's floor; returns
    the shift (m)."""
    _, bottom = foot_kinematics(s, out, model_path)
    shift = -FOOT_PENETRATION_M - float(np.median(np.min(list(bottom.values()), axis=0)))
    out["pelvis_ty"] = out["pelvis_ty"] + shift
    return shift


def half_cycle_target(path, *, belt_speed: float | None = None, n: int = 101,
                      model_path: str | None = None, flight: bool = False,
                      strides: str = "first") -> Target:
    """Turn a walking motion into a symmetric, overground half-cycle target.

    Strides as :func:`gait_strides` finds them; on a treadmill the belt speed is
    added to ``pelvis_tx``.  A stride is split at left heel strike; its second half is
    mirrored and averaged with the first so the target is left/right symmetric, and
    the pelvis height is shifted so the feet just touch the model's floor.  The
    target is the symmetrised half cycle from right to left heel strike.
    ``strides``: ``"first"`` symmetrises the first complete stride; ``"mean"`` averages
    the symmetrised halves of every complete stride, each time-normalised (the
    subject's usual stride: the measured run's first stride is 6.7 deg RMS from the
    others at the knee, their symmetrised mean 3.1, median over the 13 strides).
    """
    if strides not in ("first", "mean"):
        raise ValueError(f"strides={strides!r}: expected 'first' or 'mean'")
    t, q, found, speed_of = gait_strides(path, model_path=model_path, flight=flight)
    if not found:
        raise _no_cycle(path)
    used = found[:1] if strides == "first" else found
    s = np.linspace(0.0, 1.0, n)
    halves, periods, speeds, belts = [], [], [], []
    for a, m, b in used:
        period = t[b] - t[a]
        speed = speed_of(a, b)
        belt = _belt_speed(t, q, speed_of, a, b) if belt_speed is None else belt_speed
        tx = q["pelvis_tx"] + belt * (t - t[a])
        first = t[a] + s * (t[m] - t[a])
        second = t[m] + s * (t[b] - t[m])
        half = {}
        for name in COORDINATES:
            if name == "pelvis_tx":
                x1 = np.interp(first, t, tx) - tx[a]
                x2 = np.interp(second, t, tx) - tx[m]
                half[name] = 0.5 * (x1 + x2)
            else:
                half[name] = 0.5 * (np.interp(first, t, q[name])
                                    + np.interp(second, t, q[swap_side(name)]))
        halves.append(half)
        periods.append(period)
        speeds.append(speed)
        belts.append(belt)
    out = {name: np.mean([h[name] for h in halves], axis=0) for name in COORDINATES}
    period = float(np.mean(periods))
    shift = _on_the_floor(s, out, model_path)
    a, m, b = used[0]
    if strides == "mean":
        info = dict(strides=len(used), first_stride_s=float(t[a]),
                    last_stride_end_s=float(t[used[-1][2]]), cycle_s=period,
                    cycle_s_range=[float(min(periods)), float(max(periods))])
    else:
        info = dict(strides=1, cycle_start_s=float(t[a]), cycle_s=period,
                    left_strike_s=float(t[m]))
    info["pelvis_ty_shift_m"] = shift
    return Target.of(s * 0.5 * period, out, speed=float(np.mean(speeds)),
                     belt_speed=float(np.mean(belts)), source=str(path), info=info)


def mean_stride_target(path, *, belt_speed: float | None = None, n: int = 201,
                       model_path: str | None = None, flight: bool = False,
                       start: float = 0.0) -> Target:
    """The recording's mean stride, right heel strike to right heel strike: every
    complete stride (:func:`gait_strides`) time-normalised and averaged, left and right
    kept apart (people are not symmetric: the measured run's swing knees peak 5 deg
    apart on average, 12 in its first stride).  Why the mean: one stride of a recording
    can be far from the subject's usual one (the run's first stride is 6.5 deg RMS from
    the mean at the knee, the others 1.5-5.8).  On a treadmill the belt speed (the mean
    of the strides' estimates) is added to ``pelvis_tx``; the duration is the mean
    stride time, and the pelvis height is shifted so the feet just touch the model's
    floor.  ``info['left_strike_fraction']`` is the mean left heel strike, as a fraction of
    the stride.  ``start``: the target begins at that fraction of the stride (after
    right heel strike) and wraps around, so that a periodic solve's seam can lie in a
    flight phase instead of at a foot strike."""
    t, q, strides, speed_of = gait_strides(path, model_path=model_path, flight=flight)
    if not strides:
        raise _no_cycle(path)
    periods = np.array([t[b] - t[a] for a, _, b in strides])
    if belt_speed is None:
        belt_speed = float(np.mean([_belt_speed(t, q, speed_of, a, b) for a, _, b in strides]))
    s = np.linspace(0.0, 1.0, n)
    out = {}
    for name in COORDINATES:
        rows = []
        for (a, _, _), p in zip(strides, periods):
            x = np.interp(t[a] + s * p, t, q[name])
            if name == "pelvis_tx":
                x = x - q[name][a] + belt_speed * s * p
            rows.append(x)
        out[name] = np.mean(rows, axis=0)
    period = float(periods.mean())
    if start:
        phase = (start + s) % 1.0
        phase[-1] = start            # the end is the start, one stride on
        tx, distance = out["pelvis_tx"], out["pelvis_tx"][-1] - out["pelvis_tx"][0]
        out = {name: np.interp(phase, s, v) for name, v in out.items()}
        out["pelvis_tx"] = (np.interp(phase, s, tx) + distance * (start + s >= 1.0)
                            - np.interp(start, s, tx))
    shift = _on_the_floor(s, out, model_path)
    left = float(np.mean([(t[m] - t[a]) / p for (a, m, _), p in zip(strides, periods)]))
    return Target.of(s * period, out, speed=float(out["pelvis_tx"][-1] / period),
                     belt_speed=float(belt_speed), source=str(path),
                     info=dict(strides=len(strides), first_stride_s=float(t[strides[0][0]]),
                               last_stride_end_s=float(t[strides[-1][2]]), cycle_s=period,
                               cycle_s_range=[float(periods.min()), float(periods.max())],
                               left_strike_fraction=left, start_fraction=float(start),
                               pelvis_ty_shift_m=shift))


# --------------------------------------------------------------------------
# Optimal control problems
# --------------------------------------------------------------------------
@dataclass
class SolveSettings:
    """Knobs that every Moco solve of the pipeline (2D gaits, jumps, 3D tracking) has:
    the solver's (:func:`configure_solver`) and the muscle model's
    (:func:`dgf_processor`)."""

    threads: int = 2
    max_iterations: int = 3000
    convergence_tolerance: float = 1e-3
    constraint_tolerance: float = 1e-4
    output_interval: int = 0           # write every n-th iterate to the work dir
    sparsity_detection: str = "random"  # Jacobian colouring: far fewer model calls
    finite_difference: str = "forward"  # 4x cheaper Jacobians than central here
    dynamics_mode: str = "explicit"
    fiber_curve_width: float = 1.5     # DGF active force-length curve width scale
    passive_fiber_forces: bool = False
    verbose: bool = True
    # Enforce path constraints at the collocation points inside each mesh interval too,
    # not only at the mesh points: a bound then also holds between them
    path_constraints_inside_intervals: bool = False


@dataclass
class Settings(SolveSettings):
    """Knobs of the pipeline; the defaults produce the committed reference.

    What the defaults answer (coarse-mesh trials on this model):

    * pure minimum effort walks crouched (stance knee 15-30 deg flexed, never
      straighter than 10 deg) and, with free duration, at 94 steps/min with
      1.67 m strides: hence ``predictive_tracking_weight`` and the cadence
      rule of :func:`predictive_duration`;
    * the tracking term stays small: at 3.0 the pull to slower measured
      walking puts the swing foot on the floor in mid swing; on the fine mesh
      0.3 and 0.5 gave 8-9 deg knee flexion at heel strike, 1.0 a 68 deg
      peak swing flexion (the subject's), so 0.7 sits between;
    * without ``swing_windows`` the swing foot grazes and slides on the floor
      before heel strike (up to 80 N);
    * passive fibre forces with the standard force-length width gave a
      stiff-legged swing (13 deg peak knee flexion).
    """

    name: str = "walking2d"            # reference name (study names, output files)
    # Env model the reference is for: a fastenv.envs.variants name, or None for
    # osim-rl's gait9dof18musc.osim itself; ``weld`` lists its joints whose
    # coordinates are locked (welded at the locked pose for Moco).
    variant: str | None = None
    weld: tuple = ()
    # "half": a left/right symmetric half cycle, mirrored into the full cycle;
    # "full": one periodic (possibly asymmetric) full cycle.
    cycle: str = "half"
    speed: float = 1.3                 # average speed of the predictive gait (m/s)
    tracking_mesh: int = 25            # mesh intervals per half cycle
    coarse_mesh: int = 25
    fine_mesh: int = 50
    coarse_only: bool = False
    tracking_weight: float = 10.0      # per (rad^2 s) of joint-angle error
    tracking_effort_weight: float = 1.0
    effort_weight: float = 10.0        # predictive: control effort ...
    effort_exponent: int = 3           # ... sum |e|^3, per metre travelled
    predictive_tracking_weight: float = 0.7  # predictive: pull to the target's angles
    pelvis_height_weight: float = 0.0  # ... and to its pelvis height (relative, per m^2)
    # Swing clearance: (foot, start, end) fractions of the solved interval
    # (from right heel strike) in which that foot stays off the floor; for the
    # walking half cycle the left foot swings in 30-92 % of it.
    swing_windows: tuple = (("l", 0.3, 0.92),)
    tracking_clearance: bool = False   # swing clearance in the tracking stage too
    # Stance knee limit of the predictive stages: (knee side, start, end)
    # fractions of the solved interval in which that knee flexes at most
    # ``max_stance_knee_flexion_deg`` (running: minimum effort alone lands
    # on a compliant, deeply flexed stance knee).
    stance_knee_windows: tuple = ()
    max_stance_knee_flexion_deg: float = 50.0
    # Predictive stages: (start, end, min_bw, max_bw) fractions of the solved interval in
    # which the total vertical ground force implied by the centre of mass's acceleration,
    # body weight x (1 + a_y/g), stays within [min_bw, max_bw] (None: unbounded that
    # way); see add_com_force_bounds.
    com_force_bounds: tuple = ()
    tx_speed_bounds: tuple = (0.2, 3.0)  # forward pelvis speed bounds (m/s)
    # Which solution is the reference: "predictive" (tracking -> predictive
    # coarse -> fine, at ``speed``) or "tracking" (tracking on the tracking
    # mesh, refined on the fine mesh: the measured motion at its measured speed,
    # made dynamically consistent; ``speed`` and the predictive knobs unused).
    reference_stage: str = "predictive"
    # Tracking stages: weight of the measured ground reaction forces (Moco
    # divides the squared error in N by body weight; 0: not tracked), and which
    # components: "vertical", or "sagittal" (fore-aft and vertical).
    grf_tracking_weight: float = 0.0
    grf_components: str = "vertical"
    # Predictive stages: weight of the integral of the centre of mass's vertical
    # acceleration to the power ``com_acceleration_exponent`` (m^4/s^8 s for 4): the
    # total vertical ground force is body weight x (1 + a_y/g), so this flattens its
    # peaks (a high exponent spares the ordinary humps and troughs of walking);
    # 0: no such term.
    com_acceleration_weight: float = 0.0
    com_acceleration_exponent: int = 4
    #: weight (per m^2 s) of tracking the target's calcaneus positions in the tracking
    #: stage, as the 3D solves do (derive3d.TrackingSettings); 0: not tracked
    foot_tracking_weight: float = 0.0
    bounds: dict = field(default_factory=dict)  # overrides of BOUNDS (degrees, metres)
    # Per-coordinate weights (relative) of the kinematic tracking terms (the
    # predictive stages never track pelvis_tx, and pelvis_ty with the weight above).
    tracking_state_weights: dict = field(default_factory=dict)
    # How a stage's guess is put on its mesh: "moco" (MocoTrajectory's
    # smoothing-spline resampling, as walking2d was made) or "hermite"
    # (:func:`refined_guess`, needed where foot strikes are hard).
    guess_resampling: str = "moco"
    # Half-cycle duration of the predictive gait: None scales the target's
    # cadence and stride by the same factor sqrt(speed / target speed), as
    # people do when they walk faster; (lo, hi) leaves it free in bounds.
    half_cycle_bounds: tuple | None = None
    # A coordinates .sto (as written to envs/references/) seeding the first
    # predictive stage in place of the tracking stage: re-solving a committed
    # gait under changed settings needs no new tracking solve.
    seed: str | None = None
    # Tracking stages: pelvis_tx ends where the target's does, so the solution moves at
    # the measured speed exactly (tracking pelvis_tx alone let a run slow from 3.71 to
    # 2.67 m/s, where the measured angles cost its muscles less).
    track_speed: bool = False
    # Every contact sphere's centre at least this high (m) above the floor, always
    # (None: no bound): a limit on how deep the soft spheres sink (a tracked run's
    # toe sphere sank 73 mm, its radius is 50).  Tried on running2d, not kept (see
    # RunningSettings).
    min_centre_height_m: float | None = None
    # A Moco solution .sto of an earlier tracking solve of the same model, as the
    # first tracking stage's initial guess instead of the target's kinematics:
    # re-solving with changed weights starts where the last solve ended.
    guess: str | None = None

    def weights(self) -> dict:
        return dict(tracking=self.tracking_weight,
                    tracking_effort=self.tracking_effort_weight,
                    effort=self.effort_weight, effort_exponent=self.effort_exponent,
                    predictive_tracking=self.predictive_tracking_weight,
                    predictive_pelvis_height=self.pelvis_height_weight,
                    grf_tracking=self.grf_tracking_weight,
                    com_acceleration=self.com_acceleration_weight,
                    com_acceleration_exponent=self.com_acceleration_exponent,
                    foot_tracking=self.foot_tracking_weight,
                    tracking_states=dict(self.tracking_state_weights))


#: Bounds of the coordinates in the problems: wide enough for normal walking,
#: narrow enough to keep IPOPT away from absurd poses (degrees, metres).
BOUNDS = {
    "pelvis_tilt": (-20.0, 25.0), "pelvis_tx": (0.0, 3.0), "pelvis_ty": (0.75, 1.15),
    "hip_flexion": (-35.0, 70.0), "knee_angle": (-100.0, 8.0), "ankle_angle": (-40.0, 30.0),
}


def _bounds(name: str, overrides: dict | None = None) -> list[float]:
    key = name if name in BOUNDS else name[:-2]
    lo, hi = (overrides or {}).get(key, BOUNDS[key])
    return [lo, hi] if name in TRANSLATIONS else [math.radians(lo), math.radians(hi)]


def env_model_path(settings: Settings) -> str:
    """The env model a reference is generated for (see ``Settings.variant``)."""
    if settings.variant is None:
        return model_file()
    from fastenv.envs.variants import variant_path

    return str(variant_path(settings.variant))


def settings_processor(settings: Settings):
    """Moco model processor for the env model of ``settings``."""
    return model_processor(env_model_path(settings) if settings.variant else None,
                           fiber_curve_width=settings.fiber_curve_width,
                           passive_fiber_forces=settings.passive_fiber_forces,
                           weld=tuple(settings.weld))


def limit_onsets(model) -> dict:
    """{coordinate: (lower, upper)} onsets (rad) of the model's CoordinateLimitForces."""
    osim = _osim()
    out = {}
    for f in model.getForceSet():
        if f.getConcreteClassName() == "CoordinateLimitForce":
            limit = osim.CoordinateLimitForce.safeDownCast(f)
            out[limit.get_coordinate()] = (np.radians(limit.get_lower_limit()),
                                           np.radians(limit.get_upper_limit()))
    return out


def model_coordinates(model) -> tuple:
    """Coordinates of a (processed, Moco-ready) model, in model order."""
    return tuple(c.getName() for c in model.getCoordinateSet())


def value_table(osim, model, time, coords):
    """TimeSeriesTable of coordinate values labelled by state path: the coordinates of
    ``coords`` that the model has, in the order of ``coords``."""
    names = [c for c in coords if c in model_coordinates(model)]
    table = osim.TimeSeriesTable()
    labels = [coordinate_path(model, c) + "/value" for c in names]
    table.setColumnLabels(std_strings(osim, labels))
    for k, t in enumerate(time):
        table.appendRow(float(t), osim.RowVector([float(coords[c][k]) for c in names]))
    table.addTableMetaDataString("inDegrees", "no")
    return table


def coordinate_path(model, name: str) -> str:
    """Path of a coordinate (its states are ``<path>/value`` and ``<path>/speed``)."""
    return model.getCoordinateSet().get(name).getAbsolutePathString()


@dataclass
class ForceTarget:
    """Measured ground reaction forces to track: per foot ("r", "l") the
    fore-aft and vertical force (T, 2), N, scaled to the model's weight, on
    ``time`` (the same interval as the kinematic target), and how they were made."""

    time: np.ndarray
    forces: dict
    source: str = ""
    info: dict = field(default_factory=dict)


def read_force_plates(path) -> tuple[np.ndarray, dict, dict]:
    """(time, {plate prefix: force (T, 3)}, {plate prefix: centre of pressure (T, 3)})
    of a force-plate .mot whose columns are ``<prefix>vx/vy/vz`` and ``<prefix>px/py/pz``
    (e.g. ``ground_force_`` and ``1_ground_force_``), in N and m, y up."""
    from fastenv.references import read_motion

    time, columns, _ = read_motion(path)
    prefixes = [c[:-2] for c in columns if c.endswith("vy") and c[:-2] + "vx" in columns]
    if not prefixes:
        raise ValueError(f"{path}: no force columns (<prefix>vx, <prefix>vy, <prefix>vz)")
    force = {p: np.column_stack([columns[p + a] for a in ("vx", "vy", "vz")]) for p in prefixes}
    cop = {p: np.column_stack([columns.get(p + a, np.zeros_like(time)) for a in ("px", "py", "pz")])
           for p in prefixes}
    return np.asarray(time, dtype=float), force, cop


def feet_of_plates(time, force: dict, cop: dict, motion: Motion,
                   model_path: str | None = None, threshold: float = CONTACT_THRESHOLD_N) -> dict:
    """{"r": prefix, "l": prefix}: which force plate carries which foot.

    Each loaded sample's centre of pressure is closer to the heel of the foot on
    that plate than to the other heel (the kinematics and the plates share the
    laboratory frame); the assignment with the smaller mean distance wins.
    """
    centre_x, _ = foot_kinematics(motion.time, motion.as_dict(), model_path)
    heel = {s: np.interp(time, motion.time, centre_x[FOOT_SPHERES[s][0]]) for s in FOOT_SPHERES}
    plates = list(force)
    if len(plates) != 2:
        raise ValueError(f"expected two force plates (one per foot), found {plates}")

    def distance(plate, side):
        loaded = force[plate][:, 1] > threshold
        return float(np.mean(np.abs(cop[plate][loaded, 0] - heel[side][loaded])))

    a, b = plates
    straight = distance(a, "r") + distance(b, "l")
    crossed = distance(a, "l") + distance(b, "r")
    return {"r": a, "l": b} if straight <= crossed else {"r": b, "l": a}


def half_cycle_forces(grf_path, motion_path, target: Target, body_weight: float,
                      model_path: str | None = None) -> ForceTarget:
    """The measured ground reaction forces over the target's half cycle, made
    symmetric and scaled to the model's weight, as :func:`half_cycle_target` makes
    the kinematics: the cycle it found (right heel strike, left heel strike, right
    heel strike, on the same clock as the force plates) is split at left heel
    strike, and the right foot's force over the first half is averaged with the
    left foot's over the second half (and vice versa).

    The subject's weight is the mean total vertical force over the whole cycle
    (steady walking: the centre of mass neither rises nor falls over a cycle); the
    forces are multiplied by ``body_weight`` / that weight, so their shape in body
    weights is the subject's.
    """
    time, force, cop = read_force_plates(grf_path)
    motion = read_gait_motion(motion_path)
    plates = feet_of_plates(time, force, cop, motion, model_path)
    info = target.info
    a, m = info["cycle_start_s"], info["left_strike_s"]
    b = a + info["cycle_s"]
    if a < time[0] or b > time[-1]:
        raise ValueError(f"{grf_path}: forces cover {time[0]:.3f}-{time[-1]:.3f} s, "
                         f"the gait cycle is {a:.3f}-{b:.3f} s")
    cycle = (time >= a) & (time <= b)
    total = force[plates["r"]][:, 1] + force[plates["l"]][:, 1]
    subject_weight = float(np.trapezoid(total[cycle], time[cycle]) / (b - a))
    scale = body_weight / subject_weight
    s = np.linspace(0.0, 1.0, len(target.time))
    first, second = a + s * (m - a), m + s * (b - m)

    def sample(side, when):
        return np.column_stack([np.interp(when, time, force[plates[side]][:, k]) for k in (0, 1)])

    forces = {side: 0.5 * scale * (sample(side, first) + sample(swap, second))
              for side, swap in (("r", "l"), ("l", "r"))}
    return ForceTarget(np.asarray(target.time, dtype=float), forces, source=str(grf_path),
                       info=dict(plates=plates, subject_weight_n=round(subject_weight, 2),
                                 scale_to_model=round(scale, 4)))


def tracks_forces(settings: Settings, forces: ForceTarget | None) -> bool:
    """Whether a tracking stage tracks measured ground reaction forces: there are
    some, and their weight is not 0."""
    return forces is not None and settings.grf_tracking_weight > 0


def contact_tracking_goal(osim, model, forces: ForceTarget, weight: float, work_dir: Path,
                          components: str = "vertical", spheres: dict | None = None):
    """A MocoContactTrackingGoal of the force on each foot (the sum of its contact
    spheres' forces): its vertical component, or with ``components="sagittal"`` its
    projection on the sagittal plane (fore-aft too).

    Why vertical by default: a smooth contact sphere's friction grows with its
    slip speed (0.2 m/s transition), so matching the measured fore-aft force makes
    the feet slide against the tracked kinematics; with both components a walking
    solve wandered at primal infeasibility 10-20 for 280 iterations.

    Moco reads the measured forces through an ExternalLoads file, written to
    ``work_dir`` with the data (``grf_target.mot``); the goal divides the squared
    force error by body weight, so ``weight`` is per N.  ``spheres``: each foot's
    contact-sphere names (default :data:`FOOT_SPHERES`, the 2D model's).
    """
    spheres = spheres or FOOT_SPHERES
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data = work_dir / "grf_target.mot"
    columns = []
    for side in ("r", "l"):
        columns += [f"ground_force_{side}_v{a}" for a in "xyz"]
        columns += [f"ground_force_{side}_p{a}" for a in "xyz"]
    n = len(forces.time)
    rows = []
    for side in ("r", "l"):
        f = forces.forces[side]
        rows += [f[:, 0], f[:, 1], np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)]
    table = np.column_stack([forces.time, *rows])
    header = (f"grf_target\nversion=1\nnRows={n}\nnColumns={len(columns) + 1}\n"
              "inDegrees=no\nendheader\n" + "\t".join(["time", *columns]) + "\n")
    data.write_text(header + "\n".join("\t".join(f"{x:.8g}" for x in row) for row in table)
                    + "\n")
    loads = osim.ExternalLoads()
    loads.setDataFileName(str(data))
    goal = osim.MocoContactTrackingGoal("grf", float(weight))
    for side in ("r", "l"):
        external = osim.ExternalForce()
        external.setName(f"grf_{side}")
        external.set_applied_to_body(f"calcn_{side}")
        external.set_force_expressed_in_body("ground")
        external.set_point_expressed_in_body("ground")
        external.set_force_identifier(f"ground_force_{side}_v")
        external.set_point_identifier(f"ground_force_{side}_p")
        loads.cloneAndAppend(external)
        paths = std_strings(osim, [f"/forceset/contact_{n}" for n in spheres[side]])
        group = osim.MocoContactTrackingGoalGroup(paths, f"grf_{side}")
        group.append_alternative_frame_paths(f"/bodyset/toes_{side}")
        goal.addContactGroup(group)
    xml = work_dir / "grf_target.xml"
    loads.printToXML(str(xml))
    goal.setExternalLoadsFile(str(xml))
    if components == "sagittal":
        goal.setProjection("plane")
        goal.setProjectionVector(osim.Vec3(0, 0, 1))
    elif components == "vertical":
        goal.setProjection("vector")
        goal.setProjectionVector(osim.Vec3(0, 1, 0))
    else:
        raise ValueError(f"components={components!r}; expected 'vertical' or 'sagittal'")
    return goal


def _common_problem(osim, study, model, settings: Settings, *, final_time):
    """Bounds and the periodicity shared by every stage of a gait.

    ``settings.cycle == "half"``: the right side ends where the left side
    started and vice versa, so mirroring the half gives a periodic, symmetric
    full cycle.  ``"full"``: every state and control ends where it started
    (an asymmetric gait, e.g. with one locked knee).
    """
    problem = study.updProblem()
    problem.setTimeBounds(0, final_time)
    for name in model_coordinates(model):
        path = coordinate_path(model, name)
        if name == "pelvis_tx":
            problem.setStateInfo(path + "/value", _bounds(name, settings.bounds), 0)
            problem.setStateInfo(path + "/speed", list(settings.tx_speed_bounds))
        else:
            problem.setStateInfo(path + "/value", _bounds(name, settings.bounds))
    problem.addGoal(periodicity_goal(osim, model, symmetric=settings.cycle == "half"))
    if settings.min_centre_height_m is not None:
        for sphere_name in (n for spheres in FOOT_SPHERES.values() for n in spheres):
            problem.addPathConstraint(centre_height_bound(
                osim, f"centre_above_floor_{sphere_name}", sphere_name,
                osim.Constant(settings.min_centre_height_m)))
    return problem


def periodicity_goal(osim, model, *, symmetric: bool, negated: tuple = (), name=None):
    """The end of a gait cycle's solved interval joins its start.

    Every coordinate's value and speed (``pelvis_tx``'s value excepted: it
    advances) and every muscle's activation and excitation ends where it started;
    with ``symmetric`` (a half cycle) where its left/right counterpart started, the
    ``negated`` coordinates with the opposite sign (sideways pelvis motion), so
    that mirroring the half gives a periodic, symmetric full cycle.
    """
    swap = swap_side if symmetric else (lambda n: n)
    goal = osim.MocoPeriodicityGoal(name or ("symmetry" if symmetric else "periodicity"))
    for coordinate in model_coordinates(model):
        path = coordinate_path(model, coordinate)
        mirror = coordinate_path(model, swap(coordinate))
        for suffix in ("/value", "/speed"):
            if coordinate == "pelvis_tx" and suffix == "/value":
                continue
            pair = osim.MocoPeriodicityGoalPair(path + suffix, mirror + suffix)
            if symmetric and coordinate in negated:
                goal.addNegatedStatePair(pair)
            else:
                goal.addStatePair(pair)
    for muscle in model.getMuscles():
        path = muscle.getAbsolutePathString()
        goal.addStatePair(osim.MocoPeriodicityGoalPair(
            path + "/activation", swap(path) + "/activation"))
        goal.addControlPair(osim.MocoPeriodicityGoalPair(path, swap(path)))
    return goal


def _add_swing_clearance(osim, problem, model, duration: float, settings: Settings):
    """Keep the swing foot off the floor through most of its swing.

    The model's feet are 5 cm contact spheres that sink about 3 cm in stance,
    so measured joint angles (and minimum effort) leave the swing foot
    grazing and sliding on the floor before heel strike, which is not how
    people walk and blurs heel strike.  The walking half cycle starts at right
    heel strike, so the left foot swings from about 20 % of it to its end: in
    each of ``swing_windows`` the centres of that foot's contact spheres must
    stay at least a radius above the floor.  Bounding heights (linear in the
    pose) is far better conditioned for IPOPT than bounding contact forces.
    """
    add_swing_clearance(osim, problem, model, settings.swing_windows, duration, FOOT_SPHERES)


def add_swing_clearance(osim, problem, model, windows, duration: float, spheres: dict):
    """In each of ``windows`` ((side, start, end) fractions of ``duration``), the
    centres of that side's contact ``spheres`` ({side: names}, with stations from
    :func:`add_centre_stations`) stay at least a radius above the floor."""
    for k, (side, lo, hi) in enumerate(windows):
        for sphere_name in spheres[side]:
            lower = _window_function(osim, lo * duration, hi * duration, duration,
                                     sphere_radius(model, sphere_name))
            problem.addPathConstraint(centre_height_bound(
                osim, f"swing_clearance_{k}_{sphere_name}", sphere_name, lower))


def full_cycle_windows(half_windows, left_strike: float, start: float = 0.0) -> tuple:
    """Swing windows of a full cycle from those of a half cycle (right to left heel
    strike): the first half's windows scaled to [0, left_strike], and their mirror
    images (sides swapped) scaled to [left_strike, 1]; for a cycle that begins at
    ``start`` of the stride, moved back by ``start`` (a window across the seam split
    in two)."""
    windows = []
    for side, lo, hi in half_windows:
        windows.append((side, lo * left_strike, hi * left_strike))
    for side, lo, hi in half_windows:
        other = "l" if side == "r" else "r"
        windows.append((other, left_strike + lo * (1 - left_strike),
                        left_strike + hi * (1 - left_strike)))
    out = []
    for side, lo, hi in windows:
        lo, hi = lo - start, hi - start
        if lo < 0 and hi <= 0:
            out.append((side, lo + 1, hi + 1))
        elif lo < 0:
            out += [(side, lo + 1, 1.0), (side, 0.0, hi)]
        else:
            out.append((side, lo, hi))
    return tuple(out)


def output_constraint(osim, kind, name: str, output: str, index: int, lo: float, hi: float):
    """An endpoint constraint ``lo <= output[index] <= hi`` at the initial or final time
    (``kind``: MocoInitialOutputGoal or MocoFinalOutputGoal)."""
    goal = kind(name)
    goal.setOutputPath(output)
    goal.setOutputIndex(index)
    goal.setMode("endpoint_constraint")
    bounds = osim.StdVectorMocoBounds()
    bounds.append(osim.MocoBounds(lo, hi))
    goal.setEndpointConstraintBounds(bounds)
    return goal


def add_grounded_start(osim, problem, model, spheres, sink: tuple) -> None:
    """A movement from standing: every one of the contact ``spheres`` (with stations
    from :func:`add_centre_stations`) starts sunk into the floor by ``sink`` = (lo, hi)
    m, the range of quiet standing on compliant spheres.  Without it a jump solve
    starts in the air: a higher start is free potential energy."""
    lo, hi = sink
    for sphere_name in spheres:
        radius = sphere_radius(model, sphere_name)
        problem.addGoal(output_constraint(
            osim, osim.MocoInitialOutputGoal, f"grounded_{sphere_name}",
            f"/{CENTRE_PREFIX}{sphere_name}|location", 1, radius - hi, radius - lo))


def add_jump_ends(osim, problem, model, spheres, *, start_acceleration: float,
                  apex_clearance: float) -> None:
    """A jump starts in quiet standing and ends at the apex of a flight.

    Quiet standing is at rest (zero speeds, set by the caller) *and* in equilibrium:
    horizontal and vertical centre-of-mass acceleration within ``start_acceleration``
    (m/s^2); without it a first 2D tracking solution started with its feet barely on the
    floor (0.13 body weights), falling.  The end is the apex (vertical centre-of-mass
    velocity 0) with every contact sphere's centre at least a radius plus
    ``apex_clearance`` (m) above the floor, so the jump has a flight.
    """
    a = start_acceleration
    for i, axis in ((0, "x"), (1, "y")):
        problem.addGoal(output_constraint(osim, osim.MocoInitialOutputGoal, f"standing_{axis}",
                                          "/|com_acceleration", i, -a, a))
    problem.addGoal(output_constraint(osim, osim.MocoFinalOutputGoal, "apex", "/|com_velocity",
                                      1, 0.0, 0.0))
    for sphere_name in spheres:
        problem.addGoal(output_constraint(
            osim, osim.MocoFinalOutputGoal, f"airborne_{sphere_name}",
            f"/{CENTRE_PREFIX}{sphere_name}|location", 1,
            sphere_radius(model, sphere_name) + apex_clearance, 10.0))


def sphere_radius(model, sphere_name: str) -> float:
    """Radius (m) of one of the model's contact spheres."""
    return _osim().ContactSphere.safeDownCast(
        model.getContactGeometrySet().get(sphere_name)).getRadius()


def add_grounded_window(osim, problem, model, spheres, end: float, duration: float,
                        sink: float) -> None:
    """From the start to ``end`` (s) the contact ``spheres`` (with stations from
    :func:`add_centre_stations`) stay sunk into the floor by at least ``sink`` (m): a
    foot part that carries load, as a person's heels do through a countermovement."""
    for sphere_name in spheres:
        upper = _window_function(osim, 0.0, end, duration,
                                 sphere_radius(model, sphere_name) - sink, outside=2.0)
        problem.addPathConstraint(centre_height_bound(
            osim, f"in_contact_{sphere_name}", sphere_name, osim.Constant(-1.0), upper))


def centre_height_bound(osim, name: str, sphere_name: str, lower, upper=None):
    """Path constraint: the height of a contact sphere's centre stays above the
    function ``lower`` of time and below ``upper`` (None: 2 m)."""
    bound = osim.MocoOutputBoundConstraint()
    bound.setName(name)
    bound.setOutputPath(f"/{CENTRE_PREFIX}{sphere_name}|location")
    bound.setOutputIndex(1)
    bound.setLowerBound(lower)
    bound.setUpperBound(osim.Constant(2.0) if upper is None else upper)
    return bound


def _add_stance_knee_limit(osim, problem, model, duration: float, settings: Settings):
    """Limit knee flexion in each of ``settings.stance_knee_windows``.

    A time-varying lower bound on the knee angle (flexion is negative in
    this model): ``-max_stance_knee_flexion_deg`` inside the window, the
    coordinate's own bound outside it.
    """
    for side, lo, hi in settings.stance_knee_windows:
        name = f"knee_angle_{side}"
        floor = _bounds(name, settings.bounds)[0]
        limit = -math.radians(settings.max_stance_knee_flexion_deg)
        lower = _window_function(osim, lo * duration, hi * duration, duration, limit,
                                 outside=floor)
        bound = osim.MocoStateBoundConstraint()
        bound.setName(f"stance_knee_{side}")
        bound.addStatePath(coordinate_path(model, name) + "/value")
        bound.setLowerBound(lower)
        problem.addPathConstraint(bound)


def add_com_force_bounds(osim, problem, bounds, duration: float) -> None:
    """Path constraints on the centre of mass's vertical acceleration: for every (start,
    end, min_bw, max_bw) of ``bounds`` (fractions of ``duration``), body weight x (1 +
    a_y/g), the total vertical ground force it implies, stays within [min_bw, max_bw]
    body weights inside the window (None: unbounded that way); enforced at the mesh
    points, and inside the intervals with ``path_constraints_inside_intervals``.

    In single support this is the stance foot's force.  The same bound put on the
    contact spheres' forces (MocoOutputBoundConstraint on two ``sphere_force`` outputs
    added) sent IPOPT into restoration from a converged solution and stopped as locally
    infeasible; on the centre of mass it converged in 200 iterations (lockedknee2d).
    """
    for k, (lo, hi, min_bw, max_bw) in enumerate(bounds):
        if min_bw is None and max_bw is None:
            raise ValueError(f"centre-of-mass force bound {k} {(lo, hi, min_bw, max_bw)}: "
                             "expected a min_bw or a max_bw")
        bound = osim.MocoOutputBoundConstraint()
        bound.setName(f"com_force_{k}")
        bound.setOutputPath("/|com_acceleration")
        bound.setOutputIndex(1)
        for value, outside, setter in ((min_bw, -10.0, bound.setLowerBound),
                                       (max_bw, 10.0, bound.setUpperBound)):
            if value is not None:
                setter(_window_function(osim, lo * duration, hi * duration, duration,
                                        (value - 1.0) * GRAVITY, (outside - 1.0) * GRAVITY))
        problem.addPathConstraint(bound)


def _window_function(osim, start: float, end: float, duration: float, height: float,
                     outside: float = -1.0):
    """A bound of time (PiecewiseLinearFunction) that is ``height`` in [start, end] and
    ``outside`` elsewhere on [0, 2 * duration] (the solved duration may grow): for a
    sphere's height -1 m is no lower bound, 2 m no upper one."""
    eps = 1e-3 * duration
    points = [(0.0, outside), (start - eps, outside)] if start > eps else []
    points += [(max(start, 0.0), height), (end, height), (end + eps, outside),
               (2 * duration, outside)]
    function = osim.PiecewiseLinearFunction()
    for t, y in points:
        function.addPoint(t, y)
    return function


def configure_solver(study, settings: SolveSettings, mesh: int,
                     max_iterations: int | None = None):
    """The study's CasADi solver on ``mesh`` intervals, with ``settings``' solver knobs."""
    solver = study.initCasADiSolver()
    solver.set_num_mesh_intervals(int(mesh))
    solver.set_verbosity(2 if settings.verbose else 0)
    solver.set_optim_ipopt_print_level(5 if settings.verbose else 0)
    solver.set_optim_convergence_tolerance(settings.convergence_tolerance)
    solver.set_optim_constraint_tolerance(settings.constraint_tolerance)
    solver.set_optim_max_iterations(int(max_iterations or settings.max_iterations))
    solver.set_parallel(int(settings.threads))
    solver.set_optim_sparsity_detection(settings.sparsity_detection)
    solver.set_optim_finite_difference_scheme(settings.finite_difference)
    solver.set_multibody_dynamics_mode(settings.dynamics_mode)
    if settings.output_interval:
        solver.set_output_interval(int(settings.output_interval))
    if settings.path_constraints_inside_intervals:
        _osim().PropertyHelper.setValueBool(
            True, solver.updPropertyByName("enforce_path_constraint_mesh_interior_points"))
    return solver


def _fill_guess(osim, guess, time, states: dict, default_activation=0.05):
    """Set a guess from {state path: values on `time`}; muscles start quiet, reserve
    torques (``reserve_*`` controls) off."""
    guess.setTime(osim_vector(osim, time))
    for name in guess.getStateNames():
        if name in states:
            guess.setState(name, osim_vector(osim, states[name]))
        elif name.endswith("/activation"):
            guess.setState(name, osim_vector(osim, np.full(len(time), default_activation)))
    for name in guess.getControlNames():
        control = 0.0 if "reserve_" in name else default_activation
        guess.setControl(name, osim_vector(osim, np.full(len(time), control)))
    return guess


def _finish(solution, label: str, t0: float, log) -> dict:
    import time as _time

    wall = _time.perf_counter() - t0
    status = solution.getStatus()
    ok = solution.success()
    if solution.isSealed():
        solution.unseal()
    info = dict(wall_time_s=round(wall, 1), iterations=int(solution.getNumIterations()),
                status=str(status), converged=bool(ok),
                objective=float(solution.getObjective()))
    log(f"[{label}] {'converged' if ok else 'NOT converged'} ({status}) after "
        f"{info['iterations']} iterations in {wall:.0f} s; objective {info['objective']:.4g}")
    return info


def new_study(settings: Settings, label: str):
    """(study, problem, processed model) for one stage, on the env model of ``settings``."""
    osim = _osim()
    proc = settings_processor(settings)
    model = proc.process()
    model.initSystem()
    study = osim.MocoStudy()
    study.setName(f"{settings.name}_{label}")
    problem = study.updProblem()
    problem.setModelProcessor(proc)
    return study, problem, model


def solve_stage(study, label: str, mesh: int, work_dir: Path, log) -> tuple:
    """Solve in the work directory, log, and save ``<label>_solution.sto`` there."""
    import time as _time

    t0 = _time.perf_counter()
    with _cwd(work_dir):
        solution = study.solve()
    info = _finish(solution, label, t0, log)
    info["mesh_intervals"] = int(mesh)
    solution.write(str(Path(work_dir) / f"{label}_solution.sto"))
    return solution, info


def kinematic_guess(osim, solver, model, time, coords: dict, end: float | None = None):
    """A guess from coordinate values on ``time`` (speeds by differentiation) over
    [time[0], ``end``] (default: the last time); model coordinates that ``coords``
    lacks keep the solver's default guess."""
    guess = solver.createGuess()
    gt = np.linspace(float(time[0]), float(time[-1] if end is None else end),
                     guess.getNumTimes())
    states = {}
    for name in model_coordinates(model):
        if name not in coords:
            continue
        path = coordinate_path(model, name)
        values = np.interp(gt, time, coords[name])
        states[path + "/value"] = values
        states[path + "/speed"] = np.gradient(values, gt)
    return _fill_guess(osim, guess, gt, states)


def tracking_goal(osim, model, name: str, weight: float, time, coords: dict,
                  state_weights=()):
    """A MocoStateTrackingGoal of the coordinate values ``coords`` on ``time`` (the
    model's coordinates that it has); ``state_weights``: (coordinate, relative weight)
    pairs, applied in order (the last one of a coordinate holds), for the model's
    coordinates."""
    goal = osim.MocoStateTrackingGoal(name, weight)
    goal.setReference(osim.TableProcessor(value_table(osim, model, time, coords)))
    goal.setAllowUnusedReferences(True)
    names = model_coordinates(model)
    for coordinate, w in state_weights:
        if coordinate in names:
            goal.setWeightForState(coordinate_path(model, coordinate) + "/value", float(w))
    return goal


def solve_tracking(target: Target, settings: Settings, *, work_dir: Path, log=print,
                   max_iterations: int | None = None, forces: ForceTarget | None = None,
                   guess_trajectory=None, mesh: int | None = None, label: str = "tracking"):
    """Track the target (a symmetrised half cycle, or a full cycle with
    ``settings.cycle == "full"``): a dynamically consistent gait.

    Joint angles and pelvis motion are tracked, and with ``forces`` (and
    ``settings.grf_tracking_weight`` > 0) the measured ground reaction forces;
    a small effort term makes muscles share the load sensibly.  The first
    stage starts from the target's kinematics (``mesh`` defaults to
    ``settings.tracking_mesh``); a refinement passes the previous stage's
    solution as ``guess_trajectory``.
    """
    osim = _osim()
    mesh = int(mesh or settings.tracking_mesh)
    study, problem, model = new_study(settings, label)
    duration = float(target.time[-1])
    _common_problem(osim, study, model, settings, final_time=duration)
    if settings.track_speed:
        distance = float(target.coords["pelvis_tx"][-1] - target.coords["pelvis_tx"][0])
        problem.setStateInfo(coordinate_path(model, "pelvis_tx") + "/value",
                             _bounds("pelvis_tx", settings.bounds), 0.0, distance)
    if settings.tracking_clearance:
        _add_swing_clearance(osim, problem, model, duration, settings)
    # pelvis_tx grows to ~0.6 m: weight it lower than angles so it guides the
    # speed without dominating.
    problem.addGoal(tracking_goal(
        osim, model, "tracking", settings.tracking_weight, target.time, target.coords,
        [("pelvis_tx", 0.2), *settings.tracking_state_weights.items()]))
    problem.addGoal(osim.MocoControlGoal("effort", settings.tracking_effort_weight))
    if settings.foot_tracking_weight > 0:
        problem.addGoal(foot_tracking_goal(
            osim, model, settings.foot_tracking_weight, target.time, target.coords,
            env_model_path(settings) if settings.variant else None))
    if tracks_forces(settings, forces):
        problem.addGoal(contact_tracking_goal(osim, model, forces, settings.grf_tracking_weight,
                                              work_dir, settings.grf_components))

    solver = configure_solver(study, settings, mesh, max_iterations)
    if guess_trajectory is None:
        solver.setGuess(kinematic_guess(osim, solver, model, target.time, target.coords))
    else:
        solver.setGuess(refined_guess(osim, solver, guess_trajectory))
    log(f"[{label}] {mesh} mesh intervals, {settings.cycle} cycle {duration:.3f} s, "
        f"target speed {target.speed:.2f} m/s"
        + (f", ground reaction forces (weight {settings.grf_tracking_weight})"
           if tracks_forces(settings, forces) else ""))
    return solve_stage(study, label, mesh, work_dir, log)


def foot_tracking_goal(osim, model, weight: float, time, coords: dict, model_path=None):
    """A MocoTranslationTrackingGoal of both calcanei along the target's own kinematics
    ({coordinate: values on ``time``} on ``model_path``'s model)."""
    feet = FootKinematics(model_file(model_path))(Target.of(time, coords))
    frames = [model.getBodySet().get(f"calcn_{side}").getAbsolutePathString()
              for side in ("r", "l")]
    positions = osim.TimeSeriesTableVec3()
    positions.setColumnLabels(std_strings(osim, frames))
    for k, tk in enumerate(np.asarray(time, dtype=float)):
        positions.appendRow(float(tk), osim.RowVectorVec3(
            [osim.Vec3(*feet[side]["calcn"][k]) for side in ("r", "l")]))
    goal = osim.MocoTranslationTrackingGoal("feet", float(weight))
    goal.setFramePaths(std_strings(osim, frames))
    goal.setTranslationReference(positions)
    return goal


def _speed_scaled_guess(osim, trajectory, factor_time: float):
    """Copy of a trajectory with time stretched (speeds rescaled to match)."""
    guess = trajectory.clone()
    t = trajectory.getTimeMat()
    guess.setTime(osim_vector(osim, np.asarray(t) * factor_time))
    for name in guess.getStateNames():
        if name.endswith("/speed"):
            speeds = np.asarray(trajectory.getStateMat(name)) / factor_time
            guess.setState(name, osim_vector(osim, speeds))
    return guess


def refined_guess(osim, solver, trajectory, duration: float | None = None):
    """A guess on ``solver``'s mesh from a solution on another mesh.

    Moco's own resampling fits a degree-5 smoothing spline to every column
    independently; around foot strikes it overshoots, the guess's feet sink
    into the floor and the first iterate's contact forces (and dynamics
    defects) explode: a locked-knee walk refined from 50 to 100 intervals
    started 6.5 (max. constraint violation) off and diverged.  Here
    coordinate values are cubic Hermite interpolants of their own speeds (so
    positions and velocities agree) and everything else is shape-preserving
    (PCHIP), which cannot overshoot.  ``duration`` stretches time as well
    (speeds rescaled to match).
    """
    from scipy.interpolate import CubicHermiteSpline, PchipInterpolator

    t = np.asarray(trajectory.getTimeMat()).ravel()
    factor = 1.0 if duration is None else duration / (t[-1] - t[0])
    t = (t - t[0]) * factor
    guess = solver.createGuess()
    new_t = np.linspace(0.0, t[-1], guess.getNumTimes())
    guess.setTime(osim_vector(osim, new_t))
    states = list(trajectory.getStateNames())
    for name in guess.getStateNames():
        x = np.asarray(trajectory.getStateMat(name)).ravel()
        if name.endswith("/speed"):
            x = x / factor
        if name.endswith("/value") and name[:-5] + "speed" in states:
            speed = np.asarray(trajectory.getStateMat(name[:-5] + "speed")).ravel() / factor
            values = CubicHermiteSpline(t, x, speed)(new_t)
        else:
            values = PchipInterpolator(t, x)(new_t)
        guess.setState(name, osim_vector(osim, values))
    for name in guess.getControlNames():
        x = np.asarray(trajectory.getControlMat(name)).ravel()
        guess.setControl(name, osim_vector(osim, PchipInterpolator(t, x)(new_t)))
    return guess


def predictive_duration(target: Target, speed: float) -> float:
    """Half-cycle duration for walking the target's gait at another speed.

    Over everyday speeds step length and cadence both grow about as the
    square root of speed, so each takes half of the speed change.
    """
    return float(target.time[-1] * math.sqrt(target.speed / speed))


def solve_predictive(guess_trajectory, settings: Settings, *, mesh: int, label: str,
                     work_dir: Path, target: Target, log=print,
                     max_iterations: int | None = None):
    """Minimum-effort periodic half cycle at the prescribed average speed.

    Effort is the sum of cubed excitations per metre travelled (cubes spread
    the load over muscles, as in Moco's 2D walking example).  The half-cycle
    duration is fixed by :func:`predictive_duration` unless bounds are given:
    left free, minimum effort picks an unnaturally low cadence with long
    strides.  An optional small tracking term keeps joint angles near the
    measured ones, with the target's time scaled to the predicted duration;
    ``settings.com_acceleration_weight`` > 0 adds :func:`com_acceleration_goal`.
    With ``settings.cycle == "full"`` the same holds for a full cycle.
    """
    osim = _osim()
    study, problem, model = new_study(settings, label)
    duration = predictive_duration(target, settings.speed)
    bounds = list(settings.half_cycle_bounds) if settings.half_cycle_bounds else duration
    _common_problem(osim, study, model, settings, final_time=bounds)
    _add_swing_clearance(osim, problem, model, duration, settings)
    _add_stance_knee_limit(osim, problem, model, duration, settings)
    add_com_force_bounds(osim, problem, settings.com_force_bounds, duration)
    speed = osim.MocoAverageSpeedGoal("speed")
    speed.set_desired_average_speed(settings.speed)
    problem.addGoal(speed)
    effort = osim.MocoControlGoal("effort", settings.effort_weight)
    effort.setExponent(settings.effort_exponent)
    effort.setDivideByDisplacement(True)
    problem.addGoal(effort)
    if settings.predictive_tracking_weight > 0:
        scaled = target.time * duration / target.time[-1]
        problem.addGoal(tracking_goal(
            osim, model, "kinematics", settings.predictive_tracking_weight, scaled,
            target.coords, [*settings.tracking_state_weights.items(), ("pelvis_tx", 0.0),
                            ("pelvis_ty", settings.pelvis_height_weight)]))
    if settings.com_acceleration_weight > 0:
        problem.addGoal(com_acceleration_goal(osim, settings.com_acceleration_weight,
                                              settings.com_acceleration_exponent))

    solver = configure_solver(study, settings, mesh, max_iterations)
    gt = np.asarray(guess_trajectory.getTimeMat()).ravel()
    if settings.guess_resampling == "hermite":
        guess = refined_guess(osim, solver, guess_trajectory, duration)
    else:
        guess = _speed_scaled_guess(osim, guess_trajectory, duration / (gt[-1] - gt[0]))
        guess.resampleWithNumTimes(2 * int(mesh) + 1)
    solver.setGuess(guess)
    log(f"[{label}] {mesh} mesh intervals, speed {settings.speed} m/s, {settings.cycle} cycle "
        f"{'free in ' + str(bounds) if settings.half_cycle_bounds else f'{duration:.3f}'} s")
    return solve_stage(study, label, mesh, work_dir, log)


def com_acceleration_goal(osim, weight: float, exponent: int = 4):
    """Integral of the centre of mass's vertical acceleration to the power ``exponent``
    (the model's ``com_acceleration`` output, its y component): peaks of the total
    vertical ground force, body weight x (1 + a_y/g), cost far more than the
    ordinary swings of walking (0.3 g) when the exponent is high."""
    goal = osim.MocoOutputGoal("com_acceleration", float(weight))
    goal.setOutputPath("/|com_acceleration")
    goal.setOutputIndex(1)
    goal.setExponent(int(exponent))
    return goal


class _cwd:
    """Run Moco in the work directory: its intermediate iterates land there."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        self.path.mkdir(parents=True, exist_ok=True)
        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        os.chdir(self.old)


# --------------------------------------------------------------------------
# Full cycle, contact forces and gait figures
# --------------------------------------------------------------------------
def solution_motion(trajectory, names: tuple = COORDINATES, *,
                    zeros_for_missing: bool = True) -> Motion:
    """Coordinate values and speeds of a Moco trajectory (time from 0).

    Coordinates of ``names`` that the trajectory lacks are joints welded for Moco
    at their locked value 0 (:func:`weld_locked_joints`): zeros, or left out
    without ``zeros_for_missing``.
    """
    t = np.asarray(trajectory.getTimeMat()).ravel()
    kept, values, speeds = [], [], []
    states = list(trajectory.getStateNames())
    for name in names:
        value = next((n for n in states if n.endswith(f"/{name}/value")), None)
        if value is None:
            if zeros_for_missing:
                kept.append(name)
                values.append(np.zeros(len(t)))
                speeds.append(np.zeros(len(t)))
            continue
        kept.append(name)
        values.append(np.asarray(trajectory.getStateMat(value)).ravel())
        speeds.append(np.asarray(trajectory.getStateMat(value[:-5] + "speed")).ravel())
    return Motion(t - t[0], tuple(kept), np.array(values).T, np.array(speeds).T)


def swapped_columns(names) -> list[int]:
    """For each name, the column of its left/right counterpart (its own column if it has
    none): the mirror image of a half cycle's rows."""
    names = list(names)
    return [names.index(swap_side(n)) if swap_side(n) in names else j
            for j, n in enumerate(names)]


def mirror_half_cycle(half: Motion, negated: tuple = ()) -> Motion:
    """Full cycle = the half cycle, then the same with left and right swapped
    (``negated`` coordinates, the sideways pelvis motion of a 3D gait, also change
    sign; a coordinate without counterpart keeps its own values). For a Moco half
    cycle with its speeds, whose symmetry goal makes the ends mirror each other
    exactly; a user's file of half a cycle, whose ends mirror each other only within
    its measurement, goes through ``fastenv.references.mirrored_half``.

    The second half starts where the first ended (its first row is the
    mirror of the first half's first row, equal to the first half's last row
    by the periodicity constraint), with ``pelvis_tx`` continued.
    """
    swap = swapped_columns(half.names)
    sign = np.array([-1.0 if n in negated else 1.0 for n in half.names])
    values2 = half.values[:, swap] * sign if negated else half.values[:, swap].copy()
    tx = half.names.index("pelvis_tx")
    values2[:, tx] += half.values[-1, tx] - half.values[0, tx]
    duration = half.time[-1]
    time = np.concatenate([half.time, half.time[1:] + duration])
    speeds = None
    if half.speeds is not None:
        speeds2 = half.speeds[:, swap] * sign if negated else half.speeds[:, swap]
        speeds = np.vstack([half.speeds, speeds2[1:]])
    return Motion(time, half.names, np.vstack([half.values, values2[1:]]), speeds)


def contact_forces(cycle: Motion, model_path: str | None = None) -> dict:
    """Vertical ground reaction force on each foot (T,) of a motion with speeds, from
    the smooth contact model (:func:`build_contact_model`)."""
    return ContactProbe(build_contact_model(model_path))(cycle)


def body_weight_n(model_path: str | None = None) -> float:
    return PosedModel(model_file(model_path)).body_weight


def _rising_edges(on: np.ndarray) -> np.ndarray:
    """Indices where a cyclic boolean signal switches on."""
    return np.flatnonzero(on & ~np.roll(on, 1))


def stance_masks(grf: dict, body_weight: float) -> tuple[dict, float]:
    """Per foot, whether it is in stance at each sample of a cycle (last row excluded).

    On the ground means a vertical force above 20 N; a contact that never
    exceeds 10 % of body weight is the swing foot grazing the floor, not a
    stance phase, and is left out (its peak force is returned, in N).
    """
    masks, graze = {}, 0.0
    for side, force in grf.items():
        fy = force[:-1]
        on = fy > CONTACT_THRESHOLD_N
        for k in _rising_edges(on):
            idx = []
            j = k
            while on[j % len(on)] and len(idx) < len(on):
                idx.append(j % len(on))
                j += 1
            peak = fy[idx].max()
            if peak < 0.1 * body_weight:
                on[idx] = False
                graze = max(graze, float(peak))
        masks[side] = on
    return masks, graze


def right_heel_strike_row(grf: dict, body_weight: float) -> int:
    """The first row of a periodic cycle where the right foot strikes (0 if none)."""
    masks, _ = stance_masks(grf, body_weight)
    edges = _rising_edges(masks["r"])
    return int(edges[0]) if len(edges) else 0


def rotated_cycle(rows: np.ndarray, k: int) -> np.ndarray:
    """Rows of a periodic cycle (last row = first) rotated to start at row ``k``."""
    n = len(rows) - 1
    return np.concatenate([rows[k:n], rows[:k + 1]])


def start_at_right_heel_strike(cycle: Motion, grf: dict, body_weight: float
                               ) -> tuple[Motion, dict]:
    """Rotate a periodic cycle so that t = 0 is right heel strike."""
    k = right_heel_strike_row(grf, body_weight)
    if k == 0:
        return cycle, grf
    n = len(cycle.time) - 1
    tx = cycle.names.index("pelvis_tx")
    stride = cycle.values[-1, tx] - cycle.values[0, tx]
    values = rotated_cycle(cycle.values, k)
    values[n - k:, tx] += stride
    speeds = rotated_cycle(cycle.speeds, k)
    values[:, tx] -= values[0, tx]
    rolled = {s: rotated_cycle(g, k) for s, g in grf.items()}
    return Motion(cycle.time.copy(), cycle.names, values, speeds), rolled


def gait_figures(cycle: Motion, grf: dict, body_weight: float) -> dict:
    """Figures that say whether a cycle is a normal adult walk (or run).

    Events come from the vertical contact force (see :func:`stance_masks`);
    knee flexion is reported positive, in degrees.
    """
    t = cycle.time
    duration = float(t[-1] - t[0])
    stride = float(cycle.column("pelvis_tx")[-1] - cycle.column("pelvis_tx")[0])
    on, graze = stance_masks(grf, body_weight)
    both = on["r"] & on["l"]
    flexion = {s: -np.degrees(cycle.column(f"knee_angle_{s}"))[:-1] for s in FOOT_SPHERES}
    strikes = {s: _rising_edges(on[s]) for s in FOOT_SPHERES}
    at_strike = [float(flexion[s][k]) for s in FOOT_SPHERES for k in strikes[s]]
    swing_peak = [float(flexion[s][~on[s]].max()) if (~on[s]).any() else float("nan")
                  for s in FOOT_SPHERES]
    seam = [abs(float(np.degrees(cycle.values[-1, j] - cycle.values[0, j])))
            for j, n in enumerate(cycle.names) if n not in TRANSLATIONS]
    ds_edges = _rising_edges(both)
    # Duration of each double-support phase, as a fraction of the cycle.
    phases = []
    for k in ds_edges:
        length = 0
        while both[(k + length) % len(both)] and length < len(both):
            length += 1
        phases.append(length / len(both))
    return dict(
        cycle_duration_s=duration,
        stride_length_m=stride,
        speed_m_s=stride / duration,
        cadence_steps_per_min=120.0 / duration,
        peak_vertical_grf_bw=float(max(grf[s].max() for s in FOOT_SPHERES) / body_weight),
        swing_graze_peak_n=graze,
        duty_factor_r=float(on["r"].mean()),
        duty_factor_l=float(on["l"].mean()),
        double_support_fraction=float(both.mean()),
        double_support_phases=[round(p, 4) for p in phases],
        num_double_support_phases=int(len(ds_edges)),
        heel_strikes_per_foot=[int(len(strikes[s])) for s in FOOT_SPHERES],
        knee_flexion_at_heel_strike_deg=max(at_strike) if at_strike else float("nan"),
        peak_swing_knee_flexion_deg=max(swing_peak),
        min_knee_flexion_deg=float(min(f.min() for f in flexion.values())),
        hip_flexion_range_deg=[float(np.degrees(cycle.column("hip_flexion_r")).min()),
                               float(np.degrees(cycle.column("hip_flexion_r")).max())],
        ankle_angle_range_deg=[float(np.degrees(cycle.column("ankle_angle_r")).min()),
                               float(np.degrees(cycle.column("ankle_angle_r")).max())],
        seam_error_deg=max(seam),
        # Per foot [right, left] (asymmetric gaits) and running figures.
        knee_flexion_at_heel_strike_deg_rl=[
            max((float(flexion[s][k]) for k in strikes[s]), default=float("nan"))
            for s in FOOT_SPHERES],
        peak_swing_knee_flexion_deg_rl=swing_peak,
        peak_stance_knee_flexion_deg_rl=[
            float(flexion[s][on[s]].max()) if on[s].any() else float("nan")
            for s in FOOT_SPHERES],
        step_time_s_rl=[_step_time(strikes[s], strikes[o], duration / len(on[s]), duration)
                        for s, o in (("r", "l"), ("l", "r"))],
        hip_flexion_range_deg_l=[float(np.degrees(cycle.column("hip_flexion_l")).min()),
                                 float(np.degrees(cycle.column("hip_flexion_l")).max())],
        flight_fraction=float((~on["r"] & ~on["l"]).mean()),
        num_flight_phases=int(len(_rising_edges(~on["r"] & ~on["l"]))),
    )


def _step_time(own: np.ndarray, other: np.ndarray, dt: float, duration: float) -> float:
    """Time from the other foot's strike to this foot's next strike (one each)."""
    if len(own) != 1 or len(other) != 1:
        return float("nan")
    return float(((own[0] - other[0]) * dt) % duration)


# --------------------------------------------------------------------------
# The whole pipeline
# --------------------------------------------------------------------------
def run_stages(plan, *, work_dir: Path, resume: bool, log,
               stop_unless_converged: str | None = None) -> tuple[dict, dict]:
    """Solve ``plan`` = [(label, mesh, solve(previous solution) -> (solution, info))]
    in order, each stage seeded with the previous one's solution (None for the first).

    With ``resume``, a stage whose solution is already in ``work_dir`` is
    reused.  With ``stop_unless_converged``, a solved stage that did not converge
    raises RuntimeError ("<label> did not converge (<status>); " + that text).
    Returns ({label: solution}, {label: info}).
    """
    osim = _osim()
    solutions, stages, previous = {}, {}, None
    for label, mesh, solve in plan:
        path = Path(work_dir) / f"{label}_solution.sto"
        # A stage's figures (iterations, wall time, status) are kept beside its
        # solution, so that a resumed run still documents how it was solved.
        info_path = Path(work_dir) / f"{label}_stage.json"
        if resume and path.is_file():
            solution = osim.MocoTrajectory(str(path))
            log(f"[{label}] reused from the work directory")
            stages[label] = dict(json.loads(info_path.read_text()) if info_path.is_file()
                                 else dict(mesh_intervals=int(mesh)), reused=True)
        else:
            solution, stages[label] = solve(previous)
            info_path.write_text(json.dumps(stages[label], indent=1))
            if stop_unless_converged is not None and not stages[label].get("converged", True):
                raise RuntimeError(f"{label} did not converge ({stages[label]['status']}); "
                                   f"{stop_unless_converged}")
        solutions[label] = previous = solution
    return solutions, stages


def predictive_stages(settings: Settings, solve) -> list:
    """Plan entries (see :func:`run_stages`) of the predictive stages: ``predictive_coarse``
    and, unless ``settings.coarse_only``, ``predictive_fine``; each calls
    ``solve(previous, label, mesh)``."""
    meshes = [("predictive_coarse", settings.coarse_mesh)]
    if not settings.coarse_only:
        meshes.append(("predictive_fine", settings.fine_mesh))
    return [(label, mesh, lambda previous, label=label, mesh=mesh: solve(previous, label, mesh))
            for label, mesh in meshes]


def seed_guess(settings: Settings, path, mesh: int, log=print) -> tuple:
    """(guess trajectory, info) from a full-cycle coordinates .sto, or from a Moco
    solution of the same predictive problem (``<name>_solution.sto``).

    A coordinates file's cycle starts at right heel strike, as the solved interval
    does; its first half (or the whole cycle for ``cycle == "full"``) becomes a
    guess on ``mesh`` with quiet muscles (activations and excitations 0.05).  A
    solution is the guess as it is, muscle states and controls included: re-solving
    under changed settings then starts feasible.
    """
    osim = _osim()
    if is_solution_file(path):
        guess = osim.MocoTrajectory(str(path))
        log(f"[seed] {Path(path).name}: a Moco solution, as the guess")
        return guess, dict(file=Path(path).name, mesh_intervals=int(mesh), wall_time_s=0.0,
                           note="seed of the first predictive stage (a Moco solution), in "
                                "place of a tracking solve")
    cycle = read_coordinates_sto(path)
    study, _, model = new_study(settings, "seed")
    end = float(cycle.time[-1] / 2 if settings.cycle == "half" else cycle.time[-1])
    keep = cycle.time <= end + 1e-9
    _common_problem(osim, study, model, settings, final_time=end)
    solver = configure_solver(study, settings, mesh)
    coords = {n: cycle.column(n)[keep] for n in cycle.names}
    coords["pelvis_tx"] = coords["pelvis_tx"] - coords["pelvis_tx"][0]
    guess = kinematic_guess(osim, solver, model, cycle.time[keep] - cycle.time[0], coords)
    log(f"[seed] {Path(path).name}: {'first half of the' if settings.cycle == 'half' else 'the'} "
        f"cycle, {end:.3f} s, as the guess")
    return guess, dict(file=Path(path).name, mesh_intervals=int(mesh), wall_time_s=0.0,
                       note="seed of the first predictive stage, in place of a tracking solve")


def is_solution_file(path) -> bool:
    """Whether a .sto is a Moco solution (columns are model paths such as
    ``/jointset/...``) rather than a coordinates file of the pipeline (coordinate
    names)."""
    with open(path) as f:
        for line in f:
            if line.strip().lower() == "endheader":
                columns = next(f, "").strip().split("\t")
                return any(c.startswith("/") for c in columns[1:])
    return False


def gait_plan(settings: Settings, target: Target, work_dir: Path, log,
              forces: ForceTarget | None = None) -> list:
    """tracking (or the seed) -> predictive_coarse (-> predictive_fine unless coarse_only);
    with ``settings.reference_stage == "tracking"``: tracking (-> tracking_fine unless
    coarse_only), ``forces`` tracked from a second, same-mesh stage (tracking_grf) on."""
    if settings.reference_stage == "tracking":
        # Kinematics first: from the target's kinematics as the guess the feet sink
        # into the floor and the force term's gradients point everywhere (a direct
        # solve with forces was still at primal infeasibility ~10 after 75
        # iterations); the kinematic solution is a consistent start for the forces.
        def warm_started(label, stage_forces):
            # the first stage from ``settings.guess`` (recorded), else from the target
            if settings.guess is None:
                return solve_tracking(target, settings, work_dir=work_dir, log=log,
                                      forces=stage_forces, label=label)
            solution, info = solve_tracking(
                target, settings, work_dir=work_dir, log=log, forces=stage_forces,
                guess_trajectory=_osim().MocoTrajectory(str(settings.guess)), label=label)
            return solution, dict(info, initial_guess=Path(settings.guess).name)

        if settings.guess is not None and tracks_forces(settings, forces):
            # a warm start of the force-tracking problem itself (e.g. its own earlier
            # solution under other weights): no kinematics-only stage in between
            plan = [("tracking_grf", settings.tracking_mesh,
                     lambda _: warm_started("tracking_grf", forces))]
        else:
            plan = [("tracking", settings.tracking_mesh, lambda _: warm_started("tracking", None))]
            if tracks_forces(settings, forces):
                plan.append(("tracking_grf", settings.tracking_mesh,
                             lambda previous: solve_tracking(
                                 target, settings, work_dir=work_dir, log=log, forces=forces,
                                 guess_trajectory=previous, label="tracking_grf")))
        if not settings.coarse_only:
            plan.append(("tracking_fine", settings.fine_mesh, lambda previous: solve_tracking(
                target, settings, work_dir=work_dir, log=log, forces=forces,
                guess_trajectory=previous, mesh=settings.fine_mesh, label="tracking_fine")))
        return plan
    if settings.reference_stage != "predictive":
        raise ValueError(f"reference_stage={settings.reference_stage!r}; expected "
                         "'predictive' or 'tracking'")
    if settings.seed:
        plan = [("seed", settings.coarse_mesh,
                 lambda _: seed_guess(settings, settings.seed, settings.coarse_mesh, log))]
    else:
        plan = [("tracking", settings.tracking_mesh,
                 lambda _: solve_tracking(target, settings, work_dir=work_dir, log=log))]
    return plan + predictive_stages(settings, lambda previous, label, mesh: solve_predictive(
        previous, settings, mesh=mesh, label=label, work_dir=work_dir, target=target, log=log))


def analyse_gait(trajectory, settings: Settings, weight: float,
                 excitations: dict | None = None) -> tuple[Motion, dict]:
    """Full cycle from right heel strike, and its gait figures, of a solved stage.

    An ``excitations`` dict is filled with the stage's muscle excitations over the
    same cycle ({muscle: (T,)}, mirrored and rotated as the coordinates are)."""
    motion = solution_motion(trajectory, COORDINATES)
    cycle = mirror_half_cycle(motion) if settings.cycle == "half" else motion
    grf = contact_forces(cycle)
    k = right_heel_strike_row(grf, weight)
    if excitations is not None:
        names, values = solution_excitations(trajectory)
        if settings.cycle == "half":
            values = np.vstack([values, values[1:, swapped_columns(names)]])
        excitations.update(zip(names, rotated_cycle(values, k).T))
    cycle, grf = start_at_right_heel_strike(cycle, grf, weight)
    return cycle, gait_figures(cycle, grf, weight)


def solution_excitations(trajectory) -> tuple[list, np.ndarray]:
    """Muscle names and excitations (T, n) of a Moco trajectory's controls (its
    muscles' controls are their excitations)."""
    names = [c.rsplit("/", 1)[-1] for c in trajectory.getControlNames()]
    return names, np.asarray(trajectory.getControlsTrajectoryMat()).reshape(-1, len(names))


def solve_document(settings: Settings, **fields) -> dict:
    """JSON fields every generated reference records about its solves."""
    osim = _osim()
    try:
        osim_rl = importlib.metadata.version("osim-rl")
    except importlib.metadata.PackageNotFoundError:
        osim_rl = None
    return dict(
        opensim_version=osim.GetVersion(),
        osim_rl_version=osim_rl,
        **fields,
        muscle_model=dict(type="DeGrooteFregly2016", rigid_tendons=True,
                          passive_fiber_forces=settings.passive_fiber_forces,
                          active_force_length_width_scale=settings.fiber_curve_width),
        solver=dict(threads=settings.threads, convergence_tolerance=settings.convergence_tolerance,
                    constraint_tolerance=settings.constraint_tolerance,
                    finite_difference=settings.finite_difference,
                    dynamics_mode=settings.dynamics_mode),
    )


def output_dirs(out_dir, work_dir, name: str) -> tuple[Path, Path]:
    """The output folder and the work folder (default ``/tmp/fastenv_<name>``), created."""
    out_dir, work_dir = Path(out_dir), Path(work_dir or f"/tmp/fastenv_{name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, work_dir


def stages_document(stages: dict) -> dict:
    """The stages of a solve for its JSON document, with their total solve time
    (resumed stages included)."""
    return dict(stages=stages, total_wall_time_s=round(
        sum(i.get("wall_time_s", 0.0) for i in stages.values()), 1))


def write_document(out_dir: Path, doc: dict) -> Path:
    """``<name>.json`` of a generated reference."""
    path = Path(out_dir) / f"{doc['name']}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def generate_gait(out_dir, *, settings: Settings, target: Target, description: str,
                  model: str, work_dir, resume: bool = False, write_npz: bool = True,
                  log=print, notes: str = "", source: str = "",
                  forces: ForceTarget | None = None) -> dict:
    """Tracking -> predictive (coarse) -> predictive (fine) for a gait cycle (or
    tracking -> tracking refined, see ``Settings.reference_stage``), then
    ``<name>_coordinates.sto``, ``<name>.json`` and ``<name>.npz``.

    Returns the JSON document.  With ``resume``, stage solutions already in
    ``work_dir`` are reused instead of re-solved.
    """
    name = settings.name
    out_dir, work_dir = output_dirs(out_dir, work_dir, name)
    solutions, stages = run_stages(gait_plan(settings, target, work_dir, log, forces),
                                   work_dir=work_dir, resume=resume, log=log)
    log(f"[figures] {'mirroring the half cycle and ' if settings.cycle == 'half' else ''}"
        "evaluating contact forces")
    weight = body_weight_n()
    final = list(solutions.values())[-1]
    excitations = {}
    cycle, figures = analyse_gait(final, settings, weight, excitations)
    tracked = settings.reference_stage == "tracking"
    tracking_figures = (analyse_gait(solutions["tracking"], settings, weight)[1]
                        if "tracking" in solutions and not tracked else None)
    sto = out_dir / f"{name}_coordinates.sto"
    write_coordinates_sto(sto, cycle, name)
    # the Moco solution the reference is (states, excitations): a warm start (--guess
    # of a tracking solve, --seed of a predictive one) for regenerating it under
    # changed settings
    final.write(str(out_dir / f"{name}_solution.sto"))
    duration = predictive_duration(target, settings.speed)
    if tracked:
        timing = dict(reference_stage="tracking", speed_m_s=round(target.speed, 4),
                      **{f"{settings.cycle}_cycle_s": round(float(target.time[-1]), 4)})
    else:
        timing = dict(prescribed_speed_m_s=settings.speed,
                      **{f"predictive_{settings.cycle}_cycle_s": (
                          list(settings.half_cycle_bounds) if settings.half_cycle_bounds
                          else round(duration, 4))})
    if tracks_forces(settings, forces):
        timing["grf_target"] = dict(file=Path(forces.source).name, **forces.info)
    doc = dict(
        name=name, description=description, **solve_document(
            settings, model=model,
            tracking_target=dict(file=Path(target.source).name, speed_m_s=round(target.speed, 4),
                                 belt_speed_added_m_s=round(target.belt_speed, 4),
                                 **rounded(dict(target.info))),
            **timing,
            mesh_intervals={label: info["mesh_intervals"] for label, info in stages.items()},
            objective_weights=settings.weights(),
            swing_windows=([] if tracked and not settings.tracking_clearance
                           else [list(w) for w in settings.swing_windows]),
            **({} if tracked or not settings.com_force_bounds else dict(
                com_force_bounds_bw=[list(b) for b in settings.com_force_bounds]))),
        **stages_document(stages),
        figures=dict(rounded(figures), kind="moco_tracking" if tracked else "moco_predictive"),
        tracking_solution_figures=rounded(tracking_figures) if tracking_figures else None,
        notes=notes,
    )
    write_document(out_dir, doc)
    log(f"[done] {sto}; speed {figures['speed_m_s']:.2f} m/s, stride "
        f"{figures['stride_length_m']:.2f} m, knee at heel strike "
        f"{figures['knee_flexion_at_heel_strike_deg']:.1f} deg, peak swing knee "
        f"{figures['peak_swing_knee_flexion_deg']:.1f} deg")
    if write_npz:
        write_reference_npz(out_dir, cycle, doc, log, model_path=env_model_path(settings),
                            cyclic=True, playback="loop",
                            excitations=excitations,
                            source=source or f"{COMMAND} {name} "
                                             f"(tracking target {Path(target.source).name})")
    return doc


@dataclass
class WalkingSettings(Settings):
    """walking2d: the measured walk at its measured speed, its joint angles and its
    measured vertical ground reaction forces tracked on the 2D model with the swing
    foot kept off the floor.

    Why tracking and not prediction: minimum-effort predictions from this walk
    drifted to a gait no person walks (ankle plantarflexing through mid-stance,
    stance knee never re-extending, no push-off hump).  Why the clearance
    constraint: without it the swing foot of the solution brushed the floor
    (0.06 BW) and one stance lost its trough and push-off hump.  Why the weights:
    the model's two-sphere foot differs from the subject's, so the stance ankle
    cannot follow the measurement exactly (correlation 0.74 at the common weight,
    0.885 at 4x, 0.913 at 6x with the pelvis tilt at 4x, which took the hips from 5.0
    to 4.6 deg RMS); kinematics alone then pushed off at 1.41 BW (the subject: 1.10),
    which the force plates at weight 0.002 bring to 1.29, at 5.5 deg RMS on the hips
    until they are weighted 2x (4.4 deg).  With the forces the model walks the
    subject's 0.97 m/s; on kinematics alone its longer legs made 1.08 m/s.

    Force tracking does not start from the target: from the kinematic solution,
    weights 0.1, 0.03 and 0.005 made IPOPT wander at primal infeasibility 10-20 for
    75-280 iterations, 0.01 stopped unconverged; 0.002 converged.  The committed
    solution was warm-started from a chain of solves (``walking2d.json`` says which).
    From the recording these defaults converge (97 + 200 iterations, 363 s) to a
    neighbouring solution (objective 0.7606 against 0.7593, 1.00 m/s) whose push-off
    hump is 1.31 BW, 0.01 past the check's bound; ``--guess
    envs/references/walking2d_solution.sto`` starts from the committed one.
    """

    reference_stage: str = "tracking"
    grf_tracking_weight: float = 0.002
    tracking_mesh: int = 25
    fine_mesh: int = 50
    coarse_only: bool = True
    tracking_clearance: bool = True
    tracking_state_weights: dict = field(default_factory=lambda: {
        "ankle_angle_r": 6.0, "ankle_angle_l": 6.0, "pelvis_tilt": 4.0,
        "hip_flexion_r": 2.0, "hip_flexion_l": 2.0})


def generate_walking2d(out_dir, *, motion=None, settings: Settings | None = None,
                       work_dir=None, resume: bool = False, write_npz: bool = True,
                       log=print, grf=None) -> dict:
    """The measured walk (``motion``, default :data:`DEFAULT_MOTION`) tracked on the
    model -> full cycle, written to ``out_dir``.

    With ``settings.grf_tracking_weight`` > 0 its force plates are tracked too
    (:data:`DEFAULT_GRF`, or ``grf`` for your own ``motion``, same clock); a motion
    of your own without them is tracked from its kinematics alone (said in the log
    and the JSON).  With ``settings.reference_stage == "predictive"`` the tracking
    solution seeds a predictive gait at ``settings.speed`` instead.
    Returns the JSON document written to ``walking2d.json``.
    """
    settings = settings or WalkingSettings()
    own_motion = motion is not None
    motion = motion_file(DEFAULT_MOTION, motion)
    log(f"[target] symmetrised half cycle from {motion.name}")
    target = half_cycle_target(motion)
    log(f"[target] speed {target.speed:.3f} m/s (belt {target.belt_speed:.3f} m/s added), "
        f"half cycle {target.time[-1]:.3f} s")
    forces = None
    if settings.grf_tracking_weight > 0 and (grf is not None or not own_motion):
        grf = motion_file(DEFAULT_GRF, grf)
        forces = half_cycle_forces(grf, motion, target, body_weight_n())
        peak = max(float(f[:, 1].max()) for f in forces.forces.values()) / body_weight_n()
        log(f"[target] ground reaction forces from {grf.name}: plates {forces.info['plates']}, "
            f"subject weight {forces.info['subject_weight_n']:.0f} N, peak {peak:.2f} BW")
    elif settings.grf_tracking_weight > 0:
        log("[target] no force plates given (--grf): tracking the kinematics only")
    elif grf is not None:
        log(f"[target] {Path(grf).name} not tracked: grf_tracking_weight is 0")
    tracked = settings.reference_stage == "tracking"
    return generate_gait(
        out_dir, settings=settings, target=target, work_dir=work_dir or "/tmp/fastenv_walking2d",
        resume=resume, write_npz=write_npz, log=log, forces=forces,
        description=("2D walking gait cycle of gait9dof18musc (osim-rl): a measured treadmill "
                     "walk at its own speed, joint angles "
                     + ("and ground reaction forces " if forces is not None else "")
                     + "tracked with OpenSim Moco, swing foot off the floor" if tracked else
                     "2D walking gait cycle of gait9dof18musc (osim-rl), predicted with "
                     "OpenSim Moco from a tracking solution of a measured walk"),
        model="osim/models/gait9dof18musc.osim (osim-rl); smooth sphere contacts, "
              "DeGroote-Fregly muscles, rigid tendons, back welded",
        notes=("left/right symmetrised half cycle of the measured cycle, mirrored into the "
               "full cycle" + ("; forces scaled from the subject's weight to the model's"
                               if forces is not None else "") if tracked
               else "tracking_solution_figures describe the first-stage guess (measured walk "
               "at its own speed, no swing-clearance constraint): its swing foot touches the "
               "floor, so its stance and heel-strike figures are not those of a clean gait"))


def write_reference_npz(out_dir: Path, cycle: Motion, doc: dict, log, *, model_path: str,
                        cyclic: bool, playback: str, source: str,
                        start_at_rest: bool = False, excitations: dict | None = None) -> Path:
    """The env-ready reference ``<name>.npz``, through fastenv.references.build_reference,
    on the env model the reference is for; with the ``excitations`` of the Moco solution
    whose states it is (the feed-forward of ``excitations="residual"``)."""
    from fastenv.references import build_reference

    ref = build_reference(model_path, cycle.time, list(cycle.names), cycle.values,
                          control_dt=0.01, cyclic=cyclic, playback=playback, name=doc["name"],
                          source=source, figures=doc["figures"], start_at_rest=start_at_rest,
                          excitations=excitations)
    path = ref.save(Path(out_dir) / f"{doc['name']}.npz")
    log(f"[npz] {path}")
    return path
