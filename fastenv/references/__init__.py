"""Reference motions: the format, the loader for user motion files, and lookup.

A :class:`Reference` is sampled exactly at the env's control step: coordinate values,
speeds and accelerations (all model coordinates, model order), ground-frame body
positions/velocities and centre of mass computed with OpenSim on the env's model, and
how playback continues past the last frame (``loop`` for a gait cycle, whose
horizontal pelvis translation advances by one stride per cycle; ``once`` to play a
motion a single time). References are stored as compressed ``.npz`` in
``fastenv/envs/references`` and loaded once; :mod:`fastenv.references.prepare` puts a
reference on an env's model (kinematics on that model, ground alignment).

The shipped references are generated offline by the ``refgen`` pipeline of the
project's checkout (``python -m refgen generate NAME``), which is not installed.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import numbers
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastenv.envs import REFERENCE_OPTIONS, check_reference_options  # noqa: F401  (re-exported)

#: ``references/`` of the installed ``fastenv.envs`` package (the checkout's
#: ``envs/references`` in an editable install): the shipped references.
REFERENCE_DIR = importlib.resources.files("fastenv.envs") / "references"
PLAYBACKS = ("loop", "once", "mirror")
#: motion files: the largest translation (m), pelvis height (m) and mean translational
#: speed (m/s) read as metres (a 10-minute walk at 1.5 m/s goes 900 m; a sprint reaches
#: 12 m/s), and the longest interval between rows (s) read as seconds (motion capture
#: records at 60-2000 Hz)
MAX_TRANSLATION = 2000.0
MAX_PELVIS_HEIGHT = 5.0
MAX_TRANSLATION_SPEED = 15.0
MAX_ROW_INTERVAL = 0.5


@dataclass
class Reference:
    name: str
    control_dt: float
    coordinate_names: list
    q: np.ndarray            # (N, n_coord)
    qdot: np.ndarray
    qddot: np.ndarray
    body_names: list
    body_pos: np.ndarray     # (N, n_body, 3)
    body_vel: np.ndarray
    com_pos: np.ndarray      # (N, 3)
    com_vel: np.ndarray
    playback: str = "loop"
    q_offset: np.ndarray = None    # (n_coord,) added per completed cycle (stride)
    pos_offset: np.ndarray = None  # (3,) ground-frame translation per cycle
    source: str = ""
    model_digest: str = ""
    figures: dict = field(default_factory=dict)
    # muscle excitations (N, n_muscles) of a Moco solution the reference is a state
    # trajectory of: the feed-forward of ``excitations="residual"``; None without one
    muscle_names: list = field(default_factory=list)
    excitation: np.ndarray = None

    def __post_init__(self):
        if self.playback not in PLAYBACKS:
            raise ValueError(f"playback must be one of {PLAYBACKS}, got {self.playback!r}")
        dt = self.control_dt
        if not (isinstance(dt, numbers.Real) and not isinstance(dt, bool) and 0 < dt < np.inf):
            raise ValueError(f"reference {self.name!r}: control_dt {dt!r}: expected a "
                             f"positive number of seconds")
        n = len(self.coordinate_names)
        if self.q_offset is None:
            self.q_offset = np.zeros(n)
        if self.pos_offset is None:
            self.pos_offset = np.zeros(3)
        self._check_arrays()

    def _check_arrays(self):
        """Every array's shape against the frames, coordinates, bodies and muscles the
        reference names (``q`` sets the frames), and every value finite: a reference is
        read by index every step, and a wrong shape or a NaN would otherwise surface as
        an IndexError or a NaN reward far from its cause."""
        nq, nb = len(self.coordinate_names), len(self.body_names)
        q = np.asarray(self.q)
        if q.ndim != 2 or q.shape[1] != nq or q.shape[0] < 2:
            raise ValueError(f"reference {self.name!r}: q has shape {q.shape}, expected "
                             f"(frames >= 2, {nq}) (one column per coordinate_names entry)")
        n = q.shape[0]
        shapes = dict(q=(n, nq), qdot=(n, nq), qddot=(n, nq), body_pos=(n, nb, 3),
                      body_vel=(n, nb, 3), com_pos=(n, 3), com_vel=(n, 3))
        if self.excitation is not None:
            shapes["excitation"] = (n, len(self.muscle_names))
        frames = {k: np.shape(getattr(self, k))[:1] for k in shapes}   # one row per frame
        if len(set(frames.values())) > 1:
            raise ValueError(f"reference {self.name!r}: its arrays disagree on the number of "
                             "frames (" + ", ".join(f"{k} {v[0] if v else '-'}"
                                                    for k, v in frames.items())
                             + "); expected one row per frame in each")
        shapes.update(q_offset=(nq,), pos_offset=(3,))
        for key, shape in shapes.items():
            value = np.asarray(getattr(self, key))
            if value.shape != shape:
                raise ValueError(f"reference {self.name!r}: {key} has shape {value.shape}, "
                                 f"expected {shape} (frames as q's {n}, coordinate_names, "
                                 f"body_names, muscle_names)")
            bad = ~np.isfinite(value)
            if bad.any():
                where = np.argwhere(bad)[0]
                raise ValueError(f"reference {self.name!r}: {key} holds {int(bad.sum())} "
                                 f"non-finite value(s), the first at index "
                                 f"{tuple(int(i) for i in where)}; expected finite numbers")

    # ----------------------------------------------------------------- lookup
    @property
    def n_frames(self) -> int:
        return self.q.shape[0]

    @property
    def cycle_steps(self) -> int:
        """Steps per gait cycle (loop) or per playback (once/mirror)."""
        if self.playback == "mirror":
            return 2 * (self.n_frames - 1)
        return self.n_frames

    @property
    def duration(self) -> float:
        return self.cycle_steps * self.control_dt

    def index(self, step: int):
        """(frame index, completed cycles) for env step ``step`` (0 = first frame).

        loop: frames repeat, translations advance by the per-cycle offset.
        once: holds the last frame (the env truncates there).
        mirror: plays forward to the last frame, then backwards (jumping: up, then down).
        """
        if self.playback == "loop":
            return step % self.n_frames, step // self.n_frames
        if self.playback == "once":
            return min(step, self.n_frames - 1), 0
        period = 2 * (self.n_frames - 1)
        k = step % period
        return (k if k < self.n_frames else period - k), 0

    def direction(self, step: int) -> float:
        """-1 while a mirror reference plays backwards (speeds change sign), else 1."""
        return -1.0 if (self.playback == "mirror" and step % (2 * (self.n_frames - 1))
                        >= self.n_frames) else 1.0

    def coordinates_at(self, step: int):
        """Coordinate values and speeds at env step ``step``."""
        i, c = self.index(step)
        return self.q[i] + c * self.q_offset, self.direction(step) * self.qdot[i]

    def com_velocity_at(self, step: int):
        i, _ = self.index(step)
        return self.direction(step) * self.com_vel[i]

    def com_at(self, step: int):
        i, c = self.index(step)
        return self.com_pos[i] + c * self.pos_offset

    # ----------------------------------------------------------------- storage
    def save(self, path) -> Path:
        path = Path(path)
        meta = dict(name=self.name, control_dt=self.control_dt,
                    coordinate_names=list(self.coordinate_names),
                    body_names=list(self.body_names), playback=self.playback,
                    source=self.source, model_digest=self.model_digest,
                    figures=self.figures, format=1)
        extra = {}
        if self.excitation is not None:
            meta["muscle_names"] = list(self.muscle_names)
            extra["excitation"] = self.excitation
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), q=self.q,
                            qdot=self.qdot, qddot=self.qddot, body_pos=self.body_pos,
                            body_vel=self.body_vel, com_pos=self.com_pos,
                            com_vel=self.com_vel, q_offset=self.q_offset,
                            pos_offset=self.pos_offset, **extra)
        return path

    @classmethod
    def load(cls, path) -> Reference:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except Exception as exc:
            reason = "not an .npz (zip) file" if path.is_file() and not zipfile.is_zipfile(
                path) else exc
            raise ValueError(f"cannot read reference {str(path)!r}: {reason}") from exc
        meta.pop("format", None)
        try:
            return cls(**meta, **arrays)
        except (TypeError, ValueError) as exc:   # missing or unexpected arrays, shapes
            # the file is what the user passed: the name stored in it (say, the shipped
            # reference it was saved from) would blame that one
            reason = str(exc).removeprefix(f"reference {meta.get('name')!r}: ")
            raise ValueError(f"reference file {str(path)!r}: {reason}") from None


# --------------------------------------------------------------------- motion files
def read_motion(path):
    """Read an OpenSim .mot/.sto table -> (time (T,), {column: (T,)}, in_degrees).

    Accepts both the classic header (``inDegrees=yes`` ... ``endheader``) and
    Moco's ``/jointset/.../value`` column paths.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read motion file {str(path)!r}: {exc}") from exc
    in_degrees = False
    try:
        end = next(i for i, ln in enumerate(lines) if ln.strip().lower() == "endheader")
    except StopIteration:
        raise ValueError(f"motion file {str(path)!r} has no 'endheader' line; expected an "
                         "OpenSim .mot/.sto file") from None
    for ln in lines[:end]:
        m = re.match(r"\s*inDegrees\s*=\s*(\w+)", ln, re.I)
        if m:
            in_degrees = m.group(1).lower() in ("yes", "true")
    labels = lines[end + 1].split() if end + 1 < len(lines) else []
    rows, numbers = [], []
    for number, ln in enumerate(lines[end + 2:], start=end + 3):   # 1-based line numbers
        if not ln.strip():
            continue
        try:
            row = [float(x) for x in ln.split()]
        except ValueError as exc:
            raise ValueError(f"motion file {str(path)!r}, line {number}: non-numeric value "
                             f"({exc})") from exc
        if len(row) != len(labels):
            raise ValueError(f"motion file {str(path)!r}, line {number}: {len(row)} values, "
                             f"expected {len(labels)} (one per column label)")
        rows.append(row)
        numbers.append(number)
    data = np.array(rows, dtype=float).reshape(len(rows), len(labels))
    if data.shape[0] < 2:
        raise ValueError(f"motion file {str(path)!r}: expected >= 2 rows of {len(labels)} "
                         f"columns, got {data.shape[0]}")
    if labels[0].lower() != "time":
        raise ValueError(f"motion file {str(path)!r}: first column must be 'time', "
                         f"got {labels[0]!r}")
    steps = np.diff(data[:, 0])
    if not np.all(steps > 0):
        k = int(np.flatnonzero(~(steps > 0))[0])
        raise ValueError(f"motion file {str(path)!r}, line {numbers[k + 1]}: time is not "
                         f"strictly increasing ({data[k + 1, 0]:g} s after {data[k, 0]:g} s "
                         f"on line {numbers[k]})")
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:   # one would silently hide the other
        raise ValueError(f"motion file {str(path)!r}: columns {repeated} appear more than "
                         "once; expected each column label once")
    return data[:, 0], {lab: data[:, i] for i, lab in enumerate(labels) if i}, in_degrees


def write_motion(path, time, columns: dict, *, in_degrees: bool, name: str = "motion"):
    """Write an OpenSim storage file (``.mot``/``.sto``) that :func:`read_motion` and the
    OpenSim GUI read: the classic header (``inDegrees``, ``endheader``), a ``time``
    column, then ``columns`` in their order. Values are written as given: convert
    rotational coordinates to degrees yourself when ``in_degrees`` is True."""
    time = np.asarray(time, dtype=float)
    data = np.column_stack([time, *(np.asarray(v, dtype=float) for v in columns.values())])
    labels = ["time", *columns]
    header = [name, "version=1", f"nRows={data.shape[0]}", f"nColumns={data.shape[1]}",
              f"inDegrees={'yes' if in_degrees else 'no'}", "endheader", "\t".join(labels)]
    rows = ["\t".join(f"{x:.10g}" for x in row) for row in data]
    path = Path(path)
    path.write_text("\n".join(header + rows) + "\n")
    return path


def write_rollout(path, time, coordinate_names, rotational, q, state_names, states,
                  model_path) -> dict:
    """A rollout as files the OpenSim GUI opens together: ``<stem>.mot`` (coordinates;
    rotations in degrees, translations in metres), ``<stem>_states.sto`` (every state
    variable by its path, as ``StatesTrajectory.createFromStatesTable`` reads it) and
    ``<stem>.osim``, a copy of the model they belong to. Returns the three paths.

    ``path`` is the motion file, ``<stem>.mot``: any other name is refused, as the three
    files share its stem (``x.txt`` had written ``x.mot`` beside ``x.txt_states.sto``)."""
    import shutil
    path = Path(path)
    if path.suffix.lower() != ".mot":
        raise ValueError(f"expected the rollout's motion file, a path ending in .mot "
                         f"(<stem>_states.sto and <stem>.osim are written beside it), "
                         f"got {str(path)!r}")
    stem = path.with_suffix("")
    q = np.asarray(q, dtype=float)
    coordinates = {name: np.degrees(q[:, j]) if rotational[j] else q[:, j]
                   for j, name in enumerate(coordinate_names)}
    # the stem's own dots stay: with_suffix would turn run.v2 into run.mot
    mot = write_motion(stem.parent / f"{stem.name}.mot", time, coordinates, in_degrees=True,
                       name=stem.name)
    states = np.asarray(states, dtype=float)
    sto = write_motion(stem.parent / f"{stem.name}_states.sto", time,
                       {name: states[:, k] for k, name in enumerate(state_names)},
                       in_degrees=False, name=f"{stem.name}_states")
    model = stem.parent / f"{stem.name}.osim"
    shutil.copyfile(model_path, model)
    return {"motion": mot, "states": sto, "model": model}


def cycle_steps(duration: float, control_dt: float) -> int:
    """Control steps of a looped cycle of ``duration`` s: the nearest whole number (the
    cycle is time-scaled by less than half a step to it), at least 2."""
    n = int(round(duration / control_dt))
    if n < 2:
        raise ValueError(f"a looped cycle of {duration:.4g} s is shorter than 2 control steps "
                         f"({2 * control_dt:g} s); expected a longer cycle window")
    return n


def coordinate_of(label: str):
    """Coordinate name a column holds values of, or None (speeds, forces, ...)."""
    if label.startswith("/"):
        parts = label.strip("/").split("/")
        if len(parts) >= 2 and parts[-1] == "value":
            return parts[-2]
        return None
    return label


def model_digest(model_path) -> str:
    """16 hex digits of the model file's content without its ``<credits>``: the variant
    builder writes its version there, and a new builder version that changes nothing
    else must not make the shipped references look built on another model."""
    content = re.sub(rb"<credits>.*?</credits>", b"", Path(model_path).read_bytes(),
                     flags=re.DOTALL)
    return hashlib.sha256(content).hexdigest()[:16]


# --------------------------------------------------------------------- building
def body_kinematics(sim, q, qdot):
    """Ground-frame body positions and velocities (N, n_body, 3) and centre of mass
    position and velocity (N, 3) of ``sim``'s model at each frame of ``q``/``qdot``
    (N, n_coord, model order)."""
    n, nb = len(q), len(sim.body_names)
    body_pos, body_vel = np.empty((n, nb, 3)), np.empty((n, nb, 3))
    com_pos, com_vel = np.empty((n, 3)), np.empty((n, 3))
    for k in range(n):
        body_pos[k], body_vel[k], com_pos[k], com_vel[k] = sim.kinematics(q[k], qdot[k])
    return body_pos, body_vel, com_pos, com_vel


def lowpass(values, dt, cutoff_hz):
    """4th-order zero-phase Butterworth low-pass filter along the first axis.

    Each end is padded (odd extension) with one period of the cut-off, at most the
    motion's length, in which the filter's start-up transient settles: scipy's default
    of 15 rows left a walk's ends off what the filter gives inside a longer recording
    by up to 1.6 cm and 6 deg at 240 Hz, 7 cm and 25 deg at 1000 Hz (a period: 0.3 cm
    and 2-3 deg at any rate). :func:`reference_from_motion` does not filter a motion
    shorter than a period.
    """
    from scipy.signal import butter, filtfilt
    b, a = butter(4, cutoff_hz / (0.5 / dt))
    period = int(np.ceil(1.0 / (cutoff_hz * dt) - 1e-9))
    return filtfilt(b, a, values, axis=0, padlen=min(max(3 * max(len(a), len(b)), period),
                                                     values.shape[0] - 1))


def build_reference(model_path, time, names, values, *, control_dt=0.01, cyclic=True,
                    playback=None, name="reference", source="", figures=None,
                    lowpass_hz=None, sim=None, start_at_rest=False,
                    excitations=None) -> Reference:
    """Resample coordinate trajectories at the control step and add body kinematics.

    ``values`` (T, len(names)) are coordinate values in radians/metres. Model
    coordinates missing from ``names`` keep their default value. With ``cyclic``, the
    data span one full cycle (last row = first row plus a stride in the horizontal
    pelvis translations); the seam error of the other coordinates is spread linearly
    over the cycle (reported as ``figures['seam_error_deg']``), the cycle is resampled
    to a whole number of control steps (time-scaled by < dt/2) with a periodic spline,
    and the horizontal translations advance by one stride per cycle. Otherwise the
    motion is resampled over its duration with a not-a-knot spline, whose first
    derivative is clamped to zero at the start with ``start_at_rest`` (a jump from
    quiet standing: a free end slope gave the ankles 1.8-1.9 rad/s at its first frame).

    ``excitations`` ({muscle: (T,) values on ``time``}, from the Moco solution the
    coordinates come from) are resampled on the same frames, linearly so that they
    stay within [0, 1].
    """
    from scipy.interpolate import CubicSpline

    from fastenv.sim import Simulation

    time = np.asarray(time, dtype=float)
    values = np.asarray(values, dtype=float)
    if values.shape != (len(time), len(names)):
        raise ValueError(f"values must have shape {(len(time), len(names))}, got {values.shape}")
    sim = sim or Simulation(model_path, energetics=False)
    cn = sim.coordinate_names
    col = {n: i for i, n in enumerate(names)}
    default_q = sim.buf[sim.layout.slice("q")].copy()
    Y = np.tile(default_q, (len(time), 1))
    for j, c in enumerate(cn):
        if c in col:
            Y[:, j] = values[:, col[c]]
    if lowpass_hz:
        Y = lowpass(Y, float(np.mean(np.diff(time))), lowpass_hz)
    figures = dict(figures or {})
    duration = time[-1] - time[0]
    translational = ~sim.rotational
    progress = translational & ~np.array([c.endswith("_ty") for c in cn])
    if cyclic:
        n = cycle_steps(duration, control_dt)
        q_offset = np.where(progress, Y[-1] - Y[0], 0.0)
        seam = np.where(progress, 0.0, Y[-1] - Y[0])
        figures.setdefault("seam_error_deg", float(np.degrees(
            np.abs(seam[sim.rotational & ~sim.locked]).max(initial=0.0))))
        spline = periodic_spline(time, Y, q_offset + seam)
        uf = np.arange(n) / n
        scale = 1.0 / (n * control_dt)                   # d(u)/dt after time-scaling
        q = spline(uf) + np.outer(uf, q_offset)          # seam error stays removed
        qdot = (spline(uf, 1) + q_offset) * scale
        qddot = spline(uf, 2) * scale ** 2
        figures.setdefault("time_scale", float(duration / (n * control_dt)))
        playback = playback or "loop"
    else:
        n = int(np.floor(duration / control_dt + 1e-9)) + 1
        if n < 2:
            raise ValueError(f"the motion lasts {duration:.4g} s, less than one control step "
                             f"({control_dt:g} s): nothing to play")
        bc = ((1, np.zeros(Y.shape[1])), "not-a-knot") if start_at_rest else "not-a-knot"
        spline = CubicSpline(time - time[0], Y, axis=0, bc_type=bc)
        tf = np.arange(n) * control_dt
        q, qdot, qddot = spline(tf), spline(tf, 1), spline(tf, 2)
        q_offset = np.zeros(len(cn))
        playback = playback or "once"
    q[:, sim.locked] = default_q[sim.locked]
    qdot[:, sim.locked] = 0.0
    qddot[:, sim.locked] = 0.0
    body_pos, body_vel, com_pos, com_vel = body_kinematics(sim, q, qdot)
    muscle_names, excitation = [], None
    if excitations:
        muscle_names = list(excitations)
        # the frames' times on the original clock (the cycle is time-scaled by < dt/2)
        excitation = excitations_on_frames(excitations, time,
                                           time[0] + (uf * duration if cyclic else tf))
    pos_offset = np.zeros(3)
    if cyclic:
        # ground-frame displacement of one cycle: where the model would be one cycle on
        pos1, _, com1, _ = sim.kinematics(q[0] + q_offset, qdot[0])
        pos_offset = com1 - com_pos[0]
    return Reference(name=name, control_dt=control_dt, coordinate_names=cn, q=q,
                     qdot=qdot, qddot=qddot, body_names=list(sim.body_names),
                     body_pos=body_pos, body_vel=body_vel, com_pos=com_pos,
                     com_vel=com_vel, playback=playback, q_offset=q_offset,
                     pos_offset=pos_offset, source=source,
                     model_digest=model_digest(model_path), figures=figures,
                     muscle_names=muscle_names, excitation=excitation)


def periodic_spline(time, Y, drift):
    """A periodic cubic spline over the cycle fraction u in [0, 1] of a cycle ``Y``
    (T, n) on ``time``, with ``u * drift`` taken off each column first (a progressing
    translation's stride, or the seam error spread over the cycle), so that its ends
    meet; :func:`build_reference` resamples a cycle with it."""
    from scipy.interpolate import CubicSpline

    time = np.asarray(time, dtype=float)
    u = (time - time[0]) / (time[-1] - time[0])
    periodic = Y - np.outer(u, drift)
    periodic[-1] = periodic[0]
    return CubicSpline(u, periodic, bc_type="periodic", axis=0)


def excitations_on_frames(excitations: dict, time, frame_times) -> np.ndarray:
    """Excitations ({muscle: (T,) values on ``time``}) at a reference's frames (their
    times on the same clock), (frames, muscles) in the dict's order: linear
    interpolation, so that they stay within [0, 1]."""
    time = np.asarray(time, dtype=float)
    return np.array([np.interp(frame_times, time, np.asarray(v, dtype=float))
                     for v in excitations.values()]).T


#: Below this horizontal pelvis speed (m/s) a motion that looks like a gait is reported
#: as standing still (a treadmill recording without its belt speed).
MIN_GAIT_SPEED = 0.1



def heel_strikes(sim, q) -> dict | None:
    """Heel-strike frames of each foot along coordinates ``q`` (T, n_coord, model
    order), by the foot's kinematics (Zeni et al. 2008): a heel strikes where the
    calcaneus is furthest ahead of the pelvis, along the horizontal direction in which
    the pelvis progresses (+x for a treadmill recording). ``{side: (frames, excursion
    of the heel relative to the pelvis in m)}``, or None when the model has no
    ``pelvis``, ``calcn_r`` and ``calcn_l`` bodies."""
    from scipy.signal import find_peaks

    bodies = list(sim.body_names)
    if not {"pelvis", "calcn_r", "calcn_l"} <= set(bodies) or len(q) < 3:
        return None
    pos = np.array([sim.kinematics(qk, np.zeros_like(qk))[0] for qk in q])
    progress = pos[-1, bodies.index("pelvis"), [0, 2]] - pos[0, bodies.index("pelvis"), [0, 2]]
    ahead = (progress / np.linalg.norm(progress) if np.linalg.norm(progress) > 0.1
             else np.array([1.0, 0.0]))
    out = {}
    for side in ("r", "l"):
        rel = (pos[:, bodies.index(f"calcn_{side}"), :] - pos[:, bodies.index("pelvis"), :])
        rel = rel[:, [0, 2]] @ ahead
        excursion = float(np.ptp(rel))
        frames, _ = find_peaks(rel, prominence=max(0.05, 0.3 * excursion))
        out[side] = (frames, excursion)
    return out


def _angle_mismatch_deg(sim, a, b) -> float:
    """RMS difference (deg) of the unlocked rotational coordinates of two poses."""
    rot = sim.rotational & ~sim.locked
    return float(np.degrees(np.sqrt(np.mean((a[rot] - b[rot]) ** 2))))


#: least excursion (m) of each heel relative to the pelvis for a motion to be a gait
MIN_HEEL_EXCURSION = 0.15


def _feet_swing(strikes) -> bool:
    """Whether both heels move relative to the pelvis as in a gait (``strikes`` from
    :func:`heel_strikes`; None: the model has no feet to tell)."""
    return strikes is not None and min(strikes["r"][1], strikes["l"][1]) >= MIN_HEEL_EXCURSION


def find_gait_cycle(sim, q, strikes, *, seam_deg=3.0):
    """First and last frame of one gait cycle of ``q`` (T, n_coord) from right heel
    strike to right heel strike (``strikes`` from :func:`heel_strikes`), or None.

    Of the strides between consecutive right heel strikes, the one whose end pose best
    matches its start (RMS of the joint angles) is taken, its end moved by up to two
    frames to where the pose repeats best, so that the cycle's period is the motion's.
    A motion with fewer strides counts as one cycle when it ends where it starts
    (within ``seam_deg``) and a heel strike is found in it: an IK file of one cycle.
    """
    if not _feet_swing(strikes):
        return None
    hs = strikes["r"][0]
    best = None
    for i0, i1 in zip(hs[:-1], hs[1:]):
        ends = range(max(i0 + 2, i1 - 2), min(len(q), i1 + 3))
        j = min(ends, key=lambda k: _angle_mismatch_deg(sim, q[i0], q[k]))
        err = _angle_mismatch_deg(sim, q[i0], q[j])
        if best is None or err < best[2]:
            best = (int(i0), int(j), err)
    if best is not None:
        return best[:2]
    if (_angle_mismatch_deg(sim, q[0], q[-1]) < seam_deg
            and len(hs) + len(strikes["l"][0]) >= 1):
        return 0, len(q) - 1
    return None


#: coordinates whose sign flips when a pose is mirrored left to right (the sagittal
#: ones keep theirs; ``*_r`` and ``*_l`` swap)
MIRROR_NEGATED = ("pelvis_list", "pelvis_rotation", "pelvis_tz", "lumbar_bending",
                  "lumbar_rotation")


def mirror_map(names) -> tuple[np.ndarray, np.ndarray] | None:
    """For coordinates ``names``: each one's mirror image (``*_r`` and ``*_l`` swap) as
    an index into ``names``, and -1 where it flips sign (:data:`MIRROR_NEGATED`);
    None when a sided coordinate's partner is not in ``names``."""
    index = {n: i for i, n in enumerate(names)}
    partner, sign = [], []
    for n in names:
        side = n[-2:] if n.endswith(("_r", "_l")) else ""
        other = n[:-2] + ("_l" if side == "_r" else "_r") if side else n
        if other not in index:
            return None
        partner.append(index[other])
        sign.append(-1.0 if n in MIRROR_NEGATED else 1.0)
    return np.array(partner), np.array(sign)


def mirrored_half(values, names) -> np.ndarray:
    """The second half of a gait cycle from its first half ``values`` (T, len(names)):
    left and right swapped, :data:`MIRROR_NEGATED` reflected about the middle of their
    ends (so the sway goes on where it left off), ``pelvis_tx`` continued by the half's
    travel. Row 0 is the first row mirrored, which for half a cycle is its last row.
    Needs :func:`mirror_map` of ``names``."""
    partner, sign = mirror_map(names)
    out = values[:, partner].copy()
    for j in np.flatnonzero(sign < 0):
        out[:, j] = values[0, j] + values[-1, j] - values[:, j]
    if "pelvis_tx" in names:
        j = list(names).index("pelvis_tx")
        out[:, j] = values[:, j] + values[-1, j] - values[0, j]
    return out


def find_half_cycle(sim, q, strikes, *, seam_deg=3.0) -> float | None:
    """How far (RMS of the joint angles, deg) the last pose of ``q`` (T, n_coord, model
    order) is from the first one mirrored, when ``q`` is half a gait cycle (one foot's
    heel strike to the other's, as Moco's symmetric walking problems solve it): the
    feet move relative to the pelvis (``strikes``, as :func:`find_gait_cycle`) and that
    distance is under ``seam_deg``. None otherwise."""
    if not _feet_swing(strikes) or len(q) < 3:
        return None
    if mirror_map(sim.coordinate_names) is None:
        return None
    first_mirrored = mirrored_half(q[[0, -1]], sim.coordinate_names)[0]
    err = _angle_mismatch_deg(sim, q[-1], first_mirrored)
    return err if err < seam_deg else None


#: a looped motion file's seam (the largest joint angle's jump from its last row to its
#: first, spread over the loop) is reported beyond this (deg); measured cycles close
#: within 0.3-2.6 deg (docs/references.md)
SEAM_REPORTED_DEG = 5.0

#: a joint angle (not the pelvis's orientation) of a motion file past the model's range
#: by more than this (rad) is reported; by more than RANGE_REFUSED it is refused (a sign
#: convention of another model: OpenCap's knee flexes positive, 100 deg past 10 deg)
RANGE_REPORTED = np.radians(2.0)
RANGE_REFUSED = np.radians(30.0)

#: the sagittal joints that flex through tens of degrees in any gait (a stiff knee about
#: 20, an equinus ankle about 10): one of them moving less than GAIT_JOINT_MIN_RANGE_DEG
#: over a gait in a degrees file is a column in radians (a running knee's 2.1-rad range
#: reads as 2.1 deg), or a fused joint
GAIT_JOINTS = ("hip_flexion_r", "hip_flexion_l", "knee_angle_r", "knee_angle_l",
               "ankle_angle_r", "ankle_angle_l")
GAIT_JOINT_MIN_RANGE_DEG = 3.0
#: pelvis travel (m) that makes a motion a gait for that check when the heels' swing does
#: not tell (two thirds of a walking stride: each of those joints goes through most of
#: its range)
GAIT_MIN_TRAVEL = 1.0


def still_gait_joints(names, values, q, coordinate_names, strikes) -> dict:
    """The :data:`GAIT_JOINTS` columns of a motion that move, but less than
    :data:`GAIT_JOINT_MIN_RANGE_DEG`, although it is a gait (both heels swing relative
    to the pelvis, :func:`_feet_swing` of ``strikes``, or the pelvis travels
    :data:`GAIT_MIN_TRAVEL`): ``{coordinate: [min, max] (deg)}``. A degrees file's
    largest angle says nothing about one column in radians; its range of motion does.
    ``values`` (T, len(names)) in radians; ``q`` (T, n_coord) the motion in model order.
    """
    horizontal = [coordinate_names.index(c) for c in ("pelvis_tx", "pelvis_tz")
                  if c in coordinate_names]
    travel = float(np.linalg.norm(q[-1, horizontal] - q[0, horizontal])) if horizontal else 0.0
    if not (_feet_swing(strikes) or travel >= GAIT_MIN_TRAVEL):
        return {}
    still = {}
    for k, c in enumerate(names):
        low, high = np.degrees(np.min(values[:, k])), np.degrees(np.max(values[:, k]))
        # a column that does not move at all (to rounding) is a joint held still on
        # purpose (a motion of a model that locks it), whatever its unit
        if c in GAIT_JOINTS and 1e-6 < high - low < GAIT_JOINT_MIN_RANGE_DEG:
            still[c] = [float(low), float(high)]
    return still


#: a motion file's time step counts as uneven (rows missing or crowded) beyond this
#: ratio to its median step
UNEVEN_STEP = 1.5


def uniform_rows(time, values) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """``(time, values)`` on a uniform clock when the file's steps are uneven (a step
    over :data:`UNEVEN_STEP` times the median, or under its inverse: dropped frames or
    a clock that stuttered, which the filter, made for even steps, would distort), by a
    cubic spline at about the median step; with what was done, else None."""
    steps = np.diff(time)
    step = float(np.median(steps))
    too_wide = steps > UNEVEN_STEP * step
    uneven = too_wide | (steps < step / UNEVEN_STEP)
    if not uneven.any():
        return time, values, None
    from scipy.interpolate import CubicSpline

    clock = np.linspace(time[0], time[-1], int(round((time[-1] - time[0]) / step)) + 1)
    wide = np.flatnonzero(too_wide)
    report = dict(rows=len(time), uniform_rows=len(clock), median_step_s=step,
                  step_s=float(clock[1] - clock[0]),
                  uneven_steps=int(uneven.sum()),
                  largest_gap=[float(time[wide[np.argmax(steps[wide])]]),
                               float(steps[wide].max())] if len(wide) else None)
    return clock, CubicSpline(time, values, axis=0)(clock), report


def reference_from_motion(path, model_path, *, control_dt=0.01, cycle=None,
                          treadmill_speed=0.0, lowpass_hz=6.0, negate=(), playback=None,
                          name=None, sim=None, warn=True) -> Reference:
    """Reference from a user's inverse-kinematics file (.mot/.sto, degrees or radians).

    ``lowpass_hz`` filters the measured kinematics (4th-order zero-phase Butterworth
    over the whole file, :func:`lowpass`; None to disable) before differentiation; a
    file shorter than one period of the cut-off is not filtered, and says so.
    ``cycle``: None or ``"once"`` plays the motion once; ``"auto"`` finds a gait cycle
    (right heel strike to right heel strike, :func:`heel_strikes`,
    :func:`find_gait_cycle`) and loops it seamlessly; ``(t0, t1)`` loops that window. A
    looped cycle is time-scaled (by less than half a control step,
    ``figures['time_scale']``) to a whole number of steps.
    A file of half a gait cycle whose last pose is its first one mirrored (Moco's
    symmetric half-cycle solutions) is completed by its mirror image under ``"auto"``
    (:func:`find_half_cycle`, :func:`mirrored_half`) and reported as such.
    ``negate`` flips the sign of those coordinates' columns (another model's convention:
    a rotation more than 30 deg past the model's range is refused, naming it).
    ``treadmill_speed`` (m/s) is added to ``pelvis_tx`` over the reference's own time,
    so a treadmill recording becomes overground at exactly that speed (a file without
    ``pelvis_tx`` gets one).

    What changes is reported, never silent: columns the model lacks are ignored,
    coordinates the model locks are held at their locked values, model coordinates the
    file lacks keep their defaults, and a motion that looks like a gait (heel strikes
    of both feet) but whose pelvis moves less than :data:`MIN_GAIT_SPEED` m/s gets a
    hint to set ``treadmill_speed``; a hip, knee or ankle column of a degrees file that
    hardly moves in a gait is named (:func:`still_gait_joints`). They are listed in
    ``figures['motion_file']`` and, with ``warn``, in one warning (the env reports them
    with its ground offset).
    """
    from fastenv.sim import Simulation

    opts = check_reference_options(dict(cycle=cycle, treadmill_speed=treadmill_speed,
                                        lowpass_hz=lowpass_hz, negate=negate))
    cycle, treadmill_speed, lowpass_hz = opts["cycle"], opts["treadmill_speed"], opts["lowpass_hz"]
    negate = opts["negate"]
    time, columns, in_degrees = read_motion(path)
    file = Path(path).name
    sim = sim or Simulation(model_path, energetics=False)
    cn = sim.coordinate_names
    default_q = sim.buf[sim.layout.slice("q")].copy()
    names, values, ignored, locked = [], [], [], {}
    not_values = []   # speeds, forces, activations: the env recomputes or does not read them
    label_of = {}
    largest = {}   # rotational columns' largest magnitude, in the file's unit
    beyond = {}    # rotational columns past the model's coordinate range (rad)
    for label, v in columns.items():
        c = coordinate_of(label)
        if c is None:
            not_values.append(label)
            continue
        if c in label_of:
            raise ValueError(f"motion file {file}: coordinate {c} has two columns, "
                             f"{label_of[c]!r} and {label!r}; expected one")
        label_of[c] = label
        if c in cn:
            j = cn.index(c)
            v = -v if c in negate else v
            if sim.rotational[j]:
                largest[c] = float(np.abs(v).max())
            v = np.radians(v) if (in_degrees and sim.rotational[j]) else v
            if sim.locked[j]:
                seen = v[np.isfinite(v)] if np.isfinite(v).any() else v   # NaN: not used
                locked[c] = dict(file_range=[float(seen.min()), float(seen.max())],
                                 locked_at=float(default_q[j]),
                                 unit="rad" if sim.rotational[j] else "m")
            else:
                names.append(c)
                values.append(v)
                low, high = sim.coordinate_range[j]
                excess = max(low - float(np.min(v)), float(np.max(v)) - high, 0.0)
                # joints only: the root's orientation is free (a walk towards -x turns
                # pelvis_rotation to 180 deg) and its ranges are only the GUI's
                if sim.rotational[j] and not c.startswith("pelvis_") and excess > RANGE_REPORTED:
                    beyond[c] = dict(file_range=[float(np.min(v)), float(np.max(v))],
                                     model_range=[float(low), float(high)], excess=excess)
        else:
            ignored.append(label)
    if not names:
        if locked:
            free = [c for j, c in enumerate(cn) if not sim.locked[j]]
            raise ValueError(f"motion file {str(path)!r}: the model locks every coordinate "
                             f"it has a column for ({sorted(locked)}); expected at least one "
                             f"unlocked coordinate: {free}")
        raise ValueError(f"motion file {str(path)!r} has no column matching a coordinate of "
                         f"the model; model coordinates: {cn}")
    for c, v in zip(names, values):   # before any check reads their ranges
        rows = np.flatnonzero(~np.isfinite(v))
        if len(rows):
            raise ValueError(f"motion file {file}: column {c} has {len(rows)} "
                             f"non-finite values (NaN/inf), from t = {time[rows[0]]:g} s to "
                             f"{time[rows[-1]]:g} s; expected a number in every row (fill the "
                             "gaps, or cut the file to a stretch without them)")
    stray = sorted(set(negate) - set(names) - set(locked))
    if stray:
        raise ValueError(f"reference option negate names {stray}, which are not coordinates "
                         f"of the model read from {file}; expected some of {names}")
    worst = max(largest, key=largest.get, default=None)
    if worst is not None and not in_degrees and largest[worst] > 2 * np.pi:
        raise ValueError(f"motion file {file}: {worst} reaches {largest[worst]:.4g}, "
                         f"{np.degrees(largest[worst]):.0f} deg as radians; the header says "
                         "angles are in radians (no inDegrees=yes): expected |angle| <= 2 pi, "
                         "or inDegrees=yes if the file is in degrees")
    for c, v in zip(names, values):
        j = cn.index(c)
        if sim.rotational[j]:
            continue
        # translations are read in metres; millimetres put a pelvis 900 m up
        speed = abs(float(v[-1] - v[0])) / max(float(time[-1] - time[0]), 1e-9)
        peak = float(np.abs(v).max())
        limit = MAX_PELVIS_HEIGHT if c == "pelvis_ty" else MAX_TRANSLATION
        if peak > limit or speed > MAX_TRANSLATION_SPEED:
            raise ValueError(f"motion file {file}: {c} reaches {peak:.4g} and moves "
                             f"{speed:.4g} per second; expected metres (at most {limit:g} m, "
                             f"{MAX_TRANSLATION_SPEED:g} m/s on average): are the "
                             "translations in millimetres?")
    worst = max(beyond, key=lambda c: beyond[c]["excess"], default=None)
    if worst is not None and beyond[worst]["excess"] > RANGE_REFUSED:
        b = beyond[worst]
        raise ValueError(
            f"motion file {file}: {worst} goes from {np.degrees(b['file_range'][0]):.1f} to "
            f"{np.degrees(b['file_range'][1]):.1f} deg, {np.degrees(b['excess']):.0f} deg past "
            f"the model's range ({np.degrees(b['model_range'][0]):.0f} to "
            f"{np.degrees(b['model_range'][1]):.0f} deg): "
            + (f"negated as reference_options['negate'] asks; is the file already in the "
               f"model's convention? Expected values within the range; if so, take {worst!r} "
               "out of 'negate'" if worst in negate else
               "another model's sign convention (e.g. knee flexion positive)? Expected values "
               "within the range; if so, pass "
               f"reference_options={{'negate': [{worst!r}, ...]}}"))
    # in degrees, a moving body's joints go beyond 3 deg; within it, the file is in radians
    # with the wrong header, or a nearly still pose: say so
    degrees_suspect = bool(in_degrees and largest and max(largest.values()) < np.pi)
    j_tx = cn.index("pelvis_tx") if "pelvis_tx" in cn else None
    added_tx = bool(treadmill_speed and j_tx is not None and not sim.locked[j_tx]
                    and "pelvis_tx" not in names)
    if added_tx:
        names.append("pelvis_tx")
        values.append(np.full(len(time), default_q[j_tx]))
    missing = [c for j, c in enumerate(cn) if c not in names and not sim.locked[j]]
    values = np.column_stack(values)
    time, values, resampled = uniform_rows(time, values)
    dt = float(np.mean(np.diff(time)))
    if dt >= MAX_ROW_INTERVAL:
        raise ValueError(f"motion file {file}: rows every {dt:.4g} s ({1 / dt:.3g} Hz); "
                         f"expected the time column in seconds and rows at least every "
                         f"{MAX_ROW_INTERVAL} s: is the time in milliseconds?")
    file_values = values   # the file's own, for its ranges of motion
    unfiltered = None      # a motion too short for the filter: how long it is
    if lowpass_hz:
        if lowpass_hz >= 0.5 / dt:
            raise ValueError(f"lowpass_hz {lowpass_hz} must be below the Nyquist frequency "
                             f"of {file}, {0.5 / dt:.3g} Hz (rows every {dt:.4g} s)")
        if time[-1] - time[0] < 1.0 / lowpass_hz:
            # the filter's start-up transient, a period long, would be the whole motion
            # (3 rows of walking at 100 Hz: the pelvis moved 1.5 cm, a knee 0.8 deg)
            unfiltered = float(time[-1] - time[0])
        else:
            values = lowpass(values, dt, lowpass_hz)

    # the motion in model order (defaults where the file has nothing), for the feet
    col = {n: i for i, n in enumerate(names)}
    Y = np.tile(default_q, (len(time), 1))
    for j, c in enumerate(cn):
        if c in col:
            Y[:, j] = values[:, col[c]]
    strikes = heel_strikes(sim, Y)
    still = (still_gait_joints(names, file_values, Y, cn, strikes)
             if in_degrees and not degrees_suspect else {})
    report = dict(file=file, ignored_columns=ignored, not_coordinate_values=not_values,
                  locked_coordinates_dropped=locked,
                  missing_coordinates=missing, negated=list(negate), resampled=resampled,
                  beyond_model_range=beyond,
                  degrees_suspect=degrees_suspect, still_gait_joints=still,
                  treadmill_speed_m_s=float(treadmill_speed),
                  lowpass_hz=lowpass_hz, unfiltered_duration_s=unfiltered,
                  cycle=cycle if cycle != "once" else None,
                  pelvis_tx_from_treadmill=added_tx,
                  file_time_s=[float(time[0]), float(time[-1])])
    if strikes is not None:
        for side in ("r", "l"):
            report[f"heel_strikes_{side}_s"] = [float(time[i]) for i in strikes[side][0]]
    window = find_gait_cycle(sim, Y, strikes)
    half = (find_half_cycle(sim, Y, strikes) if cycle == "auto" and window is None
            and mirror_map(names) is not None else None)
    figures = {}
    if half is not None:
        # half a cycle: the other half is its mirror image, so the file holds a whole one
        report.update(half_cycle_s=[float(time[0]), float(time[-1])],
                      half_cycle_mirror_error_deg=half)
        values = np.vstack([values, mirrored_half(values, names)[1:]])
        time = np.concatenate([time, time[1:] + (time[-1] - time[0])])
        window = (0, len(time) - 1)
    if cycle == "auto":
        if window is None:
            hs = report.get("heel_strikes_r_s")
            found = (f"right heel strikes at {hs} s" if hs else "no right heel strike")
            raise ValueError(f"cycle='auto' found no gait cycle in {file} ({found} by foot "
                             "kinematics, and its last pose is not its first one mirrored, "
                             "as in half a cycle); pass cycle=(t0, t1) or cycle='once'")
        i0, i1 = window
    elif isinstance(cycle, tuple):
        t0, t1 = cycle
        if not (time[0] <= t0 < t1 <= time[-1]):
            raise ValueError(f"cycle {cycle} outside the time range of {file}, "
                             f"[{time[0]:g}, {time[-1]:g}] s; expected t0 < t1 within it")
        i0 = int(np.searchsorted(time, t0 - 1e-9))
        i1 = int(np.searchsorted(time, t1 + 1e-9)) - 1
        if i1 - i0 < 2:
            raise ValueError(f"cycle {cycle} holds {i1 - i0 + 1} rows of {file}; expected "
                             "a window of at least 3 rows")
    looped = cycle == "auto" or isinstance(cycle, tuple)
    if looped:
        time, values = time[i0:i1 + 1], values[i0:i1 + 1].copy()
        report.update(cycle_window_s=[float(time[0]), float(time[-1])],
                      cycle_period_s=float(time[-1] - time[0]))
        duration = time[-1] - time[0]
        try:
            n = cycle_steps(duration, control_dt)
        except ValueError as exc:
            raise ValueError(f"motion file {file}: {exc}") from None
        figures["time_scale"] = float(duration / (n * control_dt))
        report["cycle_steps"] = n
        time = (time - time[0]) * (n * control_dt / duration)   # whole control steps
    if treadmill_speed and "pelvis_tx" in names:
        values[:, names.index("pelvis_tx")] += treadmill_speed * (time - time[0])
    ref = build_reference(model_path, time, names, values, control_dt=control_dt,
                          cyclic=looped, playback=playback, name=name or Path(path).stem,
                          source=str(path), lowpass_hz=None, sim=sim, figures=figures)
    horizontal = [cn.index(c) for c in ("pelvis_tx", "pelvis_tz") if c in cn]
    travel = (ref.q_offset[horizontal] if looped
              else ref.q[-1, horizontal] - ref.q[0, horizontal])
    speed = float(np.linalg.norm(travel) / ((ref.n_frames - (not looped)) * control_dt))
    report.update(pelvis_speed_m_s=speed, looks_like_gait=window is not None)
    ref.figures["motion_file"] = report
    notes = motion_file_notes(ref)
    if warn and notes:
        warnings.warn(f"{file}: " + "; ".join(notes), stacklevel=2)
    return ref


def motion_file_notes(ref: Reference) -> list:
    """What preparing a motion file changed or suspects (``figures['motion_file']`` of a
    reference from :func:`reference_from_motion`), one phrase each."""
    r = ref.figures.get("motion_file")
    if not r:
        return []
    notes = []
    if r["ignored_columns"]:
        notes.append(f"ignoring columns the model lacks: {r['ignored_columns']}")
    other = r.get("not_coordinate_values")
    if other:   # a Moco solution has a speed per coordinate and a few per muscle
        shown = other if len(other) <= 4 else other[:3] + [f"... {len(other) - 3} more"]
        notes.append(f"not reading {len(other)} column(s) that hold no coordinate's value "
                     f"(speeds are recomputed from the coordinates; forces, activations "
                     f"and excitations are not read; figures['motion_file']"
                     f"['not_coordinate_values'] lists them): {shown}")
    if r["locked_coordinates_dropped"]:
        def shown(x, unit):
            return f"{np.degrees(x):.1f} deg" if unit == "rad" else f"{x:.3f} m"
        notes.append("dropping coordinates the model locks, held at their locked value: "
                     + ", ".join(f"{c} (file {shown(d['file_range'][0], d['unit'])} to "
                                 f"{shown(d['file_range'][1], d['unit'])}, locked at "
                                 f"{shown(d['locked_at'], d['unit'])})"
                                 for c, d in r["locked_coordinates_dropped"].items()))
    if r["missing_coordinates"]:
        notes.append(f"model coordinates missing from the file keep their default value: "
                     f"{r['missing_coordinates']}")
    if r.get("negated"):
        notes.append(f"negated as asked (reference option negate): {r['negated']}")
    if r.get("beyond_model_range"):
        notes.append("angles past the model's coordinate range (kept; its limit forces will "
                     "resist them): " + ", ".join(
                         f"{c} {np.degrees(b['file_range'][0]):.1f} to "
                         f"{np.degrees(b['file_range'][1]):.1f} deg (range "
                         f"{np.degrees(b['model_range'][0]):.0f} to "
                         f"{np.degrees(b['model_range'][1]):.0f})"
                         for c, b in r["beyond_model_range"].items()))
    if r.get("degrees_suspect"):
        notes.append("every angle stays within ±3.14 deg although the header says "
                     "inDegrees=yes: radians with the wrong header? (fine for a still pose)")
    if r.get("still_gait_joints"):
        notes.append(", ".join(f"{c} moves only {lo:.2f} to {hi:.2f} deg" for c, (lo, hi)
                               in r["still_gait_joints"].items())
                     + " although the motion is a gait (hips, knees and ankles flex through "
                     "tens of degrees in one): radians under the header's inDegrees=yes? "
                     "Convert such a column to degrees (fine for a fused or braced joint)")
    if r.get("unfiltered_duration_s") is not None:
        notes.append(f"not low-pass filtered: it lasts {r['unfiltered_duration_s']:.3f} s, "
                     f"less than one period of the {r['lowpass_hz']:g} Hz cut-off "
                     f"({1 / r['lowpass_hz']:.3f} s), which the filter needs to settle (its "
                     "start-up transient would distort the whole motion); lowpass_hz=None "
                     "skips the filter without this note")
    if r.get("resampled"):
        x = r["resampled"]
        gap = (f", the largest a gap of {x['largest_gap'][1]:.3f} s at {x['largest_gap'][0]:g} s"
               if x["largest_gap"] else "")
        notes.append(f"time steps are uneven ({x['uneven_steps']} of {x['rows'] - 1} steps "
                     f"differ from the median {x['median_step_s']:.4g} s by over {UNEVEN_STEP:g}x"
                     f"{gap}): resampled to {x['uniform_rows']} rows at {x['step_s']:.4g} s "
                     "by a cubic spline before filtering")
    seam = ref.figures.get("seam_error_deg")
    if r.get("cycle") is not None and seam is not None and seam > SEAM_REPORTED_DEG:
        notes.append(f"the looped window's ends differ by up to {seam:.1f} deg (a joint "
                     "angle), spread linearly over the loop: "
                     + ("the stride cycle='auto' found does not close; cycle=(t0, t1) loops "
                        "another" if r["cycle"] == "auto" else
                        "is it one gait cycle? cycle='auto' picks a stride whose ends match"))
    if r.get("half_cycle_s"):
        t0, t1 = r["half_cycle_s"]
        notes.append(f"{t0:g}-{t1:g} s is half a gait cycle (its last pose is its first "
                     f"one mirrored, within {r['half_cycle_mirror_error_deg']:.1f} deg RMS): "
                     "completed by its mirror image (right and left swapped) into a "
                     f"{2 * (t1 - t0):.3f}-s cycle")
    window = r.get("cycle_window_s")
    if window and not r.get("half_cycle_s") and ref.figures.get("time_scale"):
        # which rows were kept, and the rescale to whole control steps, are changes too
        t0, t1 = window
        f0, f1 = r.get("file_time_s", window)
        how = " (right heel strike to right heel strike)" if r["cycle"] == "auto" else ""
        kept = (f"loops {t0:.3f}-{t1:.3f} s of the file's {f0:.3f}-{f1:.3f} s{how}"
                if (t0, t1) != (f0, f1) else f"loops the whole file, {t0:.3f}-{t1:.3f} s")
        notes.append(f"{kept}, time-scaled by {ref.figures['time_scale']:.4f} to "
                     f"{r['cycle_steps']} control steps")
    if (r["looks_like_gait"] and r["cycle"] is None
            and r["pelvis_speed_m_s"] >= MIN_GAIT_SPEED):   # else the hint below says it
        duration = (ref.n_frames - 1) * ref.control_dt
        notes.append(f"it looks like a gait but is played once, so an episode ends where the "
                     f"file does ({duration:.2f} s from the first frame, less from a later "
                     "start frame): reference_options={'cycle': 'auto'} loops one gait cycle")
    if r["looks_like_gait"] and r["pelvis_speed_m_s"] < MIN_GAIT_SPEED:
        strikes = {side: [round(t, 2) for t in r[f"heel_strikes_{side}_s"]] for side in "rl"}
        notes.append(f"the pelvis progresses {r['pelvis_speed_m_s']:.3f} m/s although the "
                     f"motion looks like a gait (heel strikes by foot kinematics: right at "
                     f"{strikes['r']} s, left at {strikes['l']} s): a treadmill recording? "
                     "pass reference_options={'treadmill_speed': <belt speed in m/s>, "
                     "'cycle': 'auto'}")
    return notes


def reference_file_kind(ref) -> str | None:
    """``"motion"`` for a ``.mot``/``.sto`` path, ``"npz"`` for a saved reference (either
    case: ``W.MOT`` too), None for a shipped reference's name or a :class:`Reference`."""
    if isinstance(ref, Reference):
        return None
    suffix = Path(str(ref)).suffix.lower()
    return "motion" if suffix in (".mot", ".sto") else "npz" if suffix == ".npz" else None


def load_reference(name_or_path, model_path=None, **kwargs) -> Reference:
    """A shipped reference by name (``walking2d``), a saved ``.npz``, or a motion file
    (``.mot``/``.sto``, needs ``model_path``)."""
    p = Path(str(name_or_path))
    kind = reference_file_kind(p)
    if kind == "motion":
        if model_path is None:
            raise ValueError("a motion-file reference needs the model it is for")
        if not p.exists():
            raise ValueError(f"reference file {str(p)!r} does not exist")
        return reference_from_motion(p, model_path, **kwargs)
    if kind == "npz":
        if not p.exists():
            raise ValueError(f"reference file {str(p)!r} does not exist")
        return Reference.load(p)
    shipped = REFERENCE_DIR / f"{name_or_path}.npz"
    if not shipped.is_file():
        names = sorted(x.name[:-4] for x in REFERENCE_DIR.iterdir() if x.name.endswith(".npz"))
        from fastenv.envs import TASKS
        if name_or_path in {t.reference for t in TASKS.values()}:
            raise ValueError(f"reference {name_or_path!r} has not been generated in this "
                             f"release; generate it from a fastenv checkout with `python -m "
                             f"refgen generate {name_or_path}` or pass "
                             f"reference=<.mot/.sto/.npz>; shipped: {names}")
        raise ValueError(f"unknown reference {name_or_path!r}; shipped: {names}, or pass a "
                         ".mot/.sto/.npz path")
    return Reference.load(shipped)
