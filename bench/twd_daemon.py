"""A twd started for a benchmark: the one start-up, readiness wait, GET and
stop that the bench/*.py scripts share.

    d = TwdDaemon(exe, model, ["--set", "umap=false", ...])
    status, body = d.get("/health")
    seconds, body = d.timed("/svd?block=0")   # raises unless 200
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

    def timed(self, target):
        """(seconds, body) of GET target on a new connection; RuntimeError
        unless the answer is 200."""
        t0 = time.perf_counter()
        st, body = self.get(target)
        dt = time.perf_counter() - t0
        if st != 200:
            raise RuntimeError("%s -> %d %s" % (target, st, body[:300]))
        return dt, body

    def stop(self, wait=120):
        self.proc.terminate()
        self.proc.wait(wait)


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg says them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def in_threads(fn, args):
    """fn(*a) for every tuple a of args, each in a thread of its own, all at
    once; the wall seconds until the last returned."""
    t0 = time.perf_counter()
    th = [threading.Thread(target=fn, args=a) for a in args]
    for x in th:
        x.start()
    for x in th:
        x.join()
    return time.perf_counter() - t0
