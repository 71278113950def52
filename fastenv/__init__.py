"""fastenv: vectorized, high-throughput OpenSim environments for gait imitation.

Importing fastenv registers every task of ``fastenv.envs.TASKS`` with Gymnasium:
``gymnasium.make("MuscleWalkingImitation2D-v0")``.
"""
import gymnasium as _gym

from fastenv.envs import TASKS

__version__ = "0.1.0"

for _id in TASKS:
    if _id not in _gym.registry:
        _gym.register(id=_id, entry_point="fastenv.env:ImitationEnv", kwargs={"task": _id})
