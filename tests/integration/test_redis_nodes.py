"""Several `stepaudio serve --redis` nodes on one real redis-server (issue 16, docs/REDIS.md), with
the tiny model: jobs, Idempotency-Key, the result cache and SSE events shared across nodes, a
cancel reaching the node that runs the job, `kill -9` of that node mid-job (another node finishes
it after the visibility timeout), Redis unreachable (503 fast, /healthz up, /readyz down) and
Redis restarted (the nodes reconnect and go on). Two nodes and one Redis serve the whole module.
Skips without ../shared/data or redis-server.
"""
import os
import threading
import time

import pytest

from redis_harness import HAVE_REDIS, RedisServer
from server_harness import HAVE_SHARED, SANITIZED, SLOW, SPEECH_WAV, Server, make_tiny_model, read_sse, write_wav

pytestmark = [
    pytest.mark.skipif(not HAVE_SHARED, reason="../shared/data is absent: the tiny model needs it"),
    pytest.mark.skipif(not HAVE_REDIS, reason="redis-server is not installed (scripts/setup)"),
]

VISIBILITY = 2  # seconds: a killed node's job moves on quickly
LONG = 20 if SANITIZED else 60  # seconds of audio that keep the tiny model busy a few seconds


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield r
    r.stop()


def start_node(tiny, tmp_path_factory, redis, name):
    d = tmp_path_factory.mktemp(name)
    return Server(tiny, d, "--redis", redis.url, "--visibility-timeout", VISIBILITY,
                  "--parallel", 1).start()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, redis):
    tiny = make_tiny_model(tmp_path_factory.mktemp("tiny_redis"))
    started = []
    try:
        for name in ("node_a", "node_b"):
            started.append(start_node(tiny, tmp_path_factory, redis, name))
        yield started
    finally:
        for s in started:
            s.stop()


def submit_speech(node, task, cache=True):
    """POST /v1/jobs with the shared speech recording (the file closed again)."""
    data = {"task": task} if cache else {"task": task, "cache": "false"}
    with open(SPEECH_WAV, "rb") as f:
        return node.post("/v1/jobs", files={"file": f}, data=data)


def wait_runner(redis, job_id, timeout=30):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        pid = redis.runner_pid(job_id)
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError("no node took job " + job_id)


def test_jobs_events_cache_and_idempotency_across_nodes(nodes, tmp_path):
    a, b = nodes
    path = write_wav(tmp_path / "short.wav", 6, seed=21)
    audio = open(path, "rb").read()
    h = {"Idempotency-Key": "nodes-" + os.urandom(4).hex()}
    first = a.post("/v1/jobs", files={"file": ("a.wav", audio)}, data={"task": "transcribe"},
                   headers=h)
    assert first.status_code == 202, first.text
    job = first.json()["id"]
    # The retry lands on the other node: the same job, not a second one.
    again = b.post("/v1/jobs", files={"file": ("a.wav", audio)}, data={"task": "transcribe"},
                   headers=h)
    assert again.status_code == 202 and again.json()["id"] == job
    assert b.post("/v1/jobs", files={"file": ("a.wav", audio)}, data={"task": "analyze"},
                  headers=h).status_code == 409
    # Live events on both nodes, whichever runs the job: the stream ends with the result.
    streams = {}

    def listen(node, name):
        with node.get("/v1/jobs/%s/events" % job, stream=True, timeout=60) as r:
            streams[name] = read_sse(r)

    threads = [threading.Thread(target=listen, args=(n, k)) for n, k in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90 * SLOW)
    done = b.wait_job(job)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    for name in ("a", "b"):
        types = [e["event"] for e in streams[name]]
        assert types[0] == "queued" and types[-1] == "result", (name, types)
        assert "running" in types, (name, types)
        assert '"text"' in streams[name][-1]["data"]
    # The result cache is shared: the same audio on the other node is answered from it.
    hit = a.post("/v1/jobs", files={"file": ("a.wav", audio)}, data={"task": "transcribe"})
    assert hit.json()["status"] == "succeeded"
    assert a.get("/v1/jobs/" + hit.json()["id"]).json()["result"]["cached"] is True
    metrics = a.get("/metrics").text
    assert "stepaudio_shared_queue_depth 0" in metrics, metrics[:2000]
    # Jobs and their listing are the same on every node.
    assert job in [j["id"] for j in a.get("/v1/jobs?limit=100").json()["data"]]
    assert b.get("/v1/jobs/" + job).json()["result"] == a.get("/v1/jobs/" + job).json()["result"]


def test_same_audio_on_two_nodes_runs_once(nodes, tmp_path):
    a, b = nodes
    path = write_wav(tmp_path / "twice.wav", LONG // 2, seed=24)
    audio = open(path, "rb").read()
    first = a.post("/v1/jobs", files={"file": ("x.wav", audio)}).json()["id"]
    a.wait_job(first, statuses=("running",), timeout=30)
    # Both nodes have a free slot for the second job; whichever takes it waits for the first.
    second = b.post("/v1/jobs", files={"file": ("x.wav", audio)}).json()["id"]
    done = [a.wait_job(first, timeout=120), b.wait_job(second, timeout=120)]
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], done
    assert [d["result"]["cached"] for d in done] == [False, True]
    assert done[0]["result"]["transcription"] == done[1]["result"]["transcription"]
    assert done[1]["started_at"] is None  # it never ran an inference of its own


def test_cancel_on_the_other_node_stops_the_job(nodes, redis, tmp_path):
    a, b = nodes
    path = write_wav(tmp_path / "cancel.wav", LONG, seed=22)
    job = a.post("/v1/jobs", files={"file": open(path, "rb")}, data={"cache": "false"}).json()["id"]
    a.wait_job(job, statuses=("running",), timeout=30)
    runner = wait_runner(redis, job)
    other = b if runner == a.proc.pid else a
    t0 = time.time()
    assert other.delete("/v1/jobs/" + job).status_code == 202
    done = other.wait_job(job, timeout=20)
    assert done["status"] == "canceled", done
    assert time.time() - t0 < 3 * SLOW
    # The node is free again: its entry was acknowledged.
    deadline = time.time() + 10 * SLOW
    while redis.runner_pid(job) and time.time() < deadline:
        time.sleep(0.05)
    assert redis.runner_pid(job) is None


def test_redis_down_answers_503_fast_then_nodes_recover(nodes, redis):
    a, b = nodes
    before = submit_speech(a, "transcribe").json()["id"]
    a.wait_job(before, timeout=60)
    redis.stop()
    try:
        for node in nodes:
            t0 = time.time()
            r = submit_speech(node, "analyze", cache=False)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
            assert time.time() - t0 < 2 * SLOW
            assert node.get("/healthz").status_code == 200
            assert node.get("/readyz").status_code == 503
    finally:
        redis.start()  # same port, same AOF
    # Reconnected: the old job is still there (AOF), and new jobs run.
    for node in nodes:
        assert node.get("/readyz").status_code == 200
        assert node.get("/v1/jobs/" + before).json()["status"] == "succeeded"
    job = submit_speech(b, "analyze", cache=False)
    assert job.status_code == 202, job.text
    assert a.wait_job(job.json()["id"], timeout=60)["status"] == "succeeded"


def test_redis_hanging_answers_503_within_the_timeout_then_recovers(nodes, redis):
    a, b = nodes
    redis.pause()
    try:
        t0 = time.time()
        r = submit_speech(a, "summarize", cache=False)
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
        assert time.time() - t0 < 2 * SLOW
        assert a.get("/healthz", timeout=2).status_code == 200
        assert b.get("/readyz", timeout=5).status_code == 503
    finally:
        redis.resume()
    deadline = time.time() + 10 * SLOW
    while a.get("/readyz").status_code != 200 and time.time() < deadline:
        time.sleep(0.1)
    job = submit_speech(a, "summarize", cache=False)
    assert job.status_code == 202, job.text
    assert b.wait_job(job.json()["id"], timeout=60)["status"] == "succeeded"


def test_a_stored_job_without_queue_entry_is_queued_again(nodes, redis):
    # What a submit leaves behind when Redis ran its store write after the node gave up on it
    # (a timeout): the job, queued, but no queue entry. A node queues it again.
    a, b = nodes
    job = "job_orphan" + os.urandom(7).hex()
    created = int(time.time() * 1000) - 60000
    # In the order of nothing-visible-too-early, as the submit's one script writes them at once:
    # a node that sees the job queued before its input would fail it ("audio was not kept").
    redis.cli_stdin(open(SPEECH_WAV, "rb").read(), "SET", "stepaudio:input:" + job)
    redis.cli("HSET", "stepaudio:job:" + job, "id", job, "owner", "", "status", "queued",
              "options_json", '{"cache":false,"language":"auto","target_length":10,'
              '"task":"transcribe"}', "audio_url", "", "webhook_url", "", "attempts", 0,
              "result_json", "", "error_code", "", "error_message", "", "created_ms", created,
              "started_ms", 0, "finished_ms", 0, "expires_ms", 0, "cache_key", "0" * 64,
              "webhook_secret", "")
    redis.cli("ZADD", "stepaudio:owner:", created, job)
    redis.cli("SADD", "stepaudio:status:queued", job)  # what requeue_orphans looks for: last
    done = a.wait_job(job, timeout=30)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done


def test_kill9_mid_job_another_node_finishes_it(nodes, redis, tmp_path):
    # Last in the module: one node dies here.
    a, b = nodes
    path = write_wav(tmp_path / "kill.wav", LONG, seed=23)
    job = b.post("/v1/jobs", files={"file": open(path, "rb")}, data={"cache": "false"}).json()["id"]
    a.wait_job(job, statuses=("running",), timeout=30)
    runner = wait_runner(redis, job)
    victim, survivor = (a, b) if runner == a.proc.pid else (b, a)
    time.sleep(0.3)
    t0 = time.time()
    victim.kill9()
    done = survivor.wait_job(job, timeout=120)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert time.time() - t0 >= VISIBILITY * 0.9  # not before the visibility timeout
    with survivor.get("/v1/jobs/%s/events" % job, stream=True, timeout=30) as r:
        events = read_sse(r)
    assert any(e["event"] == "queued" and "recovered" in e["data"] for e in events)
    assert events[-1]["event"] == "result"
