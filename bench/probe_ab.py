#!/usr/bin/python3
"""Cold /probe of two (or more) builds alternated round by round, with the md5 of every answer.

For each round and build (the order reversed every other round, so that the
load of a shared machine falls on all builds alike), and each block: a fresh
twd (--workers 1, UMAP off), /probe?block=B as its first request (cold: the
statistics of E, K and G of the block computed), then /probe?block=B&k=7
(the same words again: K and G cached). Prints each time with the load
average, the md5 of both answers (the builds' answers must be the same
bytes), and per build and block the medians. Asserts nothing.

  /usr/bin/python3 bench/probe_ab.py MODEL BLOCKS ROUNDS BUILD... [--words LIST]

MODEL a checkpoint folder (bench/xl.py writes /tmp/twd-bench-xl-vocab),
BLOCKS e.g. 45,47; run it under flock /tmp/bench.lock on a shared machine.
"""
import argparse
import hashlib
import os
import statistics
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twd_daemon import TwdDaemon, loadavg  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("blocks")
    ap.add_argument("rounds", type=int)
    ap.add_argument("builds", nargs="+")
    ap.add_argument("--words", default="", help="comma-separated words instead of the default nouns")
    a = ap.parse_args()
    blocks = [int(b) for b in a.blocks.split(",")]
    res = {}
    for r in range(a.rounds):
        for b in (a.builds if r % 2 == 0 else a.builds[::-1]):
            for blk in blocks:
                t = TwdDaemon(os.path.join(b, "server", "twd"), a.model,
                              ["--set", "umap=false", "--set", "workers=1", "--set", "cache_mb=4096",
                               "--set", "max_request_seconds=3600", "--set", "max_k=100"], drain_stderr=True)
                la = loadavg()
                q = "/probe?block=%d" % blk + ("&words=" + urllib.parse.quote(a.words) if a.words else "")
                d1, b1 = t.timed(q)
                d2, b2 = t.timed(q + "&k=7")
                t.stop()
                m1, m2 = hashlib.md5(b1).hexdigest()[:10], hashlib.md5(b2).hexdigest()[:10]
                res.setdefault((b, blk), []).append((d1, d2, m1, m2))
                print("round %d %-28s block %2d cold %.3f s  k 7 %.3f s  md5 %s %s  load %s" %
                      (r + 1, b, blk, d1, d2, m1, m2, la), flush=True)
    for (b, blk), v in res.items():
        print("%-28s block %2d cold median %.3f [%s]  k 7 median %.3f [%s]  md5 %s" %
              (b, blk, statistics.median(x[0] for x in v), ", ".join("%.2f" % x[0] for x in v),
               statistics.median(x[1] for x in v), ", ".join("%.2f" % x[1] for x in v),
               " ".join(sorted(set("%s/%s" % (x[2], x[3]) for x in v)))))
    md5 = {}
    for (b, blk), v in res.items():
        md5.setdefault(blk, set()).update((x[2], x[3]) for x in v)
    print("answers %s" % ("the same bytes in every build" if all(len(s) == 1 for s in md5.values())
                          else "DIFFER between builds: %s" % md5))


if __name__ == "__main__":
    sys.exit(main())
