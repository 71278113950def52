"""One SAC gradient step: fastenv's JAX SAC (``--backend jax``) against SB3's SAC.

Both learners at the packaged ``sac.toml`` sizes (256x256, batch 256) on a task's
observation and action sizes, as ``fastenv train`` runs them (torch on one thread; an
XLA update takes one core's time anyway), a replay buffer of random transitions;
the time of a step includes drawing its batch from the buffer. Rounds alternate the
two learners so that the machine's drift falls on both; the median per step and the
rounds' range are reported.

    python bench/sac_update.py --json bench/results/sac_update.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime


def jax_learner(obs_dim: int, action_dim: int, batch: int):
    import numpy as np

    from fastenv.adapters.jax_sac import SAC, ReplayBuffer
    rng = np.random.default_rng(0)
    sac = SAC(obs_dim, action_dim, {"batch_size": batch}, {"net_arch": [256, 256]}, seed=0)
    buffer = ReplayBuffer(20_000, obs_dim, action_dim)
    buffer.add(rng.normal(size=(20_000, obs_dim)), rng.uniform(-1, 1, (20_000, action_dim)),
               rng.normal(size=20_000), rng.normal(size=(20_000, obs_dim)), np.zeros(20_000))

    def step():
        sac.update(buffer.sample(rng, batch))   # update returns floats: it has finished
    return step


def sb3_learner(obs_dim: int, action_dim: int, batch: int):
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure
    torch.set_num_threads(1)

    class Spaces(gym.Env):   # SB3 needs an env for its spaces only
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (action_dim,), np.float32)
    model = SAC("MlpPolicy", Spaces(), batch_size=batch, buffer_size=20_000, device="cpu",
                policy_kwargs={"net_arch": [256, 256]}, seed=0)
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        model.replay_buffer.add(rng.normal(size=(1, obs_dim)), rng.normal(size=(1, obs_dim)),
                                rng.uniform(-1, 1, (1, action_dim)), rng.normal(size=1),
                                np.zeros(1), [{}])

    def step():
        model.train(gradient_steps=1, batch_size=batch)
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obs", type=int, default=98, help="observation size (default: "
                    "TorqueWalkingImitation2D-v0's 98)")
    ap.add_argument("--actions", type=int, default=7)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200, help="gradient steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    learners = {"jax": jax_learner(args.obs, args.actions, args.batch),
                "sb3": sb3_learner(args.obs, args.actions, args.batch)}
    for step in learners.values():   # compile (JAX) and warm up
        for _ in range(20):
            step()
    per_round = {name: [] for name in learners}
    for r in range(args.rounds):
        for name in (list(learners) if r % 2 == 0 else list(learners)[::-1]):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                learners[name]()
            per_round[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    rows = {name: dict(median_ms=statistics.median(ms), min_ms=min(ms), max_ms=max(ms),
                       rounds_ms=ms) for name, ms in per_round.items()}
    for name, row in rows.items():
        print(f"{name}: {row['median_ms']:.2f} ms per gradient step "
              f"(rounds {row['min_ms']:.2f}-{row['max_ms']:.2f})")
    print(f"SB3 / JAX: {rows['sb3']['median_ms'] / rows['jax']['median_ms']:.2f}")
    if args.json:
        import jax
        import stable_baselines3
        import torch
        with open(args.json, "w") as f:
            json.dump(dict(date=datetime.now(UTC).isoformat(timespec="seconds"),
                           host=platform.node(), cpus=os.cpu_count(),
                           load_average=os.getloadavg(), args=vars(args),
                           versions=dict(jax=jax.__version__, torch=torch.__version__,
                                         stable_baselines3=stable_baselines3.__version__),
                           rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
