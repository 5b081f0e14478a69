"""Issue 11's notebook-grade data: every data route as a tidy CSV that pandas
reads with one type per column, the state vectors (JSON and .npy) equal to
an independent numpy forward pass, the logit lens (probabilities, entropy,
the ranks of the next and a target token) equal to numpy's, /detokenize,
float32 digits, and answers bounded before they are computed."""
import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from twd_harness import Daemon, error_at, make_checkpoint, stop_clean  # noqa: E402
from forward_ref import forward  # noqa: E402
from st_numpy import load_model  # noqa: E402

try:
    import pandas as pd
except ImportError:  # Debian's python3-pandas (scripts/deps.sh --test)
    pd = None

TMP = tempfile.mkdtemp(prefix="twd-nb-")
MODEL = os.path.join(TMP, "small")
LONG = os.path.join(TMP, "long")  # the same shape with room for 1100 tokens
SHAPE = ("--layers", "3", "--heads", "2", "--embd", "32", "--vocab", "1024", "--ctx", "32", "--seed", "11")
TEXT = "the time of the year"


def setUpModule():
    make_checkpoint(MODEL, "tiny", *SHAPE)
    make_checkpoint(LONG, "tiny", *SHAPE[:-4], "--ctx", "1100")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def read_csv(body):
    """The way docs/API.md says to read twd's CSV: token texts such as "NA"
    or "null" are text; an empty cell is a value that does not apply."""
    return pd.read_csv(io.BytesIO(body), keep_default_na=False, na_values=[""])


class NotebookDataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--set", "max_tokens=24", model=MODEL).start()
        cls.cfg, cls.w = load_model(MODEL)
        cls.wte = cls.w["wte.weight"]

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def get(self, path, **q):
        st, h, body = self.d.get(path, **q)
        self.assertEqual(st, 200, body[:300])
        return h, body

    def traj(self, **q):
        st, doc = self.d.get_json("/trajectory", text=TEXT, projection="pca", **q)
        self.assertEqual(st, 200, doc)
        return doc

    # ---- the numbers behind the pictures ----
    def test_vectors_are_the_forward_pass_states(self):
        doc = self.traj(k=1, vectors="true")
        ids = [t["id"] for t in doc["tokens"]]
        ref = forward(self.cfg, self.w, ids, "tanh")
        want = [ref["emb"], ref["x0"], ref["x0_lnf"]] + list(ref["resid_lnf"])
        self.assertEqual(len(doc["states"]), len(want))
        for st, w in zip(doc["states"], want):
            v = np.array(st["vectors"])
            self.assertEqual(v.shape, (len(ids), 32))
            np.testing.assert_allclose(v, w, rtol=1e-4, atol=1e-4)
        # the .npy answer holds the same float32 numbers
        h, body = self.get("/trajectory", text=TEXT, format="npy")
        self.assertEqual(h["content-type"], "application/octet-stream")
        arr = np.load(io.BytesIO(body))
        self.assertEqual((arr.dtype, arr.shape), (np.float32, (6, len(ids), 32)))
        for s, st in enumerate(doc["states"]):
            self.assertTrue(np.array_equal(arr[s], np.array(st["vectors"], dtype=np.float32)))
        # and so does the vectors table
        h, body = self.get("/trajectory", text=TEXT, format="csv", table="vectors")
        df = read_csv(body)
        self.assertEqual(list(df.columns[:6]), ["state_index", "state", "block", "position", "token_id",
                                                "token_text"])
        self.assertEqual(len(df), 6 * len(ids))
        got = df[["v%d" % i for i in range(32)]].to_numpy(dtype=np.float32).reshape(6, len(ids), 32)
        self.assertTrue(np.array_equal(got, arr))

    def test_layout_npy_and_tokens_are_the_json_answer(self):
        # the compact forms of /umap/layout: numpy.load of format=npy gives
        # the JSON answer's points as float32, /umap/layout/tokens its tokens
        for q in (dict(projection="pca"), dict(projection="pca", limit=10), dict(projection="pca", limit=5000)):
            with self.subTest(**q):
                st, doc = self.d.get_json("/umap/layout", **q)
                self.assertEqual(st, 200, doc)
                h, body = self.get("/umap/layout", format="npy", **q)
                self.assertEqual(h["content-type"], "application/octet-stream")
                arr = np.load(io.BytesIO(body))
                self.assertEqual((arr.dtype, arr.shape), (np.float32, (doc["n"], 3)))
                self.assertTrue(np.array_equal(arr, np.array(doc["points"], dtype=np.float32)))
                st, tok = self.d.get_json("/umap/layout/tokens", **q)
                self.assertEqual(st, 200, tok)
                self.assertEqual(sorted(tok), ["ids", "n", "projection", "rows", "texts"])
                self.assertEqual((tok["projection"], tok["rows"], tok["n"]), ("pca", doc["rows"], doc["n"]))
                self.assertEqual(tok["ids"], [t["id"] for t in doc["tokens"]])
                self.assertEqual(tok["texts"], [t["text"] for t in doc["tokens"]])
                if pd is not None:
                    h, body = self.get("/umap/layout/tokens", format="csv", **q)
                    df = read_csv(body)
                    self.assertEqual(list(df.columns), ["id", "text"])
                    self.assertEqual(df["id"].tolist(), tok["ids"])
                    # (pandas reads the one-NUL token's cell as empty: compared without it)
                    keep = [i for i, t in enumerate(tok["texts"]) if "\x00" not in t]
                    self.assertGreater(len(keep), len(tok["texts"]) - 2)
                    self.assertEqual(df["text"][keep].tolist(), [tok["texts"][i] for i in keep])
        # every token of the vocabulary (1024 rows: PCA is fitted on all of them), in id order
        self.assertEqual(self.d.get_json("/umap/layout/tokens", projection="pca")[1]["ids"], list(range(1024)))
        # a token whose text is not valid UTF-8 has the JSON answer's replaced text
        st, tok = self.d.get_json("/umap/layout/tokens", projection="pca")
        bad = [i for i, t in enumerate(tok["texts"]) if "\ufffd" in t]
        if bad:
            st, dt = self.d.get_json("/detokenize", ids=str(bad[0]))
            self.assertEqual(tok["texts"][bad[0]], dt["tokens"][0]["text"])

    def test_logit_lens_probabilities_entropy_and_ranks(self):
        target = 7
        doc = self.traj(k=4, vectors="true", target=str(target))
        ids = [t["id"] for t in doc["tokens"]]
        self.assertEqual(doc["target"]["id"], target)
        for st in doc["states"]:
            v = np.array(st["vectors"], dtype=np.float32).astype(np.float64)
            logits = v @ self.wte.astype(np.float32).astype(np.float64).T
            m = logits.max(axis=1, keepdims=True)
            lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
            p = np.exp(logits - lse[:, None])
            ent = -(p * np.log(p)).sum(axis=1)
            for t in range(len(ids)):
                self.assertAlmostEqual(st["entropy"][t], ent[t], delta=1e-5 * ent[t])
                order = np.lexsort((np.arange(logits.shape[1]), -logits[t]))
                near = st["nearest"][t]
                self.assertEqual([n["id"] for n in near], [int(i) for i in order[:4]])
                for n in near:
                    self.assertAlmostEqual(n["prob"], p[t, n["id"]], delta=1e-5 * p[t, n["id"]])
                rank_of = {int(j): r + 1 for r, j in enumerate(order)}
                nxt = st["next"][t]
                if t + 1 == len(ids):
                    self.assertIsNone(nxt)
                else:
                    self.assertEqual(nxt["id"], ids[t + 1])
                    self.assertEqual(nxt["rank"], rank_of[ids[t + 1]])
                    self.assertAlmostEqual(nxt["prob"], p[t, ids[t + 1]], delta=1e-5 * p[t, ids[t + 1]])
                tg = st["target"][t]
                self.assertEqual((tg["id"], tg["rank"]), (target, rank_of[target]))
                self.assertAlmostEqual(tg["prob"], p[t, target], delta=1e-5 * p[t, target])
        # next_tokens: the lens of the last state at the last position
        last = doc["states"][-1]["nearest"][-1]
        self.assertEqual([n["id"] for n in doc["next_tokens"][:4]], [n["id"] for n in last])
        for a, b in zip(doc["next_tokens"], last):
            self.assertEqual((a["score"], a["prob"]), (b["score"], b["prob"]))

    def test_target_as_text(self):
        # a word of the phrase, as the tokenizer split it (one token by construction)
        st, tok = self.d.get_json("/tokenize", text=TEXT)
        word = tok["tokens"][1]
        by_text = self.traj(k=1, target=word["text"])
        by_id = self.traj(k=1, target=str(word["id"]))
        self.assertEqual(by_text["states"], by_id["states"])
        self.assertEqual(by_text["target"], word)
        # the target at position 0 is the actual next token there: the same rank and probability
        for st in by_text["states"]:
            self.assertEqual(st["target"][0], st["next"][0])

    def test_scores_do_not_depend_on_the_batch(self):
        st, alone = self.d.get_json("/probe", block=1, k=5, words="time")
        st, many = self.d.get_json("/probe", block=1, k=5, words="year,time,day,people,way")
        a = alone["words"][0]
        b = next(w for w in many["words"] if w["word"] == "time")
        self.assertEqual(json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True))

    def test_full_attention_matrices(self):
        st, doc = self.d.get_json("/attention", text=TEXT, block=1)
        n = doc["n_tokens"]
        ids = [t["id"] for t in doc["tokens"]]
        ref = forward(self.cfg, self.w, ids, "tanh")["att"]
        for h in doc["blocks"][0]["heads"]:
            pat = np.array(h["pattern"])
            self.assertEqual(pat.shape, (n, n))
            np.testing.assert_allclose(pat, ref[1, h["head"]], atol=1e-5)
        h, body = self.get("/attention", text=TEXT, block=1, format="csv")
        df = read_csv(body)
        self.assertEqual(list(df.columns), ["block", "head", "query_pos", "key_pos", "weight"])
        self.assertEqual(len(df), 2 * n * (n + 1) // 2)  # the causal half, one row per weight
        self.assertTrue((df.key_pos <= df.query_pos).all())
        piv = df[df["head"] == 1].pivot(index="query_pos", columns="key_pos", values="weight").fillna(0)
        np.testing.assert_allclose(piv.to_numpy(), ref[1, 1], atol=1e-5)

    # ---- CSV for every answer ----
    def test_every_data_route_answers_csv(self):
        if pd is None:
            self.skipTest("python3-pandas is not installed")
        cases = [
            ("/tokenize", dict(text=TEXT), ["position", "id", "text"]),
            ("/detokenize", dict(ids="1,2,3"), ["position", "id", "text"]),
            ("/embeddings", dict(k=3), ["scheme", "list", "rank", "id", "text", "score"]),
            ("/embeddings/normalization", {}, ["matrix", "l2_mean", "l2_std", "cos_mean", "cos_std"]),
            ("/probe", dict(block=0, k=2, words="time,year"),
             ["block", "word", "token_id", "kind", "head", "list", "rank", "id", "text", "score", "norm"]),
            ("/svd", dict(block=0, top=2, k=2),
             ["block", "matrix", "head", "direction", "singular_value", "sign", "side", "rank", "id", "text",
              "score"]),
            ("/svd", dict(block=0, top=0), ["block", "matrix", "head", "rank", "singular_value", "coverage"]),
            ("/svd", dict(block=0, top=3, table="spectra"),
             ["block", "matrix", "head", "rank", "singular_value", "coverage"]),
            ("/svd/bias", dict(block=0, k=2), ["block", "head", "probe", "rank", "id", "text", "score"]),
            ("/trajectory", dict(text=TEXT, projection="pca", k=2),
             ["state_index", "state", "block", "position", "token_id", "token_text", "x", "y", "z", "entropy",
              "next_id", "next_rank", "next_prob", "target_id", "target_rank", "target_prob"]),
            ("/trajectory", dict(text=TEXT, projection="pca", k=2, table="nearest"),
             ["state_index", "state", "block", "position", "token_id", "token_text", "rank", "id", "text",
              "score", "prob"]),
            ("/attention", dict(text=TEXT), ["block", "head", "query_pos", "key_pos", "weight"]),
            ("/umap/layout", dict(projection="pca", limit=10), ["id", "text", "x", "y", "z"]),
        ]
        for path, q, cols in cases:
            with self.subTest(path=path, q=q):
                h, body = self.get(path, format="csv", **q)
                self.assertTrue(h["content-type"].startswith("text/csv"))
                self.assertTrue(body.endswith(b"\r\n"))
                df = read_csv(body)
                self.assertEqual(list(df.columns), cols)
                self.assertGreater(len(df), 0)
                for c in ("rank", "head", "block", "id", "token_id", "position", "direction"):
                    if c in df.columns:  # numeric, whatever else the rows hold
                        self.assertTrue(pd.api.types.is_numeric_dtype(df[c]), (c, df[c].dtype))
                if "rank" in df.columns:
                    self.assertEqual(df["rank"].min(), 1)  # ranks are 1-based everywhere

    def test_probe_csv_has_one_type_per_column(self):
        if pd is None:
            self.skipTest("python3-pandas is not installed")
        h, body = self.get("/probe", block=0, k=2, words="time", format="csv")
        df = read_csv(body)
        self.assertEqual(len(df), 2 * 2 * 2 + 2)  # 2 heads x (keys + values) x 2 + the layer sum's values
        self.assertEqual(len(df[df["head"] == 0]), 4)
        layer = df[df["kind"] == "layer"]
        self.assertEqual((len(layer), layer["head"].isna().all()), (2, True))
        self.assertEqual(set(df[df["kind"] == "head"]["head"]), {0, 1})
        # the norms are the JSON answer's
        st, doc = self.d.get_json("/probe", block=0, k=2, words="time")
        w = doc["words"][0]
        for hd in w["heads"]:
            vals = df[(df["head"] == hd["head"]) & (df["list"] == "values")]["norm"]
            self.assertTrue(np.allclose(vals, hd["norm"], rtol=1e-7))
        self.assertTrue(np.allclose(layer["norm"], w["layer"]["norm"], rtol=1e-7))

    def test_svd_spectra_table_matches_json(self):
        st, doc = self.d.get_json("/svd", block=1, top=0)
        h, body = self.get("/svd", block=1, top=0, format="csv")
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        self.assertEqual(len(rows), 2 * 2 * 16)  # heads x matrices x dh
        for r in rows:
            hd = doc["heads"][int(r["head"])][r["matrix"]]
            i = int(r["rank"]) - 1
            self.assertAlmostEqual(float(r["singular_value"]), hd["singular_values"][i], delta=1e-6)
            self.assertAlmostEqual(float(r["coverage"]), hd["coverage"][i], delta=1e-6)

    def test_trajectory_points_table_matches_json(self):
        doc = self.traj(k=2, target="5")
        h, body = self.get("/trajectory", text=TEXT, projection="pca", k=2, target="5", format="csv")
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        n = doc["n_tokens"]
        self.assertEqual(len(rows), 6 * n)
        for r in rows:
            st = doc["states"][int(r["state_index"])]
            t = int(r["position"])
            self.assertEqual(r["state"], st["name"])
            self.assertEqual(r["block"], "" if st["block"] is None else str(st["block"]))
            for i, c in enumerate("xyz"):
                self.assertAlmostEqual(float(r[c]), st["points"][t][i], delta=1e-6)
            self.assertAlmostEqual(float(r["entropy"]), st["entropy"][t], delta=1e-6)
            self.assertEqual(r["target_rank"], str(st["target"][t]["rank"]))
            if st["next"][t] is None:
                self.assertEqual((r["next_id"], r["next_rank"]), ("", ""))
            else:
                self.assertEqual(r["next_rank"], str(st["next"][t]["rank"]))

    # ---- tokens both ways ----
    def test_detokenize(self):
        st, tok = self.d.get_json("/tokenize", text=TEXT)
        ids = [t["id"] for t in tok["tokens"]]
        st, doc = self.d.get_json("/detokenize", ids=",".join(map(str, ids)))
        self.assertEqual(st, 200)
        self.assertEqual(doc["text"], TEXT)
        self.assertEqual(bytes(doc["bytes"]), TEXT.encode())
        self.assertEqual(doc["tokens"], tok["tokens"])
        st, post = self.d.post_json("/detokenize", {"ids": ids})
        self.assertEqual(post, doc)
        error_at(self, self.d, "/detokenize", 400, "'ids'", "required")
        error_at(self, self.d, "/detokenize?ids=", 400, "'ids'")
        error_at(self, self.d, "/detokenize?ids=1,-1", 400, "'ids'", "item 1", "0..1023", "-1")
        error_at(self, self.d, "/detokenize?ids=1024", 400, "'ids'", "0..1023")
        error_at(self, self.d, "/detokenize?ids=1.5", 400, "'ids'", "must be an integer", "'1.5'")
        error_at(self, self.d, "/detokenize?ids=1,,2", 400, "'ids'", "item 1")
        error_at(self, self.d, "/detokenize?ids=+1", 400, "'ids'")
        error_at(self, self.d, "/detokenize?ids=" + ",".join(["1"] * 25), 400, "'ids'", "1 to 24", "got 25")
        error_at(self, self.d, "/detokenize", 400, "'ids'", method="POST", body=b'{"ids": ["1"]}')
        error_at(self, self.d, "/detokenize", 400, "'ids'", method="POST", body=b'{"ids": 3}')

    # ---- numbers ----
    def test_float32_values_print_as_float32(self):
        st, h, body = self.d.get("/model")
        self.assertRegex(body.decode(), r'"layer_norm_epsilon":1e-0?5[,}]')
        st, h, body = self.d.get("/umap")
        self.assertRegex(body.decode(), r'"min_dist":0\.1[,}]')
        # no number carries more digits than float32 has
        st, h, body = self.d.get("/trajectory", text=TEXT, projection="pca", k=3)
        import re
        for num in re.findall(rb"-?\d+\.\d+(?:e[-+]?\d+)?", body):
            digits = num.split(b"e")[0].lstrip(b"-").replace(b".", b"").lstrip(b"0")
            self.assertLessEqual(len(digits), 9, num)

    # ---- bad input and bounds ----
    def test_bad_parameters(self):
        t = "/trajectory?text=a&projection=pca"
        error_at(self, self.d, t + "&format=xml", 400, "'format'", "json, csv, npy")
        error_at(self, self.d, t + "&format=csv&table=rows", 400, "'table'", "points, nearest, vectors")
        error_at(self, self.d, t + "&vectors=yes", 400, "'vectors'", "true or false")
        error_at(self, self.d, t + "&target=1024", 400, "'target'", "0..1023")
        error_at(self, self.d, t + "&target=", 400, "'target'")
        error_at(self, self.d, t + "&target=the%20time%20of", 400, "'target'", "exactly one token")
        error_at(self, self.d, "/probe?block=0&leading_space=2", 400, "'leading_space'", "true or false")
        error_at(self, self.d, "/probe?block=0&format=npy", 400, "'format'", "json, csv")
        error_at(self, self.d, "/svd?block=0&table=both", 400, "'table'", "directions, spectra")
        error_at(self, self.d, "/attention?text=a&format=latex", 400, "'format'", "json, csv")
        error_at(self, self.d, "/umap/layout?format=latex", 400, "'format'", "json, csv, npy")
        error_at(self, self.d, "/umap/layout?limit=-1", 400, "'limit'")
        error_at(self, self.d, "/umap/layout?format=npy&limit=x", 400, "'limit'")
        error_at(self, self.d, "/umap/layout?format=npy&projection=tsne", 400, "'projection'", "umap, pca")
        error_at(self, self.d, "/umap/layout/tokens?format=npy", 400, "'format'", "json, csv")
        error_at(self, self.d, "/umap/layout/tokens?limit=-1", 400, "'limit'")
        error_at(self, self.d, "/umap/layout/tokens?limit=2147483648", 400, "'limit'")
        error_at(self, self.d, "/umap/layout/tokens?projection=tsne", 400, "'projection'", "umap, pca")
        error_at(self, self.d, "/umap/layout/tokens?points=3", 400, "'points'")
        error_at(self, self.d, "/tokenize?text=a&format=tsv", 400, "'format'")

    def test_vectors_are_bounded_before_computing(self):
        with Daemon("--set", "max_answer_mb=1", "--set", "max_tokens=1024", model=LONG) as d:
            # 6 states x 32 dims x 20 tokens is far below 1 MiB; 1000 tokens is not in JSON
            st, doc = d.get_json("/trajectory", text="a b " * 10, projection="pca", vectors="true")
            self.assertEqual(st, 200)
            error_at(self, d, "/trajectory?projection=pca&vectors=true&text=" + "word+" * 1000, 400,
                     "max_answer_mb", "format=npy")
            st, h, body = d.get("/trajectory", text="word " * 1000, format="npy")
            self.assertEqual(st, 200)
            st, tok = d.get_json("/tokenize", text="word " * 1000)
            self.assertEqual(np.load(io.BytesIO(body)).shape, (6, tok["n_tokens"], 32))


if __name__ == "__main__":
    unittest.main(verbosity=2)
