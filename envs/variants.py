"""Model variants built with the OpenSim API from the ``osim-rl`` base models.

The base ``.osim`` files and their meshes come from the ``osim-rl`` distribution, a
build requirement: ``setup.py`` copies them into this package's ``models/`` at build
time (never into the repository), and osim-rl's Python code, which drags in the legacy
``gym`` API, is never imported nor installed at run time. Each variant is built
once, on first use, into a cache directory and reused by every worker process:

>>> path = variant_path("torque2d", max_actuation=300.0)
>>> model = opensim.Model(str(path))

Builds are deterministic and cached under a sha256 of everything that decides
the output (base file bytes, variant name, full parameter set with defaults,
``BUILDER_VERSION`` and the OpenSim version, since the saved XML format follows
OpenSim). Files are written to a temp file in the cache directory, checked to
load, and published with ``os.replace``, so many processes racing to build the
same variant each publish an identical, complete file and nobody ever reads a
half-written one.

Adding a variant (e.g. a scaled cerebral-palsy model) means adding one
``VariantSpec`` to ``VARIANTS``: a base file, default params and a builder that
edits the loaded ``opensim.Model`` in place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from xml.etree import ElementTree

import opensim

__all__ = [
    "BUILDER_VERSION",
    "PELVIS_TRANSLATIONS",
    "LOCKED_KNEE_COORDINATES",
    "LOCKED_KNEE_REMOVED_MUSCLES",
    "LOCKED_KNEE_REMOVED_LIMIT_FORCES",
    "VariantSpec",
    "VARIANTS",
    "base_model_path",
    "mesh_dir",
    "models_dir",
    "cache_dir",
    "register_geometry_search_path",
    "variant_path",
    "actuated_coordinates",
    "PALSY_CONTRACTURE_MUSCLES",
    "PALSY_HEAD_MESH",
    "standing_height",
    "MUSCLE_MODELS",
    "CONTACT_MODELS",
    "DGF_ACTIVE_FORCE_WIDTH",
    "SMOOTH_CONTACT_TRANSITION_VELOCITY",
    "DGF_TENDON_PRELOAD",
    "preload_rigid_tendons",
]

# Bump whenever a builder's output changes: it is part of the cache key, so old
# cached files are simply never looked up again.
BUILDER_VERSION = 5   # 2: one HuntCrossleyForce per contact sphere; 3: 2D DGF muscles
                      # without passive fibre force, as the 2D references were solved;
                      # 4: 3D DGF muscles' Achilles tendons preloaded; 5: the palsy
                      # child's too

# The global (root) translations are never actuated in torque models: a force
# pushing the pelvis through space would be an unphysical "hand of god".
PELVIS_TRANSLATIONS = ("pelvis_tx", "pelvis_ty", "pelvis_tz")

LOCKED_KNEE_COORDINATES = ("knee_angle_l", "ankle_angle_l")

# osim-rl's prosthetic models (``gait9dof18musc_pros_20180507.osim``,
# ``gait14dof22musc_pros_20180507.osim``, ``..._planar_pros_...``) replace the
# *right* shank by a prosthesis and lack exactly gastroc_r, soleus_r and
# tib_ant_r, i.e. the muscles inserting below the knee; thigh muscles that
# cross the knee (hamstrings, bifemsh, rect_fem, vasti) are kept. We mirror
# that choice on the left side so the locked-knee muscle sets match osim-rl's
# prosthetic action layout. The kept knee-crossing muscles still act at the hip
# where they cross it; at the locked knee their moment is absorbed by the lock. Two
# of them cross the knee alone (vasti_l, bifemsh_l): with it locked they move nothing,
# and stay only for that layout (excited, they still cost metabolic energy).
LOCKED_KNEE_REMOVED_MUSCLES = ("gastroc_l", "soleus_l", "tib_ant_l")

# The base knee limit is active at q=0 (upper limit 0 deg with a 10 deg
# transition) and would push against the lock forever. On a locked coordinate
# a limit force can only load the lock constraint, never move anything, so
# these are removed: identical motion, less work per step, and no misleading
# "limit" reaction in force reports.
LOCKED_KNEE_REMOVED_LIMIT_FORCES = ("KneeLimit_l", "AnkleLimit_l")

_MUSCLE2D_BASE = "gait9dof18musc.osim"
_MUSCLE3D_BASE = "gait14dof22musc_20170320.osim"

# Loading the old (format 30000) base files logs an "Updating Model file"
# info line per load; fastenv creates many models per process, so only errors
# are shown. This is process-global, which is intended for this project.
opensim.Logger.setLevelString("error")


# ---------------------------------------------------------------- locating --


def models_dir() -> pathlib.Path:
    """``models/`` of the installed ``fastenv.envs``: the osim-rl base models and their
    meshes, copied there at build time (``setup.py``), so osim-rl is not needed at run
    time."""
    return pathlib.Path(str(resources.files("fastenv.envs") / "models"))


def base_model_path(filename: str) -> pathlib.Path:
    """Path of a bundled base model (``gait9dof18musc.osim``, ``gait14dof22musc_20170320.osim``)."""
    path = models_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"base model {filename!r} not found at {path}; it is copied from osim-rl when "
            "fastenv is built: reinstall fastenv (pip install -e . or the wheel)"
        )
    return path


def mesh_dir() -> pathlib.Path:
    """The bundled bone meshes (``.vtp``) of the base models."""
    return models_dir() / "meshes"


def register_geometry_search_path() -> pathlib.Path | None:
    """Point OpenSim's (process-global) mesh search path at the bundled meshes.

    Call this only to visualise. The meshes are not in a ``Geometry`` folder beside the
    models, and cached variants live elsewhere, so their mesh names do not resolve
    otherwise, which is deliberate: OpenSim parses every mesh it finds on each ``Model``
    load (about 4x the load time of the 3D model, and memory per instance), a waste for
    headless RL workers. Missing meshes never make loading fail; they only log warnings,
    which the "error" log level set by this module hides.
    Returns the folder added, or None if there are no meshes.
    """
    geometry = mesh_dir()
    if not geometry.is_dir():
        return None
    opensim.ModelVisualizer.addDirToGeometrySearchPaths(str(geometry))
    return geometry


def cache_dir() -> pathlib.Path:
    """``$FASTENV_CACHE`` if set, else ``~/.cache/fastenv/models`` (read on every call)."""
    env = os.environ.get("FASTENV_CACHE")
    return (
        pathlib.Path(env).expanduser()
        if env
        else pathlib.Path.home() / ".cache" / "fastenv" / "models"
    )


# ---------------------------------------------------------- model editing --


def actuated_coordinates(
    model: opensim.Model, *, pelvis_residuals: bool = True, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Unlocked coordinates that get a torque actuator, in model order.

    Pelvis translations are never actuated; pelvis rotations are only actuated
    with ``pelvis_residuals`` (these residual torques make balance easy, which
    is what imitation baselines usually want).
    """
    skip = set(PELVIS_TRANSLATIONS) | set(exclude)
    names = []
    coords = model.getCoordinateSet()
    for i in range(coords.getSize()):
        c = coords.get(i)
        name = c.getName()
        if c.get_locked() or name in skip:
            continue
        if not pelvis_residuals and name.startswith("pelvis_"):
            continue
        names.append(name)
    return names


def _remove_forces(model: opensim.Model, keep: Callable[[opensim.Force], bool]) -> None:
    fs = model.updForceSet()
    for i in reversed(range(fs.getSize())):
        if not keep(fs.get(i)):
            fs.remove(i)


def _remove_muscles(model: opensim.Model, names: tuple[str, ...] | None = None) -> None:
    """Remove the named muscles (all muscles when ``names`` is None)."""
    if names is not None:
        missing = set(names) - {m.getName() for m in _iter(model.getMuscles())}
        if missing:
            raise ValueError(f"muscles {sorted(missing)} not in model {model.getName()!r}")
    _remove_forces(
        model,
        lambda f: (
            not (
                opensim.Muscle.safeDownCast(f) is not None
                and (names is None or f.getName() in names)
            )
        ),
    )


def _remove_named_forces(model: opensim.Model, names: tuple[str, ...]) -> None:
    present = {f.getName() for f in _iter(model.getForceSet())}
    missing = set(names) - present
    if missing:
        raise ValueError(f"forces {sorted(missing)} not in model {model.getName()!r}")
    _remove_forces(model, lambda f: f.getName() not in names)


def _add_coordinate_actuators(
    model: opensim.Model, coordinates: list[str], optimal_force: float
) -> None:
    for name in coordinates:
        act = opensim.CoordinateActuator(name)
        act.setName(name)
        act.setOptimalForce(optimal_force)
        act.setMinControl(-1.0)
        act.setMaxControl(1.0)
        model.addForce(act)


def _lock_at_zero(model: opensim.Model, coordinates: tuple[str, ...]) -> None:
    """Lock coordinates at 0 rad, like a rigid prosthetic knee and ankle.

    Locking (rather than welding the joints) keeps the coordinate list, and so
    the observation layout, identical to the unlocked model.
    """
    coords = model.updCoordinateSet()
    for name in coordinates:
        c = coords.get(name)
        c.setDefaultValue(0.0)
        c.setDefaultSpeedValue(0.0)
        c.setDefaultLocked(True)


def _iter(set_):
    for i in range(set_.getSize()):
        yield set_.get(i)


def _build_muscle(model: opensim.Model) -> None:
    """Base model as is: loading upgrades the old file format, saving keeps it."""


def _build_torque(model: opensim.Model, *, max_actuation: float, pelvis_residuals: bool) -> None:
    _remove_muscles(model)
    _add_coordinate_actuators(
        model, actuated_coordinates(model, pelvis_residuals=pelvis_residuals), max_actuation
    )


def _build_locked_knee(model: opensim.Model) -> None:
    _lock_at_zero(model, LOCKED_KNEE_COORDINATES)
    _remove_muscles(model, LOCKED_KNEE_REMOVED_MUSCLES)
    _remove_named_forces(model, LOCKED_KNEE_REMOVED_LIMIT_FORCES)


def _build_torque_locked_knee(
    model: opensim.Model, *, max_actuation: float, pelvis_residuals: bool
) -> None:
    # Locking first makes the torque builder skip the locked coordinates.
    _build_locked_knee(model)
    _build_torque(model, max_actuation=max_actuation, pelvis_residuals=pelvis_residuals)


# ------------------------------------------------------ cerebral palsy --
#
# ``palsy3d`` re-creates BioImitation-Gym's MusclePalsyImitation3D subject, a
# child with spastic diplegia walking in crouch gait (1.61 m, 41.5 kg), from
# the generic adult 3D model: OpenSim scaling to the child's size, then the
# two muscle deficits of spastic diplegia that matter most for crouch gait.

# Stature is measured on the model itself rather than taken from the nominal
# 1.80 m quoted for gait2392: top of the skull mesh minus the lowest
# contact-sphere point, at the default pose. For the generic model this is
# 1.696 m (bone mesh, no scalp); the scaled child is matched with the same
# measure. The mesh is bundled with the base models and is not part
# of the cache key (only the base model bytes are).
PALSY_HEAD_MESH = "hat_skull.vtp"

# Contractured muscles: hamstrings (knee extension limited with the hip
# flexed, as in crouch gait) and gastrocnemius (dorsiflexion limited with the
# knee extended). Soleus is left as in the generic model.
PALSY_CONTRACTURE_MUSCLES = ("hamstrings_r", "gastroc_r", "hamstrings_l", "gastroc_l")

_PALSY_DEFAULTS = {
    # BioImitation-Gym's cerebral-palsy subject.
    "height": 1.61,
    "mass": 41.5,
    # Voluntary strength relative to typically developing (TD) children of the
    # same size. Darras et al. 2021 (Front Neurol 12:617971; 160 ambulatory
    # children with bilateral spastic CP, 106 of them diplegic, vs 86 TD,
    # hand-held dynamometry) report, for the CP group, force deficits
    # relative to the TD mean of 13% (hip extensors), 32% (hip flexors), 27%
    # (adductors), 52% (abductors), 37% (knee extensors) and 53% (knee
    # flexors): about 36% on average, hence 0.65 for every muscle. This is in
    # line with muscle volumes in CP reduced by up to 40% (Handsfield et al.
    # 2022, BMC Musculoskelet Disord 23, review "Muscle architecture, growth,
    # and biological remodelling in cerebral palsy"). Steele et al. 2012
    # (J Biomech 45:2564-2569) model weakness in crouch gait the same way, as
    # a scaled-down max isometric force.
    "strength": 0.65,
    # Fractional reduction of the optimal fibre length of the
    # PALSY_CONTRACTURE_MUSCLES, i.e. fewer sarcomeres in series: contractured
    # CP hamstrings have over-stretched (long) sarcomeres in vivo and a
    # stiffer extracellular matrix (Smith et al. 2011, J Physiol 589:
    # 2625-2639; Mathewson & Lieber 2015, Phys Med Rehabil Clin N Am 26:57-67),
    # and CP muscles have fewer sarcomeres in series (Handsfield et al. 2022),
    # so the fibres reach their passive range at shorter muscle-tendon lengths.
    # Tendon slack length is kept: CP muscles present longer, not shorter,
    # tendons (same review). Only some crouch-gait limbs have short
    # hamstrings (10 of 32 in Thompson et al. 2001, J Pediatr Orthop 21:
    # 383-387); this subject is modelled as one of them. 0.2 is our choice of
    # a moderate level, not a measured mean: with the hip flexed 30-45 deg (as
    # in crouch) and the knee straight, the passive hamstring force is about 5x
    # that of the plainly scaled model (400 vs 80 N at 30 deg), and passive
    # gastrocnemius force at 10 deg dorsiflexion about 3x (see the tests).
    "contracture": 0.2,
}


@functools.cache
def _mesh_vertices(filename: str) -> tuple[tuple[float, float, float], ...]:
    """Vertices of an ASCII ``.vtp`` mesh of the bundled base models."""
    path = mesh_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"mesh {filename!r} not found at {path}; it is copied from "
            "osim-rl when fastenv is built: reinstall fastenv"
        )
    points = ElementTree.parse(path).getroot().find("./PolyData/Piece/Points/DataArray")
    if points is None or points.get("format") != "ascii":
        raise ValueError(f"{path} has no ASCII point array")
    values = [float(v) for v in points.text.split()]
    return tuple(zip(values[0::3], values[1::3], values[2::3]))


def standing_height(model: opensim.Model, state: opensim.State | None = None) -> float:
    """Model stature in m: top of the skull mesh minus the lowest contact-sphere point.

    Measured at ``state`` (default: the model's default pose, from
    ``initSystem``), with the mesh's scale factors applied, so the same
    measure works on the generic and on scaled models. The vertical is
    ground y.
    """
    if state is None:
        state = model.initSystem()
    model.realizePosition(state)
    meshes = [opensim.Mesh.safeDownCast(g) for g in _iter_components(model, "Mesh")]
    skull = [m for m in meshes if m is not None and m.getGeometryFilename() == PALSY_HEAD_MESH]
    if len(skull) != 1:
        raise ValueError(
            f"model {model.getName()!r} has {len(skull)} {PALSY_HEAD_MESH!r} meshes, expected 1"
        )
    mesh = skull[0]
    frame = mesh.getFrame()
    scale = mesh.get_scale_factors()
    # Ground-y row of the frame's rotation: the y components of its axes.
    row = [
        frame.expressVectorInGround(state, opensim.Vec3(*axis))[1]
        for axis in ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    ]
    top = frame.getPositionInGround(state)[1] + max(
        sum(row[k] * scale[k] * v[k] for k in range(3)) for v in _mesh_vertices(PALSY_HEAD_MESH)
    )

    bottoms = []
    for geometry in _iter(model.getContactGeometrySet()):
        sphere = opensim.ContactSphere.safeDownCast(geometry)
        if sphere is not None:
            centre = sphere.getFrame().findStationLocationInGround(state, sphere.get_location())
            bottoms.append(centre[1] - sphere.getRadius())
    if not bottoms:
        raise ValueError(f"model {model.getName()!r} has no ContactSphere to stand on")
    return top - min(bottoms)


def _iter_components(model: opensim.Model, class_name: str):
    for component in model.getComponentsList():
        if component.getConcreteClassName() == class_name:
            yield component


def _scale_uniformly(
    model: opensim.Model, state: opensim.State, factor: float, mass: float
) -> None:
    """OpenSim scaling of every body by ``factor``, total mass set to ``mass``.

    ``Model.scale`` scales body geometry, joint frames and knee translation
    functions, muscle path points, and (through the muscles' post-scale step,
    as the ScaleTool does) each muscle's optimal fibre and tendon slack length
    by its path-length ratio; with ``preserveMassDist`` masses keep their
    distribution and sum to ``mass``. It leaves contact spheres and the
    default pelvis height alone, so those are scaled here too: the child
    stands on its own, proportionally smaller, feet at the same pose.
    """
    scale_set = opensim.ScaleSet()
    for body in _iter(model.getBodySet()):
        scale = opensim.Scale()
        scale.setSegmentName(body.getName())
        scale.setScaleFactors(opensim.Vec3(factor))
        scale.setApply(True)
        scale_set.cloneAndAppend(scale)
    if not model.scale(state, scale_set, True, mass):
        raise RuntimeError(f"OpenSim failed to scale model {model.getName()!r}")

    for geometry in _iter(model.updContactGeometrySet()):
        sphere = opensim.ContactSphere.safeDownCast(geometry)
        if sphere is None:
            continue  # the ground half-space is not part of the body
        loc = sphere.get_location()
        sphere.set_location(opensim.Vec3(loc[0] * factor, loc[1] * factor, loc[2] * factor))
        sphere.setRadius(sphere.getRadius() * factor)
    pelvis_ty = model.updCoordinateSet().get("pelvis_ty")
    pelvis_ty.setDefaultValue(pelvis_ty.getDefaultValue() * factor)


def _build_palsy(
    model: opensim.Model, *, height: float, mass: float, strength: float, contracture: float
) -> None:
    """Scale the adult model to the child, then weaken all muscles and shorten the
    contractured ones."""
    for key, value in (("height", height), ("mass", mass), ("strength", strength)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{key} must be a finite number > 0, got {value!r}")
    if not 0.0 <= contracture < 1.0:
        raise ValueError(f"contracture must be in [0, 1), got {contracture!r}")

    state = model.initSystem()
    generic_mass = model.getTotalMass(state)
    factor = height / standing_height(model, state)
    _scale_uniformly(model, state, factor, mass)

    # Force follows cross-sectional area, i.e. length^2 ~ mass^(2/3) under
    # geometric similarity (the allometric normalisation of strength to body
    # size recommended by Jaric 2002, Sports Med 32:615-631); that gives a
    # typically developing child of this size, then ``strength`` for CP.
    force_factor = (mass / generic_mass) ** (2.0 / 3.0) * strength
    for muscle in _iter(model.updMuscles()):
        muscle.setMaxIsometricForce(muscle.getMaxIsometricForce() * force_factor)
    muscles = model.updMuscles()
    for name in PALSY_CONTRACTURE_MUSCLES:
        muscle = muscles.get(name)
        muscle.setOptimalFiberLength(muscle.getOptimalFiberLength() * (1.0 - contracture))


# ------------------------------------------------- muscle and contact models --
#
# The osim-rl models have Thelen muscles (compliant tendons) and Hunt-Crossley
# foot contacts. The "Moco model family" -- DeGroote-Fregly 2016 muscles with
# rigid tendons and smooth sphere contacts, the models the references are solved
# with (refgen) -- is offered as an option on every variant: each evaluation of
# the dynamics is cheaper (no fibre-length states; smooth contact forces), at the
# price of different physics. Both conversions use the OpenSim API only.

#: ``muscle_model`` values: osim-rl's Thelen2003 muscles, or DeGroote-Fregly 2016.
MUSCLE_MODELS = ("thelen", "degroote")
#: ``contact_model`` values: osim-rl's Hunt-Crossley forces, or one
#: SmoothSphereHalfSpaceForce per contact sphere.
CONTACT_MODELS = ("hunt_crossley", "smooth")

#: Width scale of the DeGroote-Fregly active force-length curve, as in every refgen
#: solve: with rigid tendons the fibres operate over a wider range of lengths than
#: with the Thelen models' compliant tendons, and the standard curve would leave
#: muscles weak over much of the walking range.
DGF_ACTIVE_FORCE_WIDTH = 1.5
#: Load (in maximum isometric forces) at whose length the 3D Moco family's compliant
#: tendons become rigid (:func:`preload_rigid_tendons`): the base models' Achilles
#: tendon stretches 10% at maximum force, and at its unloaded slack length a rigid one
#: left that stretch to the triceps surae's fibres, whose passive force then carried
#: 86% of walking3d's push-off (docs/references.md#what-carries-the-ankle). At about a
#: third of maximum force, a stance load, solves converge and the push-off is active.
#: The palsy child's too (since 2026-12-06): on its unloaded slack lengths its
#: reference's left ankle pushed off with 80% passive force (refgen check's push-off).
DGF_TENDON_PRELOAD = 0.3
#: Stick-slip transition velocity (m/s) of the smooth contacts, as in refgen's
#: Moco models (Hunt-Crossley's own is 0.1 m/s).
SMOOTH_CONTACT_TRANSITION_VELOCITY = 0.2


def dgf_tendon_length(force: float, strain_at_one: float) -> float:
    """Normalized tendon length (over slack) at which a DeGroote-Fregly tendon whose
    strain at maximum isometric force is ``strain_at_one`` carries ``force`` (in
    maximum isometric forces): OpenSim's own inverse of that tendon's curve."""
    muscle = opensim.DeGrooteFregly2016Muscle()
    muscle.set_tendon_strain_at_one_norm_force(float(strain_at_one))
    muscle.finalizeFromProperties()
    return float(muscle.calcTendonForceLengthInverseCurve(float(force)))


#: tendons stiffer than this strain at maximum force keep their slack length when
#: :func:`preload_rigid_tendons` recalibrates the compliant ones (the base models'
#: tendons are at 0.049, the Achilles tendon at 0.1)
STIFF_TENDON_STRAIN = 0.06


def preload_rigid_tendons(model: opensim.Model, force: float) -> None:
    """Lengthen the slack length of each compliant tendon (strain at maximum force
    above :data:`STIFF_TENDON_STRAIN`, read from Thelen or DeGroote-Fregly muscles) to
    the length it has carrying ``force`` maximum isometric forces, so that the rigid
    tendon a Moco solve puts in its place leaves the fibres the length they have at
    that load with the compliant one (rather than the tendon's stretch added to them)."""
    if not 0.0 <= force < 1.0:
        raise ValueError(f"tendon preload must be in [0, 1) maximum isometric forces, "
                         f"got {force!r}")
    for muscle in _iter(model.updMuscles()):
        thelen = opensim.Thelen2003Muscle.safeDownCast(muscle)
        dgf = opensim.DeGrooteFregly2016Muscle.safeDownCast(muscle)
        if thelen is not None:
            strain = thelen.get_FmaxTendonStrain()
        elif dgf is not None:
            strain = dgf.get_tendon_strain_at_one_norm_force()
        else:
            continue
        if strain <= STIFF_TENDON_STRAIN:
            continue
        muscle.setTendonSlackLength(muscle.getTendonSlackLength()
                                    * dgf_tendon_length(force, strain))


def _degroote_muscles(model: opensim.Model, passive_fiber_force: bool,
                      tendon_preload: float = 0.0) -> None:
    """Replace every muscle by a DeGroote-Fregly 2016 muscle with a rigid tendon.

    ``replaceMuscles`` keeps each muscle's name, path, max isometric force, optimal
    fibre length, tendon slack length, pennation, max contraction velocity,
    activation time constants and control limits, so variant edits made before
    (the palsy child's weakness and contractures) carry over. Passive fibre force is
    on or off as in the Moco solves of the references on this model
    (``VariantSpec.dgf_passive_fiber_force``), so that a reference's excitations
    (``excitations="residual"``) drive the model they were solved for; so are the
    compliant tendons' slack lengths (``VariantSpec.dgf_tendon_preload``,
    :func:`preload_rigid_tendons`).
    """
    if not any(True for _ in _iter(model.getMuscles())):
        raise ValueError(f"model {model.getName()!r} has no muscles to replace")
    if tendon_preload > 0:
        preload_rigid_tendons(model, tendon_preload)
    opensim.DeGrooteFregly2016Muscle.replaceMuscles(model)
    for muscle in _iter(model.updMuscles()):
        dgf = opensim.DeGrooteFregly2016Muscle.safeDownCast(muscle)
        dgf.set_ignore_tendon_compliance(True)
        dgf.set_ignore_passive_fiber_force(not passive_fiber_force)
        dgf.set_active_force_width_scale(DGF_ACTIVE_FORCE_WIDTH)


def _contact_geometry_names(force: opensim.Force) -> list[str]:
    """The contact geometry names of a HuntCrossleyForce (its contact parameters'
    ``geometry`` lists; the Python bindings expose them only as property text)."""
    sets = force.getPropertyByName("contact_parameters").getValueAsObject(0)
    objects = sets.getPropertyByName("objects")
    names = []
    for k in range(objects.size()):
        text = objects.getValueAsObject(k).getPropertyByName("geometry").toString()
        names.extend(text.strip("()").split())
    return names


def _hunt_crossley_forces(model: opensim.Model) -> list:
    """``(force, sphere names, other geometry names, {geometry name: class})`` for each
    HuntCrossleyForce of ``model``, in force-set order."""
    geometry = model.getContactGeometrySet()
    forces = model.getForceSet()
    out = []
    for i in range(forces.getSize()):
        force = forces.get(i)
        if force.getConcreteClassName() != "HuntCrossleyForce":
            continue
        names = _contact_geometry_names(force)
        kinds = {n: geometry.get(n).getConcreteClassName() for n in names}
        out.append((opensim.HuntCrossleyForce.safeDownCast(force),
                    [n for n in names if kinds[n] == "ContactSphere"],
                    [n for n in names if kinds[n] != "ContactSphere"], kinds))
    return out


def _hunt_crossley_parameters(hc) -> tuple:
    """Stiffness, dissipation, static, dynamic and viscous friction, transition
    velocity and appliesForce of a HuntCrossleyForce."""
    return (hc.getStiffness(), hc.getDissipation(), hc.getStaticFriction(),
            hc.getDynamicFriction(), hc.getViscousFriction(), hc.getTransitionVelocity(),
            hc.get_appliesForce())


def _smooth_contacts(model: opensim.Model) -> None:
    """Replace each HuntCrossleyForce by one SmoothSphereHalfSpaceForce per sphere.

    Same spheres, half space, stiffness, dissipation and friction coefficients; the
    transition velocity is :data:`SMOOTH_CONTACT_TRANSITION_VELOCITY`. The forces are
    named ``<Hunt-Crossley force>:<sphere>`` (``foot_r:r_heel``): ``Simulation`` sums
    the forces of one foot into that foot's row, so the observation keeps its layout.
    """
    geometry = model.getContactGeometrySet()
    replaced = []
    for hc, spheres, others, kinds in _hunt_crossley_forces(model):
        planes = [n for n in others if kinds[n] == "ContactHalfSpace"]
        if len(planes) != 1 or not spheres or len(others) != 1:
            raise ValueError(f"contact force {hc.getName()!r} of {model.getName()!r} is not "
                             f"spheres on one half space: {kinds}")
        replaced.append((hc.getName(), planes[0], spheres, _hunt_crossley_parameters(hc)[:5]))
    if not replaced:
        raise ValueError(f"model {model.getName()!r} has no HuntCrossleyForce to replace")
    names = {name for name, *_ in replaced}
    _remove_forces(model, lambda f: f.getName() not in names)
    for name, plane, spheres, (k, c, mu_s, mu_d, mu_v) in replaced:
        for sphere in spheres:
            force = opensim.SmoothSphereHalfSpaceForce(
                f"{name}:{sphere}", opensim.ContactSphere.safeDownCast(geometry.get(sphere)),
                opensim.ContactHalfSpace.safeDownCast(geometry.get(plane)))
            force.set_stiffness(k)
            force.set_dissipation(c)
            force.set_static_friction(mu_s)
            force.set_dynamic_friction(mu_d)
            force.set_viscous_friction(mu_v)
            force.set_transition_velocity(SMOOTH_CONTACT_TRANSITION_VELOCITY)
            model.addForce(force)


def _split_hunt_crossley(model: opensim.Model) -> None:
    """Give each contact sphere a HuntCrossleyForce of its own.

    Why: OpenSim 4.6's HuntCrossleyForce stops at the first of its contacts whose
    Hunt-Crossley term f_H (1 + 1.5 c v) is negative (a sphere leaving the floor
    faster than 1 / (1.5 c): 0.44 m/s at the 2D models' c = 1.5, 0.67 m/s at the 3D
    models' c = 1.0) and applies nothing for
    the contacts after it. osim-rl's feet put the heel first, so a heel rising
    fast at heel-off dropped the loaded toe's force (measured: identical generalized
    accelerations with the foot's force on and off; ``tests/test_variants.py``
    builds the two-sphere case). One force per sphere applies exactly the same
    forces whenever no term is negative. The forces are named ``<force>:<sphere>``
    (``foot_r:r_heel``); ``Simulation`` sums a foot's forces into its row, so the
    observation keeps its layout.
    """
    split = []
    for hc, spheres, others, kinds in _hunt_crossley_forces(model):
        if len(spheres) < 2:
            continue
        if len(others) != 1:
            raise ValueError(f"contact force {hc.getName()!r} of {model.getName()!r} is not "
                             f"spheres on one surface: {kinds}")
        split.append((hc.getName(), others[0], spheres, _hunt_crossley_parameters(hc)))
    names = {name for name, *_ in split}
    _remove_forces(model, lambda f: f.getName() not in names)
    for name, surface, spheres, (k, c, mu_s, mu_d, mu_v, v_t, on) in split:
        for sphere in spheres:
            force = opensim.HuntCrossleyForce()
            force.setName(f"{name}:{sphere}")
            force.setStiffness(k)
            force.setDissipation(c)
            force.setStaticFriction(mu_s)
            force.setDynamicFriction(mu_d)
            force.setViscousFriction(mu_v)
            force.setTransitionVelocity(v_t)
            force.set_appliesForce(on)
            force.addGeometry(sphere)
            force.addGeometry(surface)
            model.addForce(force)


def _apply_models(model: opensim.Model, muscle_model: str, contact_model: str,
                  passive_fiber_force: bool = True, tendon_preload: float = 0.0) -> None:
    if muscle_model == "degroote":
        _degroote_muscles(model, passive_fiber_force, tendon_preload)
    if contact_model == "smooth":
        _smooth_contacts(model)
    else:
        _split_hunt_crossley(model)


# ------------------------------------------------------------------ specs --

_TORQUE_DEFAULTS = {"max_actuation": 200.0, "pelvis_residuals": True}


@dataclass(frozen=True)
class VariantSpec:
    """How to build one variant.

    ``build(model, **params)`` edits the loaded base model in place; ``defaults``
    lists every accepted param with its default, whose type each given value is
    coerced to (so ``max_actuation=200`` and ``200.0`` hit the same cache entry).
    ``keep_name`` keeps the base model's name (the plain muscle models).
    ``dgf_passive_fiber_force``: whether the ``muscle_model="degroote"`` version keeps
    passive fibre force, as the references' Moco solves on this model did (the 2D
    solves leave it out, the 3D ones keep it: the palsy contractures act through it).
    ``dgf_tendon_preload``: > 0, the compliant tendons' slack lengths in that version
    are their length at this load (:func:`preload_rigid_tendons`), as in the solves.
    """

    base: str
    build: Callable[..., None]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""
    keep_name: bool = False
    dgf_passive_fiber_force: bool = True
    dgf_tendon_preload: float = 0.0


VARIANTS: dict[str, VariantSpec] = {
    "muscle2d": VariantSpec(
        _MUSCLE2D_BASE,
        _build_muscle,
        {},
        "planar 9-dof, 18 Thelen muscles (osim-rl base model)",
        keep_name=True,
        dgf_passive_fiber_force=False,
    ),
    "muscle3d": VariantSpec(
        _MUSCLE3D_BASE,
        _build_muscle,
        {},
        "3D 14-dof, 22 Thelen muscles (osim-rl base model)",
        keep_name=True,
        dgf_tendon_preload=DGF_TENDON_PRELOAD,
    ),
    "torque2d": VariantSpec(
        _MUSCLE2D_BASE,
        _build_torque,
        _TORQUE_DEFAULTS,
        "muscle2d with muscles replaced by coordinate torques",
    ),
    "torque3d": VariantSpec(
        _MUSCLE3D_BASE,
        _build_torque,
        _TORQUE_DEFAULTS,
        "muscle3d with muscles replaced by coordinate torques",
    ),
    "muscle2d_lockedknee": VariantSpec(
        _MUSCLE2D_BASE,
        _build_locked_knee,
        {},
        "muscle2d, left knee+ankle locked at 0, left shank muscles removed",
        dgf_passive_fiber_force=False,
    ),
    "muscle3d_lockedknee": VariantSpec(
        _MUSCLE3D_BASE,
        _build_locked_knee,
        {},
        "muscle3d, left knee+ankle locked at 0, left shank muscles removed",
        dgf_tendon_preload=DGF_TENDON_PRELOAD,
    ),
    "torque2d_lockedknee": VariantSpec(
        _MUSCLE2D_BASE,
        _build_torque_locked_knee,
        _TORQUE_DEFAULTS,
        "torque2d, left knee+ankle locked at 0 and unactuated",
    ),
    "torque3d_lockedknee": VariantSpec(
        _MUSCLE3D_BASE,
        _build_torque_locked_knee,
        _TORQUE_DEFAULTS,
        "torque3d, left knee+ankle locked at 0 and unactuated",
    ),
    "palsy3d": VariantSpec(
        _MUSCLE3D_BASE,
        _build_palsy,
        _PALSY_DEFAULTS,
        "muscle3d scaled by OpenSim to a child with spastic diplegia (1.61 m, 41.5 kg; "
        "BioImitation-Gym's MusclePalsyImitation3D subject), all muscles weakened, "
        "hamstrings and gastrocnemius contractured (shorter optimal fibres)",
        dgf_tendon_preload=DGF_TENDON_PRELOAD,
    ),
}

# ---------------------------------------------------------------- caching --


def _canonical_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        spec = VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown model variant {name!r}; valid names: {sorted(VARIANTS)}"
        ) from None
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise ValueError(
            f"unknown params {sorted(unknown)} for variant {name!r}; "
            f"valid params: {sorted(spec.defaults) or 'none'}"
        )
    out = {}
    for key, default in spec.defaults.items():
        value = params.get(key, default)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"param {key!r} of variant {name!r} must be a bool, got {value!r}")
        else:
            value = type(default)(value)
        if key == "max_actuation" and not value > 0:
            raise ValueError(f"max_actuation must be > 0, got {value!r}")
        out[key] = value
    return out


def _canonical_models(name: str, muscle_model: str, contact_model: str) -> dict[str, str]:
    """The non-default muscle and contact models, checked (empty for the originals, so
    their cache keys, and files, are those of before the option existed)."""
    if muscle_model not in MUSCLE_MODELS:
        raise ValueError(f"muscle_model must be one of {list(MUSCLE_MODELS)}, "
                         f"got {muscle_model!r}")
    if contact_model not in CONTACT_MODELS:
        raise ValueError(f"contact_model must be one of {list(CONTACT_MODELS)}, "
                         f"got {contact_model!r}")
    if muscle_model != "thelen" and VARIANTS[name].build in (_build_torque,
                                                             _build_torque_locked_knee):
        raise ValueError(f"muscle_model={muscle_model!r} needs muscles; variant {name!r} "
                         f"has none (use muscle_model='thelen')")
    models = {}
    if muscle_model != MUSCLE_MODELS[0]:
        models["muscle_model"] = muscle_model
    if contact_model != CONTACT_MODELS[0]:
        models["contact_model"] = contact_model
    return models


def _cache_key(name: str, base_bytes: bytes, params: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(base_bytes)
    h.update(b"\0")
    h.update(
        json.dumps(
            {
                "variant": name,
                "params": params,
                "builder_version": BUILDER_VERSION,
                "opensim": opensim.__version__,
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()


def _build_model(
    name: str, spec: VariantSpec, base: pathlib.Path, params: Mapping[str, Any],
    models: Mapping[str, str] | None = None,
) -> opensim.Model:
    model = opensim.Model(str(base))
    spec.build(model, **params)
    models = dict(models or {})
    _apply_models(model, models.get("muscle_model", MUSCLE_MODELS[0]),
                  models.get("contact_model", CONTACT_MODELS[0]), spec.dgf_passive_fiber_force,
                  spec.dgf_tendon_preload)
    if models:
        model.set_credits(f"fastenv: {json.dumps(models, sort_keys=True)}. "
                          + model.get_credits())
    if not spec.keep_name:
        model.setName(name)
        # Provenance travels with the file (deterministic: no dates or paths).
        model.set_credits(
            f"fastenv variant {name} (builder v{BUILDER_VERSION}, "
            f"params {json.dumps(dict(params), sort_keys=True)}) from osim-rl {spec.base}. "
            + model.get_credits()
        )
    model.finalizeConnections()
    model.initSystem()  # fail here, not in a worker, if the edit broke the model
    return model


def variant_path(name: str, *, muscle_model: str = "thelen",
                 contact_model: str = "hunt_crossley", **params: Any) -> pathlib.Path:
    """Path of the cached ``.osim`` for variant ``name``, building it on first use.

    Names: ``muscle2d``, ``muscle3d`` (osim-rl base models, format-upgraded);
    ``torque2d``, ``torque3d`` (all muscles removed, one CoordinateActuator named
    after each unlocked coordinate except the pelvis translations; contact
    forces and CoordinateLimitForces kept); ``*_lockedknee`` versions of all
    four (``knee_angle_l`` and ``ankle_angle_l`` locked at 0 as with a rigid
    prosthesis, gastroc_l/soleus_l/tib_ant_l and the KneeLimit_l/AnkleLimit_l
    limit forces removed, no actuators on the locked coordinates).

    Torque params: ``max_actuation`` (default 200.0) is each CoordinateActuator's
    ``optimal_force`` in N*m, reached at control 1 (controls are limited to
    [-1, 1]). ``pelvis_residuals`` (default True) keeps actuators on the pelvis
    rotations (residual torques that help balance); with False the pelvis is
    fully unactuated and the model must balance through its legs alone.
    Muscle variants take no params. ``palsy3d`` (a child with spastic diplegia,
    see ``_PALSY_DEFAULTS`` for the sources) takes ``height`` (1.61 m, matched
    with ``standing_height``) and ``mass`` (41.5 kg) for OpenSim's uniform
    scaling, ``strength`` (0.65; multiplies every max isometric force on top
    of the (mass ratio)^(2/3) size scaling) and ``contracture`` (0.2; fraction
    by which the hamstrings' and gastrocnemii's optimal fibre lengths shrink;
    0 gives a plainly scaled child). Unknown names or params raise ValueError.

    Every variant with muscles takes ``muscle_model`` ("thelen", the base models'
    own, or "degroote": DeGroote-Fregly 2016 muscles with rigid tendons), and every
    variant ``contact_model`` ("hunt_crossley" or "smooth": one
    SmoothSphereHalfSpaceForce per contact sphere); see :func:`_degroote_muscles` and
    :func:`_smooth_contacts`.
    """
    canon = _canonical_params(name, params)
    models = _canonical_models(name, muscle_model, contact_model)
    spec = VARIANTS[name]
    base = base_model_path(spec.base)
    key = _cache_key(name, base.read_bytes(), {**canon, **models})
    directory = cache_dir()
    label = "_".join((name, *models.values()))   # muscle2d_degroote_smooth-<key>.osim
    target = directory / f"{label}-{key[:16]}.osim"
    if target.is_file():
        return target

    directory.mkdir(parents=True, exist_ok=True)
    model = _build_model(name, spec, base, canon, models)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if not model.printToXML(tmp):
            raise OSError(f"OpenSim failed to write {tmp}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cached models are not secrets
        opensim.Model(tmp).initSystem()  # only publish files that load
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target
