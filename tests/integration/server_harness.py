"""Starting a real `stepaudio serve` process for the server tests (127.0.0.1 only, stops itself).

    with Server(tiny_model, tmp_path, "--api-keys", keys) as s:
        r = s.post("/v1/jobs", files={"file": open(path, "rb")})

Every server binds 127.0.0.1 on a free port, writes its JSON logs to <tmp>/serve.log, and is
stopped (SIGTERM, then SIGKILL after 10 s) when the block ends, also when a test fails.
"""
import os
import signal
import subprocess
import sys
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("STEPAUDIO_BIN", os.path.join(ROOT, "build", "bin", "stepaudio"))
SHARED = os.environ.get("STEPAUDIO_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
HAVE_SHARED = os.path.isdir(os.path.join(SHARED, "tokenizer", "qwen2_base"))
SANITIZED = os.environ.get("STEPAUDIO_SANITIZED") == "1"
# A sanitized binary is several times slower: timeouts scale with it.
SLOW = 4.0 if SANITIZED else 1.0
SPEECH_WAV = os.path.join(SHARED, "audio", "stepaudio2_assets",
                          "give_me_a_brief_introduction_to_the_great_wall.wav")


def make_tiny_model(out_dir):
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "make_tiny_model.py"),
                    str(out_dir), "--shared", SHARED], check=True, capture_output=True)
    return str(out_dir)


class Server:
    def __init__(self, model, workdir, *args, db=None, key=None, env=None, wait_ready=True,
                 cwd=None):
        self.cwd = cwd
        self.model, self.workdir, self.args = str(model), str(workdir), [str(a) for a in args]
        self.db = str(db) if db else os.path.join(self.workdir, "stepaudio.db")
        self.key = key
        self.env = env
        self.wait_ready = wait_ready
        self.proc = None
        self.base = None

    def start(self):
        log = open(os.path.join(self.workdir, "serve.log"), "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen([BIN, "serve", "--model", self.model, "--host", "127.0.0.1",
                                      "--port", "0", "--db", self.db] + self.args,
                                     stdout=subprocess.PIPE, stderr=log, env=env, cwd=self.cwd)
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            self.proc.wait(timeout=30)
            raise RuntimeError("serve did not start: %r, log: %s" % (line, self.log()[-2000:]))
        self.base = line.strip().split("listening on ")[1]
        if self.wait_ready:
            deadline = time.time() + 60 * SLOW
            while time.time() < deadline:
                if self.get("/readyz").status_code == 200:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("serve never became ready: " + self.log()[-2000:])
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()  # SIGKILL
        self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        with open(os.path.join(self.workdir, "serve.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def headers(self, extra=None, key=None):
        h = {}
        k = key if key is not None else self.key
        if k:
            h["Authorization"] = "Bearer " + k
        h.update(extra or {})
        return h

    def request(self, method, path, key=None, headers=None, timeout=60, **kw):
        return requests.request(method, self.base + path, headers=self.headers(headers, key),
                                timeout=timeout * SLOW, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def wait_job(self, job_id, timeout=60, statuses=("succeeded", "failed", "canceled")):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            j = self.get("/v1/jobs/" + job_id).json()
            if j["status"] in statuses:
                return j
            time.sleep(0.05)
        raise AssertionError("job %s not done: %s" % (job_id, j))


def read_sse(resp):
    """The events of an SSE response as dicts ({"id", "event", "data"}), read to its end."""
    events, cur = [], {}
    # Bytes, split at CR/LF only as SSE does (str.splitlines would also split at U+2028/U+0085,
    # which the tiny model's gibberish may contain inside the JSON).
    for raw in resp.iter_lines():
        raw = raw.decode()
        if raw == "":
            if cur:
                events.append(cur)
                cur = {}
            continue
        k, _, v = raw.partition(": ")
        cur[k] = v
    return events


def write_wav(path, seconds, rate=16000, seed=0):
    """Speech-like tone bursts (1.4 s on, 0.6 s off) with faint noise, 16-bit mono."""
    import wave

    import numpy as np
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    env = (np.sin(2 * np.pi * 0.5 * t) > -0.3).astype(np.float32)
    x = env * 0.2 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t) + rng.normal(0, 0.003, n)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.clip(x * 32767, -32768, 32767).astype("<i2").tobytes())
    return str(path)
