"""Shared-memory process pool: worker processes each owning several envs."""
from fastenv.pool.pool import Pool, PoolError, default_workers  # noqa: F401
from fastenv.pool.shared import INFO_DTYPES, INFO_KEYS  # noqa: F401
