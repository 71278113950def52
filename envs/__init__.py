"""The task suite as data: one :class:`TaskSpec` per Gymnasium ID.

A task is a model variant + a reference motion + the rules of the episode. Adding a
task means adding a spec to ``TASKS``; there is one env class
(:class:`fastenv.env.ImitationEnv`) for all of them. This package is installed as
``fastenv.envs`` and also holds the variant builders (``variants.py``) and the
generated reference motions (``references/*.npz``).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """Everything that distinguishes one task from another.

    model: variant name (see ``fastenv.envs.variants.VARIANTS``).
    actuation: "muscle" (actions are excitations in [0, 1]) or "torque" (actions in
        [-1, 1] are target joint angles over the coordinate range, PD-controlled).
    reference: shipped reference name (``references/<name>.npz``).
    planar: 2-D task (observations keep x and y of body vectors only).
    height: subject height in m (normalises GRF moments).
    min_torso_height, max_limit_force, max_acceleration: termination thresholds.
    progress_axis: ground axis of progress for the metabolic cost of transport
        (0 = forward x for gaits, 1 = vertical y for jumping).
    episode_cycles: train-mode episode length in reference cycles.
    """

    id: str
    model: str
    actuation: str
    reference: str
    planar: bool
    height: float = 1.80
    min_torso_height: float = 0.75
    max_limit_force: float = 1000.0
    max_acceleration: float = 1e4
    progress_axis: int = 0
    episode_cycles: int = 2
    r_weights: tuple = (0.8, 0.2, 0.1)
    perturbation_force: float = 50.0
    variant_params: dict = field(default_factory=dict)


def _walking(actuation: str, dim: str) -> TaskSpec:
    return TaskSpec(
        id=f"{actuation.capitalize()}WalkingImitation{dim.upper()}-v0",
        model=f"{actuation}{dim}", actuation=actuation, reference=f"walking{dim}",
        planar=dim == "2d")


TASKS: dict[str, TaskSpec] = {
    spec.id: spec for spec in (
        _walking("muscle", "2d"),
        _walking("torque", "2d"),
    )
}
