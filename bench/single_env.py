"""Single-env steps/s against bare Manager.integrate on the same workload, same run.

The env runs random actions (with its falls and resets) for ``--seconds``, recording
the controls it sends to OpenSim; then exactly those controls are replayed with bare
``Manager.integrate`` from the same snapshots. Reported per task: env steps/s, raw
integrate steps/s, and the share of an env step spent outside integrate.

    python bench/single_env.py [--tasks A,B] [--seconds 10]
"""
import argparse
import time

from fastenv.env import ImitationEnv


def measure(task, seconds, seed=0):
    env = ImitationEnv(task)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    sim = env.sim
    episodes = [(env._start, [])]
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
        episodes[-1][1].append(sim.buf[sim.layout.slice("controls")].copy())
        if term or trunc:
            env.reset()
            episodes.append((env._start, []))
    env_sps = steps / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start, controls in episodes:
        sim.restore(env._snapshot(start))
        for u in controls:
            sim.integrate_raw(1, u)
    raw_sps = steps / (time.perf_counter() - t0)
    return env_sps, raw_sps, len(episodes) - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="MuscleWalkingImitation2D-v0,TorqueWalkingImitation2D-v0")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print("| task | env steps/s | bare integrate steps/s | outside integrate | episode ends |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for task in args.tasks.split(","):
        env_sps, raw_sps, ends = measure(task, args.seconds)
        print(f"| {task} | {env_sps:.1f} | {raw_sps:.1f} | {100 * (1 - env_sps / raw_sps):.1f}% "
              f"| {ends} |", flush=True)


if __name__ == "__main__":
    main()
