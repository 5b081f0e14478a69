#!/usr/bin/python3
"""Cold /svd of two builds, alternated, against the machine's sgemm rate.

Each timing is the first request of a fresh twd (the checkpoints of
bench/xl.py, written there if absent): /svd?block=B&matrix=both&top=20&k=5
(--query to change it), the builds alternated round by round so that the
load of a shared machine falls on both alike, each timing taken under
flock /tmp/bench.lock (--lock) with the load average printed beside it.
With --settle the request waits until the daemon's start-up work in the
background (PCA's faithfulness figures) is done, so that the analysis is
timed alone; without, it is sent at once as bench/xl.py does. Prints the
median per build, the GFLOP/s of the direct method (every probe vector
against every vocabulary row: 4 H top 2 V d for both matrices) over the
sgemm rate (tools/twd-sgemm, before and after), and the md5 of each answer
(the builds must agree). Asserts nothing.

  /usr/bin/python3 bench/svd_ab.py --build B --baseline MAIN_B [--shape xl]
                                   [--blocks 47,46] [--rounds 3] [--settle]
"""
import argparse
import fcntl
import hashlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xl  # noqa: E402


def locked(path):
    f = open(path, "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--baseline", default="")
    ap.add_argument("--shape", default="xl", choices=sorted(xl.SHAPES))
    ap.add_argument("--blocks", default="", help="comma-separated (default: the last block)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--query", default="matrix=both&top=20&k=5")
    ap.add_argument("--settle", action="store_true")
    ap.add_argument("--lock", default="/tmp/bench.lock")
    a = ap.parse_args()
    L, H, d, V, _ = xl.SHAPES[a.shape]
    model, _ = xl.checkpoint(a.build, os.environ.get("TWD_BENCH_DIR", "/tmp"), a.shape)
    cache_mb = max(2048, int(8 * V * d * 4 / 2**20))
    builds = [b for b in (a.baseline, a.build) if b]
    blocks = [int(b) for b in a.blocks.split(",")] if a.blocks else [L - 1]
    params = dict(p.split("=", 1) for p in a.query.split("&"))
    top = int(params.get("top", 20))
    mats = 1 if params.get("matrix", "both") in ("qk", "vo") else 2
    flops = 2.0 * mats * H * top * 2 * V * d if "head" not in params else 2.0 * mats * top * 2 * V * d

    def rate():
        with locked(a.lock):
            return xl.sgemm(a.build, 4096)["gflops_median"]

    sg0 = rate()
    print("== cold /svd?%s on %s blocks %s; sgemm %.1f GFLOP/s; load %s" %
          (a.query, a.shape, ",".join(map(str, blocks)), sg0, xl.loadavg()), flush=True)
    times, md5s = {}, {}
    for r in range(a.rounds):
        for b in (builds if r % 2 == 0 else builds[::-1]):
            for blk in blocks:
                t = xl.Twd(b, model, cache_mb)
                try:
                    if a.settle:
                        xl.settle(t)
                    with locked(a.lock):
                        load = xl.loadavg()
                        dt, body = t.timed("/svd", block=blk, **params)
                finally:
                    t.stop()
                times.setdefault(b, []).append(dt)
                md5s.setdefault(blk, {})[b] = hashlib.md5(body).hexdigest()
                print("  round %d %-30s block %-3d %7.3f s  md5 %s  load %s" %
                      (r + 1, b, blk, dt, md5s[blk][b], load), flush=True)
    sg = statistics.median([sg0, rate()])
    print("%-30s %9s %9s %8s   (sgemm %.1f GFLOP/s; load %s)" % ("build", "median s", "GFLOP/s", "/sgemm", sg,
                                                              xl.loadavg()))
    for b in builds:
        med = statistics.median(times[b])
        print("%-30s %9.3f %9.1f %7.0f %%  [%s]" % (b, med, flops * 1e-9 / med, 100 * flops * 1e-9 / med / sg,
                                                   ", ".join("%.3f" % x for x in times[b])))
    if len(builds) == 2:
        same = all(len(set(v.values())) == 1 for v in md5s.values())
        print("baseline / build: %.2f; answers %s" %
              (statistics.median(times[builds[0]]) / statistics.median(times[builds[1]]),
               "identical" if same else "DIFFER"))


if __name__ == "__main__":
    main()
