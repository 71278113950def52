"""The installed command line and the original package's ``config=`` dict."""
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import fastenv  # noqa: F401  (registers the tasks)

# The nine keys of the original BioImitation-Gym config, with its train values.
ORIGINAL_CONFIG = dict(visualize=False, max_actuation=200, mode="train", log=False,
                       r_weights=[0.8, 0.2, 0.1], apply_perturbations=False,
                       use_target_obs=True, use_GRF=True, horizon=5)


@pytest.mark.parametrize("task", ["MuscleWalkingImitation2D-v0", "TorqueWalkingImitation2D-v0"])
def test_original_config_dict_is_accepted(task):
    env = gym.make(task, config=ORIGINAL_CONFIG)
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(obs).all() and np.isfinite(reward)
    assert env.unwrapped.r_weights == (0.8, 0.2, 0.1)
    env.close()


def test_visualize_true_says_what_to_use_instead(monkeypatch):
    """visualize=True is render_mode="human"; with no display, the error names the
    headless ways (tests/test_render.py opens the window where a display exists)."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="needs a display .* render_mode='rgb_array'.*"
                                         "fastenv render"):
        gym.make("TorqueWalkingImitation2D-v0", config=dict(ORIGINAL_CONFIG, visualize=True))
    with pytest.raises(ValueError, match="visualize must be True or False"):
        gym.make("TorqueWalkingImitation2D-v0", visualize="yes")


def fastenv_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastenv", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, expected", [
    (["rollout", "--steps", "0"], "--steps: expected a whole number >= 1, got 0"),
    (["rollout", "--num-envs", "0"], "--num-envs: expected a whole number >= 1, got 0"),
    (["rollout", "--task", "FlyingImitation2D-v0"], "unknown task 'FlyingImitation2D-v0'"),
    (["bench", "--steps-per-env", "many"], "expected a whole number >= 1, got 'many'"),
    (["rollout", "--speed", "2"], "unrecognized arguments: --speed 2"),
    ([], "the following arguments are required: cmd"),
    # an output file's folder is made (or refused) before a run of minutes, not after it
    (["bench", "--json", "/dev/null/x.json"],
     "--json: cannot make the folder of '/dev/null/x.json': /dev/null is a file, not a folder"),
    (["evaluate", "runs/x", "--plot", "/"], "--plot: expected a file to write, got the folder"),
    (["render", "TorqueWalkingImitation2D-v0", "--random", "--out", "/dev/null/a.mp4"],
     "--out: cannot make the folder of '/dev/null/a.mp4'"),
    # a single env's seed went to Gymnasium unchecked: a traceback with exit code 1
    (["rollout", "--task", "TorqueWalkingImitation2D-v0", "--steps", "5", "--seed", "-1"],
     "--seed: expected a seed, a whole number in [0, 2**32), got -1"),
    (["render", "TorqueWalkingImitation2D-v0", "--random", "--seconds", "0.02", "--out",
      "x.png", "--option", "accuracy=abc"], "accuracy must be the integrator's relative"),
    (["rollout", "--seed", str(10**23)], "whole number in [0, 2**32), got 1000000000"),
    # options that would be ignored are refused
    (["rollout", "--task", "TorqueWalkingImitation2D-v0", "--num-envs", "1", "--workers", "7"],
     "--workers 7: one env (--num-envs 1) steps in this process"),
])
def test_input_errors_are_one_line(args, expected):
    proc = fastenv_cli(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_version_and_tasks():
    proc = fastenv_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastenv {fastenv.__version__}"
    proc = fastenv_cli("tasks")
    assert proc.returncode == 0
    assert len(proc.stdout.strip().splitlines()) == len(fastenv.envs.TASKS)
    assert "MusclePalsyImitation3D-v0" in proc.stdout


def test_every_option_has_help():
    import argparse

    from fastenv.__main__ import parser
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"fastenv {name} {action.option_strings} has no help text"


def test_bench_measures_this_machine(tmp_path):
    """`fastenv bench` needs no checkout and no dev packages, writes nothing unless
    asked (--json), and reports positive steps/s for one env and the vector env."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "fastenv", "bench", "--task",
                           "TorqueWalkingImitation2D-v0", "--steps-per-env", "5",
                           "--num-envs", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["num_envs"] for r in rows] == [1, 2]
    assert all(r["steps_per_s"] > 0 and r["steps"] >= 5 * r["num_envs"] for r in rows)
    assert "steps/s" in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_option_values_are_read_as_json_or_python_literals():
    """``--option KEY=VALUE``: JSON where it parses; Python's True/False/None too, so
    that ``use_GRF=False`` is not the (truthy) string "False"."""
    from fastenv.__main__ import parse_env_option
    assert parse_env_option("use_GRF=false") == ("use_GRF", False)
    assert parse_env_option("use_GRF=False") == ("use_GRF", False)
    assert parse_env_option("pd_bandwidth=None") == ("pd_bandwidth", None)
    assert parse_env_option("r_weights=[1, 0, 0]") == ("r_weights", [1, 0, 0])
    assert parse_env_option("reward=tracking") == ("reward", "tracking")


def test_output_file_folders_are_made(tmp_path):
    from fastenv.__main__ import _output_file
    out = tmp_path / "new" / "deeper" / "x.json"
    assert _output_file(str(out)) == str(out) and out.parent.is_dir()
