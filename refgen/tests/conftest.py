"""Fixtures of the pipeline's tests: public motion data and model paths."""
import pytest

from refgen import motion_file


def shared_motion(name: str):
    """Path of a public motion in :func:`refgen.motions_dir`, or skip the test."""
    try:
        return motion_file(name)
    except FileNotFoundError as exc:
        pytest.skip(f"public test data not available: {exc}")


@pytest.fixture(scope="session")
def muscle3d_path():
    from fastenv.envs.variants import variant_path
    return variant_path("muscle3d")
