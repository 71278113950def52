"""Moco generators of the running, jumping and locked-knee 2D references.

They reuse the walking pipeline of :mod:`refgen.moco` (Moco-ready
model, tracking -> predictive stages, cycle assembly, gait figures, files) and
add what each motion needs:

``running2d``
    The mean stride of a measured treadmill run (its 13 strides, each symmetrised;
    speed estimated over the samples with a foot on the ground) is tracked with its
    heel paths at the measured speed exactly (``reference_stage="tracking"``, the
    committed reference; no force plates were recorded with it).  The swing foot
    stays off the floor until shortly before its strike and the stance foot through
    its last part, so each step has a flight phase.  ``reference_stage=
    "predictive"`` (the reference until 2026-12) predicts a 3.5 m/s minimum-effort
    half cycle from the tracking solution instead.
``lockedknee2d``
    A full, asymmetric, periodic gait cycle at 1.3 m/s of the
    ``muscle2d_lockedknee`` variant (left knee and ankle locked at 0, left
    gastrocnemius/soleus/tibialis anterior removed), the locked joints welded
    for Moco (:func:`refgen.moco.weld_locked_joints`).  The
    committed ``walking2d`` cycle is the tracking target (the knee-locked leg
    cannot follow its knee, so the tracking solution already has to vault);
    both feet keep clear of the floor in their swing, and the predictive stage
    flattens the peaks of the centre of mass's vertical acceleration (so of the
    total ground force) and has the locked leg push off (at least 1.03 body weights
    implied by the centre of mass late in its stance).
``jumping2d``
    A countermovement jump from quiet standing (at rest, in equilibrium) to the
    apex of a flight: a jump recorded with video-based motion capture is tracked
    (both legs averaged, the recorded lumbar flexion shared between pelvis tilt and
    hips since the model's back is welded, toes planted until take-off, cut 0.25 s
    after take-off); the tracking solution is the reference
    (``reference_stage="tracking"``).  ``reference_stage="predictive"`` (the
    reference until 2026-12) maximises the final pelvis height from it instead.  The
    env plays the reference up and back down (playback ``mirror``), so it ends at
    the apex.

Outputs follow :mod:`refgen.moco`: ``<name>_coordinates.sto``
(values and speeds of the coordinates of :data:`refgen.moco.COORDINATES`, the locked
knee and ankle of lockedknee2d at 0; the welded back's lumbar_extension is not there),
``<name>.json`` (figures, solve stages) and ``<name>.npz``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastenv.references import lowpass
from refgen import REFERENCES_DIR, moco, motion_file
from refgen.kinematics import com_kinematics
from refgen.moco import COORDINATES, FOOT_SPHERES, TRANSLATIONS, Settings
from refgen.motion import (
    Motion,
    Target,
    is_translation,
    read_coordinates_sto,
    rounded,
    write_coordinates_sto,
)

#: Public measured motions (in :func:`refgen.motions_dir`) that running2d and jumping2d track.
RUNNING_MOTION = "hamner_subject02_running_ik.mot"
JUMP_MOTION = "opencap_jump2_ik.mot"
#: The committed walking2d cycle that lockedknee2d tracks (read from the checkout).
WALKING_CYCLE = REFERENCES_DIR / "walking2d_coordinates.sto"


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------
@dataclass
class RunningSettings(Settings):
    """Knobs of running2d; the defaults produce the committed reference.

    The reference is the measured treadmill run tracked on the model at its measured
    speed (``reference_stage="tracking"``, ``track_speed``: tracking pelvis_tx alone
    let the run slow from 3.71 to 2.67 m/s, where the measured angles cost its muscles
    less).  The half cycle runs from right foot strike to left foot strike (``cycle``);
    the swing windows keep the left foot off the floor until shortly before its strike
    and the right foot off at the end (the flight).  The target is the mean of the
    recording's 13 strides, symmetrised (``strides``), tracked with weight 30.

    The target's calcaneus paths are tracked too (``foot_tracking_weight``, as the
    3D solves do).  Without them the knee was 7.6 deg RMS from the measured run
    (``python -m refgen check running2d``): the check starts both cycles at the
    kinematic heel strike (heel furthest ahead of the pelvis), a flat peak in
    running, and the solution's lay 2.2 frames before its foot strike; one frame of
    shift moves the knee's RMS by about 2 deg.  Tracking the heels keeps the heel
    strike where the measured one is: 3.3 / 4.1 / 5.0 deg RMS (hip, knee, ankle).
    The committed solve is warm-started from the previous reference's solution
    (``--guess``).  From the target's kinematics the same problem finds a lower
    objective (1.011 against 1.160) by leaning on the ankle's dorsiflexion limit force
    (9.4 deg past its onset, 74 % of the ankle's peak moment; active peak 3.2 BW), and
    bounding the ankle at the onset (20 deg) left that solve at objective 1.79 after
    500 iterations.  Tried before the feet were tracked (the mean stride, weight 30
    unless said): weight 100 (1.3 / 2.8 / 4.5 deg from the mean stride, but 5.6 / 8.3 /
    3.9 from the run: the heel-strike frame moved 4 frames); pelvis tilt weighted 5x
    (with or without the knees 3x): 6.1 / 9.5 / 4.1; knees 2x: 5.3 / 8.0 / 4.2;
    weight 100 without the swing windows: unchanged; a 20 N m reserve torque on every
    joint (weight 10): unused from the weight-30 solution, and from the target's
    kinematics an optimum that pushes off early (ankle 9.7 deg RMS, 4 deg into the
    ankle's limit).  Before the mean stride (the first stride only): the knees and
    ankles weighted 3x (ankle 6.0 -> 4.0 deg RMS from the measured run, knee 6.5 -> 7.2,
    hip 4.2 -> 6.0); the knees and ankles
    weighted 2x with every contact sphere's centre kept 1 cm above the floor
    (``min_centre_height_m``, to stop the toe sinking 73 mm) went to a different, worse
    optimum (hip 14.6 deg RMS, a 4.1 BW impact); the centres merely
    above the floor, from the target, gave a 2.5 BW impact and 9.7 deg RMS at the knee.

    ``reference_stage="predictive"`` (the reference until 2026-12) predicts a
    minimum-effort run at ``speed`` instead, seeded by the tracking solution; the
    predictive stages bound stance knee flexion (``stance_knee_windows``: without it
    the stance knee flexed 56 deg) and swung the right foot off the floor from 85 %
    of the half cycle.
    """

    name: str = "running2d"
    variant: str | None = "muscle2d"
    reference_stage: str = "tracking"
    # "half" (the committed reference): a symmetric half cycle (``strides``: of the mean
    # stride or the first).  "full": the recording's mean stride with left and right kept
    # apart (moco.mean_stride_target), as one full cycle.  Why "full" is there: the runner
    # is asymmetric (swing knees peak 5 deg apart on average, 12 in the first stride; a
    # symmetric curve is 3-5 deg RMS from either knee) and the first stride is 6.5 deg RMS
    # from the mean at the knee (the others 1.5-5.8).  Not committed: from the target's
    # kinematics, the 50-interval solve had not converged after 700 iterations (objective
    # 1.52, dual infeasibility 0.05-0.1), nor the 25-interval one after 1,000 (its 400th
    # iterate: hip 3.4, knee 5.6, ankle 8.8 deg RMS from the measured run, a 6.5 BW
    # impact). With the seam in flight (cycle_start=0.45) the 25-interval solve's 375th
    # iterate was no better (knee 6.2, ankle 9.7 deg RMS, a 7.5 BW impact, an ankle 4.6
    # deg past its limit onset); stopped at iteration 381.
    cycle: str = "half"
    # "half": which strides are symmetrised (moco.half_cycle_target): "mean" (every
    # complete stride of the recording, the subject's usual one) or "first" (the
    # reference until 2026-12; its knee is 6.7 deg RMS from the other strides).
    strides: str = "mean"
    # "full": where the solved cycle begins, as a fraction of the stride from right
    # foot strike (0.45: in the flight before left foot strike).
    cycle_start: float = 0.0
    track_speed: bool = True
    tracking_clearance: bool = True
    # 30, not the walking 10: with 10 the run strayed 4.8 deg RMS (knee) and 9.0 (ankle)
    # from the mean stride it tracks; with 30, 3.8 and 6.2, with 100, 2.8 and 4.5.
    tracking_weight: float = 30.0
    # the target's calcaneus paths tracked too (moco.Settings.foot_tracking_weight, as in
    # the 3D solves): the knee 7.6 deg RMS from the measured run without them; with 100:
    # 6.1, 300: 5.2, 1000: 4.1 (the committed weight), each warm-started from the
    # solution of the reference before
    foot_tracking_weight: float = 1000.0
    tracking_mesh: int = 25
    speed: float = 3.5                 # predictive only
    # Swing windows of the half cycle from right to left foot strike; a full cycle
    # uses them and their mirror images (moco.full_cycle_windows).
    swing_windows: tuple = (("l", 0.0, 0.9), ("r", 0.92, 0.98))
    # Right stance is the first ~80 % of the half cycle; without a limit the
    # stance knee flexed 56 deg (normal running: 30-50 deg).
    stance_knee_windows: tuple = (("r", 0.0, 0.8),)
    max_stance_knee_flexion_deg: float = 47.0
    tx_speed_bounds: tuple = (1.0, 6.0)
    # The committed run is the 25-interval tracking solve (converged).  Predictive:
    # the 25-interval solve stalled (dual infeasibility near 0.1 for 100+
    # iterations); its iterate seeded the 50-interval one, which converged.
    coarse_only: bool = True
    fine_mesh: int = 50
    guess_resampling: str = "hermite"
    bounds: dict = field(default_factory=lambda: {
        "knee_angle": (-140.0, 8.0), "hip_flexion": (-40.0, 80.0),
        "pelvis_ty": (0.7, 1.2), "ankle_angle": (-45.0, 30.0)})


def generate_running2d(out_dir, *, motion=None, settings: RunningSettings | None = None,
                       work_dir=None, resume: bool = False, write_npz: bool = True,
                       log=print) -> dict:
    """A minimum-effort run at ``settings.speed`` predicted from a tracking solution of a
    measured treadmill run (or, with ``reference_stage="tracking"``, that measured run
    tracked at its own speed) -> full cycle."""
    settings = settings or RunningSettings()
    motion = motion_file(RUNNING_MOTION, motion)
    if settings.cycle == "full":
        target = moco.mean_stride_target(motion, flight=True, start=settings.cycle_start)
        settings = dataclasses.replace(settings, swing_windows=moco.full_cycle_windows(
            settings.swing_windows, target.info["left_strike_fraction"], settings.cycle_start))
        log(f"[target] mean of {target.info['strides']} strides of {motion.name} "
            f"({target.info['first_stride_s']:.2f}-{target.info['last_stride_end_s']:.2f} s), "
            f"left foot strike at {target.info['left_strike_fraction']:.3f} of the stride")
    else:
        target = moco.half_cycle_target(motion, flight=True, strides=settings.strides)
        log(f"[target] symmetrised half cycle of the {settings.strides} stride of "
            f"{motion.name} ({target.info['strides']} strides)")
    log(f"[target] speed {target.speed:.3f} m/s (belt {target.belt_speed:.3f} m/s added), "
        f"{settings.cycle} cycle {target.time[-1]:.3f} s")
    return moco.generate_gait(
        out_dir, settings=settings, target=target, work_dir=work_dir or "/tmp/fastenv_running2d",
        resume=resume, write_npz=write_npz, log=log,
        description=("2D running gait cycle of gait9dof18musc (osim-rl): a measured treadmill "
                     "run at its own speed, joint angles tracked with OpenSim Moco"
                     if settings.reference_stage == "tracking" else
                     f"2D running gait cycle at {settings.speed} m/s of gait9dof18musc "
                     "(osim-rl), predicted with OpenSim Moco from a tracking solution of a "
                     "measured run"),
        model="fastenv.envs.variants 'muscle2d' (= osim/models/gait9dof18musc.osim of osim-rl); "
              "smooth sphere contacts, DeGroote-Fregly muscles, rigid tendons, back welded",
        notes="tracking_solution_figures (when a tracking stage ran) describe the first-stage "
              "guess (the measured run at its own speed, no clearance constraint)")


# --------------------------------------------------------------------------
# Locked knee
# --------------------------------------------------------------------------
@dataclass
class LockedKneeSettings(Settings):
    """Knobs of lockedknee2d; the defaults produce the committed reference.

    One full cycle (the gait is asymmetric) from right heel strike, so the
    meshes are twice the walking half-cycle meshes.  Swing windows follow the
    walking2d cycle (left swing 10-50 %, right swing 60-100 % of it); the
    locked leg can only clear the floor by vaulting over the right leg, so
    the tracking stage already has the clearance constraint.
    """

    name: str = "lockedknee2d"
    variant: str | None = "muscle2d_lockedknee"
    weld: tuple = ("knee_l", "ankle_l")
    cycle: str = "full"
    tracking_mesh: int = 50
    coarse_mesh: int = 50
    fine_mesh: int = 100
    # The committed cycle is the 50-interval solve (21 ms per interval, as
    # walking2d's coarse stage): refining it to 100 intervals from the
    # interpolated solution diverged (primal infeasibility 6 -> 90 in 50
    # iterations) on this machine.
    coarse_only: bool = True
    swing_windows: tuple = (("l", 0.15, 0.46), ("r", 0.65, 0.96))
    tracking_clearance: bool = True
    # Minimum effort alone landed both heels at 1.6-1.9 BW (people: 1.0-1.3); see
    # moco.Settings.com_acceleration_weight.
    com_acceleration_weight: float = 8e-4
    com_acceleration_exponent: int = 6
    # The locked (left) leg pushes off: at 89-93 % of the solved interval (which starts
    # 4.5 % of a cycle after right heel strike), where that leg alone is on the floor and its
    # late-stance peak was 0.99 BW, the ground carries at least 1.03 BW (a
    # centre-of-mass bound, moco.add_com_force_bounds); see docs/references.md.
    com_force_bounds: tuple = ((0.89, 0.93, 1.03, None),)


def cycle_target(path=WALKING_CYCLE) -> Target:
    """A full gait cycle written by :func:`refgen.motion.write_coordinates_sto` as a target."""
    cycle = read_coordinates_sto(path)
    duration = float(cycle.time[-1] - cycle.time[0])
    stride = float(cycle.column("pelvis_tx")[-1] - cycle.column("pelvis_tx")[0])
    return Target(cycle.time - cycle.time[0], cycle.names, cycle.values, speed=stride / duration,
                  source=str(path), info=dict(cycle_s=duration, stride_m=stride))


def cycle_forces(path=WALKING_CYCLE, model_path: str | None = None) -> moco.ForceTarget:
    """The vertical force on each foot along a full cycle written by
    :func:`refgen.motion.write_coordinates_sto` for a 2D model (``model_path``,
    default gait9dof18musc), on its contact model, as a force target (fore-aft 0:
    only the vertical is tracked)."""
    cycle = read_coordinates_sto(path)
    vertical = moco.contact_forces(cycle, model_path)
    zeros = np.zeros(len(cycle.time))
    weight = moco.body_weight_n(model_path)
    return moco.ForceTarget(
        cycle.time - cycle.time[0], {s: np.column_stack([zeros, vertical[s]]) for s in ("r", "l")},
        source=str(path), info=dict(forces="vertical, the 2D contact model along the cycle",
                                    peak_bw=round(max(float(v.max()) for v in vertical.values())
                                                  / weight, 4)))


def vaulting_target(target: Target, *, locked: tuple = ("knee_angle_l", "ankle_angle_l"),
                    swing: tuple = (0.15, 0.46), clearance: float = 0.005) -> Target:
    """The target with the locked joints at 0, made kinematically possible by vaulting.

    With a straight left leg the walking kinematics put the left foot into
    the floor: it is longer than the bent leg it replaces.  Frame by frame the
    pelvis is raised just enough for the left foot to sit as low as before
    (stance) or ``clearance`` above the floor in the ``swing`` part of the
    cycle, and the right ankle plantarflexes so that a right foot on the
    ground stays there (rising onto its toes: vaulting, which is how people
    clear a stiff leg in the sagittal plane).  Tracked from the start, this
    keeps the solver out of the crouched gaits that the plain walking angles
    lead it to (the stance knee bent 50-60 deg in a first trial).
    """
    time = target.time
    coords = {n: np.array(v, dtype=float) for n, v in target.coords.items()}
    _, before = moco.foot_kinematics(time, coords)
    for name in locked:
        coords[name] = np.zeros(len(time))
    _, after = moco.foot_kinematics(time, coords)
    lowest = {s: np.min([before[n] for n in FOOT_SPHERES[s]], axis=0) for s in FOOT_SPHERES}
    left_now = np.min([after[n] for n in FOOT_SPHERES["l"]], axis=0)
    u = (time - time[0]) / (time[-1] - time[0])
    wanted = np.where((u >= swing[0]) & (u <= swing[1]),
                      np.maximum(lowest["l"], clearance), lowest["l"])
    raise_by = np.maximum(0.0, wanted - left_now)
    coords["pelvis_ty"] = coords["pelvis_ty"] + raise_by
    # Right foot on the ground (within 1 cm of its lowest height): plantarflex
    # until its lowest sphere is back where it was (bisection; plantarflexion
    # lowers the toes relative to the raised ankle).
    grounded = lowest["r"] < lowest["r"].min() + 0.01
    ankle = coords["ankle_angle_r"]
    frames = np.flatnonzero(grounded & (raise_by > 1e-4))
    if len(frames):
        lo, hi = ankle[frames] - math.radians(45.0), ankle[frames].copy()
        subset = {n: v[frames].copy() for n, v in coords.items()}
        for _ in range(30):  # all frames' bisections in step
            mid = 0.5 * (lo + hi)
            subset["ankle_angle_r"] = mid
            _, b = moco.foot_kinematics(time[frames], subset)
            above = np.min([b[n] for n in FOOT_SPHERES["r"]], axis=0) > lowest["r"][frames]
            hi = np.where(above, mid, hi)   # still above the floor: plantarflex more
            lo = np.where(above, lo, mid)
        ankle[frames] = 0.5 * (lo + hi)
    info = dict(target.info, max_pelvis_raise_m=float(raise_by.max()),
                min_right_ankle_deg=float(np.degrees(ankle.min())))
    return Target.of(time, coords, speed=target.speed, belt_speed=target.belt_speed,
                     source=target.source, info=info)


def generate_lockedknee2d(out_dir, *, motion=None,
                          settings: LockedKneeSettings | None = None, work_dir=None,
                          resume: bool = False, write_npz: bool = True, log=print) -> dict:
    """Tracking of the walking2d cycle -> predictive 1.3 m/s full cycle, locked left knee."""
    settings = settings or LockedKneeSettings()
    path = Path(motion) if motion else WALKING_CYCLE
    if not path.is_file():
        raise FileNotFoundError(f"lockedknee2d tracks the walking2d cycle {path}: generate "
                                "walking2d first, or pass --motion CYCLE.sto")
    target = vaulting_target(cycle_target(path), swing=settings.swing_windows[0][1:])
    log(f"[target] full cycle {target.time[-1]:.3f} s at {target.speed:.3f} m/s from "
        f"{path.name}; pelvis raised up to {1000 * target.info['max_pelvis_raise_m']:.0f} mm, "
        f"right ankle down to {target.info['min_right_ankle_deg']:.0f} deg (vaulting)")
    return moco.generate_gait(
        out_dir, settings=settings, target=target,
        work_dir=work_dir or "/tmp/fastenv_lockedknee2d", resume=resume, write_npz=write_npz,
        log=log,
        description=f"2D gait cycle at {settings.speed} m/s with the left knee and ankle locked "
                    "at 0 (fastenv muscle2d_lockedknee), predicted with OpenSim Moco from a "
                    "tracking solution of the walking2d cycle",
        model="fastenv.envs.variants 'muscle2d_lockedknee' (gait9dof18musc of osim-rl, left "
              "knee+ankle locked at 0, gastroc_l/soleus_l/tib_ant_l removed); knee_l and ankle_l "
              "welded at 0 for Moco, smooth sphere contacts, DeGroote-Fregly muscles, rigid "
              "tendons, back welded",
        notes="asymmetric full cycle (not mirrored); knee_angle_l and ankle_angle_l are 0 "
              "throughout (locked); *_rl figures are [right, left]")


# --------------------------------------------------------------------------
# Jumping
# --------------------------------------------------------------------------
@dataclass
class JumpSettings(Settings):
    """Knobs of jumping2d; the defaults produce the committed reference.

    The reference is the recorded countermovement jump tracked on the model
    (``reference_stage="tracking"``): its joint angles from quiet standing to 0.25 s
    after take-off, starting in equilibrium, ending at the apex of a flight, toes
    planted until take-off, heels down until the bottom of the countermovement.  The
    weights: at 1 on every angle the solver gave up 14 deg of hip flexion at the bottom
    of the squat (the trunk leans less; 6.6 deg RMS); 3 on every angle keeps each
    within 4.5 deg RMS (both ankles' recorded range goes 7-8 deg past this model's
    limit-force onsets, where the solution stops).  With the heels held down, knees at
    2 (the weights before) ended 5.02 deg RMS from the recording.  The predictive stage
    (``reference_stage="predictive"``, the reference until 2026-12) maximises the
    height instead:
    ``height_weight`` rewards the final centre-of-mass height (m; the goal's
    weight is its negative); a small squared-excitation effort keeps
    excitations smooth.  The motion starts upright at rest (``start_bounds``,
    degrees) with the feet on the floor (``start_sink``) and its duration is
    free in ``duration_bounds``.  ``torso_share`` is the part of the recorded lumbar
    flexion given to the pelvis tilt (the rest to the hips, keeping the
    thighs' orientation): the model's back is welded.
    """

    name: str = "jumping2d"
    variant: str | None = "muscle2d"
    cycle: str = "none"
    tracking_mesh: int = 50
    coarse_mesh: int = 50
    fine_mesh: int = 100
    # The committed jump is the 50-interval tracking solve (converged).
    coarse_only: bool = True
    height_weight: float = 10.0
    # Body whose final height is maximised: "pelvis", or "com" for the whole-body
    # centre of mass.  The centre of mass rewards tucking the legs in flight (a
    # higher apex without a faster take-off): a first solve flexed one knee 64 deg
    # at the apex and took off with the knees 25 deg flexed.
    height_body: str = "pelvis"
    # > 0: also track the recorded jump's joint angles (both legs averaged, so
    # the pull is symmetric) with this weight, the duration fixed at the guess's.
    predictive_tracking_weight: float = 0.0
    # Average the legs of the final solution (see :func:`symmetrise_legs`).
    symmetric_legs: bool = True
    effort_weight: float = 0.1
    effort_exponent: int = 2
    duration_bounds: tuple = (0.5, 2.0)
    tx_speed_bounds: tuple = (-2.0, 2.0)
    torso_share: float = 0.5
    lowpass_hz: float = 6.0
    # Which solution is the reference: "predictive" (the maximum-height jump seeded
    # by the tracking solution) or "tracking" (the recorded jump itself, made
    # dynamically consistent: its duration, its angles).
    reference_stage: str = "tracking"
    # Relative tracking weights (the planted pelvis_tx is trusted more than the
    # recorded height; see the class docstring for the angles').
    tracking_state_weights: dict = field(default_factory=lambda: {
        "pelvis_tx": 2.0, "pelvis_tilt": 3.0, "hip_flexion_r": 3.0, "hip_flexion_l": 3.0,
        "knee_angle_r": 3.0, "knee_angle_l": 3.0, "ankle_angle_r": 3.0, "ankle_angle_l": 3.0})
    # Weight (relative to the joint angles) of the pelvis translations in the
    # tracking stage: the recording's pelvis rises more than this model can jump,
    # so they guide the countermovement lightly.
    translation_weight: float = 0.2
    # The recorded feet drift before take-off (video capture); take the pelvis's
    # forward motion from planted toes instead (:func:`planted_pelvis_tx`).
    planted_feet: bool = True
    # reference_stage "tracking": the start pose's bounds are the recording's first
    # frame +- this (degrees), in place of ``start_bounds``
    start_tolerance_deg: float = 5.0
    # reference_stage "tracking": the recording is cut this long after its take-off
    # (None: at its own apex) and the solution must be at the apex of a flight there
    # (:func:`refgen.moco.add_jump_ends`).  The recording's 0.33 s from take-off to apex (a
    # 0.53 m flight rise, video capture) is beyond this model: its maximum-height
    # jump flies 0.29 s to the apex; 0.25 s is a 0.31 m rise, a common
    # countermovement jump.
    flight_to_apex_s: float | None = 0.25
    start_acceleration: float = 0.2      # m/s^2: quiet standing at the start
    apex_clearance_m: float = 0.02       # every contact sphere this high at the apex
    start_sink: tuple = (0.002, 0.05)
    # reference_stage "tracking": the heel spheres stay sunk at least this far (m) into
    # the floor from quiet standing to the bottom of the recorded countermovement (its
    # lowest pelvis), as people's heels stay down until the push-off; None: free (the
    # heels then left the floor 0.2 s in and the model squatted on its forefoot)
    heels_down_sink: float | None = 0.002
    bounds: dict = field(default_factory=lambda: {
        "pelvis_tilt": (-60.0, 30.0), "pelvis_tx": (-0.5, 0.5), "pelvis_ty": (0.5, 1.7),
        "hip_flexion": (-30.0, 120.0), "knee_angle": (-130.0, 8.0),
        "ankle_angle": (-45.0, 30.0)})
    start_bounds: dict = field(default_factory=lambda: {
        "pelvis_tilt": (-10.0, 10.0), "hip_flexion": (-5.0, 15.0),
        "knee_angle": (-10.0, 0.0), "ankle_angle": (-10.0, 10.0)})

    def weights(self) -> dict:
        return dict(tracking=self.tracking_weight, tracking_effort=self.tracking_effort_weight,
                    **{f"final_{self.height_body}_height": self.height_weight},
                    predictive_tracking=self.predictive_tracking_weight,
                    effort=self.effort_weight, effort_exponent=self.effort_exponent,
                    tracking_translations=self.translation_weight,
                    tracking_states=dict(self.tracking_state_weights))


def jump_target(path, *, settings: JumpSettings | None = None, n: int = 101,
                model_path: str | None = None) -> Target:
    """The first complete jump of a motion, from quiet standing to its apex.

    The apex is the highest pelvis position; the countermovement bottom is
    the lowest one in the second before it; the start is the last moment
    before that bottom when the pelvis is still at its standing height (its
    median over 1.0-0.5 s before the bottom) and the hips are within 5 deg
    of their standing flexion (the trunk leans first).  Kinematics are low-pass
    filtered (video motion capture is noisy), both legs get their mean, the
    pelvis starts at x = 0 and its height is set so the standing feet sink
    as much as in the model's stance.  Knee flexion is positive in the
    recording's model (LaiUhlrich) and negated here.
    """
    settings = settings or JumpSettings()
    recorded = moco.read_gait_motion(path, knee_flexion_positive=True,
                                     extra=("lumbar_extension",))
    t = recorded.time
    dt = float(np.median(np.diff(t)))
    q = {k: lowpass(v, dt, settings.lowpass_hz) for k, v in recorded.as_dict().items()}
    ty = q["pelvis_ty"]
    apex = int(np.argmax(ty))
    lo = max(0, apex - int(round(1.0 / dt)))
    bottom = lo + int(np.argmin(ty[lo:apex]))
    window = slice(max(0, bottom - int(round(1.0 / dt))), max(1, bottom - int(round(0.5 / dt))))
    lumbar = q.get("lumbar_extension", np.zeros_like(ty))
    # People lean forward before their pelvis drops: standing also means hips
    # (with the trunk's share) near their standing flexion.
    hips = 0.5 * (q["hip_flexion_r"] + q["hip_flexion_l"]) - settings.torso_share * lumbar
    standing = float(np.median(ty[window]))
    upright = float(np.median(hips[window])) + math.radians(5.0)
    still = np.flatnonzero((ty[:bottom] >= standing - 0.005) & (hips[:bottom] <= upright))
    if len(still) == 0:
        raise ValueError(f"{path}: no standing phase before the jump")
    start = int(still[-1])
    s = np.linspace(t[start], t[apex], n)
    out = {}
    for name in COORDINATES:
        side = name[-2:]
        if name == "pelvis_tilt":
            values = q[name] + settings.torso_share * lumbar
        elif name.startswith("hip_flexion"):
            values = 0.5 * (q["hip_flexion_r"] + q["hip_flexion_l"]) - settings.torso_share * lumbar
        elif side in ("_r", "_l") and name not in TRANSLATIONS:
            base = name[:-2]
            values = 0.5 * (q[base + "_r"] + q[base + "_l"])
        else:
            values = q[name]
        out[name] = np.interp(s, t, values)
    out["pelvis_tx"] = out["pelvis_tx"] - out["pelvis_tx"][0]
    info = {}
    if settings.planted_feet:
        out["pelvis_tx"], info = planted_pelvis_tx(out, model_path)
    _, bottom_heights = moco.foot_kinematics(s[:1], {k: v[:1] for k, v in out.items()}, model_path)
    shift = -moco.FOOT_PENETRATION_M - float(min(h[0] for h in bottom_heights.values()))
    out["pelvis_ty"] = out["pelvis_ty"] + shift
    return Target.of(s - s[0], out, source=str(path),
                     info=dict(start_s=float(t[start]), countermovement_bottom_s=float(t[bottom]),
                               apex_s=float(t[apex]),
                               recorded_pelvis_rise_m=float(ty[apex] - standing),
                               pelvis_ty_shift_m=shift, **info))


def planted_pelvis_tx(coords: dict, model_path: str | None = None,
                      lift_m: float = 0.02) -> tuple[np.ndarray, dict]:
    """Forward pelvis position of a jump whose toes do not slide before take-off.

    Video motion capture lets the standing feet drift (here up to 5 cm, legs
    averaged), which a tracking solve turns into feet sliding on the floor.  Up to
    take-off (the toes' lowest point ``lift_m`` above its height at the start) the
    pelvis moves by minus the toes' recorded drift, so the toes stay where they stood;
    after it the recorded pelvis motion goes on from there.  Returns the new
    ``pelvis_tx`` and what was removed.
    """
    centre_x, bottom = moco.foot_kinematics(np.arange(len(coords["pelvis_tx"])), coords, model_path)
    toes = [n for n in centre_x if n.endswith("_toe")]
    toe_x = np.mean([centre_x[n] for n in toes], axis=0)
    toe_y = np.min([bottom[n] for n in toes], axis=0)
    lifted = np.flatnonzero(toe_y > toe_y[0] + lift_m)
    takeoff = int(lifted[0]) if len(lifted) else len(toe_x)
    drift = toe_x - toe_x[0]
    drift[takeoff:] = drift[takeoff - 1]
    return coords["pelvis_tx"] - drift, dict(
        planted_until_frame=takeoff, removed_toe_drift_m=float(np.abs(drift).max()))


def _jump_problem(osim, problem, model, settings: JumpSettings, *, final_time):
    """Bounds of a jump from rest: zero initial speeds, upright initial pose,
    both feet flat on the floor (:func:`refgen.moco.add_grounded_start`)."""
    problem.setTimeBounds(0, final_time)
    moco.add_grounded_start(osim, problem, model, _SPHERES, settings.start_sink)
    # a tracked jump stays inside its limit forces' onsets (the recording goes 8 deg past
    # the ankle's in the squat and 7 deg past it in flight)
    onsets = moco.limit_onsets(model) if settings.reference_stage == "tracking" else {}
    for name in moco.model_coordinates(model):
        path = moco.coordinate_path(model, name)
        bounds = moco._bounds(name, settings.bounds)
        if name in onsets:
            bounds = [max(bounds[0], onsets[name][0]), min(bounds[1], onsets[name][1])]
        key = name if name in settings.start_bounds else name[:-2]
        if name == "pelvis_tx":
            start = 0.0
        elif key in settings.start_bounds:
            start = [math.radians(x) for x in settings.start_bounds[key]]
        else:
            start = []
        problem.setStateInfo(path + "/value", bounds, start)
        speed = list(settings.tx_speed_bounds) if name == "pelvis_tx" else [-30.0, 30.0]
        problem.setStateInfo(path + "/speed", speed, 0.0)


#: the 2D feet's contact spheres
_SPHERES = tuple(n for spheres in FOOT_SPHERES.values() for n in spheres)


def solve_jump_tracking(target: Target, settings: JumpSettings, *, work_dir: Path, log=print,
                        max_iterations: int | None = None):
    """Track the recorded jump from rest: a dynamically consistent first jump.

    The recording's pelvis rises far more than this model can jump (video
    capture, a different body), so the pelvis translations are tracked
    lightly; the joint angles shape the countermovement and push-off.
    """
    osim = moco._osim()
    study, problem, model = moco.new_study(settings, "tracking")
    duration = float(target.time[-1])
    _jump_problem(osim, problem, model, settings, final_time=duration)
    if settings.reference_stage == "tracking":
        moco.add_jump_ends(osim, problem, model, _SPHERES,
                           start_acceleration=settings.start_acceleration,
                           apex_clearance=settings.apex_clearance_m)
        if settings.heels_down_sink is not None:
            bottom = float(target.time[np.argmin(target.coords["pelvis_ty"])])
            moco.add_grounded_window(osim, problem, model,
                                     [heel for heel, _ in FOOT_SPHERES.values()], bottom, duration,
                                     settings.heels_down_sink)
            log(f"[tracking] heels on the floor until the countermovement's bottom, "
                f"{bottom:.3f} s")
    problem.addGoal(moco.tracking_goal(
        osim, model, "tracking", settings.tracking_weight, target.time, target.coords,
        [(name, settings.translation_weight) for name in TRANSLATIONS]
        + list(settings.tracking_state_weights.items())))
    problem.addGoal(osim.MocoControlGoal("effort", settings.tracking_effort_weight))
    solver = moco.configure_solver(study, settings, settings.tracking_mesh, max_iterations)
    if settings.guess is None:
        solver.setGuess(moco.kinematic_guess(osim, solver, model, target.time, target.coords))
    else:
        solver.setGuess(moco.refined_guess(osim, solver, osim.MocoTrajectory(str(settings.guess))))
    log(f"[tracking] {settings.tracking_mesh} mesh intervals, {duration:.3f} s from rest to apex"
        + (f", from {Path(settings.guess).name}" if settings.guess else ""))
    solution, info = moco.solve_stage(study, "tracking", settings.tracking_mesh, work_dir, log)
    if settings.guess is not None:
        info["initial_guess"] = Path(settings.guess).name
    return solution, info


def solve_jump_predictive(guess_trajectory, settings: JumpSettings, *, mesh: int, label: str,
                          work_dir: Path, log=print, max_iterations: int | None = None,
                          target: Target | None = None):
    """Maximise the centre of mass height at the final time, which is the apex.

    The final vertical centre-of-mass velocity is constrained to 0, so the
    solution ends at the top of the flight; the start is at rest and upright.
    """
    osim = moco._osim()
    study, problem, model = moco.new_study(settings, label)
    final_time = list(settings.duration_bounds)
    if settings.predictive_tracking_weight > 0:
        if target is None:
            raise ValueError("predictive_tracking_weight > 0 needs the recorded target")
        final_time = float(np.asarray(guess_trajectory.getTimeMat()).ravel()[-1])
        problem.addGoal(moco.tracking_goal(
            osim, model, "kinematics", settings.predictive_tracking_weight,
            target.time * final_time / target.time[-1], target.coords,
            [(name, 0.0) for name in TRANSLATIONS]))
    _jump_problem(osim, problem, model, settings, final_time=final_time)
    height = osim.MocoFinalOutputGoal(f"{settings.height_body}_height", -settings.height_weight)
    height.setOutputPath("/|com_position" if settings.height_body == "com"
                         else f"/bodyset/{settings.height_body}|position")
    height.setOutputIndex(1)
    problem.addGoal(height)
    problem.addGoal(moco.output_constraint(osim, osim.MocoFinalOutputGoal, "apex",
                                           "/|com_velocity", 1, 0.0, 0.0))
    effort = osim.MocoControlGoal("effort", settings.effort_weight)
    effort.setExponent(settings.effort_exponent)
    problem.addGoal(effort)
    solver = moco.configure_solver(study, settings, mesh, max_iterations)
    guess = guess_trajectory.clone()
    guess.resampleWithNumTimes(2 * int(mesh) + 1)
    solver.setGuess(guess)
    log(f"[{label}] {mesh} mesh intervals, duration "
        + (f"{final_time:.3f} s" if isinstance(final_time, float)
           else f"free in {final_time} s") + f"; maximising the {settings.height_body} height")
    return moco.solve_stage(study, label, mesh, work_dir, log)


def symmetrise_legs(motion: Motion) -> tuple[Motion, float]:
    """Both legs get the mean of the left and right joint angles (and speeds).

    A vertical jump is symmetric; an unconverged solve can leave the legs
    apart early in the countermovement, which would start the env standing on
    one foot.  Returns the motion and the largest change of an angle (deg).
    """
    values, speeds = motion.values.copy(), motion.speeds.copy()
    change = 0.0
    for base in ("hip_flexion", "knee_angle", "ankle_angle"):
        r, l = motion.names.index(base + "_r"), motion.names.index(base + "_l")
        for a in (values, speeds):
            mean = 0.5 * (a[:, r] + a[:, l])
            if a is values:
                change = max(change, float(np.degrees(np.abs(a[:, r] - mean).max())))
            a[:, r], a[:, l] = mean, mean
    return Motion(motion.time, motion.names, values, speeds), change


def jump_figures(motion: Motion, grf: dict, body_weight: float, com: tuple) -> dict:
    """Figures of a jump from rest to apex; knee flexion positive, degrees.

    Take-off is the first sample after which neither foot carries more than
    20 N.  Jump height is the rise of the centre of mass from standing to
    the apex; flight height its rise from take-off to the apex.
    """
    pos, vel = com
    fy = sum(grf.values())
    loaded = np.flatnonzero(fy > moco.CONTACT_THRESHOLD_N)
    takeoff = int(loaded[-1]) + 1 if len(loaded) else 0
    t = motion.time
    flexion = {s: -np.degrees(motion.column(f"knee_angle_{s}")) for s in FOOT_SPHERES}
    sides = np.array([[motion.column(f"{c}_r"), motion.column(f"{c}_l")]
                      for c in ("hip_flexion", "knee_angle", "ankle_angle")])
    k = min(takeoff, len(t) - 1)
    _, heights = moco.foot_kinematics(t[-1:], {n: motion.values[-1:, j]
                                               for j, n in enumerate(motion.names)})
    return dict(
        duration_s=float(t[-1] - t[0]),
        push_off_duration_s=float(t[k] - t[0]),
        flight_duration_s=float(t[-1] - t[k]),
        jump_height_m=float(pos[-1, 1] - pos[0, 1]),
        flight_height_m=float(pos[-1, 1] - pos[k, 1]),
        takeoff_vertical_velocity_m_s=float(vel[k, 1]),
        apex_vertical_velocity_m_s=float(vel[-1, 1]),
        standing_com_height_m=float(pos[0, 1]),
        countermovement_depth_m=float(pos[0, 1] - pos[:k + 1, 1].min()),
        horizontal_com_drift_m=float(pos[-1, 0] - pos[0, 0]),
        knee_flexion_at_takeoff_deg=float(max(flexion[s][k] for s in FOOT_SPHERES)),
        peak_knee_flexion_deg=float(max(f.max() for f in flexion.values())),
        knee_flexion_at_start_deg=float(max(flexion[s][0] for s in FOOT_SPHERES)),
        hip_flexion_at_takeoff_deg=float(np.degrees(motion.column("hip_flexion_r")[k])),
        ankle_angle_at_takeoff_deg=float(np.degrees(motion.column("ankle_angle_r")[k])),
        peak_vertical_grf_bw=float(fy.max() / body_weight),
        foot_clearance_at_apex_m=float(min(h[0] for h in heights.values())),
        max_left_right_difference_deg=float(np.degrees(np.abs(sides[:, 0] - sides[:, 1]).max())),
        start_speed_max=float(np.abs(motion.speeds[0]).max()),
        start_vertical_grf_bw=float(fy[0] / body_weight),
    )


def generate_jumping2d(out_dir, *, motion=None, settings: JumpSettings | None = None,
                       work_dir=None, resume: bool = False, write_npz: bool = True,
                       log=print) -> dict:
    """A recorded countermovement jump tracked from quiet standing to the apex of a
    flight (``settings.reference_stage="predictive"``: then a maximum-height jump
    predicted from it)."""
    settings = settings or JumpSettings()
    motion = motion_file(JUMP_MOTION, motion)
    out_dir, work_dir = moco.output_dirs(out_dir, work_dir, settings.name)
    target = jump_target(motion, settings=settings)
    log(f"[target] jump from rest to apex in {motion.name}: {target.time[-1]:.3f} s from "
        f"{target.info['start_s']:.3f} s")
    if settings.reference_stage not in ("tracking", "predictive"):
        raise ValueError(f"reference_stage={settings.reference_stage!r}; expected "
                         "'predictive' or 'tracking'")
    tracked = settings.reference_stage == "tracking"
    if tracked and settings.flight_to_apex_s is not None:
        takeoff = float(target.time[target.info["planted_until_frame"]])
        keep = target.time <= takeoff + settings.flight_to_apex_s + 1e-9
        target = Target.of(target.time[keep], {k: v[keep] for k, v in target.coords.items()},
                           source=target.source,
                           info=dict(target.info, cut_at_s=float(target.time[keep][-1])))
        log(f"[target] cut {settings.flight_to_apex_s:.2f} s after the recorded take-off "
            f"({takeoff:.3f} s): {target.time[-1]:.3f} s")
    if tracked:
        # the recording's own start pose (within start_tolerance_deg), not a generic
        # upright one: the tracked jump starts where the person stood
        tol = settings.start_tolerance_deg
        settings = dataclasses.replace(settings, start_bounds={
            key: (round(math.degrees(target.coords[name][0]) - tol, 2),
                  round(math.degrees(target.coords[name][0]) + tol, 2))
            for key, name in (("pelvis_tilt", "pelvis_tilt"), ("hip_flexion", "hip_flexion_r"),
                              ("knee_angle", "knee_angle_r"), ("ankle_angle", "ankle_angle_r"))})
    plan = [("tracking", settings.tracking_mesh,
             lambda _: solve_jump_tracking(target, settings, work_dir=work_dir, log=log))]
    if not tracked:
        plan += moco.predictive_stages(
            settings, lambda previous, label, mesh: solve_jump_predictive(
                previous, settings, mesh=mesh, label=label, work_dir=work_dir, log=log,
                target=target))
    solutions, stages = moco.run_stages(plan, work_dir=work_dir, resume=resume, log=log)
    weight = moco.body_weight_n()

    def analyse(jump):
        grf = moco.contact_forces(jump)
        return jump_figures(jump, grf, weight, com_kinematics(jump, moco.model_file()))

    jump = moco.solution_motion(list(solutions.values())[-1], COORDINATES)
    change = 0.0
    if settings.symmetric_legs:
        jump, change = symmetrise_legs(jump)
    figures = dict(analyse(jump), kind="moco_tracking" if tracked else "moco_predictive")
    if settings.symmetric_legs:
        figures["legs_symmetrised_max_change_deg"] = change
    tracking_figures = analyse(moco.solution_motion(solutions["tracking"], COORDINATES))
    name = settings.name
    sto = write_coordinates_sto(out_dir / f"{name}_coordinates.sto", jump, name)
    if tracked:   # the Moco solution itself, a warm start (--guess) for regenerating it
        solutions["tracking"].write(str(out_dir / f"{name}_solution.sto"))
    doc = dict(
        name=name,
        description=("2D countermovement jump of gait9dof18musc (osim-rl) from quiet standing "
                     "to the apex of the flight: a recorded jump's joint angles tracked with "
                     "OpenSim Moco" if tracked else
                     "2D maximum-height vertical jump of gait9dof18musc (osim-rl) from quiet "
                     "standing to the apex of the flight, predicted with OpenSim Moco from a "
                     "tracking solution of a recorded countermovement jump"),
        reference_stage=settings.reference_stage,
        **moco.solve_document(
            settings,
            model="fastenv.envs.variants 'muscle2d' (= osim/models/gait9dof18musc.osim of "
                  "osim-rl); smooth sphere contacts, DeGroote-Fregly muscles, rigid tendons, "
                  "back welded",
            tracking_target=dict(file=motion.name, torso_share=settings.torso_share,
                                 lowpass_hz=settings.lowpass_hz,
                                 **{k: round(v, 4) for k, v in target.info.items()}),
            duration_bounds_s=list(settings.duration_bounds),
            start_bounds_deg={k: list(v) for k, v in settings.start_bounds.items()},
            mesh_intervals={label: info["mesh_intervals"] for label, info in stages.items()},
            objective_weights=settings.weights()),
        **moco.stages_document(stages),
        figures=rounded(figures),
        tracking_solution_figures=rounded(tracking_figures),
        notes="from rest to the apex of the flight (playback 'mirror' replays it back down); "
              "jump_height_m is the centre-of-mass rise from standing to the apex"
              + (f"; the legs of the solution are averaged (symmetric jump; largest angle "
                 f"change {change:.1f} deg, early in the countermovement)"
                 if settings.symmetric_legs else ""),
    )
    moco.write_document(out_dir, doc)
    log(f"[done] {sto}; jump height {figures['jump_height_m']:.3f} m (flight "
        f"{figures['flight_height_m']:.3f} m), knee at take-off "
        f"{figures['knee_flexion_at_takeoff_deg']:.1f} deg")
    if write_npz:
        # the excitations of the solution the jump is, up to the apex (those frames are
        # played back down too: a feed-forward the reflexes and a policy correct there)
        moco.write_reference_npz(out_dir, jump, doc, log,
                                 model_path=moco.env_model_path(settings), cyclic=False,
                                 playback="mirror", start_at_rest=True,
                                 excitations=jump_solution_excitations(
                                     list(solutions.values())[-1], settings.symmetric_legs),
                                 source=f"{moco.COMMAND} {name} "
                                        f"(tracking target {motion.name})")
    return doc


def jump_solution_excitations(solution, symmetric: bool) -> dict:
    """{muscle: excitation on the solution's samples} of a jump's Moco solution; with
    ``symmetric`` each muscle pair gets the mean of its two sides, as
    :func:`symmetrise_legs` gives the legs' angles."""
    names, values = moco.solution_excitations(solution)
    if symmetric:
        for n in names:
            if n.endswith("_r") and n[:-2] + "_l" in names:
                r, l = names.index(n), names.index(n[:-2] + "_l")
                values[:, r] = values[:, l] = 0.5 * (values[:, r] + values[:, l])
    return {n: values[:, j] for j, n in enumerate(names)}


def jump_excitations(ref, solution, doc: dict) -> tuple:
    """(muscle names, excitations on ``ref``'s frames, largest angle difference in deg)
    of the shipped jump ``ref`` (playback 'mirror'), from the tracking solution it is
    made of: the reference is built again from that solution, as
    :func:`generate_jumping2d` builds it (the legs averaged, a spline from rest at the
    control step), and its angles must equal the shipped ones; each muscle pair's
    excitations are averaged over the two sides, as the legs' angles are. The frames
    cover the jump up to the apex; played back down, a frame's excitations are the
    same as on the way up (:meth:`fastenv.references.Reference.index`)."""
    from fastenv.references import build_reference

    if doc.get("reference_stage") != "tracking":
        raise ValueError(f"reference {ref.name!r}: its solution is the "
                         f"{doc.get('reference_stage')!r} stage's, not the tracking solve "
                         "the shipped solution file holds")
    symmetric = "legs_symmetrised_max_change_deg" in doc.get("figures", {})
    jump = moco.solution_motion(solution, COORDINATES)
    if symmetric:
        jump, _ = symmetrise_legs(jump)
    # the excitations are on the solution's samples, as jump.time (which starts at 0)
    built = build_reference(moco.env_model_path(JumpSettings()), jump.time, list(jump.names),
                            jump.values, control_dt=ref.control_dt, cyclic=False,
                            playback="mirror", start_at_rest=True, name=ref.name,
                            excitations=jump_solution_excitations(solution, symmetric))
    if built.q.shape != ref.q.shape:
        raise RuntimeError(f"reference {ref.name!r}: {ref.q.shape[0]} frames, its solution "
                           f"gives {built.q.shape[0]}; not the motion of that solution")
    rotations = [k for k, c in enumerate(ref.coordinate_names) if not is_translation(c)]
    worst = float(np.degrees(np.abs(built.q[:, rotations] - ref.q[:, rotations]).max()))
    return list(built.muscle_names), built.excitation, worst


#: The 2D references that are gait cycles of :func:`refgen.moco.generate_gait` (their
#: shipped ``<name>_solution.sto`` is the final stage, tracked or predicted), by the
#: settings that made them: ``python -m refgen excitations`` rebuilds their cycles.
GAIT_CYCLE_SETTINGS = {"walking2d": moco.WalkingSettings, "running2d": RunningSettings,
                       "lockedknee2d": LockedKneeSettings}
