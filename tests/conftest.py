"""Shared fixtures: the public test data beside the project, and model paths."""
import pytest

# One copy, with the pipeline's tests: ``shared_motion(name)`` gives the path of a public
# measured motion in ``refgen.motions_dir()`` ($FASTENV_MOTIONS, default
# ../shared/data/motions next to the checkout) or skips the test; ``muscle3d_path``.
from refgen.tests.conftest import muscle3d_path, shared_motion  # noqa: F401


@pytest.fixture(scope="session")
def muscle2d_path():
    from fastenv.envs.variants import variant_path
    return variant_path("muscle2d")
