"""Command line: ``fastenv rollout`` (quick start, prints steps/s), ``fastenv tasks``,
``fastenv bench`` (side-by-side throughput comparison, ``fastenv.benchmark``)."""
import argparse
import sys
import time


def rollout(args):
    """Random actions through one env (``--num-envs 1``) or an ``OsimVectorEnv`` stepped
    envpool-style (half the envs per batch); prints env steps/s."""
    import numpy as np

    import fastenv  # noqa: F401
    from fastenv.vector import OsimVectorEnv

    t_build = time.perf_counter()
    if args.num_envs == 1:
        import gymnasium as gym
        env = gym.make(args.task)
        env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
    else:
        env = OsimVectorEnv(args.task, args.num_envs, num_workers=args.workers,
                            batch_size=max(1, args.num_envs // 2))
        env.async_reset(seed=args.seed)
        space = env.single_action_space
        rng = np.random.default_rng(args.seed)
    t_build = time.perf_counter() - t_build
    steps, episodes, total_reward = 0, 0, 0.0
    t0 = time.perf_counter()
    while steps < args.steps:
        if args.num_envs == 1:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            steps, total_reward = steps + 1, total_reward + r
            if term or trunc:
                episodes += 1
                env.reset()
        else:
            _, r, term, trunc, info = env.recv()
            ids = info["env_id"]
            steps, total_reward = steps + len(ids), total_reward + float(r.sum())
            episodes += int((term | trunc).sum())
            env.send(rng.uniform(space.low, space.high, (len(ids), *space.shape)), ids)
    dt = time.perf_counter() - t0
    print(f"{args.task}: {args.num_envs} env(s), {steps} random-action steps in {dt:.1f} s "
          f"(start-up {t_build:.1f} s), {episodes} episode ends, {steps / dt:.1f} steps/s, "
          f"mean reward {total_reward / steps:.3f}")
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
    r.add_argument("--num-envs", type=int, default=1,
                   help="> 1: an OsimVectorEnv stepped asynchronously")
    r.add_argument("--workers", type=int, default=None, help="worker processes (default: cores)")
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
