"""Same as `lorasim bench`: prints simulator speed figures (see sim/bench.py for targets)."""

import sys

from sim.bench import run_bench

if __name__ == "__main__":
    run_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
