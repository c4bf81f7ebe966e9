"""Hostile input against a real `stepaudio serve` (127.0.0.1 only, tiny random model).

Every case asserts the exact status and error code of docs/API.md ({"error": {"code", "message"}})
and then that the server is still alive (GET /healthz answers 200 at once):

- bad JSON and bad options (400 invalid_json / invalid_argument), wrong or missing media (415, 400),
  undecodable, empty, lying and bomb recordings (415, 422, 200, 413 too_long with bounded RSS);
- transport abuse: bodies over --max-upload-mb (Content-Length and endless chunked: 413, the server
  stops reading), headers over 16 KiB (431), broken multipart (400 bad_multipart), slow-loris and idle
  connections (closed after --read-timeout while others are served), clients that leave mid-upload
  (no job) or mid-generation (the job is canceled);
- job routes: DELETE of a queued job, DELETE twice, unknown job, path and method; queue overflow
  (429 queue_full with Retry-After).

Plus the audio_url / webhook_url checks of netns_hostile_urls.py, run inside a private network
namespace (only lo) so that nothing can leave the machine whatever the server does.

Most cases share one server (module-scoped); each test that counts jobs uses its own API key, so it
sees only its own jobs.
"""
import json
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import wave

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import server_harness as harness  # noqa: E402
from server_harness import SLOW, Server  # noqa: E402

pytestmark = pytest.mark.skipif(not harness.HAVE_SHARED,
                                reason="../shared/data is absent: the tiny model needs the real vocabulary")

READ_TIMEOUT = int(2 * SLOW)  # --read-timeout of the main server
KEYS = ["k-main", "k-upload", "k-gen", "k-del"]


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return harness.make_tiny_model(tmp_path_factory.mktemp("tiny_hostile"))


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """120 s of speech-like bursts (3.8 MB): the tiny model needs several seconds for it."""
    return open(harness.write_wav(tmp_path_factory.mktemp("wav") / "long.wav", 120), "rb").read()


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    return open(harness.write_wav(tmp_path_factory.mktemp("wav") / "short.wav", 2), "rb").read()


@pytest.fixture(scope="module")
def srv(tiny, tmp_path_factory):
    wd = tmp_path_factory.mktemp("srv_main")
    keys = wd / "keys.txt"
    keys.write_text("\n".join(KEYS) + "\n")
    with Server(tiny, wd, "--api-keys", keys, "--max-audio-seconds", 600, "--parallel", 1,
                "--read-timeout", READ_TIMEOUT, "--request-timeout", int(120 * SLOW),
                "--max-connections", 256, key="k-main") as s:
        yield s


@pytest.fixture(scope="module")
def small(tiny, tmp_path_factory):
    """A server that takes at most 1 MiB (+ 64 KiB multipart framing) per request."""
    wd = tmp_path_factory.mktemp("srv_small")
    with Server(tiny, wd, "--max-upload-mb", 1, "--read-timeout", int(10 * SLOW)) as s:
        yield s


# ----------------------------------------------------------------------------------------------
# helpers


def host_port(s):
    host, port = s.base.split("//")[1].rsplit(":", 1)
    return host, int(port)


def connect(s, timeout=10):
    sock = socket.create_connection(host_port(s), timeout=timeout * SLOW)
    return sock


def alive(s):
    """GET /healthz answers 200 quickly, and the process still runs."""
    assert s.proc.poll() is None, "the server exited: " + s.log()[-2000:]
    t0 = time.monotonic()
    r = s.get("/healthz", timeout=5)
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert took < 1.0 * SLOW, "healthz took %.2f s" % took


def expect_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def parse_response(data):
    """(status, headers dict lower-cased, body bytes) of one raw HTTP/1.1 answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def read_answer(sock, deadline):
    """Reads until the answer is complete (Content-Length) or the peer closes."""
    data = b""
    while time.monotonic() < deadline:
        if b"\r\n\r\n" in data:
            _, headers, body = parse_response(data)
            if "content-length" in headers and len(body) >= int(headers["content-length"]):
                break
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def raw_exchange(s, request, timeout=10):
    sock = connect(s)
    try:
        sock.sendall(request)
        data = read_answer(sock, time.monotonic() + timeout * SLOW)
    finally:
        sock.close()
    assert data, "no answer"
    return parse_response(data)


def closed_by_peer(sock, timeout):
    """True when the peer closes (EOF or reset) within timeout seconds; False if still open."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def post_json(s, body, path="/transcribe-and-summarize", **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return s.post(path, data=data, headers={"Content-Type": "application/json"}, **kw)


def wav_bytes(samples, rate=16000):
    import io
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples)
    return buf.getvalue()


def garbage(n, seed=1):
    return random.Random(seed).randbytes(n)


def rss_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def jobs_of(s, key):
    r = s.get("/v1/jobs", key=key, params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["data"]


# A URL that must never be fetched: if option validation were skipped, the fetch would be refused
# with forbidden_url (a different code), so the asserted code still catches it.
NEVER = "http://127.0.0.1:1/never.wav"


# ----------------------------------------------------------------------------------------------
# JSON and options


@pytest.mark.parametrize("body", [
    b'{"audio_url": ',
    b'{"audio_url": "http://x/a.wav",}',
    b'{"a": 1} trailing',
    b"{'audio_url': 'http://x/a.wav'}",
], ids=["truncated", "trailing-comma", "trailing-garbage", "single-quotes"])
def test_malformed_json(srv, body):
    expect_error(post_json(srv, body), 400, "invalid_json")
    alive(srv)


@pytest.mark.parametrize("kind", ["object", "array"])
def test_json_nested_100_deep(srv, kind):
    if kind == "object":
        body = '{"audio_url": "%s", "x": ' % NEVER + '{"a": ' * 100 + "1" + "}" * 100 + "}"
    else:
        body = '{"audio_url": "%s", "x": ' % NEVER + "[" * 100 + "1" + "]" * 100 + "}"
    expect_error(post_json(srv, body), 400, "invalid_json")
    alive(srv)


@pytest.mark.parametrize("body", ['[{"audio_url": "%s"}]' % NEVER, '"just a string"', "42", "null"],
                         ids=["array", "string", "number", "null"])
def test_json_body_not_an_object(srv, body):
    expect_error(post_json(srv, body), 400, "invalid_json")
    alive(srv)


@pytest.mark.parametrize("field,value", [
    ("task", "translate_to_klingon"),
    ("target_length", 0),
    ("target_length", "x"),
    ("target_length", 99999),
    ("target_length", 2.5),
    ("language", "english"),
    ("language", "EN"),
    ("cache", "yes"),
], ids=lambda v: str(v))
def test_bad_option(srv, field, value):
    expect_error(post_json(srv, {"audio_url": NEVER, field: value}), 400, "invalid_argument")
    # The same through the hosted shape and POST /v1/jobs.
    expect_error(post_json(srv, {"input": {"audio": NEVER, field: value}}, path="/v1/jobs"),
                 400, "invalid_argument")
    alive(srv)


def test_bad_option_in_query_of_raw_upload(srv, short_wav):
    for q in ({"target_length": "0"}, {"target_length": "x"}, {"target_length": "99999"},
              {"task": "nope"}, {"language": "english"}, {"cache": "maybe"}):
        r = srv.post("/transcribe-and-summarize", params=q, data=short_wav,
                     headers={"Content-Type": "audio/wav"})
        expect_error(r, 400, "invalid_argument")
    alive(srv)


def test_json_without_audio(srv):
    expect_error(post_json(srv, {"task": "transcribe"}), 400, "invalid_argument")
    alive(srv)


@pytest.mark.parametrize("case", ["json-body", "path", "query-option", "content-type", "method-path"])
def test_invalid_utf8_is_a_client_error(srv, case):
    auth = b"Host: x\r\nAuthorization: Bearer k-main\r\n"

    def post(target, ctype, body):
        return (b"POST " + target + b" HTTP/1.1\r\n" + auth + b"Content-Type: " + ctype +
                b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    req, status, code = {
        "json-body": (post(b"/transcribe-and-summarize", b"application/json", b"\xff\xfe not json"),
                      400, "invalid_json"),
        "path": (b"GET /\xff\xfe HTTP/1.1\r\n" + auth + b"\r\n", 404, "not_found"),
        "query-option": (post(b"/transcribe-and-summarize?task=%ff", b"audio/wav", b"abc"),
                         400, "invalid_argument"),
        "content-type": (post(b"/transcribe-and-summarize", b"text/\xff", b"abc"), 415, "unsupported_media"),
        "method-path": (b"PUT /v1/jobs/\xff HTTP/1.1\r\n" + auth + b"Content-Length: 0\r\n\r\n",
                        405, "method_not_allowed"),
    }[case]
    got_status, _, body = raw_exchange(srv, req)
    alive(srv)
    assert (got_status, json.loads(body)["error"]["code"]) == (status, code), body


def test_invalid_utf8_audio_url_in_multipart_does_not_kill_the_server(tiny, tmp_path):
    with Server(tiny, tmp_path) as s:
        body = (b'--BB\r\nContent-Disposition: form-data; name="audio_url"\r\n\r\n'
                b'ftp://\xff\xfe/x.wav\r\n--BB--\r\n')
        try:
            r = s.post("/transcribe-and-summarize", data=body, timeout=10,
                       headers={"Content-Type": "multipart/form-data; boundary=BB"})
        except Exception as e:  # the connection dies with the process
            time.sleep(0.3)
            pytest.fail("no answer (%s); server exit status %s" % (e, s.proc.poll()))
        time.sleep(0.3)
        alive(s)
        expect_error(r, 400, "invalid_url")


def test_invalid_utf8_webhook_url_in_multipart(tiny, tmp_path, short_wav):
    with Server(tiny, tmp_path) as s:
        body = (b'--BB\r\nContent-Disposition: form-data; name="webhook_url"\r\n\r\n'
                b'http://127.0.0.1:1/\xff\xfe\r\n'
                b'--BB\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' +
                short_wav + b"\r\n--BB--\r\n")
        r = s.post("/v1/jobs", data=body, params={"cache": "false"},
                   headers={"Content-Type": "multipart/form-data; boundary=BB"})
        if r.status_code == 202:
            job_id = r.json()["id"]
            s.delete("/v1/jobs/" + job_id)
            time.sleep(1.0)  # the webhook of the canceled job is attempted meanwhile
            assert s.proc.poll() is None, "the server died: " + s.log()[-600:]
            j = s.get("/v1/jobs/" + job_id)
            assert j.status_code == 200, j.text
        else:
            assert r.status_code == 400 and r.json()["error"]["code"] in ("invalid_url", "invalid_argument"), r.text
        lst = s.get("/v1/jobs")
        assert lst.status_code == 200, lst.text
        alive(s)


# ----------------------------------------------------------------------------------------------
# media and recordings


def test_wrong_content_type(srv, short_wav):
    r = srv.post("/transcribe-and-summarize", data=short_wav, headers={"Content-Type": "text/plain"})
    expect_error(r, 415, "unsupported_media")
    alive(srv)


@pytest.mark.parametrize("ctype", ["audio/wav", "application/json", None])
def test_empty_body(srv, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = srv.post("/transcribe-and-summarize", data=b"", headers=headers)
    expect_error(r, 400, "invalid_json" if ctype == "application/json" else "invalid_argument")
    alive(srv)


def test_random_bytes_are_unsupported_media(srv):
    r = srv.post("/transcribe-and-summarize", data=garbage(20000),
                 headers={"Content-Type": "audio/wav"})
    expect_error(r, 415, "unsupported_media")
    alive(srv)


def test_truncated_wav_header_plus_garbage(srv, short_wav):
    # RIFF/WAVE + "fmt " + its size, then garbage where the format fields should be: FFmpeg's WAV
    # demuxer is chosen but cannot open it, and an open failure is 415 (see the report on 415 vs
    # 422 for a recognised container with a corrupt header).
    r = srv.post("/transcribe-and-summarize", data=short_wav[:20] + garbage(5000),
                 headers={"Content-Type": "audio/wav"})
    expect_error(r, 415, "unsupported_media")
    alive(srv)


def test_empty_wav(srv):
    r = srv.post("/transcribe-and-summarize", data=wav_bytes(b""), headers={"Content-Type": "audio/wav"})
    expect_error(r, 422, "bad_audio")
    alive(srv)


def test_wav_header_claims_10_hours_holds_1_second(srv):
    rate = 16000
    pcm = struct.pack("<%dh" % rate, *[int(8000 * ((i // 40) % 2 * 2 - 1)) for i in range(rate)])
    claim = 10 * 3600 * rate * 2
    header = (b"RIFF" + struct.pack("<I", 36 + claim) + b"WAVE" + b"fmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", claim))
    t0 = time.monotonic()
    r = srv.post("/transcribe-and-summarize", data=header + pcm, params={"task": "transcribe"},
                 headers={"Content-Type": "audio/wav"}, timeout=30)
    took = time.monotonic() - t0
    # The header's length is not trusted: the 1 s actually present is processed.
    assert r.status_code == 200, r.text[:500]
    assert abs(r.json()["duration_s"] - 1.0) < 0.01, r.json()["duration_s"]
    assert took < 30 * SLOW, took
    alive(srv)


def test_flac_bomb_of_silence(srv, tmp_path):
    if not shutil.which("ffmpeg"):
        pytest.skip("needs the ffmpeg CLI")
    bomb = tmp_path / "bomb.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=8000:cl=mono", "-t", "18000", "-c:a", "flac", str(bomb)],
                   check=True, timeout=120)
    data = bomb.read_bytes()
    assert len(data) < 8 << 20  # 5 hours of silence compress to a few MB
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(srv.proc.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    try:
        t0 = time.monotonic()
        r = srv.post("/transcribe-and-summarize", data=data, headers={"Content-Type": "audio/flac"},
                     timeout=60)
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
    expect_error(r, 413, "too_long")
    assert took < 20 * SLOW, took
    limit_kb = 1.5 * (1 << 20)  # 1.5 GB
    assert peak[0] < limit_kb, "RSS peaked at %d kB" % peak[0]
    assert rss_kb(srv.proc.pid, "VmHWM") < limit_kb
    alive(srv)


# ----------------------------------------------------------------------------------------------
# transport: body and header limits


def stream_until_answer(sock, chunks, max_bytes):
    """Sends chunks (an iterator) until the server answers, closes, or max_bytes were sent.
    Returns (bytes sent, answer bytes, how the send loop ended)."""
    sent = 0
    answer = b""
    how = "cap"
    for piece in chunks:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            how = "answered"
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            how = "reset"
            break
        except socket.timeout:
            how = "stalled"  # the server stopped reading and the buffers are full
            break
        sent += len(piece)
        if sent >= max_bytes:
            break
    answer = read_answer(sock, time.monotonic() + 10 * SLOW)
    if answer:
        assert closed_by_peer(sock, 5 * SLOW), "the connection stayed open after the answer"
    return sent, answer, how


def test_content_length_over_cap(small):
    host, port = host_port(small)
    sock = connect(small, timeout=5)
    total = 50 << 20
    sock.sendall(("POST /transcribe-and-summarize HTTP/1.1\r\nHost: %s:%d\r\n"
                  "Content-Type: audio/wav\r\nContent-Length: %d\r\n\r\n" % (host, port, total)).encode())
    block = garbage(64 << 10)
    sent, answer, how = stream_until_answer(sock, iter(lambda: block, None), total)
    sock.close()
    print("sent %d bytes before the answer (%s)" % (sent, how))
    assert answer, "no answer after %d bytes (%s)" % (sent, how)
    status, headers, body = parse_response(answer)
    assert status == 413, answer[:300]
    assert json.loads(body)["error"]["code"] == "too_large"
    assert headers.get("connection", "").lower() == "close"
    assert sent < 16 << 20, "the server read %d bytes of a 1 MiB-capped body before answering" % sent
    alive(small)


def test_endless_chunked_upload(small):
    host, port = host_port(small)
    sock = connect(small, timeout=5)
    sock.sendall(("POST /transcribe-and-summarize HTTP/1.1\r\nHost: %s:%d\r\n"
                  "Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n" % (host, port)).encode())
    block = garbage(64 << 10)
    chunk = b"%x\r\n" % len(block) + block + b"\r\n"
    cap = 64 << 20  # never ends by itself: stop sending after 64 MB at the latest
    sent, answer, how = stream_until_answer(sock, iter(lambda: chunk, None), cap)
    sock.close()
    print("sent %d bytes before the answer (%s)" % (sent, how))
    assert answer, "no answer after %d bytes (%s)" % (sent, how)
    status, _, body = parse_response(answer)
    assert status == 413, answer[:300]
    assert json.loads(body)["error"]["code"] == "too_large"
    assert sent < 16 << 20, "the server read %d bytes of a 1 MiB-capped body" % sent
    alive(small)


def test_body_at_cap_is_still_read(small):
    # The cap is not off by a lot: 900 KB of garbage passes the transport and reaches the decoder.
    r = small.post("/transcribe-and-summarize", data=garbage(900_000), headers={"Content-Type": "audio/wav"})
    expect_error(r, 415, "unsupported_media")
    alive(small)


def test_headers_over_16k(srv):
    host, port = host_port(srv)
    req = ("GET /v1/jobs HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer k-main\r\n"
           "X-Big: %s\r\n\r\n" % (host, port, "a" * 20000)).encode()
    status, headers, body = raw_exchange(srv, req)
    assert status == 431
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    # Many small headers add up too.
    many = "".join("X-H%d: %s\r\n" % (i, "b" * 100) for i in range(200))
    status, _, body = raw_exchange(srv, ("GET /healthz HTTP/1.1\r\nHost: x\r\n%s\r\n" % many).encode())
    assert status == 431
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    alive(srv)


def multipart(parts, boundary="XyZzYbOuNdArY", close=True):
    out = b""
    for name, filename, data in parts:
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % filename if filename else "")
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        if filename:
            out += b"Content-Type: audio/wav\r\n"
        out += b"\r\n" + data + b"\r\n"
    if close:
        out += b"--" + boundary.encode() + b"--\r\n"
    return out, "multipart/form-data; boundary=" + boundary


def test_multipart_without_closing_boundary(srv, short_wav):
    body, ctype = multipart([("task", None, b"transcribe"), ("file", "a.wav", short_wav)], close=False)
    r = srv.post("/transcribe-and-summarize", data=body, headers={"Content-Type": ctype})
    expect_error(r, 400, "bad_multipart")
    # Truncated in the middle of the file part.
    body, ctype = multipart([("file", "a.wav", short_wav)])
    r = srv.post("/transcribe-and-summarize", data=body[: len(body) // 2], headers={"Content-Type": ctype})
    expect_error(r, 400, "bad_multipart")
    alive(srv)


def test_multipart_with_100_parts(srv, short_wav):
    parts = [("file", "a.wav", short_wav)] + [("f%d" % i, None, b"x") for i in range(99)]
    body, ctype = multipart(parts)
    r = srv.post("/transcribe-and-summarize", data=body, headers={"Content-Type": ctype})
    expect_error(r, 400, "bad_multipart")
    alive(srv)


def test_multipart_without_boundary(srv, short_wav):
    body, _ = multipart([("file", "a.wav", short_wav)])
    r = srv.post("/transcribe-and-summarize", data=body, headers={"Content-Type": "multipart/form-data"})
    expect_error(r, 400, "bad_multipart")
    alive(srv)


# ----------------------------------------------------------------------------------------------
# transport: clients that leave, or never finish


def test_disconnect_mid_upload(srv):
    host, port = host_port(srv)
    sock = connect(srv)
    sock.sendall(("POST /v1/jobs HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer k-upload\r\n"
                  "Content-Type: audio/wav\r\nContent-Length: %d\r\n\r\n" % (host, port, 1 << 20)).encode())
    sock.sendall(garbage(100 << 10))
    time.sleep(0.2)
    sock.close()
    time.sleep(0.3)
    alive(srv)
    assert jobs_of(srv, "k-upload") == []


def test_disconnect_mid_generation_cancels(srv, long_wav):
    host, port = host_port(srv)
    sock = connect(srv)
    t0 = time.monotonic()
    sock.sendall(("POST /transcribe-and-summarize?cache=false HTTP/1.1\r\nHost: %s:%d\r\n"
                  "Authorization: Bearer k-gen\r\nContent-Type: audio/wav\r\nContent-Length: %d\r\n\r\n"
                  % (host, port, len(long_wav))).encode() + long_wav)
    # Wait until the job runs (the 120 s recording takes the tiny model several seconds), then leave.
    job = None
    deadline = time.monotonic() + 10 * SLOW
    while time.monotonic() < deadline:
        jobs = jobs_of(srv, "k-gen")
        if jobs and jobs[0]["status"] == "running":
            job = jobs[0]
            break
        time.sleep(0.05)
    assert job, "the job never ran: %s" % jobs_of(srv, "k-gen")
    time.sleep(max(0.0, 0.4 - (time.monotonic() - t0)))
    readable, _, _ = select.select([sock], [], [], 0)
    assert not readable, "the request answered before the client left: the recording is too short"
    sock.close()
    t_close = time.monotonic()
    deadline = t_close + 5 * SLOW
    while time.monotonic() < deadline:
        j = srv.get("/v1/jobs/" + job["id"], key="k-gen").json()
        if j["status"] != "running":
            break
        time.sleep(0.05)
    assert j["status"] == "canceled", j
    assert j["error"]["code"] == "canceled", j
    assert j["result"] is None
    assert [x["id"] for x in jobs_of(srv, "k-gen")] == [job["id"]]
    alive(srv)


def test_slow_loris(srv):
    host, port = host_port(srv)
    request = ("GET /v1/jobs HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer k-main\r\n"
               "X-Slow: %s\r\n\r\n" % (host, port, "z" * 200)).encode()
    sock = connect(srv)
    t0 = time.monotonic()
    closed_at = None
    fast = []
    for i, b in enumerate(request):
        try:
            sock.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic() - t0
            break
        # Meanwhile another connection is served at once.
        if i % 2 == 0:
            t1 = time.monotonic()
            r = srv.get("/healthz", timeout=5)
            fast.append(time.monotonic() - t1)
            assert r.status_code == 200
        if closed_by_peer(sock, max(0.0, 0.5 - (time.monotonic() - t0) % 0.5)):
            closed_at = time.monotonic() - t0
            break
        if time.monotonic() - t0 > READ_TIMEOUT + 6 * SLOW:
            break
    sock.close()
    assert closed_at is not None, "a slow-loris connection was kept open %.1f s" % (time.monotonic() - t0)
    assert READ_TIMEOUT - 0.3 <= closed_at <= READ_TIMEOUT + 2 * SLOW, closed_at
    # Served meanwhile: typically ~1 ms; the median must be under 100 ms, and no single answer may
    # wait behind the slow connection (a scheduling hiccup on a loaded 2-core box is allowed).
    fast.sort()
    assert fast and fast[len(fast) // 2] < 0.1 * SLOW and fast[-1] < 1.0 * SLOW, fast
    alive(srv)


def test_idle_connections_are_dropped(srv):
    socks = [connect(srv) for _ in range(50)]
    t0 = time.monotonic()
    alive(srv)  # served meanwhile
    closed = 0
    for s in socks:
        left = READ_TIMEOUT + 2 * SLOW - (time.monotonic() - t0)
        if closed_by_peer(s, max(0.01, left)):
            closed += 1
        s.close()
    took = time.monotonic() - t0
    assert closed == 50, "%d of 50 idle connections were closed" % closed
    assert took >= READ_TIMEOUT - 0.3, took
    alive(srv)


def test_garbage_request_line(srv):
    status, headers, body = raw_exchange(srv, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + garbage(300) +
                                         b"\r\n\r\n")
    assert status == 400
    assert json.loads(body)["error"]["code"] == "bad_request"
    alive(srv)


# ----------------------------------------------------------------------------------------------
# job routes


def test_delete_queued_job_then_again(srv, long_wav):
    def submit():
        r = srv.post("/v1/jobs", key="k-del", params={"cache": "false", "task": "transcribe"},
                     data=long_wav, headers={"Content-Type": "audio/wav"})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    first = submit()  # runs
    second = submit()  # waits behind it
    j = srv.get("/v1/jobs/" + second, key="k-del").json()
    assert j["status"] == "queued", j
    r = srv.delete("/v1/jobs/" + second, key="k-del")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "canceled", r.json()
    assert r.json()["error"]["code"] == "canceled"
    assert srv.get("/v1/jobs/" + second, key="k-del").json()["status"] == "canceled"
    expect_error(srv.delete("/v1/jobs/" + second, key="k-del"), 409, "already_finished")
    # Another caller cannot see or cancel it.
    expect_error(srv.delete("/v1/jobs/" + first, key="k-main"), 404, "not_found")
    r = srv.delete("/v1/jobs/" + first, key="k-del")
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 10 * SLOW
    while time.monotonic() < deadline:
        j = srv.get("/v1/jobs/" + first, key="k-del").json()
        if j["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    assert j["status"] == "canceled", j
    expect_error(srv.delete("/v1/jobs/" + first, key="k-del"), 409, "already_finished")
    alive(srv)


def test_unknown_job_path_and_method(srv):
    expect_error(srv.get("/v1/jobs/job_000000000000000000000000"), 404, "not_found")
    expect_error(srv.get("/v1/jobs/../../etc/passwd"), 404, "not_found")
    expect_error(srv.delete("/v1/jobs/nope"), 404, "not_found")
    expect_error(srv.get("/v1/nothing-here"), 404, "not_found")
    expect_error(srv.get("/" + "a" * 4000), 404, "not_found")
    expect_error(srv.request("PUT", "/v1/jobs", data=b"{}"), 405, "method_not_allowed")
    expect_error(srv.request("PATCH", "/transcribe-and-summarize", data=b"{}"), 405, "method_not_allowed")
    expect_error(srv.get("/v1/jobs", params={"limit": "0"}), 400, "invalid_argument")
    expect_error(srv.get("/v1/jobs", params={"limit": "1e3"}), 400, "invalid_argument")
    expect_error(srv.get("/v1/jobs", key="wrong-key"), 401, "unauthorized")
    alive(srv)


def test_queue_overflow(tiny, tmp_path, long_wav):
    with Server(tiny, tmp_path, "--max-queue", 2, "--parallel", 1, "--request-timeout", 0) as s:
        results = [None] * 6
        barrier = threading.Barrier(6)

        def submit(i):
            barrier.wait()
            results[i] = s.post("/v1/jobs", params={"cache": "false"}, data=long_wav,
                                headers={"Content-Type": "audio/wav"})

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert set(codes) <= {202, 429}, [(r.status_code, r.text[:200]) for r in results]
        full = [r for r in results if r.status_code == 429]
        accepted = [r.json()["id"] for r in results if r.status_code == 202]
        assert full, "6 jobs with --max-queue 2 were all admitted"
        assert 1 <= len(accepted) <= 2, codes
        for r in full:
            expect_error(r, 429, "queue_full")
            assert r.headers["Retry-After"].isdigit() and int(r.headers["Retry-After"]) >= 1, r.headers
        for job_id in accepted:
            r = s.delete("/v1/jobs/" + job_id)
            assert r.status_code in (202, 409), r.text
        for job_id in accepted:
            j = s.wait_job(job_id, timeout=20)
            assert j["status"] in ("canceled", "succeeded"), j
        # The slots are free again.
        r = s.post("/v1/jobs", params={"cache": "false", "task": "transcribe"}, data=long_wav[:200_000],
                   headers={"Content-Type": "audio/wav"})
        assert r.status_code == 202, r.text
        s.delete("/v1/jobs/" + r.json()["id"])
        alive(s)


# ----------------------------------------------------------------------------------------------
# audio_url / webhook_url in a private network namespace


def test_hostile_urls_in_network_namespace(tiny):
    unshare = shutil.which("unshare")
    if not unshare:
        pytest.skip("unshare is not installed")
    probe = subprocess.run([unshare, "--net", "--mount", "--", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare --net: %s)"
                    % probe.stderr.decode(errors="replace").strip())
    if not shutil.which("ip"):
        pytest.skip("needs the ip tool (iproute2) to bring lo up inside the namespace")
    script = os.path.join(HERE, "netns_hostile_urls.py")
    env = dict(os.environ, STEPAUDIO_BIN=harness.BIN, STEPAUDIO_SHARED_DATA=harness.SHARED)
    out = subprocess.run([unshare, "--net", "--mount", "--", "/usr/bin/python3", script, "--model", tiny],
                         capture_output=True, text=True, timeout=180 * SLOW, env=env)
    print(out.stdout)
    print(out.stderr[-5000:], file=sys.stderr)
    assert out.returncode == 0, "netns_hostile_urls.py failed:\n" + out.stdout[-6000:] + out.stderr[-4000:]
    assert "ALL OK" in out.stdout


def test_upload_cannot_make_ffmpeg_open_other_files(tiny, tmp_path, short_wav):
    """An ffconcat playlist (or any indirection format) naming a file of the server's working
    directory must not be decoded: only audio containers are opened from uploads."""
    (tmp_path / "secret.wav").write_bytes(short_wav)
    with Server(tiny, tmp_path, cwd=str(tmp_path)) as s:
        for body in [b"ffconcat version 1.0\nfile secret.wav\n",
                     b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nsecret.wav\n#EXT-X-ENDLIST\n"]:
            r = s.post("/transcribe-and-summarize", data=body, headers={"Content-Type": "audio/wav"})
            expect_error(r, 415, "unsupported_media")
        alive(s)
