#!/usr/bin/python3
"""The service's load numbers for docs/PERF.md ("The service"): not a test, a measurement.

    /usr/bin/python3 bench/server_load.py [--seconds 10] [--connections 64] [--sse 500]

Starts `stepaudio serve` on 127.0.0.1 with a tiny random model (tests/reference/make_tiny_model.py;
the cache-hit path does not depend on the model's size) and an API key, fills the cache with one
real request for the speech sample, then measures:
  1. wrk -t2 -cC -dSs --latency on GET /healthz;
  2. the same on the cached POST /transcribe-and-summarize (raw WAV body, bench/wrk_post.lua), and
     with one connection (-t1 -c1): the cost of one cache hit without queueing;
  3. the server's own view of those cache hits (its stepaudio_http_request_duration_seconds
     histogram: the share answered within 1, 2.5, 5, 10, 25 ms) and the store's growth per hit;
  4. the memory of N idle SSE connections (GET /v1/jobs/{id}/events of a queued job behind one
     running job): the server's RSS before, with them open, and after they close.
Prints the machine line (nproc, CPU model, load average) first. Needs wrk, ../shared/data and
/usr/bin/python3 with numpy and torch (for the tiny model). Takes about a minute with the defaults.
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from server_harness import ROOT, SPEECH_WAV, Server, make_tiny_model, write_wav  # noqa: E402
from test_server_load import open_sse, parse_wrk, rss_bytes  # noqa: E402

KEY = "sk-bench-0123456789abcdef"
MB = 1024 * 1024


def machine_line():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "machine: %d CPUs (nproc), %s, %.0f GiB RAM, load average %s" % (
        os.cpu_count(), cpu, mem, load)


def wrk(url, seconds, connections, threads, body=None):
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--latency"]
    env = dict(os.environ)
    if body:
        cmd += ["-s", os.path.join(ROOT, "bench", "wrk_post.lua")]
        env.update(WRK_BODY=body, WRK_KEY=KEY)
    print("$ " + " ".join(cmd + [url]), flush=True)
    out = subprocess.run(cmd + [url], capture_output=True, text=True, env=env,
                         timeout=seconds + 60).stdout
    r = parse_wrk(out)
    print("  %d requests, %.0f/s, p50 %.2f ms, p99 %.2f ms, socket errors %d, non-2xx %d, statuses %s"
          % (r["requests"], r["requests"] / seconds, r["p50"] * 1e3, r["p99"] * 1e3, r["errors"],
             r["non2xx"], r["statuses"] or "-"), flush=True)
    return r


def histogram(server, route):
    """The server's latency histogram of `route`: {le: cumulative count}."""
    text = server.get("/metrics").text
    out = {}
    for le, n in re.findall(r'^stepaudio_http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"'
                            r'[^}]*route="%s"[^}]*\} (\S+)$' % re.escape(route), text, re.M):
        out[le] = float(n)
    if not out:  # labels in the other order
        for le, n in re.findall(r'^stepaudio_http_request_duration_seconds_bucket\{[^}]*route="%s"'
                                r'[^}]*le="([^"]+)"[^}]*\} (\S+)$' % re.escape(route), text, re.M):
            out[le] = float(n)
    return out


def db_bytes(path):
    return sum(os.path.getsize(path + ext) for ext in ("", "-wal") if os.path.exists(path + ext))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--sse", type=int, default=500, help="idle SSE connections")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("server_load: wrk is not installed (scripts/setup installs it)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.sse + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.sse + 1024), hard))

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="stepaudio-load-") as tmp:
        model = make_tiny_model(os.path.join(tmp, "tiny"))
        long_wav = write_wav(os.path.join(tmp, "long.wav"), 600)
        keys = os.path.join(tmp, "keys.txt")
        with open(keys, "w") as f:
            f.write(KEY + "\n")
        db = os.path.join(tmp, "stepaudio.db")
        print("server: stepaudio serve --model <tiny> --api-keys keys.txt --threads 1 "
              "(--http-threads 2 --io-threads 2 by default), release build %s" %
              os.path.relpath(os.environ.get("STEPAUDIO_BIN", os.path.join(ROOT, "build", "bin",
                                                                           "stepaudio")), ROOT))
        with Server(model, tmp, "--api-keys", keys, "--threads", "1", db=db, key=KEY) as s:
            with open(SPEECH_WAV, "rb") as f:
                audio = f.read()
            r = s.post("/transcribe-and-summarize", data=audio, headers={"Content-Type": "audio/wav"})
            assert r.status_code == 200 and not r.json()["cached"], r.text
            print("warm-up: one real request, %d-byte answer; RSS %.1f MB" %
                  (len(r.content), rss_bytes(s.proc.pid) / MB))

            wrk(s.base + "/healthz", args.seconds, args.connections, 2)
            route = "POST /transcribe-and-summarize"

            def server_side(h0, h1):
                n = h1["+Inf"] - h0.get("+Inf", 0)
                print("  server-side (its latency histogram) over these %d cache hits: %s" % (n, ", ".join(
                    "%.1f%% <= %g ms" % (100 * (h1[le] - h0.get(le, 0)) / n, float(le) * 1e3)
                    for le in ("0.001", "0.0025", "0.005", "0.01", "0.025"))))

            h0, d0 = histogram(s, route), db_bytes(db)
            many = wrk(s.base + "/transcribe-and-summarize", args.seconds, args.connections, 2,
                       body=SPEECH_WAV)
            h1 = histogram(s, route)
            server_side(h0, h1)
            one = wrk(s.base + "/transcribe-and-summarize", args.seconds, 1, 1, body=SPEECH_WAV)
            h2, d1 = histogram(s, route), db_bytes(db)
            server_side(h1, h2)
            hits = many["requests"] + one["requests"]
            print("store growth: %.1f MB for %d cache hits = %.1f KB per hit (a job row + its "
                  "result copy each)" % ((d1 - d0) / MB, hits, (d1 - d0) / 1024 / max(1, hits)))
            print("RSS after the wrk runs: %.1f MB" % (rss_bytes(s.proc.pid) / MB))

            # Idle SSE: job B waits behind job A (one engine thread), so its stream stays silent.
            jobs = []
            for _ in range(2):
                with open(long_wav, "rb") as f:
                    r = s.post("/v1/jobs?cache=false", data=f, headers={"Content-Type": "audio/wav"})
                assert r.status_code == 202, r.text
                jobs.append(r.json()["id"])
            s.wait_job(jobs[0], statuses=("running",))
            time.sleep(1)
            before = rss_bytes(s.proc.pid)
            t0 = time.time()
            socks = open_sse(s.base, "/v1/jobs/%s/events" % jobs[1], KEY, args.sse)
            opened = time.time() - t0
            time.sleep(2)
            during = rss_bytes(s.proc.pid)
            t = time.time()
            assert s.get("/healthz").status_code == 200
            healthz_ms = (time.time() - t) * 1e3
            for sock in socks:
                sock.close()
            time.sleep(2)
            after = rss_bytes(s.proc.pid)
            for j in jobs:
                s.delete("/v1/jobs/" + j)
            print("%d idle SSE connections: opened in %.2f s; RSS %.1f -> %.1f MB (+%.1f MB, "
                  "%.1f KB each); /healthz meanwhile %.1f ms; %.1f MB after they closed" %
                  (args.sse, opened, before / MB, during / MB, (during - before) / MB,
                   (during - before) / 1024 / args.sse, healthz_ms, after / MB))
    print(machine_line().replace("machine:", "machine after:"))


if __name__ == "__main__":
    main()
