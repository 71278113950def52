"""fastenv: vectorized, high-throughput OpenSim environments for gait imitation.

Importing fastenv registers every task of ``fastenv.envs.TASKS`` with Gymnasium:
``gymnasium.make("MuscleWalkingImitation2D-v0")`` for one env and
``gymnasium.make_vec(ID, num_envs=16, vectorization_mode="vector_entry_point")`` for an
:class:`~fastenv.vector.OsimVectorEnv`. The parent process never loads OpenSim.
"""
import gymnasium as _gym

from fastenv.envs import TASKS

__version__ = "0.3.0"

for _id in TASKS:
    if _id not in _gym.registry:
        _gym.register(id=_id, entry_point="fastenv.env:ImitationEnv",
                      vector_entry_point="fastenv.vector:make_vec", kwargs={"task": _id})
