"""Samples/s with a policy in the loop against open-loop stepping, in one run.

A torch actor-critic MLP (actor and critic 2×256, tanh, Gaussian actions with their
log-probabilities and values: what SB3's PPO ``MlpPolicy`` with ``net_arch=[256, 256]``
computes) runs on the CPU with ``torch.set_num_threads(1)``, in the parent process,
for ``num_envs`` envs of one task. Modes:

- ``sync_random``: ``OsimVectorEnv.step`` with uniform random actions (open loop);
- ``sync_policy``: ``step`` with the MLP's actions (the policy waits for every env, the
  envs wait for the policy);
- ``async_random``: ``send``/``recv`` with ``batch_size = num_envs // 2``, random
  actions (open loop);
- ``pipelined_policy``: ``fastenv.collect.PipelinedCollector`` with the MLP, batch
  ``num_envs // 2``, rollouts of ``--rollout`` steps per env (their drains included);
- ``sb3_random``: ``fastenv.adapters.sb3.make_vec_env`` stepped with random actions;
- ``sb3_collect``: SB3 PPO's own ``collect_rollouts`` (``n_steps = --rollout``) on
  ``make_vec_env``: SB3's collection as ``fastenv train --algo ppo`` runs it.
- ``rllib_random`` / ``rllib_sample``: one RLlib ``SingleAgentEnvRunner`` in this process
  over one ``OsimVectorEnv`` (``fastenv.adapters.rllib``, as each runner of ``fastenv
  train --backend rllib``), ``sample(num_timesteps=num_envs × --rollout)`` with random
  actions, or with RLlib's default PPO module of the same 2×256 tanh shape and its
  connectors (needs ``ray[rllib]``; left out of the default modes without it).

The work is identical in every mode (``--actions schedule``, the default): the envs
start from the same seed, and every env steps through the same seeded schedule of
random actions, one row per env step, whichever way its actions were computed (the MLP
still runs on every observation in the policy modes; its output is replaced by the
schedule's rows at the point where ``OsimVectorEnv`` takes actions). So the modes
differ only in how the loop is driven, which is what the comparison is about; with
``--actions own`` each mode steps its own actions (random or the MLP's), and different
actions mean different falls and step costs. Every mode starts its own envs (start-up
not timed), takes two warm-up steps per env, then is timed over ``--steps`` steps per
env (falls and resets included); the modes run ``--repeats`` rounds, in an order that
rotates by one each round, and the median and range are reported with the parent's
CPU share, the time in the policy, and the load average before each run (a figure is
only worth something on an otherwise idle machine).

    python bench/closed_loop.py [--task ...] [--num-envs 16] [--workers N] [--steps 256]
                                [--repeats 3] [--rollout 128] [--out bench/results]
    python bench/closed_loop.py --quick --out /tmp/closed_loop   # checks that it runs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout

from bench.workload import scheduled_actions  # noqa: E402

TASK = "MuscleWalkingImitation2D-v0"
MODES = ("sync_random", "sync_policy", "async_random", "pipelined_policy", "sb3_random",
         "sb3_collect", "rllib_random", "rllib_sample")
OPEN_LOOP = {"sync_policy": "sync_random", "pipelined_policy": "async_random",
             "sb3_collect": "sb3_random", "rllib_sample": "rllib_random"}


class ActorCritic(nn.Module):
    """The MLP in the loop: SB3's PPO MlpPolicy shape, without SB3."""

    def __init__(self, obs_dim: int, act_dim: int, low, high, hidden: int = 256):
        super().__init__()

        def mlp(out):
            return nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out))
        self.actor, self.critic = mlp(act_dim), mlp(1)
        self.log_std = nn.Parameter(torch.full((act_dim,), -1.0))
        self.low, self.high = torch.as_tensor(low), torch.as_tensor(high)
        self.seconds = 0.0    # time spent in __call__, for the report

    @torch.no_grad()
    def act(self, obs: np.ndarray):
        t0 = time.perf_counter()
        o = torch.from_numpy(obs)
        mean, value = self.actor(o), self.critic(o).squeeze(-1)
        dist = torch.distributions.Normal(mean, self.log_std.exp())
        action = dist.sample()
        log_prob = dist.log_prob(action).sum(-1)
        out = (action.clamp(self.low, self.high).numpy(),
               {"value": value.numpy(), "log_prob": log_prob.numpy()})
        self.seconds += time.perf_counter() - t0
        return out


def _random(space, rng, n):
    return rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32)


WARMUP = 2   # steps per env before timing, the same in every mode


def run_mode(mode: str, task: str, n: int, workers: int, steps: int, rollout: int,
             seed: int) -> dict:
    """One timed run of ``steps`` steps per env (after ``WARMUP``), from ``reset(seed)``."""
    from fastenv.vector import OsimVectorEnv
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    samples, policy = 0, None
    load = os.getloadavg()[0]
    if mode.startswith("sb3"):
        return _run_sb3(mode, task, n, workers, steps, rollout, seed, rng, load)
    if mode.startswith("rllib"):
        return _run_rllib(mode, task, n, workers, steps, rollout, seed, load)
    venv = OsimVectorEnv(task, n, num_workers=workers, batch_size=max(1, n // 2),
                         autoreset_mode="SameStep")
    try:
        space = venv.single_action_space
        policy = ActorCritic(venv.single_observation_space.shape[0], space.shape[0],
                             space.low, space.high)
        if mode.startswith("sync"):
            obs, _ = venv.reset(seed=seed)
            act = ((lambda o: policy.act(o)[0]) if mode == "sync_policy"
                   else (lambda o: _random(space, rng, n)))
            for _ in range(WARMUP):
                obs = venv.step(act(obs))[0]
            policy.seconds = 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                obs = venv.step(act(obs))[0]
                samples += n
        elif mode == "async_random":
            venv.async_reset(seed=seed)

            def turn():   # one recv + send; the samples it received
                *_, info = venv.recv()
                ids = info["env_id"]
                venv.send(_random(space, rng, len(ids)), ids)
                return len(ids)
            warm = 0
            while warm < WARMUP * n:
                warm += turn()
            t0, c0 = time.perf_counter(), time.process_time()
            while samples < steps * n:
                samples += turn()
        else:
            from fastenv.collect import PipelinedCollector
            collector = PipelinedCollector(venv, policy.act, seed=seed)
            collector.collect(WARMUP)
            policy.seconds = 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(max(1, steps // rollout)):
                collector.collect(rollout)
                samples += n * rollout
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        venv.close()
    return _row(mode, samples, wall, cpu, policy.seconds if "policy" in mode else 0.0, load)


def _run_sb3(mode, task, n, workers, steps, rollout, seed, rng, load):
    from stable_baselines3 import PPO

    from fastenv.adapters.sb3 import make_vec_env
    env = make_vec_env(task, n, seed=seed, num_workers=workers)
    samples, policy_s = 0, 0.0
    try:
        if mode == "sb3_random":
            env.reset()
            for _ in range(WARMUP):
                env.step(_random(env.action_space, rng, n))
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                env.step(_random(env.action_space, rng, n))
                samples += n
        else:
            model = PPO("MlpPolicy", env, n_steps=rollout, batch_size=rollout * n,
                        policy_kwargs=dict(net_arch=[256, 256]), device="cpu", seed=seed)
            forward, spent = model.policy.forward, [0.0]

            def timed(*a, **kw):   # the policy's share of the collection
                t = time.perf_counter()
                out = forward(*a, **kw)
                spent[0] += time.perf_counter() - t
                return out
            model.policy.forward = timed
            _, callback = model._setup_learn(10**12, callback=None)
            callback.on_training_start(locals(), globals())
            model.collect_rollouts(model.env, callback, model.rollout_buffer, WARMUP)
            warm = spent[0]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(max(1, steps // rollout)):
                model.collect_rollouts(model.env, callback, model.rollout_buffer, rollout)
                samples += n * rollout
            policy_s = spent[0] - warm
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        env.close()
    return _row(mode, samples, wall, cpu, policy_s, load)


def _run_rllib(mode, task, n, workers, steps, rollout, seed, load):
    """One env runner, built as ``fastenv train --backend rllib`` builds each of its
    runners (``num_env_runners=0``: the runner lives here, not in a Ray actor)."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from fastenv.adapters.rllib import algorithm_config
    from fastenv.train import load_config
    cfg = load_config("ppo")
    cfg["algo"]["n_steps"] = rollout
    config = algorithm_config("ppo", task, cfg, num_env_runners=1, envs_per_runner=n,
                              num_workers=workers, seed=seed, env_options={})
    config.env_runners(num_env_runners=0)   # the runner in this process
    runner = SingleAgentEnvRunner(config=config)
    random = mode == "rllib_random"
    samples = 0
    forward, spent = runner.module.forward_exploration, [0.0]

    def timed(*a, **kw):   # the policy's share of the collection, as for SB3
        t = time.perf_counter()
        out = forward(*a, **kw)
        spent[0] += time.perf_counter() - t
        return out
    runner.module.forward_exploration = timed
    try:
        runner.sample(num_timesteps=WARMUP * n, random_actions=random)
        spent[0] = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(max(1, steps // rollout)):
            episodes = runner.sample(num_timesteps=n * rollout, random_actions=random)
            samples += sum(len(e) for e in episodes)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        runner.stop()
    return _row(mode, samples, wall, cpu, spent[0], load)


def _row(mode, samples, wall, cpu, policy_s, load):
    return dict(mode=mode, samples=samples, wall_s=wall, samples_per_s=samples / wall,
                parent_cpu_fraction=cpu / wall, policy_fraction=policy_s / wall,
                load_before=load)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default=TASK)
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="default: the cores")
    ap.add_argument("--steps", type=int, default=256,
                    help="timed steps per env, per mode and round (a multiple of --rollout)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rollout", type=int, default=128,
                    help="steps per env of a collector / SB3 rollout")
    import importlib.util
    default = [m for m in MODES if not m.startswith("rllib") or importlib.util.find_spec("ray")]
    ap.add_argument("--modes", default=",".join(default))
    ap.add_argument("--quick", action="store_true",
                    help="4 envs, 2 s per mode, one repeat: checks that it runs, "
                         "measures nothing")
    ap.add_argument("--actions", choices=("schedule", "own"), default="schedule",
                    help="schedule: every mode steps the same seeded actions (default); "
                         "own: each mode its own (random or the MLP's)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    bad = sorted(set(modes) - set(MODES))
    if bad:
        raise SystemExit(f"--modes: unknown {bad}; expected some of {list(MODES)}")
    if args.quick:
        args.num_envs, args.steps, args.repeats, args.rollout = 4, 16, 1, 16
    from fastenv.pool import default_workers
    workers = min(args.workers or default_workers(), args.num_envs)
    torch.set_num_threads(1)
    runs = {m: [] for m in modes}
    for rep in range(args.repeats):
        # the order rotates by one mode per round, so that no mode always runs
        # first or last (the VM's speed drifts)
        for mode in modes[rep % len(modes):] + modes[:rep % len(modes)]:
            with scheduled_actions(args.num_envs, WARMUP + args.steps + 64, seed=rep,
                                   enabled=args.actions == "schedule") as counts:
                r = run_mode(mode, args.task, args.num_envs, workers, args.steps,
                             args.rollout, seed=rep)
            if counts is not None:
                r["env_steps_min_max"] = [int(counts.min()), int(counts.max())]
            runs[mode].append(r)
            print(f"[{rep}] {mode:17s} {r['samples_per_s']:7.1f} samples/s  parent CPU "
                  f"{100 * r['parent_cpu_fraction']:.1f}%  policy "
                  f"{100 * r['policy_fraction']:.1f}%  load {r['load_before']:.2f}", flush=True)
    rows = []
    for rs in runs.values():
        rates = [r["samples_per_s"] for r in rs]
        median = rs[int(np.argsort(rates)[len(rates) // 2])]
        rows.append(dict(median, runs=rs, samples_per_s=float(np.median(rates)),
                         samples_per_s_range=[float(min(rates)), float(max(rates))]))
    rate = {r["mode"]: r["samples_per_s"] for r in rows}
    best_open = max((rate[m] for m in ("sync_random", "async_random") if m in rate),
                    default=None)
    for r in rows:
        base = OPEN_LOOP.get(r["mode"])
        r["vs_its_open_loop"] = rate[r["mode"]] / rate[base] if base in rate else None
        r["vs_best_fastenv_open_loop"] = rate[r["mode"]] / best_open if best_open else None
    result = dict(task=args.task, num_envs=args.num_envs, workers=workers,
                  steps=args.steps, warmup=WARMUP, actions=args.actions,
                  repeats=args.repeats, rollout=args.rollout,
                  command="python bench/closed_loop.py "
                  + " ".join(argv or sys.argv[1:]),
                  quick=args.quick, torch=torch.__version__, torch_threads=1,
                  cpus=os.cpu_count(), machine=platform.machine(), rows=rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "closed_loop.json").write_text(json.dumps(result, indent=1))
    lines = [f"{args.task}, {args.num_envs} envs on {workers} workers, median (range) of "
             f"{args.repeats} rounds × {args.steps} steps per env, "
             + ("the same seeded action schedule in every mode" if args.actions == "schedule"
                else "each mode's own actions")
             + (" (--quick: a check that the script runs, not a measurement)"
                if args.quick else ""), "",
             "| mode | samples/s | range | ÷ its open loop | ÷ best fastenv open loop "
             "| parent CPU | in policy |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = "–" if r["vs_its_open_loop"] is None else f"{r['vs_its_open_loop']:.2f}"
        best = ("–" if r["vs_best_fastenv_open_loop"] is None
                else f"{r['vs_best_fastenv_open_loop']:.2f}")
        lo, hi = r["samples_per_s_range"]
        lines.append(f"| {r['mode']} | {r['samples_per_s']:.0f} | {lo:.0f}–{hi:.0f} | "
                     f"{ratio} | {best} | "
                     f"{100 * r['parent_cpu_fraction']:.1f}% | "
                     f"{100 * r['policy_fraction']:.1f}% |")
    (out / "closed_loop.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
