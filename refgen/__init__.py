"""refgen: the offline pipeline that generates fastenv's shipped reference motions.

Not part of the installed ``fastenv`` package: it runs from a checkout of the project
(``python -m refgen generate NAME``, see ``refgen/README.md``) and writes the reference
files that ``fastenv`` ships in ``envs/references/``.  ``fastenv`` itself only loads
them (:mod:`fastenv.references`) and never imports ``refgen``.

Modules: :mod:`refgen.motion` (coordinate trajectories and their files),
:mod:`refgen.moco` (the Moco 2D gait pipeline: ``walking2d``), :mod:`refgen.tasks2d`
(``running2d``, ``lockedknee2d``, ``jumping2d``), :mod:`refgen.derive3d` (the 3D
references and ``palsy3d``), :mod:`refgen.check` (``python -m refgen check``: shipped
references against human norms and their measured source), :mod:`refgen.__main__` (the
command line).

Two folders, each set in one place:

* the measured (public) motions that generation tracks: :func:`motions_dir`;
* where generated files go: the ``--out`` option, by default :data:`REFERENCES_DIR`
  (the checkout's ``envs/references/``, which the 3D generators and ``lockedknee2d``
  also read their committed 2D inputs from).
"""
from __future__ import annotations

import os
from pathlib import Path

#: Root of the fastenv checkout that holds this package.
CHECKOUT = Path(__file__).resolve().parents[1]
#: The checkout's reference folder (installed as ``fastenv.envs/references``): the
#: default output of generation, and where committed references are read from.
REFERENCES_DIR = CHECKOUT / "envs" / "references"
#: Environment variable that overrides :func:`motions_dir` (the ``--motions`` option
#: of the command line sets it).
MOTIONS_ENV = "FASTENV_MOTIONS"
#: Default of :func:`motions_dir`, relative to the checkout root.
DEFAULT_MOTIONS = Path("..") / "shared" / "data" / "motions"


def motions_dir() -> Path:
    """Folder of the public measured motions: ``$FASTENV_MOTIONS`` if set, else
    ``../shared/data/motions`` next to the checkout root.  Only generation and the
    tests that use measured data read it; the shipped references never need it."""
    return Path(os.environ.get(MOTIONS_ENV) or CHECKOUT / DEFAULT_MOTIONS)


def motion_file(filename: str, motion=None) -> Path:
    """A user's motion file ``motion``, or the public motion ``filename`` in
    :func:`motions_dir`; FileNotFoundError saying where it looked and what to do."""
    path = Path(motion) if motion else motions_dir() / filename
    if not path.is_file():
        where = "" if motion else (f" (the public motion {filename} in {motions_dir()}: "
                                   f"set the folder with --motions DIR or ${MOTIONS_ENV}, "
                                   f"default {DEFAULT_MOTIONS}/ next to the checkout root)")
        raise FileNotFoundError(f"motion file {path} not found{where}; pass --motion FILE "
                                "to use your own motion of the same kind")
    return path
