"""Integration tests of issue 3's routes on the real twd binary.

The numbers themselves are checked against an independent numpy reference by
tests/ref (suite 'ana'); here: the answers' shape and contract, formats, the
answer cache, single computation of a cold block, and every bad input.
"""
import csv
import io
import os
import re
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import Daemon, OneDaemon, assert_token, error_at, module_checkpoint  # noqa: E402

# 4 blocks, 4 heads of width 16, a vocabulary where the common nouns are tokens
SHAPE = ("--layers", "4", "--heads", "4", "--embd", "64", "--vocab", "4096", "--ctx", "64", "--seed", "3")
TMP, MODEL, setUpModule, tearDownModule = module_checkpoint("twd-ana-", "small", "tiny", *SHAPE)


class AnalysesApiTest(OneDaemon, unittest.TestCase):
    daemon_args = ("--set", "max_k=50", "--set", "max_words=200", "--set", "max_answer_tokens=50000")
    daemon_model = MODEL

    def assertToken(self, t, score=True):
        assert_token(self, t, score)

    # ---- /embeddings ----
    def test_embeddings(self):
        st, doc = self.d.get_json("/embeddings", scheme="all", k=5)
        self.assertEqual(st, 200)
        self.assertEqual(set(doc["schemes"]), {"norm", "scaled", "bias", "scaled_bias"})
        for name, s in doc["schemes"].items():
            top = [t["score"] for t in s["top"]]
            bottom = [t["score"] for t in s["bottom"]]
            self.assertEqual(len(top), 5)
            self.assertEqual(top, sorted(top, reverse=True))
            self.assertEqual(bottom, sorted(bottom))
            self.assertGreaterEqual(min(top), max(bottom))
            for t in s["top"] + s["bottom"]:
                self.assertToken(t)
        st, one = self.d.get_json("/embeddings", scheme="scaled", k=3)
        self.assertEqual(list(one["schemes"]), ["scaled"])
        self.assertEqual([t["id"] for t in one["schemes"]["scaled"]["top"]],
                         [t["id"] for t in doc["schemes"]["scaled"]["top"][:3]])

    def test_embeddings_csv(self):
        st, h, body = self.d.get("/embeddings", scheme="norm", k=4, format="csv")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/csv"))
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        self.assertEqual(len(rows), 8)
        self.assertEqual(set(r["list"] for r in rows), {"top", "bottom"})
        st, doc = self.d.get_json("/embeddings", scheme="norm", k=4)
        self.assertEqual([int(r["id"]) for r in rows if r["list"] == "top"],
                         [t["id"] for t in doc["schemes"]["norm"]["top"]])

    def test_normalization(self):
        st, doc = self.d.get_json("/embeddings/normalization")
        self.assertEqual(st, 200)
        self.assertGreater(doc["avg_norm"], 0)
        self.assertEqual([r["matrix"] for r in doc["rows"]], ["E", "E - c", "sE", "s(E - c)"])
        for r in doc["rows"]:
            self.assertGreaterEqual(r["l2_mean"], 0)
            self.assertGreaterEqual(r["cos_std"], 0)

    # ---- /probe ----
    def test_probe_default_words(self):
        st, doc = self.d.get_json("/probe", block=1, k=3)
        self.assertEqual(st, 200)
        self.assertTrue(doc["default_words"])
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "config", "common_nouns.txt")) as f:
            nouns = [line.strip() for line in f if line.strip()]
        got = [w["word"] for w in doc["words"]] + [s["word"] for s in doc["skipped"]]
        self.assertEqual(sorted(got), sorted(nouns))
        w = doc["words"][0]
        self.assertToken(w["token"], score=False)
        self.assertEqual(len(w["heads"]), 4)
        for h in w["heads"]:
            self.assertEqual(len(h["keys"]), 3)
            self.assertEqual(len(h["values"]), 3)
            self.assertIsInstance(h["norm"], float)
            self.assertGreater(h["norm"], 0)
            self.assertNotIn("value_norm", h)
        self.assertEqual(len(w["layer"]["values"]), 3)

    def test_probe_get_post_and_skips(self):
        st, g = self.d.get_json("/probe", block=2, k=2, words="time,year,xqzjv")
        self.assertEqual(st, 200)
        st, p = self.d.post_json("/probe", {"block": 2, "k": 2, "words": ["time", "year", "xqzjv"]})
        self.assertEqual(st, 200)
        self.assertEqual(g, p)
        self.assertEqual([w["word"] for w in g["words"]], ["time", "year"])
        sk = g["skipped"][0]
        self.assertEqual(sk["word"], "xqzjv")
        self.assertEqual(sk["reason"], "encodes to more than one token")
        self.assertGreater(len(sk["tokens"]), 1)
        for t in sk["tokens"]:
            self.assertToken(t, score=False)
        # the split is the tokenizer's own
        st, tk = self.d.get_json("/tokenize", text="xqzjv")
        self.assertEqual(sk["tokens"], tk["tokens"])

    def test_probe_csv(self):
        st, h, body = self.d.get("/probe", block=0, k=2, words="time", format="csv")
        self.assertEqual(st, 200)
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        # 4 heads x (keys + values) x 2 + layer values x 2
        self.assertEqual(len(rows), 4 * 2 * 2 + 2)

    # ---- /svd ----
    def test_svd(self):
        st, doc = self.d.get_json("/svd", block=3, top=5, k=4)
        self.assertEqual(st, 200)
        self.assertEqual((doc["dh"], len(doc["heads"])), (16, 4))
        for h in doc["heads"]:
            for m in ("qk", "vo"):
                sv = h[m]["singular_values"]
                self.assertEqual(len(sv), 16)
                self.assertEqual(sv, sorted(sv, reverse=True))
                cov = h[m]["coverage"]
                self.assertAlmostEqual(cov[-1], 1.0, places=6)
                first = next(i for i, c in enumerate(cov) if c > 0.99)
                self.assertAlmostEqual(h[m]["frac99"], (first + 1) / 16)
                self.assertEqual(len(h[m]["directions"]), 5)
                for r, d in enumerate(h[m]["directions"]):
                    self.assertEqual(d["rank"], r + 1)  # 1-based, as every rank
                    self.assertAlmostEqual(d["singular_value"], sv[r])
                    self.assertIn(d["sign"], (1, -1))
                    self.assertEqual(len(d["left"]), 4)
                    for t in d["left"] + d["right"]:
                        self.assertToken(t)

    def test_svd_one_head_matches_all(self):
        st, all_ = self.d.get_json("/svd", block=1, matrix="vo", top=3, k=2)
        st, one = self.d.get_json("/svd", block=1, matrix="vo", top=3, k=2, head=2)
        self.assertEqual(len(one["heads"]), 1)
        self.assertEqual(one["heads"][0]["head"], 2)
        a, o = all_["heads"][2]["vo"], one["heads"][0]["vo"]
        for key in ("singular_values", "coverage"):
            for x, y in zip(a[key], o[key]):
                self.assertAlmostEqual(x, y, delta=1e-6 * max(1.0, abs(x)))
        for da, do in zip(a["directions"], o["directions"]):
            self.assertEqual(da["sign"], do["sign"])
            for side in ("left", "right"):
                self.assertEqual([t["id"] for t in da[side]], [t["id"] for t in do[side]])
                for ta, to in zip(da[side], do[side]):
                    self.assertAlmostEqual(ta["score"], to["score"], delta=1e-5 * max(1.0, abs(ta["score"])))
        self.assertNotIn("qk", one["heads"][0])

    def test_svd_formats(self):
        st, h, body = self.d.get("/svd", block=0, top=2, k=3, format="latex")
        self.assertEqual(st, 200)
        self.assertIn("latex", h["content-type"])
        text = body.decode()
        self.assertEqual(text.count("\\begin{tabular}"), 8)  # 4 heads x 2 matrices
        # no unescaped special characters inside the token cells
        for cell in re.findall(r"\\texttt\{((?:[^{}\\]|\\[#$%&_{}]|\\text\w+\{\})*)\}", text):
            self.assertNotRegex(cell, r"(?<!\\)[#$%&_]")
        st, h, body = self.d.get("/svd", block=0, top=2, k=3, format="csv")
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        self.assertEqual(len(rows), 4 * 2 * 2 * 2 * 3)

    def test_svd_spectrum_only(self):
        st, doc = self.d.get_json("/svd", block=0, top=0)
        self.assertEqual(st, 200)
        self.assertEqual(doc["heads"][0]["qk"]["directions"], [])
        self.assertEqual(len(doc["heads"][0]["qk"]["singular_values"]), 16)

    def test_svd_bias(self):
        st, doc = self.d.get_json("/svd/bias", block=2, k=3)
        self.assertEqual(st, 200)
        self.assertEqual(len(doc["heads"]), 4)
        for h in doc["heads"]:
            for key in ("a", "-a", "c", "-c"):
                self.assertEqual(len(h[key]), 3)
            # the top of -a is the bottom of a: disjoint from the top of a here
            self.assertFalse({t["id"] for t in h["a"]} & {t["id"] for t in h["-a"]})

    # ---- caching and concurrency ----
    def test_answer_cache(self):
        target = "/svd?block=2&top=4&k=2&matrix=qk"
        st, h1, b1 = self.d.request("GET", target)
        st, h2, b2 = self.d.request("GET", target)
        self.assertEqual(b1, b2)
        self.assertEqual(h2["x-twd-cache"], "hit")
        # the same parameters spelled differently are the same answer
        st, h3, b3 = self.d.request("GET", "/svd?k=2&matrix=qk&top=4&block=2&format=json")
        self.assertEqual((h3["x-twd-cache"], b3), ("hit", b1))

    def test_cold_block_computed_once(self):
        def misses():
            text = self.d.get("/metrics")[2].decode()
            return int(re.search(r'twd_cache_misses_total\{model="[^"]*",cache="intermediates"\} (\d+)', text).group(1))

        results = []

        def worker(i, block):
            results.append(self.d.get_json("/probe", block=block, k=2 + i % 2, words="time,year")[0])

        def probes(block):
            ts = [threading.Thread(target=worker, args=(i, block)) for i in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        before = misses()
        probes(3)
        self.assertEqual(results, [200] * 6)
        # the intermediates of a two-word probe are the model's statistics of E and
        # max |E_j| (computed at load; LN_3(E) is never formed whole) and the two
        # words' kept lists: each filled once at most
        self.assertLessEqual(misses() - before, 2)
        before = misses()
        probes(2)
        self.assertEqual(results, [200] * 12)
        self.assertEqual(misses() - before, 2)  # per block only the words' lists

    def test_statistics_of_e_ready_at_load(self):
        """The statistics of E (and max |E_j|) every analysis starts from are in the
        cache when the daemon is ready, so the first probe computes neither."""
        def misses(d):
            text = d.get("/metrics")[2].decode()
            return int(re.search(r'twd_cache_misses_total\{model="[^"]*",cache="intermediates"\} (\d+)',
                                 text).group(1))

        with Daemon(model=self.daemon_model) as d:
            self.assertEqual(misses(d), 2)  # lnstats(E), maxnorm(E): filled at load
            st, _, _ = d.get("/probe", block=1, k=2, words="time,year")
            self.assertEqual(st, 200)
            self.assertEqual(misses(d), 2 + 2)  # only the two words' kept lists

    def test_probe_words_kept(self):
        """A word's lists are kept per block: the same words with a smaller k, or
        with some new words, give what a fresh daemon gives, filling only the new
        words' lists."""
        def misses(d):
            text = d.get("/metrics")[2].decode()
            return int(re.search(r'twd_cache_misses_total\{model="[^"]*",cache="intermediates"\} (\d+)',
                                 text).group(1))

        with Daemon(model=self.daemon_model) as d, Daemon(model=self.daemon_model) as fresh:
            st, _, _ = d.get("/probe", block=2, k=6, words="time,year,people")
            self.assertEqual(st, 200)
            before = misses(d)
            for words, k, fills in (("time,year,people", 4, 0), ("year,way,time", 9, 1)):
                st, _, body = d.get("/probe", block=2, k=k, words=words)
                self.assertEqual(st, 200)
                self.assertEqual(misses(d) - before, fills, words)
                before = misses(d)
                st, _, ref = fresh.get("/probe", block=2, k=k, words=words)
                self.assertEqual(body, ref, words)

    def test_screening_units_agree(self):
        """The lists do not depend on the unit that screens them: the fp32 GEMM, 16-bit
        integer products on AVX512-VNNI and on AVX-VNNI, and bf16 tiles on AMX (those this
        CPU has) give the same bytes, all of their lists certified."""
        targets = (("/svd", dict(block=1, top=16, k=5)), ("/svd", dict(block=3, matrix="vo", k=7)),
                   ("/probe", dict(block=2, k=5)), ("/probe", dict(block=0, k=3)))
        seen = {}
        for env in ({"TWD_AMX": "0", "TWD_VNNI": "0"}, {"TWD_AMX": "0"}, {"TWD_AMX": "0", "TWD_VNNI": "256"}, {}):
            with Daemon(model=self.daemon_model, env=env) as d:
                unit = re.search(r'twd_topk_unit\{unit="(\w+)"\} 1', d.get("/metrics")[2].decode()).group(1)
                if not seen:
                    self.assertEqual(unit, "fp32")
                bodies = []
                for path, params in targets:
                    st, _, body = d.get(path, **params)
                    self.assertEqual(st, 200, (unit, path))
                    bodies.append(body)
                scans = int(re.search(r"twd_topk_exact_scans_total (\d+)", d.get("/metrics")[2].decode()).group(1))
                self.assertEqual(scans, 0, unit)
            if unit in seen:
                continue
            seen[unit] = bodies
            for (path, params), a, b in zip(targets, seen["fp32"], bodies):
                self.assertEqual(a, b, (unit, path, params))
        sys.stderr.write("screening units compared: %s\n" % ", ".join(seen))

    # ---- bad input ----
    def test_bad_input(self):
        error_at(self, self.d, "/svd", 400, "'block'", "required")
        error_at(self, self.d, "/svd?block=4", 400, "'block'", "0..3")
        error_at(self, self.d, "/svd?block=-1", 400, "'block'", "0..3")
        error_at(self, self.d, "/svd?block=x", 400, "'block'", "integer")
        error_at(self, self.d, "/svd?block=1&head=4", 400, "'head'", "0..3")
        error_at(self, self.d, "/svd?block=1&k=0", 400, "'k'", "1..50")
        error_at(self, self.d, "/svd?block=1&k=51", 400, "'k'", "1..50")
        # more directions than the head dimension (16) is all of them: a bound the client
        # cannot know; more than max_top (the configuration's) is refused
        st, seventeen = self.d.get_json("/svd", block=1, top=17, k=2)
        st2, sixteen = self.d.get_json("/svd", block=1, top=16, k=2)
        self.assertEqual((st, st2, seventeen["top"]), (200, 200, 16))
        self.assertEqual(seventeen, sixteen)
        error_at(self, self.d, "/svd?block=1&top=65", 400, "'top'", "0..64")
        error_at(self, self.d, "/svd?block=1&matrix=qv", 400, "'matrix'", "both, qk, vo")
        error_at(self, self.d, "/svd?block=1&format=xml", 400, "'format'", "json, csv, latex")
        error_at(self, self.d, "/embeddings?scheme=cosine", 400, "'scheme'", "norm")
        error_at(self, self.d, "/embeddings?format=latex", 400, "'format'")
        error_at(self, self.d, "/probe?block=0&words=", 400, "'words'", "at least 1")
        error_at(self, self.d, "/probe?block=0&words=a,,b", 400, "'words'", "item 1 is empty")
        error_at(self, self.d, "/probe?block=0&words=ok,%ff", 400, "'words'", "UTF-8")
        many = ",".join(["w%d" % i for i in range(201)])
        error_at(self, self.d, "/probe?block=0&words=" + many, 400, "'words'", "limit is 200")
        error_at(self, self.d, "/probe", 400, "'words'", "array", method="POST", body=b'{"block": 0, "words": "time"}')
        error_at(self, self.d, "/probe", 400, "'block'", "integer", method="POST", body=b'{"block": "0"}')
        error_at(self, self.d, "/probe", 400, "'k'", method="POST", body=b'{"block": 0, "k": 1.5}')
        error_at(self, self.d, "/probe", 400, "'words'", "item 0 is not a string", method="POST",
                         body=b'{"block": 0, "words": [1]}')
        error_at(self, self.d, "/svd/bias?block=9", 400, "'block'")
        # an answer too large to build is refused before any work
        words = ",".join(["time"] * 200)
        error_at(self, self.d, "/probe?block=0&k=50&words=" + words, 400, "max_answer_tokens", "words or k")
        error_at(self, self.d, "/svd/bias", 405, method="POST", body=b"{}")
        self.assertEqual(self.d.get("/health")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
