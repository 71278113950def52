"""Shared-memory process pool: worker processes each owning several envs.

Independent of the env: it builds envs with a picklable factory (``EnvFactory``) in
the workers and carries the scalar infos each env declares in ``info_scalars``.
"""
from fastenv.pool.factory import EnvFactory  # noqa: F401
from fastenv.pool.pool import START_METHODS, Pool, default_workers  # noqa: F401
