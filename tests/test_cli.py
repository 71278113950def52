"""The installed command line and the original package's ``config=`` dict."""
import json
import re
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
    (["rollout", "--speed", "2"], "fastenv rollout: error: unrecognized arguments: --speed 2"),
    ([], "the following arguments are required: cmd"),
    # an output file's folder is made (or refused) before a run of minutes, not after it
    (["bench", "--json", "/dev/null/x.json"],
     "--json: cannot make the folder of '/dev/null/x.json': /dev/null is a file, not a folder"),
    (["evaluate", "runs/x", "--plot", "/"], "--plot: expected a file to write, got the folder"),
    # a folder that does not exist yet, too (it was made, and the file written beside it)
    (["evaluate", "runs/x", "--json", "no-such-folder/"],
     "--json: expected a file to write, got the folder 'no-such-folder/'"),
    # --export names the .mot, whose stem the _states.sto and .osim share
    (["evaluate", "runs/x", "--export", "x.txt"],
     "--export: expected FILE.mot (FILE_states.sto and FILE.osim are written beside it), "
     "got 'x.txt'"),
    (["render", "TorqueWalkingImitation2D-v0", "--random", "--export", "x.sto"],
     "--export: expected FILE.mot"),
    (["render", "TorqueWalkingImitation2D-v0", "--random", "--out", "/dev/null/a.mp4"],
     "--out: cannot make the folder of '/dev/null/a.mp4'"),
    # a single env's seed went to Gymnasium unchecked: a traceback with exit code 1
    (["rollout", "--task", "TorqueWalkingImitation2D-v0", "--steps", "5", "--seed", "-1"],
     "--seed: expected a seed, a whole number in [0, 2**32), got -1"),
    (["render", "TorqueWalkingImitation2D-v0", "--random", "--seconds", "0.02", "--out",
      "x.png", "--option", "accuracy=abc"], "accuracy must be the integrator's relative"),
    (["rollout", "--seed", str(10**23)], "whole number in [0, 2**32), got 1000000000"),
    # named as the flag, before the policy loads (it had failed in the env as start_noise)
    (["evaluate", "runs/x", "--start-noise", "-1"],
     "--start-noise: expected a finite number >= 0, got -1.0"),
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


def test_output_file_folders_are_made_when_written(tmp_path):
    """An output file's path is checked while arguments are read, its missing folders
    made only when it is written: a command refused later leaves no folders behind."""
    from fastenv.__main__ import main
    assert main(["evaluate", str(tmp_path / "no-run"), "--json",
                 str(tmp_path / "made" / "sub" / "x.json")]) == 2
    assert list(tmp_path.iterdir()) == []
    from fastenv.__main__ import _folder_made, _output_file
    out = tmp_path / "new" / "deeper" / "x.json"
    assert _output_file(str(out)) == str(out) and list(tmp_path.iterdir()) == []
    assert _folder_made(str(out)) == str(out) and out.parent.is_dir()


def _exit_code(argv) -> int:
    from fastenv.__main__ import main
    try:
        return main(argv)
    except SystemExit as exc:      # argparse's own errors
        return exc.code


@pytest.mark.parametrize("command, given", [
    ("tasks", []), ("rollout", []), ("bench", []), ("train", []), ("evaluate", ["runs/x"]),
    ("render", [])])
def test_unknown_arguments_are_reported_by_their_command(command, given, capsys):
    assert _exit_code([command, *given, "--no-such-flag"]) == 2
    assert capsys.readouterr().err.startswith(
        f"fastenv {command}: error: unrecognized arguments: --no-such-flag")
    assert _exit_code(["--no-such-flag", command, *given]) == 2
    assert capsys.readouterr().err.startswith("fastenv: error: unrecognized arguments")


def test_help_is_plain_text():
    """Command descriptions are docstrings: their reST markup stays out of --help."""
    import argparse

    from fastenv.__main__ import parser
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert "``" not in command.format_help(), name
    assert "OsimVectorEnv stepped" in sub.choices["rollout"].format_help()


@pytest.mark.parametrize("option, flag", [
    ("mode=eval", "test-mode episode"), ("episode_seconds=0.05", "--seconds"),
    ("log=true", "--export, --plot or --plot-grf"), ("render_view=front", "--view"),
    ("render_size=[10,10]", "--width and --height")])
def test_render_refuses_options_its_flags_set(option, flag, tmp_path, capsys):
    """--option for an env option that render sets from a flag would be overridden."""
    out = tmp_path / "x.png"
    assert _exit_code(["render", "TorqueWalkingImitation2D-v0", "--reference", "--seconds",
                       "0.05", "--no-progress", "--out", str(out), "--option", option]) == 2
    err = capsys.readouterr().err
    key = option.split("=")[0]
    assert err.startswith(f"fastenv render: error: ValueError: --option {key}: fastenv render "
                          f"sets {key} itself") and flag in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


class FakeEnv:
    """A stand-in env: reward 1 per step, an episode ends at every third step.
    ``calls`` holds (env steps, episode ends) of each step()."""

    def __init__(self, task, **options):
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.t, self.calls = 0, []

    def reset(self, seed=None, options=None):
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        self.calls.append((1, int(self.t % 3 == 0)))
        return np.zeros(1), 1.0, self.t % 3 == 0, False, {}

    def close(self):
        pass


class FakeVectorEnv:
    """OsimVectorEnv's NextStep autoreset over FakeEnv-like envs: the row after an
    episode's end is its reset (reward 0), not an env step. ``calls`` holds (env
    steps, episode ends) of each step() or recv()."""

    def __init__(self, task, num_envs, num_workers=None, batch_size=None):
        self.num_envs, self.num_workers = num_envs, num_workers or 1
        self.batch_size = batch_size or num_envs
        self.single_action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.t, self.ended = np.zeros(num_envs, int), np.zeros(num_envs, bool)
        self.in_flight, self.calls = [], []

    def reset(self, seed=None):
        self.t[:], self.ended[:] = 0, False
        return np.zeros((self.num_envs, 1)), {}

    def _rows(self, ids):
        ids = np.asarray(ids)
        stepped = ~self.ended[ids]
        self.t[ids] = np.where(stepped, self.t[ids] + 1, 0)
        ended = stepped & (self.t[ids] % 3 == 0)
        self.ended[ids] = ended
        self.calls.append((int(stepped.sum()), int(ended.sum())))
        return (np.zeros((len(ids), 1)), stepped.astype(np.float32), ended,
                np.zeros(len(ids), bool), {"env_id": ids})

    def step(self, actions):
        return self._rows(np.arange(self.num_envs))

    def async_reset(self, seed=None):
        """Every env's next row is its reset."""
        self.ended[:] = True
        self.in_flight = list(range(self.num_envs))

    def send(self, actions, env_ids):
        self.in_flight += list(env_ids)

    @property
    def pending(self):
        return len(self.in_flight)

    def recv(self, batch_size=None):
        n = batch_size or self.batch_size
        ids, self.in_flight = self.in_flight[:n], self.in_flight[n:]
        return self._rows(ids)

    def close(self):
        pass


@pytest.fixture
def fake_envs(monkeypatch):
    """The envs that rollout and bench make, replaced by fakes; returns those made."""
    made = []

    def recorded(cls):
        return lambda *args, **kwargs: made.append(cls(*args, **kwargs)) or made[-1]
    monkeypatch.setattr(gym, "make", recorded(FakeEnv))
    monkeypatch.setattr("fastenv.env.ImitationEnv", recorded(FakeEnv))
    monkeypatch.setattr("fastenv.vector.OsimVectorEnv", recorded(FakeVectorEnv))
    return made


@pytest.mark.parametrize("num_envs", [1, 4])
def test_rollout_counts_env_steps_not_resets(num_envs, fake_envs, capsys):
    """Resets (the vector env's autoreset rows, reward 0) are not steps, for one env
    and for the vector env alike: the steps, episode ends and mean reward printed are
    the envs' own."""
    from fastenv.__main__ import main
    assert main(["rollout", "--task", "TorqueWalkingImitation2D-v0", "--steps", "10",
                 "--num-envs", str(num_envs)]) == 0
    [env] = fake_envs
    steps, ends = map(sum, zip(*env.calls))
    out = capsys.readouterr().out
    assert f" {steps} random-action steps " in out and f" {ends} episode ends" in out
    assert out.strip().endswith("mean reward 1.000")
    assert steps == 10   # each env its share: 3, 3, 2, 2 of 4 envs


def test_rollout_of_many_envs_is_reproducible(capsys):
    """Each env draws its actions from its own seeded stream and steps its share, so two
    identical commands print the same episode ends and mean reward, whichever env's
    step finished first (one stream handed out in completion order differed)."""
    from fastenv.__main__ import main
    printed = []
    for _ in range(2):
        assert main(["rollout", "--task", "TorqueWalkingImitation2D-v0", "--num-envs", "3",
                     "--workers", "2", "--steps", "61", "--seed", "3"]) == 0
        out = capsys.readouterr().out
        assert " 61 random-action steps " in out and "while all 3 envs stepped" in out
        printed.append(re.search(r"\d+ episode ends.*(mean reward [-\d.]+)", out).group(0)
                       .split(",")[0] + re.search(r"mean reward [-\d.]+", out).group(0))
    assert printed[0] == printed[1]


def test_bench_counts_env_steps_not_resets(fake_envs, tmp_path):
    """bench's rows count env steps after its 10 warm-up steps, not autoreset rows; its
    --json folder is made when the file is written."""
    from fastenv.__main__ import main
    out = tmp_path / "new" / "bench.json"
    assert main(["bench", "--task", "TorqueWalkingImitation2D-v0", "--num-envs", "2",
                 "--workers", "1", "--steps-per-env", "6", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(fake_envs) == 2
    for row, env in zip(rows, fake_envs):
        steps, ends = map(sum, zip(*env.calls[10:]))
        assert (row["steps"], row["episode_ends"]) == (steps, ends), row["method"]


def test_a_closed_pipe_ends_quietly():
    """`fastenv tasks | head -1`: a reader that leaves early ends the command quietly
    with the shell's SIGPIPE status, not an error line."""
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"'{sys.executable}' -m fastenv tasks | true"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stderr == "" and proc.returncode == 141, proc.stderr
