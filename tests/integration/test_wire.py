"""What twd sends over the wire (issue 11.8): strong ETags and Cache-Control
on the page's files with 304 on If-None-Match, and gzip for answers and
files larger than 1 KiB when the client accepts it (Vary: Accept-Encoding;
never without Accept-Encoding, never when gzip has q=0), the same bytes once
decoded, HEAD and GET agreeing on Content-Length.

Run: TWD=build/server/twd TWD_SYNTH=build/tools/twd-synth /usr/bin/python3 -m unittest \
        tests/integration/test_wire.py
"""
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import OneDaemon, make_checkpoint  # noqa: E402

TMP = tempfile.mkdtemp(prefix="twd-wire-")
MODEL = os.path.join(TMP, "tiny")
STATIC = os.path.join(TMP, "static")
BIG_JS = "// a script\n" + "".join("var v%d = %d * 2 + 1;\n" % (i, i) for i in range(3000))


def setUpModule():
    make_checkpoint(MODEL, "tiny")
    os.makedirs(os.path.join(STATIC, "js"))
    os.makedirs(os.path.join(STATIC, "vendor", "lib"))
    with open(os.path.join(STATIC, "index.html"), "w") as f:
        f.write("<!doctype html><title>t</title><p>small page</p>\n")
    with open(os.path.join(STATIC, "js", "app.js"), "w") as f:
        f.write(BIG_JS)
    with open(os.path.join(STATIC, "vendor", "lib", "lib.js"), "w") as f:
        f.write(BIG_JS.replace("var", "let"))
    with open(os.path.join(STATIC, "logo.png"), "wb") as f:
        f.write(os.urandom(5000))


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class WireTest(OneDaemon, unittest.TestCase):
    daemon_args = ("--static-dir", STATIC, "--set", "access_log=false")
    daemon_model = MODEL

    def get(self, target, method="GET", **headers):
        return self.d.request(method, target, headers=headers)

    # ---- the page's files ----

    def test_etag_and_304(self):
        st, h, body = self.get("/index.html")
        self.assertEqual(st, 200)
        self.assertEqual(h["cache-control"], "no-cache")
        etag = h["etag"]
        self.assertRegex(etag, r'^"[0-9a-f]{16}-[0-9a-f]+"$')  # strong: no W/
        st2, h2, body2 = self.get("/index.html", **{"If-None-Match": etag})
        self.assertEqual((st2, body2), (304, b""))
        self.assertEqual(h2["etag"], etag)
        self.assertEqual(h2["cache-control"], "no-cache")
        # weak comparison, lists, and *
        for inm in ["W/" + etag, '"nope", ' + etag, "*"]:
            self.assertEqual(self.get("/index.html", **{"If-None-Match": inm})[0], 304, inm)
        st3, _, body3 = self.get("/index.html", **{"If-None-Match": '"0000000000000000-1"'})
        self.assertEqual((st3, body3), (200, body))
        # "/" is index.html: the same tag
        self.assertEqual(self.get("/")[1]["etag"], etag)

    def test_a_changed_file_gets_a_new_etag(self):
        path = os.path.join(STATIC, "js", "changing.js")
        with open(path, "w") as f:
            f.write("var a = 1;\n")
        st, h, body = self.get("/js/changing.js")
        self.assertEqual(body, b"var a = 1;\n")
        time.sleep(0.05)  # a later mtime (file times are coarse)
        with open(path, "w") as f:
            f.write("var a = 2;\n")
        st, h2, body2 = self.get("/js/changing.js", **{"If-None-Match": h["etag"]})
        self.assertEqual((st, body2), (200, b"var a = 2;\n"))
        self.assertNotEqual(h2["etag"], h["etag"])

    def test_fifo_in_the_static_dir(self):
        # issue 9, item 6: a FIFO in static_dir froze every HTTP thread that
        # opened it, and shutdown with them; it is refused as not a file
        path = os.path.join(STATIC, "js", "pipe.js")
        os.mkfifo(path)
        try:
            for _ in range(12):  # more than the HTTP threads
                st, _, body = self.get("/js/pipe.js")
                self.assertEqual(st, 404, body[:200])
                self.assertEqual(json.loads(body)["error"]["code"], 404)
            self.assertEqual(self.get("/health")[0], 200)
        finally:
            os.unlink(path)

    def test_vendored_files_are_kept_longer(self):
        st, h, _ = self.get("/vendor/lib/lib.js")
        self.assertEqual(st, 200)
        self.assertIn("max-age=", h["cache-control"])
        self.assertIn("etag", h)
        self.assertEqual(self.get("/vendor/lib/lib.js", **{"If-None-Match": h["etag"]})[0], 304)

    def test_static_gzip(self):
        st, h, plain = self.get("/js/app.js")
        self.assertEqual(plain, BIG_JS.encode())
        self.assertNotIn("content-encoding", h)
        self.assertEqual(h["vary"], "Accept-Encoding")
        st, hz, z = self.get("/js/app.js", **{"Accept-Encoding": "gzip"})
        self.assertEqual(hz["content-encoding"], "gzip")
        self.assertEqual(gzip.decompress(z), plain)
        self.assertLess(len(z), len(plain) / 3)
        self.assertNotEqual(hz["etag"], h["etag"])  # another representation, another strong tag
        self.assertEqual(self.get("/js/app.js", **{"If-None-Match": hz["etag"],
                                                   "Accept-Encoding": "gzip"})[0], 304)
        # HEAD says what GET sends, in each encoding
        _, hh, hb = self.get("/js/app.js", "HEAD", **{"Accept-Encoding": "gzip"})
        self.assertEqual((hb, hh["content-length"], hh["content-encoding"]), (b"", str(len(z)), "gzip"))
        _, hh, _ = self.get("/js/app.js", "HEAD")
        self.assertEqual(hh["content-length"], str(len(plain)))
        self.assertNotIn("content-encoding", hh)
        # binary files are not compressed; small ones neither
        _, hp, _ = self.get("/logo.png", **{"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", hp)
        _, hi, _ = self.get("/index.html", **{"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", hi)

    # ---- answers ----

    def test_answer_gzip(self):
        target = "/svd?block=1&top=8&k=10"
        st, h, plain = self.get(target)
        self.assertEqual(st, 200)
        self.assertGreater(len(plain), 1024)
        self.assertNotIn("content-encoding", h)
        self.assertEqual(h["vary"], "Accept-Encoding")
        st, hz, z = self.get(target, **{"Accept-Encoding": "deflate, gzip;q=0.8"})
        self.assertEqual((st, hz["content-encoding"], hz["x-twd-cache"]), (200, "gzip", "hit"))
        self.assertEqual(gzip.decompress(z), plain)
        json.loads(gzip.decompress(z))
        _, hh, hb = self.get(target, "HEAD", **{"Accept-Encoding": "gzip"})
        self.assertEqual((hb, hh["content-length"]), (b"", str(len(z))))
        # refused or not asked for: plain
        for ae in ["gzip;q=0", "identity", "br", "gzip;q=0, *"]:
            _, h2, b2 = self.get(target, **{"Accept-Encoding": ae})
            self.assertNotIn("content-encoding", h2, ae)
            self.assertEqual(b2, plain, ae)
        _, h3, b3 = self.get(target, **{"Accept-Encoding": "*"})
        self.assertEqual((h3.get("content-encoding"), gzip.decompress(b3)), ("gzip", plain))

    def test_light_and_small_answers(self):
        st, h, z = self.get("/openapi.json", **{"Accept-Encoding": "gzip"})
        self.assertEqual((st, h.get("content-encoding")), (200, "gzip"))
        _, _, plain = self.get("/openapi.json")
        self.assertEqual(gzip.decompress(z), plain)
        st, h, body = self.get("/health", **{"Accept-Encoding": "gzip"})
        self.assertEqual(st, 200)
        self.assertNotIn("content-encoding", h)  # under 1 KiB
        self.assertNotIn("vary", h)
        json.loads(body)


if __name__ == "__main__":
    unittest.main()
