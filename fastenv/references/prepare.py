"""Reference preparation: a reference put on an env's model.

A reference (a shipped name, a saved ``.npz``, a user's ``.mot``/``.sto`` file, or a
:class:`Reference`) is made ready for the model of a :class:`fastenv.sim.Simulation`:

1. loaded (a motion file is resampled on that model);
2. rebuilt on that model when it was made for another one (:func:`rebuild_reference`:
   coordinates matched by name, body kinematics recomputed);
3. shifted vertically so that it sits on the model's contact geometry
   (:func:`aligned_to_ground`, found by :func:`ground_offset`), unless disabled.

References prepared for a model are shared by every env of a process
(:func:`prepared_reference`): a worker holding many envs of one task prepares once.
Warnings are reported at the user's line that made the env (``fastenv.errors.
warn_caller``: the first frame outside fastenv and Gymnasium).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fastenv.errors import warn_caller
from fastenv.references import (
    MAX_PELVIS_HEIGHT,
    Reference,
    body_kinematics,
    check_reference_options,
    load_reference,
    model_digest,
    motion_file_notes,
    reference_file_kind,
)

_PREPARED: dict = {}


def prepared_reference(sim, ref, *, align_ground: bool = True, options=None) -> Reference:
    """:func:`prepare_reference`, cached per process by (model file, reference, alignment,
    options); a :class:`Reference` object is prepared afresh each time."""
    key = None if isinstance(ref, Reference) else (
        model_digest(sim.model_path), _file_identity(ref), bool(align_ground),
        repr(sorted(check_reference_options(options).items())))
    if key is not None and key in _PREPARED:
        return _PREPARED[key]
    reference = prepare_reference(sim, ref, align_ground=align_ground, options=options)
    if key is not None:
        _PREPARED[key] = reference
    return reference


def _file_identity(ref):
    """A reference file by where it is and what it holds now (resolved path, size and
    modification time): a file edited, or another file of that name in another working
    directory, is prepared afresh. A shipped reference by its name."""
    if reference_file_kind(ref) is None:
        return str(ref)
    path = Path(str(ref)).resolve()
    try:
        stat = path.stat()
    except OSError:
        return str(path), None   # missing: the loader says so
    return str(path), stat.st_size, stat.st_mtime_ns


def prepare_reference(sim, ref, *, align_ground: bool = True, options=None) -> Reference:
    """The reference ``ref`` (name, path or :class:`Reference`) ready for ``sim``'s model:
    rebuilt on it if made for another model, aligned with its ground if asked, and
    checked against its control step. ``options`` (:data:`fastenv.references.
    REFERENCE_OPTIONS`: cycle, treadmill speed, filter) apply to a motion file only.

    A motion file's changes (ignored columns, locked coordinates dropped, missing
    coordinates, a gait that stands still) and the ground offset applied are reported
    in one warning and kept in ``figures['motion_file']``."""
    motion_file = reference_file_kind(ref) == "motion"
    opts = check_reference_options(options)
    if options and not motion_file:
        what = f"Reference {ref.name!r}" if isinstance(ref, Reference) else repr(str(ref))
        raise ValueError(f"reference_options apply to a motion-file reference "
                         f"(reference='<file>.mot' or .sto), got {what}")
    if isinstance(ref, Reference):
        reference = ref
    elif motion_file:
        reference = load_reference(ref, model_path=sim.model_path, sim=sim, warn=False,
                                   control_dt=sim.control_dt, **opts)
    else:
        reference = load_reference(ref)
    label = reference_label(ref, reference)
    if list(reference.coordinate_names) != sim.coordinate_names:
        names = list(reference.coordinate_names)
        missing = [c for c in sim.coordinate_names if c not in names]
        extra = [c for c in names if c not in sim.coordinate_names]
        if len(missing) == len(sim.coordinate_names):
            raise ValueError(f"{label} has none of the model's coordinates: it has "
                             f"{names}, the model {sim.coordinate_names}")
        if missing:
            warn_caller(f"{label} lacks coordinates {missing}; they keep their default value")
        if extra:
            warn_caller(f"{label} has coordinates the model lacks, not played: {extra}")
    if not motion_file:   # a motion file's angles were checked as it was read
        check_angle_units(sim, reference, label)
    if reference.control_dt != sim.control_dt:
        raise ValueError(f"{label}: control_dt {reference.control_dt} s, expected the env's "
                         f"control step, {sim.control_dt} s (a reference is sampled at it)")
    if reference.model_digest != model_digest(sim.model_path):
        reference = rebuild_reference(sim, reference)
    dy = None   # the shift made now (a saved reference may hold an earlier one's figure)
    if align_ground and sim.contact_forces:
        aligned = aligned_to_ground(sim, reference, label)
        if aligned is not reference:
            dy = aligned.figures["ground_offset_m"]
        reference = aligned
    shift = ground_shift_note(dy)
    if "motion_file" in reference.figures:
        notes = motion_file_notes(reference) if motion_file else []
        report = dict(reference.figures["motion_file"], ground_offset_m=dy)
        reference.figures = {**reference.figures, "motion_file": report}
        notes += [shift] if shift else []
        if notes:
            warn_caller(f"{report['file']}: " + "; ".join(notes))
    elif shift:   # a saved reference or a Reference object moved, said as for a file
        warn_caller(f"{label}: {shift}")
    return reference


def reference_label(ref, reference: Reference) -> str:
    """How errors and warnings name a reference: by the file the user passed (the name
    stored in a saved ``.npz`` is that of the reference it was saved from, a shipped
    one's, say), else by its name."""
    if reference_file_kind(ref) is not None:
        return f"reference file {str(ref)!r}"
    return f"reference {reference.name!r}"


#: a ground shift beyond this (m) is more than a subject's or a contact model's
#: difference (the public files measured in docs/references.md shift by up to 12.3 cm):
#: the motion's vertical origin is not on its floor, which the warning says
GROUND_SHIFT_EXPECTED = 0.3


def ground_shift_note(dy) -> str | None:
    """The phrase reporting a ground shift ``dy`` (m) of 1 mm or more, else None."""
    if dy is None or abs(dy) < 0.001:
        return None
    note = (f"shifted {abs(dy) * 100:.1f} cm {'down' if dy < 0 else 'up'} (pelvis_ty "
            f"{dy:+.4f} m) onto the model's contact geometry (figures['ground_offset_m']; "
            "align_ground=False keeps its height)")
    if abs(dy) > GROUND_SHIFT_EXPECTED:
        note += (f", more than the {GROUND_SHIFT_EXPECTED * 100:.0f} cm a subject or a "
                 "contact model explains: is the motion's vertical origin off its floor (a "
                 "lab origin), or pelvis_ty measured from elsewhere?")
    return note


def check_angle_units(sim, ref: Reference, label=None):
    """A saved reference's angles are radians: one past 2 pi (a turn) on a joint (the
    root's orientation may wind) is a file written in degrees. ``label`` names the
    reference in the error (:func:`reference_label`)."""
    names = list(ref.coordinate_names)
    worst, peak = None, 0.0
    for j, c in enumerate(sim.coordinate_names):
        if c in names and sim.rotational[j] and not c.startswith("pelvis_"):
            v = float(np.abs(ref.q[:, names.index(c)]).max())
            if v > peak:
                worst, peak = c, v
    if peak > 2 * np.pi:
        raise ValueError(f"{label or f'reference {ref.name!r}'}: {worst} reaches {peak:.4g} rad "
                         f"({np.degrees(peak):.0f} deg); expected radians, |angle| <= 2 pi: "
                         f"was it saved in degrees?")


def rebuild_reference(sim, ref: Reference) -> Reference:
    """The reference on ``sim``'s model: its coordinates matched by name (the model's
    others at their defaults, locked ones at their locked values), body kinematics
    recomputed."""
    names = list(ref.coordinate_names)
    default_q = sim.buf[sim.layout.slice("q")]
    q = np.array([[ref.q[k, names.index(c)] if c in names else default_q[j]
                   for j, c in enumerate(sim.coordinate_names)] for k in range(ref.n_frames)])
    qd = np.array([[ref.qdot[k, names.index(c)] if c in names else 0.0
                    for c in sim.coordinate_names] for k in range(ref.n_frames)])
    qdd = np.array([[ref.qddot[k, names.index(c)] if c in names else 0.0
                     for c in sim.coordinate_names] for k in range(ref.n_frames)])
    q[:, sim.locked] = default_q[sim.locked]
    qd[:, sim.locked] = 0.0
    qdd[:, sim.locked] = 0.0
    q_off = np.array([ref.q_offset[names.index(c)] if c in names else 0.0
                      for c in sim.coordinate_names])
    bp, bv, cp, cv = body_kinematics(sim, q, qd)
    return Reference(name=ref.name, control_dt=ref.control_dt,
                     coordinate_names=list(sim.coordinate_names), q=q, qdot=qd, qddot=qdd,
                     body_names=list(sim.body_names), body_pos=bp, body_vel=bv,
                     com_pos=cp, com_vel=cv, playback=ref.playback, q_offset=q_off,
                     pos_offset=ref.pos_offset, source=ref.source,
                     model_digest=model_digest(sim.model_path), figures=dict(ref.figures),
                     muscle_names=list(ref.muscle_names), excitation=ref.excitation)


def ground_offset(sim, q, qdot, *, bracket: float = 0.3, reach: float | None = None,
                  tol: float = 1e-5) -> float | None:
    """Pelvis-height shift (m) for which the mean vertical ground reaction over the
    frames ``q``/``qdot`` (N, n_coord, model order) equals body weight, or None when
    it does not cross body weight within +-``bracket``, widened by doubling up to
    +-``reach`` (default: not widened).

    Bisection on static contact forces (``sim.vertical_grf``, muscles at their
    defaults), to ``tol``: the force only grows as the model is lowered into the ground
    (each contact's penetration deepens at unchanged speeds), so the crossing is unique.
    """
    return _ground_search(sim, q, qdot, bracket, reach or bracket, tol)[0]


def _ground_search(sim, q, qdot, bracket, reach, tol):
    """:func:`ground_offset`, with the ends of the bracket it found or gave up at and
    their mean vertical ground reactions: ``(dy or None, (low, force), (high, force))``."""
    j = sim.coordinate_names.index("pelvis_ty")

    def mean_grf(dy):
        total = []
        for qk, uk in zip(q, qdot):
            shifted = np.array(qk, dtype=float)
            shifted[j] += dy
            total.append(sim.vertical_grf(shifted, uk))
        return np.mean(total)

    weight = sim.body_weight
    lo, hi = -bracket, bracket
    f_lo, f_hi = mean_grf(lo), mean_grf(hi)
    while f_lo <= weight and lo > -reach:   # too little force even this low: go lower
        hi, f_hi = lo, f_lo
        lo = max(2 * lo, -reach)
        f_lo = mean_grf(lo)
    while f_hi >= weight and hi < reach:    # too much even this high: go higher
        lo, f_lo = hi, f_hi
        hi = min(2 * hi, reach)
        f_hi = mean_grf(hi)
    ends = (lo, f_lo), (hi, f_hi)
    if not (f_lo > weight > f_hi):
        return None, *ends
    while hi - lo >= tol:
        mid = 0.5 * (lo + hi)
        if mean_grf(mid) > weight:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi), *ends


def aligned_to_ground(sim, ref: Reference, label=None) -> Reference:
    """Shift the reference vertically so its mean vertical GRF is body weight.

    Over a periodic gait cycle (or a motion from rest to rest) the mean vertical
    ground reaction equals body weight; one constant pelvis-height offset makes the
    reference sit on this model's contact geometry, whatever contact model or
    subject produced it (:func:`ground_offset` over up to about 50 frames). The shift
    is searched up to :data:`fastenv.references.MAX_PELVIS_HEIGHT` either way, so a
    motion recorded about a lab origin off the floor lands on it too; one that no such
    shift puts on the ground is refused, naming ``label`` (:func:`reference_label`).
    """
    if "pelvis_ty" not in sim.coordinate_names:
        return ref
    frames = list(range(0, ref.n_frames, max(1, ref.n_frames // 50)))
    if ref.playback == "mirror":
        # a jump starts from quiet standing: its first frame carries body weight
        # (over the whole jump the mean is body weight too, but the impact-free
        # flight and push-off weigh on it very unevenly across contact models)
        frames = [0]
    dy, (lo, f_lo), (hi, f_hi) = _ground_search(sim, ref.q[frames], ref.qdot[frames],
                                                0.3, MAX_PELVIS_HEIGHT, 1e-5)
    j = sim.coordinate_names.index("pelvis_ty")
    if dy is None:
        ty = ref.q[frames, j]
        shift, force = (lo, f_lo) if f_lo <= sim.body_weight else (hi, f_hi)
        raise ValueError(
            f"{label or f'reference {ref.name!r}'}: cannot align with the ground: its "
            f"pelvis_ty goes {ty.min():.3f} to {ty.max():.3f} m, and moved {abs(shift):g} m "
            f"{'down' if shift < 0 else 'up'}, the model's contact geometry still carries "
            f"{force / sim.body_weight:.2f} body weights on average, expected 1: is "
            "pelvis_ty the pelvis height in metres, and do the feet reach the ground? "
            "align_ground=False plays it at its own height")
    q = ref.q.copy()
    q[:, j] += dy
    shifted = Reference(**{**ref.__dict__, "q": q, "figures": {**ref.figures,
                                                                 "ground_offset_m": dy}})
    shifted.body_pos = ref.body_pos + np.array([0.0, dy, 0.0])
    shifted.com_pos = ref.com_pos + np.array([0.0, dy, 0.0])
    return shifted
