"""`stepaudio serve --backend openai://HOST:PORT` (issue 16, docs/REMOTE.md): a gateway node that
keeps the API, jobs and cache and sends the model's work to another node of ours over the OpenAI
chat-completions protocol. Two real processes (an inference node with the tiny random model and a
gateway without --model), with a small Python proxy between them that can fail on demand:

- the same recording on both (greedy): the gateway's transcript, segments, confidence, tone and
  summary equal the inference node's (same prompts, same model); its emotion/urgency scores are
  the first-token scores recomputed here from the node's own top_logprobs (docs/REMOTE.md);
- /v1/chat/completions forwarded (plain and streamed) equals the node's answer;
- retries on 503 and on dropped connections, no retry on a 4xx (mapped to our error), the
  circuit breaker (upstream down -> 503 backend_unavailable, fast once open; back -> recovers),
  --backend-key sent, a bad --backend refused at start (exit 2).
"""
import base64
import json
import math
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from server_harness import BIN, HAVE_SHARED, SLOW, SPEECH_WAV, Server, make_tiny_model

pytestmark = pytest.mark.skipif(not HAVE_SHARED, reason="../shared/data is absent: the tiny model needs it")

NODE_KEY = "sk-node-0123456789abcdef"
SYSTEM = "请记录下你所听到的语音内容。"  # the built-in prompts' system prompt
EMOTION_Q = ("Listen to the speaker's voice. Which emotion does it express: neutral, happy, sad, "
             "angry, fearful, surprised, disgusted or anxious? Answer with one word.")
EMOTIONS = ["neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted", "anxious"]


class Upstream:
    """A proxy in front of the inference node that answers 503, drops connections or answers 400
    on demand, records what it got, and can go down and come back on the same port."""

    def __init__(self, target, port=0):
        self.target, self.fail, self.mode, self.posts, self.auth = target, 0, "503", 0, []
        self.reject = False
        self.strip_logprobs = False  # act as a backend that gives no logprobs
        self.fake_top = None  # [(token, logprob)]: one-token answers get these top_logprobs
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self, method, body=None):
                r = requests.request(method, up.target + self.path, data=body, timeout=120 * SLOW,
                                     headers={k: v for k, v in self.headers.items()
                                              if k.lower() in ("authorization", "content-type")})
                content = r.content
                if up.strip_logprobs and method == "POST":
                    content = strip_logprobs(content)
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self):
                self.forward("GET")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                up.posts += 1
                up.auth.append(self.headers.get("Authorization"))
                if up.reject:
                    return self.answer(400, {"error": {"code": "invalid_argument",
                                                       "message": "the prompt does not fit"}})
                if up.fake_top and json.loads(body).get("max_tokens") == 1:
                    return self.stream(fake_one_token_answer(up.fake_top))
                if up.fail > 0:
                    up.fail -= 1
                    if up.mode == "close":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    return self.answer(503, {"error": {"code": "overloaded", "message": "busy"}})
                self.forward("POST", body)

            def stream(self, data):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.handler = Handler
        self.start(port)

    class Quiet(ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # the connections dropped on purpose

    def start(self, port):
        self.httpd = self.Quiet(("127.0.0.1", port), self.handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def down(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def up(self):
        self.start(self.port)


def strip_logprobs(sse):
    """An SSE answer with every choice's logprobs set to null."""
    out = []
    for line in sse.decode().split("\n"):
        if line.startswith("data: {"):
            j = json.loads(line[6:])
            for c in j.get("choices", []):
                c["logprobs"] = None
            line = "data: " + json.dumps(j)
        out.append(line)
    return "\n".join(out).encode()


def fake_one_token_answer(top):
    """A streamed one-token answer with the given top_logprobs, in the OpenAI/vLLM shape."""
    def entry(tok, lp):
        return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                            "logprobs": None, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"content": top[0][0]},
                            "logprobs": {"content": [dict(entry(*top[0]),
                                                          top_logprobs=[entry(*t) for t in top])]},
                            "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]},
              {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51}}]
    return "".join("data: %s\n\n" % json.dumps(c) for c in chunks).encode() + b"data: [DONE]\n\n"


def expected_first_token(top, labels):
    floor = min(lp for _, lp in top)
    lp = []
    for label in labels:
        cands = [(len(t), l) for t, l in top if t and label.startswith(t)]
        lp.append(max(cands)[1] if cands else floor)
    m = max(lp)
    z = sum(math.exp(x - m) for x in lp)
    return {l: math.exp(x - m) / z for l, x in zip(labels, lp)}


class Gateway(Server):
    """`stepaudio serve --backend URL` (no --model)."""

    def start(self):
        log = open(os.path.join(self.workdir, "serve.log"), "ab")
        self.proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", "0",
                                      "--db", self.db] + self.args,
                                     stdout=subprocess.PIPE, stderr=log)
        line = self.proc.stdout.readline().decode()
        assert "listening on" in line, self.log()[-2000:]
        self.base = line.strip().split("listening on ")[1]
        deadline = time.time() + 30 * SLOW
        while self.wait_ready and self.get("/readyz").status_code != 200:
            assert time.time() < deadline, "gateway never ready: " + self.log()[-2000:]
            time.sleep(0.05)
        return self


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    d = tmp_path_factory.mktemp("remote_node")
    tiny = make_tiny_model(d / "tiny")
    (d / "keys.txt").write_text(NODE_KEY + "\n")
    # Sync requests wait for their answer (not 202) also on a slow sanitized build.
    with Server(tiny, d, "--api-keys", d / "keys.txt", "--request-timeout", "300",
                key=NODE_KEY) as s:
        s.model_id = s.get("/v1/models").json()["data"][0]["id"]
        yield s


@pytest.fixture(scope="module")
def upstream(node):
    u = Upstream(node.base)
    yield u
    u.down()


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    d = tmp_path_factory.mktemp("remote_gateway")
    with Gateway("", d, "--backend", "openai://127.0.0.1:%d/v1" % upstream.port,
                 "--backend-key", NODE_KEY, "--backend-retries", "3",
                 "--backend-cooldown", "1", "--request-timeout", "300") as g:
        yield g


@pytest.fixture(scope="module")
def local_result(node):
    """The inference node's own answer for the recording (computed once)."""
    r = run_task(node, "transcribe_and_summarize")
    assert r.status_code == 200, r.text
    return r.json()


def run_task(server, task, **extra):
    data = {"task": task, "cache": "false", "target_length": "12"}
    data.update(extra)
    return server.post("/transcribe-and-summarize", data=data,
                       files={"file": ("a.wav", open(SPEECH_WAV, "rb").read(), "audio/wav")})


def first_token_scores(node, question, labels):
    """What docs/REMOTE.md says the gateway reports: each label's first token among the node's
    top_logprobs of a one-token answer (longest listed prefix; absent: the least listed)."""
    audio = base64.b64encode(open(SPEECH_WAV, "rb").read()).decode()
    r = node.post("/v1/chat/completions", json={
        "messages": [{"role": "system", "content": SYSTEM},
                     {"role": "human", "content": [{"type": "input_audio",
                                                    "input_audio": {"data": audio, "format": "wav"}}]},
                     {"role": "human", "content": question}],
        "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 20})
    assert r.status_code == 200, r.text
    top = r.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert len(top) == 20
    floor = min(t["logprob"] for t in top)
    lp = []
    for label in labels:
        best, best_len = floor, 0
        for t in top:
            b = bytes(t["bytes"])
            if b and len(b) > best_len and label.encode().startswith(b):
                best, best_len = t["logprob"], len(b)
        lp.append(best)
    m = max(lp)
    z = sum(math.exp(x - m) for x in lp)
    return {l: math.exp(x - m) / z for l, x in zip(labels, lp)}


def test_gateway_equals_inference_node(node, gateway, local_result):
    assert gateway.get("/v1/models").json()["data"][0]["id"] == node.model_id
    remote = run_task(gateway, "transcribe_and_summarize")
    assert remote.status_code == 200, remote.text
    a, b = local_result, remote.json()
    assert a["transcription"] and b["transcription"] == a["transcription"]
    assert [s["text"] for s in b["segments"]] == [s["text"] for s in a["segments"]]
    assert b["confidence"] == pytest.approx(a["confidence"], rel=1e-6)
    assert b["tone"] == a["tone"]
    assert b["summary"] == a["summary"]
    assert b["model"] == a["model"] == node.model_id
    assert a["inference"] == {"backend": "local", "label_scoring": "full_answer",
                              "confidence_measured": True}
    assert b["inference"] == {"backend": "remote", "label_scoring": "first_token",
                              "confidence_measured": True}
    want = first_token_scores(node, EMOTION_Q, EMOTIONS)
    for label, p in want.items():
        assert b["emotion"]["scores"][label] == pytest.approx(p, abs=1e-9)
    # The tiny random model rarely lists a label's first token among its top 20: the scores may
    # all tie at the floor (the unit tests check the scoring with listed labels). Ties: any of them.
    assert want[b["emotion"]["label"]] == pytest.approx(max(want.values()), abs=1e-12)
    assert sum(b["urgency"]["scores"].values()) == pytest.approx(1.0)


def test_backend_without_logprobs_falls_back(upstream, gateway, local_result):
    local = local_result
    upstream.strip_logprobs = True
    try:
        r = run_task(gateway, "transcribe_and_summarize", language="en")
    finally:
        upstream.strip_logprobs = False
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["transcription"] == local["transcription"]  # the text is the same
    assert b["inference"] == {"backend": "remote", "label_scoring": "one_hot",
                              "confidence_measured": False}
    assert b["confidence"] == 0
    for name in ("emotion", "urgency"):
        scores = b[name]["scores"]
        assert sorted(scores.values()) == [0.0] * (len(scores) - 1) + [1.0], scores
        assert scores[b[name]["label"] if name == "emotion" else b[name]["level"]] == 1.0


def test_labels_scored_from_the_first_tokens_top_logprobs(upstream, gateway):
    # Listed first tokens: "med" (medium; "m" also begins it, the longer one counts), "hi" (high),
    # "sad", "ang" (angry, not anxious), "neutral"; the other labels take the floor (-6).
    top = [("med", -0.3), ("sad", -0.7), ("ang", -1.0), ("low", -1.2), ("neutral", -1.5),
           ("hi", -2.0), ("m", -2.5), ("x", -6.0)]
    upstream.fake_top = top
    try:
        r = run_task(gateway, "analyze")
    finally:
        upstream.fake_top = None
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["inference"]["label_scoring"] == "first_token"
    urgency = expected_first_token(top, ["low", "medium", "high"])
    emotion = expected_first_token(top, EMOTIONS)
    assert b["urgency"]["scores"] == pytest.approx(urgency, abs=1e-9)
    assert b["emotion"]["scores"] == pytest.approx(emotion, abs=1e-9)
    assert b["urgency"]["level"] == "medium" and b["emotion"]["label"] == "sad"
    assert b["urgency"]["score"] == pytest.approx(urgency["medium"] / 2 + urgency["high"], abs=1e-9)
    assert b["urgency"]["reason"] and b["tone"]  # generated by the node behind the proxy


def test_job_events_stream_the_remote_transcript(gateway, local_result):
    job = gateway.post("/v1/jobs", files={"file": open(SPEECH_WAV, "rb")},
                       data={"cache": "false", "task": "transcribe"}).json()
    events, cur = [], {}
    with gateway.get("/v1/jobs/%s/events" % job["id"], stream=True) as r:
        assert r.status_code == 200
        for raw in r.iter_lines():
            raw = raw.decode()
            if raw == "":
                events.append(cur) if cur else None
                cur = {}
                continue
            k, _, v = raw.partition(": ")
            cur[k] = v
    types = [e["event"] for e in events]
    assert types[-1] == "result", types
    partial = "".join(json.loads(e["data"])["text"] for e in events if e["event"] == "partial")
    result = json.loads(events[-1]["data"])
    final = result["transcription"]
    assert final == local_result["transcription"]
    # The remote's SSE deltas, passed on as they came: the transcript itself, unless the guard
    # cut a loop (the final text keeps one copy of it; both start alike).
    if any(s["repetition_stopped"] for s in result["segments"]):
        assert partial.startswith(final[:20]) or final.startswith(partial[:20])
    else:
        assert partial == final


def test_chat_completions_forwarded(node, gateway):
    audio = base64.b64encode(open(SPEECH_WAV, "rb").read()).decode()
    body = {"messages": [{"role": "system", "content": SYSTEM},
                         {"role": "human", "content": [{"type": "input_audio",
                                                        "input_audio": {"data": audio, "format": "wav"}}]}],
            "max_tokens": 12, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    a = node.post("/v1/chat/completions", json=body).json()
    b = gateway.post("/v1/chat/completions", json=body).json()
    (a, a_usage), (b, b_usage) = (a["choices"][0], a["usage"]), (b["choices"][0], b["usage"])
    assert b["message"]["content"] == a["message"]["content"]
    assert b["finish_reason"] == a["finish_reason"]
    assert b_usage["completion_tokens"] == a_usage["completion_tokens"] > 0
    assert [t["logprob"] for t in b["logprobs"]["content"]] == \
        pytest.approx([t["logprob"] for t in a["logprobs"]["content"]], abs=1e-9)
    r = gateway.post("/v1/chat/completions", json=dict(body, stream=True), stream=True)
    text = ""
    for line in r.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            for c in json.loads(line[6:])["choices"]:
                text += c["delta"].get("content") or ""
    assert text == a["message"]["content"]


def test_retries_on_503_and_dropped_connections_but_not_on_4xx(upstream, gateway):
    for mode in ("503", "close"):
        upstream.mode, upstream.fail, before = mode, 2, upstream.posts
        r = run_task(gateway, "transcribe", language=mode == "503" and "en" or "de")
        assert r.status_code == 200, (mode, r.text)
        assert upstream.posts - before == 3, mode  # two failures, then the answer
    assert set(upstream.auth) == {"Bearer " + NODE_KEY}  # --backend-key on every request
    upstream.reject, before = True, upstream.posts
    try:
        r = run_task(gateway, "transcribe", language="fr")
    finally:
        upstream.reject = False
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_argument" and "the prompt does not fit" in err["message"]
    assert upstream.posts - before == 1  # a 4xx is not retried


def test_circuit_breaker_fails_fast_and_recovers(upstream, gateway):
    upstream.down()
    try:
        codes = []
        for i in range(3):
            t0 = time.time()
            r = run_task(gateway, "transcribe", language="e" + "abc"[i])
            codes.append((r.status_code, r.json()["error"]["code"], time.time() - t0))
        assert all(c[:2] == (503, "backend_unavailable") for c in codes), codes
        assert codes[-1][2] < 1.0 * SLOW, codes  # open: refused at once, no retries
        assert "circuit breaker" in r.json()["error"]["message"]
    finally:
        upstream.up()
    time.sleep(1.2)  # the cooldown: the next call is the half-open probe
    # Every question of the job goes out at once: the one probe goes through, the others wait
    # for its verdict, and the whole job succeeds.
    r = run_task(gateway, "transcribe_and_summarize", language="it")
    assert r.status_code == 200, r.text
    assert r.json()["transcription"]


def test_gateway_waits_for_an_unreachable_backend(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    g = Gateway("", tmp_path, "--backend", "openai://127.0.0.1:%d" % port)
    g.wait_ready = False
    with g:
        r = g.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert "127.0.0.1:%d" % port in r.json()["error"]["message"]
        r = run_task(g, "transcribe")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_bad_backend_url_refused_at_start(tmp_path):
    for args, words in [(["--backend", "ftp://127.0.0.1:1"], "scheme"),
                        (["--backend", "openai://u:p@127.0.0.1:1"], "--backend-key"),
                        (["--backend", "openai://127.0.0.1:1", "--model", str(tmp_path)], "exclude")]:
        p = subprocess.run([BIN, "serve", "--port", "0", "--db", str(tmp_path / "x.db")] + args,
                           capture_output=True, timeout=30 * SLOW)
        assert p.returncode == 2, (args, p.stderr)
        assert words in p.stderr.decode(), (args, p.stderr)
