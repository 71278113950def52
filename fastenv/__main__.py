"""Command line: ``fastenv rollout`` (quick start, prints steps/s), ``fastenv tasks``,
``fastenv bench`` (side-by-side throughput comparison, ``fastenv.benchmark``)."""
import argparse
import sys
import time


def rollout(args):
    import gymnasium as gym
    import numpy as np

    import fastenv  # noqa: F401

    env = gym.make(args.task)
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    episodes, total_reward = 0, 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        total_reward += r
        if term or trunc:
            episodes += 1
            env.reset()
    dt = time.perf_counter() - t0
    print(f"{args.task}: {args.steps} random-action steps, {episodes} episode ends, "
          f"{args.steps / dt:.1f} steps/s, mean reward {total_reward / args.steps:.3f}")
    env.close()
    return 0 if np.isfinite(total_reward) else 1


def tasks(_args):
    from fastenv.envs import TASKS
    for spec in TASKS.values():
        print(f"{spec.id:32s} model={spec.model:22s} reference={spec.reference}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fastenv", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rollout", help="random-action rollout, prints steps/s")
    r.add_argument("--task", default="MuscleWalkingImitation2D-v0")
    r.add_argument("--steps", type=int, default=1000)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=rollout)
    t = sub.add_parser("tasks", help="list the registered tasks")
    t.set_defaults(func=tasks)
    sub.add_parser("bench", add_help=False,
                   help="side-by-side throughput comparison; fastenv bench --help for options")
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "bench":   # its options belong to fastenv.benchmark's own parser
        from fastenv.benchmark import main as bench_main
        return bench_main(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
