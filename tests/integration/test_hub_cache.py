"""Hub downloads into the Hugging Face cache layout (server/hub.h), through
the tools/twd-hub driver, against the local stand-in hub (hub_standin.py).

The layout checked is huggingface_hub's (docs/HUB.md):
  <root>/models--<org>--<name>/blobs/<etag>
  <root>/models--<org>--<name>/snapshots/<commit>/<file> -> ../../blobs/<etag>
  <root>/models--<org>--<name>/refs/<revision>  (the commit, no newline)
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hub_standin import StandInHub, git_blob_sha1, sha256  # noqa: E402
from twd_harness import SANITIZER, make_checkpoint  # noqa: E402

TWD_HUB = os.environ.get("TWD_HUB", "build/tools/twd-hub")
TMP = tempfile.mkdtemp(prefix="twd-hub-cache-")
REPO = "openai-community/gpt2"
BPE_REPO = "someone/gpt2-bpe"
FILES = ("config.json", "vocab.json", "merges.txt", "model.safetensors")
SRC = {}  # "main" / "dev": {file: bytes}


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def setUpModule():
    for rev, seed in (("main", "7"), ("dev", "8")):
        folder = make_checkpoint(os.path.join(TMP, "src-" + rev), "tiny", "--seed", seed)
        SRC[rev] = {f: read_bytes(os.path.join(folder, f)) for f in FILES}


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def etag_of(name, data):
    return sha256(data) if name.endswith(".safetensors") else git_blob_sha1(data)


def hub_tool(*args, env=None):
    """Runs twd-hub; (exit status, JSON document or None, stderr)."""
    p = subprocess.run([TWD_HUB, *args], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, **(env or {})))
    assert not SANITIZER.search(p.stderr), p.stderr
    doc = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None
    return p.returncode, doc, p.stderr


class CacheTest(unittest.TestCase):
    def setUp(self):
        self.hub = StandInHub()
        self.main = self.hub.add_revision(REPO, "main", SRC["main"])
        self.dev = self.hub.add_revision(REPO, "dev", SRC["dev"])
        self.pr = self.hub.add_revision(REPO, "refs/pr/1", dict(SRC["main"], **{"config.json": b'{"pr": 1}\n'}))
        bpe = dict(SRC["main"])
        bpe["encoder.json"] = bpe.pop("vocab.json")
        bpe["vocab.bpe"] = bpe.pop("merges.txt")
        self.bpe = self.hub.add_revision(BPE_REPO, "main", bpe)
        self.hub.start()
        self.addCleanup(self.hub.stop)
        self.root = tempfile.mkdtemp(dir=TMP)

    # ---- helpers ----

    def fetch(self, repo=REPO, revision=None, ok=True):
        args = ["fetch", "--timeout", "5"] + (["--revision", revision] if revision is not None else [])
        rc, doc, err = hub_tool(*args, "--", self.hub.url, repo, self.root)
        if ok:
            self.assertEqual(rc, 0, err)
            return doc["snapshot"]
        self.assertEqual(rc, 1, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)  # one line
        return err

    def cached(self, repo=REPO, revision=None, root=None):
        args = ["cached"] + (["--revision", revision] if revision else [])
        rc, doc, err = hub_tool(*args, "--", root or self.root, repo)
        self.assertEqual(rc, 0, err)
        return doc

    def repo_dir(self, repo=REPO):
        return os.path.join(self.root, "models--" + repo.replace("/", "--"))

    def assert_layout(self, repo, commit, files, revision=None):
        """The snapshot of `commit` holds exactly `files` ({name: bytes}), each
        a relative symlink ../../blobs/<etag> to a blob with its bytes."""
        d = self.repo_dir(repo)
        snap = os.path.join(d, "snapshots", commit)
        self.assertEqual(sorted(os.listdir(snap)), sorted(files))
        for name, data in files.items():
            link = os.path.join(snap, name)
            self.assertTrue(os.path.islink(link), link)
            self.assertEqual(os.readlink(link), "../../blobs/" + etag_of(name, data))
            blob = os.path.join(d, "blobs", etag_of(name, data))
            self.assertTrue(os.path.isfile(blob) and not os.path.islink(blob), blob)
            self.assertEqual(read_bytes(blob), data, name)
        self.assertEqual([b for b in os.listdir(os.path.join(d, "blobs")) if b.endswith(".incomplete")], [])
        if revision:
            self.assertEqual(read_bytes(os.path.join(d, "refs", revision)), commit.encode())

    # ---- downloads and the layout ----

    def test_layout_after_download(self):
        snap = self.fetch()
        self.assertEqual(snap, os.path.join(self.repo_dir(), "snapshots", self.main))
        self.assert_layout(REPO, self.main, SRC["main"], "main")
        self.assertEqual(os.listdir(os.path.join(self.repo_dir(), "refs")), ["main"])
        # the LFS file came from the storage the hub redirected to, once
        self.assertEqual([p for p in self.hub.gets() if p.startswith("/cdn/")],
                         ["/cdn/" + sha256(SRC["main"]["model.safetensors"])])
        doc = self.cached()
        self.assertEqual(doc, {"found": 1, "snapshot": snap, "commit": self.main})
        # a second fetch finds every blob in place: no download
        self.hub.clear_log()
        self.assertEqual(self.fetch(), snap)
        self.assertEqual(self.hub.gets(), [])

    def test_other_revisions_share_blobs(self):
        self.fetch()
        self.hub.clear_log()
        snap = self.fetch(revision="dev")
        self.assertEqual(snap, os.path.join(self.repo_dir(), "snapshots", self.dev))
        self.assert_layout(REPO, self.dev, SRC["dev"], "dev")
        self.assert_layout(REPO, self.main, SRC["main"], "main")  # untouched
        # the tokenizer is the same blob: only config.json and the weights came
        self.assertEqual(sorted(self.hub.downloads()), sorted(["config.json", sha256(SRC["dev"]["model.safetensors"])]))
        # every file after the first was asked for at the commit, not the branch
        heads = [p for m, p, _ in self.hub.log if m == "HEAD"]
        self.assertTrue(heads[0].endswith("/resolve/dev/config.json"), heads)
        self.assertTrue(all("/resolve/%s/" % self.dev in p for p in heads[1:]), heads)
        self.assertEqual(self.cached(revision="dev")["commit"], self.dev)
        self.assertEqual(self.cached()["commit"], self.main)

    def test_revision_with_a_slash_and_a_commit(self):
        snap = self.fetch(revision="refs/pr/1")
        self.assertTrue(self.hub.log[0][1].endswith("/resolve/refs%2Fpr%2F1/config.json"), self.hub.log[0])
        self.assertEqual(read_bytes(os.path.join(self.repo_dir(), "refs", "refs", "pr", "1")), self.pr.encode())
        self.assertEqual(self.cached(revision="refs/pr/1"), {"found": 1, "snapshot": snap, "commit": self.pr})
        # a commit as the revision: its snapshot, and no ref named after it
        snap = self.fetch(revision=self.dev)
        self.assert_layout(REPO, self.dev, SRC["dev"])
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "refs", self.dev)))
        self.assertEqual(self.cached(revision=self.dev), {"found": 1, "snapshot": snap, "commit": self.dev})
        self.assertEqual(self.cached(revision="dev")["found"], 0)  # never fetched by that name

    def test_encoder_json_and_vocab_bpe(self):
        self.fetch(BPE_REPO)
        files = dict(SRC["main"])
        files["encoder.json"] = files.pop("vocab.json")
        files["vocab.bpe"] = files.pop("merges.txt")
        self.assert_layout(BPE_REPO, self.bpe, files, "main")
        # huggingface_hub's record that vocab.json is not there
        self.assertTrue(os.path.isfile(os.path.join(self.repo_dir(BPE_REPO), ".no_exist", self.bpe, "vocab.json")))
        self.assertEqual(self.cached(BPE_REPO)["found"], 1)

    def test_empty_file(self):
        files = dict(SRC["main"], **{"merges.txt": b""})
        commit = self.hub.add_revision("x/empty", "main", files)
        self.fetch("x/empty")
        self.assert_layout("x/empty", commit, files, "main")
        self.assertTrue(os.path.exists(os.path.join(self.repo_dir("x/empty"), "blobs", git_blob_sha1(b""))))
        self.assertEqual(git_blob_sha1(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")  # git's own

    def test_renamed_repo_follows_the_relative_redirect(self):
        self.hub.renames["gpt2"] = REPO
        snap = self.fetch("gpt2")
        self.assertEqual(snap, os.path.join(self.root, "models--gpt2", "snapshots", self.main))
        self.assert_layout("gpt2", self.main, SRC["main"], "main")

    def test_blob_shared_by_two_repos_is_not_downloaded_twice(self):
        self.fetch()
        self.hub.clear_log()
        self.fetch(BPE_REPO)  # same weights, same config, the tokenizer under other names
        self.assertEqual(self.hub.gets(), [])
        for name, other in (("model.safetensors", "model.safetensors"), ("config.json", "config.json"),
                            ("vocab.json", "encoder.json"), ("merges.txt", "vocab.bpe")):
            e = etag_of(name, SRC["main"][name])
            a = os.stat(os.path.join(self.repo_dir(), "blobs", e))
            b = os.stat(os.path.join(self.repo_dir(BPE_REPO), "snapshots", self.bpe, other))
            self.assertEqual((a.st_dev, a.st_ino), (b.st_dev, b.st_ino), name)  # one file, hard-linked

    def test_blob_of_another_repo_is_checked_before_it_is_shared(self):
        self.fetch()
        # a blob whose contents no longer match its name is not borrowed
        e = sha256(SRC["main"]["model.safetensors"])
        blob = os.path.join(self.repo_dir(), "blobs", e)
        os.unlink(blob)
        with open(blob, "wb") as f:
            f.write(b"\0" * len(SRC["main"]["model.safetensors"]))
        self.hub.clear_log()
        self.fetch(BPE_REPO)
        self.assertEqual(self.hub.downloads(), [e])
        self.assertEqual(read_bytes(os.path.join(self.repo_dir(BPE_REPO), "blobs", e)),
                         SRC["main"]["model.safetensors"])

    # ---- interrupted and wrong downloads ----

    def test_cut_transfer_is_resumed(self):
        model = SRC["main"]["model.safetensors"]
        self.hub.cut_after = len(model) // 3
        err = self.fetch(ok=False)
        self.assertIn("partial download kept for resuming", err)
        part = os.path.join(self.repo_dir(), "blobs", sha256(model) + ".incomplete")
        self.assertEqual(os.path.getsize(part), len(model) // 3)
        # no ref yet, and the snapshot is not complete
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "refs", "main")))
        self.assertEqual(self.cached()["found"], 0)
        self.hub.clear_log()
        self.fetch()
        self.assertIn("bytes=%d-" % (len(model) // 3), self.hub.ranges())
        self.assertEqual(self.hub.downloads(), [sha256(model)])
        self.assert_layout(REPO, self.main, SRC["main"], "main")

    def test_server_that_ignores_range_gets_a_fresh_start(self):
        model = SRC["main"]["model.safetensors"]
        self.hub.cut_after = 1000
        self.fetch(ok=False)
        self.hub.ignore_range = True
        self.hub.clear_log()
        self.fetch()
        self.assert_layout(REPO, self.main, SRC["main"], "main")
        # asked from byte 1000, answered with all of it: asked again from 0
        self.assertEqual(set(self.hub.ranges()), {"bytes=1000-"})
        self.assertEqual(self.hub.downloads(), [sha256(model)] * 2)

    def test_wrong_hash_is_rejected(self):
        self.hub.bad_hash = True
        err = self.fetch(ok=False)
        self.assertIn("does not match", err)
        blobs = os.listdir(os.path.join(self.repo_dir(), "blobs"))
        self.assertEqual([b for b in blobs if b.startswith("0" * 64)], [])  # no partial, no blob
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "refs", "main")))
        self.assertEqual(self.cached()["found"], 0)
        # the hub mended: the next fetch downloads it whole
        self.hub.bad_hash = False
        self.fetch()
        self.assert_layout(REPO, self.main, SRC["main"], "main")

    def test_more_bytes_than_announced_are_refused(self):
        self.hub.pad_storage = b"x" * 100000
        err = self.fetch(ok=False)
        self.assertIn("more than the %d bytes it announced" % len(SRC["main"]["model.safetensors"]), err)
        blobs = os.listdir(os.path.join(self.repo_dir(), "blobs"))
        self.assertEqual([b for b in blobs if b.startswith(sha256(SRC["main"]["model.safetensors"]))], [])

    def test_a_download_under_way_elsewhere_is_waited_for(self):
        # another downloader (huggingface_hub's filelock takes the same flock)
        e = sha256(SRC["main"]["model.safetensors"])
        lock_dir = os.path.join(self.root, ".locks", "models--openai-community--gpt2")
        os.makedirs(lock_dir)
        with open(os.path.join(lock_dir, e + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rc, doc, err = hub_tool("fetch", "--timeout", "1", "--", self.hub.url, REPO, self.root)
            self.assertEqual(rc, 1)
            self.assertIn("another download of model.safetensors", err)
            # it waits while the other finishes, then finds the blob in place
            p = subprocess.Popen([TWD_HUB, "fetch", "--timeout", "5", "--", self.hub.url, REPO, self.root],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1)
            blob = os.path.join(self.repo_dir(), "blobs", e)
            with open(blob + ".x", "wb") as f:
                f.write(SRC["main"]["model.safetensors"])
            os.rename(blob + ".x", blob)
            self.hub.clear_log()
            fcntl.flock(lock, fcntl.LOCK_UN)
            out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn(e, self.hub.downloads())
        self.assert_layout(REPO, self.main, SRC["main"], "main")

    def test_corrupt_blob_in_place_is_downloaded_again(self):
        self.fetch()
        e = sha256(SRC["main"]["model.safetensors"])
        blob = os.path.join(self.repo_dir(), "blobs", e)
        os.unlink(blob)
        with open(blob, "wb") as f:
            f.write(b"x" * len(SRC["main"]["model.safetensors"]))
        self.hub.clear_log()
        self.fetch()
        self.assertEqual(self.hub.downloads(), [e])
        self.assert_layout(REPO, self.main, SRC["main"], "main")

    # ---- mirrors ----

    def test_mirror_without_commit_header(self):
        self.hub.send_commit = False
        snap = self.fetch()
        self.assertEqual(snap, os.path.join(self.repo_dir(), "snapshots", "main"))
        self.assert_layout(REPO, "main", SRC["main"], "main")  # refs/main says "main"
        self.assertEqual(self.cached(), {"found": 1, "snapshot": snap, "commit": "main"})
        # a revision with a '/' cannot name a snapshot folder
        self.assertIn("cannot name a snapshot folder", self.fetch(revision="refs/pr/1", ok=False))

    def test_weak_etags(self):
        self.hub.weak_etag = True
        self.fetch()
        self.assert_layout(REPO, self.main, SRC["main"], "main")

    def test_hostile_server_names_are_refused(self):
        for field, value in (("etag_override", "../../../escape"), ("etag_override", "a/b"),
                             ("etag_override", ".hidden"), ("commit_override", "../../x"),
                             ("commit_override", "a/b")):
            with self.subTest(field=field, value=value):
                setattr(self.hub, field, value)
                err = self.fetch(ok=False)
                self.assertTrue("ETag" in err or "X-Repo-Commit" in err, err)
                setattr(self.hub, field, None)
        for dirpath, dirs, files in os.walk(self.root):
            for n in dirs + files:
                self.assertNotIn("escape", n)
                self.assertNotEqual(n, ".hidden")
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.root), "escape")))

    # ---- validation ----

    def test_hostile_repo_ids_and_revisions_are_refused(self):
        bad_repos = ["../x", "/etc/passwd", "a/../b", "a/b/c", "a--b/c", "a/b--c", "", "a/", "/a", ".a/b",
                     "a/.b", "a b/c", "a/b\n", "a/b;c", "-a/b", "a/b.", "..", "a/..", "x" * 97 + "/y",
                     "a\\b/c", "a/b%2F"]
        for repo in bad_repos:
            with self.subTest(repo=repo):
                self.assertIn("not a repo id", self.fetch(repo, ok=False))
                self.assertEqual(hub_tool("cached", "--", self.root, repo)[0], 1)
        bad_revs = ["../main", "/etc", "a/../b", "main/..", "..", "x//y", "a b", "main/", ".git", "a/.b",
                    "m\nx", "a%2Fb", "r" * 256, "a\\b"]
        for rev in bad_revs:
            with self.subTest(revision=rev):
                self.assertIn("not a revision", self.fetch(revision=rev, ok=False))
                self.assertEqual(hub_tool("cached", "--revision", rev, "--", self.root, REPO)[0], 1)
        self.assertEqual(self.hub.log, [])  # nothing was asked of the hub
        self.assertEqual(os.listdir(self.root), [])  # nothing was written

    def test_good_repo_ids_are_accepted(self):
        for repo in ("gpt2", "openai-community/gpt2", "a_b/c.d-e", "TinyLlama/TinyLlama_v1.1"):
            with self.subTest(repo=repo):
                self.assertEqual(self.cached(repo), {"found": 0, "snapshot": None, "commit": None})

    # ---- what is already in a cache ----

    def write_by_hand(self, repo, commit, files, ref="main"):
        """A snapshot laid out as huggingface_hub lays it out."""
        d = os.path.join(self.root, "models--" + repo.replace("/", "--"))
        os.makedirs(os.path.join(d, "blobs"), exist_ok=True)
        os.makedirs(os.path.join(d, "snapshots", commit), exist_ok=True)
        for name, data in files.items():
            e = etag_of(name, data)
            with open(os.path.join(d, "blobs", e), "wb") as f:
                f.write(data)
            os.symlink(os.path.join("..", "..", "blobs", e), os.path.join(d, "snapshots", commit, name))
        if ref:
            os.makedirs(os.path.join(d, "refs"), exist_ok=True)
            with open(os.path.join(d, "refs", ref), "w") as f:
                f.write(commit)
        return os.path.join(d, "snapshots", commit)

    def test_cached_snapshot_written_by_hand(self):
        snap = self.write_by_hand(REPO, self.main, SRC["main"])
        self.assertEqual(self.cached(), {"found": 1, "snapshot": snap, "commit": self.main})
        self.assertEqual(self.cached(revision=self.main)["found"], 1)  # the commit itself
        self.assertEqual(self.cached(revision="dev"), {"found": 0, "snapshot": None, "commit": None})
        # the hub agrees with it: fetching downloads nothing
        self.fetch()
        self.assertEqual(self.hub.gets(), [])
        # a ref written with a newline (by hand, by another tool) reads the same
        with open(os.path.join(self.repo_dir(), "refs", "main"), "w") as f:
            f.write(self.main + "\n")
        self.assertEqual(self.cached()["commit"], self.main)

    def test_snapshot_with_a_missing_blob_is_incomplete(self):
        snap = self.fetch()
        e = sha256(SRC["main"]["model.safetensors"])
        os.unlink(os.path.join(self.repo_dir(), "blobs", e))
        self.assertEqual(self.cached(), {"found": 0, "snapshot": snap, "commit": self.main})
        # fetching again brings back only what is missing
        self.hub.clear_log()
        self.fetch()
        self.assertEqual(self.hub.downloads(), [e])
        self.assertEqual(self.cached()["found"], 1)
        # a snapshot without a tokenizer, or without its config, is incomplete too
        snap2 = self.write_by_hand("x/no-tokenizer", "a" * 40,
                                   {k: v for k, v in SRC["main"].items() if k != "merges.txt"})
        self.assertEqual(self.cached("x/no-tokenizer")["found"], 0)
        self.write_by_hand("x/no-config", "b" * 40, {k: v for k, v in SRC["main"].items() if k != "config.json"})
        self.assertEqual(self.cached("x/no-config")["found"], 0)
        self.assertTrue(os.path.isdir(snap2))

    def test_unreadable_ref_is_an_error(self):
        self.write_by_hand(REPO, self.main, SRC["main"])
        with open(os.path.join(self.repo_dir(), "refs", "main"), "w") as f:
            f.write("../../../etc")
        self.assertEqual(hub_tool("cached", self.root, REPO)[0], 1)

    # ---- paths ----

    def test_repo_of_path(self):
        snap = self.write_by_hand(REPO, self.main, SRC["main"])
        other = self.write_by_hand(REPO, self.dev, SRC["dev"], ref=None)
        legacy = self.write_by_hand("gpt2", self.main, SRC["main"])

        def repo_of(path):
            rc, doc, err = hub_tool("repo-of", "--", path)
            self.assertEqual(rc, 0, err)
            return doc

        self.assertEqual(repo_of(self.repo_dir()), {"repo": REPO, "snapshot": snap})  # through refs/main
        self.assertEqual(repo_of(self.repo_dir() + "/"), {"repo": REPO, "snapshot": snap})
        self.assertEqual(repo_of(other), {"repo": REPO, "snapshot": other})  # a snapshot folder
        self.assertEqual(repo_of(os.path.join(self.root, "models--gpt2")), {"repo": "gpt2", "snapshot": legacy})
        # a symlink to a snapshot folder is resolved
        link = os.path.join(TMP, "link-%s" % os.path.basename(self.root))
        os.symlink(snap, link)
        self.assertEqual(repo_of(link), {"repo": REPO, "snapshot": snap})
        # anything else: not a hub path
        for path in (self.root, os.path.join(self.repo_dir(), "snapshots"), os.path.join(snap, "config.json"),
                     os.path.join(TMP, "src-main"), os.path.join(TMP, "nonexistent"), "/"):
            with self.subTest(path=path):
                self.assertEqual(repo_of(path), {"repo": None, "snapshot": None})
        # a repo folder without refs/main and with two snapshots: no choice to make
        os.unlink(os.path.join(self.repo_dir(), "refs", "main"))
        rc, doc, err = hub_tool("repo-of", self.repo_dir())
        self.assertEqual(rc, 1)
        self.assertIn("no refs/main", err)
        # ... with only one: that one
        self.assertEqual(repo_of(os.path.join(self.root, "models--gpt2")), {"repo": "gpt2", "snapshot": legacy})
        shutil.rmtree(other)
        self.assertEqual(repo_of(self.repo_dir()), {"repo": REPO, "snapshot": snap})


class CacheRootTest(unittest.TestCase):
    def root(self, **env):
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")}
        clean.update(env)
        p = subprocess.run([TWD_HUB, "root"], capture_output=True, text=True, env=clean, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["root"]

    def test_order(self):
        self.assertEqual(self.root(HOME="/h"), "/h/.cache/huggingface/hub")
        self.assertEqual(self.root(HOME="/h", XDG_CACHE_HOME="/x"), "/x/huggingface/hub")
        self.assertEqual(self.root(HOME="/h", XDG_CACHE_HOME="/x", HF_HOME="/hf"), "/hf/hub")
        self.assertEqual(self.root(HOME="/h", HF_HOME="/hf", HUGGINGFACE_HUB_CACHE="/old"), "/old")
        self.assertEqual(self.root(HOME="/h", HF_HOME="/hf", HUGGINGFACE_HUB_CACHE="/old", HF_HUB_CACHE="/c"), "/c")
        self.assertEqual(self.root(HOME="/h", HF_HUB_CACHE="~/c"), "/h/c")
        self.assertEqual(self.root(HOME="/h", HF_HUB_CACHE="", HF_HOME="/hf"), "/hf/hub")  # empty: unset


if __name__ == "__main__":
    unittest.main(verbosity=2)
