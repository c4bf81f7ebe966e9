#!/usr/bin/python3
"""A/B of two or more builds of a Google Benchmark program on a noisy machine.

The development VM's speed drifts by +-15% over minutes, so two builds measured one after the
other compare the VM's states, not the builds. This runs the builds in alternating rounds and, per
round, keeps each benchmark's best repetition (the run least disturbed); the medians over rounds
are what docs/PERF.md quotes.

  bench/ab_compare.py --filter 'Gemm_q.*_M155_packed_.*_int8' --rounds 5 \
      before=/tmp/bench_matmul.before after=build/bin/bench_matmul
"""
import argparse
import collections
import json
import subprocess
import sys


def one_round(binary, flt, reps, counter):
    out = subprocess.run([binary, f"--benchmark_filter={flt}", f"--benchmark_repetitions={reps}",
                          "--benchmark_format=json"], capture_output=True, text=True, check=True)
    best = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        # Higher is better for a rate counter; without one, the lowest real time wins.
        v = b[counter] if counter else -b["real_time"]
        best[b["run_name"]] = max(best.get(b["run_name"], v), v)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", help="name=path of a benchmark binary")
    ap.add_argument("--filter", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--counter", default="GFLOP/s", help="rate to compare ('' for real time)")
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    if any(len(b) != 2 for b in builds):
        sys.exit("each build is name=path")
    seen = collections.defaultdict(list)
    for _ in range(a.rounds):
        for name, path in builds:
            for bench, v in one_round(path, a.filter, a.reps, a.counter).items():
                seen[(bench, name)].append(v if a.counter else -v)
    unit = a.counter or "ns"
    for (bench, name), v in sorted(seen.items()):
        v.sort()
        print(f"{bench:45s} {name:10s} {unit}: median {v[len(v) // 2]:.4g}  "
              f"range {v[0]:.4g}-{v[-1]:.4g} over {len(v)} rounds")


if __name__ == "__main__":
    main()
