"""/openapi.json against the real daemon (issue 11, item 6).

DocumentTest: the document passes @apidevtools/swagger-parser's validation
and `redocly lint` (recommended-strict: warnings fail too).

AnswersTest: every operation the document lists is called (the list comes
from the document: an operation, a media type of its 200 answer or a CSV
table without a request here fails the test), and every answer is validated
against the schema the document gives for that operation, status and media
type, with ajv (JSON; CSV rows converted to objects, the header equal to the
documented columns; .npy and LaTeX by their form). Errors too: 400, 401,
408, 413, 414, 415, 421, 431, 501, 503, 505 against the document's Error. The bounds the document
gives (maximum, maxLength, maxItems, enums, defaults) are the server's: the
bound is accepted and one past it refused.

SeveralModelsTest: with two models of different shapes, model= lists both
and the bounds are the largest.

Run by tests/openapi/run.sh, which installs the npm packages and sets
TWD_NPM (their folder); TWD and TWD_SYNTH as the other integration tests.
"""
import ast
import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import Daemon, make_checkpoint, stop_clean  # noqa: E402

NPM = os.environ.get("TWD_NPM", os.path.join(os.path.dirname(__file__), "..", "openapi", "npm"))
HERE = os.path.dirname(os.path.abspath(__file__))
OPENAPI_DIR = os.path.join(HERE, "..", "openapi")
NODE = shutil.which("node") or "node"

TMP = tempfile.mkdtemp(prefix="twd-openapi-")
MODEL = os.path.join(TMP, "m")
# 16-dimensional heads: /svd's top is bounded by 16 here, not max_top (64)
SHAPE = ("--layers", "2", "--heads", "2", "--embd", "32", "--vocab", "512", "--ctx", "32", "--seed", "5")
N_EMBD = 32
VOCAB = 512
TEXT = "the time of the year"

# One or more requests for every operation: (method, path, query or body,
# expected CSV table or None). The test fails when the document lists an
# operation, a media type or a CSV table that none of these reaches.
REQUESTS = [
    ("get", "/health", {}, None),
    ("get", "/model", {}, None),
    ("get", "/models", {}, None),
    ("get", "/metrics", {}, None),
    ("get", "/openapi.json", {}, None),
    ("get", "/umap", {}, None),
    ("get", "/tokenize", {"text": "hello world"}, None),
    ("get", "/tokenize", {"text": "NA, \"null\"\n", "format": "csv"}, None),
    ("get", "/tokenize", {"text": ""}, None),
    ("post", "/tokenize", {"text": "hi there", "model": "m"}, None),
    ("post", "/tokenize", {"text": "a,b", "format": "csv"}, None),
    ("get", "/detokenize", {"ids": "1,2,300,177"}, None),
    ("get", "/detokenize", {"ids": "1,2", "format": "csv"}, None),
    ("post", "/detokenize", {"ids": [3, 4, 5]}, None),
    ("post", "/detokenize", {"ids": [3], "format": "csv"}, None),
    ("get", "/embeddings", {"k": "2"}, None),
    ("get", "/embeddings", {"k": "3", "scheme": "scaled_bias"}, None),
    ("get", "/embeddings", {"k": "2", "format": "csv"}, None),
    ("get", "/embeddings/scores", {}, None),
    ("get", "/embeddings/scores", {"format": "csv"}, None),
    ("get", "/embeddings/scores", {"format": "npy", "model": "m"}, None),
    ("get", "/embeddings/normalization", {}, None),
    ("get", "/embeddings/normalization", {"format": "csv"}, None),
    ("get", "/probe", {"block": "0", "k": "2", "words": "a,bb,hello,e"}, None),
    ("get", "/probe", {"block": "1", "k": "1"}, None),
    ("get", "/probe", {"block": "0", "k": "2", "words": "a,bb,the", "format": "csv"}, None),
    ("post", "/probe", {"block": 1, "words": ["a", "b,c", "he"], "leading_space": True, "k": 1}, None),
    ("post", "/probe", {"block": 0, "words": ["a", "xyz"], "format": "csv"}, None),
    ("get", "/svd", {"block": "0", "top": "2", "k": "2"}, None),
    ("get", "/svd", {"block": "1", "head": "1", "matrix": "qk", "top": "0"}, None),
    ("get", "/svd", {"block": "0", "k": "1"}, None),
    ("get", "/svd", {"block": "0", "top": "2", "k": "2", "format": "csv"}, "directions"),
    ("get", "/svd", {"block": "0", "top": "0", "format": "csv"}, "spectra"),
    ("get", "/svd", {"block": "1", "top": "3", "matrix": "vo", "format": "csv", "table": "spectra"}, "spectra"),
    ("get", "/svd", {"block": "1", "top": "1", "format": "csv", "table": "directions"}, "directions"),
    ("get", "/svd", {"block": "0", "top": "2", "k": "3", "format": "latex"}, None),
    ("get", "/svd/bias", {"block": "0", "k": "2"}, None),
    ("get", "/svd/bias", {"block": "1", "k": "2", "format": "csv"}, None),
    # whole-model sweeps (api/sweep.h): the JSON wrapper and the one-block CSV tables
    ("get", "/probe", {"block": "all", "k": "1", "words": "a,bb"}, None),
    ("post", "/probe", {"block": "0-1", "words": ["a"], "k": 1, "format": "csv"}, None),
    ("get", "/svd", {"block": "all", "top": "0"}, None),
    ("get", "/svd", {"block": "0-1", "top": "1", "k": "1", "format": "csv"}, "directions"),
    ("get", "/svd", {"block": "all", "top": "0", "format": "csv"}, "spectra"),
    ("get", "/svd", {"block": "0-1", "top": "1", "k": "1", "format": "latex"}, None),
    ("get", "/svd/bias", {"block": "all", "k": "1"}, None),
    ("get", "/svd/bias", {"block": "0-1", "k": "1", "format": "csv"}, None),
    ("get", "/mlp/svd", {"block": "all", "top": "0"}, None),
    ("get", "/mlp/svd", {"block": "all", "matrix": "out", "format": "csv", "table": "spectra"}, "spectra"),
    ("get", "/trajectory", {"text": TEXT, "projection": "pca", "k": "2"}, None),
    ("get", "/trajectory", {"text": "a", "projection": "pca", "k": "1", "target": "e", "vectors": "true",
                            "gelu": "erf"}, None),
    ("get", "/trajectory", {"text": TEXT, "projection": "pca", "format": "csv"}, "points"),
    ("get", "/trajectory", {"text": TEXT, "projection": "pca", "target": "7", "format": "csv",
                            "table": "points"}, "points"),
    ("get", "/trajectory", {"text": TEXT, "projection": "pca", "k": "2", "format": "csv", "table": "nearest"},
     "nearest"),
    ("get", "/trajectory", {"text": "ab", "format": "csv", "table": "vectors"}, "vectors"),
    ("get", "/trajectory", {"text": TEXT, "format": "npy"}, None),
    ("post", "/trajectory", {"text": TEXT, "projection": "pca", "k": 1, "target": " time"}, None),
    ("post", "/trajectory", {"text": TEXT, "format": "npy"}, None),
    ("post", "/trajectory", {"text": "a b", "projection": "pca", "format": "csv"}, "points"),
    ("post", "/trajectory", {"text": "a b", "projection": "pca", "format": "csv", "table": "nearest", "k": 2},
     "nearest"),
    ("post", "/trajectory", {"text": "a b", "format": "csv", "table": "vectors"}, "vectors"),
    ("get", "/attention", {"text": TEXT}, None),
    ("get", "/attention", {"text": "ab", "block": "1", "head": "0", "gelu": "erf"}, None),
    ("get", "/attention", {"text": TEXT, "block": "0", "format": "csv"}, None),
    ("post", "/attention", {"text": "abc", "head": 1}, None),
    ("post", "/attention", {"text": "abc", "format": "csv"}, None),
    ("get", "/umap/layout", {"projection": "pca", "limit": "7"}, None),
    ("get", "/umap/layout", {"projection": "pca", "limit": "5", "format": "csv"}, None),
    ("get", "/umap/layout", {"projection": "pca", "limit": "6", "format": "npy"}, None),
    ("get", "/umap/layout/tokens", {"projection": "pca", "limit": "7"}, None),
    ("get", "/umap/layout/tokens", {"projection": "pca", "limit": "5", "format": "csv"}, None),
    ("post", "/trajectory/stats", {"texts": [TEXT, "a b c"], "k": 2}, None),
    ("post", "/trajectory/stats", {"texts": ["x", "a b"], "gelu": "erf", "format": "csv"}, None),
    # job 1 of the daemon: started, then asked about
    ("post", "/trajectory/stats/job", {"texts": [TEXT], "k": 1}, None),
    ("get", "/trajectory/stats/job/status", {"id": "1"}, None),
    ("get", "/trajectory/stats/job/result", {"id": "1", "wait": "30"}, None),
    ("get", "/trajectory/stats/job/result", {"id": "1", "format": "csv"}, None),
    ("post", "/sweep/job", {"path": "/svd", "query": "block=0-1&top=1&k=1"}, None),
    ("get", "/sweep/job/status", {"id": "2"}, None),  # job ids count the /trajectory/stats jobs too
    ("get", "/sweep/job/result", {"id": "2", "wait": "30"}, None),
    ("post", "/sweep/job/cancel", {"id": 2}, None),  # ended: answered as it ended
    ("post", "/trajectory/stats/job/cancel", {"id": 1}, None),
    ("get", "/mlp/values", {"block": "0", "k": "2", "neurons": "1,2"}, None),
    ("get", "/mlp/values", {"block": "1", "k": "1"}, None),
    ("get", "/mlp/values", {"block": "0", "k": "2", "neurons": "3", "format": "csv"}, None),
    ("get", "/mlp/svd", {"block": "0", "top": "2", "k": "2"}, None),
    ("get", "/mlp/svd", {"block": "1", "matrix": "in", "top": "0"}, None),
    ("get", "/mlp/svd", {"block": "0", "top": "2", "k": "2", "format": "csv"}, "directions"),
    ("get", "/mlp/svd", {"block": "0", "matrix": "out", "format": "csv", "table": "spectra"}, "spectra"),
    ("get", "/mlp/updates", {"text": TEXT, "top": "2", "k": "2"}, None),
    ("get", "/mlp/updates", {"text": "ab", "block": "1", "top": "1", "k": "1", "format": "csv"}, None),
    ("post", "/mlp/updates", {"text": "ab", "block": 0, "top": 2, "k": 1, "gelu": "erf"}, None),
    ("post", "/mlp/updates", {"text": "ab", "top": 1, "k": 1, "format": "csv"}, None),
    ("get", "/mlp/search", {"token": "e", "k": "3"}, None),
    ("get", "/mlp/search", {"token": "5", "block": "0", "k": "2"}, None),
    ("get", "/mlp/search", {"token": "e", "format": "csv"}, None),
    ("get", "/layernorm", {"k": "2", "keys": "none"}, None),
    ("get", "/layernorm", {"text": TEXT, "k": "1", "keys": "random", "queries": "16", "keys_block": "0"}, None),
    ("get", "/layernorm", {"k": "1", "queries": "32", "seed": "3"}, None),
    ("get", "/layernorm", {"k": "1", "keys": "none", "format": "csv"}, "layers"),
    ("get", "/layernorm", {"k": "2", "keys": "none", "format": "csv", "table": "lists"}, "lists"),
    ("get", "/layernorm", {"k": "1", "queries": "16", "format": "csv", "table": "keys"}, "keys"),
    ("post", "/layernorm", {"text": "ab", "k": 1, "keys": "none"}, None),
    ("post", "/layernorm", {"k": 1, "keys": "none", "format": "csv"}, "layers"),
    ("post", "/layernorm", {"text": "ab", "k": 1, "keys": "none", "format": "csv", "table": "lists"}, "lists"),
    ("post", "/layernorm", {"k": 1, "queries": 8, "keys": "random", "format": "csv", "table": "keys"}, "keys"),
    ("get", "/layernorm/sketch", {}, None),
    ("get", "/layernorm/sketch", {"block": "1", "head": "1", "dims": "3,5", "points": "8"}, None),
    ("get", "/layernorm/sketch", {"points": "4", "format": "csv"}, None),
    ("get", "/selfcheck", {"text": TEXT}, None),
    ("get", "/selfcheck", {"text": "ab", "block": "1", "seed": "3", "gelu": "erf"}, None),
    ("get", "/selfcheck", {"text": "ab", "format": "csv"}, None),
    ("post", "/selfcheck", {"text": "abc", "block": 0}, None),
    ("post", "/selfcheck", {"text": "abc", "format": "csv"}, None),
]

# Errors: (method, path, query or body, extra headers, status).
ERRORS = [
    ("get", "/svd", {"block": "99"}, {}, 400),
    ("get", "/health", {"nope": "1"}, {}, 400),
    ("get", "/tokenize", {"text": "x", "model": "nope"}, {}, 400),
    ("post", "/probe", {"block": "x"}, {}, 400),
    ("get", "/tokenize", {"text": "x" * 70000}, {}, 414),  # longer than max_url
    ("post", "/tokenize", {"text": "x" * (1 << 20)}, {}, 413),  # larger than max_body
    ("get", "/health", {}, {"X-Big": "v" * 120000}, 431),
    ("post", "/tokenize", "x", {"Transfer-Encoding": "gzip"}, 501),
    ("post", "/tokenize", "text=x", {"Content-Type": "text/plain"}, 415),
    ("get", "/model", {}, {"Host": "attacker.example"}, 421),
    ("get", "/trajectory", {"text": TEXT}, {}, 503),  # projection=umap with umap=false
    ("get", "/umap/layout", {"projection": "umap"}, {}, 503),
    ("get", "/umap/layout", {"projection": "umap", "format": "npy"}, {}, 503),
    ("get", "/umap/layout/tokens", {"projection": "umap"}, {}, 503),
]


RAW_NAMES = {408: "RequestTimeout", 505: "HTTPVersionNotSupported"}


def setUpModule():
    make_checkpoint(MODEL, "tiny", *SHAPE)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def pointer(*parts):
    """A JSON pointer ("#/a/b") of the parts, escaped."""
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(doc, ref):
    node = doc
    for part in ref.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def media_base(content_type):
    return content_type.split(";")[0].strip()


def send(daemon, method, path, params, headers=None):
    """One request as the test tables give it; (status, headers, body)."""
    headers = dict(headers or {})
    if method == "get":
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        return daemon.request("GET", target, headers=headers)
    body = params.encode() if isinstance(params, str) else json.dumps(params).encode()
    headers.setdefault("Content-Type", "application/json")
    return daemon.request("POST", path, body, headers)


NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
INTEGER = re.compile(r"^-?\d+$")


def csv_cell(cell, schema):
    """A CSV cell as the JSON value its column's schema describes: an empty
    cell is null; numbers are parsed only when they look like numbers, so
    that the schema refuses the rest."""
    if cell == "":
        return None if schema.get("nullable") else ""
    kind = schema.get("type")
    if kind == "integer" and INTEGER.match(cell):
        return int(cell)
    if kind == "number" and NUMBER.match(cell):
        return float(cell)
    if kind == "boolean" and cell in ("true", "false"):
        return cell == "true"
    return cell


class Validator:
    """Collects (name, pointer, value) cases and validates them all in one
    run of tests/openapi/validate.js (ajv)."""

    def __init__(self, doc):
        self.doc = doc
        self.cases = []

    def add(self, name, ptr, value):
        self.cases.append({"name": name, "pointer": ptr, "value": value})

    def run(self, test):
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=TMP, delete=False) as f:
            json.dump({"doc": self.doc, "cases": self.cases}, f)
        r = subprocess.run([NODE, os.path.join(OPENAPI_DIR, "validate.js"), os.path.join(NPM, "ajv", "node_modules",
                                                                                        "ajv"), f.name],
                           capture_output=True, text=True, timeout=300)
        test.assertEqual(r.returncode, 0, r.stderr)
        results = json.loads(r.stdout)
        test.assertEqual(len(results), len(self.cases))
        bad = [f"{x['name']}: {json.dumps(x['errors'])[:600]}" for x in results if x["errors"]]
        test.assertEqual(bad, [], "answers that do not match the document:\n" + "\n".join(bad))
        return len(results)


def start_with_document():
    """(a daemon on MODEL, the bytes of its /openapi.json)"""
    d = Daemon(model=MODEL).start()
    st, _, body = d.get("/openapi.json")
    assert st == 200, body[:300]
    return d, body


class DocumentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d, body = start_with_document()
        cls.doc_file = os.path.join(TMP, "openapi.json")
        with open(cls.doc_file, "wb") as f:
            f.write(body)

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def test_swagger_parser_validates(self):
        r = subprocess.run([NODE, os.path.join(OPENAPI_DIR, "check_doc.js"),
                            os.path.join(NPM, "swagger-parser", "node_modules", "@apidevtools", "swagger-parser"),
                            self.doc_file], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("valid:", r.stdout)

    def test_redocly_lint_passes(self):
        cli = os.path.join(NPM, "redocly", "node_modules", "@redocly", "cli", "bin", "cli.js")
        # no telemetry, no update check: the tests use no network
        env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
                   NO_COLOR="1")
        r = subprocess.run([NODE, cli, "lint", "--extends=recommended-strict", "--format=json", self.doc_file],
                           capture_output=True, text=True, timeout=300, env=env, cwd=TMP)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-2000:])
        report = json.loads(r.stdout[r.stdout.index("{"):])
        self.assertEqual(report["totals"]["errors"], 0, r.stdout[-4000:])
        self.assertEqual(report["totals"]["warnings"], 0, r.stdout[-4000:])

    def test_every_route_is_described(self):
        with open(self.doc_file) as f:
            doc = json.load(f)
        for path, item in doc["paths"].items():
            for method, op in item.items():
                name = f"{method} {path}"
                self.assertRegex(op["operationId"], r"^(get|post)[A-Z][A-Za-z]*$", name)
                ok = op["responses"]["200"]
                self.assertTrue(ok["content"], name)
                for media, m in ok["content"].items():
                    self.assertIn("schema", m, f"{name} {media}")
                    self.assertNotEqual(m["schema"], {}, f"{name} {media}: an empty schema")
                # the key guards every route but /health (server/http.c)
                sec = [list(s) for s in op.get("security", doc["security"])]
                self.assertEqual(sec, [] if path == "/health" else [[], ["bearerAuth"]], name)
                self.assertEqual("401" in op["responses"], path != "/health", name)
                self.assertEqual("415" in op["responses"], method == "post", name)
                if method == "post":  # required when a parameter is (/layernorm needs none)
                    body = op["requestBody"]["content"]["application/json"]["schema"]
                    self.assertEqual(op["requestBody"]["required"], bool(body.get("required")), name)
                    self.assertFalse(body["additionalProperties"], name)
        self.assertEqual(doc["info"]["license"]["name"], "MIT")  # meson.build's project license
        self.assertEqual(doc["security"], [])


class AnswersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d, body = start_with_document()
        cls.doc = json.loads(body)

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def operations(self):
        return {(m, p) for p, item in self.doc["paths"].items() for m in item}

    def response_schema(self, method, path, status, media):
        """The pointer of the schema the document gives for this answer (a
        response's $ref followed), or fails."""
        responses = self.doc["paths"][path][method]["responses"]
        self.assertIn(str(status), responses, f"{method} {path}: status {status} is not documented")
        res = responses[str(status)]
        base = ("paths", path, method, "responses", str(status))
        if "$ref" in res:
            base = tuple(res["$ref"].lstrip("#/").split("/"))
            res = resolve(self.doc, res["$ref"])
        self.assertIn(media, res["content"], f"{method} {path} {status}: {media} is not documented")
        return base, res["content"][media]

    def check_csv(self, v, name, base, media, body, table):
        tables = media["x-twd-tables"]
        if table is None:
            self.assertEqual(len(tables), 1, f"{name}: which table? the test must say")
            index = 0
        else:
            names = [t["table"] for t in tables]
            self.assertIn(table, names, name)
            index = names.index(table)
        spec = tables[index]
        text = body.decode("utf-8")
        self.assertTrue(text.endswith("\r\n"), name)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        self.assertEqual(rows[0], spec["columns"], f"{name}: the header is not the documented columns")
        example = media["example"] if len(tables) == 1 else media["examples"][spec["table"]]["value"]
        self.assertEqual(example, text.split("\r\n", 1)[0] + "\r\n", name)
        self.assertGreater(len(rows), 1, f"{name}: no rows")
        props = spec["row"]["properties"]
        for i, row in enumerate(rows[1:]):
            self.assertEqual(len(row), len(spec["columns"]), f"{name} row {i + 1}")
            obj = {c: csv_cell(cell, props[c]) for c, cell in zip(spec["columns"], row)}
            v.add(f"{name} row {i + 1}", pointer(*base, "content", "text/csv", "x-twd-tables", index, "row"), obj)
        return spec["table"]

    # the array each .npy answer holds: dtype and shape (None: any length)
    NPY = {"/trajectory": ("<f4", (None, None, N_EMBD)), "/embeddings/scores": ("<f8", (VOCAB, 4)),
           "/umap/layout": ("<f4", (None, 3))}

    def check_npy(self, name, path, body):
        self.assertEqual(body[:8], b"\x93NUMPY\x01\x00", name)
        hl = body[8] | body[9] << 8
        header = ast.literal_eval(body[10:10 + hl].decode("latin-1"))
        descr, want = self.NPY[path]
        self.assertEqual(header["descr"], descr, name)
        self.assertFalse(header["fortran_order"], name)
        shape = header["shape"]
        self.assertEqual(len(shape), len(want), name)
        for got, w in zip(shape, want):
            if w is not None:
                self.assertEqual(got, w, name)
        n = 1
        for x in shape:
            n *= x
        self.assertEqual(len(body), 10 + hl + n * int(descr[2:]), name)

    def test_every_operation_answers_as_documented(self):
        v = Validator(self.doc)
        seen_ops, seen_media, seen_tables = set(), set(), set()
        for method, path, params, table in REQUESTS:
            name = f"{method.upper()} {path} {json.dumps(params)[:80]}"
            self.assertIn((method, path), self.operations(), f"{name}: not in the document")
            st, h, body = send(self.d, method, path, params)
            self.assertEqual(st, 200, f"{name}: {body[:300]}")
            media_type = media_base(h["content-type"])
            base, media = self.response_schema(method, path, 200, media_type)
            seen_ops.add((method, path))
            seen_media.add((method, path, media_type))
            ptr = pointer(*base, "content", media_type, "schema")
            if media_type == "application/json":
                v.add(name, ptr, json.loads(body))
            elif media_type == "text/csv":
                seen_tables.add((method, path, self.check_csv(v, name, base, media, body, table)))
            elif media_type == "application/octet-stream":
                self.check_npy(name, path, body)
            elif media_type == "application/x-latex":
                text = body.decode("utf-8")
                self.assertTrue(text.startswith("% twd:"), name)
                self.assertIn("\\begin{tabular}", text, name)
            elif media_type == "text/plain":
                for line in body.decode("utf-8").splitlines():
                    self.assertRegex(line, r"^(# (HELP|TYPE) .*|[a-z_:][a-zA-Z0-9_:]*(\{.*\})? \S+)$", name)
            else:
                self.fail(f"{name}: the test does not know how to check {media_type}")
            if "x-twd-cache" in h:
                self.assertIn("X-Twd-Cache", resolve(self.doc, ptr.rsplit("/content/", 1)[0])["headers"], name)
        # every operation, media type and table of the document has a request
        missing = sorted(self.operations() - seen_ops)
        self.assertEqual(missing, [], "operations without a request in REQUESTS")
        for p, item in self.doc["paths"].items():
            for m, op in item.items():
                for media_type, media in op["responses"]["200"]["content"].items():
                    self.assertTrue((m, p, media_type) in seen_media, f"{m} {p}: no request answered {media_type}")
                    for t in media.get("x-twd-tables", []):
                        self.assertTrue((m, p, t["table"]) in seen_tables, f"{m} {p}: no request for table {t}")
        self.assertGreater(v.run(self), len(REQUESTS))

    def test_errors_answer_as_documented(self):
        v = Validator(self.doc)
        for method, path, params, headers, status in ERRORS:
            name = f"{method.upper()} {path} -> {status}"
            st, h, body = send(self.d, method, path, params, headers)
            self.assertEqual(st, status, f"{name}: {body[:300]}")
            self.assertEqual(media_base(h["content-type"]), "application/json", name)
            base, media = self.response_schema(method, path, status, "application/json")
            v.add(name, pointer(*base, "content", "application/json", "schema"), json.loads(body))
            if "retry-after" in h:
                self.assertIn("Retry-After", resolve(self.doc, pointer(*base))["headers"], name)
        v.run(self)

    def test_refusals_before_any_route_are_documented(self):
        # answered by the connection guard (server/guard.c) before a route is
        # known: still the Error shape, and documented on every operation
        v = Validator(self.doc)
        with Daemon("--set", "first_byte_timeout=1", model=MODEL) as d:
            for status, data in ((505, b"GET /health HTTP/2.0\r\n\r\n"), (408, b"")):
                s = socket.create_connection(("127.0.0.1", d.port))
                s.settimeout(20)
                s.sendall(data)
                got = b""
                while True:
                    part = s.recv(65536)
                    if not part:
                        break
                    got += part
                s.close()
                head, _, body = got.partition(b"\r\n\r\n")
                self.assertEqual(int(head.split(b" ")[1]), status, got[:300])
                self.assertIn(b"content-type: application/json", head.lower())
                for method, path in sorted(self.operations()):
                    self.response_schema(method, path, status, "application/json")
                v.add(f"raw {status}", pointer("components", "responses", RAW_NAMES[status], "content",
                                               "application/json", "schema"), json.loads(body))
            self.assertEqual(d.stop(), 0, d.stderr())
        v.run(self)

    def test_the_key_guards_what_the_document_says(self):
        with Daemon("--set", "api_key=s3cret", model=MODEL) as d:
            st, _, body = d.request("GET", "/openapi.json", headers={"Authorization": "Bearer s3cret"})
            self.assertEqual(st, 200)
            doc = json.loads(body)
            v = Validator(doc)
            for method, path, params, _ in REQUESTS:
                op = doc["paths"][path][method]
                guarded = {"bearerAuth": []} in op.get("security", doc["security"])
                st, _, body = send(d, method, path, params)
                if guarded:
                    self.assertEqual(st, 401, f"{method} {path}: {body[:200]}")
                    self.response_schema(method, path, 401, "application/json")
                    v.add(f"{method} {path} 401", pointer("components", "responses", "Unauthorized", "content",
                                                          "application/json", "schema"), json.loads(body))
                    st, _, body = send(d, method, path, params, {"Authorization": "Bearer s3cret"})
                self.assertEqual(st, 200, f"{method} {path}: {body[:200]}")
            v.run(self)
            self.assertEqual(d.stop(), 0, d.stderr())

    # ---- the bounds the document gives are the server's ----
    def base_request(self, path):
        for method, p, params, _ in REQUESTS:
            if method == "get" and p == path and "format" not in params:
                return dict(params)
        self.fail(f"no JSON GET request for {path} in REQUESTS")

    def refused(self, path, params, words):
        st, _, body = send(self.d, "get", path, params)
        if st != 400:
            return False
        msg = json.loads(body)["error"]["message"]
        return all(w in msg for w in words)

    def test_bounds_are_the_servers(self):
        checked = 0
        for path, item in self.doc["paths"].items():
            if "get" not in item:
                continue
            for prm in item["get"].get("parameters", []):
                name, s = prm["name"], prm["schema"]
                base = self.base_request(path)
                where = f"{path} {name}"
                if "oneOf" in s:  # block: one block (an integer), or "all" / "A-B" (a sweep)
                    alts = s["oneOf"]
                    self.assertEqual([a["type"] for a in alts], ["integer", "string"], where)
                    s = alts[0]
                    if "maximum" in s:
                        hi = s["maximum"]
                        self.assertFalse(self.refused(path, {**base, name: f"{s['minimum']}-{hi}"}, (name,)), where)
                        self.assertTrue(self.refused(path, {**base, name: f"0-{hi + 1}"}, (name, "outside")), where)
                if s.get("type") == "integer":
                    words = (f"parameter '{name}'",)
                    if "maximum" in s:
                        hi = s["maximum"]
                        self.assertFalse(self.refused(path, {**base, name: str(hi)}, words + ("must be",)), where)
                        accepted = s.get("x-twd-accepted-maximum")
                        if accepted is None:
                            self.assertTrue(self.refused(path, {**base, name: str(hi + 1)}, words), where)
                        else:  # taken up to the configured bound, answering the maximum
                            at_hi = send(self.d, "get", path, {**base, name: str(hi)})
                            self.assertEqual(send(self.d, "get", path, {**base, name: str(hi + 1)}), at_hi, where)
                            self.assertEqual(send(self.d, "get", path, {**base, name: str(accepted)}), at_hi, where)
                            self.assertTrue(self.refused(path, {**base, name: str(accepted + 1)}, words), where)
                        checked += 1
                    lo = s["minimum"]
                    self.assertFalse(self.refused(path, {**base, name: str(lo)}, words + ("must be",)), where)
                    self.assertTrue(self.refused(path, {**base, name: str(lo - 1)}, words), where)
                    if "default" in s:  # the documented default is what the server takes
                        without = {k: x for k, x in base.items() if k != name}
                        st1, _, b1 = send(self.d, "get", path, without)
                        st2, _, b2 = send(self.d, "get", path, {**without, name: str(s["default"])})
                        self.assertEqual((st1, b1), (st2, b2), where)
                    checked += 1
                elif s.get("enum") is not None:
                    for value in s["enum"]:
                        st, _, body = send(self.d, "get", path, {**base, name: value})
                        self.assertFalse(st == 400 and f"parameter '{name}'" in body.decode(), f"{where}={value}")
                    self.assertTrue(self.refused(path, {**base, name: "zz-not-a-choice"}, (name, "zz-not-a-choice")),
                                    where)
                    checked += 1
                elif s.get("type") == "string" and "maxLength" in s:
                    hi = s["maxLength"]
                    long_words = (f"parameter '{name}'", "bytes long")
                    self.assertFalse(self.refused(path, {**base, name: "a" * hi}, long_words), where)
                    self.assertTrue(self.refused(path, {**base, name: "a" * (hi + 1)}, long_words), where)
                    # the server counts bytes: fewer characters than maxLength can be too long
                    self.assertTrue(self.refused(path, {**base, name: "\u00e9" * (hi // 2 + 1)}, long_words), where)
                    if s.get("minLength", 0) > 0:
                        self.assertTrue(self.refused(path, {**base, name: ""}, (f"parameter '{name}'",)), where)
                    checked += 1
                elif s.get("type") == "array":
                    items = s["items"]
                    n_min = max(s.get("minItems", 0), 1)
                    # the fewest items allowed, distinct (two coordinates must differ)
                    fill = [str(items.get("minimum", 0) + i) if items["type"] == "integer" else "a"
                            for i in range(n_min)]

                    def first(value):
                        return ",".join([value] + fill[1:])

                    if "maxItems" in s and s["maxItems"] * 4 < 60000:  # within max_url
                        hi, held = s["maxItems"], (f"parameter '{name}'", "hold")
                        self.assertFalse(self.refused(path, {**base, name: ",".join((fill * hi)[:hi])}, held), where)
                        self.assertTrue(self.refused(path, {**base, name: ",".join((fill * hi)[:hi] + fill[:1])},
                                                     held), where)
                    self.assertTrue(self.refused(path, {**base, name: ""}, (f"parameter '{name}'",)), where)
                    item = (f"parameter '{name}': item 0",)
                    if "maximum" in items:
                        self.assertFalse(self.refused(path, {**base, name: first(str(items["maximum"]))}, item), where)
                        self.assertTrue(self.refused(path, {**base, name: first(str(items["maximum"] + 1))}, item),
                                        where)
                    if "minimum" in items:
                        self.assertTrue(self.refused(path, {**base, name: first(str(items["minimum"] - 1))}, item),
                                        where)
                    if "maxLength" in items:
                        over = (f"parameter '{name}'", "longer than")
                        self.assertFalse(self.refused(path, {**base, name: first("a" * items["maxLength"])}, over),
                                         where)
                        self.assertTrue(self.refused(path, {**base, name: first("a" * (items["maxLength"] + 1))},
                                                     over), where)
                    checked += 1
        self.assertGreater(checked, 30)

    def test_model_bounds_in_the_document(self):
        params = {p["name"]: p["schema"] for p in self.doc["paths"]["/svd"]["get"]["parameters"]}
        self.assertEqual(params["top"]["maximum"], 16)  # the head dimension
        self.assertEqual(params["top"]["x-twd-accepted-maximum"], 64)  # max_top, answering 16
        self.assertEqual(params["top"]["default"], 16)  # 20, bounded by the head dimension
        self.assertEqual(params["block"]["oneOf"][0]["maximum"], 1)
        self.assertEqual(params["head"]["maximum"], 1)
        self.assertEqual(params["k"]["maximum"], 100)  # min(max_k, vocab_size)
        self.assertEqual(params["model"]["enum"], ["m"])
        ids = {p["name"]: p["schema"] for p in self.doc["paths"]["/detokenize"]["get"]["parameters"]}["ids"]
        self.assertEqual(ids["items"]["maximum"], 511)
        state = self.doc["components"]["schemas"]["TrajectoryState"]["properties"]
        self.assertEqual(state["vectors"]["items"]["maxItems"], N_EMBD)


class SeveralModelsTest(unittest.TestCase):
    def test_bounds_are_the_largest_and_model_lists_all(self):
        other = make_checkpoint(os.path.join(TMP, "wide"), "tiny", "--layers", "3", "--heads", "4", "--embd", "64",
                                "--vocab", "300", "--ctx", "16", "--seed", "6")
        with Daemon("--model", other, model=MODEL) as d:
            st, doc = d.get_json("/openapi.json")
            self.assertEqual(st, 200)
            params = {p["name"]: p["schema"] for p in doc["paths"]["/svd"]["get"]["parameters"]}
            self.assertEqual(params["model"]["enum"], ["m", "wide"])
            self.assertEqual(params["model"]["default"], "m")
            self.assertEqual(params["block"]["oneOf"][0]["maximum"], 2)  # wide's 3 blocks
            self.assertEqual(params["head"]["maximum"], 3)
            self.assertEqual(params["top"]["maximum"], 16)  # both have 16-dimensional heads
            self.assertEqual(params["top"]["default"], 16)  # both have 16-dimensional heads
            # the widths differ: the vectors have no one length, the CSV no one set of columns
            state = doc["components"]["schemas"]["TrajectoryState"]["properties"]
            self.assertNotIn("maxItems", state["vectors"]["items"])
            tables = doc["paths"]["/trajectory"]["get"]["responses"]["200"]["content"]["text/csv"]["x-twd-tables"]
            vec = [t for t in tables if t["table"] == "vectors"][0]
            self.assertEqual(vec["row"]["additionalProperties"], {"type": "number",
                                                                  "description": "one value of the state vector"})
            # the server takes the loosest bound for the model that has it
            st, _, _ = d.get("/svd", block="2", head="3", top="1", k="1", model="wide")
            self.assertEqual(st, 200)
            self.assertEqual(d.stop(), 0, d.stderr())


if __name__ == "__main__":
    unittest.main()
