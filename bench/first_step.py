"""The first step after a reset against the mean step, and what makes it expensive.

    python bench/first_step.py [--quick] [--count] [--causes] [--json FILE]

Per task (a muscle and a torque task by default) and per start state (the task's
default ``start_settle`` and ``start_settle=0``, the reference state itself), one env
runs seeded random actions, with falls and resets, until ``--resets`` episodes have
started; every ``env.step`` is timed. Reported: the mean step over the whole rollout
(first steps included: what an average step costs), the mean and median first step,
first ÷ mean, and first ÷ the mean of each episode's steps 2-10 (the early steps, which
cost more than late ones whatever the start). Muscle tasks whose reference carries its
Moco excitations also run with ``excitations="residual"``: random corrections of
±``excitation_range`` around that feed-forward, a workload whose muscles work as in
walking instead of co-contracting at random. Every task also runs the actions of an
untrained PPO policy of ``fastenv train``'s config (what training sends while its
episodes are shortest: about half the excitations 0, the rest near 0.3). ``--count``
counts the integrator's internal steps instead of timing (integrators that record
their steps): the same ratios, independent of the machine and its load, and
deterministic.

``--causes`` adds, in internal integrator steps, the first step from start states with
one suspected cause removed at a time (frames 0, 4, 8, ... of the first half cycle, one
seeded random action each): the muscle states settled, the speeds settled, the feet
out of contact, the settled start state, and a fresh integrator on a mid-episode state
(its step-size restart alone); for muscle tasks also the first step against steps 2-10
from the settled start with the random action and with zero excitation held, and with
the random action from two variants of it: the pelvis 12 mm lower, so that the contacts
carry the body weight at the start (the start's load, in body weights, is in the row),
and every muscle started, and settled, at activation 0.5 (the random excitations' mean).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime

import numpy as np

TASKS = ("MuscleWalkingImitation2D-v0", "TorqueWalkingImitation2D-v0")


def counting(sim):
    """Make ``sim`` build integrators that record every internal step (a row per step
    in the Manager's state storage, a few hundred bytes each); returns a function that
    gives the number of steps recorded so far by the episode's integrators. A step
    integrated again without the minimum step gets a new integrator, and both tries
    count, provided the function is called before and after each step."""
    seen = [None, 0]   # the integrator last looked at; steps of those replaced before it

    def new_manager(state, min_step=None):   # Simulation._new_manager, recording
        m = sim._configured_manager(min_step)
        m.setWriteToStorage(True)
        m.initialize(state)
        return m

    def steps():
        if sim._manager is not seen[0]:
            if seen[0] is not None:
                seen[1] += seen[0].getStateStorage().getSize()
            seen[0] = sim._manager
        return seen[1] + sim._manager.getStateStorage().getSize()

    sim._new_manager = new_manager
    return steps


def untrained_ppo(env, seed: int):
    """The actions of a freshly initialised PPO policy of ``fastenv train``'s config
    (its ``[policy]`` table: net_arch, log_std_init), sampled stochastically and
    clipped to the action space, as SB3 steps an env at the start of training.
    Returns obs -> action."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    from fastenv.train import load_config
    torch.manual_seed(seed)
    policy = ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 3e-4,
                               **load_config("ppo")["policy"])
    policy.set_training_mode(False)
    return lambda obs: policy.predict(obs, deterministic=False)[0]


def rollout(task: str, env_kwargs: dict, resets: int, seed: int, count: bool,
            workload: str = "random") -> dict:
    """Seeded actions (``workload`` "random": uniform over the action space;
    "untrained_ppo": :func:`untrained_ppo`'s) until ``resets`` episodes have started;
    per step its wall time (or, with ``count``, its internal integrator steps) and
    whether it was an episode's first."""
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, **env_kwargs)
    steps_of = counting(env.sim) if count else None
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    act = untrained_ppo(env, seed) if workload == "untrained_ppo" else None
    cost, first, index = [], [], []
    episodes, k = 1, 0
    while True:
        action = env.action_space.sample() if act is None else act(obs)
        if count:
            n0 = steps_of()
            obs, _, term, trunc, _ = env.step(action)
            cost.append(steps_of() - n0)
        else:
            t0 = time.perf_counter()
            obs, _, term, trunc, _ = env.step(action)
            cost.append(time.perf_counter() - t0)
        first.append(k == 0)
        index.append(k)
        k += 1
        if term or trunc:
            if episodes == resets:
                break
            obs, _ = env.reset()
            episodes, k = episodes + 1, 0
    env.close()
    cost, first, index = np.array(cost), np.array(first), np.array(index)
    early = (index >= 1) & (index <= 9)
    return dict(steps=len(cost), episodes=episodes, mean=float(cost.mean()),
                first_mean=float(cost[first].mean()), first_median=float(np.median(cost[first])),
                early_mean=float(cost[early].mean()),
                ratio=float(cost[first].mean() / cost.mean()),
                ratio_ci95=ratio_interval(cost, first, seed),
                ratio_early=float(cost[first].mean() / cost[early].mean()))


def ratio_interval(cost: np.ndarray, first: np.ndarray, seed: int, draws: int = 2000) -> list:
    """95% bootstrap interval of first step ÷ mean step over episodes: whole episodes
    (a first step with the steps after it) drawn with replacement, so that an interval
    wider than the distance to a target says the episodes were too few to tell."""
    episode = np.cumsum(first) - 1                      # each step's episode
    totals = np.bincount(episode, weights=cost)
    lengths = np.bincount(episode)
    firsts = cost[first]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(firsts), (draws, len(firsts)))
    ratios = firsts[pick].mean(1) / (totals[pick].sum(1) / lengths[pick].sum(1))
    return [round(float(q), 3) for q in np.percentile(ratios, [2.5, 97.5])]


# ------------------------------------------------------------------------- causes
def causes(task: str, settle: float, seed: int) -> list[dict]:
    """Internal integrator steps of the first step from start states with one cause
    removed at a time (see the module docstring)."""
    import opensim as osim

    from fastenv.env import ImitationEnv
    from fastenv.sim import Snapshot
    env = ImitationEnv(task, start_settle=0.0)
    sim = env.sim
    steps_of = counting(sim)
    env.action_space.seed(seed)
    half = max(1, env.reference.cycle_steps // 2)
    frames = list(range(0, half, 4))
    actions = [env.action_space.sample() for _ in frames]
    free = ~sim.locked
    nq = sim.default_state.getNQ()
    qi, ui = sim._q_idx[free], nq + sim._u_idx[free]

    def first_step(frame, action, start=None):
        env.reset(seed=seed, options={"start_frame": frame})
        if start is not None:
            sim.restore(start)
        n0 = steps_of()
        env.step(action)
        return steps_of() - n0

    def reference(frame):
        return sim.compact(sim.state_from_coordinates(*env.reference.coordinates_at(frame)))

    def settled_then(frame, keep):
        """A 2-ms settle from the reference state, then the reference's values put back
        for the parts in ``keep`` ("q", "u")."""
        q, qd = env.reference.coordinates_at(frame)
        start = sim.state_from_coordinates(q, qd)
        y = sim.settled(start, settle).y.copy()
        y0 = start.getY().to_numpy()
        for part, idx in (("q", qi), ("u", ui)):
            if part in keep:
                y[idx] = y0[idx]
        return Snapshot(0.0, y)

    def lifted(frame, dy=0.05):
        s = sim._full_state(reference(frame))
        q = s.getQ().to_numpy().copy()
        q[sim._q_idx[sim.coordinate_names.index("pelvis_ty")]] += dy
        s.setQ(osim.Vector.createFromMat(q))
        return s

    def settled_start(frame, lower=0.0, activation=None):
        """The settled start; ``lower`` (m): the pelvis that much lower before settling;
        ``activation``: every muscle's, held as excitation while settling."""
        q, qd = env.reference.coordinates_at(frame)
        q = np.array(q, dtype=float)
        q[sim.coordinate_names.index("pelvis_ty")] -= lower
        drive = None if activation is None else np.full(sim.n_controls, activation)
        start = sim.state_from_coordinates(q - settle * np.asarray(qd), qd, time=-settle,
                                           activation=drive)
        return sim.settled(start, settle, controls=drive)

    def carried(snapshot):
        """The share of the body weight that the start's contacts carry."""
        return sim.contact_loads(sim._full_state(snapshot))[:, 1].sum() / sim.body_weight

    rows = [("reference state (start_settle=0)", lambda f: None)]
    if sim.muscles:
        rows.append(("muscle states settled 2 ms; pose and speeds the reference's",
                     lambda f: settled_then(f, "qu")))
    rows += [("speeds and muscle states settled 2 ms; pose the reference's",
              lambda f: settled_then(f, "q")),
             ("feet out of contact (pelvis 5 cm higher)", lambda f: lifted(f)),
             (f"settled start (released {settle * 1e3:g} ms before the frame)",
              lambda f: settled_start(f))]
    out = []
    for name, make in rows:
        n = [first_step(f, a, make(f)) for f, a in zip(frames, actions)]
        out.append(dict(task=task, start=name, first_step=float(np.mean(n))))
    if sim.muscles:
        # what makes an episode's early steps cost more than its late ones: the muscles
        # switching on from their start activation (none of that with zero excitation)
        # and what does not: the contacts carrying the body weight from the start (the
        # settled start's carry about 0.65 of it), or the muscles starting at the random
        # excitations' mean activation
        variants = (("random", lambda a: a, {}), ("zero", np.zeros_like, {}),
                    ("random", lambda a: a, dict(lower=0.012)),
                    ("random", lambda a: a, dict(activation=0.5)))
        for label, pick, kw in variants:
            first, early, load = [], [], []
            for f, a in zip(frames, actions):
                start = settled_start(f, **kw)
                load.append(carried(start))
                first.append(first_step(f, pick(a), start))
                for _ in range(9):
                    n0 = steps_of()
                    _, _, term, trunc, _ = env.step(pick(a))
                    early.append(steps_of() - n0)
                    if term or trunc:
                        break
            how = {"lower": "the pelvis 12 mm lower, ", "activation": "activations 0.5, "}
            variant = "".join(how[k] for k in kw)
            out.append(dict(task=task, start=f"settled start, {variant}{label} excitation held:"
                            f" first step / mean of steps 2-10", first_step=float(np.mean(first)),
                            early=float(np.mean(early)), start_load_bw=float(np.mean(load))))
    # the integrator's step-size restart alone: a mid-episode state (5 steps in), its
    # next step with the episode's integrator and with a fresh one
    cont, fresh = [], []
    for f, a in zip(frames, actions):
        env.reset(seed=seed, options={"start_frame": f})
        for _ in range(5):
            env.step(a)
        saved = env.get_state()
        n0 = steps_of()
        env.step(a)
        cont.append(steps_of() - n0)
        env.set_state(saved)
        n0 = steps_of()
        env.step(a)
        fresh.append(steps_of() - n0)
    out.append(dict(task=task, start="6th step, the episode's integrator",
                    first_step=float(np.mean(cont))))
    out.append(dict(task=task, start="6th step, a fresh integrator (restart only)",
                    first_step=float(np.mean(fresh))))
    env.close()
    return out


# ------------------------------------------------------------------------- main
def _has_excitations(task: str) -> bool:
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task)
    try:
        return env.reference.excitation is not None
    finally:
        env.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--resets", type=int, default=60,
                   help="episodes per task and start state (default 60; --quick 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", action="store_true",
                   help="count internal integrator steps instead of timing (deterministic)")
    p.add_argument("--causes", action="store_true",
                   help="internal steps of the first step with one cause removed at a time")
    p.add_argument("--quick", action="store_true", help="8 episodes each (about a minute)")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    if args.resets < 1:
        p.error(f"--resets must be >= 1, got {args.resets}")
    resets = 8 if args.quick else args.resets

    from fastenv.envs import TASKS as SPECS
    from fastenv.envs import resolve_options
    unknown = sorted(set(args.tasks) - set(SPECS))
    if unknown:
        p.error(f"unknown task(s) {unknown}")
    rows, cause_rows = [], []
    unit = "integrator steps" if args.count else "ms"
    for task in args.tasks:
        default = resolve_options(task=SPECS[task])["start_settle"]
        start = f"default (start_settle={default:g})"
        starts = [(start, {}, "random actions")]
        if default:
            starts.append(("reference state (start_settle=0)", {"start_settle": 0.0},
                           "random actions"))
        if SPECS[task].actuation == "muscle" and _has_excitations(task):
            starts.append((f"{start}, residual excitations", {"excitations": "residual"},
                           "random residual excitations"))
        starts.append((start, {}, "untrained PPO policy"))
        for name, kw, workload in starts:
            r = rollout(task, kw, resets, args.seed, args.count,
                        "untrained_ppo" if workload == "untrained PPO policy" else "random")
            rows.append(dict(task=task, start=name, workload=workload, unit=unit, **r))
            f = 1 if args.count else 1e3
            print(f"{task:30s} {name:34s} {workload:28s} mean step {r['mean'] * f:6.2f} "
                  f"{unit}, first "
                  f"{r['first_mean'] * f:6.2f} (median {r['first_median'] * f:6.2f}): "
                  f"{r['ratio']:.2f} mean steps (95% {r['ratio_ci95'][0]:.2f}-"
                  f"{r['ratio_ci95'][1]:.2f}), {r['ratio_early']:.2f} of steps 2-10  "
                  f"[{r['episodes']} episodes, {r['steps']} steps]", flush=True)
        if args.causes:
            settle = default or resolve_options(task=SPECS["MuscleWalkingImitation2D-v0"])[
                "start_settle"]
            for r in causes(task, settle, args.seed):
                cause_rows.append(r)
                early = f" / {r['early']:.1f}" if "early" in r else ""
                print(f"  cause  {r['start']:62s} {r['first_step']:6.1f}{early} integrator "
                      f"steps", flush=True)
    if args.json:
        import os
        with open(args.json, "w") as f:
            json.dump(dict(date=datetime.now(UTC).isoformat(timespec="seconds"),
                           machine=platform.node(), cpus=os.cpu_count(), resets=resets,
                           seed=args.seed, rows=rows, causes=cause_rows), f, indent=1)


if __name__ == "__main__":
    main()
