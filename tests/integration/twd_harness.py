"""Starts the real twd binary on a free loopback port and talks to it over HTTP.

Used by the integration tests (run with Debian's /usr/bin/python3; standard
library only). Environment: TWD (path of twd), TWD_SYNTH (path of twd-synth).
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

TWD = os.environ.get("TWD", "build/server/twd")
TWD_SYNTH = os.environ.get("TWD_SYNTH", "build/tools/twd-synth")

# Sanitizer reports that must never appear in the daemon's stderr.
SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer")


def error_of(test, status, body, code, words=()):
    """Asserts that an answer (HTTP status, body bytes) is the one JSON error
    shape, {"error": {"code", "type", "message"}}, with status and "code" both
    `code` and a message containing each of `words`; returns the error object."""
    test.assertEqual(status, code, body[:300])
    doc = json.loads(body)
    test.assertEqual(set(doc), {"error"})
    err = doc["error"]
    test.assertEqual(set(err), {"code", "type", "message"})
    test.assertEqual(err["code"], code)
    for w in words:
        test.assertIn(w, err["message"])
    return err


def error_at(test, daemon, target, code, *words, method="GET", body=None):
    """Requests target from daemon and asserts error_of on the answer."""
    st, _, data = daemon.request(method, target, body)
    return error_of(test, st, data, code, words)


def stop_clean(daemon):
    """Stops daemon and asserts that it exited 0 with no sanitizer report in
    its stderr, which it returns."""
    rc = daemon.stop()
    err = daemon.stderr()
    assert rc == 0, "twd exited with %s:\n%s" % (rc, err)
    assert not SANITIZER.search(err), "sanitizer report:\n" + err
    return err


# the keys every token object of an answer has (docs/API.md)
TOKEN_KEYS = {"id", "text", "bytes"}


def assert_token(test, t, score=True):
    """A token object: id, text and bytes, the text being the bytes decoded
    with invalid UTF-8 replaced; with score, a float score."""
    test.assertTrue(TOKEN_KEYS <= set(t), t)
    test.assertEqual(t["text"], bytes(t["bytes"]).decode("utf-8", "replace"))
    if score:
        test.assertIsInstance(t["score"], float)


def make_checkpoint(folder, shape="tiny", *extra):
    """Writes a synthetic checkpoint with twd-synth; returns the folder."""
    if not os.path.exists(os.path.join(folder, "config.json")):
        subprocess.run([TWD_SYNTH, "--out", folder, "--shape", shape, *extra], check=True,
                       stdout=subprocess.DEVNULL)
    return folder


def module_checkpoint(prefix, name="tiny", shape="tiny", *extra):
    """What a test module needs for one generated checkpoint: (its temporary
    folder, the checkpoint's folder in it, setUpModule writing the checkpoint,
    tearDownModule removing the folder). Use as
        TMP, MODEL, setUpModule, tearDownModule = module_checkpoint("twd-x-")"""
    tmp = tempfile.mkdtemp(prefix=prefix)
    folder = os.path.join(tmp, name)

    def set_up():
        make_checkpoint(folder, shape, *extra)

    def tear_down():
        shutil.rmtree(tmp, ignore_errors=True)
    return tmp, folder, set_up, tear_down


class OneDaemon:
    """Mixin for a unittest.TestCase whose tests share one daemon, cls.d:
    started by setUpClass with the class's daemon_args, daemon_model and
    daemon_env, stopped by tearDownClass with stop_clean (its stderr then in
    cls.log)."""
    daemon_args = ()
    daemon_model = None
    daemon_env = None

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(*cls.daemon_args, model=cls.daemon_model, env=cls.daemon_env).start()

    @classmethod
    def tearDownClass(cls):
        cls.log = stop_clean(cls.d)


class Daemon:
    """One twd process. Use as a context manager.

    cache_dir: its --cache-dir (the caller's, kept); by default a temporary
    one, removed when the daemon stops unless keep_cache. wrapper: a command
    twd is run under (its arguments follow)."""

    def __init__(self, *args, model=None, wait_ready=True, env=None, cache_dir=None, keep_cache=False,
                 wrapper=()):
        self.args = list(args)
        self.model = model
        self.wait_ready = wait_ready
        self.wrapper = list(wrapper)
        self.cache = cache_dir or tempfile.mkdtemp(prefix="twd-cache-")
        # the temporary folder removed at stop (None: none)
        self._own_cache = None if cache_dir or keep_cache else self.cache
        # the Hugging Face cache twd looks in: a private one, so that a
        # machine's own ~/.cache/huggingface never changes what a test sees
        self.env = dict(os.environ, HF_HUB_CACHE=os.path.join(self.cache, "hf"))
        self.env.update(env or {})
        self.port = None
        self.proc = None
        self.stderr_lines = []
        self._reader = None
        self._port_seen = threading.Event()

    def start(self):
        cmd = [*self.wrapper, TWD, "--port", "0", "--cache-dir", self.cache, "--no-fetch", "--set", "umap=false"]
        if self.model:
            cmd += ["--model", self.model]
        cmd += self.args
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=self.env)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.time() + 30
        while not self._port_seen.wait(0.05):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("twd printed no listening line:\n" + self.stderr())
        if self.wait_ready:
            self.wait_health()
        return self

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.stderr_lines.append(line)
            m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._port_seen.set()

    def stderr(self):
        return "".join(self.stderr_lines)

    def wait_health(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("twd exited with %s:\n%s" % (self.proc.returncode, self.stderr()))
            try:
                st, _, _ = self.request("GET", "/health")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("twd never became healthy:\n" + self.stderr())

    def request(self, method, target, body=None, headers=None, timeout=120):
        """Returns (status, headers dict lower-cased, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = dict(headers or {})
        # a body is JSON unless the test says otherwise (twd answers 415 to
        # a body of another type)
        if body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, target, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def get(self, path, **params):
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        return self.request("GET", target)

    def get_json(self, path, **params):
        st, h, body = self.get(path, **params)
        return st, json.loads(body)

    def post_json(self, path, obj):
        st, h, body = self.request("POST", path, json.dumps(obj).encode(),
                                   {"Content-Type": "application/json"})
        return st, json.loads(body)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader:
            self._reader.join(5)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        if self._own_cache and (not self.proc or self.proc.poll() is not None):
            shutil.rmtree(self._own_cache, ignore_errors=True)
            self._own_cache = None
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_umap(d, timeout=120):
    """The /umap status once the daemon d's fit is no longer fitting."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, doc = d.get_json("/umap")
        if doc["state"] != "fitting":
            return doc
        time.sleep(0.1)
    raise AssertionError("UMAP fit did not finish")


def metric(d, name):
    """The value of the first sample of daemon d's /metrics named `name`
    (with its labels, as in 'twd_x{a="b"}'), or None."""
    st, _, body = d.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def raw(port, data, timeout=5.0, read_all=True):
    """Sends data on a new loopback connection to port; returns (the bytes
    received, whether the server closed the connection). It reads until the
    server closes it or `timeout` seconds pass without a byte, or, unless
    read_all, only the first part that comes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    got, closed = b"", False
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass  # answered and closed before it took everything: read what it said
    try:
        while True:
            part = s.recv(65536)
            if not part:
                closed = True
                break
            got += part
            if not read_all:
                break
    except socket.timeout:
        pass
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        s.close()
    return got, closed


def read_answer(sock):
    """Reads from sock until a whole answer with a JSON body has come (a
    head, and a body ending in '}'), the server closes the connection, it
    resets it, or the socket's timeout passes; returns the bytes."""
    resp = b""
    try:
        while b"\r\n\r\n" not in resp or not resp.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            resp += part
    except OSError:  # a timeout, or the server reset the connection
        pass
    return resp


def json_error(resp):
    """The (status, error object) of a raw HTTP answer, asserting that it
    is in the one JSON error shape."""
    head, _, body = resp.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    doc = json.loads(body)
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "type", "message"}, doc
    assert doc["error"]["code"] == status, doc
    return status, doc["error"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
