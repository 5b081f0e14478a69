"""A checkpoint that changes under a running twd (issue 9.4): rewritten in
place, truncated, replaced by another file, for a Hugging Face snapshot
(model.safetensors) and a nanoGPT ckpt.pt. The model must stop answering
(503 naming the file) instead of dying of SIGBUS or silently answering from
changed weights, show a failed reload in /health and /models, and come back
with the answers of the file that is there now; the other model of the
daemon and /health keep answering throughout.

Run: TWD=build/server/twd TWD_SYNTH=build/tools/twd-synth /usr/bin/python3 -m unittest \
        tests/integration/test_checkpoint_change.py
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import SANITIZER, TWD_SYNTH, Daemon, make_checkpoint, stop_clean  # noqa: E402

TMP = tempfile.mkdtemp(prefix="twd-ckchange-")
CORPUS = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def synth(folder, shape, seed):
    subprocess.run([TWD_SYNTH, "--out", folder, "--shape", shape, "--seed", str(seed)], check=True,
                   stdout=subprocess.DEVNULL)
    return folder


def nanogpt(folder, ckpt):
    """A nanoGPT folder: one of the torch-written checkpoints of the fuzz
    corpus (vocabulary 8, width 4) and a 3-character meta.pkl."""
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(CORPUS, "zip", ckpt), os.path.join(folder, "ckpt.pt"))
    shutil.copy(os.path.join(CORPUS, "pickle", "meta_small_p2.pkl"), os.path.join(folder, "meta.pkl"))
    return folder


def read(path):
    with open(path, "rb") as f:
        return f.read()


def rewrite_in_place(path, data):
    """New bytes into the same file (same inode), as `dd conv=notrunc` or a
    program writing over its output would."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate(len(data))


def replace(path, data):
    """Another file renamed over it, as a download that finishes does."""
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.rename(path + ".part", path)


def truncate_under(d, target, path):
    """Asks daemon d for target in the background and, once the computation
    is under way, truncates path to 4096 bytes; returns, once the request
    is over, {"answer": (status, headers, body)} or, when the daemon went
    away under it, {"lost": the OSError}."""
    got = {}

    def ask():
        try:
            got["answer"] = d.request("GET", target, timeout=300)
        except OSError as e:
            got["lost"] = e
    t = threading.Thread(target=ask)
    t.start()
    time.sleep(0.3)
    with open(path, "r+b") as fh:
        fh.truncate(4096)
    t.join(300)
    return got


class HealthWatch:
    """Asks /health every 50 ms in the background; every answer must be 200
    or a 503 in the JSON error shape."""

    def __init__(self, d):
        self.d, self.stop, self.bad, self.n = d, threading.Event(), [], 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.wait(0.05):
            try:
                st, _, body = self.d.request("GET", "/health", timeout=5)
                doc = json.loads(body)
                if st == 503:
                    assert doc["error"]["code"] == 503
                elif st != 200:
                    raise AssertionError("status %d" % st)
                self.n += 1
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                self.bad.append(repr(e))

    def finish(self, test):
        self.stop.set()
        self.t.join(10)
        test.assertEqual(self.bad, [], "/health failed while the checkpoint changed")
        test.assertGreater(self.n, 20)


class ChangeTests:
    """The scenario, for one checkpoint format (a mixin)."""
    fmt = None
    routes = ()

    @classmethod
    def setUpClass(cls):
        cls.served, cls.other, cls.file, cls.a, cls.b = cls.make()
        cls.d = Daemon("--set", "models=%s,%s" % (cls.served, cls.other), "--set", "reload_wait=1",
                       "--set", "access_log=false").start()
        st, doc = cls.d.get_json("/models")
        cls.names = [m["name"] for m in doc["models"]]
        st, api = cls.d.get_json("/openapi.json")
        def resolved(s):
            while "$ref" in s:
                s = api["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]]
            return s
        ok = resolved(api["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
        cls.model_schema = resolved(ok["properties"]["models"]["items"])

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def answers(self, name, fresh=False):
        """The model's answers on a few routes, without the fields that name
        the model; fresh: none may come from the answer cache (just reloaded:
        the cache of the old file must be gone)."""
        out = []
        for route in self.routes:
            st, h, body = self.d.request("GET", route + "&model=" + name)
            self.assertEqual(st, 200, body[:300])
            if fresh:
                self.assertEqual(h.get("x-twd-cache"), "miss", route)
            doc = json.loads(body)
            for k in ("model", "name", "source"):
                doc.pop(k, None)
            out.append(doc)
        return out

    def wait_status(self, name, want, timeout=30):
        """Polls /model until the model answers `want`; returns the body."""
        deadline = time.time() + timeout
        while True:
            st, _, body = self.d.request("GET", "/model?model=" + name)
            if st == want:
                return body
            if time.time() > deadline:
                self.fail("model %s answered %d, not %d, for %d s:\n%s\n%s" %
                          (name, st, want, timeout, body[:300], self.d.stderr()[-3000:]))
            time.sleep(0.02)

    def model_state(self, name):
        st, doc = self.d.get_json("/models")
        self.assertEqual(st, 200)
        m = [m for m in doc["models"] if m["name"] == name][0]
        # what /openapi.json says of it (test_openapi cannot see a reloading model)
        self.assertIn(m["state"], self.model_schema["properties"]["state"]["enum"])
        self.assertEqual(set(m) - set(self.model_schema["properties"]), set(), m)
        return m

    def assert_reloading(self, body):
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], 503)
        self.assertIn("the checkpoint changed; reloading", err["message"])
        self.assertIn(self.file, err["message"])

    def test_changes_underneath(self):
        served, other = self.names
        want_a, want_b = self.answers(served), self.answers(other)
        self.assertNotEqual(want_a, want_b, "the two checkpoints must answer differently")
        health = HealthWatch(self.d)

        # 1. rewritten in place with the other checkpoint's bytes
        rewrite_in_place(self.file, self.b)
        self.assert_reloading(self.wait_status(served, 503))
        self.assertEqual(self.answers(other), want_b)  # the other model never stops
        self.wait_status(served, 200)
        self.assertEqual(self.answers(served, fresh=True), want_b)
        self.assertEqual(self.model_state(served)["state"], "ready")

        # 2. truncated: stops answering, the reload fails and says why
        with open(self.file, "r+b") as f:
            f.truncate(1000)
        self.assert_reloading(self.wait_status(served, 503))
        deadline = time.time() + 30
        while self.model_state(served)["state"] != "failed":
            self.assertLess(time.time(), deadline, self.d.stderr()[-2000:])
            time.sleep(0.05)
        m = self.model_state(served)
        self.assertIn("could not be loaded again", m["message"])
        self.assertIn(self.file, m["message"])
        st, _, body = self.d.request("GET", "/health")
        self.assertEqual(st, 503)
        self.assertIn(self.file, json.loads(body)["error"]["message"])
        body = self.wait_status(served, 503)
        self.assertIn("not available", json.loads(body)["error"]["message"])
        self.assertEqual(self.answers(other), want_b)

        # 3. replaced by a complete file: back, with that file's answers
        replace(self.file, self.a)
        self.wait_status(served, 200)
        self.assertEqual(self.answers(served, fresh=True), want_a)
        st, _, _ = self.d.request("GET", "/health")
        self.assertEqual(st, 200)
        health.finish(self)
        log = self.d.stderr()
        self.assertIn("loaded again", log)
        self.assertIn("cached answers, block cache and layouts are dropped", log)


class SafetensorsChangeTest(ChangeTests, unittest.TestCase):
    routes = ("/svd?block=0&top=3&k=3", "/trajectory?text=abc&projection=pca&k=3",
              "/embeddings?scheme=norm&k=3")

    @classmethod
    def make(cls):
        served = synth(os.path.join(TMP, "st-served"), "tiny", 1)
        other = synth(os.path.join(TMP, "st-other"), "tiny", 2)
        f = os.path.join(served, "model.safetensors")
        return served, other, f, read(f), read(os.path.join(other, "model.safetensors"))


class NanoGPTChangeTest(ChangeTests, unittest.TestCase):
    routes = ("/svd?block=0&top=2&k=2", "/trajectory?text=ab&projection=pca&k=2",
              "/embeddings?scheme=norm&k=2")

    @classmethod
    def make(cls):
        served = nanogpt(os.path.join(TMP, "nano-served"), "tiny_bias.pt")
        other = nanogpt(os.path.join(TMP, "nano-other"), "tiny_compiled.pt")
        f = os.path.join(served, "ckpt.pt")
        return served, other, f, read(f), read(os.path.join(other, "ckpt.pt"))


class InFlightTest(unittest.TestCase):
    """Truncated while a long computation reads it: the computation ends
    (with zeros where pages vanished, never a SIGBUS death), its answer is a
    503, never a 200 built from the changed file, and nothing of it is kept."""

    def test_truncated_during_a_computation(self):
        model = synth(os.path.join(TMP, "demo"), "demo", 3)
        f = os.path.join(model, "model.safetensors")
        good = read(f)
        with Daemon("--set", "reload_wait=1", "--set", "workers=1", "--set", "access_log=false",
                    model=model) as d:
            target = "/probe?block=7&k=40"
            st, _, body = truncate_under(d, target, f)["answer"]
            if st != 200:
                err = json.loads(body)["error"]
                self.assertEqual(err["code"], 503)
                self.assertIn("the checkpoint changed", err["message"])
            replace(f, good)
            deadline = time.time() + 60
            while d.request("GET", "/health")[0] != 200:
                self.assertLess(time.time(), deadline, d.stderr()[-2000:])
                time.sleep(0.05)
            st2, h, body2 = d.request("GET", target, timeout=300)
            self.assertEqual(st2, 200)
            self.assertEqual(h.get("x-twd-cache"), "miss")  # nothing of the old file was kept
            if st == 200:  # done before the file changed: then it is the right answer
                self.assertEqual(body, body2)
            self.assertIsNone(d.proc.poll())
            self.assertEqual(d.stop(), 0, d.stderr())
            self.assertNotIn("outside every mapped checkpoint", d.stderr())


# twd under a seccomp filter that makes the SIGBUS handler's zero-page mmap fail
DENY_REMAP = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "deny_remap.py")]
BUS_LINE = re.compile(r"twd: SIGBUS reading (.+) at offset (\d+): the file changed underneath and the page "
                      r"cannot be replaced; exiting\n")


class UnreplaceablePageTest(unittest.TestCase):
    """Truncated under a computation when the vanished pages cannot be
    replaced by zero pages (signals.h: the handler's mmap fails; here a
    seccomp filter makes it fail): twd exits with status 3 after one line
    naming the file, instead of dying of the SIGBUS or hanging."""

    def test_unreplaceable_page_exits_3_with_one_line(self):
        model = make_checkpoint(os.path.join(TMP, "bus"), "demo", "--vocab", "16384")
        f = os.path.join(model, "model.safetensors")
        good = read(f)
        # a forward pass over 250 tokens and its lens on 16,384 tokens: it
        # reads the mapped weights all along (about 20 s on this machine
        # under load, seconds on an idle one)
        target = "/trajectory?projection=pca&k=5&text=" + "word%20" * 250
        for attempt in range(4):
            replace(f, good)
            d = Daemon("--set", "workers=1", "--set", "access_log=false", model=model, wrapper=DENY_REMAP)
            try:
                d.start()
            except RuntimeError as e:
                if "deny_remap:" in str(e):
                    self.skipTest(str(e).strip().splitlines()[-1])
                raise
            got = truncate_under(d, target, f)
            if "answer" in got:
                # answered: the computation saw the change (503) or had
                # finished before reading a vanished page; no fault this time
                st, _, body = got["answer"]
                self.assertIsNone(d.proc.poll(), d.stderr())
                self.assertIn(st, (200, 503), body[:300])
                stop_clean(d)
                continue
            rc = d.proc.wait(60)
            d.stop()
            err = d.stderr()
            self.assertEqual(rc, 3, err)
            self.assertNotRegex(err, SANITIZER)
            bus = [line for line in d.stderr_lines if "SIGBUS" in line]
            self.assertEqual(len(bus), 1, err)
            m = BUS_LINE.fullmatch(bus[0])
            self.assertTrue(m, bus[0])
            self.assertEqual(os.path.realpath(m.group(1)), os.path.realpath(f))
            self.assertGreaterEqual(int(m.group(2)), 4096, "a page the truncation took away")
            return
        self.fail("in 4 attempts the computation never read a vanished page")


if __name__ == "__main__":
    unittest.main()
