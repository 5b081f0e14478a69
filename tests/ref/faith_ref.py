#!/usr/bin/python3
"""Independent numpy reference for the projection faithfulness figures
(docs/MATH.md §15), run with /usr/bin/python3 (Debian's python3-numpy).

tools/twd-umap fits a small UMAP (and a PCA) layout of clustered data, writes
the layout, transforms a few query rows, and with --faith prints
trustworthiness and continuity on a seeded sample of the rows (and the rows
drawn) and the kNN overlap of each query. This script recomputes them from
the data and the written layouts with its own definitions:

  r(i, j): 1-based rank of j among the rows other than i by the float64
           Euclidean distance, ties to the lower index (np.lexsort);
  T = 1 - 2 / (m K (2m - 3K - 1)) sum_i sum_{j in U_K(i)} (r(i, j) - K),
  C = the same with the spaces exchanged (Venna and Kaski);
  overlap: |kNN_full(q) & kNN_layout(q)| / K for each query.

  faith_ref.py check --driver BUILD/tools/twd-umap

Criteria: the sample is sorted, distinct and of the requested size; T and C
within 1e-9; overlaps identical. Exit 1 on failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from ref_cli import new_parser

K = 15


def ranks(X):
    """R[i, j] = rank of j from i (R[i, i] = 0)."""
    m = X.shape[0]
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    R = np.zeros((m, m), dtype=np.int64)
    idx = np.arange(m)
    for i in range(m):
        order = np.lexsort((idx, D[i]))
        order = order[order != i]
        R[i, order] = np.arange(1, m)
    return R


def trust_cont(X, Y, k=K):
    m = X.shape[0]
    RX, RY = ranks(X), ranks(Y)
    off = ~np.eye(m, dtype=bool)
    inx, iny = (RX <= k) & off, (RY <= k) & off
    st = (RX - k)[iny & ~inx].sum()
    sc = (RY - k)[inx & ~iny].sum()
    norm = 2.0 / (m * k * (2 * m - 3 * k - 1))
    return 1 - norm * st, 1 - norm * sc


def knn(P, Q, k):
    idx = np.arange(P.shape[0])
    out = []
    for q in Q:
        d = ((P - q) ** 2).sum(axis=1)
        out.append(set(np.lexsort((idx, d))[:k].tolist()))
    return out


def clustered(rng, n, d, centers=6):
    c = rng.normal(0, 4, (centers, d))
    lab = rng.integers(0, centers, n)
    return (c[lab] + rng.normal(0, 1, (n, d))).astype(np.float32)


def run(driver, tmp, method, n, d, sample, seed):
    rng = np.random.default_rng(seed)
    X = clustered(rng, n, d)
    Q = np.concatenate([X[:5] + rng.normal(0, 0.05, (5, d)).astype(np.float32),
                        clustered(rng, 15, d)]).astype(np.float32)
    xp, qp = os.path.join(tmp, "x.f32"), os.path.join(tmp, "q.f32")
    ep, tp = os.path.join(tmp, "e.f32"), os.path.join(tmp, "t.f32")
    X.tofile(xp)
    Q.tofile(qp)
    cmd = [driver, "--data", xp, "--rows", str(n), "--dim", str(d), "--out", ep, "--query", qp,
           "--qrows", str(len(Q)), "--qout", tp, "--faith", str(sample), "--threads", "2"]
    cmd += ["--pca"] if method == "pca" else ["--epochs", "60", "--seed", "3"]
    p = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    got = json.loads(p.stdout.strip().splitlines()[-1])
    E = np.fromfile(ep, dtype=np.float32).reshape(n, 3).astype(np.float64)
    T = np.fromfile(tp, dtype=np.float32).reshape(len(Q), 3).astype(np.float64)
    fails = []
    s = got["sample"]
    want = min(sample, n)
    if len(s) != want or s != sorted(set(s)) or not all(0 <= i < n for i in s):
        fails.append("sample: %d rows, sorted and distinct: %s" % (len(s), s == sorted(set(s))))
    Xs, Es = X[s].astype(np.float64), E[s]
    t, c = trust_cont(Xs, Es)
    for name, g, r in (("trustworthiness", got["trustworthiness"], t), ("continuity", got["continuity"], c)):
        if not abs(g - r) <= 1e-9:
            fails.append("%s: %.15g vs reference %.15g" % (name, g, r))
    full = knn(X.astype(np.float64), Q.astype(np.float64), K)
    lay = knn(E, T, K)
    ref_ov = [len(a & b) / K for a, b in zip(full, lay)]
    if got["knn_overlap"] != ref_ov:
        bad = [i for i, (a, b) in enumerate(zip(got["knn_overlap"], ref_ov)) if a != b]
        fails.append("knn overlap differs for queries %s" % bad)
    print("%-4s n=%d d=%d sample=%d: T %.6f (ref %.6f), C %.6f (ref %.6f), mean overlap %.3f%s"
          % (method, n, d, len(s), got["trustworthiness"], t, got["continuity"], c, np.mean(ref_ov),
             "" if not fails else "  FAIL"))
    return fails


def main():
    ap, sub = new_parser(__doc__)
    sub.add_parser("check").add_argument("--driver", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="faith-ref-")
    fails = []
    try:
        for method in ("umap", "pca"):
            fails += run(a.driver, tmp, method, 500, 12, 500, 1)   # every row
            fails += run(a.driver, tmp, method, 700, 12, 300, 2)   # a seeded sample
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if fails:
        print("FAIL (%d):" % len(fails))
        for f in fails:
            print("  " + f)
        return 1
    print("OK: trustworthiness and continuity within 1e-9, overlaps identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
