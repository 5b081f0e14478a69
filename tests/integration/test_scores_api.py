"""/embeddings/scores (issue 12, item 1): every token's four embedding-norm
scores on the real twd binary, equal to an independent numpy computation
from the checkpoint (tests/ref/st_numpy.py reads it, not the C loader);
CSV and .npy equal to the JSON; the ranking of /embeddings agrees with the
whole vectors; the answer cache; every bad parameter a JSON 400."""
import csv
import io
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from twd_harness import Daemon, assert_token, error_at, make_checkpoint, stop_clean  # noqa: E402
from st_numpy import load_model  # noqa: E402

TMP = tempfile.mkdtemp(prefix="twd-scores-")
MODEL = os.path.join(TMP, "small")
SHAPE = ("--layers", "2", "--heads", "2", "--embd", "48", "--vocab", "1500", "--ctx", "32", "--seed", "23")
SCHEMES = ["norm", "scaled", "bias", "scaled_bias"]
# JSON and CSV print 9 significant digits; npy carries the doubles
PRINTED = 2e-8


def setUpModule():
    make_checkpoint(MODEL, "tiny", *SHAPE)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def reference(w):
    """The four scores of docs/MATH.md §3.1 per token, in float64 from the
    checkpoint's tensors: rows are schemes."""
    E, g, b = w["wte.weight"], w["ln_f.weight"], w["ln_f.bias"]
    n = np.sqrt((E * E).sum(axis=1))
    sn = np.sqrt(((E * g) ** 2).sum(axis=1))
    be = E @ b
    return {"norm": n, "scaled": sn, "bias": n + be, "scaled_bias": sn + be}


def npy_array(body):
    return np.load(io.BytesIO(body), allow_pickle=False)


class ScoresApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--set", "max_k=50", model=MODEL).start()
        cls.cfg, w = load_model(MODEL)
        cls.V = cls.cfg["vocab_size"]
        cls.ref = reference(w)

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def get(self, **q):
        st, h, body = self.d.get("/embeddings/scores", **q)
        self.assertEqual(st, 200, body[:300])
        return h, body

    def json_doc(self):
        st, doc = self.d.get_json("/embeddings/scores")
        self.assertEqual(st, 200, doc)
        return doc

    def test_json_is_the_numpy_reference(self):
        doc = self.json_doc()
        self.assertEqual(set(doc), {"n_tokens", "tokens", "scores", "definition"})
        self.assertEqual(doc["n_tokens"], self.V)
        self.assertEqual([t["id"] for t in doc["tokens"]], list(range(self.V)))
        for t in doc["tokens"]:
            assert_token(self, t, score=False)
        self.assertEqual(set(doc["scores"]), set(SCHEMES))
        for name in SCHEMES:
            got = np.array(doc["scores"][name], dtype=np.float64)
            self.assertEqual(got.shape, (self.V,), name)
            np.testing.assert_allclose(got, self.ref[name], rtol=PRINTED, atol=1e-12, err_msg=name)
        # the schemes differ on this model (gamma != 1, beta != 0), so a mixed-up
        # column would be caught
        for a in SCHEMES:
            for b in SCHEMES:
                if a < b:
                    self.assertFalse(np.allclose(self.ref[a], self.ref[b]), (a, b))

    def test_npy_is_the_numpy_reference(self):
        h, body = self.get(format="npy")
        self.assertEqual(h["content-type"], "application/octet-stream")
        a = npy_array(body)
        self.assertEqual((a.dtype, a.shape), (np.dtype("<f8"), (self.V, 4)))
        for j, name in enumerate(SCHEMES):
            # doubles summed in a different order than numpy's: a few ulps
            np.testing.assert_allclose(a[:, j], self.ref[name], rtol=1e-13, atol=1e-13, err_msg=name)

    def test_csv_and_npy_agree_with_json(self):
        doc = self.json_doc()
        h, body = self.get(format="csv")
        self.assertTrue(h["content-type"].startswith("text/csv"))
        text = body.decode("utf-8")
        self.assertTrue(text.startswith("id,text,norm,scaled,bias,scaled_bias\r\n"))
        rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
        self.assertEqual(len(rows), self.V)
        self.assertEqual([int(r[0]) for r in rows], list(range(self.V)))
        self.assertEqual([r[1] for r in rows], [t["text"] for t in doc["tokens"]])
        for j, name in enumerate(SCHEMES):
            # both print 9 significant digits of the same double: equal numbers
            self.assertEqual([float(r[2 + j]) for r in rows], doc["scores"][name], name)
        a = npy_array(self.get(format="npy")[1])
        for j, name in enumerate(SCHEMES):
            np.testing.assert_allclose(a[:, j], doc["scores"][name], rtol=PRINTED, atol=1e-12, err_msg=name)

    def test_embeddings_ranks_these_scores(self):
        # /embeddings and this route read one computation: its top and bottom
        # lists are the extremes of the whole vectors (ties by lower id)
        doc = self.json_doc()
        k = 7
        st, emb = self.d.get_json("/embeddings", k=k)
        self.assertEqual(st, 200, emb)
        a = npy_array(self.get(format="npy")[1])
        for j, name in enumerate(SCHEMES):
            s = a[:, j]
            ids = np.arange(self.V)
            top = sorted(ids, key=lambda i: (-s[i], i))[:k]
            bottom = sorted(ids, key=lambda i: (s[i], i))[:k]
            self.assertEqual([t["id"] for t in emb["schemes"][name]["top"]], top, name)
            self.assertEqual([t["id"] for t in emb["schemes"][name]["bottom"]], bottom, name)
            self.assertEqual([t["score"] for t in emb["schemes"][name]["top"]],
                             [doc["scores"][name][i] for i in top], name)

    def test_answer_cache(self):
        for fmt in ("json", "csv", "npy"):
            st, h1, b1 = self.d.request("GET", "/embeddings/scores?format=" + fmt)
            st, h2, b2 = self.d.request("GET", "/embeddings/scores?format=" + fmt)
            self.assertEqual(b1, b2, fmt)
            self.assertEqual(h2["x-twd-cache"], "hit", fmt)
        # the default format is the same answer as format=json
        st, h, b = self.d.request("GET", "/embeddings/scores")
        self.assertEqual(h["x-twd-cache"], "hit")

    def test_bad_parameters(self):
        error_at(self, self.d, "/embeddings/scores?format=latex", 400, "'format'", "json, csv, npy")
        error_at(self, self.d, "/embeddings/scores?format=", 400, "'format'")
        error_at(self, self.d, "/embeddings/scores?k=5", 400, "unknown parameter 'k'")
        error_at(self, self.d, "/embeddings/scores?scheme=norm", 400, "unknown parameter 'scheme'")
        error_at(self, self.d, "/embeddings/scores?model=nope", 400, "unknown model 'nope'")
        error_at(self, self.d, "/embeddings/scores", 405, method="POST", body=b"{}")


class ScoresLimitTest(unittest.TestCase):
    """A vocabulary larger than max_answer_tokens: JSON and CSV, which list
    every token, are refused before anything is computed; npy is not."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--set", "max_answer_tokens=1000", model=MODEL).start()

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def test_limit(self):
        error_at(self, self.d, "/embeddings/scores", 400, "1500 tokens", "max_answer_tokens", "format=npy")
        error_at(self, self.d, "/embeddings/scores?format=csv", 400, "max_answer_tokens")
        st, h, body = self.d.get("/embeddings/scores", format="npy")
        self.assertEqual(st, 200, body[:300])
        self.assertEqual(npy_array(body).shape, (1500, 4))


if __name__ == "__main__":
    unittest.main()
