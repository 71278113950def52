"""Training with Stable-Baselines3: ``fastenv train TASK --algo sac|ppo``.

A run lives in one folder::

    DIR/config.json              task, algorithm, seed and the resolved hyperparameters
    DIR/progress.csv             env steps, wall time, steps/s, episode return and length
    DIR/evaluations.csv          at every checkpoint and at the end of a completed run: the
                                 deterministic policy in test mode (time alive, distance,
                                 joint RMSE, COM error)
    DIR/tb/                      TensorBoard logs (SB3's scalars)
    DIR/checkpoints/NNNNNNNNN/   policy (model.zip) and observation statistics
                                 (vecnormalize.pkl) every ``checkpoint_every`` env steps
    DIR/checkpoints/latest/      the same plus state.json and, for SAC, the replay buffer

``--resume`` continues from ``checkpoints/latest`` (written at every checkpoint and on
Ctrl-C), with the saved config, so an interrupted run loses at most one checkpoint
interval. Hyperparameters are data: ``fastenv/configs/{sac,ppo}.toml``, and a file
given with ``--config`` is merged over them key by key.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import sys
import time
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from fastenv.envs import is_int
from fastenv.vector import VECTOR_OPTIONS

ALGOS = ("sac", "ppo")
SECTIONS = ("algo", "policy", "env", "task", "run")
#: what every run's config.json holds, whichever backend wrote it
RUN_CONFIG_KEYS = ("task", "algo", "env_options")
#: packaged configs merged over an algorithm's by name (``--config muscle_reflex``)
PRESETS = ("muscle_reflex",)


# ----------------------------------------------------------------------- config
def run_env_options(options: dict) -> dict:
    """``options`` as a run uses and saves them: the paths of a reference file (``.mot``,
    ``.sto``, ``.npz``) and of a ``model`` file made absolute, so that the run is
    evaluated, rendered and resumed from any working directory; anything else as
    given (a shipped reference's name stays a name)."""
    from fastenv.references import reference_file_kind
    ref, model = options.get("reference"), options.get("model")
    out = dict(options)
    if isinstance(ref, str) and reference_file_kind(ref) is not None and Path(ref).is_file():
        out["reference"] = str(Path(ref).resolve())
    if isinstance(model, (str, os.PathLike)) and Path(model).is_file():
        out["model"] = str(Path(model).resolve())
    return out


def _preset(config):
    """The packaged preset file ``config`` names (``muscle_reflex``), or None for a path
    (a file of that name in the working directory wins)."""
    if config is None or str(config) not in PRESETS or Path(str(config)).exists():
        return None
    return resources.files("fastenv.configs") / f"{config}.toml"


def check_preset(task: str, config) -> None:
    """A packaged preset given by name sets options for one kind of task: on another
    (``muscle_reflex`` on a torque task) most of it would be left out, so it is refused."""
    from fastenv.envs import TASKS, applicable_options
    preset_file = _preset(config)
    if preset_file is None or task not in TASKS:
        return
    preset = tomllib.loads(preset_file.read_text())
    left_out = sorted(set(preset.get("task", {})) - set(applicable_options(
        TASKS[task], preset.get("task", {}))))
    if left_out:
        raise ValueError(f"--config {config}: {task} ({TASKS[task].actuation}-driven) does "
                         f"not read the preset's {left_out}; the preset is for the tasks "
                         f"that do")


def config_env_options(task: str, cfg: dict, given: dict) -> dict:
    """A new run's env options: the config's ``[task]`` table (options for every task:
    those ``task`` does not read are left out), then the caller's (``--option``) over
    them, which the env checks."""
    from fastenv.envs import TASKS, applicable_options, resolve_options
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
    # what the task would not read is left out of the config's table, judged with the
    # caller's options over it (--option pd_targets=range leaves out its residual_range);
    # the caller's own options are left to the env's check
    merged = {**cfg.get("task", {}), **given}
    kept = applicable_options(TASKS[task], merged)
    options = run_env_options({**{k: kept[k] for k in cfg.get("task", {}) if k in kept},
                               **given})
    # checked now, before a run folder is written (files named in them: when built)
    resolve_options(task=TASKS[task],
                    **{k: v for k, v in options.items() if k not in VECTOR_OPTIONS})
    return options


def read_run_config(run_dir: str | Path) -> dict:
    """A run folder's ``config.json``; its env options without those the task does not
    read (``fastenv.envs.applicable_options``: runs saved before such options were
    refused kept the training config's torque options on muscle tasks, to no effect)."""
    from fastenv.envs import TASKS, applicable_options
    config_path = Path(run_dir) / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:   # a ValueError that would not name the file
        raise ValueError(f"{config_path} is not a run's config (not JSON: {exc})") from None
    lacking = [key for key in RUN_CONFIG_KEYS if key not in config] \
        if isinstance(config, dict) else list(RUN_CONFIG_KEYS)
    if lacking or not isinstance(config.get("env_options"), dict):
        raise ValueError(f"{config_path} is not a run's config: "
                         + (f"it lacks {lacking}" if lacking else "its env_options is not a "
                            "table") + "; expected the config.json `fastenv train` writes")
    if config.get("task") in TASKS:
        config["env_options"] = applicable_options(TASKS[config["task"]],
                                                   config["env_options"])
    return config


def load_config(algo: str, path: str | Path | None = None, base: dict | None = None) -> dict:
    """The packaged hyperparameters of ``algo`` (or ``base``, a run's saved config, for
    ``--init-from``), with a user TOML/JSON file (or a packaged preset's name,
    :data:`PRESETS`) merged over them (unknown sections or keys are an error: a typo
    must not be ignored)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {ALGOS}")
    packaged = tomllib.loads((resources.files("fastenv.configs") / f"{algo}.toml").read_text())
    # a copy of base: the source run's stays as it was
    config = packaged if base is None else json.loads(json.dumps(base))
    if path is None:
        return config
    path, preset_file = Path(path), _preset(path)
    if preset_file is not None:
        raw = preset_file.read_text()
    elif not path.exists() and path.suffix == "":
        raise ValueError(f"--config {str(path)!r}: no such file, and not a packaged preset "
                         f"(presets: {list(PRESETS)}); expected a TOML/JSON file or a preset")
    else:
        raw = path.read_text()
    if path.suffix.lower() not in (".json", ".toml") and preset_file is None:
        raise ValueError(f"--config {str(path)!r}: expected a .toml or .json file, or a "
                         f"packaged preset ({list(PRESETS)})")
    try:
        user = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw)
    except ValueError as exc:   # JSONDecodeError, TOMLDecodeError: neither names the file
        raise ValueError(f"--config {str(path)!r} does not parse: {exc}") from None
    if not isinstance(user, dict):
        raise ValueError(f"--config {str(path)!r} holds a {type(user).__name__}; expected "
                         f"a table of sections {SECTIONS}")
    for section, values in user.items():
        if section not in config:
            raise ValueError(f"{path}: unknown section [{section}]; expected {SECTIONS}")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: [{section}] is {values!r} ({type(values).__name__}); "
                             f"expected a table of {section} settings")
        known = set(config[section]) | set(packaged.get(section, {}))
        unknown = sorted(set(values) - known)
        # any SB3 argument may be added to [algo], any env option to [task] (the env
        # checks those when it is built)
        if unknown and section not in ("algo", "task"):
            raise ValueError(f"{path}: unknown key(s) {unknown} in [{section}]; "
                             f"expected {sorted(known)}")
        for key, value in values.items():
            _check_type(path, section, key, value, packaged[section].get(key))
        config[section].update(values)
    check_run_config(config)
    return config


def _check_type(path, section: str, key: str, value, packaged):
    """A user value of a packaged key has the packaged value's kind (a whole number for
    an integer, any number for a float, a bool for a flag, a list or SB3's dict form for
    a list): SB3 checks few of its arguments and would fail only after training began.
    Strings (SAC's ``ent_coef = "auto"``, which also takes a number) and ``[task]`` (the
    env checks it) are left to their readers."""
    if packaged is None or section == "task" or isinstance(packaged, str):
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(packaged, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(packaged, int):   # SB3 also takes train_freq as [n, "step"|"episode"]
        ok = (number and isinstance(value, int)) or (key == "train_freq"
                                                     and isinstance(value, list))
        kind = "a whole number"
    elif isinstance(packaged, float):
        ok, kind = number, "a number"
    else:
        ok, kind = isinstance(value, list | dict), "a list"
    if not ok:
        raise ValueError(f"{path}: [{section}] {key} = {value!r}: expected {kind} "
                         f"(packaged: {packaged!r})")


RUN_MINIMUM = dict(checkpoint_every=1, log_every=1, eval_episodes=0, torch_threads=1)


def check_run_config(config: dict):
    """The ``[env]`` and ``[run]`` values a run depends on before it starts, one line
    naming the bad one (a zero checkpoint interval used to fail after the run folder
    was written)."""
    env, run = config["env"], config["run"]
    n = env.get("num_envs")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"[env] num_envs = {n!r}: expected a whole number >= 1")
    for key, low in RUN_MINIMUM.items():
        v = run.get(key, low)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
            raise ValueError(f"[run] {key} = {v!r}: expected a whole number >= {low}")
    v = run.get("eval_seconds", 5.0)
    if not (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < float("inf")):
        raise ValueError(f"[run] eval_seconds = {v!r}: expected a positive number of seconds")


def check_steps_left(out, state: dict, steps: int):
    """A resumed run has env steps left to take before ``steps``: one already there
    would only rewrite its checkpoint."""
    if state["env_steps"] >= steps:
        raise ValueError(f"the run in {out} is already at {state['env_steps']} env steps; "
                         f"give --steps above that to train it on")


def resume_seed(seed: int, env_steps: int) -> int:
    """The seed a run resumed at ``env_steps`` goes on with: torch's, and env ``i``'s
    ``+ i`` at the next reset."""
    return int((seed + env_steps) % 2**32)


def check_seed(seed) -> int:
    """A run's seed: a whole number in [0, 2**32), what NumPy and torch accept."""
    if not (isinstance(seed, int | np.integer) and not isinstance(seed, bool)
            and 0 <= seed < 2**32):
        raise ValueError(f"seed {seed!r}: expected a whole number in [0, 2**32)")
    return int(seed)


def resumed_run(out: Path, steps: int, backend: str) -> tuple[dict, dict]:
    """``--resume`` of the run in ``out`` by ``backend`` (``"sb3"``, ``"rllib"``,
    ``"jax"``): its saved ``config.json`` and the ``state.json`` of its latest
    checkpoint, checked (a run of another backend, no checkpoint, ``steps`` reached)."""
    config_path = out / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"--resume: {config_path} does not exist")
    saved = read_run_config(out)
    if saved.get("backend", "sb3") != backend:
        flag = "" if backend == "sb3" else f" --backend {backend}"
        raise ValueError(f"--resume{flag}: {out} is a {saved.get('backend', 'sb3')} run; "
                         f"resume it without{flag or ' a --backend'} (it keeps its own)")
    state = Checkpoints(out).state()
    check_steps_left(out, state, steps)
    return saved, state


def new_run(out: Path, task: str, algo: str, config, seed, env_options: dict,
            base: dict | None = None):
    """A new run's checked ``(seed, config, env options)``: ``out`` must hold no run,
    the seed be valid, a preset fit the task, and the config's ``[task]`` options (with
    ``env_options`` over them) apply to it; checked before anything is built. ``base``
    replaces the packaged config (:func:`load_config`)."""
    if (out / "config.json").exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue "
                              "it or choose another --out")
    seed = check_seed(seed)
    check_preset(task, config)
    cfg = load_config(algo, config, base=base)
    return seed, cfg, config_env_options(task, cfg, env_options)


def init_run(out: Path, source, checkpoint, backend: str, task, algo, config, seed,
             env_options: dict):
    """``--init-from``: a new run in ``out`` that starts from the weights of another
    run's checkpoint (``source``'s latest, or the one saved at ``checkpoint`` env steps)
    and trains on, for example under pushes or on another reference. Its task,
    algorithm, config and env options are the source's unless given (``config`` merged
    over the source's config, ``env_options`` over its options): a fine-tune usually
    changes one thing. Returns ``(folder, task, algo, seed, config, env options,
    init_from, source config)``: ``init_from`` a record for config.json, the last the
    source run's config.json as read; checked before anything is built.
    The network (``[policy]``) and the observation normalisation are the source's: the
    weights fit nothing else."""
    from fastenv.evaluate import checkpoint_folder
    source = Path(source)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"--init-from {source}: not a training run "
                                f"({source / 'config.json'} is missing)")
    saved = read_run_config(source)
    if saved.get("backend", "sb3") != backend:
        raise ValueError(f"--init-from {source}: a {saved.get('backend', 'sb3')} run; this "
                         f"run trains with --backend {backend} (weights carry over only "
                         f"within one backend)")
    if algo is not None and algo != saved["algo"]:
        raise ValueError(f"--init-from {source}: its policy is {saved['algo']}'s; got "
                         f"--algo {algo} (leave it out)")
    algo, task = saved["algo"], task or saved["task"]
    folder = checkpoint_folder(source, checkpoint)
    source_cfg = saved["config"]
    # the source's own options (those its config's [task] did not already set), then the
    # caller's over them
    given = {k: v for k, v in saved["env_options"].items()
             if source_cfg.get("task", {}).get(k, _UNSET) != v}
    seed, cfg, options = new_run(out, task, algo, config, seed, {**given, **env_options},
                                 base=source_cfg)
    kept = {"[policy]": (cfg["policy"], source_cfg["policy"]),
            "[env] normalize_observations": (cfg["env"].get("normalize_observations"),
                                             source_cfg["env"].get("normalize_observations"))}
    for name, (new, old) in kept.items():
        if new != old:
            raise ValueError(f"--config {config}: {name} {new!r} differs from the source "
                             f"run's {old!r}; --init-from keeps the network and observation "
                             f"normalisation its weights were trained with")
    state = json.loads((folder / "state.json").read_text()) \
        if (folder / "state.json").is_file() else {}
    record = dict(run=str(source.resolve()), checkpoint=folder.name,
                  env_steps=state.get("env_steps", int(folder.name)
                                      if folder.name.isdigit() else None),
                  wall_s=state.get("wall_s"))   # numbered checkpoints keep no state.json
    return folder, task, algo, seed, cfg, options, record, saved


_UNSET = object()


def _check_not_both(init_from):
    if init_from is not None:
        raise ValueError("--init-from starts a new run; --resume continues the run in "
                         "--out from its own checkpoint: give one of them")


def sb3_checkpoint_statistics(folder: Path):
    """The observation (and return) statistics of the SB3 checkpoint in ``folder`` (a
    ``VecNormalize`` without its venv), after checking that the checkpoint has both of
    its files; a damaged pickle is one ValueError naming it."""
    import pickle
    for name in ("model.zip", "vecnormalize.pkl"):   # SB3 named a missing one model.zip.zip
        if not (folder / name).is_file():
            raise FileNotFoundError(f"checkpoint {folder} is incomplete: {name} is missing")
    try:
        with open(folder / "vecnormalize.pkl", "rb") as f:
            return pickle.load(f)
    except Exception as exc:   # a damaged pickle raises any of a dozen types
        raise ValueError(f"cannot read {folder / 'vecnormalize.pkl'}, the observation "
                         f"statistics of the checkpoint: {type(exc).__name__}: {exc}") from exc


def _load_sb3_weights(model, venv, folder: Path, cfg: dict):
    """The SB3 checkpoint in ``folder`` into the new ``model`` (policy, value function
    and optimiser states; SAC's entropy coefficient) and its observation (and, where
    both normalise rewards, return) statistics into ``venv``, after checking that the
    spaces match. A replay buffer is not carried: a new run collects its own."""
    from stable_baselines3.common.save_util import load_from_zip_file, recursive_setattr
    stats = sb3_checkpoint_statistics(folder)
    data, params, variables = load_from_zip_file(folder / "model.zip", device="cpu")
    for name in ("observation_space", "action_space"):
        trained, now = data[name].shape, getattr(model, name).shape
        if trained != now:
            raise ValueError(f"--init-from {folder}: this run's {name} has shape {now}; "
                             f"the source policy was trained on {trained}")
    try:
        model.set_parameters(params, exact_match=True, device="cpu")
    except (ValueError, RuntimeError, KeyError) as exc:   # torch: "size mismatch for ..."
        raise ValueError(f"--init-from {folder}: its weights do not fit this run's "
                         f"{type(model).__name__} ([algo] such as ent_coef changed?): "
                         f"{str(exc).splitlines()[0]}") from exc
    for name, value in (variables or {}).items():
        if value is not None and hasattr(model, name):
            recursive_setattr(model, f"{name}.data", value.data)
    venv.obs_rms = stats.obs_rms
    if cfg["env"]["normalize_rewards"] and stats.norm_reward:
        venv.ret_rms = stats.ret_rms


# ----------------------------------------------------------------------- envs
def make_training_env(task: str, num_envs: int, seed: int, config: dict, **env_options):
    """The SB3 VecEnv for training: the fastenv pool, ``VecMonitor`` for episode
    statistics, and ``VecNormalize`` as the config says."""
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from fastenv.adapters.sb3 import make_vec_env
    venv = VecMonitor(make_vec_env(task, num_envs, seed=seed, **env_options))
    env_cfg = config["env"]
    return VecNormalize(venv, norm_obs=env_cfg["normalize_observations"],
                        norm_reward=env_cfg["normalize_rewards"],
                        gamma=config["algo"].get("gamma", 0.99))


def _algo_class(algo: str):
    from stable_baselines3 import PPO, SAC
    return {"sac": SAC, "ppo": PPO}[algo]


# ----------------------------------------------------------------------- checkpoints
@contextlib.contextmanager
def _folder_written(final: Path):
    """A fresh temporary folder beside ``final`` to write into; once the block completes
    it replaces ``final`` by two renames (the old one moved aside, removed after). An
    interrupt mid-write leaves ``final`` as it was, not half a checkpoint, and ``final``
    is missing only between the two renames."""
    tmp = final.with_name(f".{final.name}.tmp")
    old = final.with_name(f".{final.name}.old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir(parents=True)
    yield tmp
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def write_checkpoint(root: Path, state: dict, save_policy, save_resume=None) -> Path:
    """``root/NNNNNNNNN`` (the env step count) with what ``save_policy(folder)`` writes,
    then ``root/latest``: a copy of it plus ``save_resume(folder)`` (what only a resume
    needs, such as a replay buffer) and ``state.json``; each folder replaced only once
    complete (:func:`_folder_written`). Returns ``root/latest``."""
    step = root / f"{state['env_steps']:09d}"
    with _folder_written(step) as folder:
        save_policy(folder)
    latest = root / "latest"
    with _folder_written(latest) as folder:
        shutil.copytree(step, folder, dirs_exist_ok=True)
        if save_resume is not None:
            save_resume(folder)
        (folder / "state.json").write_text(json.dumps(state, indent=1))
    return latest


class CheckpointSchedule:
    """When a run logs and checkpoints: at the next multiple of ``log_every`` and
    ``checkpoint_every`` reached, the same multiples before and after a resume however
    many steps an iteration adds; and (``save``, for the trainers that write their own
    checkpoints: ``--backend rllib``, ``jax``) a step count is saved once."""

    def __init__(self, config: dict, state: dict):
        self.state = state
        self.log_every = int(config["run"]["log_every"])
        self.checkpoint_every = int(config["run"]["checkpoint_every"])
        self.next_log = self._after(self.log_every)
        self.next_checkpoint = self._after(self.checkpoint_every)
        self.saved_at = state["env_steps"]   # a resumed run's latest checkpoint

    def _after(self, every: int) -> int:
        return (self.state["env_steps"] // every + 1) * every

    def log_due(self) -> bool:
        if self.state["env_steps"] < self.next_log:
            return False
        self.next_log = self._after(self.log_every)
        return True

    def checkpoint_due(self) -> bool:
        if self.state["env_steps"] < self.next_checkpoint:
            return False
        self.next_checkpoint = self._after(self.checkpoint_every)
        return True

    def save(self, root: Path, save_policy, save_resume=None) -> Path | None:
        """:func:`write_checkpoint` unless this step count is saved already; the new
        ``latest`` folder, or None."""
        if self.saved_at == self.state["env_steps"]:
            return None
        latest = write_checkpoint(root, self.state, save_policy, save_resume)
        # counted as saved once it is complete: a SIGTERM during the write must leave the
        # final save in `finally` to write it again, not skip it as done
        self.saved_at = self.state["env_steps"]
        return latest


class Checkpoints:
    """The checkpoint folder of a run."""

    def __init__(self, out: Path):
        self.root = out / "checkpoints"
        self.latest = self.root / "latest"

    def save(self, model, venv, state: dict):
        def policy(folder):
            model.save(folder / "model.zip")
            venv.save(str(folder / "vecnormalize.pkl"))

        def replay_buffer(folder):
            if getattr(model, "replay_buffer", None) is not None:
                model.save_replay_buffer(folder / "replay_buffer.pkl")
        write_checkpoint(self.root, state, policy, replay_buffer)

    def state(self) -> dict:
        path = self.latest / "state.json"
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {path} is missing")
        return json.loads(path.read_text())


# ----------------------------------------------------------------------- progress
EVALUATION_COLUMNS = ("env_steps", "wall_s", "episodes", "time_alive_s", "fell",
                      "distance_m", "reference_distance_m", "joint_rmse_deg", "com_error_m")


def append_evaluation(out: Path, state: dict, metrics: dict):
    """One checkpoint's test-mode figures (with the run's state) as a row of
    ``out/evaluations.csv``, the header first: the learning curve in imitation terms."""
    path = out / "evaluations.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(EVALUATION_COLUMNS)
        row = {**state, **metrics}
        # counts stay integers (env_steps, episodes), figures are rounded
        writer.writerow([v if is_int(v) else round(float(v), 4)
                         for v in (row[c] for c in EVALUATION_COLUMNS)])


class ProgressLog:
    """A run's progress.csv and progress bar, for both training paths: ``advance``
    counts env steps and wall time into ``state``; ``log`` writes a row with steps/s and
    the mean return and length of the episodes recorded since the last row."""

    COLUMNS = ("env_steps", "wall_s", "steps_per_s", "episodes", "mean_return",
               "mean_length")

    def __init__(self, out: Path, total: int, state: dict, show_bar: bool):
        self.state = state
        self.t0, self.wall0, self.steps0 = time.perf_counter(), state["wall_s"], state["env_steps"]
        self.logged = self.steps0
        self.returns, self.lengths = [], []
        path = out / "progress.csv"
        new = not path.exists()
        self.csv = open(path, "a", newline="")
        self.writer = csv.writer(self.csv)
        if new:
            self.writer.writerow(self.COLUMNS)
        self.bar = None
        if show_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=self.steps0, unit="step", smoothing=0.05,
                            dynamic_ncols=True)

    def advance(self, n: int):
        self.state["env_steps"] += n
        self.state["wall_s"] = self.wall0 + time.perf_counter() - self.t0
        if self.bar is not None:
            self.bar.update(n)

    def episode(self, episode_return: float, length: float):
        self.returns.append(episode_return)
        self.lengths.append(length)

    def log(self):
        s = self.state
        if s["env_steps"] == self.logged:
            return
        self.logged = s["env_steps"]
        rate = (s["env_steps"] - self.steps0) / max(1e-9, s["wall_s"] - self.wall0)
        mean_r = float(np.mean(self.returns)) if self.returns else float("nan")
        mean_l = float(np.mean(self.lengths)) if self.lengths else float("nan")
        self.writer.writerow([s["env_steps"], round(s["wall_s"], 1), round(rate, 1),
                              s["episodes"], round(mean_r, 4), round(mean_l, 1)])
        self.csv.flush()
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rate:.0f} steps/s, return {mean_r:.2f}, "
                                     f"length {mean_l:.0f}")
        self.returns, self.lengths = [], []

    def close(self):
        self.csv.close()
        if self.bar is not None:
            self.bar.close()


class Progress(BaseCallback):
    """SB3's side of a run: progress (:class:`ProgressLog`), checkpoints and a short
    evaluation at each checkpoint (evaluations.csv), counted in env steps (all envs
    together). ``evaluate`` is ``policy -> metrics`` (:func:`checkpoint_episodes`) or None."""

    def __init__(self, out: Path, total: int, state: dict, config: dict, checkpoints,
                 venv, show_bar: bool = True, evaluate=None):
        super().__init__()
        self.evaluate = evaluate
        self.out, self.state = out, state
        self.checkpoints, self.venv = checkpoints, venv
        self.progress = ProgressLog(out, total, state, show_bar)
        self.evaluated_at = state["env_steps"]   # a resumed run's last one was evaluated
        self.schedule = CheckpointSchedule(config, state)

    def _on_step(self) -> bool:
        _stop_if_requested()
        self.progress.advance(self.training_env.num_envs)
        for info in self.locals.get("infos", []):
            episode = info.get("episode")
            if episode:
                self.progress.episode(episode["r"], episode["l"])
                self.state["episodes"] += 1
        if self.schedule.log_due():
            self.progress.log()
        if self.schedule.checkpoint_due():
            self.checkpoints.save(self.model, self.venv, self.state)
            self.evaluation()
        return True

    def evaluation(self):
        """Append the current policy's test-mode figures to evaluations.csv, once per
        env-step count."""
        if self.evaluate is None or self.evaluated_at == self.state["env_steps"]:
            return
        self.evaluated_at = self.state["env_steps"]
        append_evaluation(self.out, self.state,
                          self.evaluate(_sb3_policy(self.model, self.venv)))

    def log(self):
        self.progress.log()

    def close(self):
        self.progress.close()


def checkpoint_episodes(task: str, env_options: dict, config: dict, seed: int):
    """``policy -> mean metrics`` of ``eval_episodes`` deterministic test-mode episodes
    of ``eval_seconds`` (seeded start noise) on one env built at first use and reused
    (``.close()`` closes it), or None when ``eval_episodes`` < 1: the checkpoints'
    learning curve in imitation terms, not only return, for every backend."""
    from fastenv import evaluate as ev
    from fastenv.env import ImitationEnv
    run = config["run"]
    episodes, seconds = int(run.get("eval_episodes", 2)), float(run.get("eval_seconds", 5.0))
    if episodes < 1:
        return None
    options = {k: v for k, v in env_options.items() if k not in VECTOR_OPTIONS}
    options.update(mode="test", log=True, episode_seconds=seconds, start_noise=0.02)
    envs = []   # built at the first checkpoint, reused by the later ones

    def evaluate(policy):
        if not envs:
            envs.append(ImitationEnv(task, **options))
        results = [ev.run_episode(envs[0], policy, seed=seed + 10_000 + k)
                   for k in range(episodes)]
        for r in results:
            r.pop("records")
        return ev.summarize(results)
    evaluate.close = lambda: [env.close() for env in envs]
    return evaluate


def _sb3_policy(model, venv):
    """The deterministic policy of an SB3 model in training, observations normalised
    with the training statistics."""
    def policy(obs):
        action, _ = model.predict(venv.normalize_obs(obs[None, :]), deterministic=True)
        return action[0]
    return policy


def _check_algo_keys(cls, algo: str, values: dict):
    """``[algo]`` keys are SB3 arguments of ``cls``: a typo is named before anything
    is built or written (SB3 would raise a TypeError from its constructor)."""
    import inspect
    accepted = set()
    for klass in cls.__mro__:   # a subclass (PipelinedPPO) may pass **kwargs on to PPO
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters
            accepted |= set(params)
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                break
    unknown = sorted(set(values) - accepted - {"self", "policy", "env"})
    if unknown:
        raise ValueError(f"[algo] {unknown}: not arguments of {cls.__name__} ({algo}); "
                         f"see Stable-Baselines3's {cls.__name__} documentation")


#: the SIGTERM the running training received, if any (see :func:`_interrupt`)
_STOP: dict = {"signal": None}


def _interrupt(signum, frame):
    """SIGTERM (a scheduler's or `kill`'s stop) ends training like Ctrl-C: checkpoint,
    then exit; background jobs cannot get SIGINT, which non-interactive shells ignore.
    Further SIGTERMs are ignored from here: a repeated stop arriving before the final
    save's ``_uninterrupted`` block is entered would otherwise cut that save (seen under
    load); the trainers restore the handler they found once the save is done. The stop
    is also recorded, and the training loops raise it again (:func:`_stop_if_requested`):
    Python runs the handler wherever the main thread is, and there its
    KeyboardInterrupt can be swallowed (seen in JAX's garbage-collection callback,
    "Exception ignored in"), which left the run training with SIGTERM ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _STOP["signal"] = signum
    raise KeyboardInterrupt(f"signal {signum}")


def _catch_stop():
    """Install :func:`_interrupt` for SIGTERM (no stop recorded yet); returns the
    handler it replaced. Also installs :func:`_quiet_swallowed_stop` as the
    unraisable-exception hook (once per process)."""
    _STOP["signal"] = None
    if sys.unraisablehook is not _quiet_swallowed_stop:
        _STOP["unraisablehook"] = sys.unraisablehook
        sys.unraisablehook = _quiet_swallowed_stop
    return signal.signal(signal.SIGTERM, _interrupt)


def _quiet_swallowed_stop(unraisable):
    """Where :func:`_interrupt`'s KeyboardInterrupt is swallowed (a ``__del__`` or a
    garbage-collection callback such as JAX's), Python prints "Exception ignored in"
    with a traceback, which reads as a crash on the stopping run's stderr; the stop is
    recorded and the training loop raises it again, so that report is dropped. Every
    other unraisable exception goes to the hook found before."""
    if (isinstance(unraisable.exc_value, KeyboardInterrupt) and _STOP["signal"] is not None
            and unraisable.exc_value.args == (f"signal {_STOP['signal']}",)):
        return
    _STOP.get("unraisablehook", sys.__unraisablehook__)(unraisable)


def _stop_if_requested():
    """Raise the recorded SIGTERM's KeyboardInterrupt again, from a training loop: the
    handler's own may have been swallowed where it was raised."""
    if _STOP["signal"] is not None:
        raise KeyboardInterrupt(f"signal {_STOP['signal']}")


@contextlib.contextmanager
def _uninterrupted(restore: dict | None = None):
    """Hold off SIGINT and SIGTERM while a stopping run writes its last checkpoint and
    closes its envs: a second Ctrl-C or a scheduler's repeated stop would otherwise kill
    it mid-save, losing the steps since the previous checkpoint. SIGKILL still ends it.
    ``restore`` ({signal: handler}) replaces the handlers found on entry at the end, so
    that no moment between the two leaves a default (killing) handler in place."""
    handlers = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    handlers.update(restore or {})
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------- train
def train(task: str, algo: str = "sac", steps: int = 1_000_000, num_envs: int | None = None,
          seed: int = 0, out: str | Path = "runs/train", config: str | Path | None = None,
          resume: bool = False, num_workers: int | None = None, show_bar: bool = True,
          init_from: str | Path | None = None, init_checkpoint: int | None = None,
          **env_options) -> Path:
    """Train ``algo`` on ``task`` until ``steps`` env steps (all envs together) have
    been taken; returns the run folder. See the module docstring for its layout.
    ``init_from`` starts a new run from another run's weights (:func:`init_run`)."""
    from stable_baselines3.common.logger import configure

    out = Path(out)
    checkpoints = Checkpoints(out)
    config_path = out / "config.json"
    source = record = None
    if resume:
        _check_not_both(init_from)
        saved, state = resumed_run(out, steps, "sb3")
        task, algo, seed, cfg = saved["task"], saved["algo"], saved["seed"], saved["config"]
        env_options, num_envs = saved["env_options"], saved["num_envs"]
    else:
        if init_from is not None:
            source, task, algo, seed, cfg, env_options, record, _ = init_run(
                out, init_from, init_checkpoint, "sb3", task, algo, config, seed, env_options)
        else:
            seed, cfg, env_options = new_run(out, task, algo or "sac", config, seed,
                                             env_options)
        num_envs = int(num_envs or cfg["env"]["num_envs"])
        cfg["env"]["num_envs"] = num_envs   # config.json holds what the run used
        state = dict(env_steps=0, wall_s=0.0, episodes=0)
    cls = _algo_class(algo)
    if algo == "ppo" and cfg["run"].get("pipelined_rollouts", False):
        # the policy acts on half of the envs while the other half steps (fastenv.collect)
        from fastenv.adapters.sb3_ppo import PipelinedPPO
        cls = PipelinedPPO
    if not resume:
        _check_algo_keys(cls, algo, cfg["algo"])
    saved_options = env_options
    if num_workers is not None:
        env_options = dict(env_options, num_workers=num_workers)
    import torch
    # the pool's workers use the cores: a multi-threaded learner competes with them
    # (one SAC gradient step, 256x256, batch 256, measured 146 ms with 2 threads against
    # 22 ms with 1 while the pool ran on both cores of this machine)
    torch.set_num_threads(int(cfg["run"].get("torch_threads", 1)))
    venv = make_training_env(task, num_envs, seed, cfg, **env_options)
    try:
        if resume:
            from stable_baselines3.common.vec_env import VecNormalize
            venv = VecNormalize.load(str(checkpoints.latest / "vecnormalize.pkl"), venv.venv)
            model = cls.load(checkpoints.latest / "model.zip", env=venv, device="cpu")
            # load seeds torch and the envs with the run's seed, which would replay the
            # run's first episodes (start frames, noise); a resume at N env steps goes on
            # with seed + N instead, the same for every resume at that point
            model.set_random_seed(resume_seed(seed, state["env_steps"]))
            buffer = checkpoints.latest / "replay_buffer.pkl"
            if buffer.is_file():
                model.load_replay_buffer(buffer)
        else:
            try:
                model = cls("MlpPolicy", venv, seed=seed, device="cpu",
                            policy_kwargs=dict(cfg["policy"]), verbose=0, **cfg["algo"])
            except (TypeError, ValueError, AssertionError, KeyError) as exc:
                # SB3's own checks of [algo] and [policy] values (net_arch = "wide")
                raise ValueError(f"{algo} does not accept the config's [algo] or [policy] "
                                 f"values: {type(exc).__name__}: {exc}") from exc
            if source is not None:
                _load_sb3_weights(model, venv, source, cfg)
            # written once the envs and the model exist: a run that cannot start leaves
            # no run folder behind
            out.mkdir(parents=True, exist_ok=True)
            config_path.write_text(json.dumps(dict(
                task=task, algo=algo, seed=seed, num_envs=num_envs,
                env_options=saved_options, config=cfg,
                **({} if record is None else dict(init_from=record))), indent=1))
    except BaseException:
        venv.close()
        raise
    model.set_logger(configure(str(out / "tb"), ["tensorboard"]))
    progress = Progress(out, steps, state, cfg, checkpoints, venv, show_bar,
                        evaluate=checkpoint_episodes(task, env_options, cfg, seed))
    remaining = steps - state["env_steps"]
    previous = _catch_stop()
    completed = False
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=progress,
                        reset_num_timesteps=not resume, progress_bar=False)
        completed = True
    finally:   # also on Ctrl-C or SIGTERM: the interrupted run resumes from here
        with _uninterrupted(restore={signal.SIGTERM: previous}):
            progress.log()
            checkpoints.save(model, venv, progress.state)
            if completed:
                # the final policy is the one a run is judged by: its row ends the curve
                # (an interrupted run skips it: a scheduler's grace period is short)
                progress.evaluation()
            progress.close()
            venv.close()
            if progress.evaluate is not None:
                progress.evaluate.close()
    return out
