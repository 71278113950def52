"""Command line: ``fastenv tasks``, ``fastenv rollout`` (the quick start),
``fastenv bench`` (this machine's steps/s for one task), ``fastenv train`` and
``fastenv evaluate`` (Stable-Baselines3; the ``train`` extra), ``fastenv render``
(videos; the ``render`` extra).

Input errors are one line on stderr (``fastenv: error: ...``) and exit code 2; set
``FASTENV_DEBUG=1`` to see the traceback of an error instead.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, not argparse's usage block: the usage is one --help away
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _CommandParser(_Parser):
    def parse_known_args(self, args=None, namespace=None):
        # argparse hands a command's unknown arguments up to the top parser, whose error
        # says "fastenv:"; refused here, the error names the command, as its others do
        namespace, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return namespace, []


def _plain(doc: str) -> str:
    """A docstring as --help text: without reST's literal markup."""
    return doc.replace("``", "")


def _bounded(kind, low: float, *, strict: bool):
    """An argparse type: a finite ``kind`` (int or float) above ``low``, or at it
    unless ``strict``."""
    what = (f"{'a whole number' if kind is int else 'a finite number'} "
            f"{'>' if strict else '>='} {low:g}")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and (value > low if strict else value >= low)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive_int = _bounded(int, 1, strict=False)
_positive_float = _bounded(float, 0, strict=True)
_nonnegative_float = _bounded(float, 0, strict=False)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number in [0, 2**32), "
                                         f"got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number in [0, 2**32), "
                                         f"got {value}")
    return value


def _output_file(text: str) -> str:
    """A file to write: its folder, or the nearest one that exists, is checked now, so
    that a path that cannot be written fails here, not after a run of minutes. Missing
    folders are made when the file is written (:func:`_folder_made`), so that a
    command that fails leaves none behind."""
    if os.path.isdir(text) or text.endswith(("/", os.sep)):
        # a missing folder/ too: it had been made, and the file written as folder.mot
        raise argparse.ArgumentTypeError(f"expected a file to write, got the folder {text!r}")
    above = os.path.dirname(os.path.abspath(text))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise argparse.ArgumentTypeError(f"cannot make the folder of {text!r}: {above} is a "
                                         "file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into the folder of {text!r} "
                                         f"({above})")
    return text


def _motion_file(text: str) -> str:
    """--export's FILE.mot, checked before the run: its stem names FILE_states.sto and
    FILE.osim too (fastenv.references.write_rollout refuses other names, too late)."""
    if os.path.splitext(text)[1].lower() != ".mot":
        raise argparse.ArgumentTypeError(f"expected FILE.mot (FILE_states.sto and FILE.osim "
                                         f"are written beside it), got {text!r}")
    return _output_file(text)


def _folder_made(path: str) -> str:
    """``path`` (an output file), its folder made if missing, just before it is written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def parse_env_option(text: str):
    """KEY=VALUE, the value read as JSON where it parses (numbers, true/false, lists);
    Python's True, False and None are read as such too (as strings, "False" would be
    refused by a flag's check)."""
    from fastenv.envs import OPTIONS
    key, sep, value = text.partition("=")
    if not sep or key not in OPTIONS:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY an env option ({', '.join(sorted(OPTIONS))}), "
            f"got {text!r}")
    if value in ("True", "False", "None"):
        return key, {"True": True, "False": False, "None": None}[value]
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _view(text: str):
    """A view name, or AZIMUTH,ELEVATION in degrees."""
    from fastenv.render import parse_view
    view = text
    if "," in text:
        try:
            view = tuple(float(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a view name or AZIMUTH,ELEVATION "
                                             f"in degrees, got {text!r}") from None
    try:
        parse_view(view, planar=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc).replace("render_view", "the view")
            .replace("[azimuth, elevation] in degrees", "AZIMUTH,ELEVATION in degrees")
        ) from None
    return view


def _task(text: str) -> str:
    from fastenv.envs import TASKS
    if text not in TASKS:
        raise argparse.ArgumentTypeError(
            f"unknown task {text!r}; `fastenv tasks` lists the {len(TASKS)} tasks")
    return text


# ----------------------------------------------------------------------- commands
def tasks(_args) -> int:
    """One line per task: ID, model variant, actuation, reference."""
    from fastenv.envs import TASKS
    for spec in TASKS.values():
        print(f"{spec.id:32s} model={spec.model:22s} actuation={spec.actuation:6s} "
              f"reference={spec.reference}")
    return 0


def rollout(args) -> int:
    """Random actions through one env (``--num-envs 1``) or an ``OsimVectorEnv`` stepped
    envpool-style (half the envs per batch); prints env steps/s. Resets are timed but
    not counted as steps, nor their zero reward in the mean. With many envs each env
    draws its actions from its own seeded stream and steps its share of ``--steps``
    (the first ones one more), so the mean reward does not depend on which env finished
    first; steps/s is timed while every env is stepping, up to the first env's last
    step (the drain after it leaves cores idle)."""
    import numpy as np

    import fastenv  # noqa: F401  (registers the tasks)
    from fastenv.vector import OsimVectorEnv

    if args.num_envs == 1 and args.workers not in (None, 1):
        raise ValueError(f"--workers {args.workers}: one env (--num-envs 1) steps in this "
                         f"process; give --num-envs above 1 for worker processes")
    t_build = time.perf_counter()
    n = args.num_envs
    if n == 1:
        import gymnasium as gym
        env = gym.make(args.task)
        env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
    else:
        env = OsimVectorEnv(args.task, n, num_workers=args.workers,
                            batch_size=max(1, n // 2))
        space = env.single_action_space
        streams = [np.random.default_rng([args.seed, i]) for i in range(n)]
        quota = np.full(n, args.steps // n) + (np.arange(n) < args.steps % n)

        def random_actions(ids):
            return np.stack([streams[i].uniform(space.low, space.high) for i in ids])
    steps, episodes, total_reward = 0, 0, 0.0
    try:
        if n > 1:
            # the first reset is start-up, as for one env; its rows never reach recv()
            env.reset(seed=args.seed)
            resetting = np.zeros(n, dtype=bool)   # next row: an autoreset
            done = np.zeros(n, dtype=int)         # env steps counted per env
            first = np.flatnonzero(quota > 0)
            env.send(random_actions(first), first)
        timed = None   # (env steps, seconds) up to the first env's last step
        t_build = time.perf_counter() - t_build
        t0 = time.perf_counter()
        if n == 1:
            while steps < args.steps:
                _, r, term, trunc, _ = env.step(env.action_space.sample())
                steps, total_reward = steps + 1, total_reward + r
                if term or trunc:
                    episodes += 1
                    env.reset()
        else:
            while env.pending:
                _, r, term, trunc, info = env.recv(batch_size=min(env.batch_size,
                                                                  env.pending))
                ids = info["env_id"]
                stepped = ~resetting[ids]   # NextStep: an ended env's next row is its reset
                done[ids] += stepped
                total_reward += float(r[stepped].astype(np.float64).sum())
                episodes += int((term | trunc)[stepped].sum())
                resetting[ids] = term | trunc
                go = ids[done[ids] < quota[ids]]
                if len(go) < len(ids) and timed is None:   # an env is through its share
                    timed = int(done.sum()), time.perf_counter() - t0
                if len(go):
                    env.send(random_actions(go), go)
            steps = int(done.sum())
        dt = time.perf_counter() - t0
    finally:
        env.close()
    rate = steps / dt if timed is None or timed[1] <= 0 else timed[0] / timed[1]
    window = "" if timed is None else f" while all {n} envs stepped"
    print(f"{args.task}: {n} env(s), {steps} random-action steps in {dt:.1f} s "
          f"(start-up {t_build:.1f} s), {episodes} episode ends, {rate:.1f} steps/s"
          f"{window}, mean reward {total_reward / steps:.3f}")
    return 0 if np.isfinite(total_reward) else 1


def bench(args) -> int:
    """Steps/s of one task on this machine: one env in this process, then an
    ``OsimVectorEnv`` stepped synchronously, both with seeded random actions after a
    warm-up. Falls and resets take their time but only env steps count, not the
    vector env's autoreset rows. The side-by-side comparison with other vector envs
    is ``bench/compare.py`` in the source checkout."""
    import numpy as np

    import fastenv
    from fastenv.env import ImitationEnv
    from fastenv.pool import default_workers
    from fastenv.vector import OsimVectorEnv

    workers = args.workers or default_workers()
    num_envs = args.num_envs or 2 * workers
    rows = []

    def timed(step, n_envs, warmup):
        """``step()`` returns the env steps it took and the episodes that ended."""
        for _ in range(warmup):
            step()
        steps, ends, t0 = 0, 0, time.perf_counter()
        while steps < args.steps_per_env * n_envs:
            stepped, ended = step()
            steps, ends = steps + stepped, ends + ended
        return steps, ends, time.perf_counter() - t0

    env = ImitationEnv(args.task)
    rng = np.random.default_rng(args.seed)
    env.reset(seed=args.seed)
    space = env.action_space

    def single_step():
        _, _, term, trunc, _ = env.step(rng.uniform(space.low, space.high).astype(np.float32))
        if term or trunc:
            env.reset()
        return 1, int(term or trunc)

    try:
        rows.append(("one env, this process", 1, 1, *timed(single_step, 1, 10)))
    finally:
        env.close()
    venv = OsimVectorEnv(args.task, num_envs, num_workers=workers)
    try:
        venv.reset(seed=args.seed)
        vspace = venv.action_space
        resetting = np.zeros(num_envs, dtype=bool)   # NextStep: this row is an autoreset

        def vector_step():
            nonlocal resetting
            _, _, term, trunc, _ = venv.step(
                rng.uniform(vspace.low, vspace.high).astype(np.float32))
            stepped = ~resetting
            resetting = term | trunc
            return int(stepped.sum()), int(resetting[stepped].sum())

        rows.append((f"OsimVectorEnv.step, {venv.num_workers} workers", num_envs,
                     venv.num_workers, *timed(vector_step, num_envs, 10)))
    finally:
        venv.close()
    import opensim
    print(f"fastenv {fastenv.__version__}, OpenSim {opensim.__version__}, "
          f"{os.cpu_count()} cores, {platform.machine()}: {args.task}")
    print(f"{'method':34s} {'envs':>5s} {'steps':>7s} {'ends':>5s} {'steps/s':>8s}")
    for label, n, _, steps, ends, dt in rows:
        print(f"{label:34s} {n:5d} {steps:7d} {ends:5d} {steps / dt:8.1f}")
    if args.json:
        result = dict(task=args.task, version=fastenv.__version__, cores=os.cpu_count(),
                      seed=args.seed, rows=[dict(method=label, num_envs=n, workers=w,
                                                 steps=steps, episode_ends=ends, seconds=dt,
                                                 steps_per_s=steps / dt)
                                            for label, n, w, steps, ends, dt in rows])
        with open(_folder_made(args.json), "w") as f:
            json.dump(result, f, indent=1)
    return 0


def _given(args, *flags) -> list[str]:
    """Those of ``flags`` given on the command line (their defaults are None)."""
    return [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) is not None]


def _run_backend(config_path: str) -> str:
    """The backend a run's ``config.json`` names ("sb3" where it names none, or where it
    is missing or unreadable: the trainer then says what is wrong with it)."""
    try:
        with open(config_path) as f:
            return json.load(f).get("backend", "sb3")
    except (OSError, ValueError, AttributeError):
        return "sb3"


def train(args) -> int:
    """Train a policy with Stable-Baselines3 (SAC or PPO) on an OsimVectorEnv, with Ray
    RLlib (--backend rllib: env runners, each one OsimVectorEnv), or with fastenv's SAC in
    JAX (--backend jax); the run folder holds the config, progress.csv and checkpoints.
    Ctrl-C saves a checkpoint; --resume continues from it."""
    if args.resume and args.task is not None:
        raise ValueError("--resume continues the run in --out with its saved task and "
                         "config; leave TASK out")
    if args.resume:
        from fastenv.train import _check_not_both
        _check_not_both(args.init_from)
    if args.init_checkpoint is not None and args.init_from is None:
        raise ValueError(f"--init-checkpoint {args.init_checkpoint}: a checkpoint of the "
                         f"run given with --init-from, which is missing")
    if not args.resume and args.task is None and args.init_from is None:
        raise ValueError("TASK is required (or --resume to continue a run, or --init-from "
                         "to start from another run's policy on its task)")
    options = dict(args.option or [])
    if args.num_workers is not None:
        options["num_workers"] = args.num_workers
    given = _given(args, "--algo", "--seed", "--config", "--num-envs", "--num-env-runners",
                   "--envs-per-runner", "--option")
    if args.resume and given:
        raise ValueError(f"--resume continues the run in --out with its saved algorithm, "
                         f"seed, config, envs and env options; leave {' '.join(given)} out")
    saved = os.path.join(args.out, "config.json")
    # --init-from: the source run's algorithm unless given (the trainer checks a mismatch)
    algo = args.algo if args.init_from is not None else args.algo or "sac"
    seed = 0 if args.seed is None else args.seed
    # the flag or, with --resume, the run's own config (with --init-from, the source's)
    # names the backend (a mismatch between the two is the trainer's one-line error)
    backends = {args.backend, _run_backend(saved) if args.resume else "sb3",
                _run_backend(os.path.join(args.init_from, "config.json"))
                if args.init_from is not None else "sb3"}
    if "rllib" in backends:
        # RLlib: env runners (Ray actors, any node) each step one OsimVectorEnv
        _needs("ray.rllib", "train --backend rllib", extra="rllib")
        if args.num_envs is not None:
            raise ValueError(f"--backend rllib steps --num-env-runners x --envs-per-runner "
                             f"envs; got --num-envs {args.num_envs}: leave it out")
        from fastenv.train_rllib import train as train_rllib
        runners = dict(num_env_runners=args.num_env_runners, envs_per_runner=args.envs_per_runner)
        out = train_rllib(args.task, algo=algo, steps=args.steps, seed=seed, out=args.out,
                          config=args.config, resume=args.resume, address=args.address,
                          show_bar=not args.no_progress, init_from=args.init_from,
                          init_checkpoint=args.init_checkpoint,
                          **{k: v for k, v in runners.items() if v is not None}, **options)
        print(f"run saved in {out}; evaluate it with: fastenv evaluate {out}")
        return 0
    rllib_only = _given(args, "--num-env-runners", "--envs-per-runner", "--address")
    learner = "the JAX SAC" if "jax" in backends else "Stable-Baselines3"
    if rllib_only:
        raise ValueError(f"{' '.join(rllib_only)}: options of --backend rllib; this run trains "
                         f"with {learner} (--num-envs sets its envs)")
    _needs("stable_baselines3", "train")   # both log through SB3's TensorBoard writer
    if learner == "the JAX SAC":
        _needs("jax", "train --backend jax", extra="jax")
        from fastenv.train_jax import train as run_training
    else:
        from fastenv.train import train as run_training
    out = run_training(args.task, algo=algo, steps=args.steps, num_envs=args.num_envs,
                       seed=seed, out=args.out, config=args.config, resume=args.resume,
                       show_bar=not args.no_progress, init_from=args.init_from,
                       init_checkpoint=args.init_checkpoint, **options)
    print(f"run saved in {out}; evaluate it with: fastenv evaluate {out}")
    return 0


def evaluate(args) -> int:
    """Evaluate a training run's latest policy: deterministic actions in test mode from
    the reference's first frame for --seconds, K episodes with seeded start noise;
    prints per-episode and mean figures."""
    _needs("stable_baselines3", "evaluate")
    from fastenv import evaluate as ev
    options = dict(args.option or [])
    result = ev.evaluate(args.run, episodes=args.episodes, seconds=args.seconds,
                         start_noise=args.start_noise, seed=args.seed,
                         checkpoint=args.checkpoint, options=options)
    records = result.pop("_records")
    coords, model_coords = result.pop("_coordinates"), result.pop("_model_coordinates")
    rotational = result.pop("_rotational")
    state_names, model_path = result.pop("_state_names"), result.pop("_model_path")
    m = result["mean"]
    conditions = "".join(f", {k}={v}" for k, v in options.items())
    checkpoint = "" if args.checkpoint is None else f", checkpoint {args.checkpoint}"
    print(f"{result['task']} ({result['algo']}{checkpoint}{conditions}), {args.episodes} "
          f"episode{'s' * (args.episodes != 1)} of {args.seconds:g} s:")
    # torque tasks: the pelvis actuators' residual moments from the ground (N·m)
    pelvis = "pelvis_moment_nm" in m

    def residual(row):
        return f" {row['pelvis_moment_nm']:8.0f}" if pelvis else ""
    print(f"{'episode':>11s} {'alive s':>8s} {'fell':>5s} {'dist m':>7s} {'speed':>6s} "
          f"{'ref speed':>9s} {'RMSE deg':>8s} {'COM err m':>9s}"
          + (f" {'pelvis Nm':>8s}" if pelvis else ""))
    for k, e in enumerate(result["episodes"]):
        print(f"{k:11d} {e['time_alive_s']:8.2f} {str(e['fell']):>5s} {e['distance_m']:7.2f} "
              f"{e['speed_m_s']:6.2f} {e['reference_speed_m_s']:9.2f} "
              f"{e['joint_rmse_deg']:8.1f} {e['com_error_m']:9.3f}" + residual(e))
    rows = [("mean", m)] + ([("random", result["random_policy"])]
                            if result["random_policy"] else []) + (
        [("zero action", result["reference_as_target"])]
        if result.get("reference_as_target") else [])
    for label, m in rows:
        print(f"{label:>11s} {m['time_alive_s']:8.2f} {m['fell']:5.2f} {m['distance_m']:7.2f} "
              f"{m['speed_m_s']:6.2f} {m['reference_speed_m_s']:9.2f} "
              f"{m['joint_rmse_deg']:8.1f} {m['com_error_m']:9.3f}" + residual(m))
    if args.json:
        with open(_folder_made(args.json), "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")   # each output named, as --plot-grf and --export are
    if args.plot:
        ev.plot_joint_angles(records[0], coords, model_coords, _folder_made(args.plot),
                             title=f"{result['task']}: episode 0")
        print(f"wrote {args.plot}")
    if args.curves:
        # the baselines over the checkpoints' own test episodes (their length, seeds)
        ev.plot_learning_curves(args.run, _folder_made(args.curves),
                                ev.checkpoint_baselines(args.run))
        print(f"wrote {args.curves}")
    if args.plot_grf:
        from fastenv.env import ImitationEnv
        from fastenv.train import read_run_config
        env_options = ev.policy_env_options(read_run_config(args.run), options)
        env = ImitationEnv(result["task"], **dict(env_options, mode="test"))
        try:
            _plot_grf(env, records[0], args.plot_grf, f"{result['task']}: episode 0")
        finally:
            env.close()
    if args.export:
        paths = ev.export_motion(records[0], model_coords, rotational, state_names,
                                 model_path, _folder_made(args.export))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


#: The env options that fastenv render sets from its own flags: an --option for one
#: would be overridden, so it is refused, naming the flag.
_RENDER_SETS = {"mode": "the video is always one test-mode episode (mode=test)",
                "episode_seconds": "set it with --seconds",
                "log": "it is on with --export, --plot or --plot-grf",
                "render_view": "set it with --view",
                "render_size": "set it with --width and --height"}


def render(args) -> int:
    """Write a video of one test-mode episode from the reference's first frame: a
    trained policy (--policy DIR, deterministic), seeded random actions (--random) or
    the reference alone (--reference); the reference pose is the translucent ghost.
    .png writes the last frame as a picture. An episode that ends early (a fall) ends
    the video."""
    import numpy as np

    from fastenv.env import ImitationEnv
    from fastenv.render import FPS, check_video_size, parse_size, reference_frame, write_video
    sources = [args.policy is not None, args.random, args.reference]
    if sum(sources) != 1:
        raise ValueError("choose what moves the model: --policy DIR, --random or "
                         "--reference (exactly one)")
    if args.policy is None and args.checkpoint is not None:
        raise ValueError("--checkpoint picks one of a run's policies: use it with --policy DIR")
    for key, _ in args.option or []:
        if key in _RENDER_SETS:
            raise ValueError(f"--option {key}: fastenv render sets {key} itself; "
                             f"{_RENDER_SETS[key]}")
    options, policy = dict(args.option or []), None
    task = args.task
    if args.policy is not None:
        _needs("stable_baselines3", "render --policy")
        from fastenv.evaluate import load_policy, policy_env_options
        policy, config = load_policy(args.policy, args.checkpoint)
        if task is not None and task != config["task"]:
            raise ValueError(f"the run in {args.policy} trained {config['task']}, not {task}; "
                             "leave TASK out with --policy")
        # the run's options, and --option over them where the policy allows (evaluate's)
        task, options = config["task"], policy_env_options(config, options)
    if task is None:
        raise ValueError("TASK is required (or --policy DIR, whose run names it)")
    if (args.export or args.plot or args.plot_grf) and args.reference:
        raise ValueError("--export, --plot and --plot-grf need a simulated rollout; --reference "
                         "simulates nothing (the reference's coordinates ship as "
                         "envs/references/<name>_coordinates.sto)")
    out = args.out or f"{task}.mp4"
    suffix = os.path.splitext(out)[1].lower()
    if suffix not in (".mp4", ".gif", ".png"):
        raise ValueError(f"--out must end in .mp4, .gif or .png, got {out!r}")
    try:
        parse_size((args.width, args.height))
    except ValueError:
        raise ValueError(f"--width and --height must each be within [16, 4096] pixels, "
                         f"got {args.width}x{args.height}") from None
    check_video_size(suffix, args.width, args.height, names=("--width", "--height"))
    if suffix == ".gif" and args.fps > 50:
        raise ValueError(f"--fps {args.fps} is too fast for a .gif (players slow down "
                         "frames under 20 ms): use --fps 50 or less, or .mp4")
    options.update(mode="test", episode_seconds=args.seconds,
                   log=bool(args.export or args.plot or args.plot_grf),
                   render_view=args.view, render_size=(args.width, args.height))
    env = ImitationEnv(task, render_mode="rgb_array", **options)
    if policy is not None and args.option:
        from fastenv.evaluate import check_policy_spaces
        try:
            check_policy_spaces(policy, env, dict(args.option))
        except ValueError:
            env.close()
            raise
    steps = round(args.seconds / env.sim.control_dt)
    every = FPS // args.fps
    ended = []
    if args.random:
        rng = np.random.default_rng(args.seed)
        space = env.action_space

        def policy(obs):
            return rng.uniform(space.low, space.high).astype(np.float32)

    def frames():
        obs, _ = env.reset(seed=args.seed)
        bar = _progress(steps, f"{task} -> {out}", args.no_progress)
        try:
            yield env.render() if policy else reference_frame(env, 0)
            for k in range(1, steps + 1):
                if policy is not None:
                    obs, _, terminated, truncated, info = env.step(policy(obs))
                    if terminated or (truncated and k < steps):
                        ended.append((k, "fell" if terminated else info.get("sim_error", "")))
                bar.update(1)
                if k == steps or ended or (k % every == 0 and suffix != ".png"):
                    yield env.render() if policy else reference_frame(env, k)
                if ended:
                    return
        finally:
            bar.close()

    try:
        if suffix == ".png":
            from PIL import Image
            *_, last = frames()
            Image.fromarray(last).save(_folder_made(out))
            n = 1
        else:
            n = write_video(_folder_made(out), frames(), args.fps)
        if args.export:
            paths = env.write_motion(_folder_made(args.export))
            print("wrote " + ", ".join(str(p) for p in paths.values()))
        if args.plot:
            from fastenv import evaluate as ev
            ev.plot_joint_angles(env.episode_log, env.imitated_coordinates,
                                 env.sim.coordinate_names, _folder_made(args.plot),
                                 title=f"{task}: {out}")
            print(f"wrote {args.plot}")
        if args.plot_grf:
            _plot_grf(env, env.episode_log, args.plot_grf, f"{task}: {out}")
    finally:
        env.close()
    if ended:
        k, why = ended[0]
        print(f"the episode ended at {k * env.sim.control_dt:.2f} s ({why or 'truncated'})")
    print(f"wrote {out}: {n} frame{'s' * (n != 1)} of {args.width}x{args.height}"
          + (f" at {args.fps} frames/s" if suffix != ".png" else ""))
    return 0


def _plot_grf(env, records, path, title):
    from fastenv import evaluate as ev
    steps = [r["step"] for r in records]
    ev.plot_grf(records, ev.reference_grf(env, steps), env.sim.contact_names,
                env.sim.body_weight, _folder_made(path), title=title,
                reference_fore_aft=ev.reference_fore_aft(env, steps))
    print(f"wrote {path}")


def _progress(total: int, desc: str, disable: bool):
    """A tqdm bar on stderr, or a stand-in where tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        disable = True
    if disable:
        class _Quiet:
            def update(self, n):
                pass

            def close(self):
                pass
        return _Quiet()
    return tqdm(total=total, desc=desc, unit="step", leave=False)


def _needs(module: str, command: str, extra: str = "train"):
    import importlib.util
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"fastenv {command} needs {module}: pip install "
                         f"'fastenv-opensim[{extra}]'")


# ----------------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    from fastenv import __version__
    ap = _Parser(prog="fastenv", description="Vectorized OpenSim gait-imitation envs.")
    ap.add_argument("--version", action="version", version=f"fastenv {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_CommandParser)
    task_help = "task ID (default: %(default)s); `fastenv tasks` lists them"

    t = sub.add_parser("tasks", help="list the tasks (Gymnasium IDs)",
                       description=_plain(tasks.__doc__))
    t.set_defaults(func=tasks)

    r = sub.add_parser("rollout", help="random-action rollout, prints steps/s",
                       description=_plain(rollout.__doc__))
    r.add_argument("--task", type=_task, default="MuscleWalkingImitation2D-v0", help=task_help)
    r.add_argument("--steps", type=_positive_int, default=1000,
                   help="env steps in all, resets not counted; the vector env may go up "
                        "to one batch over (default: %(default)s)")
    r.add_argument("--seed", type=_seed, default=0, help="seed of envs and actions "
                   "(default: %(default)s)")
    r.add_argument("--num-envs", type=_positive_int, default=1,
                   help="> 1: an OsimVectorEnv stepped asynchronously (default: %(default)s)")
    r.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes (default: the number of cores)")
    r.set_defaults(func=rollout)

    b = sub.add_parser("bench", help="this machine's steps/s for one task",
                       description=_plain(bench.__doc__))
    b.add_argument("--task", type=_task, default="MuscleWalkingImitation2D-v0", help=task_help)
    b.add_argument("--num-envs", type=_positive_int, default=None,
                   help="envs of the vector env (default: 2 per worker)")
    b.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes (default: the number of cores)")
    b.add_argument("--steps-per-env", type=_positive_int, default=100,
                   help="timed env steps per env, resets not counted, after 10 warm-up "
                        "steps (default: %(default)s)")
    b.add_argument("--seed", type=_seed, default=0, help="seed (default: %(default)s)")
    b.add_argument("--json", type=_output_file, default=None, metavar="FILE",
                   help="also write the rows as JSON")
    b.set_defaults(func=bench)

    tr = sub.add_parser("train", help="train a policy (SAC or PPO; Stable-Baselines3 or RLlib)",
                        description=_plain(train.__doc__))
    tr.add_argument("task", type=_task, nargs="?", default=None,
                    help="task ID; `fastenv tasks` lists them (leave out with --resume)")
    tr.add_argument("--algo", choices=("sac", "ppo"), default=None,
                    help="algorithm (default: sac)")
    tr.add_argument("--steps", type=_positive_int, default=1_000_000,
                    help="env steps in all, over all envs (default: %(default)s)")
    tr.add_argument("--num-envs", type=_positive_int, default=None,
                    help="envs stepped together (default: the config's)")
    tr.add_argument("--num-workers", type=_positive_int, default=None,
                    help="worker processes (default: the number of cores)")
    tr.add_argument("--seed", type=_seed, default=None, help="seed (default: 0)")
    tr.add_argument("--out", default="runs/train",
                    help="run folder (default: %(default)s)")
    tr.add_argument("--config", default=None, metavar="FILE",
                    help="TOML/JSON file merged over fastenv/configs/ALGO.toml")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its latest checkpoint")
    tr.add_argument("--init-from", default=None, metavar="DIR",
                    help="start a new run from the policy (and value function, optimiser "
                         "and observation statistics) of the run in DIR, with its task, "
                         "algorithm, config and env options unless given (a fine-tune: "
                         "--option apply_perturbations=true, another reference, ...)")
    tr.add_argument("--init-checkpoint", type=_positive_int, default=None, metavar="STEPS",
                    help="with --init-from: the checkpoint saved at STEPS env steps "
                         "(default: the run's latest)")
    tr.add_argument("--option", type=parse_env_option, action="append", metavar="KEY=VALUE",
                    help="an env option for every env, e.g. reward=tracking or "
                         "pd_targets=residual (repeatable; docs/tasks.md lists them)")
    tr.add_argument("--no-progress", action="store_true",
                    help="no progress bar (progress.csv is written all the same)")
    tr.add_argument("--backend", choices=("sb3", "rllib", "jax"), default="sb3",
                    help="Stable-Baselines3 on this machine, Ray RLlib (env runners "
                         "on a Ray cluster; docs/cluster.md), or fastenv's SAC in JAX "
                         "(docs/training.md) (default: %(default)s; with --resume or "
                         "--init-from, the run's)")
    tr.add_argument("--num-env-runners", type=_positive_int, default=None,
                    help="rllib: env runners, each one OsimVectorEnv (default: 2)")
    tr.add_argument("--envs-per-runner", type=_positive_int, default=None,
                    help="rllib: envs of each runner's OsimVectorEnv (default: 4); "
                         "--num-workers is then its pool workers (default: the cluster's "
                         "CPUs / runners)")
    tr.add_argument("--address", default=None,
                    help="rllib: the Ray cluster to join, auto or HOST:PORT (default: "
                         "a running local cluster, else a new Ray on this machine)")
    tr.set_defaults(func=train)

    ev = sub.add_parser("evaluate", help="evaluate a trained policy against its reference",
                        description=_plain(evaluate.__doc__))
    ev.add_argument("run", metavar="DIR", help="a run folder of fastenv train")
    ev.add_argument("--episodes", type=_positive_int, default=5,
                    help="episodes (default: %(default)s)")
    ev.add_argument("--seconds", type=_positive_float, default=10.0,
                    help="length of each episode in s (default: %(default)s)")
    ev.add_argument("--start-noise", type=_nonnegative_float, default=0.02,
                    help="std of the joint angles at the start, rad (default: %(default)s)")
    ev.add_argument("--seed", type=_seed, default=0,
                    help="seed of the first episode (default: %(default)s)")
    ev.add_argument("--json", type=_output_file, default=None, metavar="FILE",
                    help="write the figures as JSON")
    ev.add_argument("--plot", type=_output_file, default=None, metavar="FILE.png",
                    help="plot episode 0's joint angles against the reference")
    ev.add_argument("--plot-grf", type=_output_file, default=None, metavar="FILE.png",
                    help="plot episode 0's ground reaction forces against the reference's")
    ev.add_argument("--curves", type=_output_file, default=None, metavar="FILE.png",
                    help="plot the run's learning curves (progress.csv, evaluations.csv) "
                         "against the random policy")
    ev.add_argument("--export", type=_motion_file, default=None, metavar="FILE.mot",
                    help="write episode 0 for the OpenSim GUI: FILE.mot (coordinates), "
                         "FILE_states.sto (all states) and FILE.osim (its model)")
    ev.add_argument("--checkpoint", type=_positive_int, default=None, metavar="STEPS",
                    help="the policy saved at STEPS env steps (checkpoints/NNNNNNNNN) "
                         "instead of the latest")
    ev.add_argument("--option", type=parse_env_option, action="append", metavar="KEY=VALUE",
                    help="an env option over the run's, to test the policy under other "
                         "conditions: physics=accurate, apply_perturbations=true, another "
                         "model or reference (not those that change what its observations "
                         "or actions mean)")
    ev.set_defaults(func=evaluate)

    rd = sub.add_parser("render", help="a video of a policy, random actions or the reference",
                        description=_plain(render.__doc__))
    rd.add_argument("task", type=_task, nargs="?", default=None,
                    help="task ID; `fastenv tasks` lists them (leave out with --policy)")
    rd.add_argument("--policy", default=None, metavar="DIR",
                    help="a run folder of fastenv train: its latest policy")
    rd.add_argument("--checkpoint", type=_positive_int, default=None, metavar="STEPS",
                    help="with --policy: the policy saved at STEPS env steps")
    rd.add_argument("--random", action="store_true", help="seeded random actions")
    rd.add_argument("--reference", action="store_true",
                    help="play the reference alone (nothing simulated)")
    rd.add_argument("--seconds", type=_positive_float, default=5.0,
                    help="length in s (default: %(default)s)")
    rd.add_argument("--out", type=_output_file, default=None, metavar="FILE",
                    help="FILE.mp4, FILE.gif or FILE.png (the last frame) "
                         "(default: TASK.mp4)")
    rd.add_argument("--view", type=_view, default=None,
                    help="side, left, front, back, oblique or AZIMUTH,ELEVATION in degrees "
                         "(default: side for 2D tasks, oblique for 3D)")
    rd.add_argument("--width", type=_positive_int, default=640, help="pixels (default: 640)")
    rd.add_argument("--height", type=_positive_int, default=480, help="pixels (default: 480)")
    rd.add_argument("--fps", type=int, choices=(100, 50, 25, 20, 10), default=50,
                    help="frames/s of the video; the model steps at 100 (default: 50)")
    rd.add_argument("--seed", type=_seed, default=0, help="seed (default: %(default)s)")
    rd.add_argument("--export", type=_motion_file, default=None, metavar="FILE.mot",
                    help="also write the rollout for the OpenSim GUI (as evaluate --export)")
    rd.add_argument("--plot", type=_output_file, default=None, metavar="FILE.png",
                    help="plot the rollout's joint angles against the reference (as evaluate)")
    rd.add_argument("--plot-grf", type=_output_file, default=None, metavar="FILE.png",
                    help="plot the rollout's ground reaction forces against the reference's")
    rd.add_argument("--option", type=parse_env_option, action="append", metavar="KEY=VALUE",
                    help="an env option, as for train (with --policy: over the run's, as "
                         "for evaluate), e.g. your own motion file: --option "
                         "reference=walk_ik.mot --option "
                         "'reference_options={\"cycle\": \"auto\"}'")
    rd.add_argument("--no-progress", action="store_true", help="no progress bar")
    rd.set_defaults(func=render)
    return ap


def main(argv=None) -> int:
    from gymnasium import error as gym_error
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`fastenv tasks | head`): quietly, as a shell tool does;
        # stdout goes to devnull so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ValueError, OSError, RuntimeError, gym_error.Error) as exc:
        # bad input, files, workers; Gymnasium's own checks (seeds, spaces)
        if os.environ.get("FASTENV_DEBUG"):
            raise
        message = " ".join(str(exc).split())   # one line, whatever the exception holds
        print(f"fastenv {args.cmd}: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # stopping already: a repeated Ctrl-C or SIGTERM does not change how it ends
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, signal.SIG_IGN)
        print(f"fastenv {args.cmd}: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``fastenv`` command: :func:`main`'s status as the process's exit status.

    A process that has loaded JAX (``train --backend jax``, a JAX policy's
    ``evaluate``) ends with ``os._exit`` once its output is flushed, skipping the
    interpreter's native teardown: there XLA's runtime, beside OpenSim and torch,
    occasionally crashes (SIGSEGV with no Python frame left, about once in 20 runs of
    an interrupted JAX training, after its checkpoint was written), which a scheduler
    would read as a crashed job instead of the status ``main`` returned. Everything
    the command opened (worker pools, files, loggers) is closed by then."""
    code = main()
    if "jax" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
