"""Integration tests of issue 13's routes and fields: POST /trajectory/stats and
the faithfulness objects of /trajectory, /umap/layout and /umap."""
import csv
import io
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import Daemon, OneDaemon, error_at, module_checkpoint, wait_umap  # noqa: E402

SHAPE = ("--layers", "3", "--heads", "2", "--embd", "32", "--vocab", "1024", "--ctx", "64", "--seed", "5")
TMP, MODEL, setUpModule, tearDownModule = module_checkpoint("twd-stats-", "small", "tiny", *SHAPE)
NAMES = ["embedding", "embedding+position", "embedding+position, ln_f", "block 0", "block 1", "block 2"]
STATS = ("cos_next", "cos_self", "cos_final", "rank_next", "prob_next")
TEXTS = ["In the beginning God created the heaven and the earth.",
         "And the earth was without form, and void; and darkness was upon the face of the deep.",
         "a",
         "Let there be light: and there was light."]


class StatsTest(OneDaemon, unittest.TestCase):
    daemon_args = ("--set", "max_tokens=40", "--set", "max_stats_texts=8", "--set", "max_stats_tokens=150")
    daemon_model = MODEL

    def post(self, body, query=""):
        st, h, data = self.d.request("POST", "/trajectory/stats" + query, json.dumps(body).encode())
        return st, h, data

    def n_tokens(self, text):
        return self.d.get_json("/tokenize", text=text)[1]["n_tokens"]

    def check_stat(self, s, rank=False):
        keys = {"mean", "std", "ci95"} | ({"median", "top1", "topk"} if rank else set())
        self.assertEqual(set(s), keys)
        self.assertEqual(len(s["ci95"]), 2)
        if s["std"] is not None:
            self.assertLessEqual(s["ci95"][0], s["mean"] + 1e-12)
            self.assertGreaterEqual(s["ci95"][1], s["mean"] - 1e-12)

    def test_texts_json(self):
        st, h, data = self.post({"texts": TEXTS, "k": 3})
        self.assertEqual(st, 200, data[:300])
        doc = json.loads(data)
        lens = [self.n_tokens(t) for t in TEXTS]
        used = [n for n in lens if n >= 2]
        self.assertEqual(doc["source"], "texts")
        self.assertIsNone(doc["corpus"])
        self.assertEqual((doc["k"], doc["gelu"], doc["n_states"]), (3, "tanh", 6))
        self.assertEqual(doc["n_texts"], len(used))
        self.assertEqual(doc["n_texts_skipped"], len(lens) - len(used))
        self.assertEqual(doc["n_tokens"], sum(used))
        self.assertEqual(doc["n_positions"], sum(n - 1 for n in used))
        self.assertEqual(set(doc["buckets"]), {"first", "early", "late"})
        self.assertIn("Student", doc["interval"])
        self.assertEqual([s["name"] for s in doc["states"]], NAMES)
        self.assertEqual([s["index"] for s in doc["states"]], list(range(6)))
        self.assertEqual([s["block"] for s in doc["states"]], [None, None, None, 0, 1, 2])
        first = len(used)
        early = sum(min(n - 1, 8) - 1 for n in used)
        late = sum(max(n - 1 - 8, 0) for n in used)
        for s in doc["states"]:
            self.assertEqual(s["n_positions"], doc["n_positions"])
            for name in STATS:
                self.check_stat(s[name], name == "rank_next")
            self.assertEqual([s["buckets"][b]["n_positions"] for b in ("first", "early", "late")],
                             [first, early, late])
            for b in s["buckets"].values():
                for name in STATS:
                    self.check_stat(b[name], name == "rank_next")
            r = s["rank_next"]
            self.assertGreaterEqual(r["median"], 1)
            self.assertLessEqual(r["top1"], r["topk"])
            self.assertGreaterEqual(r["mean"], 0)  # of ln(rank)
            self.assertTrue(0 <= s["prob_next"]["mean"] <= 1)
            for c in ("cos_next", "cos_self", "cos_final"):
                self.assertTrue(-1 <= s[c]["mean"] <= 1)
            # the "all" mean is the position-weighted mean of the buckets
            w = sum(s["buckets"][b]["n_positions"] * s["buckets"][b]["cos_next"]["mean"]
                    for b in ("first", "early", "late"))
            self.assertAlmostEqual(w / s["n_positions"], s["cos_next"]["mean"], places=8)
        self.assertAlmostEqual(doc["states"][0]["cos_self"]["mean"], 1, places=8)
        self.assertAlmostEqual(doc["states"][-1]["cos_final"]["mean"], 1, places=8)
        # one position in the first bucket per text: no std or interval
        self.assertIsNotNone(doc["states"][0]["buckets"]["first"]["cos_next"]["std"])
        st, h, again = self.post({"texts": TEXTS, "k": 3})
        self.assertEqual(h.get("x-twd-cache"), "hit")
        self.assertEqual(again, data)

    def test_csv(self):
        st, h, data = self.post({"texts": TEXTS[:2], "k": 2, "format": "csv"})
        self.assertEqual(st, 200, data[:300])
        self.assertTrue(h["content-type"].startswith("text/csv"))
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        self.assertEqual(len(rows), 6 * 5 * 4)
        self.assertEqual(list(rows[0]), ["state_index", "state", "block", "statistic", "bucket", "n_positions", "mean", "std",
                                         "ci95_low", "ci95_high", "median", "top1", "topk"])
        st, doc = self.d.post_json("/trajectory/stats", {"texts": TEXTS[:2], "k": 2})
        for r in rows:
            s = doc["states"][int(r["state_index"])]
            self.assertEqual(r["state"], s["name"])
            self.assertEqual(r["block"], "" if s["block"] is None else str(s["block"]))
            cell = s if r["bucket"] == "all" else s["buckets"][r["bucket"]]
            stat = cell[r["statistic"]]
            self.assertEqual(int(r["n_positions"]), cell["n_positions"])
            if stat["mean"] is None:
                self.assertEqual(r["mean"], "")
            else:
                self.assertAlmostEqual(float(r["mean"]), stat["mean"], delta=1e-8 * max(1, abs(stat["mean"])))
            if r["statistic"] == "rank_next":
                self.assertEqual(float(r["median"]), stat["median"])
            else:
                self.assertEqual((r["median"], r["top1"], r["topk"]), ("", "", ""))
        st, h, q = self.post({"texts": TEXTS[:2], "k": 2}, "?format=csv")
        self.assertEqual(q, data)

    def test_corpus(self):
        st, doc = self.d.post_json("/trajectory/stats", {"corpus": "kjv-heldout", "limit": 3})
        self.assertEqual(st, 200, doc)
        self.assertEqual((doc["source"], doc["corpus"], doc["n_texts"]), ("corpus", "kjv-heldout", 3))
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "config", "corpus",
                               "kjv-heldout.txt")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 200)
        lens = [min(self.n_tokens(t), 40) for t in lines[:3]]
        self.assertEqual(doc["n_tokens"], sum(lens))
        self.assertEqual(doc["n_texts_truncated"], sum(self.n_tokens(t) > 40 for t in lines[:3]))
        # the same sentences sent as texts (within the limits) give the same statistics
        short = [t for t in lines if self.n_tokens(t) <= 40][:2]
        st, a = self.d.post_json("/trajectory/stats", {"texts": short})
        self.assertEqual(st, 200, a)

    def test_gelu(self):
        st, t = self.d.post_json("/trajectory/stats", {"texts": TEXTS[:1]})
        st, e = self.d.post_json("/trajectory/stats", {"texts": TEXTS[:1], "gelu": "erf"})
        self.assertEqual(e["gelu"], "erf")
        # the input states do not depend on the GELU form; cos_final does (the
        # last state does)
        for i in range(3):
            for name in ("cos_next", "cos_self", "rank_next", "prob_next"):
                self.assertEqual(t["states"][i][name], e["states"][i][name])
            self.assertNotEqual(t["states"][i]["cos_final"], e["states"][i]["cos_final"])
        self.assertNotEqual(t["states"][3]["cos_next"], e["states"][3]["cos_next"])

    def test_openapi(self):
        st, doc = self.d.get_json("/openapi.json")
        op = doc["paths"]["/trajectory/stats"]
        self.assertEqual(set(op), {"post"})
        props = op["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
        self.assertEqual(set(props), {"texts", "corpus", "limit", "k", "gelu", "format", "model"})
        self.assertEqual(props["texts"]["maxItems"], 8)
        self.assertEqual(props["corpus"]["enum"], ["kjv-heldout"])
        job = doc["paths"]["/trajectory/stats/job"]["post"]["requestBody"]["content"]["application/json"]
        self.assertEqual(set(job["schema"]["properties"]), {"texts", "corpus", "limit", "k", "gelu", "model"})
        result = {p["name"] for p in doc["paths"]["/trajectory/stats/job/result"]["get"]["parameters"]}
        self.assertEqual(result, {"id", "wait", "format", "model"})

    def job(self, body):
        st, h, data = self.d.request("POST", "/trajectory/stats/job", json.dumps(body).encode())
        self.assertEqual(st, 200, data[:300])
        return json.loads(data)

    def test_job(self):
        body = {"texts": TEXTS, "k": 3, "gelu": "erf"}
        j = self.job(body)
        self.assertIn(j["state"], ("running", "done"))
        self.assertEqual((j["n_texts"], j["result"]), (4, "/trajectory/stats/job/result?id=%d" % j["job"]))
        self.assertEqual(j["n_tokens"], sum(self.n_tokens(t) for t in TEXTS))
        # the result, once it is there, is the answer of the request itself
        st, h, got = self.d.request("GET", "/trajectory/stats/job/result?id=%d&wait=30" % j["job"])
        self.assertEqual(st, 200, got[:300])
        st, h, want = self.post(body)
        self.assertEqual(got, want)
        st, h, got = self.d.request("GET", "/trajectory/stats/job/result?id=%d&format=csv" % j["job"])
        st, h, want = self.post({**body, "format": "csv"})
        self.assertEqual(got, want)
        self.assertTrue(h["content-type"].startswith("text/csv"))
        st, s = self.d.get_json("/trajectory/stats/job/status", id=j["job"])
        self.assertEqual(st, 200, s)
        self.assertEqual((s["job"], s["state"], s["stage"], s["done"], s["total"], s["progress"]),
                         (j["job"], "done", "summaries", 1, 1, 1))
        self.assertGreaterEqual(s["seconds"], 0)
        self.assertNotIn("error", s)
        # job ids count up (requests do not take them); a corpus job keeps its name
        j2 = self.job({"corpus": "kjv-heldout", "limit": 2})
        self.assertEqual(j2["job"], j["job"] + 1)
        st, doc = self.d.get_json("/trajectory/stats/job/result", id=j2["job"], wait=30)
        self.assertEqual((st, doc["source"], doc["corpus"], doc["n_texts"]), (200, "corpus", "kjv-heldout", 2))
        # bad requests: the same 400s as /trajectory/stats, and the job's own parameters
        error_at(self, self.d, "/trajectory/stats/job", 400, "'texts'", "limit is 8", method="POST",
                 body=json.dumps({"texts": ["a b"] * 9}).encode())
        error_at(self, self.d, "/trajectory/stats/job", 400, "unknown parameter 'format'", method="POST",
                 body=json.dumps({"texts": ["a b"], "format": "csv"}).encode())
        error_at(self, self.d, "/trajectory/stats/job/status?id=99999", 400, "parameter 'id'", "no job 99999")
        error_at(self, self.d, "/trajectory/stats/job/result?id=99999", 400, "parameter 'id'", "no job 99999")
        error_at(self, self.d, "/trajectory/stats/job/status?id=0", 400, "parameter 'id'")
        error_at(self, self.d, "/trajectory/stats/job/status", 400, "'id'")
        error_at(self, self.d, "/trajectory/stats/job/result?id=1&wait=31", 400, "'wait'", "0..30")
        error_at(self, self.d, "/trajectory/stats/job/result?id=1&format=npy", 400, "'format'", "json, csv")

    def test_metrics(self):
        st, h, m = self.d.request("GET", "/metrics")
        text = m.decode()
        for name in ("twd_stats_running", "twd_stats_progress", "twd_stats_rows_done", "twd_stats_rows_total"):
            self.assertIn("# TYPE %s gauge" % name, text)
        self.assertRegex(text, r'(?m)^twd_stats_running\{model="[^"]+"\} [0-9]+$')

    def test_bad_parameters(self):
        d = self.d
        p = "/trajectory/stats"

        def bad(body, *words, raw=None):
            return error_at(self, d, p, 400, *words, method="POST",
                            body=raw if raw is not None else json.dumps(body).encode())

        bad({}, "exactly one of 'texts'", "'corpus'", "kjv-heldout")
        bad({"texts": ["a b c"], "corpus": "kjv-heldout"}, "exactly one")
        bad({"corpus": "psalms"}, "'corpus'", "kjv-heldout")
        bad({"texts": []}, "'texts'", "at least 1")
        bad({"texts": "a b c"}, "'texts'", "array")
        bad({"texts": ["ok text", ""]}, "'texts'", "item 1", "empty")
        bad({"texts": ["ok text", 3]}, "'texts'", "item 1", "not a string")
        bad({"texts": ["a b"] * 9}, "'texts'", "limit is 8")
        bad({"texts": ["word " * 60]}, "'texts'", "text 0", "limit is 40 tokens")
        bad({"texts": ["one two three four five six seven eight nine ten eleven twelve"] * 8},
            "max_stats_tokens", "limit is 150")
        bad({"corpus": "kjv-heldout"}, "200 texts", "max_stats_texts", "'limit'")
        bad({"corpus": "kjv-heldout", "limit": 9}, "'limit'", "0..8")
        bad({"corpus": "kjv-heldout", "limit": -1}, "'limit'")
        bad({"texts": ["a b"], "k": 0}, "'k'")
        bad({"texts": ["a b"], "k": 5000}, "'k'", "1..100")
        bad({"texts": ["a b"], "gelu": "relu"}, "'gelu'", "tanh, erf")
        bad({"texts": ["a b"], "format": "xml"}, "'format'", "json, csv")
        bad({"texts": ["a b"], "colour": 1}, "unknown parameter 'colour'")
        bad(None, "not valid JSON", raw=b'{"texts": [')
        bad(None, "JSON object", raw=b'["a"]')
        error_at(self, d, p, 405, "allowed: POST")
        st, h, body = d.request("GET", p)
        self.assertEqual(h.get("allow"), "POST")


class Faithfulness(OneDaemon, unittest.TestCase):
    """faithfulness objects beside every 3D picture."""
    daemon_args = ("--set", "umap=true", "--set", "umap_rows=600", "--set", "umap_epochs=60",
                   "--set", "max_tokens=12")
    daemon_model = MODEL

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.status = wait_umap(cls.d)

    def check_layout_figures(self, f, proj):
        self.assertEqual(f["projection"], proj)
        self.assertEqual(f["k"], 15)
        self.assertEqual(f["sample_rows"], 600)
        for key in ("trustworthiness", "continuity"):
            self.assertTrue(0 < f[key] <= 1, f)
        if proj == "pca":
            r = f["explained_variance_ratio"]
            self.assertEqual(len(r), 3)
            self.assertTrue(all(0 <= x <= 1 for x in r))
            self.assertEqual(r, sorted(r, reverse=True))
            self.assertLessEqual(sum(r), 1 + 1e-12)
        else:
            self.assertNotIn("explained_variance_ratio", f)

    def test_umap_status(self):
        self.assertEqual(self.status["state"], "ready")
        self.d.get_json("/umap/layout", projection="pca", limit=1)  # waits for PCA's figures
        st, status = self.d.get_json("/umap")
        f = status["faithfulness"]
        self.check_layout_figures(f["umap"], "umap")
        self.check_layout_figures(f["pca"], "pca")

    def test_trajectory_and_layout(self):
        text = "the time of the year"
        for proj in ("umap", "pca"):
            st, doc = self.d.get_json("/trajectory", text=text, projection=proj, k=2)
            self.assertEqual(st, 200, doc)
            f = doc["faithfulness"]
            self.check_layout_figures(f, proj)
            o = f["knn_overlap"]
            self.assertEqual(o["k"], 15)
            self.assertEqual(len(o["states"]), 6)
            for v in o["states"]:
                self.assertTrue(0 <= v <= 1)
            self.assertAlmostEqual(o["overall"], sum(o["states"]) / 6, places=8)
            st, lay = self.d.get_json("/umap/layout", projection=proj, limit=10)
            self.assertEqual(lay["faithfulness"], {k: v for k, v in f.items() if k != "knn_overlap"})
        st, stat = self.d.get_json("/umap")
        self.assertEqual(stat["faithfulness"]["pca"], lay["faithfulness"])

    def test_pca_embedding_state_overlap(self):
        # the first state of a token is its wte row, one of the fitted rows:
        # its 15 nearest fitted rows in 768-d include itself; PCA puts it on
        # its own point, so the overlap of the embedding state is at least 1/15
        st, doc = self.d.get_json("/trajectory", text="time", projection="pca", k=1)
        self.assertGreaterEqual(doc["faithfulness"]["knn_overlap"]["states"][0], 1 / 15 - 1e-12)

    def test_disabled_umap(self):
        with Daemon(model=MODEL) as d:
            st, doc = d.get_json("/trajectory", text="time", projection="pca")  # waits for the figures
            self.assertEqual(st, 200)
            self.assertEqual(doc["faithfulness"]["sample_rows"], 1024)
            st, stat = d.get_json("/umap")
            self.assertEqual(stat["state"], "disabled")
            self.assertNotIn("umap", stat["faithfulness"])
            self.assertIn("trustworthiness", stat["faithfulness"]["pca"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
