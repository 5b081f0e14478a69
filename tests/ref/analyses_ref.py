#!/usr/bin/python3
"""Independent numpy reference for the weight analyses (docs/MATH.md §3-§6).

Run with /usr/bin/python3 (Debian's python3-numpy). Reads a Hugging Face GPT-2
checkpoint folder directly (config.json, and model.safetensors parsed here: an
8-byte little-endian header length, the JSON header, raw little-endian data),
computes every quantity in float64 the straightforward way (explicit d x d
matrices W_qk and W_vo, a dense d x d SVD per head, full score vectors), and
compares with the C implementation dumped as JSON by tools/twd-analyses.

  analyses_ref.py ref --model DIR [--blocks 0,1] [--ids 1,2,3] [--k 5] [--top 20]
        prints the reference JSON (lists carry k + 2 entries, for diagnostics)
  analyses_ref.py compare OURS.json REF.json [--near-tie REL]
  analyses_ref.py check --driver BUILD/tools/twd-analyses --synth BUILD/tools/twd-synth
        [--model DIR | --shape tiny] [--blocks ...] [--ids ...] [--k 5] [--top 16]
        [--near-tie REL] [--keep DIR]
        writes synthetic checkpoints (unless --model), runs the driver and the
        reference, compares; exit status 1 on any failure.

Criteria: identical top-k ids in every list (the same order: lower id first
on equal scores), list scores, singular values, norms and normalisation
statistics within 1e-4 relative, coverage within 1e-6, frac99 equal.
With --near-tie REL a differing id is tolerated (and reported) when the
reference scores of the two ids differ by at most REL times the list's
scale: float32 GEMM scores cannot order rows closer than their rounding.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_cli import add_check, keep_path, new_parser, parse_ints, run_cases  # noqa: E402
from st_numpy import load_model  # noqa: E402

TOL = 1e-4
COV_TOL = 1e-6
EXTRA = 2  # reference lists carry k + EXTRA entries


# ---------------------------------------------------------------- checkpoint

def ln(x, g=None, b=None, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if g is not None:
        y = y * g
    if b is not None:
        y = y + b
    return y


def topk(S, k):
    """Rows of S (nq, n): the k largest, descending, equal scores lower id
    first. Returns a list (per row) of [id, score] lists."""
    S = np.atleast_2d(S)
    n = S.shape[1]
    k = min(k, n)
    kth = np.partition(S, n - k, axis=1)[:, n - k]
    res = []
    for i in range(S.shape[0]):
        cand = np.nonzero(S[i] >= kth[i])[0]
        order = np.lexsort((cand, -S[i, cand]))
        sel = cand[order[:k]]
        res.append([[int(j), float(S[i, j])] for j in sel])
    return res


def negated(lists):
    return [[[j, -s] for j, s in l] for l in lists]


# ---------------------------------------------------------------- reference

def reference(model_dir, blocks, ids, k, top):
    cfg, t = load_model(model_dir)
    L, H, d, V = cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["vocab_size"]
    eps = float(cfg.get("layer_norm_epsilon", 1e-5))
    dh = d // H
    kk = k + EXTRA
    E = t["wte.weight"]
    gf, bf = t["ln_f.weight"], t["ln_f.bias"]
    out = {"config": {"n_layer": L, "n_head": H, "n_embd": d, "vocab_size": V},
           "k": k, "top": top}

    # 1. embedding norms
    n = np.linalg.norm(E, axis=1)
    sn = np.linalg.norm(E * gf, axis=1)
    be = E @ bf
    schemes = {"norm": n, "scaled": sn, "bias": n + be, "scaled_bias": sn + be}
    emb = {}
    for name, s in schemes.items():
        emb[name] = {"top": topk(s[None, :], kk)[0],
                     "bottom": negated(topk(-s[None, :], kk))[0]}
    out["embeddings"] = {"k": k, "schemes": emb}

    a = n.mean()
    sc = np.sqrt(d) / a
    c = E.mean(axis=0)
    N = ln(E, eps=eps)
    rows = []
    for name, X in (("E", E), ("E - c", E - c), ("sE", sc * E), ("s(E - c)", sc * (E - c))):
        l2 = np.linalg.norm(X - N, axis=1)
        cos = 1 - (X * N).sum(axis=1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(N, axis=1))
        rows.append({"name": name, "l2_mean": l2.mean(), "l2_std": l2.std(ddof=1),
                     "cos_mean": cos.mean(), "cos_std": cos.std(ddof=1)})
    out["normalization"] = {"avg_norm": a, "scale": sc, "rows": rows}

    out["blocks"] = []
    for b in blocks:
        p = "h.%d." % b
        Wa, ba = t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"]
        Wp, bo = t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"]
        En = ln(E, t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
        heads = []
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            heads.append({
                "Wq": Wa[:, 0:d][:, sl], "Wk": Wa[:, d:2 * d][:, sl], "Wv": Wa[:, 2 * d:][:, sl],
                "bq": ba[0:d][sl], "bk": ba[d:2 * d][sl], "bv": ba[2 * d:][sl],
                "Wo": Wp[sl, :]})
        for hd in heads:
            hd["Wqk"] = hd["Wq"] @ hd["Wk"].T / np.sqrt(dh)
            hd["Wvo"] = hd["Wv"] @ hd["Wo"]

        # 2. word probes
        ids_a = np.array(ids, dtype=np.int64)
        Q = En[ids_a]
        words = [{"keys": [], "values": [], "value_norm": []} for _ in ids]
        Usum = np.zeros((len(ids), d))
        for hd in heads:
            keys = topk((Q @ hd["Wqk"]) @ En.T, kk)
            U = Q @ hd["Wvo"] + hd["bv"] @ hd["Wo"]
            Usum += U
            vals = topk(ln(E[ids_a] + U + bo, gf, bf, eps) @ E.T, kk)
            norms = np.linalg.norm(U, axis=1)
            for w in range(len(ids)):
                words[w]["keys"].append(keys[w])
                words[w]["values"].append(vals[w])
                words[w]["value_norm"].append(float(norms[w]))
        lay = topk(ln(E[ids_a] + Usum + bo, gf, bf, eps) @ E.T, kk)
        lnorm = np.linalg.norm(Usum, axis=1)
        for w in range(len(ids)):
            words[w]["layer_values"] = lay[w]
            words[w]["layer_norm"] = float(lnorm[w])
        blk = {"block": b, "probe": {"ids": list(ids), "words": words}}

        # 3. SVD, dense, per head
        svd = {}
        for mat, Mr in (("qk", En), ("vo", E)):
            hs = []
            for hd in heads:
                A = hd["Wqk"] if mat == "qk" else hd["Wvo"]
                U, S, Vt = np.linalg.svd(A)
                s = S[:dh]
                cov = np.cumsum(s) / s.sum()
                above = np.nonzero(cov > 0.99)[0]
                frac = (above[0] + 1) / dh if len(above) else 0.0
                left, right, sign = [], [], []
                for r in range(top):
                    u = S[r] * U[:, r]
                    v = Vt[r]
                    sr = Mr @ v
                    sg = 1.0 if sr.max() >= (-sr).max() else -1.0
                    sign.append(int(sg))
                    right.append(topk((sg * sr)[None, :], kk)[0])
                    left.append(topk((En @ (sg * u))[None, :], kk)[0])
                hs.append({"s": s.tolist(), "coverage": cov.tolist(), "frac99": frac,
                           "sign": sign, "left": left, "right": right})
            svd[mat] = {"heads": hs}
        blk["svd"] = svd

        bias = []
        for hd in heads:
            av = hd["Wq"] @ hd["bk"]
            cv = hd["Wk"] @ hd["bq"]
            sa, scv = En @ av, En @ cv
            bias.append({"a": topk(sa[None, :], kk)[0], "-a": topk(-sa[None, :], kk)[0],
                         "c": topk(scv[None, :], kk)[0], "-c": topk(-scv[None, :], kk)[0]})
        blk["bias"] = bias
        out["blocks"].append(blk)
    return out


# ---------------------------------------------------------------- comparison

class Cmp:
    def __init__(self, near_tie):
        self.near_tie = near_tie
        self.failures = []
        self.worst = {}
        self.lists = 0
        self.ties = []

    def note(self, cat, val):
        self.worst[cat] = max(self.worst.get(cat, 0.0), val)

    def fail(self, msg):
        if len(self.failures) < 30:
            self.failures.append(msg)
        else:
            self.failures.append(None)

    def rel(self, where, cat, got, ref, tol=TOL):
        d = abs(got - ref) / max(abs(ref), 1e-30)
        self.note(cat, d)
        if not d <= tol:
            self.fail("%s: %.12g vs reference %.12g (relative %.3g > %g)" % (where, got, ref, d, tol))

    def hits(self, where, got, ref):
        """got: k [id, score]; ref: k + EXTRA [id, score]."""
        self.lists += 1
        k = len(got)
        if len(ref) < k:
            self.fail("%s: reference list shorter than %d" % (where, k))
            return
        scale = max(1e-30, max(abs(s) for _, s in ref[:k]))
        refscore = {j: s for j, s in ref}
        for i, ((gi, gs), (ri, rs)) in enumerate(zip(got, ref[:k])):
            if gi != ri:
                gap = abs(refscore[gi] - rs) / scale if gi in refscore else float("inf")
                if gap <= self.near_tie:
                    self.ties.append("%s rank %d: %d vs %d (reference gap %.2g)" % (where, i, gi, ri, gap))
                    continue
                self.fail("%s rank %d: id %d (score %.9g) vs reference %d (score %.9g); "
                          "reference score of %d: %s" % (where, i, gi, gs, ri, rs, gi,
                                                         refscore.get(gi, "not in its top %d" % len(ref))))
                return
            d = abs(gs - rs) / scale
            self.note("list scores", d)
            if not d <= TOL:
                self.fail("%s rank %d: score %.9g vs %.9g (relative %.3g)" % (where, i, gs, rs, d))


def compare(ours, ref, near_tie=0.0):
    c = Cmp(near_tie)
    for key in ("n_layer", "n_head", "n_embd", "vocab_size"):
        if ours["config"][key] != ref["config"][key]:
            c.fail("config %s: %s vs %s" % (key, ours["config"][key], ref["config"][key]))
    for name, r in ref["embeddings"]["schemes"].items():
        o = ours["embeddings"]["schemes"][name]
        c.hits("embeddings %s top" % name, o["top"], r["top"])
        c.hits("embeddings %s bottom" % name, o["bottom"], r["bottom"])
    on, rn = ours["normalization"], ref["normalization"]
    c.rel("normalization avg_norm", "norms/statistics", on["avg_norm"], rn["avg_norm"])
    c.rel("normalization scale", "norms/statistics", on["scale"], rn["scale"])
    for orow, rrow in zip(on["rows"], rn["rows"]):
        for f in ("l2_mean", "l2_std", "cos_mean", "cos_std"):
            c.rel("normalization %s %s" % (rrow["name"], f), "norms/statistics", orow[f], rrow[f])
    if len(ours["blocks"]) != len(ref["blocks"]):
        c.fail("number of blocks differs")
    for ob, rb in zip(ours["blocks"], ref["blocks"]):
        b = rb["block"]
        if ob["probe"]["ids"] != rb["probe"]["ids"]:
            c.fail("block %d: probe ids differ" % b)
        for w, (ow, rw) in enumerate(zip(ob["probe"]["words"], rb["probe"]["words"])):
            wid = rb["probe"]["ids"][w]
            for h, (ol, rl) in enumerate(zip(ow["keys"], rw["keys"])):
                c.hits("block %d word %d head %d keys" % (b, wid, h), ol, rl)
            for h, (ol, rl) in enumerate(zip(ow["values"], rw["values"])):
                c.hits("block %d word %d head %d values" % (b, wid, h), ol, rl)
            for h, (ov, rv) in enumerate(zip(ow["value_norm"], rw["value_norm"])):
                c.rel("block %d word %d head %d value_norm" % (b, wid, h), "norms/statistics", ov, rv)
            c.hits("block %d word %d layer values" % (b, wid), ow["layer_values"], rw["layer_values"])
            c.rel("block %d word %d layer_norm" % (b, wid), "norms/statistics", ow["layer_norm"], rw["layer_norm"])
        for mat in ("qk", "vo"):
            for h, (oh, rh) in enumerate(zip(ob["svd"][mat]["heads"], rb["svd"][mat]["heads"])):
                where = "block %d %s head %d" % (b, mat, h)
                if len(oh["s"]) != len(rh["s"]):
                    c.fail("%s: %d singular values vs %d" % (where, len(oh["s"]), len(rh["s"])))
                for r, (os_, rs) in enumerate(zip(oh["s"], rh["s"])):
                    c.rel("%s s[%d]" % (where, r), "singular values", os_, rs)
                for r, (oc, rc) in enumerate(zip(oh["coverage"], rh["coverage"])):
                    d = abs(oc - rc)
                    c.note("coverage (abs)", d)
                    if not d <= COV_TOL:
                        c.fail("%s coverage[%d]: %.12g vs %.12g" % (where, r, oc, rc))
                if oh["frac99"] != rh["frac99"]:
                    c.fail("%s frac99: %r vs %r" % (where, oh["frac99"], rh["frac99"]))
                for r in range(len(rh["left"])):
                    c.hits("%s direction %d left" % (where, r), oh["left"][r], rh["left"][r])
                    c.hits("%s direction %d right" % (where, r), oh["right"][r], rh["right"][r])
        for h, (oh, rh) in enumerate(zip(ob["bias"], rb["bias"])):
            for lst in ("a", "-a", "c", "-c"):
                c.hits("block %d bias head %d %s" % (b, h, lst), oh[lst], rh[lst])
    return c


def report(c):
    print("compared %d top-k lists" % c.lists)
    for cat in sorted(c.worst):
        print("  largest %-18s difference: %.3g" % (cat, c.worst[cat]))
    if c.ties:
        print("  %d near-tie id swaps tolerated (--near-tie):" % len(c.ties))
        for s in c.ties[:10]:
            print("    " + s)
    if c.failures:
        print("FAIL: %d problems" % len(c.failures))
        for f in c.failures:
            print("  " + (f if f else "..."))
        return 1
    print("OK: identical ids; values within %g relative" % TOL)
    return 0


# ---------------------------------------------------------------- commands

def default_ids(V, n=10):
    # both ends of the vocabulary and a spread in between
    return sorted(set([0, V - 1] + [(i * 7919 + 13) % V for i in range(n - 2)]))


def run_check(args):
    def check_one(name, d):
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        V, L = cfg["vocab_size"], cfg["n_layer"]
        dh = cfg["n_embd"] // cfg["n_head"]
        ids = parse_ints(args.ids) or default_ids(V)
        blocks = parse_ints(args.blocks) or list(range(L))
        top = min(args.top, dh)
        cmd = [args.driver, "dump", "--model", d, "--blocks", ",".join(map(str, blocks)),
               "--ids", ",".join(map(str, ids)), "--k", str(args.k), "--top", str(top)]
        t0 = time.time()
        p = subprocess.run(cmd, check=True, stdout=subprocess.PIPE)
        t1 = time.time()
        ours = json.loads(p.stdout)
        ref = reference(d, blocks, ids, args.k, top)
        t2 = time.time()
        print("== %s: %s (L=%d H=%d d=%d V=%d), blocks %s, %d ids, k %d, top %d "
              "(C %.1f s, numpy %.1f s)" % (name, d, L, cfg["n_head"], cfg["n_embd"], V,
                                           blocks, len(ids), args.k, top, t1 - t0, t2 - t1))
        base = keep_path(args, name)
        if base:
            with open(base + ".ours.json", "w") as f:
                json.dump(ours, f)
            with open(base + ".ref.json", "w") as f:
                json.dump(ref, f)
        return report(compare(ours, ref, args.near_tie))

    return run_cases(args, "ana-ref-", check_one)


def main():
    ap, sub = new_parser(__doc__)
    r = sub.add_parser("ref")
    r.add_argument("--model", required=True)
    r.add_argument("--blocks")
    r.add_argument("--ids")
    r.add_argument("--k", type=int, default=5)
    r.add_argument("--top", type=int, default=20)
    c = sub.add_parser("compare")
    c.add_argument("ours")
    c.add_argument("ref")
    c.add_argument("--near-tie", type=float, default=0.0)
    add_check(sub, top=16)
    a = ap.parse_args()
    if a.cmd == "ref":
        with open(os.path.join(a.model, "config.json")) as f:
            cfg = json.load(f)
        ids = parse_ints(a.ids) or default_ids(cfg["vocab_size"])
        blocks = parse_ints(a.blocks) or list(range(cfg["n_layer"]))
        json.dump(reference(a.model, blocks, ids, a.k, a.top), sys.stdout)
        print()
        return 0
    if a.cmd == "compare":
        with open(a.ours) as f:
            ours = json.load(f)
        with open(a.ref) as f:
            ref = json.load(f)
        return report(compare(ours, ref, a.near_tie))
    if not a.model and not a.synth:
        ap.error("check needs --synth (or --model)")
    return run_check(a)


if __name__ == "__main__":
    sys.exit(main())
