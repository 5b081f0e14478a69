#!/usr/bin/python3
"""UMAP on the whole vocabulary (issue 14, item 5): every row of wte of the
124M-shaped checkpoint of bench/xl.py (50,257 x 768), fitted by core/proj/umap
through tools/twd-umap with twd's settings (3 components, 15 neighbours,
min_dist 0.1, a fixed seed), against the 60 s target on this machine; with
the trustworthiness (sklearn, 15 neighbours) on a random sample of --sample
points when sklearn is there. The machine is shared: the load average is
printed beside the figures. Asserts nothing.

  /usr/bin/python3 bench/umap_full.py [--build build] [--model DIR] [--rows N]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def wte(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        t = head.get("wte.weight") or head.get("transformer.wte.weight")
        assert t["dtype"] == "F32", t["dtype"]
        a, b = t["data_offsets"]
        f.seek(8 + n + a)
        return np.frombuffer(f.read(b - a), dtype=np.float32).reshape(t["shape"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(os.environ.get("TWD_BENCH_DIR", "/tmp"), "twd-bench-124M"))
    ap.add_argument("--rows", type=int, default=0, help="rows of wte (default: all)")
    ap.add_argument("--sample", type=int, default=3000)
    ap.add_argument("--work", default="/tmp/twd_umap_full")
    a = ap.parse_args()
    E = wte(os.path.join(a.model, "model.safetensors"))
    n = a.rows or E.shape[0]
    os.makedirs(a.work, exist_ok=True)
    X, out = os.path.join(a.work, "X.f32"), os.path.join(a.work, "E.f32")
    np.ascontiguousarray(E[:n]).tofile(X)
    print("fitting UMAP on %d x %d rows of wte (load %s) ..." % (n, E.shape[1], loadavg()), flush=True)
    t0 = time.time()
    r = subprocess.run([os.path.join(a.build, "tools", "twd-umap"), "--data", X, "--rows", str(n), "--dim",
                        str(E.shape[1]), "--out", out, "--seed", "0"], capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit("twd-umap failed: %s" % r.stderr)
    info = json.loads(r.stdout.strip().splitlines()[-1])
    print("twd-umap: %s" % json.dumps(info))
    print("fit of %d rows: %.1f s wall (target 60 s: %s; load %s)" %
          (n, wall, "met" if wall <= 60 else "NOT met", loadavg()), flush=True)
    try:
        from sklearn.manifold import trustworthiness
    except ImportError:
        print("sklearn not installed: no trustworthiness")
        return 0
    Y = np.fromfile(out, dtype=np.float32).reshape(n, -1)
    rng = np.random.default_rng(0)
    idx = rng.choice(n, size=min(a.sample, n), replace=False)
    tw = trustworthiness(E[:n][idx], Y[idx], n_neighbors=15)
    print("trustworthiness (15 neighbours, %d sampled points): %.4f" % (len(idx), tw), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
