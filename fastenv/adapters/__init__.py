"""Adapters from :class:`~fastenv.vector.OsimVectorEnv` to RL libraries: ``sb3``
(Stable-Baselines3 ``VecEnv``), ``sb3_ppo`` (SB3's PPO with pipelined rollouts),
``torch`` and ``jax`` (batches as tensors). Each imports its library only when imported
itself."""
