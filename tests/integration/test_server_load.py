"""Bounded load on a real `stepaudio serve` (tiny random model, an API key, 127.0.0.1 only).

One server: a real request fills the cache, then
  (a) wrk (skipped without it), -t2 -c64 for 5 s on GET /healthz and on the cached
      POST /transcribe-and-summarize (raw WAV body, bench/wrk_post.lua), plus 3 s on one connection:
      no socket errors, only 200s, p99 under generous bounds;
  (b) 300 idle SSE clients on a queued job's events while one long job runs: /healthz still answers
      fast and a cached request still succeeds;
  (c) the server's RSS stays within +200 MB of its warm size through all of it.
A second server with --max-queue 1: (d) 20 concurrent cache:false submissions get 202 or 429 with
Retry-After, never 5xx, and the server lives on. Every step is bounded in count and time (the file
takes well under 2 minutes); the measurement program for docs/PERF.md is bench/server_load.py.
"""
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from server_harness import (HAVE_SHARED, ROOT, SANITIZED, SLOW, SPEECH_WAV, Server, make_tiny_model,
                            write_wav)

pytestmark = pytest.mark.skipif(not HAVE_SHARED, reason="needs ../shared/data (tokenizer, speech sample)")

KEY = "sk-load-0123456789abcdef"
WRK = shutil.which("wrk")
WRK_POST_LUA = os.path.join(ROOT, "bench", "wrk_post.lua")
MB = 1024 * 1024
# RSS growth allowed over the warm server; ASan keeps up to 256 MB of freed memory in quarantine.
RSS_BOUND = (200 + (400 if SANITIZED else 0)) * MB


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def open_sockets(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass  # closed meanwhile
    return n


def parse_wrk(out):
    """wrk --latency output -> {"requests", "p50", "p99" (seconds), "errors", "non2xx", "statuses"}."""
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
    lat = {p: float(v) * unit[u]
           for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": lat["50"], "p99": lat["99"],
        "errors": sum(int(g) for g in m.groups()) if m else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "statuses": {int(c): int(n) for c, n in re.findall(r"^status (\d+): (\d+)$", out, re.M)},
    }


def run_wrk(url, seconds, connections=64, threads=2, body=None, key=None):
    # wrk counts an answer slower than --timeout (default 2 s) as a socket error. Under the
    # sanitizers a cached hit costs ~20 ms of CPU instead of ~2 (ASan maps and poisons each large
    # body buffer), so 64 queued clients wait ~1.3-2 s for answers that do come.
    cmd = [WRK, "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--latency",
           "--timeout", "%ds" % int(2 * SLOW)]
    env = dict(os.environ)
    if body:
        cmd += ["-s", WRK_POST_LUA]
        env.update(WRK_BODY=body, WRK_KEY=key or "")
    out = subprocess.run(cmd + [url], capture_output=True, text=True, env=env,
                         timeout=seconds + 30).stdout
    return parse_wrk(out), out


def open_sse(base, path, key, count):
    """`count` raw sockets with GET `path` sent; returns them once each has its 200 stream head."""
    host, port = base.split("//")[1].rsplit(":", 1)
    req = ("GET %s HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream"
           "\r\n\r\n" % (path, host, port, key)).encode()
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection((host, int(port)), timeout=10 * SLOW)
            s.sendall(req)
            socks.append(s)
        for s in socks:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                assert chunk, "an SSE connection closed before its head: %r" % buf
                buf += chunk
            head = buf.split(b"\r\n\r\n")[0].decode()
            assert head.startswith("HTTP/1.1 200"), head
            assert "text/event-stream" in head, head
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    # 300 s of speech-like bursts: minutes of work for the tiny model on one thread.
    return write_wav(tmp_path_factory.mktemp("audio") / "long.wav", 300)


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    keys = work / "keys.txt"
    keys.write_text(KEY + "\n")
    # One engine thread: the other core stays for the HTTP threads and the load generator.
    with Server(tiny, work, "--api-keys", keys, "--threads", "1", "--parallel", "1", key=KEY) as s:
        with open(SPEECH_WAV, "rb") as f:
            audio = f.read()
        r = s.post("/transcribe-and-summarize", data=audio, headers={"Content-Type": "audio/wav"})
        assert r.status_code == 200, r.text
        assert r.json()["cached"] is False
        r = s.post("/transcribe-and-summarize", data=audio, headers={"Content-Type": "audio/wav"})
        assert r.status_code == 200 and r.json()["cached"] is True, r.text
        s.warm_rss = rss_bytes(s.proc.pid)
        s.warm_fds = open_fds(s.proc.pid)
        yield s
        assert s.proc.poll() is None, "the server died: " + s.log()[-2000:]


@pytest.mark.skipif(WRK is None, reason="wrk is not installed")
def test_wrk_healthz_and_cached_post(server):
    h, out = run_wrk(server.base + "/healthz", 5)
    assert h["requests"] > 1000, out
    assert h["errors"] == 0 and h["non2xx"] == 0, out
    assert h["p99"] < 0.1 * SLOW, out

    # 64 connections on 2 cores: the latency is mostly queueing (64 / throughput), so the bound
    # only catches stalls (an inference or a lock held for seconds); one connection shows the cost.
    p, out = run_wrk(server.base + "/transcribe-and-summarize", 5, body=SPEECH_WAV, key=KEY)
    assert p["requests"] > 100, out
    # Socket errors here, with none on /healthz, have been the server closing a keep-alive
    # connection while the next large body arrives (docs/PERF.md, "The service", Notes).
    assert p["errors"] == 0 and p["non2xx"] == 0, out
    assert set(p["statuses"]) == {200}, out  # 200 = answered from the cache, never 202
    assert p["p99"] < 1.0 * SLOW, out
    one, out = run_wrk(server.base + "/transcribe-and-summarize", 3, connections=1, threads=1,
                       body=SPEECH_WAV, key=KEY)
    assert one["errors"] == 0 and set(one["statuses"]) == {200}, out
    # Every hit commits a job row (~17 KB of WAL). The sweeper checkpoints the WAL each second so
    # that the next commit rewinds it; when it did not (its connection never saw WAL mode), the
    # WAL grew to the 80 MB backstop, whose checkpoint ran inside a request: 0.17-0.23 s, here and
    # in CI. The bound catches that; the rest is a 2-core machine shared with wrk (p99 17-111 ms
    # here; the goal of 5 ms is measured by bench/server_load.py).
    assert one["p99"] < 0.2 * SLOW, out

    m = server.get("/metrics").text
    hits = float(re.search(r"^stepaudio_cache_hits_total (\S+)$", m, re.M).group(1))
    assert hits >= p["requests"] + one["requests"]


def test_idle_sse_clients(server, long_wav):
    # Job A runs (one engine thread, minutes of work); job B waits behind it with no events to send.
    jobs = []
    try:
        for _ in range(2):
            with open(long_wav, "rb") as f:
                r = server.post("/v1/jobs?cache=false", data=f,
                                headers={"Content-Type": "audio/wav"})
            assert r.status_code == 202, r.text
            jobs.append(r.json()["id"])
        assert server.wait_job(jobs[0], statuses=("running",))["status"] == "running"
        assert server.get("/v1/jobs/" + jobs[1]).json()["status"] == "queued"
        before = rss_bytes(server.proc.pid)

        t0 = time.time()
        socks = open_sse(server.base, "/v1/jobs/%s/events" % jobs[1], KEY, 300)
        try:
            opened_s = time.time() - t0
            assert opened_s < 20 * SLOW, opened_s
            # All 300 held by the server (the stepaudio_http_connections gauge is only updated when
            # a request finishes, so it cannot count open streams: count the descriptors).
            assert open_sockets(server.proc.pid) >= 301  # + the listening socket
            times = []
            for _ in range(10):
                t = time.time()
                assert server.get("/healthz", timeout=5).status_code == 200
                times.append(time.time() - t)
            times.sort()
            assert times[5] < 0.1 * SLOW and times[-1] < 0.5 * SLOW, times
            with open(SPEECH_WAV, "rb") as f:
                r = server.post("/transcribe-and-summarize", data=f,
                                headers={"Content-Type": "audio/wav"}, timeout=10)
            assert r.status_code == 200 and r.json()["cached"] is True, r.text
            grown = rss_bytes(server.proc.pid) - before
            assert grown < RSS_BOUND, "300 idle SSE connections cost %.1f MB" % (grown / MB)
            # Still idle: job B has not moved.
            assert server.get("/v1/jobs/" + jobs[1]).json()["status"] == "queued"
        finally:
            for s in socks:
                s.close()
    finally:
        for j in jobs:
            server.delete("/v1/jobs/" + j)
    for j in jobs:
        assert server.wait_job(j)["status"] == "canceled"


def test_rss_bounded(server):
    """(c) After the load above: within +200 MB of the warm server, its sockets all closed."""
    deadline = time.time() + 10 * SLOW
    while open_fds(server.proc.pid) > server.warm_fds + 2:
        assert time.time() < deadline, "connections not closed: %d fds, %d when warm" % (
            open_fds(server.proc.pid), server.warm_fds)
        time.sleep(0.1)
    grown = rss_bytes(server.proc.pid) - server.warm_rss
    assert grown < RSS_BOUND, "RSS grew %.1f MB (warm %.1f MB)" % (grown / MB, server.warm_rss / MB)


def test_queue_overflow(tiny, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(KEY + "\n")
    wav = write_wav(tmp_path / "a60.wav", 60)
    with open(wav, "rb") as f:
        audio = f.read()
    with Server(tiny, tmp_path, "--api-keys", keys, "--threads", "1", "--max-queue", "1", "--parallel", "1",
                key=KEY) as s:
        def submit(_):
            return s.post("/v1/jobs", files={"file": ("a60.wav", audio, "audio/wav")},
                          data={"cache": "false"}, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(submit, range(20)))
        codes = sorted(r.status_code for r in answers)
        assert all(c in (202, 429) for c in codes), codes
        full = [r for r in answers if r.status_code == 429]
        assert full, codes
        for r in full:
            assert r.json()["error"]["code"] == "queue_full", r.text
            assert int(r.headers["Retry-After"]) >= 1
        accepted = [r.json()["id"] for r in answers if r.status_code == 202]
        assert 1 <= len(accepted) <= 2, codes  # max-queue 1 (+1 if one finished meanwhile)
        for j in accepted:
            assert s.delete("/v1/jobs/" + j).status_code in (202, 409)
        for j in accepted:
            assert s.wait_job(j)["status"] in ("canceled", "succeeded")
        assert s.get("/healthz").status_code == 200
        deadline = time.time() + 10 * SLOW
        while s.get("/readyz").json()["queue"] != 0:
            assert time.time() < deadline, "the queue never drained"
            time.sleep(0.05)
        # Admission works again once there is room.
        r = s.post("/v1/jobs", files={"file": ("a60.wav", audio, "audio/wav")},
                   data={"cache": "false"})
        assert r.status_code == 202, r.text
        assert s.delete("/v1/jobs/" + r.json()["id"]).status_code == 202
        assert s.proc.poll() is None
        log = s.log()
    # No 5xx was logged for any submission or cancellation (the client saw none either).
    lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
    served = [l for l in lines if l.get("msg") == "request" and l["route"] != "GET /readyz"]
    assert len(served) >= 20 and all(l["status"] < 500 for l in served), served
