"""Command line: regenerate fastenv's reference motions with OpenSim Moco.

    python -m refgen generate NAME [--out DIR] [--motions DIR] [--motion FILE]
                                   [--mesh-intervals N] [--coarse] [--threads N]
                                   [--work-dir DIR] [--resume] [--seed STO] [--guess STO]
                                   [--kinematic]
    python -m refgen rekinematics NAME|all [--out DIR]
    python -m refgen excitations NAME|all [--out DIR]
    python -m refgen check NAME|all [--json FILE] [--motions DIR] [--references DIR]

Run it from a fastenv checkout (refgen is not installed with fastenv).  Generators
are looked up by name in :data:`GENERATORS` (walking2d, running2d, jumping2d,
lockedknee2d, and the 3D ones derived from them: walking3d, running3d, jumping3d,
lockedknee3d, palsy3d; all but jumping3d add a Moco tracking solve); a further
reference only needs one more entry.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from refgen import DEFAULT_MOTIONS, MOTIONS_ENV, REFERENCES_DIR

EPILOG = f"""\
Regenerating reads public measured motions as tracking targets from --motions DIR
(default ${MOTIONS_ENV}, else {DEFAULT_MOTIONS}/ relative to the checkout
root), unless --motion gives your own file; the committed outputs in envs/references/
never need that folder at run time.  Output goes to --out DIR (default: the checkout's
envs/references/).  Solves take minutes to an hour on two cores: run long ones
in the background, e.g.
  nohup nice -n 10 python -m refgen generate walking2d > /tmp/w2d.log &
Moco's intermediate files and each stage's solution go to --work-dir (default
/tmp/fastenv_<name>), which --resume reuses.
"""


def _log(start: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:8.1f} s] {message}", flush=True)
    return log


def _settings(cls, args: argparse.Namespace):
    """Settings of a generator with the command-line overrides applied."""
    settings = cls(threads=args.threads, verbose=not args.quiet,
                   output_interval=args.output_interval)
    if args.coarse:
        settings.coarse_only = True
    if args.mesh_intervals:
        settings.fine_mesh = args.mesh_intervals
        settings.coarse_mesh = min(settings.coarse_mesh, args.mesh_intervals)
        settings.tracking_mesh = min(settings.tracking_mesh, args.mesh_intervals)
    if args.max_iterations:
        settings.max_iterations = args.max_iterations
    if args.seed:
        settings.seed = str(args.seed)
    if args.guess and hasattr(settings, "guess"):
        settings.guess = str(args.guess)
    return settings


def _generate(function, cls, name: str):
    def generate(args: argparse.Namespace) -> dict:
        extra = {"grf": args.grf} if getattr(args, "grf", None) else {}
        if extra and name != "walking2d":
            raise SystemExit(f"--grf {args.grf}: only walking2d tracks force plates, not {name}")
        return function(args.out, motion=args.motion, settings=_settings(cls, args),
                        work_dir=args.work_dir or f"/tmp/fastenv_{name}", resume=args.resume,
                        log=getattr(args, "log", None) or print, **extra)
    generate.__name__ = name
    generate.settings_class = cls
    return generate


def _generators() -> dict:
    from refgen import derive3d, moco, tasks2d

    return {
        "walking2d": (_generate(moco.generate_walking2d, moco.WalkingSettings, "walking2d"),
                      "2D walking cycle of gait9dof18musc: a measured walk and its force "
                      "plates tracked"),
        "running2d": (_generate(tasks2d.generate_running2d, tasks2d.RunningSettings,
                                "running2d"),
                      "2D running cycle of gait9dof18musc: a measured run's mean stride "
                      "tracked at its measured speed, each step with a flight phase"),
        "jumping2d": (_generate(tasks2d.generate_jumping2d, tasks2d.JumpSettings,
                                "jumping2d"),
                      "2D countermovement jump of gait9dof18musc: a recorded jump "
                      "tracked from quiet standing to the apex"),
        "lockedknee2d": (_generate(tasks2d.generate_lockedknee2d,
                                   tasks2d.LockedKneeSettings, "lockedknee2d"),
                         "2D walking at 1.3 m/s with the left knee and ankle locked "
                         "(asymmetric full cycle)"),
        # 3D references are derived from the 2D ones (generate those first)
        **derive3d.GENERATORS_3D,
    }


#: name -> (generator(args), one-line description)
GENERATORS: dict[str, tuple[Callable[[argparse.Namespace], dict], str]] = _generators()


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="python -m refgen", description=__doc__.splitlines()[0],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = main_parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate", help="solve a reference with OpenSim Moco and write it to --out "
                         "(default: the checkout's envs/references/)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("name", choices=sorted(GENERATORS),
                     help="; ".join(f"{k}: {v[1]}" for k, v in GENERATORS.items()))
    gen.add_argument("--out", type=Path, default=REFERENCES_DIR,
                     help="output folder (default: the checkout's envs/references/)")
    gen.add_argument("--motions", type=Path, help="folder of the public measured motions "
                     f"(default: ${MOTIONS_ENV}, else {DEFAULT_MOTIONS}/ relative to the "
                     "checkout root)")
    gen.add_argument("--motion", type=Path, help="your own .mot/.sto motion (coordinate "
                     "names of the model, degrees or radians) as tracking target instead of "
                     "the public one in --motions (lockedknee2d: a full cycle written like "
                     "walking2d_coordinates.sto, default the committed one)")
    gen.add_argument("--grf", type=Path, help="walking2d: force plates measured with your "
                     "--motion (.mot with <prefix>vx/vy/vz and px/py/pz columns, same clock)")
    gen.add_argument("--mesh-intervals", type=int, help="mesh intervals: the 2D solves use at "
                     "most N (defaults 25 per half cycle; 50 for lockedknee2d and jumping2d), "
                     "the 3D solves end on N (default 25)")
    gen.add_argument("--coarse", action="store_true",
                     help="2D: no refinement on a finer mesh (already every generator's "
                          "default)")
    gen.add_argument("--threads", type=int, default=2, help="Moco threads (default 2)")
    gen.add_argument("--work-dir", type=Path, help="folder for stage solutions and "
                     "intermediate iterates (default /tmp/fastenv_<name>)")
    gen.add_argument("--resume", action="store_true",
                     help="reuse stage solutions already in the work folder")
    gen.add_argument("--max-iterations", type=int, help="IPOPT iteration cap per stage")
    gen.add_argument("--output-interval", type=int, default=0,
                     help="write every N-th IPOPT iterate to the work folder (0: never)")
    gen.add_argument("--quiet", action="store_true", help="hide IPOPT's iteration log")
    gen.add_argument("--seed", type=Path, help="lockedknee2d, the one generator with a "
                     "predictive stage (refused for the others): seed that stage with "
                     "this coordinates .sto (e.g. the committed envs/references/<name>_"
                     "coordinates.sto), or with a Moco solution of the same predictive "
                     "problem (<name>_solution.sto, muscle states included), instead of "
                     "solving the tracking stage")
    gen.add_argument("--guess", type=Path, help="Moco tracking stages (walking2d, running2d, "
                     "jumping2d, the 3D gaits): a Moco solution .sto of an "
                     "earlier solve of the same model as the first stage's initial guess "
                     "(warm start)")
    gen.add_argument("--kinematic", action="store_true", help="3D gaits: write the kinematic "
                     "target without the Moco tracking solve")
    gen.add_argument("--no-passive-fiber-forces", action="store_true",
                     help="3D Moco tracking solves: solve on the model without passive fibre "
                          "force (the env's 3D Moco family keeps it, as the shipped solves "
                          "did; bench/muscle_coordination.py --no-passive measures such a "
                          "solution)")
    gen.add_argument("--rigid-tendon-preload", type=_preload_argument, default=None,
                     metavar="FORCE",
                     help="3D Moco tracking solves: set each compliant (Achilles) tendon's "
                          "slack length to its length at FORCE maximum isometric forces "
                          "before it becomes rigid")
    rekin = sub.add_parser(
        "rekinematics", help="recompute the body positions and velocities of committed "
                             "references from their own coordinates (no solve); every other "
                             "array is kept")
    rekin.add_argument("name", help="a reference in the checkout's envs/references/, or 'all'")
    rekin.add_argument("--out", type=Path, default=REFERENCES_DIR,
                       help="output folder (default: the checkout's envs/references/)")
    exc = sub.add_parser(
        "excitations", help="put the muscle excitations of a committed reference's Moco "
                            "solution (<name>_solution.sto) into its .npz (no solve); every "
                            "other array is kept")
    exc.add_argument("name", help="a reference in the checkout's envs/references/ that is a "
                                  "3D Moco tracking solution, a 2D gait cycle or the 2D jump "
                                  "with its solution beside it, jumping3d (jumping2d's "
                                  "excitations), or 'all' (all of those)")
    exc.add_argument("--out", type=Path, default=REFERENCES_DIR,
                     help="output folder (default: the checkout's envs/references/)")
    check = sub.add_parser(
        "check", help="check shipped references against human norms and their measured "
                      "source (refgen/check.py); exit status 1 on any violation")
    check.add_argument("name", help="a reference in --references, or 'all'")
    check.add_argument("--json", type=Path, metavar="FILE",
                       help="also write the figures and verdicts as JSON "
                            "(all: refgen/check_status.json is the committed one)")
    check.add_argument("--motions", type=Path, help="folder of the public measured motions "
                       f"(default: ${MOTIONS_ENV}, else {DEFAULT_MOTIONS}/ relative to the "
                       "checkout root); without it the measured-source criterion is skipped")
    check.add_argument("--references", type=Path, default=REFERENCES_DIR, metavar="DIR",
                       help="folder of the references to check (default: the checkout's "
                            "envs/references/), e.g. a generate --out folder")
    return main_parser


def rekinematics(args: argparse.Namespace) -> int:
    """``python -m refgen rekinematics NAME|all``: :func:`refgen.kinematics.rekinematics`."""
    from refgen.kinematics import rekinematics as recompute

    names = (sorted(p.stem for p in REFERENCES_DIR.glob("*.npz")) if args.name == "all"
             else [args.name])
    for name in names:
        recompute(name, references_dir=REFERENCES_DIR, out_dir=args.out)
    return 0


def excitations(args: argparse.Namespace) -> int:
    """``python -m refgen excitations NAME|all``:
    :func:`refgen.derive3d.attach_solution_excitations`, or for a kinematic reference
    that borrows its 2D reference's, :func:`refgen.derive3d.attach_borrowed_excitations`
    (after the 2D ones with ``all``)."""
    from refgen.derive3d import (
        BORROWED_EXCITATIONS,
        attach_borrowed_excitations,
        attach_solution_excitations,
        solution_names,
    )

    names = ([*solution_names(REFERENCES_DIR), *sorted(BORROWED_EXCITATIONS)]
             if args.name == "all" else [args.name])
    for name in names:
        attach = (attach_borrowed_excitations if name in BORROWED_EXCITATIONS
                  else attach_solution_excitations)
        try:
            attach(name, references_dir=REFERENCES_DIR, out_dir=args.out)
        except ValueError as exc:
            print(f"python -m refgen excitations: {exc}", file=sys.stderr)
            return 2
    return 0


def _preload_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a load in [0, 1) maximum isometric "
                                         f"forces, got {text!r}")
    return value


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "motions", None) is not None:
        # the one setting of the motions folder (refgen.motions_dir) for this process
        os.environ[MOTIONS_ENV] = str(args.motions.resolve())
    import opensim
    opensim.Logger.setLevelString("warn")
    if args.command == "rekinematics":
        return rekinematics(args)
    if args.command == "excitations":
        return excitations(args)
    if args.command == "check":
        from refgen.check import run
        try:
            return run([args.name], json_path=args.json, references_dir=args.references)
        except ValueError as exc:   # a bad name or folder: one line, not a traceback
            print(f"python -m refgen check: {exc}", file=sys.stderr)
            return 2
    generator, _ = GENERATORS[args.name]
    from refgen.derive3d import TRACKED_3D
    for flag, value in (("--no-passive-fiber-forces", args.no_passive_fiber_forces),
                        ("--rigid-tendon-preload", args.rigid_tendon_preload)):
        if value and args.name not in TRACKED_3D:
            print(f"python -m refgen generate: {flag} is for the 3D Moco tracking solves "
                  f"({', '.join(TRACKED_3D)}), not {args.name}", file=sys.stderr)
            return 2
    # --seed replaces the tracking stage that precedes a predictive one; a generator
    # without a predictive stage (the tracked 2D references, the 3D ones) would ignore it
    settings_class = getattr(generator, "settings_class", None)
    if args.seed and (settings_class is None
                      or settings_class().reference_stage != "predictive"):
        print(f"python -m refgen generate: --seed seeds a predictive stage, and {args.name} "
              "solves none (--guess warm-starts a tracking solve)", file=sys.stderr)
        return 2
    args.log = _log(time.perf_counter())
    generator(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
