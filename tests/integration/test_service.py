"""Integration tests of issue 2: the real twd binary over loopback.

Run: TWD=build/server/twd TWD_SYNTH=build/tools/twd-synth /usr/bin/python3 -m unittest \
        tests/integration/test_service.py
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import (SANITIZER, TWD, Daemon, OneDaemon, error_of, module_checkpoint,  # noqa: E402
                         read_answer)

TMP, TINY, setUpModule, tearDownModule = module_checkpoint("twd-it-")


class ServiceTest(OneDaemon, unittest.TestCase):
    daemon_model = TINY
    daemon_env = {"TWD_TEST": "1"}

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        assert "twd: stopped" in cls.log, cls.log

    def test_health(self):
        st, doc = self.d.get_json("/health")
        self.assertEqual(st, 200)
        self.assertEqual(doc["status"], "ok")
        self.assertTrue(doc["synthetic"])

    def test_model(self):
        st, doc = self.d.get_json("/model")
        self.assertEqual(st, 200)
        with open(os.path.join(TINY, "config.json")) as f:
            cfg = json.load(f)
        for k in ("n_layer", "n_head", "n_embd", "vocab_size"):
            self.assertEqual(doc[k], cfg[k], k)
        self.assertEqual(doc["n_ctx"], cfg["n_positions"])
        self.assertTrue(doc["synthetic"])
        self.assertIn("SYNTHETIC", doc["note"])
        self.assertEqual(doc["file_size"], os.path.getsize(os.path.join(TINY, "model.safetensors")))
        # parameter count from the file's own shapes, independently of the daemon
        with open(os.path.join(TINY, "model.safetensors"), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        total = 0
        for name, t in header.items():
            if name == "__metadata__" or re.search(r"h\.\d+\.attn\.(bias|masked_bias)$", name):
                continue
            p = 1
            for s in t["shape"]:
                p *= s
            total += p
        self.assertEqual(doc["n_params"], total)
        self.assertGreaterEqual(doc["load_seconds"], 0)
        self.assertEqual(doc["origin"], "configured")

    def test_tokenize(self):
        st, doc = self.d.get_json("/tokenize", text="the time of the year")
        self.assertEqual(st, 200)
        self.assertEqual(doc["n_tokens"], len(doc["tokens"]))
        joined = b"".join(bytes(t["bytes"]) for t in doc["tokens"])
        self.assertEqual(joined, b"the time of the year")
        for t in doc["tokens"]:
            self.assertEqual(set(t), {"id", "text", "bytes"})
            self.assertEqual(t["text"], bytes(t["bytes"]).decode("utf-8", "replace"))
        # POST gives the same answer
        st2, doc2 = self.d.post_json("/tokenize", {"text": "the time of the year"})
        self.assertEqual((st2, doc2), (st, doc))
        # the special token
        st, doc = self.d.get_json("/tokenize", text="a<|endoftext|>b")
        ids = [t["id"] for t in doc["tokens"]]
        self.assertIn(511, ids)  # tiny vocabulary: 512 ids, <|endoftext|> last
        # empty text is allowed and gives no tokens
        st, doc = self.d.get_json("/tokenize", text="")
        self.assertEqual((st, doc["n_tokens"]), (200, 0))

    def test_tokenize_bad_requests(self):
        st, h, body = self.d.get("/tokenize")
        error_of(self, st, body, 400, ["'text'", "required"])
        st, h, body = self.d.request("GET", "/tokenize?text=%ff%fe")
        error_of(self, st, body, 400, ["'text'", "UTF-8"])
        st, h, body = self.d.request("GET", "/tokenize?text=%zz")
        error_of(self, st, body, 400, ["percent-encoding", "'text'"])
        st, h, body = self.d.request("GET", "/tokenize?text=abc%")
        error_of(self, st, body, 400, ["percent-encoding"])
        st, h, body = self.d.request("GET", "/tokenize?text=a&bogus=1")
        error_of(self, st, body, 400, ["unknown parameter 'bogus'"])
        st, h, body = self.d.request("POST", "/tokenize", b'{"text": 3}', {"Content-Type": "application/json"})
        error_of(self, st, body, 400, ["'text'", "string"])
        st, h, body = self.d.request("POST", "/tokenize", b'{"text": "a"', {"Content-Type": "application/json"})
        error_of(self, st, body, 400, ["not valid JSON"])
        st, h, body = self.d.request("POST", "/tokenize", b'{"text": "a", "text": "b"}')
        error_of(self, st, body, 400, ["not valid JSON"])
        st, h, body = self.d.request("GET", "/tokenize?text=" + "a" * 20000)
        error_of(self, st, body, 400, ["'text'", "limit is 16384"])

    def test_oversized(self):
        # 10 MB body: read, dropped, refused
        body = b"x" * (10 * 1024 * 1024)
        st, h, data = self.d.request("POST", "/tokenize", body, {"Content-Type": "application/json"})
        error_of(self, st, data, 413, ["body too large"])
        # a declared 1 GB body: refused at once, before any of it is sent
        conn = socket.create_connection(("127.0.0.1", self.d.port))
        conn.sendall(b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n")
        conn.settimeout(10)
        resp = read_answer(conn)
        conn.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 413"), resp[:200])
        self.assertIn(b'"payload_too_large"', resp)
        # the same without Content-Length (chunked): counted while reading
        conn = socket.create_connection(("127.0.0.1", self.d.port))
        conn.sendall(b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/json\r\n\r\n")
        chunk = b"y" * 65536
        try:
            for _ in range(40):
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        conn.settimeout(10)
        resp = read_answer(conn)
        conn.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 413"), resp[:200])
        # an oversized request target
        st, h, data = self.d.request("GET", "/tokenize?text=" + "b" * 70000)
        error_of(self, st, data, 414, ["request target too long"])
        # still serving
        self.assertEqual(self.d.get("/health")[0], 200)

    def test_not_found_and_methods(self):
        st, h, body = self.d.get("/nope")
        error_of(self, st, body, 404)
        st, h, body = self.d.request("POST", "/nope", b"{}")
        error_of(self, st, body, 404, ["no such route"])
        st, h, body = self.d.request("POST", "/health", b"{}")
        error_of(self, st, body, 405)
        self.assertEqual(h["allow"], "GET, HEAD")
        st, h, body = self.d.request("DELETE", "/model")
        error_of(self, st, body, 405)
        st, h, body = self.d.request("HEAD", "/health")
        self.assertEqual((st, body), (200, b""))
        st, h, body = self.d.request("OPTIONS", "/tokenize")
        self.assertEqual(st, 204)
        self.assertIn("POST", h["allow"])

    def test_cors_not_reflected(self):
        st, h, body = self.d.request("GET", "/health", headers={"Origin": "http://evil.example"})
        self.assertEqual(st, 200)
        self.assertNotIn("access-control-allow-origin", h)

    def test_static(self):
        st, h, body = self.d.get("/")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertIn(b"<html", body.lower())
        for bad in ("/../meson.build", "/%2e%2e/meson.build", "/static/../../meson.build", "/..%2fmeson.build",
                    "/%2e%2e%2fREADME.md", "//etc/passwd"):
            st, h, body = self.d.request("GET", bad)
            error_of(self, st, body, 404)
        st, h, body = self.d.request("GET", "/index.html%00.js")
        self.assertIn(st, (400, 404))
        error_of(self, st, body, st)

    def test_metrics(self):
        self.d.get("/health")
        self.d.get("/nope")
        st, h, body = self.d.get("/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain"))
        text = body.decode()
        self.assertRegex(text, r'twd_requests_total\{route="/health",status="200"\} [1-9]')
        self.assertRegex(text, r'twd_requests_total\{route="static",status="404"\} [1-9]')
        self.assertIn('twd_request_duration_seconds_bucket{route="/health",le="+Inf"}', text)
        self.assertRegex(text, r"twd_requests_in_flight [0-9]+")
        self.assertRegex(text, r"twd_model_load_seconds [0-9.]+")

    def test_openapi(self):
        st, doc = self.d.get_json("/openapi.json")
        self.assertEqual(st, 200)
        self.assertTrue(doc["openapi"].startswith("3."))
        for path in ("/health", "/model", "/tokenize", "/metrics", "/openapi.json"):
            self.assertIn(path, doc["paths"])
        tok = doc["paths"]["/tokenize"]
        self.assertEqual([p["name"] for p in tok["get"]["parameters"]], ["text", "format", "model"])
        self.assertIn("post", tok)

    def test_concurrent_clients(self):
        errors = []

        def worker():
            try:
                for _ in range(20):
                    st, doc = self.d.get_json("/tokenize", text="hello world")
                    if st != 200:
                        errors.append(st)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        ts = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])

    def test_access_log(self):
        self.d.get("/health")
        time.sleep(0.1)
        self.assertRegex(self.d.stderr(), r'"GET /health" 200 \d+ [0-9.]+ms')


class ConfigTest(unittest.TestCase):
    def test_config_file_and_flags(self):
        conf = os.path.join(TMP, "t.conf")
        with open(conf, "w") as f:
            f.write("max_text = 10\nport = 1\n")
        with Daemon("--config", conf, model=TINY) as d:  # --port 0 from the harness wins
            st, h, body = d.get("/tokenize", text="x" * 11)
            error_of(self, st, body, 400, ["limit is 10"])

    def test_cors_exact_origin(self):
        with Daemon("--set", "cors_origin=http://notebook.example:8888", model=TINY) as d:
            st, h, _ = d.request("GET", "/health", headers={"Origin": "http://notebook.example:8888"})
            self.assertEqual(h.get("access-control-allow-origin"), "http://notebook.example:8888")
            self.assertEqual(h.get("vary"), "Origin")
            st, h, _ = d.request("GET", "/health", headers={"Origin": "http://other.example"})
            self.assertNotIn("access-control-allow-origin", h)
            st, h, _ = d.request("OPTIONS", "/probe", headers={"Origin": "http://notebook.example:8888"})
            self.assertEqual(st, 204)
            self.assertIn("POST", h["access-control-allow-methods"])

    def test_bad_config_exits(self):
        r = subprocess.run([TWD, "--set", "port=99999"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("port", r.stderr)
        self.assertIn("0..65535", r.stderr)

    def test_help(self):
        r = subprocess.run([TWD, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        for opt in ("listen", "port", "model", "threads", "cache_mb", "max_body"):
            self.assertIn(opt, r.stdout)


class BadCheckpointTest(unittest.TestCase):
    """A bad checkpoint stops start-up: exit 1, one line naming file and tensor."""

    def corrupt(self, name, fn):
        d = os.path.join(TMP, "bad-" + name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(TINY, d)
        fn(d)
        return d

    def expect_failure(self, folder, *words):
        r = subprocess.run([TWD, "--model", folder, "--port", "0", "--no-fetch", "--set", "umap=false"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = [l for l in r.stderr.splitlines() if "cannot load the model" in l]
        self.assertEqual(len(lines), 1, r.stderr)
        for w in words:
            self.assertIn(w, lines[0])
        self.assertFalse(SANITIZER.search(r.stderr), r.stderr)
        return lines[0]

    def test_missing_folder(self):
        self.expect_failure(os.path.join(TMP, "does-not-exist"), "does-not-exist")

    def test_missing_safetensors(self):
        d = self.corrupt("nofile", lambda d: os.remove(os.path.join(d, "model.safetensors")))
        self.expect_failure(d, "model.safetensors")

    def test_truncated(self):
        def trunc(d):
            p = os.path.join(d, "model.safetensors")
            with open(p, "r+b") as f:
                f.truncate(os.path.getsize(p) - 1000)
        self.expect_failure(self.corrupt("trunc", trunc), "model.safetensors")

    def test_malformed_header(self):
        def mangle(d):
            p = os.path.join(d, "model.safetensors")
            with open(p, "r+b") as f:
                f.seek(8)
                f.write(b"{{{{")
        self.expect_failure(self.corrupt("header", mangle), "model.safetensors")

    def rewrite_header(self, d, edit):
        p = os.path.join(d, "model.safetensors")
        with open(p, "rb") as f:
            raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        edit(header)
        hb = json.dumps(header).encode()
        hb += b" " * (-len(hb) % 8)
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + raw[8 + n:])

    def test_wrong_shape(self):
        def edit(h):
            key = next(k for k in h if k.endswith("h.1.attn.c_attn.weight"))
            h[key]["shape"] = list(reversed(h[key]["shape"]))
        line = self.expect_failure(self.corrupt("shape", lambda d: self.rewrite_header(d, edit)),
                                   "model.safetensors", "h.1.attn.c_attn.weight")
        self.assertIn("shape", line)

    def test_missing_tensor(self):
        def edit(h):
            key = next(k for k in h if k.endswith("ln_f.weight"))
            del h[key]
        self.expect_failure(self.corrupt("missing", lambda d: self.rewrite_header(d, edit)),
                            "model.safetensors", "ln_f.weight")

    def test_bad_config(self):
        def edit(d):
            p = os.path.join(d, "config.json")
            with open(p) as f:
                c = json.load(f)
            c["n_head"] = 3
            with open(p, "w") as f:
                json.dump(c, f)
        self.expect_failure(self.corrupt("config", edit), "config.json")

    def test_missing_vocab(self):
        self.expect_failure(self.corrupt("novocab", lambda d: os.remove(os.path.join(d, "vocab.json"))),
                            "vocab.json")


class DefaultModelTest(unittest.TestCase):
    def test_offline_demo_model(self):
        """No model configured and no hub: twd's demo model (a small model trained on the KJV
        Bible, not GPT-2), said plainly."""
        d = Daemon(env={}, wait_ready=False)
        # point the hub at a closed local port: fails fast, never hangs
        d.args = ["--set", "fetch=true", "--set", "hub_url=http://127.0.0.1:9", "--set", "fetch_timeout=2"]
        d.start()
        try:
            t0 = time.time()
            d.wait_health(120)
            st, doc = d.get_json("/model")
            self.assertEqual(st, 200)
            self.assertEqual(doc["origin"], "demo")
            self.assertEqual(doc["name"], "twd-demo")
            self.assertFalse(doc["synthetic"])
            self.assertIn("demo model", doc["note"])
            self.assertIn("not GPT-2", doc["note"])
            self.assertIn("King James", doc["corpus"])
            self.assertEqual((doc["n_layer"], doc["n_head"], doc["n_embd"], doc["vocab_size"]), (4, 4, 128, 50257))
            self.assertEqual(doc["tokenizer"], "gpt2-bpe")
            self.assertLess(time.time() - t0, 60)
        finally:
            self.assertEqual(d.stop(), 0, d.stderr())
        self.assertIn("falling back to the demo model", d.stderr())


if __name__ == "__main__":
    unittest.main(verbosity=2)
