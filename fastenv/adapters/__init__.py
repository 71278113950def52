"""Adapters from :class:`~fastenv.vector.OsimVectorEnv` to RL libraries: ``sb3``
(Stable-Baselines3 ``VecEnv``). Each imports its library only when imported itself."""
