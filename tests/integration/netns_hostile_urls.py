"""audio_url / webhook_url against hostile addresses, run INSIDE a private network namespace.

    unshare --net --mount -- /usr/bin/python3 tests/integration/netns_hostile_urls.py [--model DIR]

(test_server_hostile.py::test_hostile_urls_in_network_namespace runs it so.) The namespace has only
`lo`, so no packet can leave the machine even if the server had a bug and connected where it must
not: 10.1.2.3, 169.254.169.254 and every other non-loopback address are unreachable in here.

Inside it, the script brings lo up, bind-mounts its own hosts file over /etc/hosts (after making
the mount tree private, so the mount stays in this namespace):

    private.test -> 10.1.2.3    meta.test -> 169.254.169.254    loop.test -> 127.0.0.1
    mixed.test   -> 127.0.0.1 and 10.1.2.3 (one refused answer refuses the URL)

starts a local HTTP server on 127.0.0.1 (/ok.wav, /redirect-private, /redirect-loop, /endless,
/big), a socket that accepts and never answers, and `stepaudio serve` with the tiny model,
`--allow-private-urls 127.0.0.1/32 --max-upload-mb 5 --fetch-timeout 5`, then checks each URL's
status and error code against docs/API.md. One line per check; the first failure exits 1 with the
server log tail. Everything started is stopped at the end (server: SIGTERM).
"""
import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(var, None)  # requests would honour them; nothing here goes through a proxy
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "*"

import server_harness as harness  # noqa: E402

FETCH_TIMEOUT = 5
MAX_UPLOAD_MB = 5


def log(line):
    print(line, flush=True)


class Failure(Exception):
    pass


def in_private_netns():
    """Only lo may exist here: anything else means we are not in a fresh network namespace."""
    return interfaces() == ["lo"]


def interfaces():
    # Not /sys/class/net: sysfs shows the namespace of whoever mounted it.
    return sorted(name for _, name in socket.if_nameindex())


def setup_namespace(tmp):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                "10.1.2.3 private.test\n169.254.169.254 meta.test\n127.0.0.1 loop.test\n"
                "127.0.0.1 mixed.test\n10.1.2.3 mixed.test\n")
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)


class Handler(http.server.BaseHTTPRequestHandler):
    wav = b""
    port = 0
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/ok.wav":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(self.wav)))
            self.end_headers()
            self.wfile.write(self.wav)
        elif path == "/redirect-private":
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/x.wav")
            self.end_headers()
        elif path == "/redirect-loop":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/redirect-loop" % self.port)
            self.end_headers()
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()  # no Content-Length: the body ends never
            block = self.wav[44:] or b"\0" * 65536
            try:
                self.wfile.write(self.wav[:44])
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    self.wfile.write(block)
            except OSError:
                pass  # the fetcher hung up: what we want
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(200 << 20))
            self.end_headers()
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self.send_response(404)
            self.end_headers()

    def do_POST(self):  # a webhook that got here by mistake would be recorded as delivered
        self.send_response(204)
        self.end_headers()


def start_silent_listener():
    """Accepts connections and never sends a byte."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    held = []
    stop = threading.Event()

    def loop():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
                held.append(c)
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def close():
        stop.set()
        t.join(timeout=2)
        for c in held:
            c.close()
        lsock.close()

    return lsock.getsockname()[1], close


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a tiny model folder (made here when absent)")
    args = ap.parse_args()

    if not in_private_netns():
        log("REFUSED: not inside a private network namespace (interfaces: %s); run me under "
            "`unshare --net --mount`" % ", ".join(interfaces()))
        return 2
    if not harness.HAVE_SHARED:
        log("SKIP: %s is absent (the tiny model needs the real vocabulary)" % harness.SHARED)
        return 0

    t_start = time.monotonic()
    tmp_obj = tempfile.TemporaryDirectory(prefix="netns_urls_")
    tmp = tmp_obj.name
    setup_namespace(tmp)
    log("namespace: lo only, /etc/hosts -> %s" % os.path.join(tmp, "hosts"))

    Handler.wav = open(harness.SPEECH_WAV, "rb").read()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    Handler.port = port
    http_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    http_thread.start()
    hang_port, close_hang = start_silent_listener()

    model = args.model or harness.make_tiny_model(os.path.join(tmp, "tiny"))
    server = harness.Server(model, tmp, "--allow-private-urls", "127.0.0.1/32",
                            "--max-upload-mb", MAX_UPLOAD_MB, "--fetch-timeout", FETCH_TIMEOUT,
                            "--request-timeout", 120)
    rc = 0
    try:
        server.start()
        run_checks(server, port, hang_port)
        log("ALL OK (%.1f s)" % (time.monotonic() - t_start))
    except Failure as e:
        log("FAIL %s" % e)
        log("---- server log tail ----")
        log(server.log()[-3000:] if server.proc else "(not started)")
        rc = 1
    finally:
        code = server.stop()
        if code not in (0, None):
            log("server exit status %s" % code)
            rc = rc or 1
        httpd.shutdown()
        httpd.server_close()
        http_thread.join(timeout=5)
        close_hang()
        tmp_obj.cleanup()
    return rc


def run_checks(s, port, hang_port):
    local = "http://127.0.0.1:%d" % port

    def submit(body, path="/transcribe-and-summarize", timeout=60):
        t0 = time.monotonic()
        r = s.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"},
                   timeout=timeout)
        return r, time.monotonic() - t0

    def expect(name, url, status, code=None, max_s=None, shape="flat"):
        body = {"audio_url": url} if shape == "flat" else {"input": {"audio": url}}
        try:
            r, took = submit(body)
        except Exception as e:  # no answer at all
            raise Failure("%s: %s -> no answer (%s)" % (name, url, e))
        try:
            doc = r.json()
        except ValueError:
            doc = {"raw": r.text[:200]}
        got_code = doc.get("error", {}).get("code") if isinstance(doc.get("error"), dict) else None
        line = "%s: %s -> %d %s (%.2f s)" % (name, url, r.status_code, got_code or "", took)
        if r.status_code != status or (code and got_code != code):
            raise Failure(line + ", expected %d %s; body %s" % (status, code or "", r.text[:300]))
        if max_s is not None and took > max_s * harness.SLOW:
            raise Failure(line + ", expected within %.1f s" % max_s)
        if s.proc.poll() is not None:
            raise Failure(line + ", but the server exited with %s" % s.proc.returncode)
        log("ok   " + line)
        return doc

    # Allowed: the local server (127.0.0.1/32 is on the allow-list), by address and by name.
    doc = expect("allowed", local + "/ok.wav", 200)
    if not isinstance(doc.get("transcription"), str) or doc.get("duration_s", 0) <= 0:
        raise Failure("allowed: no transcription in %s" % json.dumps(doc)[:300])
    expect("hosted shape", local + "/ok.wav?hosted", 200, shape="hosted")
    expect("allowed by name", "http://loop.test:%d/ok.wav?byname" % port, 200)

    # Not http(s), or not a URL the rules accept.
    for url in ("file:///etc/passwd", "gopher://127.0.0.1/", "ftp://x/", "dict://127.0.0.1:11211/",
                "http://user:secret@127.0.0.1:%d/ok.wav" % port, "http://[fe80::1%25lo]/"):
        expect("invalid", url, 400, "invalid_url")

    # Refused addresses (127.0.0.1/32 is the only allowed range).
    for url in ("http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/",
                "http://169.254.169.254/latest/meta-data/", "http://[::1]:%d/ok.wav" % port,
                "http://[fc00::1]/", "http://[::ffff:127.0.0.2]/", "http://127.0.0.2:%d/ok.wav" % port,
                "http://0.0.0.0:%d/ok.wav" % port, "http://private.test/", "http://meta.test/",
                "http://[::ffff:10.1.2.3]/", "http://[64:ff9b::a01:203]/", "http://224.0.0.1/",
                "http://0177.0.0.2:%d/ok.wav" % port):
        expect("forbidden", url, 400, "forbidden_url", max_s=3)
    both = {ai[4][0] for ai in socket.getaddrinfo("mixed.test", 80, socket.AF_INET, socket.SOCK_STREAM)}
    if both == {"127.0.0.1", "10.1.2.3"}:
        expect("one refused answer", "http://mixed.test:%d/ok.wav" % port, 400, "forbidden_url", max_s=3)
    else:
        log("skip one refused answer: this resolver answers mixed.test with %s only" % sorted(both))

    # Redirects.
    expect("redirect to private", local + "/redirect-private", 400, "forbidden_url", max_s=3)
    expect("redirect loop", local + "/redirect-loop", 400, "too_many_redirects", max_s=3)

    # Size and time limits.
    expect("endless body", local + "/endless", 413, "too_large", max_s=FETCH_TIMEOUT)
    expect("Content-Length 200 MB, slowly", local + "/big", 413, "too_large", max_s=FETCH_TIMEOUT - 1)
    t0 = time.monotonic()
    expect("never answers", "http://127.0.0.1:%d/wav" % hang_port, 504, "timeout", max_s=FETCH_TIMEOUT + 3)
    if time.monotonic() - t0 < FETCH_TIMEOUT - 0.5:
        raise Failure("never answers: gave up before --fetch-timeout %d s" % FETCH_TIMEOUT)

    # A webhook to a refused address: the job succeeds, the delivery fails at once (no retries).
    r, _ = submit({"audio_url": local + "/ok.wav?hook", "webhook_url": "http://10.1.2.3/hook"},
                  path="/v1/jobs")
    if r.status_code != 202:
        raise Failure("webhook job: %d %s" % (r.status_code, r.text[:300]))
    job_id = r.json()["id"]
    job = s.wait_job(job_id, timeout=60)
    if job["status"] != "succeeded":
        raise Failure("webhook job: %s" % json.dumps(job)[:400])
    deadline = time.monotonic() + 10 * harness.SLOW
    deliveries = []
    while time.monotonic() < deadline:
        job = s.get("/v1/jobs/" + job_id).json()
        deliveries = job.get("webhook", {}).get("deliveries", [])
        if deliveries and deliveries[0]["state"] != "pending":
            break
        time.sleep(0.1)
    if not deliveries or deliveries[0]["state"] != "failed":
        raise Failure("webhook to 10.1.2.3: deliveries %s" % json.dumps(deliveries))
    attempts = deliveries[0]["attempts"]
    if len(attempts) != 1 or attempts[0]["status"] != 0 or \
            not (attempts[0]["error"] or "").startswith("forbidden_url"):
        raise Failure("webhook to 10.1.2.3: attempts %s" % json.dumps(attempts))
    if job["webhook"]["url"] != "http://10.1.2.3/hook":
        raise Failure("webhook url shown as %r" % job["webhook"]["url"])
    log("ok   webhook to 10.1.2.3: job succeeded, delivery failed once: %s" % attempts[0]["error"])

    # Still serving after all that.
    r = s.get("/healthz", timeout=5)
    if r.status_code != 200:
        raise Failure("healthz %d" % r.status_code)
    log("ok   healthz after the checks")


if __name__ == "__main__":
    sys.exit(main())
