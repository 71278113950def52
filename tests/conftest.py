"""Shared fixtures: the public test data beside the project, and model paths."""
from pathlib import Path

import pytest

# One copy, with the pipeline's tests: ``shared_motion(name)`` gives the path of a public
# measured motion in ``refgen.motions_dir()`` ($FASTENV_MOTIONS, default
# ../shared/data/motions next to the checkout) or skips the test; ``muscle3d_path``.
from refgen.tests.conftest import muscle3d_path, shared_motion  # noqa: F401


@pytest.fixture(scope="session")
def muscle2d_path():
    from fastenv.envs.variants import variant_path
    return variant_path("muscle2d")


def stop_training_with_sigterm(proc, run: Path):
    """Wait for the ``fastenv train`` subprocess ``proc`` to log a row to
    ``run/progress.csv``, then SIGTERM it, and again every 20 ms until it exits (a
    scheduler's repeated stop, held off while the last checkpoint is written); returns
    its stderr."""
    import signal
    import time
    deadline = time.monotonic() + 120
    while not (run / "progress.csv").is_file() or len(
            (run / "progress.csv").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)[1]
