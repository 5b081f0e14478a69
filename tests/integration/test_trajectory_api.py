"""Integration tests of issue 4's routes: /trajectory, /umap/layout (and its tokens), /umap."""
import io
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import Daemon, OneDaemon, error_at, error_of, module_checkpoint, wait_umap  # noqa: E402

SHAPE = ("--layers", "3", "--heads", "2", "--embd", "32", "--vocab", "1024", "--ctx", "32", "--seed", "5")
UMAP = ("--set", "umap=true", "--set", "umap_rows=400")
FULL = ("--set", "umap=true", "--set", "umap_rows=1024")  # every token of the vocabulary
TMP, MODEL, setUpModule, tearDownModule = module_checkpoint("twd-traj-", "small", "tiny", *SHAPE)


class TrajectoryTest(OneDaemon, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cache = tempfile.mkdtemp(prefix="twd-traj-cache-", dir=TMP)
        cls.d = Daemon(*FULL, "--set", "max_tokens=12", model=MODEL, cache_dir=cls.cache).start()
        cls.status = wait_umap(cls.d)

    def check_answer(self, doc, text, k):
        st, tok = self.d.get_json("/tokenize", text=text)
        n = tok["n_tokens"]
        self.assertEqual(doc["n_tokens"], n)
        self.assertEqual([t["id"] for t in doc["tokens"]], [t["id"] for t in tok["tokens"]])
        self.assertEqual(doc["n_states"], 3 + 3)
        names = [s["name"] for s in doc["states"]]
        self.assertEqual(names, ["embedding", "embedding+position", "embedding+position, ln_f",
                                 "block 0", "block 1", "block 2"])
        self.assertEqual([s["block"] for s in doc["states"]], [None, None, None, 0, 1, 2])
        for s in doc["states"]:
            self.assertEqual(len(s["points"]), n)
            for p in s["points"]:
                self.assertEqual(len(p), 3)
            self.assertEqual(len(s["nearest"]), n)
            for lst in s["nearest"]:
                self.assertEqual(len(lst), k)
                scores = [t["score"] for t in lst]
                self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual(len(doc["next_tokens"]), 5)

    def test_umap_ready(self):
        self.assertEqual(self.status["state"], "ready")
        self.assertEqual(self.status["rows"], 1024)
        self.assertFalse(self.status["from_cache"])
        self.assertGreater(self.status["fit_seconds"], 0)

    def test_trajectory_umap_and_pca(self):
        text = "the time of the year"
        for proj in ("umap", "pca"):
            st, doc = self.d.get_json("/trajectory", text=text, projection=proj, k=3)
            self.assertEqual(st, 200, doc)
            self.assertEqual(doc["projection"], proj)
            self.check_answer(doc, text, 3)

    def test_post_equals_get(self):
        st, g = self.d.get_json("/trajectory", text="a day at work", projection="pca", k=2)
        st2, p = self.d.post_json("/trajectory", {"text": "a day at work", "projection": "pca", "k": 2})
        self.assertEqual((st, st2), (200, 200))
        self.assertEqual(g, p)

    def test_embedding_state_is_placed_like_its_vocabulary_row(self):
        # the first state of a token is its wte row, which the layout was
        # fitted on: PCA maps it exactly where the layout has that row
        st, doc = self.d.get_json("/trajectory", text="time of day", projection="pca", k=1)
        st, lay = self.d.get_json("/umap/layout", projection="pca")
        self.assertEqual([t["id"] for t in lay["tokens"]], list(range(1024)))
        for t, tok in enumerate(doc["tokens"]):
            for a, b in zip(doc["states"][0]["points"][t], lay["points"][tok["id"]]):
                self.assertAlmostEqual(a, b, places=4)

    def test_gelu_forms(self):
        st, t = self.d.get_json("/trajectory", text="people and places", projection="pca", gelu="tanh")
        st, e = self.d.get_json("/trajectory", text="people and places", projection="pca", gelu="erf")
        self.assertEqual((t["gelu"], e["gelu"]), ("tanh", "erf"))
        # identical before the first MLP, different (slightly) after it
        for i in range(3):
            self.assertEqual(t["states"][i]["points"], e["states"][i]["points"])
        self.assertNotEqual(t["states"][3]["points"], e["states"][3]["points"])
        diff = max(abs(a - b) for pa, pb in zip(t["states"][5]["points"], e["states"][5]["points"])
                   for a, b in zip(pa, pb))
        self.assertLess(diff, 1.0)

    def test_layout(self):
        st, doc = self.d.get_json("/umap/layout", limit=50)
        self.assertEqual(st, 200)
        self.assertEqual((doc["n"], doc["rows"], len(doc["points"]), len(doc["tokens"])), (50, 1024, 50, 50))
        ids = [t["id"] for t in doc["tokens"]]
        self.assertEqual(ids, sorted(set(ids)))
        st, full = self.d.get_json("/umap/layout")
        self.assertEqual(full["n"], 1024)
        self.assertEqual(full["points"][ids[7]], doc["points"][7])
        st, tk = self.d.get_json("/detokenize", ids=str(ids[7]))
        self.assertEqual(doc["tokens"][7], tk["tokens"][0])  # every token in one shape
        # more than the layout holds is all of it
        st, big = self.d.get_json("/umap/layout", limit=5000)
        self.assertEqual((st, big["n"]), (200, 1024))
        self.assertEqual(big["points"], full["points"])
        # the compact forms of the UMAP layout: the same rows, points and texts
        st, tok = self.d.get_json("/umap/layout/tokens", limit=50)
        self.assertEqual((st, tok["projection"], tok["n"], tok["rows"]), (200, "umap", 50, 1024))
        self.assertEqual((tok["ids"], tok["texts"]), (ids, [t["text"] for t in doc["tokens"]]))
        st, h, body = self.d.get("/umap/layout", limit=50, format="npy")
        arr = np.load(io.BytesIO(body))
        self.assertEqual((st, arr.dtype, arr.shape), (200, np.float32, (50, 3)))
        self.assertTrue(np.array_equal(arr, np.array(doc["points"], dtype=np.float32)))
        st, h, body = self.d.get("/umap/layout", format="npy")
        self.assertTrue(np.array_equal(np.load(io.BytesIO(body)), np.array(full["points"], dtype=np.float32)))

    def test_model_reports_umap(self):
        st, doc = self.d.get_json("/model")
        self.assertEqual(doc["umap"]["state"], "ready")
        text = self.d.get("/metrics")[2].decode()
        self.assertRegex(text, r'twd_umap_ready\{model="[^"]*"\} 1\n')
        self.assertRegex(text, r'twd_umap_progress\{model="[^"]*"\} 1\n')

    def test_attention(self):
        st, doc = self.d.get_json("/attention", text="the time of the year")
        self.assertEqual(st, 200)
        n = doc["n_tokens"]
        self.assertEqual([b["block"] for b in doc["blocks"]], [0, 1, 2])
        for b in doc["blocks"]:
            self.assertEqual([h["head"] for h in b["heads"]], [0, 1])
            for h in b["heads"]:
                rows = h["pattern"]
                self.assertEqual([len(r) for r in rows], [n] * n)  # the full matrix
                for t, r in enumerate(rows):
                    self.assertAlmostEqual(sum(r), 1.0, places=5)
                    self.assertTrue(all(w >= 0 for w in r))
                    self.assertTrue(all(w == 0 for w in r[t + 1:]))  # causal
                    self.assertGreater(r[0], 0)
        st, one = self.d.get_json("/attention", text="the time of the year", block=2, head=1)
        self.assertEqual(one["blocks"][0]["heads"][0]["pattern"], doc["blocks"][2]["heads"][1]["pattern"])
        error_at(self, self.d, "/attention?text=a&block=3", 400, "0..2")

    def test_bad_input(self):
        error_at(self, self.d, "/trajectory", 400, "'text'", "required")
        error_at(self, self.d, "/trajectory?text=", 400, "'text'", "empty")
        error_at(self, self.d, "/trajectory?text=%c3%28", 400, "'text'", "UTF-8")
        error_at(self, self.d, "/trajectory?text=" + "+word" * 13, 400, "'text'", "13 tokens", "limit is 12")
        error_at(self, self.d, "/attention?text=" + "+word" * 13, 400, "'text'", "13 tokens", "limit is 12")
        error_at(self, self.d, "/attention?text=", 400, "'text'", "empty")
        error_at(self, self.d, "/trajectory?text=a&projection=tsne", 400, "'projection'", "umap, pca")
        error_at(self, self.d, "/trajectory?text=a&gelu=relu", 400, "'gelu'", "tanh, erf")
        error_at(self, self.d, "/trajectory?text=a&k=0", 400, "'k'")
        error_at(self, self.d, "/umap/layout?limit=-1", 400, "'limit'")
        error_at(self, self.d, "/trajectory", 400, "'text'", method="POST", body=b'{"text": ["a"]}')


class UmapLifecycleTest(unittest.TestCase):
    def test_503_while_fitting_then_cached_across_restart(self):
        cache = tempfile.mkdtemp(prefix="twd-traj-life-", dir=TMP)
        # a deliberately long fit: the answer while it runs is 503 + Retry-After
        d = Daemon(*UMAP, "--set", "umap_epochs=10000", model=MODEL, cache_dir=cache)
        with d:
            st, h, body = d.request("GET", "/trajectory?text=time")
            err = error_of(self, st, body, 503, ["being fitted"])
            self.assertIn("retry-after", h)
            self.assertEqual(err["type"], "unavailable")
            st, h, body = d.request("GET", "/umap/layout")
            self.assertEqual(st, 503)
            # its compact forms too, with the same JSON error and Retry-After
            for target in ("/umap/layout?format=npy", "/umap/layout/tokens"):
                st, h, body = d.request("GET", target)
                error_of(self, st, body, 503, ["being fitted"])
                self.assertIn("retry-after", h)
            self.assertEqual(d.get_json("/umap")[1]["state"], "fitting")
            # PCA is there at once
            self.assertEqual(d.get("/trajectory", text="time", projection="pca")[0], 200)
            self.assertEqual(d.get("/health")[0], 200)
        # stopping cancels the fit promptly and cleanly
        self.assertEqual(d.proc.returncode, 0, d.stderr())

        # a normal fit, then a restart on the same cache reuses the file
        d1 = Daemon(*UMAP, model=MODEL, cache_dir=cache)
        with d1:
            self.assertEqual(wait_umap(d1)["state"], "ready")
            first = d1.get_json("/umap/layout")[1]
            traj1 = d1.get_json("/trajectory", text="the year")[1]
        d2 = Daemon(*UMAP, model=MODEL, cache_dir=cache)
        with d2:
            st, status = d2.get_json("/umap")
            self.assertEqual(status["state"], "ready")
            self.assertTrue(status["from_cache"])
            self.assertEqual(d2.get_json("/umap/layout")[1], first)
            self.assertEqual(d2.get_json("/trajectory", text="the year")[1], traj1)
        self.assertIn("layout loaded from", d2.stderr())

    def test_disabled(self):
        with Daemon(model=MODEL) as d:  # the harness passes umap=false
            error_at(self, d, "/trajectory?text=time", 503, "disabled")
            self.assertEqual(d.get_json("/umap")[1]["state"], "disabled")


if __name__ == "__main__":
    unittest.main(verbosity=2)
