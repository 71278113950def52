"""Side-by-side throughput comparison of fastenv against the physical limit, a
seed-style (osim-rl way) env, Gymnasium and Stable-Baselines3 vector envs.

The implementation lives in the installed module ``fastenv.benchmark`` (``bench/`` is
not a package); this script and ``fastenv bench`` both call it:

    python bench/compare.py [--quick] [--envs 1,2,4] [--seconds 4] [--out bench/results]
"""
import sys

from fastenv.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
