#!/usr/bin/python3
"""Independent numpy reference for the analyses beyond the paper (docs/MATH.md §9-§13).

Run with /usr/bin/python3 (Debian's python3-numpy). Reads a Hugging Face GPT-2
checkpoint folder directly (tests/ref/st_numpy.py), computes every statistic
in float64 the straightforward way (full score matrices, numpy's dense SVD, its
own forward pass), and compares with the C implementation dumped as JSON by
`tools/twd-analyses beyond`.

  beyond_ref.py check --driver BUILD/tools/twd-analyses --synth BUILD/tools/twd-synth
        [--model DIR] [--blocks 0,1] [--ids 1,2] [--phrase 1,2,3] [--k 5] [--top 6]
        [--queries 64] [--near-tie REL] [--keep DIR]

Criteria: identical ids in every list (tokens and neurons, same order, lower
id first on equal scores), identical ranks and neuron choices, identical
counts of selectable keys (for the queries and drawn keys the driver used),
values within 1e-4 relative (statistics of small magnitude: within 1e-4 of
their scale), coverage within 1e-6, frac99 equal; the self-check's own
differences below 1e-4 and the numpy factored patterns within 1e-4 of the C
forward pass's. Signs of singular directions are not compared (they depend on
the solver's orientation; the lists, which are sign-aligned, are).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyses_ref import EXTRA, TOL, Cmp, ln, report, topk  # noqa: E402
from st_numpy import load_model  # noqa: E402

COV_TOL = 1e-6


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


class Model:
    def __init__(self, folder):
        self.cfg, self.t = load_model(folder)
        c = self.cfg
        self.L, self.H, self.d, self.V = c["n_layer"], c["n_head"], c["n_embd"], c["vocab_size"]
        self.F = c.get("n_inner") or 4 * self.d
        self.eps = float(c.get("layer_norm_epsilon", 1e-5))
        self.dh = self.d // self.H
        self.E = self.t["wte.weight"]

    def w(self, name, shape=None):
        if name in self.t:
            return self.t[name]
        return np.zeros(shape)  # bias=False

    def blk(self, b, name, shape=None):
        return self.w("h.%d.%s" % (b, name), shape)

    def ln_params(self, li):
        if li == 2 * self.L:
            return self.t["ln_f.weight"], self.w("ln_f.bias", self.d)
        b, kind = li // 2, ("ln_1", "ln_2")[li % 2]
        return self.blk(b, kind + ".weight"), self.blk(b, kind + ".bias", self.d)

    def forward(self, tokens):
        """x0, the residual after each block, the mid states, the MLP activations,
        the LN1 inputs of every block and the patterns, float64, tanh GELU."""
        d, H, dh = self.d, self.H, self.dh
        n = len(tokens)
        x = self.E[tokens] + self.t["wpe.weight"][:n]
        mask = np.tril(np.ones((n, n), dtype=bool))
        out = {"x0": x, "resid": [], "mid": [], "act": [], "z": [], "att": []}
        for b in range(self.L):
            z = ln(x, self.blk(b, "ln_1.weight"), self.blk(b, "ln_1.bias", d), self.eps)
            out["z"].append(z)
            qkv = z @ self.blk(b, "attn.c_attn.weight") + self.blk(b, "attn.c_attn.bias", 3 * d)
            heads, pats = [], []
            for h in range(H):
                sl = slice(h * dh, (h + 1) * dh)
                q, k, v = qkv[:, sl], qkv[:, d:][:, sl], qkv[:, 2 * d:][:, sl]
                s = np.where(mask, q @ k.T / np.sqrt(dh), -np.inf)
                e = np.exp(s - s.max(axis=1, keepdims=True))
                p = e / e.sum(axis=1, keepdims=True)
                pats.append(p)
                heads.append(p @ v)
            out["att"].append(pats)
            x = x + np.concatenate(heads, axis=1) @ self.blk(b, "attn.c_proj.weight") + \
                self.blk(b, "attn.c_proj.bias", d)
            out["mid"].append(x)
            a = gelu_tanh(ln(x, self.blk(b, "ln_2.weight"), self.blk(b, "ln_2.bias", d), self.eps) @
                          self.blk(b, "mlp.c_fc.weight") + self.blk(b, "mlp.c_fc.bias", self.F))
            out["act"].append(a)
            x = x + a @ self.blk(b, "mlp.c_proj.weight") + self.blk(b, "mlp.c_proj.bias", d)
            out["resid"].append(x)
        return out


def rank_of(scores, t):
    return int(1 + np.sum(scores > scores[t]) + np.sum(scores[:t] == scores[t]))


# ---------------------------------------------------------------- comparisons

def close(c, where, cat, got, ref, scale=None):
    """|got - ref| within TOL of max(|ref|, scale)."""
    if got is None:
        c.fail("%s: missing (non-finite)" % where)
        return
    s = max(abs(ref), scale or 0.0, 1e-30)
    d = abs(got - ref) / s
    c.note(cat, d)
    if not d <= TOL:
        c.fail("%s: %.12g vs reference %.12g (relative %.3g)" % (where, got, ref, d))


def check_values(c, m, b, ours, k):
    Wp = m.blk(b, "mlp.c_proj.weight")
    S = Wp @ m.E.T
    norms = np.linalg.norm(Wp, axis=1)
    tops, bots = topk(S, k + EXTRA), [[[j, -s] for j, s in l] for l in topk(-S, k + EXTRA)]
    if ours["neurons"] != list(range(m.F)):
        c.fail("block %d values: neurons are not 0..d_ff-1" % b)
    for i in range(m.F):
        close(c, "block %d neuron %d norm" % (b, i), "norms", ours["norm"][i], norms[i])
        c.hits("block %d neuron %d top" % (b, i), ours["top"][i], tops[i])
        c.hits("block %d neuron %d bottom" % (b, i), ours["bottom"][i], bots[i])


def check_svd(c, m, b, ours, top, k):
    Wfc, Wp = m.blk(b, "mlp.c_fc.weight"), m.blk(b, "mlp.c_proj.weight")
    En2 = ln(m.E, m.blk(b, "ln_2.weight"), m.blk(b, "ln_2.bias", m.d), m.eps)
    for mat, A in (("in", Wfc), ("out", Wp)):
        o = ours[mat]
        U, S, Vt = np.linalg.svd(A, full_matrices=False)
        where = "block %d svd %s" % (b, mat)
        for t, (os_, rs) in enumerate(zip(o["s"], S)):
            close(c, "%s s[%d]" % (where, t), "singular values", os_, rs, S[0])
        cov = np.cumsum(S) / S.sum()
        for t, (oc, rc) in enumerate(zip(o["coverage"], cov)):
            c.note("coverage (abs)", abs(oc - rc))
            if not abs(oc - rc) <= COV_TOL:
                c.fail("%s coverage[%d]: %.12g vs %.12g" % (where, t, oc, rc))
        above = np.nonzero(cov > 0.99)[0]
        if o["frac99"] != ((above[0] + 1) / len(S) if len(above) else 0.0):
            c.fail("%s frac99 %r" % (where, o["frac99"]))
        for t in range(top):
            if mat == "in":
                x, y, Mx, My = S[t] * U[:, t], Vt[t], En2, m.E
            else:
                x, y, Mx, My = Vt[t], S[t] * U[:, t], m.E, En2
            sr = Mx @ x
            sg = 1.0 if sr.max() >= (-sr).max() else -1.0
            dside = topk((sg * sr)[None, :], k + EXTRA)[0]
            neurons = topk((sg * y)[None, :], k + EXTRA)[0]
            z = (sg * y) @ Wp if mat == "in" else Wfc @ (sg * y)
            through = topk((My @ z)[None, :], k + EXTRA)[0]
            left, right = (dside, through) if mat == "in" else (through, dside)
            c.hits("%s direction %d left" % (where, t), o["left"][t], left)
            c.hits("%s direction %d right" % (where, t), o["right"][t], right)
            c.hits("%s direction %d neurons" % (where, t), o["neurons"][t], neurons)


def head_keys(m, b, h):
    En = ln(m.E, m.blk(b, "ln_1.weight"), m.blk(b, "ln_1.bias", m.d), m.eps)
    W = m.blk(b, "attn.c_attn.weight")[:, m.d:2 * m.d]
    bk = m.blk(b, "attn.c_attn.bias", 3 * m.d)[m.d:2 * m.d]
    sl = slice(h * m.dh, (h + 1) * m.dh)
    return En @ W[:, sl] + bk[sl]


def check_keys(c, m, b, ours, N):
    Q = np.array(ours["random"]["queries"], dtype=np.float64).reshape(N, m.dh)
    drawn = ours["targeted"]["drawn"]
    for h in range(m.H):
        K = head_keys(m, b, h)
        S = Q @ K.T
        best = S.argmax(axis=1)
        srt = np.sort(S, axis=1)
        gap = (srt[:, -1] - srt[:, -2]) / np.abs(srt[:, -1]).clip(1e-30)
        count = len(set(best.tolist()))
        got = ours["random"]["selectable"][h]
        if got != count:
            c.fail("block %d head %d random keys: %d selectable vs reference %d (smallest top-2 gap %.2g)"
                   % (b, h, got, count, gap.min()))
        close(c, "block %d head %d unselectable" % (b, h), "fractions", ours["random"]["unselectable"][h],
              1 - count / m.V, 1.0)
        mu = K.mean(axis=0)
        Kc = K - mu
        cov = Kc.T @ Kc / m.V
        q = np.linalg.solve(cov, Kc[drawn].T).T
        cert = int(np.sum((q @ K.T).argmax(axis=1) == np.array(drawn)))
        got = ours["targeted"]["selectable"][h]
        if got != cert:
            c.fail("block %d head %d targeted keys: %d certified vs reference %d" % (b, h, got, cert))
        c.lists += 2


def check_search(c, m, entry, k):
    t, block = entry["token"], entry["block"]
    blocks = range(m.L) if block < 0 else [block]
    W = np.concatenate([m.blk(b, "mlp.c_proj.weight") for b in blocks])
    sc = W @ m.E[t]
    order = np.lexsort((np.arange(len(sc)), -sc))[:k]
    c.lists += 1
    for r, (g, hit) in enumerate(zip(order, entry["hits"])):
        b = list(blocks)[g // m.F]
        i = int(g % m.F)
        where = "search token %d block %d rank %d" % (t, block, r)
        if [hit[0], hit[1]] != [b, i]:
            c.fail("%s: (%d, %d) vs reference (%d, %d), score %.9g vs %.9g" % (where, hit[0], hit[1], b, i,
                                                                              hit[2], sc[g]))
            return
        close(c, where + " score", "scores", hit[2], sc[g], np.abs(sc[order]).max())
        close(c, where + " norm", "norms", hit[3], np.linalg.norm(W[g]))
        rk = rank_of(m.E @ W[g], t)
        if hit[4] != rk:
            c.fail("%s: token rank %d vs reference %d" % (where, hit[4], rk))


def check_updates(c, m, fw, ours, k):
    top = ours["top"]
    for b, ob in enumerate(ours["blocks"]):
        Wp = m.blk(b, "mlp.c_proj.weight")
        norms = np.linalg.norm(Wp, axis=1)
        close(c, "block %d bias_norm" % b, "norms", ob["bias_norm"], np.linalg.norm(m.blk(b, "mlp.c_proj.bias", m.d)), 1.0)
        for t, op in enumerate(ob["positions"]):
            a = fw["act"][b][t]
            w = np.abs(a) * norms
            order = np.lexsort((np.arange(m.F), -w))[:top]
            where = "updates block %d position %d" % (b, t)
            close(c, where + " update_norm", "updates", op["update_norm"], np.linalg.norm(a @ Wp))
            for j, (i, u) in enumerate(zip(order, op["updates"])):
                if u["neuron"] != int(i):
                    rel = abs(w[u["neuron"]] - w[i]) / w[i]
                    if rel <= c.near_tie:
                        c.ties.append("%s rank %d: neuron %d vs %d" % (where, j, u["neuron"], i))
                        continue
                    c.fail("%s rank %d: neuron %d (weight %.9g) vs reference %d (%.9g)" % (where, j, u["neuron"],
                                                                                       u["weight"], i, w[i]))
                    break
                close(c, "%s rank %d coef" % (where, j), "updates", u["coef"], a[i], np.abs(a).max())
                close(c, "%s rank %d weight" % (where, j), "updates", u["weight"], w[i], w.max())
                close(c, "%s rank %d norm" % (where, j), "norms", u["norm"], norms[i])
                c.hits("%s rank %d tokens" % (where, j), u["tokens"], topk((m.E @ Wp[i])[None, :], k + EXTRA)[0])


def check_layers(c, m, ours, states, tag, k):
    for li, o in enumerate(ours):
        X = states[li]
        g, bt = m.ln_params(li)
        where = "%s %s" % (tag, o["name"])
        mu = X.mean(axis=1)
        var = ((X - mu[:, None]) ** 2).mean(axis=1)
        rad = np.sqrt(m.d) * np.sqrt(var / (var + m.eps))
        n = (X - mu[:, None]) / np.sqrt(var + m.eps)[:, None]
        chg = np.linalg.norm(g * n + bt - n, axis=1) / np.linalg.norm(n, axis=1)
        if o["rows"] != len(X):
            c.fail("%s: %d rows vs %d" % (where, o["rows"], len(X)))
        scale = np.abs(mu).mean()
        close(c, where + " mean", "statistics", o["mean_mean"], mu.mean(), scale)
        close(c, where + " mean_abs", "statistics", o["mean_abs"], np.abs(mu).mean())
        for f in ("after_mean_abs", "after_max_abs"):
            if not o[f] < 1e-5:
                c.fail("%s %s: %.3g is not 0 up to rounding" % (where, f, o[f]))
        close(c, where + " radius_mean", "statistics", o["radius_mean"], rad.mean())
        close(c, where + " radius_std", "statistics", o["radius_std"], rad.std(ddof=1) if len(X) > 1 else 0.0,
              rad.mean() * 1e-3)
        close(c, where + " change_mean", "statistics", o["change_mean"], chg.mean())
        close(c, where + " change_std", "statistics", o["change_std"], chg.std(ddof=1) if len(X) > 1 else 0.0,
              chg.mean() * 1e-2)
        ag = np.abs(g)
        imax, imin = int(np.argmax(ag)), int(np.argmin(ag))
        if (o["gmax_index"], o["gmin_index"]) != (imax, imin):
            c.fail("%s: gamma axes %d, %d vs %d, %d" % (where, o["gmax_index"], o["gmin_index"], imax, imin))
        close(c, where + " gmax", "statistics", o["gmax"], g[imax])
        close(c, where + " gmin", "statistics", o["gmin"], g[imin])
        close(c, where + " beta_norm", "norms", o["beta_norm"], np.linalg.norm(bt), 1.0)
        L = o["lists"]
        for ax, i in (("max", imax), ("min", imin)):
            col = m.E[:, i]
            c.hits(where + " gamma_%s_top" % ax, L["gamma_%s_top" % ax], topk(col[None, :], k + EXTRA)[0])
            c.hits(where + " gamma_%s_bottom" % ax, L["gamma_%s_bottom" % ax],
                   [[j, -s] for j, s in topk(-col[None, :], k + EXTRA)[0]])
        c.hits(where + " beta", L["beta"], topk((m.E @ bt)[None, :], k + EXTRA)[0])


def check_sketch(c, m, o):
    b, h, (i, j) = o["block"], o["head"], o["dims"]
    g, bt = m.blk(b, "ln_1.weight"), m.blk(b, "ln_1.bias", m.d)
    ag = np.abs(g)
    order = np.lexsort((np.arange(m.d), -ag))
    if [i, j] != [int(order[0]), int(order[1])]:
        c.fail("sketch default dims %s vs %s" % ([i, j], order[:2].tolist()))
    W = m.blk(b, "attn.c_attn.weight")
    sl = slice(h * m.dh, (h + 1) * m.dh)
    Wqk = W[:, :m.d][:, sl] @ W[:, m.d:2 * m.d][:, sl].T / np.sqrt(m.dh)
    W2 = Wqk[np.ix_([i, j], [i, j])]
    for a in range(2):
        for e in range(2):
            close(c, "sketch w2[%d][%d]" % (a, e), "sketch", o["w2"][a][e], W2[a, e], np.abs(W2).max())
    n = 16
    th = 2 * np.pi * np.arange(n) / n
    circ = np.stack([np.cos(th), np.sin(th)], axis=1)
    gam = circ * g[[i, j]]
    sh = gam + bt[[i, j]]
    qk = sh @ W2
    pts = np.array(o["points"]).reshape(4, n, 2)
    for s, ref in enumerate((circ, gam, sh, qk)):
        d = np.abs(pts[s] - ref).max() / max(np.abs(ref).max(), 1e-30)
        c.note("sketch", d)
        if not d <= TOL:
            c.fail("sketch stage %d: relative %.3g" % (s, d))


def check_selfcheck(c, m, fw, ours, patterns, n):
    P = np.array(patterns).reshape(m.L, m.H, n, n)
    mask = np.tril(np.ones((n, n), dtype=bool))
    for b, ob in enumerate(ours):
        for h, o in enumerate(ob["heads"]):
            where = "selfcheck block %d head %d" % (b, h)
            for q, lim in (("scores", 1), ("patterns", 0), ("outputs", 1)):
                v = o[q][lim]
                c.note("selfcheck (C)", v)
                if not v < TOL:
                    c.fail("%s %s: %.3g" % (where, q, v))
            for f, lim in (("bk_pattern", 1e-5), ("bk_pattern_exact", 1e-10)):
                if not o[f] < lim:
                    c.fail("%s %s: %.3g" % (where, f, o[f]))
            if not o["bk_spread"] <= 1e-9 * max(1.0, o["bk_shift"]):
                c.fail("%s shift spread %.3g" % (where, o["bk_spread"]))
            # the factored pattern in numpy against the C forward's
            z = fw["z"][b]
            W = m.blk(b, "attn.c_attn.weight")
            bias = m.blk(b, "attn.c_attn.bias", 3 * m.d)
            sl = slice(h * m.dh, (h + 1) * m.dh)
            Wq, Wk = W[:, :m.d][:, sl], W[:, m.d:2 * m.d][:, sl]
            bq, bk = bias[:m.d][sl], bias[m.d:2 * m.d][sl]
            S = (z @ (Wq @ Wk.T) @ z.T + (z @ (Wq @ bk))[:, None] + (z @ (Wk @ bq))[None, :] + bq @ bk) / np.sqrt(m.dh)
            S = np.where(mask, S, -np.inf)
            e = np.exp(S - S.max(axis=1, keepdims=True))
            A = e / e.sum(axis=1, keepdims=True)
            d = np.abs(A - P[b, h]).max()
            c.note("factored patterns vs C", d)
            if not d < TOL:
                c.fail("%s: numpy factored pattern vs C forward %.3g" % (where, d))


def compare(ours, m, blocks, ids, phrase, k, top, N, near_tie):
    c = Cmp(near_tie)
    for key in ("n_layer", "n_head", "n_embd", "n_inner", "vocab_size"):
        ref = {"n_layer": m.L, "n_head": m.H, "n_embd": m.d, "n_inner": m.F, "vocab_size": m.V}[key]
        if ours["config"][key] != ref:
            c.fail("config %s: %s vs %s" % (key, ours["config"][key], ref))
    for ob, b in zip(ours["blocks"], blocks):
        check_values(c, m, b, ob["values"], k)
        check_svd(c, m, b, ob["svd"], top, k)
        check_keys(c, m, b, ob["keys"], N)
    for entry in ours["search"]:
        check_search(c, m, entry, k)
    fw = m.forward(phrase)
    check_updates(c, m, fw, ours["updates"], k)
    NL = 2 * m.L + 1
    check_layers(c, m, ours["layernorm"]["wte"], [m.E] * NL, "wte", k)
    st = []
    for b in range(m.L):
        st += [fw["x0"] if b == 0 else fw["resid"][b - 1], fw["mid"][b]]
    st.append(fw["resid"][-1])
    check_layers(c, m, ours["layernorm"]["phrase"], st, "phrase", k)
    check_sketch(c, m, ours["sketch"])
    check_selfcheck(c, m, fw, ours["selfcheck"], ours["patterns"], len(phrase))
    return c


def parse_ints(s):
    return [int(x) for x in s.split(",") if x != ""] if s else None


def run_check(a):
    tmp = tempfile.mkdtemp(prefix="beyond-ref-")
    status = 0
    try:
        if a.model:
            cases = [("given", a.model)]
        else:
            cases = []
            for name, extra in (("tiny f32", ["--shape", "tiny", "--seed", "7"]),
                                ("small bf16 prefixed", ["--layers", "2", "--heads", "4", "--embd", "64", "--vocab",
                                                         "1000", "--ctx", "16", "--dtype", "bf16", "--prefix",
                                                         "--seed", "3"])):
                d = os.path.join(tmp, name.replace(" ", "_"))
                subprocess.run([a.synth, "--out", d, "--no-tokenizer", "-q"] + extra, check=True)
                cases.append((name, d))
        for name, d in cases:
            m = Model(d)
            blocks = parse_ints(a.blocks) or list(range(m.L))
            ids = parse_ints(a.ids) or [0, m.V - 1, 17 % m.V]
            phrase = parse_ints(a.phrase) or [(5 + 37 * i) % m.V for i in range(8)]
            top = min(a.top, m.d, m.F)
            N = a.queries
            cmd = [a.driver, "beyond", "--model", d, "--blocks", ",".join(map(str, blocks)), "--ids",
                   ",".join(map(str, ids)), "--phrase", ",".join(map(str, phrase)), "--k", str(a.k), "--top",
                   str(top), "--queries", str(N)]
            t0 = time.time()
            p = subprocess.run(cmd, check=True, stdout=subprocess.PIPE)
            t1 = time.time()
            ours = json.loads(p.stdout)
            c = compare(ours, m, blocks, ids, phrase, a.k, top, N, a.near_tie)
            t2 = time.time()
            print("== %s: %s (L=%d H=%d d=%d d_ff=%d V=%d), blocks %s, k %d, top %d, %d queries "
                  "(C %.1f s, numpy %.1f s)" % (name, d, m.L, m.H, m.d, m.F, m.V, blocks, a.k, top, N, t1 - t0,
                                                t2 - t1))
            if a.keep:
                os.makedirs(a.keep, exist_ok=True)
                with open(os.path.join(a.keep, name.replace(" ", "_") + ".ours.json"), "w") as f:
                    json.dump(ours, f)
            status |= report(c)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("check")
    k.add_argument("--driver", required=True)
    k.add_argument("--synth")
    k.add_argument("--model")
    k.add_argument("--blocks")
    k.add_argument("--ids")
    k.add_argument("--phrase")
    k.add_argument("--k", type=int, default=5)
    k.add_argument("--top", type=int, default=6)
    k.add_argument("--queries", type=int, default=64)
    k.add_argument("--near-tie", type=float, default=0.0)
    k.add_argument("--keep")
    a = ap.parse_args()
    if not a.model and not a.synth:
        ap.error("check needs --synth (or --model)")
    return run_check(a)


if __name__ == "__main__":
    sys.exit(main())
