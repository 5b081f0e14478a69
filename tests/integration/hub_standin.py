"""A local stand-in for the Hugging Face hub, on 127.0.0.1, for the tests.

It answers /{repo}/resolve/{revision}/{file} as the real hub does:

- the revision is a branch or tag (refs) or a commit; one with a '/' (such as
  refs/pr/1) arrives URL-encoded;
- every answer names the commit in X-Repo-Commit;
- a regular file answers 200 with ETag = its git blob hash (SHA-1 of
  "blob <size>\\0" + contents), quoted;
- an LFS file (*.safetensors) answers 302 to its storage (an absolute URL,
  /cdn/<sha256> here) with X-Linked-Etag = its SHA-256 and X-Linked-Size;
  the storage honours Range, and its own ETag is not the hub's;
- a missing file answers 404 with X-Error-Code: EntryNotFound;
- a renamed repo answers 307 with a relative Location to its new name.

Switches make it misbehave on purpose: cut the next LFS transfer short,
announce a wrong SHA-256, send more bytes than announced, send no
X-Repo-Commit (a plain mirror), weak ETags, ignore Range, or send hostile
ETags / commits. Every request is
logged as (method, path, Range).
"""
import hashlib
import http.server
import sys
import threading
import urllib.parse


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def is_lfs(name):
    return name.endswith(".safetensors")


class StandInHub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = "http://127.0.0.1:%d" % self.server_address[1]
        self.refs = {}      # repo -> {branch or tag: commit}
        self.commits = {}   # repo -> {commit: {file: bytes}}
        self.renames = {}   # old repo id -> new repo id
        self.cut_after = None     # bytes after which the next LFS transfer is cut
        self.bad_hash = False     # announce a wrong SHA-256 for LFS files
        self.send_commit = True   # False: a mirror that sends no X-Repo-Commit
        self.weak_etag = False    # ETags as W/"..."
        self.ignore_range = False  # answer a Range request with all of the file
        self.pad_storage = b""     # sent after an LFS file's bytes (more than announced)
        self.etag_override = None    # sent instead of every ETag / X-Linked-Etag
        self.commit_override = None  # sent instead of every X-Repo-Commit
        self.log = []
        self._lock = threading.Lock()
        self._thread = None

    # ---- content ----

    def add_revision(self, repo, revision, files):
        """Serves `files` ({name: bytes}) as `repo` at branch/tag `revision`;
        returns the commit (deterministic, 40 hex)."""
        h = hashlib.sha1(repo.encode() + b"\0" + revision.encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + files[name])
        commit = h.hexdigest()
        self.refs.setdefault(repo, {})[revision] = commit
        self.commits.setdefault(repo, {})[commit] = dict(files)
        return commit

    def _blob_by_sha256(self, digest):
        for commits in self.commits.values():
            for files in commits.values():
                for name, data in files.items():
                    if is_lfs(name) and sha256(data) == digest:
                        return data
        return None

    # ---- life cycle ----

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address):
        # a client that hangs up mid-answer (as twd does on a refused body) is no error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def record(self, method, path, rng):
        with self._lock:
            self.log.append((method, path, rng))

    def gets(self):
        """Paths of the GET requests so far."""
        with self._lock:
            return [p for m, p, _ in self.log if m == "GET"]

    def downloads(self):
        """What the GET requests so far fetched: a file's name, or for an LFS
        file the SHA-256 its storage was asked for (the hub's own answer to
        it is only a redirect)."""
        out = []
        for p in self.gets():
            name = urllib.parse.unquote(p.rsplit("/", 1)[-1])
            if p.startswith("/cdn/") or not is_lfs(name):
                out.append(name)
        return out

    def ranges(self):
        with self._lock:
            return [r for _, _, r in self.log if r]

    def clear_log(self):
        with self._lock:
            self.log.clear()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _end(self, code, headers=(), body=b"", head=False):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _answer(self, head):
        hub = self.server
        hub.record(self.command, self.path, self.headers.get("Range"))
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/cdn/"):
            return self._storage(path[5:], head)
        segs = path.split("/")[1:]
        if "resolve" not in segs or len(segs) < segs.index("resolve") + 3:
            return self._end(404, [("X-Error-Code", "RepoNotFound")], head=head)
        i = segs.index("resolve")
        repo = "/".join(urllib.parse.unquote(s) for s in segs[:i])
        revision = urllib.parse.unquote(segs[i + 1])
        name = "/".join(urllib.parse.unquote(s) for s in segs[i + 2:])
        if repo in hub.renames:
            new = "/" + hub.renames[repo] + "/" + "/".join(segs[i:])
            return self._end(307, [("Location", new)], head=head)
        if repo not in hub.commits:
            return self._end(401, [("X-Error-Code", "RepoNotFound")], head=head)
        commit = hub.refs[repo].get(revision, revision)
        if commit not in hub.commits[repo]:
            return self._end(404, [("X-Error-Code", "RevisionNotFound")], head=head)
        meta = []
        if hub.send_commit:
            meta.append(("X-Repo-Commit", hub.commit_override or commit))
        files = hub.commits[repo][commit]
        if name not in files:
            return self._end(404, meta + [("X-Error-Code", "EntryNotFound")], head=head)
        data = files[name]
        if is_lfs(name):
            digest = "0" * 64 if hub.bad_hash else sha256(data)
            etag = '"%s"' % (hub.etag_override or digest)
            return self._end(302, meta + [
                ("Location", "%s/cdn/%s" % (hub.url, sha256(data))),
                ("ETag", etag), ("X-Linked-Etag", etag), ("X-Linked-Size", str(len(data)))], head=head)
        etag = '"%s"' % (hub.etag_override or git_blob_sha1(data))
        if hub.weak_etag:
            etag = "W/" + etag
        self._ranged(data, meta + [("ETag", etag)], head, cut=None)

    def _storage(self, digest, head):
        data = self.server._blob_by_sha256(digest)
        if data is None:
            return self._end(404, head=head)
        cut = None
        if not head and self.server.cut_after is not None:
            cut, self.server.cut_after = self.server.cut_after, None
        self._ranged(data + self.server.pad_storage, [("ETag", '"storage-%s"' % digest[:8])], head, cut)

    def _ranged(self, data, headers, head, cut):
        start = 0
        rng = self.headers.get("Range")
        if rng and not self.server.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                return self._end(416, [("Content-Range", "bytes */%d" % len(data))], head=head)
        body = data[start:]
        self.send_response(206 if start else 200)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)
