"""The default model's download, through the daemon, against a local
stand-in for the hub (hub_standin.py: the real hub's headers, redirects and
Range behaviour).

The download lands in the Hugging Face cache (HF_HUB_CACHE), where a later
start, or huggingface_hub, finds it; test_hub_cache.py tests the layout
itself.
"""
import hashlib
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
from hub_standin import StandInHub  # noqa: E402
from twd_harness import SANITIZER, Daemon, make_checkpoint  # noqa: E402

TMP = tempfile.mkdtemp(prefix="twd-hub-")
SRC = os.path.join(TMP, "src")
REPO = "openai-community/gpt2"
FILES = ("config.json", "vocab.json", "merges.txt", "model.safetensors")


def setUpModule():
    make_checkpoint(SRC, "tiny", "--seed", "7")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class HubTest(unittest.TestCase):
    def setUp(self):
        self.hub = StandInHub()
        self.commit = self.hub.add_revision(REPO, "main", {f: read_bytes(os.path.join(SRC, f)) for f in FILES})
        self.hub.start()
        self.addCleanup(self.hub.stop)
        self.url = self.hub.url

    def daemon(self, cache, *args):
        return Daemon("--set", "fetch=true", "--set", "hub_url=" + self.url, "--set", "fetch_timeout=5", *args,
                      env={"HF_HUB_CACHE": os.path.join(cache, "hf")}, cache_dir=cache)

    def test_download_resume_and_reuse(self):
        cache = os.path.join(TMP, "cache-resume")
        model = read_bytes(os.path.join(SRC, "model.safetensors"))
        size, digest = len(model), hashlib.sha256(model).hexdigest()
        repo_dir = os.path.join(cache, "hf", "models--openai-community--gpt2")
        self.hub.cut_after = size // 2
        # first start: the transfer is cut; twd falls back to the demo model
        with self.daemon(cache) as d:
            st, doc = d.get_json("/model")
            self.assertEqual(doc["origin"], "demo")
        self.assertIn("partial download kept", d.stderr())
        part = os.path.join(repo_dir, "blobs", digest + ".incomplete")
        self.assertEqual(os.path.getsize(part), size // 2)
        self.assertFalse(os.path.exists(os.path.join(repo_dir, "refs", "main")))
        # second start: resumes from the middle, verifies, loads the hub model
        with self.daemon(cache) as d:
            st, doc = d.get_json("/model")
            self.assertEqual(doc["origin"], "download")
            self.assertEqual(doc["name"], REPO)
            self.assertEqual(doc["n_embd"], 32)
        self.assertIn("bytes=%d-" % (size // 2), self.hub.ranges())
        snap = os.path.join(repo_dir, "snapshots", self.commit)
        for f in FILES:
            self.assertTrue(os.path.islink(os.path.join(snap, f)), f)
            self.assertEqual(read_bytes(os.path.join(snap, f)), read_bytes(os.path.join(SRC, f)))
        self.assertEqual(read_bytes(os.path.join(repo_dir, "refs", "main")), self.commit.encode())
        # third start: nothing is downloaded again
        self.hub.clear_log()
        with self.daemon(cache) as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "hf-cache")
        self.assertEqual(self.hub.gets(), [])
        self.assertFalse(SANITIZER.search(d.stderr()), d.stderr())
        # the cache's folders as --model: named by the repository, never by a commit hash
        for path in (repo_dir, snap):
            with Daemon("--model", path) as d:
                st, doc = d.get_json("/model")
                self.assertEqual((doc["name"], doc["origin"], doc["n_embd"]), (REPO, "hf-cache", 32))
        # a hub id as --model, offline, from the cache
        with Daemon("--model", REPO, env={"HF_HUB_CACHE": os.path.join(cache, "hf")}) as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "hf-cache")

    def test_revision(self):
        cache = os.path.join(TMP, "cache-rev")
        dev = self.hub.add_revision(REPO, "dev", {f: read_bytes(os.path.join(SRC, f)) for f in FILES})
        with self.daemon(cache, "--set", "revision=dev") as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "download")
        refs = os.path.join(cache, "hf", "models--openai-community--gpt2", "refs")
        self.assertEqual(read_bytes(os.path.join(refs, "dev")), dev.encode())
        self.assertFalse(os.path.exists(os.path.join(refs, "main")))
        self.hub.clear_log()
        with self.daemon(cache, "--set", "revision=dev") as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "hf-cache")
        self.assertEqual(self.hub.gets(), [])

    def test_twd_older_cache_is_still_read(self):
        cache = os.path.join(TMP, "cache-old")
        old = os.path.join(cache, "hub", "openai-community-gpt2")
        shutil.copytree(SRC, old)
        open(os.path.join(old, ".complete"), "w").close()
        with Daemon(env={"HF_HUB_CACHE": os.path.join(cache, "hf")}, cache_dir=cache) as d:
            st, doc = d.get_json("/model")
            self.assertEqual((doc["origin"], doc["name"]), ("twd-cache", REPO))

    def test_hash_mismatch_is_rejected(self):
        cache = os.path.join(TMP, "cache-bad")
        self.hub.bad_hash = True
        with self.daemon(cache) as d:
            self.assertEqual(d.get_json("/model")[1]["origin"], "demo")
        self.assertIn("does not match", d.stderr())
        blobs = os.path.join(cache, "hf", "models--openai-community--gpt2", "blobs")
        self.assertEqual([b for b in os.listdir(blobs) if b.startswith("0" * 64)], [])
        self.assertFalse(os.path.exists(os.path.join(cache, "hf", "models--openai-community--gpt2", "refs", "main")))


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
    fetch_timeout plus a margin of the time the same start takes without a
    hub (it took 3 x fetch_timeout before). The start without a hub is
    measured in the same test, so that a slow build (ASan) or a loaded
    machine does not count as the hub's time."""

    FETCH_TIMEOUT = 3
    MARGIN = 2

    @staticmethod
    def started(d):
        t0 = time.monotonic()
        with d:
            elapsed = time.monotonic() - t0
            origin = d.get_json("/model")[1]["origin"]
        return elapsed, origin

    def check(self, first_bytes):
        hub = StallingHub(first_bytes)
        self.addCleanup(hub.close)
        cache = tempfile.mkdtemp(dir=TMP)
        # the demo model already generated (as by an earlier start), so that the
        # time measured is the hub's, not that of writing 6M weights (slow under ASan)
        make_checkpoint(os.path.join(cache, "demo-v1"), "demo", "--seed", "1")
        def daemon(*args):
            return Daemon(*args, cache_dir=cache)

        base, origin = self.started(daemon("--set", "fetch=false"))
        self.assertEqual(origin, "demo")
        d = daemon("--set", "fetch=true", "--set", "hub_url=" + hub.url,
                   "--set", "fetch_timeout=%d" % self.FETCH_TIMEOUT)
        elapsed, origin = self.started(d)
        self.assertEqual(origin, "demo")
        self.assertTrue(hub.conns, "twd never contacted the stand-in hub")
        waited = elapsed - base
        self.assertLess(waited, self.FETCH_TIMEOUT + self.MARGIN, d.stderr())
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
