"""What carries the ankle in each reference's Moco solution: muscles or passive fibres.

For each muscle task whose reference ships its Moco excitations, the reference's states
are put on the Moco family's model (``muscle_model="degroote"``, ``contact_model=
"smooth"``: the model the solution was solved on) with the feed-forward excitations as
activations, frame by frame, and each ankle's muscle moments are read
(``refgen.check.ankle_moments``, also the reference check's push-off criterion): the
plantarflexion moment of soleus and gastrocnemius from their active and from their
passive fibre force, and the dorsiflexion moment of tibialis anterior. Reported per
reference and side (the right ankle's as the row's keys, ``left``, and ``both_sides``
pooled): their peaks (N m), the passive share of the plantarflexors' impulse over the
cycle, tibialis anterior's impulse over the plantarflexors', and the three muscles' mean
excitations. In people the plantarflexors' push-off is active muscle work, and tibialis
anterior is quiet in mid and late stance. Also, per base model, the triceps surae's
and tibialis anterior's fibre lengths at the default (standing) pose: the Thelen model's
in equilibrium (compliant tendons, 0.05 activation) against a rigid tendon's at the
same slack length, the Moco family's.

The 3D adult models' Moco family has its Achilles tendons preloaded
(``fastenv.envs.variants.DGF_TENDON_PRELOAD``); the standing fibre lengths include that
family's (``moco_family``).

``--reference FILE --task TASK`` measures another solution of that task's reference
(e.g. ``python -m refgen generate walking3d --no-passive-fiber-forces --out DIR``);
``--no-passive`` puts it on the Moco family without passive fibre force, and
``--tendon-preload F`` on one whose 3D Achilles tendons are preloaded to F instead (0:
unloaded; both built into a cache folder of their own under ``$FASTENV_CACHE``), the
model such a solve was solved on; ``--zero-action`` adds what a zero action with
reflexes does there (``bench/reflex.py``'s row, 8 starts).

    python bench/muscle_coordination.py [--zero-action] [--out bench/results]
    python bench/muscle_coordination.py --task MuscleWalkingImitation3D-v0 \\
        --reference DIR/walking3d.npz --no-passive --tendon-preload 0 --zero-action --out DIR
"""
import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
from reflex import write_result, zero_action_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's refgen
from refgen import check  # noqa: E402

TASKS = ("MuscleWalkingImitation2D-v0", "MuscleRunningImitation2D-v0",
         "MuscleLockedKneeImitation2D-v0", "MuscleWalkingImitation3D-v0",
         "MuscleRunningImitation3D-v0", "MuscleLockedKneeImitation3D-v0",
         "MusclePalsyImitation3D-v0")
#: the right leg's ankle muscles, whose standing fibre lengths are reported (the ones
#: ``refgen.check.ankle_moments`` reads)
ANKLE_MUSCLES = tuple(f"{m}_r" for m in (*check.PLANTARFLEXORS, check.DORSIFLEXOR))


def changed_moco_family(*, passive: bool = True, tendon_preload: float | None = None):
    """Build every Moco-family model without passive fibre force and/or with the 3D
    models' compliant tendons preloaded to ``tendon_preload`` instead of
    ``DGF_TENDON_PRELOAD`` (``envs.variants.preload_rigid_tendons``; 0: their slack
    lengths), in a cache of their own (the cache key does not hold these switches)."""
    import fastenv.envs.variants as variants
    root = variants.cache_dir()
    parts = ([] if passive else ["no_passive"]) + (
        [f"preload_{tendon_preload:g}"] if tendon_preload is not None else [])
    if not parts:
        return
    os.environ["FASTENV_CACHE"] = str(root / "_".join(parts))
    for name, spec in list(variants.VARIANTS.items()):
        changes = {} if passive else dict(dgf_passive_fiber_force=False)
        if tendon_preload is not None and spec.dgf_tendon_preload:
            changes["dgf_tendon_preload"] = tendon_preload
        variants.VARIANTS[name] = dataclasses.replace(spec, **changes)


def tendon_preload(task: str, override: float | None) -> float:
    """The preload of ``task``'s Moco-family tendons as measured (0: none)."""
    from fastenv.envs import TASKS
    from fastenv.envs.variants import VARIANTS
    spec = VARIANTS[TASKS[task].model]
    return spec.dgf_tendon_preload if override is None or not spec.dgf_tendon_preload \
        else override


def ankle_row(task: str, reference=None) -> dict:
    """The ankle muscles' moments over ``task``'s reference (or ``reference``): the right
    ankle's figures as the row's own keys, ``left`` the left's (None on a prosthetic
    leg), ``both_sides`` the two pooled (``refgen.check.ankle_moments``, which the
    reference check's push-off criterion reads too)."""
    moments = check.ankle_moments(task, reference)
    return dict(task=task, reference=moments["reference"], **moments["r"],
                left=moments["l"], both_sides=moments["both"])


def standing_fibre_lengths(variant: str) -> dict:
    """Muscle -> fibre length over optimal at the default pose of ``variant``'s Thelen
    model: in its equilibrium (``thelen``), with a rigid tendon at the same slack length
    (``rigid``), and with the Moco family's rigid tendon (``moco_family``: preloaded
    slack lengths where the variant has them)."""
    import opensim

    from fastenv.envs.variants import variant_path
    model = opensim.Model(str(variant_path(variant)))
    family = opensim.Model(str(variant_path(variant, muscle_model="degroote")))
    state = model.initSystem()
    model.equilibrateMuscles(state)
    model.realizeDynamics(state)
    out = {}
    for name in ANKLE_MUSCLES:
        m = model.getMuscles().get(name)
        opt = m.getOptimalFiberLength()

        def rigid(slack, m=m, opt=opt):
            # a rigid tendon: the fibre along the tendon takes the whole remaining length
            return float(np.hypot(m.getLength(state) - slack,
                                  opt * np.sin(m.getPennationAngleAtOptimalFiberLength())) / opt)
        out[name] = dict(thelen=m.getFiberLength(state) / opt,
                         rigid=rigid(m.getTendonSlackLength()),
                         moco_family=rigid(family.getMuscles().get(name).getTendonSlackLength()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", action="append", help="muscle task(s); default: all with "
                    "excitations")
    ap.add_argument("--reference", type=Path, help="another solution (.npz) of --task's "
                    "reference")
    ap.add_argument("--no-passive", action="store_true",
                    help="the Moco family without passive fibre force")
    ap.add_argument("--tendon-preload", type=float, default=None, metavar="FORCE",
                    help="the 3D Moco family with the compliant (Achilles) tendons' slack "
                         "lengths at FORCE maximum isometric forces (0: unloaded) instead "
                         "of DGF_TENDON_PRELOAD, the model of a `refgen generate "
                         "--rigid-tendon-preload FORCE` solve")
    ap.add_argument("--zero-action", action="store_true",
                    help="also a zero action with reflexes (8 starts, 10 s, default gains)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    tasks = args.task or list(TASKS)
    if args.reference and len(tasks) != 1:
        ap.error(f"--reference needs exactly one --task, got {tasks}")
    changed_moco_family(passive=not args.no_passive, tendon_preload=args.tendon_preload)
    rows = []
    for task in tasks:
        row = ankle_row(task, args.reference)
        if args.zero_action:
            options = dict(reference=str(args.reference)) if args.reference else {}
            row["zero_action_reflex"] = zero_action_row(
                task, 8, 10.0, excitations="reflex", muscle_model="degroote",
                contact_model="smooth", **options)
        row["passive_fiber_force"] = not args.no_passive
        row["tendon_preload"] = tendon_preload(task, args.tendon_preload)
        rows.append(row)
        print(json.dumps(row))
    name = ("muscle_coordination" + ("_no_passive" if args.no_passive else "")
            + (f"_preload_{args.tendon_preload:g}" if args.tendon_preload is not None else "")
            + (f"_{args.reference.stem}" if args.reference else "") + ".json")
    command = "python bench/muscle_coordination.py" + "".join(
        f" --task {t}" for t in args.task or ()) + (
        f" --reference {args.reference}" if args.reference else "") + (
        " --no-passive" if args.no_passive else "") + (
        f" --tendon-preload {args.tendon_preload:g}" if args.tendon_preload is not None
        else "") + (
        " --zero-action" if args.zero_action else "")
    standing = ({v: standing_fibre_lengths(v) for v in ("muscle2d", "muscle3d")}
                if not args.task else {})
    write_result(args.out, name, dict(command=command, rows=rows,
                                      standing_fibre_lengths=standing))


if __name__ == "__main__":
    main()
