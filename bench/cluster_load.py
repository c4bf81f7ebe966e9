#!/usr/bin/python3
"""Three `stepaudio serve` nodes on one Redis (docs/PERF.md "Several nodes"): a measurement, not a test.

    /usr/bin/python3 bench/cluster_load.py [--nodes 3] [--jobs 60] [--hits 600] [--clients 8]

Starts Debian's redis-server on 127.0.0.1 (a free port, a temp dir, AOF with fsync every second: the
durability docs/REDIS.md relies on) and N nodes (`serve --redis redis://127.0.0.1:PORT`) with a tiny
random model (tests/reference/make_tiny_model.py) and one API key, then measures:
  1. jobs per second: --jobs distinct short recordings (so no cache hit and no deduplication) sent
     round-robin to the nodes as POST /v1/jobs with `cache: false`, from submit of the first to the
     last one finished (polled on a node other than the one that took it: the state is shared);
     and which node ran how many (the shared queue spreads the work);
  2. cache hits: one real request fills the shared cache, then --hits POST /transcribe-and-summarize
     of the same recording round-robin over the nodes from --clients threads: latency p50/p90/p99 and
     hits per second (every answer must be a 200 with the cached result).
Everything is bounded: each phase stops after --max-seconds (default 60) and the script kills what
it started. Prints the machine line first. Needs redis-server, ../shared/data, numpy and torch.
"""
import argparse
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
from server_harness import Server, make_tiny_model, write_wav  # noqa: E402
from server_load import machine_line  # noqa: E402

KEY = "sk-cluster-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """redis-server in a temp dir on 127.0.0.1, AOF everysec, no RDB snapshots."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
             "--protected-mode", "yes", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def jobs_per_second(nodes, wavs, max_seconds):
    t0 = time.time()
    ids = []
    for i, wav in enumerate(wavs):
        node = nodes[i % len(nodes)]
        with open(wav, "rb") as f:
            r = node.post("/v1/jobs", files={"file": ("a.wav", f, "audio/wav")},
                          data={"task": "transcribe_and_summarize", "cache": "false"})
        if r.status_code != 202:
            raise RuntimeError("submit %d on node %d: %d %s" % (i, i % len(nodes), r.status_code,
                                                               r.text[:300]))
        ids.append(r.json()["id"])
    submitted = time.time() - t0
    pending = set(range(len(ids)))
    done = {}
    while pending and time.time() - t0 < max_seconds:
        for i in list(pending):
            job = nodes[(i + 1) % len(nodes)].get("/v1/jobs/" + ids[i]).json()  # another node
            if job["status"] in ("succeeded", "failed", "canceled"):
                done[i] = job
                pending.discard(i)
        time.sleep(0.05)
    wall = time.time() - t0
    if pending:
        raise RuntimeError("%d of %d jobs not finished after %.0f s" % (len(pending), len(ids), wall))
    failed = [j for j in done.values() if j["status"] != "succeeded"]
    if failed:
        raise RuntimeError("%d jobs did not succeed, e.g. %s" % (len(failed), failed[0]))
    return {"jobs": len(ids), "submit_s": submitted, "wall_s": wall, "jobs_per_s": len(ids) / wall}


def finished_per_node(nodes):
    """Each node's stepaudio_jobs_finished_total (the jobs it ran to the end), from its /metrics."""
    counts = []
    for n in nodes:
        total = 0.0
        for line in n.get("/metrics").text.splitlines():
            if line.startswith("stepaudio_jobs_finished_total"):
                total += float(line.rsplit(" ", 1)[1])
        counts.append(int(total))
    return counts


def cache_hits(nodes, wav, hits, clients, max_seconds):
    with open(wav, "rb") as f:
        body = f.read()
    first = nodes[0].post("/transcribe-and-summarize", data=body,
                          headers={"Content-Type": "audio/wav"}, timeout=120)
    if first.status_code != 200:
        raise RuntimeError("filling the cache: %d %s" % (first.status_code, first.text[:300]))
    expected = first.json()["transcription"]
    deadline = time.time() + max_seconds

    def one(i):
        if time.time() > deadline:
            return None
        t = time.perf_counter()
        r = nodes[i % len(nodes)].post("/transcribe-and-summarize", data=body,
                                       headers={"Content-Type": "audio/wav"})
        ms = (time.perf_counter() - t) * 1e3
        if r.status_code != 200 or r.json()["transcription"] != expected:
            raise RuntimeError("hit %d on node %d: %d %s" % (i, i % len(nodes), r.status_code,
                                                             r.text[:200]))
        return ms

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        lat = [ms for ms in pool.map(one, range(hits)) if ms is not None]
    wall = time.time() - t0
    return {"hits": len(lat), "per_s": len(lat) / wall, "p50_ms": percentile(lat, 50),
            "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--seconds-per-job", type=float, default=2.0, help="recording length")
    ap.add_argument("--hits", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=60)
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("cluster_load: redis-server is not installed (scripts/setup)")
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(os.path.join(tmp, "model"))
        keys = os.path.join(tmp, "keys")
        with open(keys, "w") as f:
            f.write(KEY + "\n")
        os.chmod(keys, 0o600)
        wavs = [write_wav(os.path.join(tmp, "job%d.wav" % i), args.seconds_per_job, seed=i + 1)
                for i in range(args.jobs)]
        hit_wav = write_wav(os.path.join(tmp, "hit.wav"), 5, seed=0)
        redis = Redis(tmp).start()
        nodes = []
        try:
            for i in range(args.nodes):
                work = os.path.join(tmp, "node%d" % i)
                os.mkdir(work)
                nodes.append(Server(model, work, "--api-keys", keys, "--redis", redis.url(),
                                    key=KEY).start())
            print("redis %s, %d nodes: %s" % (redis.url(), len(nodes),
                                             " ".join(n.base for n in nodes)), flush=True)
            j = jobs_per_second(nodes, wavs, args.max_seconds)
            print("jobs: %d distinct %.0f s recordings, t&s, cache off, round-robin submits: "
                  "submitted in %.2f s, all done in %.2f s = %.2f jobs/s"
                  % (j["jobs"], args.seconds_per_job, j["submit_s"], j["wall_s"], j["jobs_per_s"]),
                  flush=True)
            print("jobs finished per node (each node's /metrics): %s" % finished_per_node(nodes),
                  flush=True)
            h = cache_hits(nodes, hit_wav, args.hits, args.clients, args.max_seconds)
            print("cache hits: %d POST /transcribe-and-summarize (5 s WAV body) from %d clients over "
                  "%d nodes: %.0f/s, p50 %.1f ms, p90 %.1f ms, p99 %.1f ms"
                  % (h["hits"], args.clients, len(nodes), h["per_s"], h["p50_ms"], h["p90_ms"],
                     h["p99_ms"]), flush=True)
        finally:
            for n in nodes:
                n.stop()
            redis.stop()


if __name__ == "__main__":
    main()
