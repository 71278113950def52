"""The synchronous step against the physical limit: the sync-efficiency table.

    python bench/pool.py --out bench/results [--quick] [--envs 2,4,8,16,32] [--merge]

``OsimVectorEnv.step`` with W workers (W = cores), with load balancing (2W workers,
``active_workers`` = W), and with one OpenSim model per env (``share_model=False``, as
before a worker's envs shared one), against the physical limit of the same workload, with
``bench/compare.py``'s method: every env steps its seeded action schedule for the same
warm-up and timed steps, the limit redoes exactly those trajectories with bare
``Manager.integrate`` calls, and each point runs ``--rounds`` times in rotating order.
It also runs the env limit: the same envs each stepped alone in a loop, W processes at
once (W cores x one env, the issue's "2 cores x single env"), the ceiling of any vector
env of these envs; what separates the pool from it is moving data and the barrier.
Efficiency = the median's steps/s ÷ a limit's median; its range is that of the
per-round ratios (a method and the limit of the same round ran minutes apart at most).
The issue's target is ≥ 0.97 of the env limit at num_envs 8 to 32. The workers'
clocks (``OsimVectorEnv.worker_timers``) give each worker's share of the timed window
spent waiting for the parent: the barrier, measured from inside. Writes ``sync_efficiency.json`` and
``.md`` into ``--out``.

Also holds ``tree_memory_mb`` (RSS/PSS of a process list), which compare.py uses.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENVS = (2, 4, 8, 16, 32)
QUICK_ENVS = (2,)
TARGET, TARGET_ENVS = 0.97, (8, 16, 32)
METHODS = ("osim_sync", "osim_sync_balanced", "osim_sync_unshared")
LIMITS = ("physical_limit", "env_limit")


def _mem_kb(pid: int):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_memory_mb(pids):
    """(RSS, PSS) in MB summed over ``pids``."""
    rss = pss = 0
    for p in pids:
        r, s = _mem_kb(p)
        rss, pss = rss + r, pss + s
    return rss / 1024, pss / 1024


def _limit_row(result, method, r):
    return next((x for x in result["rows"] if x["method"] == method
                 and x["num_envs"] == r["num_envs"] and x["run"] == r["run"]), None)


def _ratio(r, lim):
    """(median ÷ the limit's median, range of the per-round ratios) or Nones."""
    if lim is None:
        return None, None
    by_round = {x["round"]: x["steps_per_s"] for x in lim["runs"]}
    per_round = [x["steps_per_s"] / by_round[x["round"]] for x in r["runs"]
                 if x["round"] in by_round]
    return r["steps_per_s"] / lim["steps_per_s"], [min(per_round), max(per_round)]


def efficiency_rows(result: dict) -> list[dict]:
    """Per (method, num_envs): steps/s (median, range), its ratio to the physical limit
    and to the env limit (median's ratio, range of the per-round ratios; the target
    is on the env limit), and the workers' mean share of the timed window spent
    waiting for the parent (the barrier and the parent's turnaround)."""
    rows = []
    for r in result["rows"]:
        if r["method"] in LIMITS:
            continue
        phys, env = (_limit_row(result, m, r) for m in LIMITS)
        eff, eff_range = _ratio(r, phys)
        env_eff, env_range = _ratio(r, env)
        workers = r.get("workers") or []
        rows.append(dict(method=r["method"], label=r["label"], num_envs=r["num_envs"],
                         run=r["run"], steps_per_s=r["steps_per_s"],
                         steps_per_s_range=r["steps_per_s_range"],
                         limit=phys["steps_per_s"], limit_range=phys["steps_per_s_range"],
                         efficiency=eff, efficiency_range=eff_range,
                         env_limit=env and env["steps_per_s"],
                         env_limit_range=env and env["steps_per_s_range"],
                         env_efficiency=env_eff, env_efficiency_range=env_range,
                         waiting=(float(np.mean([w["waiting_s"] for w in workers]))
                                  if workers else None),
                         target=TARGET if r["num_envs"] in TARGET_ENVS else None,
                         p50_ms=r["p50_ms"], p99_ms=r["p99_ms"], rss_mb=r["rss_mb"],
                         pss_mb=r["pss_mb"], episode_ends=r["episode_ends"]))
    return rows


HEADER = ["num_envs", "method", "steps/s (range)", "physical limit", "÷ physical limit",
          "env limit", "÷ env limit (per-round range)", "target", "workers waiting",
          "p50 / p99 ms", "RSS / PSS MB"]


def _span(value, pair, spec):
    if value is None:
        return "–"
    return f"{spec.format(value)} ({spec.format(pair[0])}–{spec.format(pair[1])})"


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        eff = r["env_efficiency"]
        verdict = ("–" if r["target"] is None or eff is None else
                   f"≥ {r['target']:.2f}: {'met' if eff >= r['target'] else 'missed'}")
        out.append([str(r["num_envs"]), r["label"],
                    _span(r["steps_per_s"], r["steps_per_s_range"], "{:.1f}"),
                    f"{r['limit']:.1f}", f"{r['efficiency']:.3f}",
                    "–" if r["env_limit"] is None else f"{r['env_limit']:.1f}",
                    _span(eff, r["env_efficiency_range"], "{:.3f}"), verdict,
                    "–" if r["waiting"] is None else f"{100 * r['waiting']:.1f}%",
                    f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}",
                    f"{r['rss_mb']:.0f} / {r['pss_mb']:.0f}"])
    return out


def markdown(result: dict) -> str:
    from bench.compare import describe, table_markdown
    rows = efficiency_rows(result)
    result["efficiency"] = rows
    rule = ["---:", "---"] + ["---:"] * (len(HEADER) - 2)
    lines = [f"# bench/pool.py: synchronous step against the physical limit, "
             f"{result['meta']['task']}", "", *describe(result), ""]
    return table_markdown(lines, HEADER, rule, table_rows(rows), result)


def parse_args(argv=None):
    from bench import compare
    ap = argparse.ArgumentParser(prog="python bench/pool.py",
                                 description=__doc__.split("\n\n")[0])
    compare.add_workload_args(ap)
    ap.add_argument("--envs", default=None,
                    help=f"comma-separated num_envs values (default {','.join(map(str, ENVS))})")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated OsimVectorEnv methods of bench/compare.py "
                         f"(default {','.join(METHODS)})")
    args = ap.parse_args(argv)
    compare.finish_workload_args(ap, args, ENVS, QUICK_ENVS)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if not m.startswith("osim_") or m not in compare.METHODS]
    if bad:
        ap.error(f"--methods: {bad} are not OsimVectorEnv methods; expected some of "
                 f"{[m for m in compare.METHODS if m.startswith('osim_')]}")
    args.methods = [*LIMITS, *methods]
    return args


def main(argv=None) -> int:
    from bench import compare
    args = parse_args(argv)
    result = compare.run(args)
    paths, result = compare.write_outputs(result, Path(args.out), "sync_efficiency",
                                          merge_old=args.merge, markdown_fn=markdown,
                                          png=False)
    print(markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
