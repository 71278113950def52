"""Evaluation of a policy against its reference: ``fastenv evaluate DIR``.

The policy runs deterministically in test mode from the reference's first frame for a
fixed time (the reference loops, so the time may exceed a training episode); each
episode starts from the reference pose with seeded noise (``start_noise``), so that K
episodes spread. Per episode and averaged, :func:`episode_metrics` reports:

- time alive (s) and whether the model fell (terminated) before the end;
- distance (m) and mean forward speed of the centre of mass, and the reference's over
  the same time;
- joint-angle RMSE against the reference at the same instants, per coordinate and
  overall (degrees; the rotational coordinates the reward imitates);
- centre-of-mass position error (m, mean over the episode, in the task's axes);
- effort: the metabolic cost of transport (muscle tasks: metabolic energy per body
  weight and distance) or the RMS of the normalised joint torques (torque tasks);
- the mean of each reward term.
"""
from __future__ import annotations

import numpy as np


def episode_metrics(*, dt: float, coordinate_names, q, q_ref, com, com_ref, fell: bool,
                    reward_terms: dict, sim_error: str | None = None, metabolic_power=None,
                    body_weight=None,
                    torque_rms=None, progress_axis: int = 0, axes: int = 3) -> dict:
    """Metrics of one episode from per-step records (rows = control steps).

    ``q``/``q_ref`` in radians ``(T, n)`` for ``coordinate_names``; ``com``/``com_ref``
    ``(T + 1, 3)`` including the start; ``metabolic_power`` (W, per step) with
    ``body_weight`` (N) for muscle tasks, or ``torque_rms`` (per step) for torque tasks.
    """
    q, q_ref = np.asarray(q, float), np.asarray(q_ref, float)
    com, com_ref = np.asarray(com, float), np.asarray(com_ref, float)
    steps = len(q)
    if q.shape != q_ref.shape or q.ndim != 2 or q.shape[1] != len(coordinate_names):
        raise ValueError(f"q {q.shape} and q_ref {q_ref.shape} must both be "
                         f"(steps, {len(coordinate_names)})")
    if com.shape != (steps + 1, 3) or com_ref.shape != (steps + 1, 3):
        raise ValueError(f"com {com.shape} and com_ref {com_ref.shape} must be "
                         f"({steps + 1}, 3): the start and every step")
    duration = steps * dt
    err = np.degrees(q - q_ref)
    per_coordinate = np.sqrt(np.mean(err ** 2, axis=0)) if steps else np.zeros(q.shape[1])
    distance = float(com[-1, progress_axis] - com[0, progress_axis])
    ref_distance = float(com_ref[-1, progress_axis] - com_ref[0, progress_axis])
    out = dict(
        time_alive_s=duration, fell=bool(fell), sim_error=sim_error, steps=steps,
        distance_m=distance, reference_distance_m=ref_distance,
        speed_m_s=distance / duration if duration else 0.0,
        reference_speed_m_s=ref_distance / duration if duration else 0.0,
        joint_rmse_deg=float(np.sqrt(np.mean(err ** 2))) if steps else 0.0,
        joint_rmse_deg_per_coordinate=dict(zip(coordinate_names,
                                               (float(v) for v in per_coordinate))),
        com_error_m=float(np.mean(np.linalg.norm((com - com_ref)[1:, :axes], axis=1)))
        if steps else 0.0,
        reward_terms={k: float(np.mean(v)) if len(v) else 0.0 for k, v in reward_terms.items()},
    )
    if metabolic_power is not None:
        energy = float(np.sum(metabolic_power) * dt)
        out["metabolic_energy_J"] = energy
        out["body_weight_n"] = float(body_weight)
        # undefined (None) without forward progress: no finite energy per metre
        out["cost_of_transport"] = (energy / (body_weight * distance)
                                    if distance > 0 else None)
    if torque_rms is not None:
        out["torque_rms"] = float(np.sqrt(np.mean(np.square(torque_rms)))) if steps else 0.0
    return out


def summarize(episodes: list[dict]) -> dict:
    """Mean over episodes of every numeric metric (nested per-coordinate and reward
    dicts averaged key by key), and the fraction of episodes that fell."""
    def mean_of(values):
        if values[0] is None or isinstance(values[0], str):
            return sum(v is not None for v in values) / len(values)   # fraction with one
        if isinstance(values[0], dict):
            return {k: mean_of([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], bool):
            return float(np.mean(values))
        return float(np.mean(values))
    out = {key: mean_of([e[key] for e in episodes]) for key in episodes[0]
           if key not in ("seed", "cost_of_transport", "termination")}
    if "termination" in episodes[0]:   # the share of episodes each rule ended
        causes = sorted({c for e in episodes for c in e["termination"]})
        out["termination"] = {c: sum(c in e["termination"] for e in episodes) / len(episodes)
                              for c in causes}
    if "cost_of_transport" in episodes[0]:
        # all the energy over all the distance, defined while the episodes moved forward
        # in all (a mean of per-episode ratios would be undefined if one did not)
        distance = sum(e["distance_m"] for e in episodes)
        out["cost_of_transport"] = (sum(e["metabolic_energy_J"] for e in episodes)
                                    / (episodes[0]["body_weight_n"] * distance)
                                    if distance > 0 else None)
    return out


# ----------------------------------------------------------------------- rollouts
def run_episode(env, policy, *, seed: int) -> dict:
    """One episode of ``env`` (an ``ImitationEnv`` built with ``log=True``) under
    ``policy(obs) -> action``; returns :func:`episode_metrics` plus the per-step records
    under ``"records"`` (not JSON)."""
    obs, _ = env.reset(seed=seed)
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(policy(obs))
    log = env.episode_log
    steps = log[1:]
    names = env.imitated_coordinates
    cn = env.sim.coordinate_names
    cols = [cn.index(n) for n in names]
    muscle = "metabolic_power" in (steps[0] if steps else {})
    metrics = episode_metrics(
        dt=env.sim.control_dt, coordinate_names=names,
        q=np.array([r["q"][cols] for r in steps]).reshape(len(steps), len(cols)),
        q_ref=np.array([r["q_ref"][cols] for r in steps]).reshape(len(steps), len(cols)),
        com=np.array([r["com"] for r in log]), com_ref=np.array([r["com_ref"] for r in log]),
        fell=bool(terminated), sim_error=info.get("sim_error"),
        reward_terms={k: [r[k] for r in steps] for k in env.reward_terms},
        metabolic_power=[r["metabolic_power"] for r in steps] if muscle else None,
        body_weight=env.sim.body_weight,
        torque_rms=None if muscle else [
            np.sqrt(np.mean(np.square(r["torque"] / env.actuation.max_actuation)))
            for r in steps],
        progress_axis=env.spec_task.progress_axis, axes=env._axes)
    # steps integrated again without the minimum step (fast preset): those steps and the
    # hold after each (50 ms, doubling per retry) ran at the integrator's accuracy, which
    # a reader of the metrics should know
    metrics["integrator_retries"] = sum(bool(r["integrator_retry"]) for r in steps)
    pelvis = [k for k, a in enumerate(env.sim.actuator_names) if a.startswith("pelvis_")]
    if not muscle and pelvis:
        # the pelvis actuators are residual moments from the ground, not joint torques:
        # how much the gait leans on them (N·m, the norm over tilt/list/rotation)
        metrics["pelvis_moment_nm"] = float(np.mean(
            [np.linalg.norm(r["torque"][pelvis]) for r in steps])) if steps else 0.0
    # "fell" is any termination: which rule ended the episode (a fall, a joint-limit
    # force, an acceleration)
    metrics["termination"] = ([cause for cause, on in env.termination_causes().items() if on]
                              if terminated else [])
    metrics["seed"] = seed
    metrics["records"] = log
    return metrics


#: env options that fix what a trained policy's observations and actions mean (their
#: layout, scaling, and the actuation an action drives), and the run's own episode
#: settings: an evaluation or a video of the policy keeps the run's
POLICY_BOUND_OPTIONS = ("excitations", "excitation_range", "pd_targets", "residual_range",
                        "horizon", "observe_previous_actions", "use_target_obs", "use_GRF",
                        "obs_dtype", "mode", "log", "episode_seconds", "start_noise",
                        "visualize", "pelvis_residuals")


def policy_env_options(config: dict, overrides: dict | None = None) -> dict:
    """A run's env options with ``overrides`` over them, to test its policy under other
    conditions (``physics="accurate"``, ``apply_perturbations=True``, another model or
    reference); those of :data:`POLICY_BOUND_OPTIONS` are refused."""
    overrides = dict(overrides or {})
    bound = sorted(set(overrides) & set(POLICY_BOUND_OPTIONS))
    if bound:
        raise ValueError(f"option {bound[0]!r} is fixed by the run: it changes what the "
                         f"policy's observations or actions mean, or the command sets it "
                         f"(options that stay the run's: {', '.join(POLICY_BOUND_OPTIONS)})")
    return {**config["env_options"], **overrides}


def check_policy_spaces(policy, env, overrides: dict):
    """The policy's observation and action shapes against an env built with
    ``overrides`` (another ``model`` may have other coordinates or muscles)."""
    for name in ("observation_space", "action_space"):
        trained = getattr(policy, name).shape
        if getattr(env, name).shape != trained:
            raise ValueError(f"with {', '.join(f'{k}={v!r}' for k, v in overrides.items())} "
                             f"the env's {name} has shape {getattr(env, name).shape}; the "
                             f"policy was trained on {trained}")


def checkpoint_folder(run_dir, checkpoint=None):
    """``checkpoints/latest`` of a run, or ``checkpoints/NNNNNNNNN`` for the checkpoint
    saved at ``checkpoint`` env steps."""
    from pathlib import Path
    root = Path(run_dir) / "checkpoints"
    if checkpoint is None:
        latest = root / "latest"
        if not (latest / "state.json").is_file():
            raise FileNotFoundError(f"{run_dir} has no checkpoint yet ({latest} is missing or "
                                    f"incomplete): a run saves one every checkpoint_every env "
                                    f"steps and when it stops")
        return latest
    folder = root / f"{int(checkpoint):09d}"
    if not folder.is_dir():
        saved = sorted(int(p.name) for p in root.glob("[0-9]" * 9) if p.is_dir())
        raise FileNotFoundError(f"{run_dir} has no checkpoint at {checkpoint} env steps; "
                                f"saved: {saved or 'none'} (and latest)")
    return folder


def load_policy(run_dir, checkpoint=None):
    """The deterministic policy of a training run (``checkpoints/latest``, or the one
    saved at ``checkpoint`` env steps): returns ``(policy(obs) -> action, run config)``,
    the policy carrying its ``observation_space`` and ``action_space``; observations are
    normalised with the checkpoint's saved statistics, as in training."""
    from pathlib import Path

    from fastenv.train import _algo_class, read_run_config, sb3_checkpoint_statistics
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: {config_path} is missing")
    config = read_run_config(run_dir)
    folder = checkpoint_folder(run_dir, checkpoint)
    if config.get("backend") == "rllib":   # an RLlib algorithm checkpoint: its RLModule
        from fastenv.adapters.rllib import checkpoint_policy
        return checkpoint_policy(folder), config
    if config.get("backend") == "jax":   # the JAX SAC's actor, run with NumPy
        from fastenv.adapters.jax_sac import checkpoint_policy
        return checkpoint_policy(folder), config
    stats = sb3_checkpoint_statistics(folder)   # normalize_obs only: it has no venv
    model = _algo_class(config["algo"]).load(folder / "model.zip", device="cpu")

    def policy(obs):
        action, _ = model.predict(stats.normalize_obs(obs[None, :]), deterministic=True)
        return action[0]
    policy.observation_space, policy.action_space = model.observation_space, model.action_space
    return policy, config


def evaluate(run_dir, *, episodes: int = 5, seconds: float = 10.0, start_noise: float = 0.02,
             seed: int = 0, random_baseline: bool = True, checkpoint=None,
             options: dict | None = None) -> dict:
    """Evaluate a training run's latest policy (or the one saved at ``checkpoint`` env
    steps): ``episodes`` test-mode episodes of ``seconds`` each from the reference's
    first frame, with seeded start noise (rad), on the run's env with ``options`` over
    its options (:func:`policy_env_options`). Returns ``{"task", "run", "episodes":
    [...], "mean": {...}}`` and, per episode, the records under the private key
    ``"_records"`` of the result (for plots and export)."""
    from fastenv.env import ImitationEnv
    policy, config = load_policy(run_dir, checkpoint)
    env_options = policy_env_options(config, options)
    env_options.update(mode="test", log=True, episode_seconds=seconds, start_noise=start_noise)
    env = ImitationEnv(config["task"], **env_options)
    try:
        if options:
            check_policy_spaces(policy, env, options)
        results = [run_episode(env, policy, seed=seed + k) for k in range(episodes)]
        random, zero = baselines(env, [seed + k for k in range(episodes)]) \
            if random_baseline else (None, None)
    finally:
        env.close()
    records = [r.pop("records") for r in results]
    return {"task": config["task"], "algo": config["algo"], "run": str(run_dir),
            "checkpoint": "latest" if checkpoint is None else int(checkpoint),
            "options": dict(options or {}),   # over the run's env options
            "seconds": seconds, "start_noise": start_noise, "episodes": results,
            "mean": summarize(results),
            "random_policy": random, "reference_as_target": zero, "_records": records,
            "_coordinates": env.imitated_coordinates,
            "_model_coordinates": env.sim.coordinate_names,
            "_rotational": [bool(x) for x in env.sim.rotational],
            "_state_names": env.sim.state_variable_names, "_model_path": env.model_path}


# ----------------------------------------------------------------------- outputs
def plot_joint_angles(records, coordinates, model_coordinates, path, title=""):
    """Achieved vs reference angle (degrees) of each imitated coordinate over time,
    for one episode's records."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = np.array([r["time"] for r in records])
    cols = [model_coordinates.index(c) for c in coordinates]
    q = np.degrees(np.array([r["q"][cols] for r in records]))
    q_ref = np.degrees(np.array([r["q_ref"][cols] for r in records]))
    n = len(coordinates)
    ncols = 3 if n > 4 else 2
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.4 * nrows), sharex=True,
                             squeeze=False)
    for k, name in enumerate(coordinates):
        ax = axes.flat[k]
        ax.plot(t, q_ref[:, k], color="0.5", lw=2, label="reference")
        ax.plot(t, q[:, k], color="tab:blue", lw=1.2, label="policy")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("deg")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def export_motion(records, model_coordinates, rotational, state_names, model_path, path):
    """Episode records as ``.mot`` + ``_states.sto`` + ``.osim`` for the OpenSim GUI
    (:func:`fastenv.references.write_rollout`)."""
    from fastenv.references import write_rollout
    return write_rollout(path, [r["time"] for r in records], model_coordinates, rotational,
                         [r["q"] for r in records], state_names,
                         [r["state"] for r in records], model_path)


def baselines(env, seeds) -> tuple[dict, dict | None]:
    """Mean figures of ``env``'s episodes with these seeds under uniform random actions,
    and, where a zero action means something (residual PD targets: the PD tracking the
    reference alone; residual excitations: the reference's excitations open loop;
    reflex: those with the reflexes), under a zero action: the floors a trained policy
    has to improve on."""
    rng = np.random.default_rng(seeds[0])
    space = env.action_space
    residual = (env.options["pd_targets"] == "residual" if env.spec_task.actuation == "torque"
                else env.options["excitations"] in ("residual", "reflex"))

    def mean_figures(policy):
        episodes = [run_episode(env, policy, seed=s) for s in seeds]
        for e in episodes:
            e.pop("records")
        return summarize(episodes)
    random = mean_figures(lambda obs: rng.uniform(space.low, space.high).astype(np.float32))
    zero = mean_figures(lambda obs: np.zeros(space.shape, np.float32)) if residual else None
    return random, zero


def checkpoint_baselines(run_dir) -> dict:
    """:func:`baselines` over the episodes a run's checkpoint evaluations use
    (``evaluations.csv``: ``eval_episodes`` test episodes of ``eval_seconds``, start noise
    0.02 rad, seeds from the run's seed + 10,000), to draw beside its learning curves:
    ``{"seconds", "random", "zero"}``."""
    from fastenv.env import ImitationEnv
    from fastenv.train import read_run_config
    config = read_run_config(run_dir)
    run = config["config"]["run"]
    episodes, seconds = int(run.get("eval_episodes", 2)), float(run.get("eval_seconds", 5.0))
    env = ImitationEnv(config["task"], **dict(config["env_options"], mode="test", log=True,
                                              episode_seconds=seconds, start_noise=0.02))
    try:
        random, zero = baselines(env, [config["seed"] + 10_000 + k
                                       for k in range(max(episodes, 1))])
    finally:
        env.close()
    return dict(seconds=seconds, random=random, zero=zero)


def plot_learning_curves(run_dir, path, baseline: dict | None = None):
    """A run's learning curves against env steps: mean training return and episode
    length (progress.csv), and the checkpoints' test-mode joint RMSE and distance
    (evaluations.csv); ``baseline`` (:func:`checkpoint_baselines`): a random policy's and
    a zero action's figures over the same test episodes, drawn as lines."""
    import csv
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    def read(name):
        file = Path(run_dir) / name
        if not file.is_file():
            return {}
        rows = list(csv.DictReader(file.open()))
        return {k: np.array([float(r[k]) for r in rows]) for k in (rows[0] if rows else {})}
    progress, evals = read("progress.csv"), read("evaluations.csv")
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    panels = ((axes[0, 0], progress, "mean_return", "training return per episode", None),
              (axes[0, 1], progress, "mean_length", "training episode length (steps)", None),
              (axes[1, 0], evals, "joint_rmse_deg", "test joint RMSE (deg)", "joint_rmse_deg"),
              (axes[1, 1], evals, "distance_m", "test distance (m)", "distance_m"))
    for ax, data, key, title, random_key in panels:
        if key in data:
            ax.plot(data["env_steps"], data[key], color="tab:blue", label="policy")
        for name, color, label in (("random", "tab:red", "random policy"),
                                   ("zero", "tab:green", "zero action")):
            if baseline and baseline.get(name) and random_key:
                ax.axhline(baseline[name][random_key], color=color, ls="--", label=label)
        if key == "distance_m" and "reference_distance_m" in data:
            ax.plot(data["env_steps"], data["reference_distance_m"], color="0.5",
                    label="reference")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    steps_format = matplotlib.ticker.FuncFormatter(   # 350k, 1.5M: 350000 ran into 400000
        lambda x, _: f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x else "0")
    for ax in axes.flat:
        ax.xaxis.set_major_formatter(steps_format)
    for ax in axes[1]:
        ax.set_xlabel("env steps")
    if "wall_s" in progress and len(progress["wall_s"]):
        # monotonic on the whole axis (from 0, and on at the last rate past the end),
        # so that matplotlib's ticks do not pile up where np.interp would clamp
        steps = np.r_[0.0, progress["env_steps"]]
        hours = np.r_[0.0, progress["wall_s"] / 3600]
        steps = np.r_[steps, steps[-1] * 100]
        hours = np.r_[hours, hours[-1] * 100]
        top = axes[0, 0].secondary_xaxis(
            "top", functions=(lambda x: np.interp(x, steps, hours),
                              lambda h: np.interp(h, hours, steps)))
        top.set_xlabel("wall time (h)", fontsize=9)
        axes[0, 0].set_title(axes[0, 0].get_title(), pad=28)
    axes[1, 1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reference_grf(env, steps) -> np.ndarray:
    """(len(steps), n_contact, 6): the loads ``env``'s contact model gives at its
    reference's pose and speeds at env steps ``steps`` (test mode: from frame 0; a
    mirror reference's way back at its forward speeds), in the layout of
    ``Simulation.buf``'s "grf" (Fx, Fy, Fz, Mx, My, Mz per foot)."""
    sim, ref = env.sim, env.reference
    loads = []
    for k in steps:
        i, c = ref.index(k)
        # a mirror reference's way back is its forward motion reversed: the speeds change
        # sign, the accelerations, and so the loads, do not. The contact model at the
        # reversed speeds would turn its damping round (jumping2d: 7.1 instead of 3.1
        # body weights at the "landing")
        q = ref.q[i] + c * ref.q_offset
        loads.append(sim.contact_loads(sim.posed_state(q, ref.qdot[i])))
    return np.array(loads)


def reference_fore_aft(env, steps) -> np.ndarray:
    """(len(steps),) the fore-aft force on the whole body (N) that the reference's
    centre of mass implies (mass × its forward acceleration, central differences of
    its velocity), at env steps ``steps``. At a prescribed motion the contact model's
    friction depends on how fast the feet slip, and the references' feet slip as much
    as Moco's smooth contacts (0.2 m/s stick-slip transition) need: on the env's
    Hunt-Crossley contacts (0.1 m/s) the same slip gives about twice the force."""
    ref = env.reference
    force = []
    for k in steps:
        before = max(k - 1, 0)   # the first frame: a one-sided difference
        dv = ref.com_velocity_at(k + 1)[0] - ref.com_velocity_at(before)[0]
        force.append(env.sim.body_mass * dv / ((k + 1 - before) * ref.control_dt))
    return np.array(force)


def plot_grf(records, reference, contact_names, body_weight, path, title="",
             reference_fore_aft=None):
    """Vertical ground reaction force per foot and fore-aft force (body weights) over an
    episode's records (``log=True``: each holds "grf"), against ``reference``
    (:func:`reference_grf` at the records' steps). With ``reference_fore_aft``
    (:func:`reference_fore_aft`), the fore-aft row is one panel, both feet together
    against the force the reference's centre of mass implies, instead of each foot
    against the contact model's friction at the reference's pose and speeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = np.array([r["time"] for r in records])
    grf = np.array([r["grf"] for r in records]).reshape(len(records), -1, 6) / body_weight
    ref = np.asarray(reference).reshape(len(records), -1, 6) / body_weight
    n = len(contact_names)
    fig, axes = plt.subplots(2, n, figsize=(4.5 * n, 5), sharex=True, squeeze=False)
    rows = ((1, "vertical"),) if reference_fore_aft is not None else ((1, "vertical"),
                                                                       (0, "fore-aft"))
    for j, name in enumerate(contact_names):
        for row, (k, label) in enumerate(rows):
            ax = axes[row, j]
            ax.plot(t, ref[:, j, k], color="0.5", lw=2, label="reference")
            ax.plot(t, grf[:, j, k], color="tab:green", lw=1.2, label="rollout")
            ax.set_title(f"{name}: {label}", fontsize=9)
            ax.set_ylabel("GRF (body weights)")
            ax.grid(alpha=0.3)
    if reference_fore_aft is not None:
        for ax in axes[1, 1:]:
            ax.remove()
        ax = axes[1, 0]
        ax.set_subplotspec(axes[1, 0].get_gridspec()[1, :])
        ax.plot(t, np.asarray(reference_fore_aft) / body_weight, color="0.5", lw=2,
                label="reference (its centre of mass's acceleration)")
        ax.plot(t, grf[:, :, 0].sum(axis=1), color="tab:green", lw=1.2, label="rollout")
        ax.set_title("both feet: fore-aft", fontsize=9)
        ax.set_ylabel("GRF (body weights)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[-1]:
        if ax in fig.axes:   # not the fore-aft panels removed above
            ax.set_xlabel("time (s)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
