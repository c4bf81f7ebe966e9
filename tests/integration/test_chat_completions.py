"""POST /v1/chat/completions (issue 16): a real `stepaudio serve` on 127.0.0.1 with the tiny random
checkpoint, driven with the JSON StepFun's vLLM client sends for Step-Audio 2 (system text, a human
turn of base64 `input_audio` parts).

The answers are checked against an independent path: `stepaudio run` (the raw generation, same
system prompt, same recording, greedy) must produce the same token ids and text, and every
logprob must be log_softmax of the logits `run --dump` wrote (recomputed here in numpy), with the
top alternatives in order. Streams must add up to the plain answer and end with [DONE]; stop
strings, max_tokens, the template switches (open assistant turn, continue_final_message, eot),
the queue (429 + Retry-After), cancellation on disconnect, auth, metrics and every kind of bad
input (400/404/413/415 in the one error shape) are covered too.
"""
import base64
import io
import json
import os
import socket
import subprocess
import time
import urllib.parse
import wave

import pytest

from server_harness import BIN, HAVE_SHARED, ROOT, SLOW, SPEECH_WAV, Server, make_tiny_model

pytestmark = pytest.mark.skipif(not HAVE_SHARED, reason="../shared/data is absent: the tiny model needs it")

KEY = "sk-chat-test-0123456789"
SYSTEM = "You are a helpful assistant."
MAX_TOKENS = 24
ROUTE = "POST /v1/chat/completions"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny_chat"))


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve_chat")
    keys = d / "keys.txt"
    keys.write_text(KEY + "\n")
    # One slot and one waiting place make the queue test cheap; 40 s of audio in all per request.
    with Server(tiny, d, "--api-keys", str(keys), "--parallel", "1", "--max-queue", "1",
                "--max-audio-seconds", "40", key=KEY) as s:
        s.model_id = s.get("/v1/models").json()["data"][0]["id"]
        yield s


@pytest.fixture(scope="module")
def openapi():
    with open(os.path.join(ROOT, "docs", "openapi.json")) as f:
        return json.load(f)


def check_schema(openapi, name, instance):
    import jsonschema
    schema = {"$ref": "#/components/schemas/" + name, "components": openapi["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


def b64(data):
    return base64.b64encode(data).decode()


def wav_bytes(seconds, rate=16000, freq=220.0):
    import numpy as np
    t = np.arange(int(seconds * rate)) / rate
    x = (0.2 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(x.tobytes())
    return buf.getvalue()


SPEECH = open(SPEECH_WAV, "rb").read() if HAVE_SHARED else b""


def audio_part(data=None):
    return {"type": "input_audio", "input_audio": {"data": b64(SPEECH if data is None else data),
                                                   "format": "wav"}}


def asr_body(server, **extra):
    body = {"model": server.model_id,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "human", "content": [audio_part()]}],
            "temperature": 0, "max_tokens": MAX_TOKENS}
    body.update(extra)
    return body


def chat(server, body, **kw):
    return server.post("/v1/chat/completions", json=body, **kw)


def sse_events(r):
    """The data payloads of an SSE answer, in order ('[DONE]' kept as a string)."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    out = []
    for line in r.content.decode("utf-8").split("\n"):
        if line.startswith("data: "):
            payload = line[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
        else:
            assert line == "", line  # data lines and blank separators only
    return out


def log_softmax(x):
    import numpy as np
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def token_id(entry):
    assert entry["token"].startswith("token_id:"), entry
    return int(entry["token"][len("token_id:"):])


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """`stepaudio run` (raw generation) on the same recording and system prompt, with its dump."""
    import numpy as np
    d = tmp_path_factory.mktemp("run_dump")
    p = subprocess.run([BIN, "run", "--model", tiny, "--audio", SPEECH_WAV, "--prompt", SYSTEM,
                        "--max-tokens", str(MAX_TOKENS), "--dump", str(d)],
                       capture_output=True, timeout=120 * SLOW)
    assert p.returncode == 0, p.stderr.decode()
    logits = [np.load(d / "logits_prefill.npy")] + [np.load(d / ("logits_step_%d.npy" % k))
                                                     for k in (1, 2, 3)
                                                     if (d / ("logits_step_%d.npy" % k)).exists()]
    return {"text": p.stdout.decode()[:-1],  # run prints the text and a newline
            "tokens": np.load(d / "tokens.npy").tolist(),
            "prompt_ids": np.load(d / "prompt_ids.npy"),
            "prompt_len": len(np.load(d / "prompt_ids.npy")),
            "logits": logits}


@pytest.fixture(scope="module")
def greedy(server, reference):
    r = chat(server, asr_body(server, logprobs=True, top_logprobs=5, return_tokens_as_token_ids=True))
    assert r.status_code == 200, r.text
    return r.json()


def test_same_answer_as_stepaudio_run(server, reference, greedy, openapi):
    check_schema(openapi, "ChatCompletion", greedy)
    assert greedy["object"] == "chat.completion" and greedy["id"].startswith("chatcmpl-")
    assert greedy["model"] == server.model_id
    choice = greedy["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    tokens = reference["tokens"]
    eot_last = len(tokens) < MAX_TOKENS  # run stopped early: on <|EOT|>
    # The same ids (logprobs list every generated id but a final <|EOT|>), the same text.
    assert [token_id(e) for e in choice["logprobs"]["content"]] == tokens[:len(tokens) - eot_last]
    assert choice["message"]["content"] == reference["text"]
    assert choice["finish_reason"] == ("stop" if eot_last else "length")
    u = greedy["usage"]
    assert u["prompt_tokens"] == reference["prompt_len"]
    assert u["completion_tokens"] == len(tokens)
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"]["audio_tokens"] > 0


def test_logprobs_are_log_softmax_of_the_logits(greedy, reference):
    import numpy as np
    content = greedy["choices"][0]["logprobs"]["content"]
    assert len(reference["logits"]) >= 2 and len(content) >= len(reference["logits"])
    for k, logits in enumerate(reference["logits"]):
        ls = log_softmax(logits)
        e = content[k]
        assert e["logprob"] == pytest.approx(ls[token_id(e)], abs=1e-4)
        top = e["top_logprobs"]
        assert len(top) == 5
        want = np.argsort(-ls, kind="stable")[:5]
        assert [token_id(t) for t in top] == want.tolist()
        for t in top:
            assert t["logprob"] == pytest.approx(ls[token_id(t)], abs=1e-4)
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert token_id(top[0]) == token_id(e)  # greedy chose the most probable id
    for e in content:  # bytes are the token's bytes; token text is their (lossy) decoding
        assert all(0 <= b < 256 for b in e["bytes"])
        assert e["logprob"] <= 0


def test_token_text_and_bytes(server, greedy):
    r = chat(server, asr_body(server, logprobs=True, max_tokens=8))
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert content[0]["top_logprobs"] == []  # logprobs without top_logprobs
    ids = [token_id(e) for e in greedy["choices"][0]["logprobs"]["content"][:len(content)]]
    assert len(content) == len(ids)
    for e in content:
        assert bytes(e["bytes"]).decode("utf-8", errors="replace") == e["token"]


def test_repetition_penalty_same_as_run(server, tiny, reference, tmp_path):
    """The penalty (HF/vLLM definition, prompt ids included) gives the ids `run` gives with it,
    and its first choice is the argmax of the prefill logits penalized here by hand."""
    import numpy as np
    p = subprocess.run([BIN, "run", "--model", tiny, "--audio", SPEECH_WAV, "--prompt", SYSTEM,
                        "--max-tokens", "48", "--repetition-penalty", "1.3", "--dump", str(tmp_path)],
                       capture_output=True, timeout=120 * SLOW)
    assert p.returncode == 0, p.stderr.decode()
    want = np.load(tmp_path / "tokens.npy").tolist()

    def ids(penalty):
        r = chat(server, asr_body(server, max_tokens=48, repetition_penalty=penalty, logprobs=True,
                                  return_tokens_as_token_ids=True))
        assert r.status_code == 200, r.text
        return [token_id(e) for e in r.json()["choices"][0]["logprobs"]["content"]]
    got = ids(1.3)
    assert got == want[:len(got)] and len(want) - len(got) in (0, 1)  # a final <|EOT|> has no entry
    # A penalty below 1 boosts every prompt id: logit / p when positive, logit * p otherwise.
    logits = reference["logits"][0].astype(np.float64)
    seen = np.unique(reference["prompt_ids"])
    penalized = logits.copy()
    penalized[seen] = np.where(logits[seen] > 0, logits[seen] / 0.05, logits[seen] * 0.05)
    assert int(np.argmax(penalized)) != int(np.argmax(logits))  # so the check below means something
    r = chat(server, asr_body(server, max_tokens=1, repetition_penalty=0.05, logprobs=True,
                              return_tokens_as_token_ids=True))
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["logprobs"]["content"]
    with open(os.path.join(tiny, "tokenizer.json")) as f:  # <|EOT|> (a prompt id) has no entry
        eot = next(t["id"] for t in json.load(f)["added_tokens"] if t["content"] == "<|EOT|>")
    first = token_id(content[0]) if content else eot
    assert first == int(np.argmax(penalized))


def test_stream_adds_up_to_the_answer(server, greedy, openapi):
    r = chat(server, asr_body(server, stream=True, stream_options={"include_usage": True},
                              logprobs=True, top_logprobs=5, return_tokens_as_token_ids=True))
    ev = sse_events(r)
    assert ev[-1] == "[DONE]" and "[DONE]" not in ev[:-1]
    chunks = ev[:-1]
    for c in chunks:
        check_schema(openapi, "ChatCompletionChunk", c)
        assert c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"]
        assert c["model"] == server.model_id
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"] == greedy["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])
    final = chunks[-2]["choices"][0]
    assert final["finish_reason"] == greedy["choices"][0]["finish_reason"]
    assert final["delta"] == {}
    body = [c["choices"][0] for c in chunks[1:-2]]
    assert body and all(b["finish_reason"] is None for b in body)
    assert "".join(b["delta"]["content"] for b in body) == greedy["choices"][0]["message"]["content"]
    streamed = [e for b in body for e in b["logprobs"]["content"]]
    assert streamed == greedy["choices"][0]["logprobs"]["content"]
    for b in body:  # each piece is whole characters: it encodes as UTF-8 on its own
        b["delta"]["content"].encode("utf-8")


def test_stream_without_usage(server):
    ev = sse_events(chat(server, asr_body(server, stream=True, max_tokens=3)))
    assert ev[-1] == "[DONE]"
    assert all("usage" not in c for c in ev[:-1])
    assert ev[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_max_tokens_gives_length(server, reference):
    r = chat(server, asr_body(server, max_completion_tokens=2))
    assert r.status_code == 200, r.text
    j = r.json()
    tokens = reference["tokens"]
    eot = tokens[-1] if len(tokens) < MAX_TOKENS else None
    if eot in tokens[:2]:  # this seeded model would stop on its own first
        assert j["usage"]["completion_tokens"] == tokens.index(eot) + 1
        assert j["choices"][0]["finish_reason"] == "stop"
    else:
        assert j["usage"]["completion_tokens"] == 2
        assert j["choices"][0]["finish_reason"] == "length"


def test_stop_string(server, greedy):
    text = greedy["choices"][0]["message"]["content"]
    i = next((i for i in range(3, len(text) - 2) if "\ufffd" not in text[i:i + 2]), None)
    if i is None:  # not with this seeded model and build: it writes 24 tokens of text
        pytest.skip("the greedy answer is too short to cut with a stop string: %r" % text)
    stop = text[i:i + 2]
    want = text[:text.index(stop)]
    r = chat(server, asr_body(server, stop=["never-in-this-text", stop]))
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    assert c["message"]["content"] == want
    assert c["finish_reason"] == "stop" and c["stop_reason"] == stop
    ev = sse_events(chat(server, asr_body(server, stop=stop, stream=True)))
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in ev[:-1]) == want
    assert ev[-2]["choices"][0]["finish_reason"] == "stop"


def test_open_assistant_turn_and_continuation(server, greedy):
    base = greedy["usage"]["prompt_tokens"]
    # StepFun's client ends with {"role": "assistant", "content": None}: the same prompt.
    body = asr_body(server)
    body["messages"].append({"role": "assistant", "content": None})
    j = chat(server, body).json()
    assert j["usage"]["prompt_tokens"] == base
    assert j["choices"][0]["message"]["content"] == greedy["choices"][0]["message"]["content"]
    # An assistant prefix continued: eot false (StepFun's client) or continue_final_message (vLLM).
    body = asr_body(server)
    body["messages"].append({"role": "assistant", "content": "Sure", "eot": False})
    a = chat(server, body).json()
    body["messages"][-1].pop("eot")
    b = chat(server, dict(body, continue_final_message=True, add_generation_prompt=False)).json()
    assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"] > base
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    # A closed assistant turn gets a new generation prompt after it.
    c = chat(server, body).json()
    # <|EOT|>, then "<|BOT|>assistant\n" (3 ids)
    assert c["usage"]["prompt_tokens"] == a["usage"]["prompt_tokens"] + 1 + 3


def test_text_only_chat(server, openapi):
    r = chat(server, {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5,
                      "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.05, "seed": 7})
    assert r.status_code == 200, r.text
    j = r.json()
    check_schema(openapi, "ChatCompletion", j)
    assert isinstance(j["choices"][0]["message"]["content"], str)
    assert j["usage"]["prompt_tokens_details"]["audio_tokens"] == 0
    assert j["choices"][0]["logprobs"] is None
    again = chat(server, {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5,
                          "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.05, "seed": 7})
    assert again.json()["choices"] == j["choices"]  # the same seed samples the same answer


def error_of(r, status, code):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert e["code"] == code and isinstance(e["message"], str) and e["message"]
    return e["message"]


def with_messages(server, messages, **extra):
    return dict({"model": server.model_id, "messages": messages}, **extra)


def human(*parts):
    return [{"role": "human", "content": list(parts)}]


BAD_INPUTS = [
    # (name, body builder, status, code, message fragment)
    ("bad base64", lambda s: with_messages(s, human({"type": "input_audio", "input_audio": {
        "data": "@@not base64@@", "format": "wav"}})), 400, "invalid_argument", "base64"),
    ("truncated base64", lambda s: with_messages(s, human({"type": "input_audio", "input_audio": {
        "data": "QUJDR", "format": "wav"}})), 400, "invalid_argument", "base64"),
    ("not audio", lambda s: with_messages(s, human(audio_part(b"this is plain text, not audio" * 40))),
     400, "invalid_audio", "content[0]"),
    ("part over 25 s", lambda s: with_messages(s, human(audio_part(wav_bytes(25.5)))), 400,
     "invalid_audio", "25 s"),
    ("audio_url part", lambda s: with_messages(s, human({"type": "audio_url",
                                                         "audio_url": {"url": "http://x/a.wav"}})),
     400, "invalid_argument", "input_audio"),
    ("image part", lambda s: with_messages(s, human({"type": "image_url", "image_url": {"url": "x"}})),
     400, "invalid_argument", "image_url"),
    ("unknown role", lambda s: with_messages(s, [{"role": "tool", "content": "x"}]), 400,
     "invalid_argument", "role"),
    ("no messages", lambda s: with_messages(s, []), 400, "invalid_argument", "messages"),
    ("null content mid-way", lambda s: with_messages(s, [{"role": "assistant", "content": None},
                                                         {"role": "user", "content": "hi"}]),
     400, "invalid_argument", "content"),
    ("n=2", lambda s: with_messages(s, human(), n=2), 400, "invalid_argument", "n must be 1"),
    ("top_logprobs=50", lambda s: with_messages(s, human(), logprobs=True, top_logprobs=50), 400,
     "invalid_argument", "top_logprobs"),
    ("top_logprobs alone", lambda s: with_messages(s, human(), top_logprobs=2), 400,
     "invalid_argument", "logprobs"),
    ("temperature 3", lambda s: with_messages(s, human(), temperature=3), 400, "invalid_argument",
     "temperature"),
    ("temperature as text", lambda s: with_messages(s, human(), temperature="0.5"), 400,
     "invalid_argument", "temperature"),
    ("max_tokens 0", lambda s: with_messages(s, human(), max_tokens=0), 400, "invalid_argument",
     "max_tokens"),
    ("stream_options alone", lambda s: with_messages(s, human(), stream_options={"include_usage": True}),
     400, "invalid_argument", "stream"),
    ("frequency_penalty", lambda s: with_messages(s, human(), frequency_penalty=0.5), 400,
     "invalid_argument", "frequency_penalty"),
    ("tools", lambda s: with_messages(s, human(), tools=[{"type": "function"}]), 400,
     "invalid_argument", "tools"),
    ("max_tokens over the context", lambda s: with_messages(s, human(), max_tokens=1 << 20), 400,
     "invalid_argument", "context"),
    ("unknown model", lambda s: dict(with_messages(s, human()), model="gpt-4o"), 404,
     "model_not_found", "gpt-4o"),
    ("audio over --max-audio-seconds", lambda s: with_messages(s, human(
        audio_part(wav_bytes(21)), audio_part(wav_bytes(21)))), 413, "too_long", "max-audio-seconds"),
]


@pytest.mark.parametrize("name,build,status,code,fragment", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(server, openapi, name, build, status, code, fragment):
    r = chat(server, build(server))
    assert r.status_code == status, r.text
    check_schema(openapi, "Error", r.json())
    assert fragment in error_of(r, status, code)


def test_malformed_json_and_media_type(server, openapi):
    r = server.post("/v1/chat/completions", data=b'{"messages": [', headers={
        "Content-Type": "application/json"})
    check_schema(openapi, "Error", r.json())
    error_of(r, 400, "invalid_json")
    r = server.post("/v1/chat/completions", data=b'{"messages": []}', headers={
        "Content-Type": "text/plain"})
    error_of(r, 415, "unsupported_media")


def test_auth_required(server):
    body = asr_body(server)
    error_of(server.post("/v1/chat/completions", json=body, key=""), 401, "unauthorized")
    error_of(server.post("/v1/chat/completions", json=body, key="sk-wrong"), 401, "unauthorized")


def raw_stream(server, body):
    """Sends a streaming chat request on a plain socket and returns the socket (unread)."""
    u = urllib.parse.urlparse(server.base)
    s = socket.create_connection((u.hostname, u.port), timeout=30 * SLOW)
    data = json.dumps(body).encode()
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (KEY, len(data))).encode() + data)
    return s


def read_until(s, needle):
    got = b""
    while needle not in got:
        piece = s.recv(65536)
        assert piece, "connection closed before %r: %r" % (needle, got[-300:])
        got += piece
    return got


def metric(server, name):
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_metric(server, name, value, timeout):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if metric(server, name) == value:
            return True
        time.sleep(0.05)
    return False


def test_queue_full_and_disconnect_cancels(server):
    # A long generation (3000 tokens: seconds on the tiny model) holds the one slot and a second
    # one waits in the one queue place. A random model could still end one early on <|EOT|> (about
    # 3000 / 150k per try, depending on the build's rounding): then another prompt is tried.
    for attempt in range(4):
        long_body = {"messages": [{"role": "user", "content": "Count to a million, %d." % attempt}],
                     "max_tokens": 3000, "temperature": 0, "stream": True}
        a = raw_stream(server, long_body)
        b = None
        try:
            assert b"data: " in read_until(a, b"data: ")
            b = raw_stream(server, long_body)
            if not wait_metric(server, "stepaudio_backend_queued", 1, 10):
                continue  # the first one ended by itself: try another prompt
            # The slot is busy and the queue full: a third request is refused at once.
            r = chat(server, asr_body(server))
            error_of(r, 429, "queue_full")
            assert int(r.headers["Retry-After"]) >= 1
            # Closing the first stream cancels its generation: the waiting one starts right away.
            a.close()
            t0 = time.time()
            assert b"data: " in read_until(b, b"data: ")
            assert time.time() - t0 < 5 * SLOW
            break
        finally:
            a.close()
            if b:
                b.close()
            assert wait_metric(server, "stepaudio_backend_running", 0, 10)
            assert wait_metric(server, "stepaudio_backend_queued", 0, 10)
    else:
        pytest.fail("every long generation ended early")


def test_metrics_count_the_route(server):
    text = server.get("/metrics").text
    assert 'route="%s",status="200"' % ROUTE in text or 'status="200",route="%s"' % ROUTE in text
    assert 'route="%s"' % ROUTE in text
