"""Integration tests of the routes beyond the paper's attention analyses
(docs/MATH.md §9-§13) on the real twd binary: /mlp/values, /mlp/svd,
/mlp/updates, /mlp/search, /layernorm, /layernorm/sketch, /selfcheck.

The numbers are checked against an independent numpy reference by
tests/ref/beyond_ref.py (suite 'ana'); here: every route answers in JSON and
CSV, the answers' shape and internal consistency, and every bad parameter is
the one JSON 400.
"""
import csv
import io
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import SANITIZER, Daemon, error_at, make_checkpoint  # noqa: E402

TMP = tempfile.mkdtemp(prefix="twd-beyond-")
MODEL = os.path.join(TMP, "small")
WIDE = os.path.join(TMP, "wide")
# 4 blocks, 4 heads of width 16, d_ff 256, a vocabulary where common words are tokens
SHAPE = ("--layers", "4", "--heads", "4", "--embd", "64", "--vocab", "4096", "--ctx", "64", "--seed", "3")
# the 124M model's widths (d 768, 12 heads, d_ff 3072) with 2 blocks and a small vocabulary
WIDE_SHAPE = ("--layers", "2", "--heads", "12", "--embd", "768", "--vocab", "4096", "--ctx", "64", "--seed", "5")
PHRASE = "To kill two birds with one stone"
TOKEN_KEYS = {"id", "text", "bytes"}


def setUpModule():
    make_checkpoint(MODEL, "tiny", *SHAPE)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def rows_of(body):
    return list(csv.DictReader(io.StringIO(body.decode()), ))


class BeyondApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--set", "max_k=50", "--set", "max_answer_tokens=50000", model=MODEL).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        assert rc == 0, cls.d.stderr()
        assert not SANITIZER.search(cls.d.stderr()), cls.d.stderr()

    def ok_json(self, path, **params):
        st, doc = self.d.get_json(path, **params)
        self.assertEqual(st, 200, doc)
        return doc

    def ok_csv(self, path, header, **params):
        st, h, body = self.d.get(path, format="csv", **params)
        self.assertEqual(st, 200, body[:300])
        self.assertTrue(h["content-type"].startswith("text/csv"), h)
        self.assertEqual(body.decode().split("\r\n")[0], header)
        return rows_of(body)

    def assertToken(self, t, score=True):
        self.assertTrue(TOKEN_KEYS <= set(t), t)
        self.assertEqual(t["text"], bytes(t["bytes"]).decode("utf-8", "replace"))
        if score:
            self.assertIsInstance(t["score"], float)

    # ---- /mlp/values ----
    def test_values(self):
        doc = self.ok_json("/mlp/values", block=1, k=3)
        self.assertEqual((doc["block"], doc["k"], doc["n_neurons"]), (1, 3, 256))
        self.assertEqual([n["neuron"] for n in doc["neurons"]], list(range(256)))
        for n in doc["neurons"][:20]:
            self.assertGreater(n["norm"], 0)
            top, bottom = [t["score"] for t in n["top"]], [t["score"] for t in n["bottom"]]
            self.assertEqual(top, sorted(top, reverse=True))
            self.assertEqual(bottom, sorted(bottom))
            self.assertGreater(min(top), max(bottom))
            for t in n["top"] + n["bottom"]:
                self.assertToken(t)
        sub = self.ok_json("/mlp/values", block=1, k=3, neurons="255,0,7")
        self.assertEqual([n["neuron"] for n in sub["neurons"]], [255, 0, 7])
        self.assertEqual(sub["neurons"][0], doc["neurons"][255])
        rows = self.ok_csv("/mlp/values", "block,neuron,norm,list,rank,id,text,score", block=1, k=2, neurons="3,4")
        self.assertEqual(len(rows), 2 * 2 * 2)
        self.assertEqual([int(r["id"]) for r in rows if r["neuron"] == "3" and r["list"] == "top"],
                         [t["id"] for t in doc["neurons"][3]["top"][:2]])

    # ---- /mlp/search ----
    def test_search(self):
        doc = self.ok_json("/mlp/search", token="time", k=5)
        self.assertToken(doc["token"], score=False)
        self.assertIsNone(doc["block"])
        self.assertEqual(doc["n_neurons"], 4 * 256)
        scores = [n["score"] for n in doc["neurons"]]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual([n["rank"] for n in doc["neurons"]], [1, 2, 3, 4, 5])
        tid = doc["token"]["id"]
        # the same by id; one block is the block's part of the whole
        self.assertEqual(self.ok_json("/mlp/search", token=str(tid), k=5)["neurons"], doc["neurons"])
        best = doc["neurons"][0]
        one = self.ok_json("/mlp/search", token=str(tid), k=3, block=best["block"])
        self.assertEqual(one["neurons"][0]["neuron"], best["neuron"])
        self.assertEqual(one["n_neurons"], 256)
        # token_rank agrees with the neuron's own list of /mlp/values
        vals = self.ok_json("/mlp/values", block=best["block"], neurons=str(best["neuron"]), k=50)["neurons"][0]
        ids = [t["id"] for t in vals["top"]]
        if best["token_rank"] <= 50:
            self.assertEqual(ids[best["token_rank"] - 1], tid)
        else:
            self.assertNotIn(tid, ids)
        self.assertAlmostEqual(vals["norm"], best["norm"], places=12)
        rows = self.ok_csv("/mlp/search", "rank,block,neuron,score,norm,token_rank", token="time", k=5)
        self.assertEqual([(int(r["block"]), int(r["neuron"])) for r in rows],
                         [(n["block"], n["neuron"]) for n in doc["neurons"]])

    # ---- /mlp/svd ----
    def test_svd(self):
        doc = self.ok_json("/mlp/svd", block=2, top=3, k=4)
        self.assertEqual(doc["rank"], 64)
        self.assertEqual(set(doc["matrices"]), {"in", "out"})
        for name, m in doc["matrices"].items():
            sv = m["singular_values"]
            self.assertEqual(len(sv), 64)
            self.assertEqual(sv, sorted(sv, reverse=True))
            self.assertAlmostEqual(m["coverage"][-1], 1.0, places=9)
            first = next(i for i, c in enumerate(m["coverage"]) if c > 0.99)
            self.assertAlmostEqual(m["frac99"], (first + 1) / 64)
            self.assertEqual(len(m["directions"]), 3)
            for r, d in enumerate(m["directions"]):
                self.assertEqual((d["rank"], d["singular_value"]), (r + 1, sv[r]))  # ranks are 1-based
                self.assertIn(d["sign"], (1, -1))
                self.assertEqual(d["neuron_side"], "right" if name == "in" else "left")
                self.assertEqual(len(d["left"]), 4)
                self.assertEqual(len(d["neurons"]), 4)
                for t in d["left"] + d["right"]:
                    self.assertToken(t)
                self.assertTrue(all(0 <= n["neuron"] < 256 for n in d["neurons"]))
                # the model-space side is sign-aligned: its top score beats the opposite end
                side = d["left"] if name == "in" else d["right"]
                self.assertGreater(side[0]["score"], 0)
        one = self.ok_json("/mlp/svd", block=2, top=3, k=4, matrix="out")
        self.assertEqual(list(one["matrices"]), ["out"])
        self.assertEqual(one["matrices"]["out"], doc["matrices"]["out"])
        rows = self.ok_csv("/mlp/svd", "block,matrix,direction,singular_value,sign,side,list,rank,id,text,neuron,score",
                           block=2, top=2, k=3)
        self.assertEqual({r["direction"] for r in rows}, {"1", "2"})
        self.assertEqual(len(rows), 2 * 2 * 3 * 3)
        self.assertEqual({r["list"] for r in rows}, {"tokens", "neurons"})
        self.assertTrue(all(r["neuron"] == "" for r in rows if r["list"] == "tokens"))
        self.assertTrue(all(r["id"] == "" for r in rows if r["list"] == "neurons"))
        rows = self.ok_csv("/mlp/svd", "block,matrix,rank,singular_value,coverage", block=2, top=0, table="spectra")
        self.assertEqual(len(rows), 2 * 64)
        self.assertEqual((rows[0]["block"], rows[0]["rank"]), ("2", "1"))
        spectrum = self.ok_json("/mlp/svd", block=2, top=0)
        self.assertEqual(spectrum["matrices"]["in"]["directions"], [])

    # ---- /mlp/updates ----
    def test_updates(self):
        doc = self.ok_json("/mlp/updates", text=PHRASE, top=4, k=2)
        n = doc["n_tokens"]
        self.assertEqual(len(doc["tokens"]), n)
        self.assertEqual([b["block"] for b in doc["blocks"]], [0, 1, 2, 3])
        for b in doc["blocks"]:
            self.assertGreater(b["bias_norm"], 0)
            self.assertEqual(len(b["positions"]), n)
            for p in b["positions"]:
                w = [u["weight"] for u in p["updates"]]
                self.assertEqual(len(w), 4)
                self.assertEqual(w, sorted(w, reverse=True))
                for u in p["updates"]:
                    self.assertAlmostEqual(u["weight"], abs(u["coefficient"]) * u["norm"], delta=1e-9)
                    self.assertEqual(len(u["top"]), 2)
        one = self.ok_json("/mlp/updates", text=PHRASE, top=4, k=2, block=2)
        self.assertEqual(one["blocks"], [doc["blocks"][2]])
        st, post = self.d.post_json("/mlp/updates", {"text": PHRASE, "top": 4, "k": 2, "block": 2})
        self.assertEqual((st, post), (200, one))
        # the value tokens of a listed neuron are that neuron's /mlp/values top list
        u = doc["blocks"][1]["positions"][0]["updates"][0]
        v = self.ok_json("/mlp/values", block=1, k=2, neurons=str(u["neuron"]))["neurons"][0]
        self.assertEqual(u["top"], v["top"])
        self.assertAlmostEqual(u["norm"], v["norm"], places=12)
        erf = self.ok_json("/mlp/updates", text=PHRASE, top=4, k=2, gelu="erf")
        self.assertEqual(erf["gelu"], "erf")
        rows = self.ok_csv("/mlp/updates",
                           "block,position,token_id,token_text,update_norm,rank,neuron,coefficient,norm,weight,"
                           "value_rank,id,text,score", text=PHRASE, top=3, k=2, block=0)
        self.assertEqual(len(rows), n * 3 * 2)

    # ---- /layernorm ----
    def test_layernorm(self):
        doc = self.ok_json("/layernorm", k=3, keys="random", queries=128)
        self.assertEqual(doc["states"], "wte")
        self.assertEqual(doc["n_states"], 4096)
        names = [l["name"] for l in doc["layers"]]
        self.assertEqual(names, ["h.%d.%s" % (b, k) for b in range(4) for k in ("ln_1", "ln_2")] + ["ln_f"])
        for l in doc["layers"]:
            self.assertLess(l["mean"]["after_max_abs"], 1e-6)
            self.assertLessEqual(l["mean"]["after_abs"], l["mean"]["after_max_abs"])
            self.assertLess(abs(l["radius"]["mean"] - 8.0), 0.5)  # sqrt(64)
            self.assertGreaterEqual(abs(l["gamma"]["max"]["value"]), abs(l["gamma"]["min"]["value"]))
            for key in ("top", "bottom"):
                self.assertEqual(len(l["gamma"]["max"][key]), 3)
            self.assertGreater(l["beta_norm"], 0)
            self.assertEqual(len(l["beta"]["top"]), 3)
            self.assertGreater(l["change"]["mean"], 0)
        self.assertIsNone(doc["layers"][-1]["block"])
        keys = doc["keys"]
        self.assertEqual((keys["method"], keys["queries"], keys["description"]), ("random", 128, "sampled, 128 queries"))
        self.assertEqual(len(keys["heads"]), 4 * 4)
        for h in keys["heads"]:
            self.assertLessEqual(h["selectable"], 128)
            self.assertAlmostEqual(h["unselectable_fraction"], 1 - h["selectable"] / 4096)
            self.assertGreaterEqual(h["unselectable_fraction"], keys["floor"] - 1e-12)
        t = self.ok_json("/layernorm", k=3, keys="targeted", queries=64, keys_block=2)
        self.assertEqual([h["block"] for h in t["keys"]["heads"]], [2] * 4)
        self.assertEqual(t["keys"]["description"], "targeted, 64 drawn keys")
        # targeted is the default; asking for more keys than the vocabulary has draws all of them
        dflt = self.ok_json("/layernorm", k=1, keys_block=1)
        self.assertEqual((dflt["keys"]["method"], dflt["keys"]["queries"]), ("targeted", 256))
        every = self.ok_json("/layernorm", k=1, keys_block=1, queries=5000)
        self.assertEqual(every["keys"]["queries"], 4096)
        # with a phrase: the states of the forward pass
        p = self.ok_json("/layernorm", text=PHRASE, k=3, keys="none")
        self.assertEqual(p["states"], "phrase")
        self.assertIsNone(p["keys"])
        self.assertEqual(p["n_states"], len(p["tokens"]))
        self.assertEqual({l["rows"] for l in p["layers"]}, {p["n_states"]})
        st, post = self.d.post_json("/layernorm", {"text": PHRASE, "k": 3, "keys": "none"})
        self.assertEqual((st, post), (200, p))
        # the gamma lists do not depend on the states
        self.assertEqual(p["layers"][3]["gamma"], doc["layers"][3]["gamma"])
        rows = self.ok_csv("/layernorm", "name,block,kind,rows,mean_before,mean_abs_before,mean_abs_after,"
                           "max_abs_after,radius_mean,radius_std,gamma_max_index,gamma_max,gamma_min_index,gamma_min,"
                           "beta_norm,change_mean,change_std", keys="none")
        self.assertEqual([r["name"] for r in rows], names)
        self.assertEqual(rows[-1]["block"], "")
        rows = self.ok_csv("/layernorm", "name,list,rank,id,text,score", keys="none", k=2, table="lists")
        self.assertEqual(len(rows), 9 * 5 * 2)
        rows = self.ok_csv("/layernorm", "block,head,method,queries,selectable,unselectable_fraction",
                           queries=32, keys_block=1, table="keys")
        self.assertEqual([(r["block"], r["head"]) for r in rows], [("1", str(h)) for h in range(4)])

    # ---- /layernorm/sketch ----
    def test_sketch(self):
        doc = self.ok_json("/layernorm/sketch", block=1, head=2)
        self.assertTrue(doc["default_dims"])
        self.assertEqual([s["name"] for s in doc["stages"]], ["circle", "gamma", "gamma+beta", "w_qk"])
        circ, gam, sh, qk = (s["points"] for s in doc["stages"])
        self.assertEqual(len(circ), 64)
        # every number is printed with the 9 significant digits of float32
        # (docs/API.md), so the identities hold to that precision
        for c, g, s, q in zip(circ, gam, sh, qk):
            self.assertAlmostEqual(c[0] ** 2 + c[1] ** 2, 1.0, delta=1e-8)
            for a in range(2):
                self.assertAlmostEqual(g[a], doc["gamma"][a] * c[a], delta=1.5e-8 * max(1, abs(g[a])))
                self.assertAlmostEqual(s[a], g[a] + doc["beta"][a], delta=2e-8 * max(1, abs(s[a])))
                self.assertAlmostEqual(q[a], s[0] * doc["w_qk"][0][a] + s[1] * doc["w_qk"][1][a],
                                       delta=4e-8 * max(1, abs(q[a])))
        # the defaults are the two largest |gamma| of the block's ln_1
        ln = self.ok_json("/layernorm", k=1, keys="none")["layers"][2]
        self.assertEqual(doc["dims"][0], ln["gamma"]["max"]["index"])
        self.assertGreaterEqual(abs(doc["gamma"][0]), abs(doc["gamma"][1]))
        given = self.ok_json("/layernorm/sketch", block=1, head=2, dims="5,9", points=8)
        self.assertEqual((given["dims"], given["default_dims"], len(given["stages"][0]["points"])), ([5, 9], False, 8))
        rows = self.ok_csv("/layernorm/sketch", "stage,point,theta,x,y", points=8)
        self.assertEqual(len(rows), 4 * 8)

    # ---- /selfcheck ----
    def test_selfcheck(self):
        doc = self.ok_json("/selfcheck", text=PHRASE)
        self.assertEqual([b["block"] for b in doc["blocks"]], [0, 1, 2, 3])
        for b in doc["blocks"]:
            self.assertEqual(len(b["heads"]), 4)
            for h in b["heads"]:
                for q in ("scores", "patterns", "outputs"):
                    self.assertLess(h[q]["max_rel_diff"], 1e-4, (b["block"], h))
                bk = h["bk_randomised"]
                self.assertLess(bk["pattern_max_abs_diff"], 1e-5)
                self.assertLess(bk["pattern_max_abs_diff_exact"], 1e-12)
                self.assertGreater(bk["score_shift_max"], 0)
                self.assertGreater(bk["bk_norm"], 0)
            self.assertLess(b["total_output"]["max_rel_diff"], 1e-4)
        self.assertLess(doc["max"]["patterns"]["max_abs_diff"], 1e-4)
        one = self.ok_json("/selfcheck", text=PHRASE, block=3)
        self.assertEqual(one["blocks"], [doc["blocks"][3]])
        st, post = self.d.post_json("/selfcheck", {"text": PHRASE, "block": 3})
        self.assertEqual((st, post), (200, one))
        other = self.ok_json("/selfcheck", text=PHRASE, block=3, seed=9)
        self.assertNotEqual(other["blocks"][0]["heads"][0]["bk_randomised"]["score_shift_max"],
                            one["blocks"][0]["heads"][0]["bk_randomised"]["score_shift_max"])
        rows = self.ok_csv("/selfcheck", "block,head,quantity,max_abs_diff,max_rel_diff", text=PHRASE, block=0)
        self.assertEqual(len(rows), 4 * 7 + 1)
        self.assertEqual(rows[-1]["quantity"], "total_output")
        self.assertEqual(rows[-1]["head"], "")

    def test_svd_bias_note(self):
        doc = self.ok_json("/svd/bias", block=0, k=2)
        self.assertIn("cancels in the softmax", doc["note"])

    def test_openapi_and_cache(self):
        doc = self.ok_json("/openapi.json")
        for path in ("/mlp/values", "/mlp/svd", "/mlp/updates", "/mlp/search", "/layernorm", "/layernorm/sketch",
                     "/selfcheck"):
            self.assertIn(path, doc["paths"])
        dims = next(p for p in doc["paths"]["/layernorm/sketch"]["get"]["parameters"] if p["name"] == "dims")
        self.assertEqual(dims["schema"]["type"], "array")  # comma-separated: style form, not exploded
        self.assertEqual((dims["style"], dims["explode"]), ("form", False))
        self.assertEqual((dims["schema"]["minItems"], dims["schema"]["maxItems"]), (2, 2))
        body = doc["paths"]["/selfcheck"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        self.assertEqual(set(body["properties"]), {"text", "block", "seed", "gelu", "format", "model"})
        target = "/mlp/values?block=0&k=2&neurons=1,2"
        st, h1, b1 = self.d.request("GET", target)
        st, h2, b2 = self.d.request("GET", "/mlp/values?neurons=1,2&k=2&block=0&format=json")
        self.assertEqual((h2["x-twd-cache"], b2), ("hit", b1))
        st, h3, b3 = self.d.request("GET", "/mlp/values?block=0&k=2&neurons=2,1")
        self.assertEqual(h3["x-twd-cache"], "miss")

    # ---- bad input: every parameter ----
    def test_bad_input(self):
        E = lambda target, *words, **kw: error_at(self, self.d, target, kw.pop("code", 400), *words, **kw)
        # /mlp/values
        E("/mlp/values", "'block'", "required")
        E("/mlp/values?block=4", "'block'", "0..3")
        E("/mlp/values?block=0&k=0", "'k'", "1..50")
        E("/mlp/values?block=0&k=51", "'k'", "1..50")
        E("/mlp/values?block=0&neurons=256", "'neurons'", "0..255")
        E("/mlp/values?block=0&neurons=-1", "'neurons'", "0..255")
        E("/mlp/values?block=0&neurons=1,x", "'neurons'", "item 1", "integer")
        E("/mlp/values?block=0&neurons=1,,2", "'neurons'", "item 1")
        E("/mlp/values?block=0&neurons=", "'neurons'", "1 to")
        E("/mlp/values?block=0&format=latex", "'format'", "json, csv")
        E("/mlp/values?block=0&neuron=3", "unknown parameter", "neurons")
        E("/mlp/values?block=0&k=50&neurons=" + ",".join(["7"] * 501), "max_answer_tokens")  # 501 x 2 x 50
        E("/mlp/values", "method not allowed", method="POST", body=b"{}", code=405)
        # /mlp/search
        E("/mlp/search", "'token'", "required")
        E("/mlp/search?token=", "'token'", "empty")
        E("/mlp/search?token=hello%20world%20again", "'token'", "tokens")
        E("/mlp/search?token=4096", "'token'", "0..4095")
        E("/mlp/search?token=time&block=4", "'block'", "0..3")
        E("/mlp/search?token=time&k=0", "'k'")
        # /mlp/svd
        E("/mlp/svd", "'block'", "required")
        E("/mlp/svd?block=0&matrix=qk", "'matrix'", "both, in, out")
        E("/mlp/svd?block=0&top=65", "'top'", "0..64")
        E("/mlp/svd?block=0&top=-1", "'top'")
        E("/mlp/svd?block=0&k=0", "'k'", "1..50")
        E("/mlp/svd?block=0&table=rows", "'table'", "directions, spectra")
        # /mlp/updates
        E("/mlp/updates", "'text'", "required")
        E("/mlp/updates?text=", "'text'", "empty")
        E("/mlp/updates?text=%ff", "'text'", "UTF-8")
        E("/mlp/updates?text=hi&top=0", "'top'", "1..64")
        E("/mlp/updates?text=hi&top=65", "'top'", "1..64")
        E("/mlp/updates?text=hi&block=-1", "'block'")
        E("/mlp/updates?text=hi&gelu=relu", "'gelu'", "tanh, erf")
        E("/mlp/updates?text=" + "a%20" * 40 + "&top=50&k=50", "max_answer_tokens")
        E("/mlp/updates", "'top'", "integer", method="POST", body=b'{"text": "hi", "top": "3"}')
        E("/mlp/updates", "'text'", "string", method="POST", body=b'{"text": 3}')
        E("/mlp/updates?text=" + "ab%20" * 80, "'text'", "tokens long")  # > n_ctx 64
        # /layernorm
        E("/layernorm?text=", "'text'", "empty")
        E("/layernorm?keys=exact", "'keys'", "random, targeted, none")
        E("/layernorm?queries=0", "'queries'", "1..65536")
        E("/layernorm?queries=65537", "'queries'", "1..65536")
        E("/layernorm?keys_block=4", "'keys_block'", "0..3")
        E("/layernorm?seed=-1", "'seed'")
        E("/layernorm?table=heads", "'table'", "layers, lists, keys")
        E("/layernorm?k=0", "'k'")
        # /layernorm/sketch
        E("/layernorm/sketch?dims=1", "'dims'", "exactly 2")
        E("/layernorm/sketch?dims=1,2,3", "'dims'", "exactly 2")
        E("/layernorm/sketch?dims=1,64", "'dims'", "0..63")
        E("/layernorm/sketch?dims=3,3", "'dims'", "differ")
        E("/layernorm/sketch?head=4", "'head'", "0..3")
        E("/layernorm/sketch?block=4", "'block'", "0..3")
        E("/layernorm/sketch?points=2", "'points'", "3..4096")
        # /selfcheck
        E("/selfcheck", "'text'", "required")
        E("/selfcheck?text=hi&block=9", "'block'", "0..3")
        E("/selfcheck?text=hi&seed=x", "'seed'", "integer")
        E("/selfcheck?text=hi&format=xml", "'format'")
        E("/selfcheck", "'block'", "integer", method="POST", body=b'{"text": "hi", "block": 1.5}')
        E("/selfcheck", "JSON", method="POST", body=b'{"text": ')
        self.assertEqual(self.d.get("/health")[0], 200)


class SelfCheckWideTest(unittest.TestCase):
    """The self-check at the 124M model's widths (d 768, 12 heads of 64, d_ff 3072)."""

    def test_selfcheck_wide(self):
        make_checkpoint(WIDE, "tiny", *WIDE_SHAPE)
        with Daemon(model=WIDE) as d:
            st, doc = d.get_json("/selfcheck", text=PHRASE)
            self.assertEqual(st, 200, doc)
            for q in ("scores", "patterns", "outputs"):
                self.assertLess(doc["max"][q]["max_rel_diff"], 1e-4, doc["max"])
            self.assertLess(doc["max"]["bk_randomised_pattern_max_abs_diff"], 1e-5)
            self.assertEqual(len(doc["blocks"][0]["heads"]), 12)
            st, doc = d.get_json("/mlp/values", block=1, k=1, neurons="0,3071")
            self.assertEqual((st, [n["neuron"] for n in doc["neurons"]]), (200, [0, 3071]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
