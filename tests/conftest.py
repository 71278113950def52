"""Shared fixtures: the public test data beside the project, and model paths."""
from pathlib import Path

import pytest

SHARED_MOTIONS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "motions"


def shared_motion(name: str) -> Path:
    """Path of a public motion in ../shared/data/motions, or skip the test."""
    p = SHARED_MOTIONS / name
    if not p.exists():
        pytest.skip(f"public test data {p} not available (../shared/data/motions is absent)")
    return p


@pytest.fixture(scope="session")
def muscle2d_path():
    from fastenv.envs.variants import variant_path
    return variant_path("muscle2d")


@pytest.fixture(scope="session")
def muscle3d_path():
    from fastenv.envs.variants import variant_path
    return variant_path("muscle3d")
