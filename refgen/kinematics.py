"""What a model does at the poses of a motion: foot positions, contact forces, centre of mass.

Each class poses one OpenSim model frame by frame on its own working State (set the
coordinate values, and speeds where needed, then realize): positions queried on a
*copied* State can come from a stale frame cache in OpenSim 4.6.  Contact forces
depend on positions and velocities only, so a kinematic motion gives them without
muscle states.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from refgen.motion import Motion

SIDES = ("r", "l")


class PosedModel:
    """An OpenSim model (an ``.osim`` path or a ``Model``) and its working State."""

    def __init__(self, model):
        import opensim as osim

        from fastenv.sim import GRAVITY

        self.osim = osim
        self.model = model if isinstance(model, osim.Model) else osim.Model(str(model))
        self.state = self.model.initSystem()
        self.coords = {c.getName(): c for c in self.model.getCoordinateSet()}
        self.locked = {n for n, c in self.coords.items() if c.getLocked(self.state)}
        self.body_weight = float(self.model.getTotalMass(self.state) * GRAVITY)

    def pose(self, motion: Motion, k: int, speeds: np.ndarray | None = None) -> None:
        """Set row ``k`` of ``motion`` (and of ``speeds``, same columns, if given) on the
        model's unlocked coordinates; the caller realizes the stage it needs."""
        for j, n in enumerate(motion.names):
            c = self.coords.get(n)
            if c is None or n in self.locked:
                continue
            c.setValue(self.state, float(motion.values[k, j]), False)
            if speeds is not None:
                c.setSpeedValue(self.state, float(speeds[k, j]))


class FootKinematics(PosedModel):
    """Ground positions of the pelvis origin and of each foot's contact spheres (the
    spheres on ``calcn_<side>`` are the heel, those on ``toes_<side>`` the toes)."""

    def __init__(self, model):
        super().__init__(model)
        osim = self.osim
        self.pelvis = self.model.getBodySet().get("pelvis")
        self.calcn = {s: self.model.getBodySet().get(f"calcn_{s}") for s in SIDES}
        self.spheres = {s: {"heel": [], "toe": []} for s in SIDES}
        geometry = self.model.getContactGeometrySet()
        for i in range(geometry.getSize()):
            sphere = osim.ContactSphere.safeDownCast(geometry.get(i))
            if sphere is None:
                continue
            body = sphere.getFrame().findBaseFrame().getName()
            for s in SIDES:
                if body == f"calcn_{s}":
                    self.spheres[s]["heel"].append(sphere)
                elif body == f"toes_{s}":
                    self.spheres[s]["toe"].append(sphere)
        for s in SIDES:
            if not (self.spheres[s]["heel"] and self.spheres[s]["toe"]):
                raise ValueError(f"{model}: no contact spheres on calcn_{s} and toes_{s}")

    def __call__(self, motion: Motion) -> dict:
        """Ground positions along a motion.

        ``{'pelvis': (T,3), side: {'heel'|'toe': sphere centre (T,3), mean of the
        part's spheres, 'heel_bottom'|'toe_bottom': lowest sphere point height (T,),
        'calcn': calcaneus origin (T,3)}}``.
        """
        T = len(motion.time)
        out = {"pelvis": np.zeros((T, 3))}
        for s in SIDES:
            out[s] = {k: np.zeros((T, 3)) for k in ("heel", "toe", "calcn")}
            out[s].update({f"{k}_bottom": np.zeros(T) for k in ("heel", "toe")})
        for k in range(T):
            self.pose(motion, k)
            self.model.realizePosition(self.state)
            out["pelvis"][k] = self.pelvis.getPositionInGround(self.state).to_numpy()
            for s in SIDES:
                out[s]["calcn"][k] = self.calcn[s].getPositionInGround(self.state).to_numpy()
                for part, spheres in self.spheres[s].items():
                    centres = np.array([sp.getFrame().findStationLocationInGround(
                        self.state, sp.get_location()).to_numpy() for sp in spheres])
                    out[s][part][k] = centres.mean(axis=0)
                    out[s][f"{part}_bottom"][k] = min(
                        c[1] - sp.getRadius() for c, sp in zip(centres, spheres))
        return out


class ContactProbe(PosedModel):
    """Vertical force (N) on each foot from the model's contact forces (Hunt-Crossley or
    smooth sphere), for given coordinates and speeds."""

    def __init__(self, model):
        from fastenv.sim import contact_foot, foot_record_indices

        super().__init__(model)
        self.forces = {}
        for f in self.model.getForceSet():
            if f.getConcreteClassName() not in ("HuntCrossleyForce", "SmoothSphereHalfSpaceForce"):
                continue
            labels = [f.getRecordLabels().get(i) for i in range(f.getRecordLabels().size())]
            idx = [i for i in foot_record_indices(labels) if labels[i].endswith(".force.Y")]
            foot = contact_foot(f.getName())
            side = "r" if foot.endswith("_r") or "_r_" in foot or foot.startswith("r_") \
                else "l"
            self.forces.setdefault(side, []).append((f, idx))

    def __call__(self, motion: Motion, speeds: np.ndarray | None = None) -> dict:
        """``{side: (T,)}`` along ``motion``, at ``speeds`` (default ``motion.speeds``)."""
        speeds = motion.speeds if speeds is None else speeds
        T = len(motion.time)
        out = {s: np.zeros(T) for s in SIDES}
        for k in range(T):
            self.pose(motion, k, speeds)
            self.model.realizeDynamics(self.state)
            for s, forces in self.forces.items():
                for f, idx in forces:
                    rv = f.getRecordValues(self.state)
                    out[s][k] += sum(rv.get(i) for i in idx)
        return out


def com_kinematics(motion: Motion, model) -> tuple[np.ndarray, np.ndarray]:
    """Whole-body centre of mass position and velocity (T, 3) along a motion with speeds."""
    posed = PosedModel(model)
    pos, vel = np.zeros((len(motion.time), 3)), np.zeros((len(motion.time), 3))
    for k in range(len(motion.time)):
        posed.pose(motion, k, motion.speeds)
        posed.model.realizeVelocity(posed.state)
        pos[k] = posed.model.calcMassCenterPosition(posed.state).to_numpy()
        vel[k] = posed.model.calcMassCenterVelocity(posed.state).to_numpy()
    return pos, vel


# ------------------------------------------------------------------ shipped references
def reference_model_path(ref):
    """The model a reference was built on: the base model or default model variant
    whose file digest is the reference's ``model_digest`` (ValueError if none is)."""
    from fastenv.envs.variants import VARIANTS, base_model_path, variant_path
    from fastenv.references import model_digest

    candidates = [base_model_path(spec.base) for spec in VARIANTS.values()]
    candidates += [variant_path(name) for name in VARIANTS]
    for path in dict.fromkeys(candidates):
        if model_digest(path) == ref.model_digest:
            return path
    raise ValueError(f"reference {ref.name!r}: no base model or default variant has its "
                     f"model digest {ref.model_digest!r}; expected one of "
                     f"{sorted(VARIANTS)} or their base models")


def save_in(ref, folder) -> Path:
    """Save a reference as ``<folder>/<name>.npz`` (the folder made if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return ref.save(folder / f"{ref.name}.npz")


def rekinematics(name: str, *, references_dir: Path, out_dir: Path | None = None,
                 log=print) -> dict:
    """Recompute a shipped reference's body positions and velocities from its own
    coordinates and speeds with ``fastenv.references.body_kinematics`` (the code
    ``build_reference`` writes them with) on the model it was built on, and save it
    to ``out_dir`` (default ``references_dir``). No solve runs: every other array is
    kept as it is. The centre of mass is recomputed as a check and must come out
    unchanged (it never read the stale frame cache that froze the bodies before the
    fix). Returns the largest changes, in m and m/s."""
    from fastenv.references import Reference, body_kinematics
    from fastenv.sim import Simulation

    src = Path(references_dir) / f"{name}.npz"
    if not src.is_file():
        names = sorted(p.stem for p in Path(references_dir).glob("*.npz"))
        raise ValueError(f"no reference {name!r} in {references_dir}; expected one of {names}")
    ref = Reference.load(src)
    model_path = reference_model_path(ref)
    sim = Simulation(model_path, energetics=False)
    if list(sim.body_names) != list(ref.body_names):
        raise ValueError(f"reference {name!r}: bodies {ref.body_names} are not those of "
                         f"{model_path} ({sim.body_names})")
    body_pos, body_vel, com_pos, com_vel = body_kinematics(sim, ref.q, ref.qdot)
    com_change = max(np.abs(com_pos - ref.com_pos).max(), np.abs(com_vel - ref.com_vel).max())
    if com_change > 1e-9:
        raise RuntimeError(f"reference {name!r}: the centre of mass changed by {com_change:.3g} "
                           "on recomputation; its coordinates and model no longer agree")
    change = dict(name=name, model=Path(model_path).name,
                  body_pos_m=float(np.abs(body_pos - ref.body_pos).max()),
                  body_vel_m_s=float(np.abs(body_vel - ref.body_vel).max()),
                  com=float(com_change))
    ref.body_pos, ref.body_vel = body_pos, body_vel
    save_in(ref, out_dir or references_dir)
    log(f"[{name}] body kinematics on {change['model']}: positions changed by up to "
        f"{change['body_pos_m']:.3f} m, velocities by up to {change['body_vel_m_s']:.3f} m/s; "
        f"centre of mass unchanged ({com_change:.1g})")
    return change
