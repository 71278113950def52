"""Coordinate trajectories of the pipeline, their files, and JSON figures.

Time series here and in :mod:`fastenv.references`:

* :class:`Motion` -- coordinate values (and, where known, speeds) of a model on a
  time grid: a measured motion, a Moco solution, a gait cycle, a derived 3D cycle.
  One class for all of them: the logic (named columns on a time grid) is the same.
* :class:`Target` -- a :class:`Motion` that a Moco stage tracks, plus what the
  predictive stages take from it (its speed, the treadmill belt speed that was
  added, the file it came from, how it was cut).  Distinct only by that metadata.
* :class:`fastenv.references.Reference` -- the env's format, kept distinct: sampled
  at the control step, with body kinematics computed on the env's model and a
  playback mode; it is what the pipeline writes last and what fastenv loads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def is_translation(name: str) -> bool:
    """Whether a coordinate is a translation (metres) rather than an angle."""
    return name.endswith(("_tx", "_ty", "_tz"))


@dataclass
class Motion:
    """Coordinate trajectories: ``values`` (T, len(names)) in rad / m on ``time`` (T,),
    and ``speeds`` (rad/s, m/s) of the same shape where they are known (a Moco
    solution, a cycle written to a coordinates file), else None."""

    time: np.ndarray
    names: tuple
    values: np.ndarray
    speeds: np.ndarray | None = None

    def __post_init__(self):
        self.names = tuple(self.names)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def set(self, name: str, values) -> None:
        """Set (or append) the values of one coordinate; a motion with speeds loses
        them (they no longer match)."""
        values = np.broadcast_to(np.asarray(values, dtype=float), self.time.shape)
        if name in self.names:
            self.values[:, self.names.index(name)] = values
        else:
            self.names = (*self.names, name)
            self.values = np.column_stack([self.values, values])
        self.speeds = None

    def as_dict(self) -> dict:
        return {n: self.values[:, j] for j, n in enumerate(self.names)}


@dataclass
class Target(Motion):
    """A tracking target: a motion and what the pipeline knows about it.

    ``speed`` is the gait's speed over the ground (m/s; 0 for a jump),
    ``belt_speed`` the treadmill speed added to ``pelvis_tx`` to make it overground,
    ``source`` the file it came from, ``info`` how it was cut (for the JSON record).
    """

    speed: float = 0.0
    belt_speed: float = 0.0
    source: str = ""
    info: dict = field(default_factory=dict)

    @classmethod
    def of(cls, time, coords: dict, **meta) -> Target:
        """A target from {coordinate: values on ``time``}."""
        return cls(np.asarray(time, dtype=float), tuple(coords),
                   np.column_stack([np.asarray(v, dtype=float) for v in coords.values()]),
                   **meta)

    @property
    def coords(self) -> dict:
        return self.as_dict()


# --------------------------------------------------------------------------- files
def read_coordinates(path, names=None, *, required=(), knee_flexion_positive: bool = False,
                     from_zero: bool = False) -> Motion:
    """A .mot/.sto motion as coordinate values in radians (angles) / metres.

    The file is parsed by :func:`fastenv.references.read_motion` (classic headers,
    degrees or radians, bare coordinate names or Moco's ``/jointset/.../value``
    paths).  Speed columns are dropped; ``names`` keeps only those coordinates
    (default: every other column), ``required`` must all be present.
    ``knee_flexion_positive``: the file is for a model whose knee flexion is
    positive (Rajagopal, LaiUhlrich); knee angles are negated to the osim-rl
    models' convention.  ``from_zero`` shifts time to start at 0.
    """
    from fastenv.references import coordinate_of, read_motion

    time, columns, in_degrees = read_motion(path)
    cols = {}
    for label, values in columns.items():
        name = coordinate_of(label)
        if name is None or name.endswith("_speed") or name in cols:
            continue
        if names is not None and name not in names:
            continue
        if in_degrees and not is_translation(name):
            values = np.radians(values)
        if knee_flexion_positive and name.startswith("knee_angle_"):
            values = -values
        cols[name] = values
    missing = [c for c in required if c not in cols]
    if missing:
        raise ValueError(f"{path}: no column for {missing}")
    if not cols:
        raise ValueError(f"{path}: no coordinate column")
    return Motion(time - time[0] if from_zero else time, tuple(cols),
                  np.column_stack(list(cols.values())))


def write_coordinates_sto(path, motion: Motion, name: str) -> Path:
    """Write a motion with speeds as a coordinates file
    (:func:`fastenv.references.write_motion`).

    OpenSim storage, tab separated: header lines up to ``endheader``
    (``inDegrees=no``), a row of labels, one row per sample.  Columns: ``time`` (s),
    the value of every coordinate of ``motion`` (radians, metres), then the speed of
    each in the same order, named ``<coordinate>_speed`` (rad/s, m/s).
    """
    from fastenv.references import write_motion

    speeds = {f"{n}_speed": motion.speeds[:, j] for j, n in enumerate(motion.names)}
    return write_motion(path, motion.time, {**motion.as_dict(), **speeds}, in_degrees=False,
                        name=name)


def read_coordinates_sto(path) -> Motion:
    """Read a file written by :func:`write_coordinates_sto` (values and speeds)."""
    from fastenv.references import read_motion

    time, columns, _ = read_motion(path)
    names = tuple(n for n in columns if not n.endswith("_speed"))
    return Motion(time, names, np.column_stack([columns[n] for n in names]),
                  np.column_stack([columns[f"{n}_speed"] for n in names]))


# --------------------------------------------------------------------------- JSON
def rounded(x, digits: int = 4):
    """Figures for JSON: floats (NumPy's too) to ``digits`` decimals, NaN (undefined)
    as null, through dicts, lists and tuples."""
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return None if math.isnan(x) else round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    return x


def plain(x):
    """``json.dumps(default=plain)``: NumPy scalars (bool_, float64, ...) as plain
    Python values."""
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")
