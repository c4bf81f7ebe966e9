"""A throwaway redis-server for the multi-node tests (127.0.0.1, a free port, a temp dir, AOF as
in production: docs/REDIS.md). Tests skip when redis-server is not installed.

    r = RedisServer(tmp_path).start()
    ... r.url, r.cli("XLEN", "stepaudio:queue"), r.stop(), r.start() (same port and data) ...
"""
import os
import shutil
import signal
import socket
import subprocess
import time

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
REDIS_CLI = shutil.which("redis-cli") or (
    "/usr/bin/redis-cli" if os.path.exists("/usr/bin/redis-cli") else None)
HAVE_REDIS = bool(REDIS_SERVER and REDIS_CLI)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, workdir):
        self.dir = str(workdir)
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d" % self.port
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.cli("PING") == "PONG":
                    return self
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.resume()  # a paused Redis cannot act on SIGTERM
            self.proc.terminate()  # SIGTERM: Redis fsyncs its AOF and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self):
        """SIGSTOP: Redis hangs (the kernel still accepts connections, nothing answers)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def cli(self, *args):
        out = subprocess.run([REDIS_CLI, "-p", str(self.port), "--raw"] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=10, check=True)
        if out.stdout.startswith("ERR") or "Connection refused" in out.stderr:
            raise subprocess.CalledProcessError(1, args, out.stdout, out.stderr)
        return out.stdout.strip()

    def cli_stdin(self, data, *args):
        """A command whose last argument is `data` (bytes), sent through redis-cli -x."""
        return subprocess.run([REDIS_CLI, "-p", str(self.port), "-x"] + [str(a) for a in args],
                              input=data, capture_output=True, timeout=10, check=True).stdout

    def runner_pid(self, job_id):
        """The pid of the node whose consumer holds the job's queue entry (None if none)."""
        ids = {}
        entries = self.cli("XRANGE", "stepaudio:queue", "-", "+").split("\n")
        # --raw prints each entry as: id, field, value
        for i in range(0, len(entries) - 2, 3):
            if entries[i + 1] == "job":
                ids[entries[i]] = entries[i + 2]
        pending = self.cli("XPENDING", "stepaudio:queue", "nodes", "-", "+", "100").split("\n")
        for i in range(0, len(pending) - 3, 4):
            entry, consumer = pending[i], pending[i + 1]
            if ids.get(entry) == job_id:
                return int(consumer.split(":")[-2])  # host:pid:random
        return None
