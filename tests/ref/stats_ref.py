#!/usr/bin/python3
"""Independent numpy reference for the trajectory statistics (docs/MATH.md §14).

Run with /usr/bin/python3 (Debian's python3-numpy). The driver
(tools/twd-stats dump --states) prints the statistics of token-id texts on a
checkpoint together with every state vector it computed them from. This
script
  1. recomputes the states with its own float64 forward pass (forward_ref.py,
     reading the safetensors file itself) and checks that the driver's states
     are those of docs/MATH.md §7.3 (max difference below 1e-4 of each state's
     scale);
  2. recomputes every statistic in float64 from the driver's float32 states
     (so that ranks can be compared exactly): cosines, the rank of the next
     token over the full score vector (ties lower id first), its softmax
     probability (log-sum-exp over all V), and the summaries (mean, std with
     ddof 1, the t interval with its own t quantile: Simpson integration of
     the density and bisection; the median by numpy);
  3. compares: ranks identical at every position, every value and summary
     within 1e-4 (relative to max(1, |reference|)), counts equal.

  stats_ref.py check --driver BUILD/tools/twd-stats --synth BUILD/tools/twd-synth [--keep DIR]
  stats_ref.py check --driver ... --model DIR

exit status 1 on any failure.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_ref import forward  # noqa: E402
from ref_cli import add_check, new_parser, run_cases  # noqa: E402
from st_numpy import load_model  # noqa: E402

TOL = 1e-4
EARLY_END = 8
STATS = ("cos_next", "cos_self", "cos_final", "rank_next", "prob_next")
BUCKETS = ("all", "first", "early", "late")


def bucket_of(t):
    return "first" if t == 0 else "early" if t < EARLY_END else "late"


# ---------------------------------------------------------------- Student's t

def t_pdf(x, nu):
    c = math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / math.sqrt(nu * math.pi)
    return c * (1 + x * x / nu) ** (-(nu + 1) / 2)


def t_cdf(x, nu, steps=4000):
    """P(T <= x) for x >= 0 by composite Simpson on [0, x] (+ 1/2)."""
    h = x / steps
    s = t_pdf(0, nu) + t_pdf(x, nu)
    for i in range(1, steps):
        s += (4 if i % 2 else 2) * t_pdf(i * h, nu)
    return 0.5 + s * h / 3


def t_quantile_975(nu):
    lo, hi = 0.0, 1.0
    while t_cdf(hi, nu) < 0.975:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if t_cdf(mid, nu) < 0.975:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


_TQ = {}


def tq(nu):
    if nu not in _TQ:
        _TQ[nu] = t_quantile_975(nu)
    return _TQ[nu]


def summary(v):
    v = np.asarray(v, dtype=np.float64)
    n = len(v)
    out = {"n": n, "mean": None, "std": None, "ci95": [None, None]}
    if n == 0:
        return out
    out["mean"] = float(v.mean())
    if n >= 2:
        sd = float(v.std(ddof=1))
        half = tq(n - 1) * sd / math.sqrt(n)
        out["std"] = sd
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


# ---------------------------------------------------------------- reference

def cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def reference(d, E, k):
    """The statistics of the driver's states (d: the driver's JSON)."""
    texts, tpos = d["texts"], d["t"]
    S, P = d["n_states"], d["n_positions"]
    Y = [np.array(s, dtype=np.float32).astype(np.float64) for s in d["state_vectors"]]  # (P, C) each
    nxt, cur = [], []
    for ids in texts:
        if len(ids) < 2:
            continue
        for p in range(len(ids) - 1):
            cur.append(ids[p])
            nxt.append(ids[p + 1])
    nxt, cur = np.array(nxt), np.array(cur)
    assert len(nxt) == P
    out = []
    for s in range(S):
        y = Y[s]
        scores = y @ E.T  # (P, V), float64 products of float32 values
        vals = {"cos_next": [], "cos_self": [], "cos_final": [], "rank": [], "prob_next": []}
        for p in range(P):
            vals["cos_next"].append(cos(y[p], E[nxt[p]]))
            vals["cos_self"].append(cos(y[p], E[cur[p]]))
            vals["cos_final"].append(cos(y[p], Y[S - 1][p]))
            sc = scores[p]
            t = nxt[p]
            rank = 1 + int(np.sum(sc > sc[t])) + int(np.sum(sc[:t] == sc[t]))
            vals["rank"].append(rank)
            m = sc.max()
            lse = m + math.log(np.exp(sc - m).sum())
            vals["prob_next"].append(math.exp(sc[t] - lse))
        buckets = {}
        for b in BUCKETS:
            sel = [p for p in range(P) if b == "all" or bucket_of(tpos[p]) == b]
            cell = {}
            for st in STATS:
                if st == "rank_next":
                    r = np.array([vals["rank"][p] for p in sel])
                    c = summary(np.log(r.astype(np.float64)))
                    c["median"] = float(np.median(r)) if len(r) else None
                    c["top1"] = float(np.mean(r == 1)) if len(r) else None
                    c["topk"] = float(np.mean(r <= k)) if len(r) else None
                else:
                    c = summary([vals[st][p] for p in sel])
                cell[st] = c
            buckets[b] = cell
        out.append({"buckets": buckets, "values": vals})
    return out


# ---------------------------------------------------------------- comparison

class Cmp:
    def __init__(self):
        self.failures = []
        self.worst = {}
        self.n = 0

    def fail(self, msg):
        if len(self.failures) < 40:
            self.failures.append(msg)

    def val(self, where, cat, got, ref):
        self.n += 1
        if ref is None or got is None:
            if (ref is None) != (got is None):
                self.fail("%s: %r vs reference %r" % (where, got, ref))
            return
        dd = abs(got - ref) / max(1.0, abs(ref))
        self.worst[cat] = max(self.worst.get(cat, 0.0), dd)
        if not dd <= TOL:
            self.fail("%s: %.12g vs reference %.12g (difference %.3g)" % (where, got, ref, dd))


def compare(d, ref, cfg_states, fwd_states):
    c = Cmp()
    S = d["n_states"]
    # 1. the states are those of the float64 forward pass
    for s in range(S):
        g, r = np.array(d["state_vectors"][s]), fwd_states[s]
        scale = float(np.abs(r).max()) or 1.0
        diff = float(np.abs(g - r).max()) / scale
        c.worst["states (of scale)"] = max(c.worst.get("states (of scale)", 0.0), diff)
        if not diff < TOL:
            c.fail("state %d: max difference %.3g of its scale against the numpy forward pass" % (s, diff))
    # 2. per position
    for s in range(S):
        gv, rv = d["states"][s]["values"], ref[s]["values"]
        if gv["rank"] != rv["rank"]:
            bad = [p for p, (a, b) in enumerate(zip(gv["rank"], rv["rank"])) if a != b]
            c.fail("state %d: ranks differ at %d positions, first %d: %d vs reference %d"
                   % (s, len(bad), bad[0], gv["rank"][bad[0]], rv["rank"][bad[0]]))
        for st in ("cos_next", "cos_self", "cos_final", "prob_next"):
            for p, (a, b) in enumerate(zip(gv[st], rv[st])):
                c.val("state %d position %d %s" % (s, p, st), "values " + st, a, b)
    # 3. summaries
    for s in range(S):
        for b in BUCKETS:
            for st in STATS:
                g = d["states"][s]["buckets"][b][st]
                r = ref[s]["buckets"][b][st]
                w = "state %d %s %s" % (s, b, st)
                if g["n"] != r["n"]:
                    c.fail("%s: n %d vs %d" % (w, g["n"], r["n"]))
                c.val(w + " mean", "summaries", g["mean"], r["mean"])
                c.val(w + " std", "summaries", g["std"], r["std"])
                c.val(w + " ci95 low", "summaries", g["ci95"][0], r["ci95"][0])
                c.val(w + " ci95 high", "summaries", g["ci95"][1], r["ci95"][1])
                if st == "rank_next":
                    for f in ("median", "top1", "topk"):
                        if g[f] != r[f] and not (g[f] is not None and r[f] is not None
                                                 and abs(g[f] - r[f]) <= 1e-12):
                            c.fail("%s %s: %r vs %r" % (w, f, g[f], r[f]))
    return c


def report(c, label):
    print("%s: compared %d values" % (label, c.n))
    for cat in sorted(c.worst):
        print("  largest %-22s difference: %.3g" % (cat, c.worst[cat]))
    if c.failures:
        print("FAIL: %d problems" % len(c.failures))
        for f in c.failures:
            print("  " + f)
        return 1
    print("OK: identical ranks and counts; values within %g" % TOL)
    return 0


def own_states(cfg, w, texts, gelu):
    """(S, P, C) float64 states of the numpy forward pass, positions with a next token."""
    L = cfg["n_layer"]
    per = [[] for _ in range(L + 3)]
    for ids in texts:
        if len(ids) < 2:
            continue
        f = forward(cfg, w, ids, gelu)
        for p in range(len(ids) - 1):
            per[0].append(f["emb"][p])
            per[1].append(f["x0"][p])
            per[2].append(f["x0_lnf"][p])
            for l in range(L):
                per[3 + l].append(f["resid_lnf"][l][p])
    return [np.array(x) for x in per]


def texts_for(V, n_ctx, seed):
    """Lengths 1 (skipped), 2, 7, 8, 9 and two near the context: every bucket,
    its edges, and a repeated token (next == current)."""
    rng = np.random.default_rng(seed)
    lens = [1, 2, 7, 8, 9, min(n_ctx, 40), min(n_ctx, 33)]
    texts = [[int(t) for t in rng.integers(0, V, n)] for n in lens]
    texts[3][4] = texts[3][3]
    texts[4] = [0, V - 1] + texts[4][2:]
    return texts


def run_case(args, label, folder, k=3):
    cfg, w = load_model(folder)
    V, n_ctx = cfg["vocab_size"], cfg.get("n_positions", cfg.get("n_ctx"))
    texts = texts_for(V, n_ctx, 17)
    status = 0
    for gelu in ("tanh", "erf"):
        arg = ";".join(",".join(map(str, t)) for t in texts)
        p = subprocess.run([args.driver, "dump", "--model", folder, "--texts", arg, "--k", str(k), "--gelu", gelu,
                            "--states"], check=True, stdout=subprocess.PIPE)
        d = json.loads(p.stdout)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            with open(os.path.join(args.keep, "%s-%s.json" % (label.replace(" ", "_"), gelu)), "w") as f:
                json.dump(d, f)
        E = w["wte.weight"].astype(np.float32).astype(np.float64)
        ref = reference(d, E, k)
        fwd = own_states(cfg, w, texts, gelu)
        c = compare(d, ref, cfg, fwd)
        if d["n_texts_skipped"] != 1 or d["n_texts"] != len(texts) - 1:
            c.fail("counts: %d texts, %d skipped" % (d["n_texts"], d["n_texts_skipped"]))
        status |= report(c, "%s gelu=%s (L=%d d=%d V=%d, %d positions)"
                         % (label, gelu, cfg["n_layer"], cfg["n_embd"], V, d["n_positions"]))
    return status


# the checkpoints `check` generates: ref_cli's, with 48 positions for the bf16 one
CASES = (("tiny f32", ["--shape", "tiny", "--seed", "7"]),
         ("small bf16 prefixed", ["--layers", "2", "--heads", "4", "--embd", "64", "--vocab", "1000", "--ctx", "48",
                                  "--dtype", "bf16", "--prefix", "--seed", "3"]))


def main():
    ap, sub = new_parser(__doc__)
    k = add_check(sub, 0, analyses=False)
    k.add_argument("--model")
    k.add_argument("--keep")
    a = ap.parse_args()
    if not a.model and not a.synth:
        ap.error("check needs --synth (or --model)")
    return run_cases(a, "stats-ref-", lambda name, d: run_case(a, name, d), CASES)


if __name__ == "__main__":
    sys.exit(main())
