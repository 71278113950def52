"""Do env steps cost more in a worker than in a loop of one env? Four A/B tests in one process.

    python bench/worker_locality.py [--envs 8] [--steps 40] [--rounds 6] [--pause-ms 10]
                                    [--tests order,crowd,share,pause]
                                    [--json FILE]

A pool worker steps its envs round-robin, one step each per batch, and holds all of
them; the env limit of ``bench/pool.py`` steps one env after another. The tests
repeat exactly the same env steps (each env reset with its own seed before a block,
a fixed action schedule, falls reset with a fixed seed), alternating the two
variants round by round so the VM's drift hits both:

- **order**: ``--envs`` envs stepped round-robin against the same envs one after
  another (each env's ``--steps`` in a row); a model each, or with ``--share-model``
  one shared model, as a pool worker's envs since 2026-12-04;
- **crowd**: env 0's ``--steps`` steps alone in the process, and with ``--envs - 1``
  other envs created and stepped a little beside it (their models and states in
  memory, idle while env 0 steps);
- **share**: ``--envs`` envs stepped round-robin on one shared OpenSim model (each its
  own State and integrator: ``share_model=True``, what a pool worker does) against the
  same envs with one model each (what it did before);
- **pause**: env 0's steps back to back, as in the env limit, against the same steps
  each after ``--pause-ms`` of sleep, as a worker's first env step after it waited at
  the synchronous step's barrier for the other worker and the parent. Only the
  ``env.step`` calls are timed, in wall time and in the thread's CPU time (CPU time
  rising too means the step itself did more work, e.g. refilling caches, rather than
  waiting to be scheduled).

Reported per test: ms per step per variant (median and rounds) and the per-round ratio.
"""
from __future__ import annotations

import argparse
import gc
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

TASK = "MuscleWalkingImitation2D-v0"


def _steps(env, actions, fall_seed: int) -> int:
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset(seed=fall_seed)
    return len(actions)


def order_test(n_envs: int, steps: int, rounds: int, share_model: bool = False) -> dict:
    from fastenv.env import ImitationEnv
    envs = [ImitationEnv(TASK, share_model=share_model) for _ in range(n_envs)]
    rng = np.random.default_rng(0)
    acts = rng.uniform(0, 1, (n_envs, steps, envs[0].action_space.shape[0])).astype(np.float32)

    def reset():
        for i, e in enumerate(envs):
            e.reset(seed=i)

    def round_robin():
        for t in range(steps):
            for i, e in enumerate(envs):
                _steps(e, acts[i, t:t + 1], 100 + i)

    def one_after_another():
        for i, e in enumerate(envs):
            _steps(e, acts[i], 100 + i)

    variants = {"round_robin": round_robin, "one_after_another": one_after_another}
    out = _alternate(variants, reset, rounds, n_envs * steps)
    for e in envs:
        e.close()
    return out


def crowd_test(n_envs: int, steps: int, rounds: int) -> dict:
    from fastenv.env import ImitationEnv
    env = ImitationEnv(TASK)
    rng = np.random.default_rng(0)
    acts = rng.uniform(0, 1, (steps, env.action_space.shape[0])).astype(np.float32)
    others: list = []

    def env0_steps():   # the same timed work; only what else the process holds differs
        _steps(env, acts, 1)

    def reset():
        env.reset(seed=0)

    def setup(name):
        while others:
            others.pop().close()
        gc.collect()
        if name == "crowd":
            for i in range(n_envs - 1):
                o = ImitationEnv(TASK)
                o.reset(seed=i + 1)
                _steps(o, acts[:5], 100 + i)
                others.append(o)

    out = _alternate({"alone": env0_steps, "crowd": env0_steps}, reset, rounds, steps, setup)
    setup("alone")
    env.close()
    return out


def share_test(n_envs: int, steps: int, rounds: int) -> dict:
    """``n_envs`` envs stepped round-robin, as a worker steps them, on one shared OpenSim
    model (``share_model=True``, the pool's default) against one model each."""
    from fastenv.env import ImitationEnv
    sets = {"shared_model": [ImitationEnv(TASK, share_model=True) for _ in range(n_envs)],
            "one_model_each": [ImitationEnv(TASK) for _ in range(n_envs)]}
    assert sets["shared_model"][0].sim.model is sets["shared_model"][-1].sim.model
    rng = np.random.default_rng(0)
    acts = rng.uniform(0, 1, (n_envs, steps, sets["shared_model"][0].action_space.shape[0])
                       ).astype(np.float32)

    def reset():
        for envs in sets.values():
            for i, e in enumerate(envs):
                e.reset(seed=i)

    def round_robin(envs):
        for t in range(steps):
            for i, e in enumerate(envs):
                _steps(e, acts[i, t:t + 1], 100 + i)

    out = _alternate({name: (lambda envs=envs: round_robin(envs))
                      for name, envs in sets.items()}, reset, rounds, n_envs * steps)
    for envs in sets.values():
        for e in envs:
            e.close()
    return out


def pause_test(steps: int, rounds: int, pause_s: float) -> dict:
    from fastenv.env import ImitationEnv
    env = ImitationEnv(TASK)
    rng = np.random.default_rng(0)
    acts = rng.uniform(0, 1, (steps, env.action_space.shape[0])).astype(np.float32)
    cpu = {"back_to_back": [], "after_pause": []}

    def timed(pause: float, name: str):
        wall = used = 0.0
        for a in acts:
            if pause:
                time.sleep(pause)
            t, c = time.perf_counter(), time.thread_time()
            _, _, terminated, truncated, _ = env.step(a)
            wall += time.perf_counter() - t
            used += time.thread_time() - c
            if terminated or truncated:
                env.reset(seed=1)
        cpu[name].append(used / steps * 1e3)
        return wall

    out = _alternate({"after_pause": lambda: timed(pause_s, "after_pause"),
                      "back_to_back": lambda: timed(0.0, "back_to_back")},
                     lambda: env.reset(seed=0), rounds, steps)
    env.close()
    ratio = np.array(cpu["after_pause"][1:]) / np.array(cpu["back_to_back"][1:])
    out["cpu_ms_per_step"] = {k: {"median": round(float(np.median(v[1:])), 2),
                                  "rounds": [round(x, 2) for x in v[1:]]}
                              for k, v in cpu.items()}   # [0]: the warm-up
    out["cpu_after_pause_over_back_to_back"] = {
        "median": round(float(np.median(ratio)), 3),
        "rounds": [round(float(x), 3) for x in ratio]}
    out["pause_ms"] = pause_s * 1e3
    return out


def _alternate(variants: dict, reset, rounds: int, n_steps: int, setup=None) -> dict:
    """Each variant once untimed, then ``rounds`` rounds in alternating order; a variant
    that returns a number returns its own timed seconds (else its whole call is timed)."""
    names = list(variants)
    for name in names:       # warm-up, untimed
        if setup:
            setup(name)
        reset()
        variants[name]()
    ms = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            if setup:
                setup(name)
            reset()
            t = time.perf_counter()
            took = variants[name]()
            took = time.perf_counter() - t if took is None else took
            ms[name].append(took / n_steps * 1e3)
    ratio = np.array(ms[names[0]]) / np.array(ms[names[1]])
    return {"ms_per_step": {k: {"median": round(float(np.median(v)), 2),
                                "rounds": [round(x, 2) for x in v]} for k, v in ms.items()},
            f"{names[0]}_over_{names[1]}": {"median": round(float(np.median(ratio)), 3),
                                            "rounds": [round(float(x), 3) for x in ratio]}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--pause-ms", type=float, default=10.0)
    p.add_argument("--tests", default="order,crowd,share,pause")
    p.add_argument("--share-model", action="store_true",
                   help="the order test's envs on one shared model, as a pool worker's")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    tests = a.tests.split(",")
    unknown = sorted(set(tests) - {"order", "crowd", "share", "pause"})
    if unknown or a.pause_ms <= 0:
        p.error(f"--tests takes order, crowd, share, pause (got {unknown}); --pause-ms must be > 0 "
                f"(got {a.pause_ms:g})")
    result = {"command": f"python bench/worker_locality.py --envs {a.envs} --steps {a.steps} "
                         f"--rounds {a.rounds} --pause-ms {a.pause_ms:g} --tests {a.tests}"
                         + (" --share-model" if a.share_model else ""),
              "date": datetime.now(UTC).isoformat(timespec="seconds"), "task": TASK}
    if "order" in tests:
        result["order"] = order_test(a.envs, a.steps, a.rounds, a.share_model)
    if "crowd" in tests:
        result["crowd"] = crowd_test(a.envs, a.steps * 5, a.rounds)
    if "share" in tests:
        result["share"] = share_test(a.envs, a.steps, a.rounds)
    if "pause" in tests:
        result["pause"] = pause_test(a.steps * 5, a.rounds, a.pause_ms * 1e-3)
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
