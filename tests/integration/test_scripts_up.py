"""scripts/up as a user drives it: start, already running, restart with
another model, a kill followed at once by a new start, stop, --foreground,
and a daemon that fails because its port (from a config file) is taken.

Runs the test build's twd (TWD_BIN, so nothing is rebuilt) on free ports with
--no-fetch and tiny synthetic models; the pid file and logs go to a
temporary TWD_RUN_DIR.
"""
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import SANITIZER, TWD, free_port, make_checkpoint  # noqa: E402

SRC_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UP = os.path.join(SRC_ROOT, "scripts", "up")
TMP = tempfile.mkdtemp(prefix="twd-up-")
MODEL_A = os.path.join(TMP, "model-a")
MODEL_B = os.path.join(TMP, "model-b")


def setUpModule():
    make_checkpoint(MODEL_A, "tiny", "--seed", "1")
    make_checkpoint(MODEL_B, "tiny", "--seed", "2", "--layers", "3")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


class ScriptsUp(unittest.TestCase):
    def setUp(self):
        self.run_dir = tempfile.mkdtemp(dir=TMP)
        self.cache = tempfile.mkdtemp(dir=TMP)
        self.pid_file = os.path.join(self.run_dir, "twd.pid")
        self.env = dict(os.environ, TWD_BIN=os.path.abspath(TWD), TWD_RUN_DIR=self.run_dir, TWD_UP_TIMEOUT="60")
        self.env.pop("OPENBLAS_CORETYPE", None)
        self.addCleanup(self.up, "--stop")

    def up(self, *args, timeout=120):
        p = subprocess.run([UP, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def flags(self, port, model, port_form="--port"):
        port_args = ["--port=%d" % port] if port_form == "--port=" else \
            ["--set", "port=%d" % port] if port_form == "--set" else ["--port", str(port)]
        return [*port_args, "--no-fetch", "--cache-dir", self.cache, "--set", "umap=false", "--model", model]

    def pid_lines(self):
        with open(self.pid_file) as f:
            return f.read().splitlines()

    def check_up(self, out, port, name, n_layer):
        url = "http://127.0.0.1:%d/" % port
        self.assertIn("twd is up on %s\n" % url, out)
        pid, pf_url, state = self.pid_lines()
        self.assertEqual((pf_url, state), (url, "listening"))
        self.assertIn("  pid    %s\n" % pid, out)
        self.assertIn("  model  %s (%s)\n" % (name, os.path.join(TMP, name)), out)
        self.assertIn("%d layers x 2 heads, width 32" % n_layer, out)
        self.assertIn("SYNTHETIC weights", out)
        self.assertIn("  log    %s\n" % os.path.join(self.run_dir, "twd.log"), out)
        self.assertNotIn("{", out)  # a summary, not a cut JSON document
        st, body = get(url + "health")
        self.assertEqual(st, 200)
        return int(pid)

    def log(self):
        with open(os.path.join(self.run_dir, "twd.log")) as f:
            return f.read()

    def test_start_restart_stop(self):
        port = free_port()
        rc, out, err = self.up(*self.flags(port, MODEL_A, "--port="))
        self.assertEqual(rc, 0, out + err)
        pid_a = self.check_up(out, port, "model-a", 2)

        # the same again: it runs, nothing changes
        rc, out, err = self.up(*self.flags(port, MODEL_A, "--port="))
        self.assertEqual(rc, 0, out + err)
        self.assertIn("already running", out)
        self.assertEqual(self.check_up(out, port, "model-a", 2), pid_a)

        # other flags: refused, with the command that would apply them
        rc, out, err = self.up(*self.flags(port, MODEL_B))
        self.assertEqual(rc, 1, out + err)
        self.assertIn("already running (pid %d) with other flags" % pid_a, err)
        self.assertIn("scripts/up --restart", err)

        # --restart: the old one is gone before the new one starts
        rc, out, err = self.up("--restart", *self.flags(port, MODEL_B, "--set"))
        self.assertEqual(rc, 0, out + err)
        self.assertIn("stopping twd (pid %d)" % pid_a, out)
        self.assertFalse(alive(pid_a))
        pid_b = self.check_up(out, port, "model-b", 3)
        self.assertNotEqual(pid_a, pid_b)
        self.assertFalse(SANITIZER.search(self.log()), self.log())

        # kill, and at once a new start with another model: that model, not "already running".
        # The daemon is held (SIGSTOP) for 0.5 s with the SIGTERM not yet taken, the moment
        # a busy machine gives before it writes 'stopping' to its pid file.
        os.kill(pid_b, signal.SIGSTOP)
        os.kill(pid_b, signal.SIGTERM)
        threading.Timer(0.5, os.kill, (pid_b, signal.SIGCONT)).start()
        rc, out, err = self.up(*self.flags(port, MODEL_A))
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("already running", out + err)
        self.assertFalse(alive(pid_b))
        pid_c = self.check_up(out, port, "model-a", 2)

        rc, out, err = self.up("--status")
        self.assertEqual(rc, 0)
        self.assertIn("  pid    %d\n" % pid_c, out)

        rc, out, err = self.up("--stop")
        self.assertEqual((rc, out), (0, "twd (pid %d) stopped\n" % pid_c), err)
        self.assertFalse(alive(pid_c))
        self.assertFalse(os.path.exists(self.pid_file))
        self.assertIn("twd: stopped", self.log())
        self.assertEqual(self.up("--stop")[:2], (0, "twd is not running\n"))

    def test_port_zero_is_read_from_the_daemon(self):
        rc, out, err = self.up(*self.flags(0, MODEL_A))
        self.assertEqual(rc, 0, out + err)
        url = self.pid_lines()[1]
        self.check_up(out, int(url.rsplit(":", 1)[1].rstrip("/")), "model-a", 2)

    def test_failure_of_its_own_daemon_is_reported(self):
        # something else answers /health on the port the config file names
        class Decoy(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        decoy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Decoy)
        threading.Thread(target=decoy.serve_forever, daemon=True).start()
        self.addCleanup(decoy.server_close)
        self.addCleanup(decoy.shutdown)
        port = decoy.server_address[1]
        conf = os.path.join(self.run_dir, "port.conf")
        with open(conf, "w") as f:
            f.write("port = %d\n" % port)
        rc, out, err = self.up("--config", conf, "--no-fetch", "--cache-dir", self.cache, "--model", MODEL_A)
        self.assertEqual(rc, 1, out + err)
        self.assertNotIn("is up", out)
        self.assertIn("twd failed to start (exit status 1)", err)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, err)

    def test_foreground(self):
        port = free_port()
        p = subprocess.Popen([UP, "--foreground", *self.flags(port, MODEL_A)], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while not (os.path.exists(self.pid_file) and len(self.pid_lines()) == 3):
                self.assertIsNone(p.poll(), p.stdout.read() if p.poll() is not None else "")
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            self.assertEqual(self.pid_lines()[0], str(p.pid))  # the script became twd
            while True:
                try:
                    if get("http://127.0.0.1:%d/health" % port)[0] == 200:
                        break
                except OSError:
                    pass
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            rc, out, err = self.up("--status")
            self.assertIn("twd is up on http://127.0.0.1:%d/" % port, out)
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(30), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        self.assertFalse(os.path.exists(self.pid_file))


if __name__ == "__main__":
    unittest.main(verbosity=2)
