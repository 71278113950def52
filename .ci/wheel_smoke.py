"""Smoke test of an installed wheel, run outside the checkout without the dev extra:
a 4-env make_vec (no __main__ guard, the default start method), 20 steps, every env's
frame, close, then `fastenv bench` on one task. Prints a closing line CI reads."""
import importlib.resources
import importlib.util
import pathlib
import subprocess
import sys

import gymnasium as gym
import numpy as np

import fastenv

# imported from the installed wheel, not from a source tree
assert "site-packages" in pathlib.Path(fastenv.__file__).resolve().parts, fastenv.__file__
for dev_only in ("pytest", "osim", "gym", "pandas"):   # osim/gym: osim-rl's legacy packages
    assert importlib.util.find_spec(dev_only) is None, f"{dev_only} is installed"

# the training configs and presets ship as data (fastenv train needs the train extra)
configs = importlib.resources.files("fastenv.configs")
for name in ("sac", "ppo", "muscle_reflex"):
    assert (configs / f"{name}.toml").is_file(), name

venv = gym.make_vec("TorqueWalkingImitation2D-v0", num_envs=4,
                    vectorization_mode="vector_entry_point", num_workers=2,
                    render_mode="rgb_array")
obs, info = venv.reset(seed=0)
for _ in range(20):
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
assert obs.shape == (4, venv.single_observation_space.shape[0]) and np.isfinite(obs).all()
# frames need no extra: the meshes ship in the wheel and the rasterizer is compiled
frames = venv.render()
assert len(frames) == 4 and frames[0].shape == (480, 640, 3)
assert (frames[0][..., 0].astype(int) - frames[0][..., 2] > 12).sum() > 1000   # bones
venv.close()

bench = subprocess.run([sys.executable, "-m", "fastenv", "bench", "--task",
                        "TorqueWalkingImitation2D-v0", "--steps-per-env", "10"],
                       capture_output=True, text=True, timeout=600)
print(bench.stdout, bench.stderr)
assert bench.returncode == 0, bench.returncode
print("wheel smoke test: make_vec, its frames and fastenv bench ran from the installed wheel")
