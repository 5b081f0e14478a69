"""The default model's download, against a local stand-in for the hub.

The stand-in serves a tiny synthetic checkpoint with the hub's layout
(/{repo}/resolve/main/{file}; LFS files answer with a redirect that carries
X-Linked-Size and X-Linked-Etag = SHA-256, and the redirect target honours
Range). It can cut the first transfer short to test resuming, or announce a
wrong hash to test verification.
"""
import hashlib
import http.server
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import SANITIZER, Daemon, make_checkpoint  # noqa: E402

TMP = tempfile.mkdtemp(prefix="twd-hub-")
SRC = os.path.join(TMP, "src")
REPO = "openai-community/gpt2"
FILES = ("config.json", "vocab.json", "merges.txt", "model.safetensors")


class FakeHub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.cut_after = None      # bytes after which the next model transfer is cut
        self.bad_hash = False
        self.ranges = []           # Range headers seen on the model file
        self.gets = []


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _file(self):
        prefix = "/%s/resolve/main/" % REPO
        if self.path.startswith(prefix):
            return self.path[len(prefix):], False
        if self.path.startswith("/cdn/"):
            return self.path[5:], True
        return None, False

    def _lfs_headers(self, name):
        p = os.path.join(SRC, name)
        digest = hashlib.sha256(read_bytes(p)).hexdigest()
        if self.server.bad_hash:
            digest = "0" * 64
        self.send_header("X-Linked-Size", str(os.path.getsize(p)))
        self.send_header("X-Linked-Etag", '"%s"' % digest)

    def do_HEAD(self):
        self.handle_req(head=True)

    def do_GET(self):
        self.handle_req(head=False)

    def handle_req(self, head):
        name, cdn = self._file()
        if name not in FILES:
            self.send_response(404)
            self.end_headers()
            return
        if name == "model.safetensors" and not cdn:
            self.send_response(302)
            self._lfs_headers(name)
            self.send_header("Location", "/cdn/" + name)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = read_bytes(os.path.join(SRC, name))
        start = 0
        rng = self.headers.get("Range")
        if not head:
            self.server.gets.append(name)
        if rng and name == "model.safetensors":
            self.server.ranges.append(rng)
            start = int(rng.split("=")[1].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        cut = self.server.cut_after
        if cut is not None and name == "model.safetensors":
            self.server.cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


def setUpModule():
    make_checkpoint(SRC, "tiny", "--seed", "7")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class HubTest(unittest.TestCase):
    def setUp(self):
        self.hub = FakeHub()
        threading.Thread(target=self.hub.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.hub.server_address[1]

    def tearDown(self):
        self.hub.shutdown()
        self.hub.server_close()

    def daemon(self, cache):
        d = Daemon("--set", "fetch=true", "--set", "hub_url=" + self.url, "--set", "fetch_timeout=5")
        shutil.rmtree(d.cache)
        d.cache = cache
        return d

    def test_download_resume_and_reuse(self):
        cache = os.path.join(TMP, "cache-resume")
        size = os.path.getsize(os.path.join(SRC, "model.safetensors"))
        self.hub.cut_after = size // 2
        # first start: the transfer is cut; twd falls back to the demo model
        with self.daemon(cache) as d:
            st, doc = d.get_json("/model")
            self.assertEqual(doc["origin"], "demo")
        self.assertIn("partial download kept", d.stderr())
        part = os.path.join(cache, "hub", "openai-community-gpt2", ".partial", "model.safetensors")
        self.assertEqual(os.path.getsize(part), size // 2)
        # second start: resumes from the middle, verifies, loads the hub model
        with self.daemon(cache) as d:
            st, doc = d.get_json("/model")
            self.assertEqual(doc["origin"], "hub-cache")
            self.assertEqual(doc["name"], REPO)
            self.assertEqual(doc["n_embd"], 32)
        self.assertIn("bytes=%d-" % (size // 2), self.hub.ranges)
        final = os.path.join(cache, "hub", "openai-community-gpt2")
        for f in FILES:
            self.assertEqual(read_bytes(os.path.join(final, f)), read_bytes(os.path.join(SRC, f)))
        # third start: nothing is downloaded again
        self.hub.gets.clear()
        with self.daemon(cache) as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "hub-cache")
        self.assertEqual(self.hub.gets, [])
        self.assertFalse(SANITIZER.search(d.stderr()), d.stderr())

    def test_hash_mismatch_is_rejected(self):
        cache = os.path.join(TMP, "cache-bad")
        self.hub.bad_hash = True
        with self.daemon(cache) as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "demo")
        self.assertIn("does not match", d.stderr())
        self.assertFalse(os.path.exists(os.path.join(cache, "hub", "openai-community-gpt2", "model.safetensors")))


class StallingHub:
    """Accepts connections and then never finishes an answer: silent, or
    after the first bytes of a status line."""

    def __init__(self, first_bytes=b""):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.first_bytes = first_bytes
        self.conns = []
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.first_bytes:
                c.sendall(self.first_bytes)

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


class StalledHubTest(unittest.TestCase):
    """fetch_timeout bounds the whole decision whether the hub answers: with
    a hub that accepts and stalls, twd serves the demo model within
    fetch_timeout plus a margin (it took 3 x fetch_timeout before)."""

    FETCH_TIMEOUT = 3
    MARGIN = 2

    def check(self, first_bytes):
        hub = StallingHub(first_bytes)
        self.addCleanup(hub.close)
        cache = tempfile.mkdtemp(dir=TMP)
        # the demo model already generated (as by an earlier start), so that the
        # time measured is the hub's, not that of writing 6M weights (slow under ASan)
        make_checkpoint(os.path.join(cache, "demo-v1"), "demo", "--seed", "1")
        d = Daemon("--set", "fetch=true", "--set", "hub_url=" + hub.url,
                   "--set", "fetch_timeout=%d" % self.FETCH_TIMEOUT)
        shutil.rmtree(d.cache)
        d.cache = cache
        t0 = time.monotonic()
        with d:
            elapsed = time.monotonic() - t0
            self.assertEqual(d.get_json("/model")[1]["origin"], "demo")
        self.assertTrue(hub.conns, "twd never contacted the stand-in hub")
        self.assertLess(elapsed, self.FETCH_TIMEOUT + self.MARGIN, d.stderr())
        self.assertGreater(elapsed, self.FETCH_TIMEOUT - 0.5, d.stderr())  # it did wait for the hub
        self.assertIn("timed out", d.stderr())
        self.assertIn("falling back to the demo model", d.stderr())
        self.assertFalse(SANITIZER.search(d.stderr()), d.stderr())

    def test_silent_hub(self):
        self.check(b"")

    def test_hub_stalls_after_first_bytes(self):
        self.check(b"HTTP/1.1 200 OK\r\nContent-")


if __name__ == "__main__":
    unittest.main(verbosity=2)
