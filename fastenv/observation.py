"""The observation layout as data: named blocks, turned into gather-kernel indices.

The observation is one flat vector gathered by ``kernels.gather_observation`` from one
buffer, ``[Simulation.buf | task buffer]``, as ``(buf[src] - buf[ref]) * scale``. Each
:class:`ObservationBlock` says which buffer segment a group of elements reads, over which
coordinates, bodies, muscles or contacts, how it is made relative and scaled, and when it
is included; :func:`build_observation_layout` turns the blocks, in order, into the index
arrays, the element names (``"<block>/<element>"``) and each block's slice of the
observation, which the env exposes as ``observation_blocks``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastenv.sim import Layout

#: Coordinates left out of position observations: the policy sees where the body is
#: relative to the pelvis, not where the pelvis is in the world (velocities keep them).
PELVIS_TRANSLATIONS = ("pelvis_tx", "pelvis_ty", "pelvis_tz")
AXES = ("x", "y", "z")
PLANAR_AXES = ("x", "y")
#: A contact's ground reaction record in ``Simulation.buf``: force, then moment.
GRF_COMPONENTS = ("Fx", "Fy", "Fz", "Mx", "My", "Mz")
#: What a planar model can produce: the other components are identically zero.
PLANAR_GRF_COMPONENTS = ("Fx", "Fy", "Mz")


@dataclass(frozen=True)
class ObservationBlock:
    """One named group of observation elements.

    name: prefix of the elements' names, and the key of the block's slice.
    source: the buffer segment read: a ``Simulation.layout`` segment or a task-buffer
        segment (:func:`task_buffer_layout`).
    over: "coordinates" (the unlocked ones), "bodies", "muscles", "contacts",
        "previous_actions" (``t-k.<actuator>``, k = 1 .. horizon - 1), or None for a
        single element named ``name``.
    exclude: items of ``over`` left out.
    components: per-item element suffixes, in the source's order (a body's axes, a
        contact's force and moment); ``planar_components``, if given, is what a planar
        task keeps (the rest is identically zero in a planar model).
    relative_to: an item of ``over`` whose value is subtracted, component by component.
    scale: None (as is), "optimal_fiber_length" (muscle lengths and velocities per
        optimal fiber length) or "body_weight" (forces per body weight, moments per
        body weight x subject height), so elements are O(1) across models.
    when: an env option that must be true for the block to be included. A block with no
        items (muscle blocks of a torque model) is left out as well.
    """

    name: str
    source: str
    over: str | None = None
    exclude: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    planar_components: tuple[str, ...] = ()
    relative_to: str | None = None
    scale: str | None = None
    when: str | None = None


#: The env's observation, in order.
OBSERVATION_BLOCKS: tuple[ObservationBlock, ...] = (
    ObservationBlock("phase", source="phase"),
    ObservationBlock("q", source="q", over="coordinates", exclude=PELVIS_TRANSLATIONS),
    ObservationBlock("qdot", source="qdot", over="coordinates"),
    ObservationBlock("qddot", source="qddot", over="coordinates"),
    ObservationBlock("target_q", source="target_q", over="coordinates",
                     exclude=PELVIS_TRANSLATIONS, when="use_target_obs"),
    ObservationBlock("target_qdot", source="target_qdot", over="coordinates",
                     when="use_target_obs"),
    ObservationBlock("body_pos_rel_pelvis", source="body_pos", over="bodies",
                     exclude=("pelvis",), components=AXES, planar_components=PLANAR_AXES,
                     relative_to="pelvis"),
    ObservationBlock("body_vel", source="body_vel", over="bodies", components=AXES,
                     planar_components=PLANAR_AXES),
    ObservationBlock("activation", source="activation", over="muscles"),
    ObservationBlock("norm_fiber_length", source="fiber_length", over="muscles",
                     scale="optimal_fiber_length"),
    ObservationBlock("norm_fiber_velocity", source="fiber_velocity", over="muscles",
                     scale="optimal_fiber_length"),
    ObservationBlock("grf", source="grf", over="contacts", components=GRF_COMPONENTS,
                     planar_components=PLANAR_GRF_COMPONENTS, scale="body_weight",
                     when="use_GRF"),
    # the action actually applied is the mean of the last `horizon` actions: the ones
    # before this step are state the policy cannot see otherwise
    ObservationBlock("previous_actions", source="previous_actions", over="previous_actions",
                     when="observe_previous_actions"),
)


def previous_action_names(actuator_names, horizon: int) -> list[str]:
    """``t-k.<actuator>`` for the ``horizon - 1`` actions before this step, newest first."""
    return [f"t-{k}.{a}" for k in range(1, horizon) for a in actuator_names]


def task_buffer_layout(coordinate_names, previous_actions=()) -> Layout:
    """What the env writes after ``Simulation.buf`` each step (``_write_task_buffer``):
    the gait phase, the next reference frame's coordinates and speeds, and the previous
    actions (:func:`previous_action_names`)."""
    layout = Layout()
    layout.add("phase", ["phase"])
    layout.add("target_q", list(coordinate_names))
    layout.add("target_qdot", list(coordinate_names))
    layout.add("previous_actions", list(previous_actions))
    return layout


@dataclass(frozen=True)
class ObservationLayout:
    """Gather-kernel arguments and the names and slices of the observation."""

    src: np.ndarray            # intp: buffer index of each element
    ref: np.ndarray            # intp: buffer index subtracted (the constant zero if none)
    scale: np.ndarray          # float64
    names: list[str]
    blocks: dict[str, slice]   # block name -> its elements in the observation
    buffer_size: int           # len(Simulation.buf) + len(task buffer)


def build_observation_layout(sim, task, options,
                             blocks=OBSERVATION_BLOCKS) -> ObservationLayout:
    """Index arrays, names and block slices of ``blocks`` for this model, task and options.

    Elements are looked up by name in the simulation's and the task buffer's layouts, so
    the blocks never depend on buffer offsets.
    """
    sim_layout = sim.layout
    previous = (previous_action_names(sim.actuator_names, options["horizon"])
                if options["observe_previous_actions"] else [])
    task_layout = task_buffer_layout(sim.coordinate_names, previous)
    offset = sim_layout.size

    def index(segment, element):
        if segment in sim_layout.segments:
            return sim_layout.index(segment, element)
        return offset + task_layout.index(segment, element)

    items = {
        "coordinates": [c for c, locked in zip(sim.coordinate_names, sim.locked, strict=True)
                        if not locked],
        "bodies": list(sim.body_names),
        "muscles": list(sim.muscle_names),
        "contacts": list(sim.contact_names),
        "previous_actions": previous,
    }
    zero = index("zero", "0")
    src, ref, scale, names, slices = [], [], [], [], {}
    for block in blocks:
        if block.when is not None and not options[block.when]:
            continue
        start = len(src)
        if block.over is None:
            src.append(index(block.source, block.name))
            ref.append(zero)
            scale.append(1.0)
            names.append(block.name)
        else:
            divisor = _divisors(block.scale, sim, task)
            comps = (block.planar_components if task.planar and block.planar_components
                     else block.components)
            for i, item in enumerate(items[block.over]):
                if item in block.exclude:
                    continue
                for comp in comps or (None,):
                    element = _element(item, comp)
                    src.append(index(block.source, element))
                    ref.append(zero if block.relative_to is None else
                               index(block.source, _element(block.relative_to, comp)))
                    scale.append(1.0 if divisor is None else 1 / divisor(i, comp))
                    names.append(f"{block.name}/{element}")
        if len(src) > start:
            slices[block.name] = slice(start, len(src))
    return ObservationLayout(src=np.array(src, dtype=np.intp), ref=np.array(ref, dtype=np.intp),
                             scale=np.array(scale, dtype=np.float64), names=names,
                             blocks=slices, buffer_size=offset + task_layout.size)


def _element(item, component):
    return item if component is None else f"{item}.{component}"


def _divisors(kind, sim, task):
    """(item index, component) -> what an element is divided by, for a block's scale."""
    if kind is None:
        return None
    if kind == "optimal_fiber_length":
        lopt = [m.getOptimalFiberLength() for m in sim.muscles]
        return lambda i, comp: lopt[i]
    if kind == "body_weight":
        weight, weight_height = sim.body_weight, sim.body_weight * task.height
        return lambda i, comp: weight if comp.startswith("F") else weight_height
    raise ValueError(f"unknown observation scale {kind!r}")
