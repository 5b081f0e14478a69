#!/usr/bin/python3
"""Concurrency of twd with workers=2: cold requests side by side, and a load
of 64 connections mixing cold and cached requests.

On the 124M-shaped checkpoint of bench/xl.py ($TWD_BENCH_DIR/twd-bench-124M-vocab,
written by bench/xl.py or given with --model), with --workers 2 (UMAP off):

  1. two different cold requests one after the other (a fresh twd each time,
     so nothing is cached), then the same two at once on another fresh twd:
     the wall time of the pair against the sum; then three at once (the
     third should wait rather than slow the two);
  2. while a long cold request runs, the latency of /health and of a cached
     answer (they are answered by the HTTP thread, never queued behind cold
     work);
  3. 64 connections for --seconds: each sends, in a loop, /health, a cached
     /svd and, one time in --cold-every, a cold /probe (a block and a word
     set no request used before); throughput, p50/p99 per kind, and errors.

The machine is shared: the load average is printed beside every figure.
Asserts nothing.

  /usr/bin/python3 bench/load.py [--build build] [--model DIR] [--seconds 30]
"""
import argparse
import http.client
import os
import random
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twd_daemon import TwdDaemon, in_threads, loadavg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOUNS = ("time year people way day man thing woman life child world school state family student group "
         "country problem hand part place case week company system program question work government number "
         "night point home water room mother area money story fact month lot right study book eye job word "
         "business issue side kind head house service friend father power hour game line end member law car "
         "city community name president team minute idea kid body information back parent face others level "
         "office door health person art war history party result change morning reason research girl guy "
         "moment air teacher force education").split()


class Twd(TwdDaemon):
    def __init__(self, build, model, workers):
        super().__init__(os.path.join(build, "server", "twd"), model,
                         ["--set", "umap=false", "--set", "workers=%d" % workers,
                          "--set", "max_connections=256", "--set", "max_request_seconds=3600",
                          # every connection is from 127.0.0.1: the per-client queue limit
                          # (16 by default) would refuse the load's cold requests
                          "--set", "max_queue_per_client=64"],
                         drain_stderr=True, poll=0.05)


def q(path, **params):
    return path + "?" + urllib.parse.urlencode(params)


def timed(t, target):
    return t.timed(target)[0]


def side_by_side(a, model):
    A = q("/svd", block=0, top=20, k=5)
    B = q("/probe", block=1, k=5)
    C = q("/svd/bias", block=2, k=5)
    seq = []
    for target in (A, B, C):
        t = Twd(a.build, model, 2)
        seq.append(timed(t, target))
        t.stop()
    print("cold alone: /svd %.2f s, /probe %.2f s, /svd/bias %.2f s (load %s)" % (*seq, loadavg()), flush=True)
    for group in ((A, B), (A, B, C)):
        t = Twd(a.build, model, 2)
        out = [None] * len(group)

        def run(i, target):
            out[i] = (time.perf_counter(), timed(t, target))

        wall = in_threads(run, list(enumerate(group)))
        t.stop()
        alone = sum(seq[:len(group)])
        print("%d cold at once (workers=2): wall %.2f s against %.2f s one after the other (%.0f %%); each "
              "took %s (load %s)" % (len(group), wall, alone, 100 * wall / alone,
                                     ", ".join("%.2f s" % o[1] for o in out), loadavg()), flush=True)


def not_delayed(a, model):
    t = Twd(a.build, model, 2)
    warm = q("/svd", block=0, top=1, k=1)
    timed(t, warm)
    done = threading.Event()
    lat = {"health": [], "cached": []}

    def cold():
        timed(t, q("/probe", block=5, k=5))
        done.set()

    threading.Thread(target=cold).start()
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=60)
    while not done.is_set():
        for kind, target in (("health", "/health"), ("cached", warm)):
            t0 = time.perf_counter()
            st, _ = t.get(target, c)
            lat[kind].append(time.perf_counter() - t0)
        time.sleep(0.01)
    t.stop()
    for kind, v in lat.items():
        v.sort()
        print("during a cold /probe: %s %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms (load %s)" %
              (kind, len(v), 1e3 * v[len(v) // 2], 1e3 * v[min(len(v) - 1, int(0.99 * len(v)))], 1e3 * v[-1],
               loadavg()), flush=True)


def load(a, model):
    t = Twd(a.build, model, 2)
    warm = q("/svd", block=0, top=1, k=1)
    timed(t, warm)
    stop = time.time() + a.seconds
    lock = threading.Lock()
    lat = {"health": [], "cached": [], "cold": []}
    errors = []
    counter = [0]
    L = 12

    def conn_loop(ci):
        rng = random.Random(ci)
        c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=3600)
        n = 0
        while time.time() < stop:
            n += 1
            if n % a.cold_every == 0:
                with lock:
                    counter[0] += 1
                    i = counter[0]
                kind = "cold"
                words = ",".join(rng.sample(NOUNS, 8))
                target = q("/probe", block=i % L, k=1 + i // L, words=words)  # never asked before
            elif n % 2:
                kind, target = "health", "/health"
            else:
                kind, target = "cached", warm
            t0 = time.perf_counter()
            try:
                st, body = t.get(target, c)
            except (OSError, http.client.HTTPException) as e:
                st, body = -1, str(e).encode()
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=3600)
            dt = time.perf_counter() - t0
            with lock:
                if st == 200:
                    lat[kind].append(dt)
                else:
                    errors.append((kind, st, body[:120]))
        c.close()

    wall = in_threads(conn_loop, [(i,) for i in range(a.connections)])
    t.stop()
    total = sum(len(v) for v in lat.values())
    print("%d connections, %.0f s (the last cold requests finishing): %d answers, %.0f answers/s, %d errors "
          "(load %s)" % (a.connections, wall, total, total / wall, len(errors), loadavg()))
    for kind, v in lat.items():
        if not v:
            continue
        v.sort()
        print("  %-7s %6d answers, p50 %8.1f ms, p99 %8.1f ms, max %8.1f ms" %
              (kind, len(v), 1e3 * v[len(v) // 2], 1e3 * v[min(len(v) - 1, int(0.99 * len(v)))], 1e3 * v[-1]))
    for e in errors[:5]:
        print("  error:", e)
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(os.environ.get("TWD_BENCH_DIR", "/tmp"),
                                                    "twd-bench-124M-vocab"))
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--cold-every", type=int, default=200)
    ap.add_argument("--skip", default="", help="comma-separated: pair,delay,load")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        sys.exit("no checkpoint at %s: run bench/xl.py --shapes 124M first, or give --model" % a.model)
    print("model %s, %d cores, load %s" % (a.model, os.cpu_count(), loadavg()), flush=True)
    skip = set(a.skip.split(","))
    if "pair" not in skip:
        side_by_side(a, a.model)
    if "delay" not in skip:
        not_delayed(a, a.model)
    if "load" not in skip:
        load(a, a.model)


if __name__ == "__main__":
    sys.exit(main())
