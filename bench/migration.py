"""What moving an env to another worker mid-episode costs: the price of work stealing.

    python bench/migration.py [--task ID] [--moves 60] [--seed 0] [--json FILE]
                              [--stealing 8,16,32 [--steps 300]]

Two envs of the task in one process (one shared model, as a worker's envs are): env A
steps seeded random actions; before each of ``--moves`` steps its state is moved to env
B, and both step the same action from it, A continuing and B on the moved state. Timed
per move (medians, ms): publishing A's state (``get_state`` pickled, what a worker would
have to write after every env step so that an idle worker could take the env over), the
move itself (``set_state`` on B; and the bare ``Simulation.restore`` of a snapshot,
what any move needs at the least), and the step after the move against A's own step.
A moved env continues within integrator accuracy, not bitwise (its integrator's
step-size control restarts): the largest difference of a generalized coordinate (rad
or m) after the step is reported too (the observation's accelerations, stiff at the
feet's contacts, differ by more).

``--stealing N,...``: what work stealing would give a synchronous step of N envs on 2
workers, replayed on measured costs. Each env is stepped alone through ``--steps`` steps
of its seeded actions (``bench.workload.ActionSchedule``, reset on the step after an
episode's end, as the pool does), its step times recorded. On those times, per step:
- pinned (the pool): env i on worker i mod 2, the step lasting its slower worker's sum;
- stealing: each worker steps its own envs first to last, and a worker that runs out
  takes the other's last env not yet started whenever that ends the step sooner, paying
  the measured move (``set_state`` and the step after it); a taken env stays with its
  new worker. The decision knows every step's cost in advance, which no real worker
  does: an upper bound on what stealing gives. Every env step also pays the measured
  publishing of its state (an idle worker can only take an env whose state it can read);
  it is replayed without that cost too.
Efficiency = the envs' summed time / 2 / the step's length, as the env limit reads it
(waiting at the barrier is the only loss modelled: the first call after it and the
parent's turn come on top in both).
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # ``bench`` from the checkout

TASK = "MuscleWalkingImitation2D-v0"
WARMUP = 15
WORKERS = 2


def measure(task: str, moves: int, seed: int) -> dict:
    from fastenv.env import ImitationEnv
    a, b = ImitationEnv(task, share_model=True), ImitationEnv(task, share_model=True)
    try:
        a.action_space.seed(seed)
        a.reset(seed=seed)
        b.reset(seed=seed + 1)
        for _ in range(WARMUP):
            a.step(a.action_space.sample())
        clock = time.perf_counter
        publish, move, restore, own, moved, bytes_, diff = [], [], [], [], [], [], []
        for _ in range(moves):
            action = a.action_space.sample()
            t = clock()
            blob = pickle.dumps(a.get_state(), protocol=pickle.HIGHEST_PROTOCOL)
            publish.append(clock() - t)
            bytes_.append(len(blob))
            snap = a.sim.snapshot()
            t = clock()
            b.sim.restore(snap)
            restore.append(clock() - t)
            t = clock()
            b.set_state(pickle.loads(blob))
            move.append(clock() - t)
            t = clock()
            _, _, term, trunc, _ = a.step(action)
            own.append(clock() - t)
            t = clock()
            b.step(action)
            moved.append(clock() - t)
            diff.append(float(np.abs(a.sim.state.getQ().to_numpy()
                                     - b.sim.state.getQ().to_numpy()).max()))
            if term or trunc:
                a.reset()
    finally:
        a.close()
        b.close()

    def ms(x):
        return round(1e3 * float(np.median(x)), 3)
    # a move costs the set_state and what the step after it costs beyond a continuing one
    move_s = float(np.median(move) + np.median(moved) - np.median(own))
    return dict(task=task, moves=moves, publish_ms=ms(publish), state_bytes=int(np.median(bytes_)),
                set_state_ms=ms(move), restore_ms=ms(restore), step_ms=ms(own),
                step_after_move_ms=ms(moved),
                step_after_move_ratio=round(float(np.sum(moved) / np.sum(own)), 3),
                move_s=round(move_s, 6), move_in_steps=round(move_s / float(np.median(own)), 3),
                largest_coordinate_difference=max(diff))


def step_costs(task: str, n: int, steps: int, seed: int) -> np.ndarray:
    """(steps, n) seconds: env i stepped alone through its schedule, as in the env limit."""
    from bench.workload import ActionSchedule, NextStepEnv
    from fastenv.env import ImitationEnv
    costs = np.empty((steps, n))
    env = ImitationEnv(task, share_model=True)
    try:
        schedule = ActionSchedule(seed, WARMUP + steps, env.action_space)
        for i in range(n):
            alone = NextStepEnv(env, i, schedule, seed)
            for k in range(WARMUP + steps):
                t = time.perf_counter()
                alone.step(k)
                if k >= WARMUP:
                    costs[k - WARMUP, i] = time.perf_counter() - t
    finally:
        env.close()
    return costs


def replay_stealing(costs: np.ndarray, move_s: float, publish_s: float) -> dict:
    """Pinned and stealing step lengths on ``costs`` (see the module's docstring)."""
    steps, n = costs.shape
    owner = np.arange(n) % WORKERS
    pinned, stealing, moves = [], [], 0
    for k in range(steps):
        c = costs[k]
        pinned.append(max(c[np.arange(n) % WORKERS == w].sum() for w in range(WORKERS)))
        queues = [[i for i in range(n) if owner[i] == w] for w in range(WORKERS)]
        clock = [0.0] * WORKERS
        while any(queues):
            w = min(range(WORKERS), key=lambda v: clock[v])   # the next worker to be free
            if queues[w]:
                i = queues[w].pop(0)
                clock[w] += c[i] + publish_s
                continue
            other = max(range(WORKERS), key=lambda v: clock[v] + c[queues[v]].sum())
            left = clock[other] + c[queues[other]].sum()   # when the victim would be done
            i = queues[other][-1] if queues[other] else None
            if i is not None and max(clock[w] + move_s + c[i], left - c[i]) < left:
                queues[other].pop()   # taking its last queued env ends the step sooner
                owner[i] = w
                moves += 1
                clock[w] += move_s + c[i] + publish_s
            else:   # nothing worth taking: wait for the others to finish
                clock[w] = max(clock[v] for v in range(WORKERS) if v != w)
                if queues[other]:
                    i = queues[other].pop(0)
                    clock[other] += c[i] + publish_s
        stealing.append(max(clock))
    work = costs.sum() / WORKERS
    return dict(num_envs=n, steps=steps, pinned_efficiency=round(float(work / sum(pinned)), 3),
                stealing_efficiency=round(float(work / sum(stealing)), 3),
                moves_per_step=round(moves / steps, 2))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python bench/migration.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--task", default=TASK)
    p.add_argument("--moves", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--stealing", default="",
                   help="num_envs to replay work stealing at, e.g. 8,16,32")
    p.add_argument("--steps", type=int, default=300, help="steps per env for --stealing")
    a = p.parse_args(argv)
    from fastenv.envs import TASKS
    if a.task not in TASKS or a.moves < 1:
        p.error(f"--task must be a task ID (got {a.task!r}) and --moves >= 1 (got {a.moves})")
    stealing = [int(x) for x in a.stealing.split(",") if x.strip()]
    if any(n < WORKERS for n in stealing) or a.steps < 1:
        p.error(f"--stealing needs num_envs >= {WORKERS} (got {stealing}) and --steps >= 1 "
                f"(got {a.steps})")
    row = measure(a.task, a.moves, a.seed)
    command = f"python bench/migration.py --task {a.task} --moves {a.moves} --seed {a.seed}"
    if stealing:
        command += f" --stealing {a.stealing} --steps {a.steps}"
        costs = step_costs(a.task, max(stealing), a.steps, a.seed)
        row["stealing"] = []
        for n in stealing:
            r = replay_stealing(costs[:, :n], row["move_s"], 1e-3 * row["publish_ms"])
            free = replay_stealing(costs[:, :n], row["move_s"], 0.0)   # a state read for free
            r.update(stealing_efficiency_free_publish=free["stealing_efficiency"],
                     moves_per_step_free_publish=free["moves_per_step"])
            row["stealing"].append(r)
    result = dict(command=command, date=datetime.now(UTC).isoformat(timespec="seconds"),
                  **row)
    print(json.dumps(result), flush=True)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
