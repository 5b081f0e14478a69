"""A twd started for a benchmark: the one start-up, readiness wait, GET and
stop that the bench/*.py scripts share.

    d = TwdDaemon(exe, model, ["--set", "umap=false", ...])
    status, body = d.get("/health")
    d.stop()

The daemon listens on a free port (read from its "listening on" line),
never fetches, and logs no access lines. `ready` is the seconds from start
to the first 200 from /health. With drain_stderr, a thread reads what the
daemon writes after start-up so that a long run never blocks on its pipe.
"""
import http.client
import re
import subprocess
import threading
import time


class TwdDaemon:
    def __init__(self, exe, model, extra=(), drain_stderr=False, poll=0.02):
        cmd = [exe, "--model", model, "--port", "0", "--no-fetch", "--set", "access_log=false", *extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        self.port = None
        for line in self.proc.stderr:
            m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise RuntimeError("twd did not start: %s" % " ".join(cmd))
        if drain_stderr:
            threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        while True:
            try:
                if self.get("/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(poll)
        self.ready = time.time() - t0

    def get(self, target, conn=None, timeout=7200):
        """(status, body) of GET target, on conn (kept open) or a new connection."""
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("GET", target)
        r = c.getresponse()
        body = r.read()
        if not conn:
            c.close()
        return r.status, body

    def stop(self, wait=120):
        self.proc.terminate()
        self.proc.wait(wait)
