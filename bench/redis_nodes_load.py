#!/usr/bin/python3
"""Three `stepaudio serve --redis` nodes on one Redis: a bounded load test for docs/PERF.md
("Several nodes on one Redis"). Not a test, a measurement; stops by itself within about a minute.

    /usr/bin/python3 bench/redis_nodes_load.py [--jobs 24] [--hits 600] [--clients 8]

Starts redis-server (127.0.0.1, a free port, AOF everysec, in a temp dir) and three nodes with the
tiny random model (tests/reference/make_tiny_model.py) and `--parallel 2 --threads 1`, then:
  1. jobs per second: --jobs distinct 3-s recordings submitted round-robin to the three nodes
     (POST /v1/jobs, --clients at once), from the first submit to the last job finished; which
     node ran each job comes from its logs;
  2. cache-hit latency: one recording (the 3.78 s speech sample) answered once, then POST
     /transcribe-and-summarize of it spread over the three nodes: --hits/3 by one keep-alive
     client, then --hits by --clients at once: p50/p99 as the clients see it, and hits per second.
Prints the machine line first. Needs redis-server, ../shared/data and /usr/bin/python3 with numpy,
torch and requests.
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from redis_harness import HAVE_REDIS, RedisServer  # noqa: E402
from server_harness import HAVE_SHARED, SPEECH_WAV, Server, make_tiny_model, write_wav  # noqa: E402
from server_load import machine_line  # noqa: E402


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def run_pool(n_clients, items, fn):
    """Calls fn(session, item) for every item with n_clients threads; returns their results."""
    results, lock, it = [], threading.Lock(), iter(items)

    def worker():
        s = requests.Session()
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                return
            r = fn(s, item)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--hits", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    if not (HAVE_REDIS and HAVE_SHARED):
        print("needs redis-server and ../shared/data")
        return 0
    print(machine_line(), flush=True)
    work = tempfile.mkdtemp(prefix="sa_redis_load_")
    redis = RedisServer(work).start()
    nodes = []
    try:
        tiny = make_tiny_model(os.path.join(work, "tiny"))
        for i in range(3):
            d = os.path.join(work, "node%d" % i)
            os.makedirs(d)
            nodes.append(Server(tiny, d, "--redis", redis.url, "--parallel", 2, "--threads", 1,
                                "--max-queue", 1000).start())
        print("redis %s, 3 nodes: %s" % (redis.url, " ".join(n.base for n in nodes)), flush=True)

        # 1. Jobs per second over the three nodes.
        recordings = [open(write_wav(os.path.join(work, "r%d.wav" % i), 3, seed=100 + i),
                           "rb").read() for i in range(args.jobs)]
        t0 = time.time()

        def submit(s, i):
            node = nodes[i % 3]
            r = s.post(node.base + "/v1/jobs", files={"file": ("r.wav", recordings[i])},
                       data={"task": "transcribe"}, timeout=60)
            r.raise_for_status()
            return r.json()["id"]

        ids = run_pool(args.clients, range(args.jobs), submit)
        for job in ids:
            nodes[0].wait_job(job, timeout=max(60, 55 - (time.time() - t0)))
        elapsed = time.time() - t0
        statuses = [nodes[1].get("/v1/jobs/" + j).json()["status"] for j in ids]
        print("jobs: %d distinct 3-s recordings, %d clients: %.2f s, %.2f jobs/s, all %s" % (
            len(ids), args.clients, elapsed, len(ids) / elapsed,
            "succeeded" if set(statuses) == {"succeeded"} else statuses), flush=True)
        per_node = []
        for n in nodes:
            m = requests.get(n.base + "/metrics", timeout=10).text
            done = sum(float(line.split()[-1]) for line in m.splitlines()
                       if line.startswith("stepaudio_stage_seconds_count") and 'stage="total"' in line)
            per_node.append(int(done))
        print("inferences run per node: %s" % per_node, flush=True)

        # 2. Cache hits over the three nodes.
        speech = open(SPEECH_WAV, "rb").read()
        first = requests.post(nodes[0].base + "/transcribe-and-summarize", data=speech,
                              headers={"Content-Type": "audio/wav"}, timeout=120)
        first.raise_for_status()

        def hit(s, i):
            node = nodes[i % 3]
            t = time.perf_counter()
            r = s.post(node.base + "/transcribe-and-summarize", data=speech,
                       headers={"Content-Type": "audio/wav"}, timeout=30)
            ms = 1000 * (time.perf_counter() - t)
            return ms if r.status_code == 200 and r.json().get("cached") else None

        for clients, hits in ((1, args.hits // 3), (args.clients, args.hits)):
            t1 = time.time()
            lat = run_pool(clients, range(hits), hit)
            wall = time.time() - t1
            ok = [x for x in lat if x is not None]
            print("cache hits: %d of %d answered 200 cached, %d client(s) over 3 nodes: %.0f hits/s,"
                  " p50 %.2f ms, p99 %.2f ms, max %.2f ms (mean %.2f)" % (
                      len(ok), len(lat), clients, len(ok) / wall, percentile(ok, 50),
                      percentile(ok, 99), max(ok), statistics.mean(ok)), flush=True)
        info = redis.cli("INFO", "memory")
        used = [line for line in info.splitlines() if line.startswith("used_memory_human")]
        print("redis: %s, %s keys" % (used[0] if used else "?", redis.cli("DBSIZE")), flush=True)
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
