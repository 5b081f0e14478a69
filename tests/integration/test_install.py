"""An installed twd finds its page, word list and example configuration under
its prefix, without the source tree.

Configures, builds and installs this source tree into a temporary prefix
(meson install), then runs the installed twd from another working directory.
As root, the source tree is hidden from it by mounting an empty tmpfs over it
in a private mount namespace (unshare -m); otherwise strace, if present,
checks that no file of the source tree was opened. Either way the log names
the files it uses, and / and /probe's default words must work.
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import twd_harness  # noqa: E402
from twd_harness import SANITIZER, Daemon, make_checkpoint  # noqa: E402

SRC_ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
TMP = tempfile.mkdtemp(prefix="twd-install-")
PREFIX = os.path.join(TMP, "prefix")
DATADIR = os.path.join(PREFIX, "share", "twd")


def run(*cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), p.stdout[-4000:]))
    return p.stdout


def can_hide_source():
    """True when a private mount namespace can hide the source tree."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none \"$0\"", SRC_ROOT],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def children(pid):
    kids = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            kids += [int(k) for k in f.read().split()]
    return kids


class TracedDaemon(Daemon):
    """A daemon started under strace: the signal that stops it goes to twd
    (strace itself only detaches on SIGTERM and would leave twd running)."""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            try:
                for k in children(self.proc.pid):
                    os.kill(k, sig)
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        return super().stop(sig, timeout)


def setUpModule():
    build = os.path.join(TMP, "build")
    # a build of its own (the test build may have another prefix); no tests, no optimisation
    run("meson", "setup", build, SRC_ROOT, "--prefix=" + PREFIX, "--buildtype=plain", "-Dtests=false")
    run("ninja", "-C", build, "server/twd", "tools/twd-synth")
    run("meson", "install", "-C", build, "--no-rebuild", "--quiet")
    shutil.rmtree(build)  # nothing of the build directory is left to fall back on


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class InstalledTwd(unittest.TestCase):
    def setUp(self):
        self.twd = os.path.join(PREFIX, "bin", "twd")
        self.cwd = tempfile.mkdtemp(dir=TMP)
        self.trace = None
        self.hidden = can_hide_source()
        # the harness starts twd_harness.TWD: a wrapper that runs the installed twd
        # from another directory, with the source tree hidden or traced
        wrapper = os.path.join(TMP, "run-installed-twd")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\ncd '%s' || exit 1\n" % self.cwd)
            if self.hidden:
                f.write("exec unshare -m sh -c 'mount -t tmpfs none \"$0\" && exec \"$@\"' '%s' '%s' \"$@\"\n"
                        % (SRC_ROOT, self.twd))
            elif shutil.which("strace"):
                self.trace = os.path.join(TMP, "strace.log")
                f.write("exec strace --seccomp-bpf -f -qq -e trace=open,openat -o '%s' '%s' \"$@\"\n"
                        % (self.trace, self.twd))
            else:
                f.write("exec '%s' \"$@\"\n" % self.twd)
        os.chmod(wrapper, stat.S_IRWXU)
        self.saved = twd_harness.TWD
        twd_harness.TWD = wrapper

    def tearDown(self):
        twd_harness.TWD = self.saved

    def test_page_and_words_from_the_prefix(self):
        self.assertTrue(os.path.isfile(os.path.join(DATADIR, "static", "index.html")))
        self.assertTrue(os.path.isfile(os.path.join(DATADIR, "config", "common_nouns.txt")))
        self.assertTrue(os.path.isfile(os.path.join(DATADIR, "config", "twd.conf")))
        # the page's plotly.js (scripts/deps.sh builds it): the file index.html preloads
        with open(os.path.join(SRC_ROOT, "static", "index.html")) as f:
            vendor = re.search(r'<link rel="preload" href="/(vendor/[^"]+\.js)"', f.read()).group(1)
        has_vendor = os.path.isfile(os.path.join(SRC_ROOT, "static", vendor))
        self.assertEqual(os.path.isfile(os.path.join(DATADIR, "static", vendor)), has_vendor)
        self.assertFalse(os.path.exists(os.path.join(DATADIR, "static", "vendor", "node_modules",
                                                     ".package-lock.json")))

        model = make_checkpoint(os.path.join(TMP, "model"), "tiny", "--vocab", "4096")
        with (TracedDaemon if self.trace else Daemon)(model=model) as d:
            st, h, body = d.get("/")
            self.assertEqual(st, 200)
            with open(os.path.join(SRC_ROOT, "static", "index.html"), "rb") as f:
                self.assertEqual(body, f.read())
            if has_vendor:
                st, _, body = d.get("/" + vendor)
                self.assertEqual((st, len(body)), (200, os.path.getsize(os.path.join(DATADIR, "static", vendor))))
            st, doc = d.get_json("/probe", block=0, k=2)
            self.assertEqual(st, 200)
            self.assertTrue(doc["default_words"])
            with open(os.path.join(DATADIR, "config", "common_nouns.txt")) as f:
                nouns = sorted(line.strip() for line in f if line.strip() and not line.startswith("#"))
            got = [w["word"] for w in doc["words"]] + [s["word"] for s in doc["skipped"]]
            self.assertEqual(sorted(got), nouns)
            self.assertGreater(len(doc["words"]), 0)
        log = d.stderr()
        self.assertIn("page from %s/static;" % DATADIR, log)
        self.assertIn("default /probe words from %s/config/common_nouns.txt" % DATADIR, log)
        self.assertFalse(SANITIZER.search(log), log)
        if self.trace:
            with open(self.trace) as f:
                opened = re.findall(r'open(?:at)?\((?:[^,]*, )?"([^"]+)"', f.read())
            self.assertIn(os.path.join(DATADIR, "config", "common_nouns.txt"), opened)
            self.assertEqual([p for p in opened if p.startswith(SRC_ROOT + "/")], [])

    def test_help_names_the_installed_example(self):
        p = subprocess.run([twd_harness.TWD, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration file with every default: %s/config/twd.conf\n" % DATADIR, p.stdout)
        with open(os.path.join(DATADIR, "config", "twd.conf")) as f:
            shipped = f.read()
        p = subprocess.run([twd_harness.TWD, "--print-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, shipped), p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
