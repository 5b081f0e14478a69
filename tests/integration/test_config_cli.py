"""The configuration as a user meets it on the command line: --version,
--print-config (the effective configuration), --config FILE errors, MiB
options and blas_coretype, run against the real twd binary.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import SANITIZER, TWD, Daemon, make_checkpoint  # noqa: E402

SRC_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TMP = tempfile.mkdtemp(prefix="twd-cli-")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def twd(*args, **kw):
    """Runs twd to completion; returns (exit status, stdout, stderr)."""
    p = subprocess.run([TWD, *args], capture_output=True, text=True, timeout=60, **kw)
    return p.returncode, p.stdout, p.stderr


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def value_lines(conf):
    """The `key = value` lines of a printed configuration, as a dict."""
    return dict(re.findall(r"^(\w+) = (.*)$", conf, re.M))


class VersionAndPrintConfig(unittest.TestCase):
    def test_version_comes_from_meson(self):
        with open(os.path.join(SRC_ROOT, "meson.build")) as f:
            version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
        rc, out, err = twd("--version")
        self.assertEqual((rc, out, err), (0, "twd %s\n" % version, ""))

    def test_defaults_are_the_shipped_file(self):
        rc, out, err = twd("--print-config")
        self.assertEqual(rc, 0, err)
        with open(os.path.join(SRC_ROOT, "config", "twd.conf")) as f:
            self.assertEqual(out, f.read())

    def test_flags_and_file_are_printed(self):
        rc, out, _ = twd("--port", "9999", "--print-config")
        self.assertEqual(rc, 0)
        self.assertEqual(value_lines(out)["port"], "9999")
        conf = write("eff.conf", "port = 7000\ncache_mb = 1g\nworkers = 3\n")
        # the file is read first; flags override it wherever they stand
        rc, out, err = twd("--print-config", "--port=7001", "--config", conf, "--set", "workers=4")
        self.assertEqual(rc, 0, err)
        v = value_lines(out)
        self.assertEqual((v["port"], v["cache_mb"], v["workers"]), ("7001", "1024", "4"))
        self.assertEqual(v["listen"], "127.0.0.1")
        # what is printed is a configuration file that gives the same again
        again = write("again.conf", out)
        rc, out2, err = twd("--config", again, "--print-config")
        self.assertEqual((rc, out2), (0, out), err)

    def test_print_config_checks_the_values(self):
        rc, out, err = twd("--print-config", "--port", "70000")
        self.assertEqual((rc, out), (2, ""))
        self.assertIn("option 'port'", err)
        # a listen address is checked with the configuration, before anything starts
        rc, out, err = twd("--listen", "localhost", "--print-config")
        self.assertEqual((rc, out), (2, ""))
        self.assertEqual(err, "twd: option 'listen': 'localhost' is not an IPv4 or IPv6 address "
                              "(e.g. 127.0.0.1, ::1, 0.0.0.0)\n")

    def test_output_errors_are_reported(self):
        with open("/dev/full", "w") as full:
            p = subprocess.run([TWD, "--print-config"], stdout=full, stderr=subprocess.PIPE, text=True,
                               timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot write to standard output", p.stderr)


class ConfigFileErrors(unittest.TestCase):
    def test_missing_file_is_named_as_the_config_file(self):
        rc, out, err = twd("--config", "/x/y.conf")
        self.assertEqual((rc, out, err), (2, "", "twd: config file /x/y.conf: No such file or directory\n"))

    def test_not_a_regular_file(self):
        rc, _, err = twd("--config", TMP)
        self.assertEqual((rc, err), (2, "twd: config file %s: not a regular file\n" % TMP))
        fifo = os.path.join(TMP, "fifo.conf")
        os.mkfifo(fifo)
        rc, _, err = twd("--config", fifo)  # must not block on the FIFO
        self.assertEqual((rc, err), (2, "twd: config file %s: not a regular file\n" % fifo))

    def test_bad_line_names_file_and_line(self):
        conf = write("bad.conf", "# ok\nport = 8080\ncache_mb = 1k\n")
        rc, _, err = twd("--config", conf)
        self.assertEqual(rc, 2)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn("%s:3: option 'cache_mb'" % conf, err)
        self.assertIn("whole number of MiB", err)


class MiBOptions(unittest.TestCase):
    def test_suffixes_and_refusals(self):
        for v, mib in (("2g", "2048"), ("512", "512"), ("1024k", "1"), ("1t", "1048576")):
            rc, out, err = twd("--set", "cache_mb=" + v, "--print-config")
            self.assertEqual(rc, 0, err)
            self.assertEqual(value_lines(out)["cache_mb"], mib)
        rc, _, err = twd("--set", "cache_mb=1k")
        self.assertEqual(rc, 2)
        self.assertIn("option 'cache_mb': '1k' is not a whole number of MiB", err)
        rc, _, err = twd("--set", "answer_cache_mb=2t")
        self.assertEqual(rc, 2)
        self.assertIn("0..1048576", err)

    def test_daemon_uses_the_budgets(self):
        model = make_checkpoint(os.path.join(TMP, "tiny"))
        with Daemon("--set", "cache_mb=3g", "--set", "answer_cache_mb=512m", model=model) as d:
            st, _, body = d.get("/metrics")
            self.assertEqual(st, 200)
            text = body.decode()
        self.assertRegex(text, r'twd_cache_budget_bytes\{model="[^"]*",cache="intermediates"\} %d\n' % (3 << 30))
        self.assertRegex(text, r'twd_cache_budget_bytes\{model="[^"]*",cache="answers"\} %d\n' % (512 << 20))
        self.assertFalse(SANITIZER.search(d.stderr()), d.stderr())


class PidFile(unittest.TestCase):
    def test_written_once_listening_and_removed_at_exit(self):
        model = make_checkpoint(os.path.join(TMP, "tiny"))
        pid_file = os.path.join(TMP, "twd.pid")
        with Daemon("--pid-file", pid_file, model=model) as d:
            with open(pid_file) as f:
                lines = f.read().splitlines()
            self.assertEqual(lines, [str(d.proc.pid), "http://127.0.0.1:%d/" % d.port, "listening"])
            self.assertEqual([n for n in os.listdir(TMP) if n.startswith("twd.pid.")], [])  # no temporary left
        self.assertEqual(d.proc.returncode, 0)
        self.assertFalse(os.path.exists(pid_file))
        self.assertFalse(SANITIZER.search(d.stderr()), d.stderr())

    def test_unwritable_pid_file_stops_start(self):
        p = subprocess.run([TWD, "--port", "0", "--no-fetch", "--cache-dir", os.path.join(TMP, "c"),
                            "--pid-file", "/nonexistent/dir/twd.pid"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("twd: pid_file /nonexistent/dir/twd.pid: No such file or directory\n", p.stderr)


class BlasCoretype(unittest.TestCase):
    def test_unknown_name_is_refused_with_the_list(self):
        for name in ("Cooperlake", "SapphireRapids", "NoSuchCore"):
            rc, _, err = twd("--set", "blas_coretype=" + name)
            self.assertEqual(rc, 2)
            self.assertEqual(err.count("\n"), 1, err)
            self.assertIn("option 'blas_coretype': '%s'" % name, err)
            self.assertIn("Haswell", err)
            self.assertIn("SkylakeX", err)
        conf = write("blas.conf", "blas_coretype = Skylake\n")
        rc, _, err = twd("--config", conf)
        self.assertEqual(rc, 2)
        self.assertIn("%s:1: option 'blas_coretype'" % conf, err)

    def test_known_names_and_keywords(self):
        for name in ("auto", "off", "Haswell", "zen", "Prescott"):
            rc, out, err = twd("--set", "blas_coretype=" + name, "--print-config")
            self.assertEqual(rc, 0, err)

    def test_forced_name_is_used(self):
        model = make_checkpoint(os.path.join(TMP, "tiny"))
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        d = Daemon("--set", "blas_coretype=Katmai", model=model)
        d.env = env
        with d:
            self.assertEqual(d.get("/health")[0], 200)
        log = d.stderr()
        # OpenBLAS never reports Katmai (it runs Prescott kernels for it), so
        # twd always restarts once with the name set
        self.assertIn("restarting with OPENBLAS_CORETYPE=Katmai", log)
        self.assertFalse(SANITIZER.search(log), log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
