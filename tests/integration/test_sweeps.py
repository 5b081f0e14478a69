"""Whole-model sweeps over HTTP: block=all and block=A-B on /svd, /svd/bias
and /probe (GET and POST), answered as the list of the one-block answers;
each block kept under its one-block key; progress gauges in /metrics; the
OpenAPI description; and every bad block value refused with the JSON 400.
"""
import csv
import io
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import Daemon, OneDaemon, error_at, make_checkpoint, module_checkpoint  # noqa: E402

SHAPE = ("--layers", "4", "--heads", "4", "--embd", "64", "--vocab", "4096", "--ctx", "64", "--seed", "5")
L = 4
TMP, MODEL, setUpModule, tearDownModule = module_checkpoint("twd-sweep-", "small", "tiny", *SHAPE)


class SweepTest(OneDaemon, unittest.TestCase):
    daemon_args = ("--set", "max_answer_tokens=20000")
    daemon_model = MODEL

    def one(self, path, block, **params):
        st, h, body = self.d.get(path, block=block, **params)
        self.assertEqual(st, 200, body[:300])
        return h, body

    def test_json_sweeps_are_the_blocks(self):
        for path, params, spec, blocks in (
                ("/svd", {"top": 2, "k": 3}, "all", range(L)),
                ("/svd", {"top": 0, "k": 1}, "1-3", range(1, 4)),
                ("/svd/bias", {"k": 2}, "2-2", range(2, 3)),
                ("/probe", {"k": 2, "words": "time,year,people"}, "0-1", range(2))):
            st, doc = self.d.get_json(path, block=spec, **params)
            self.assertEqual(st, 200, doc)
            self.assertEqual((doc["first_block"], doc["last_block"], doc["n_blocks"]),
                             (blocks[0], blocks[-1], len(blocks)))
            self.assertEqual(len(doc["blocks"]), len(blocks))
            for b, got in zip(blocks, doc["blocks"]):
                h, body = self.one(path, b, **params)
                self.assertEqual(h.get("x-twd-cache"), "hit", "%s block %d not kept by the sweep" % (path, b))
                self.assertEqual(json.loads(body), got)
                self.assertEqual(got["block"], b)

    def test_post_sweep(self):
        st, doc = self.d.post_json("/probe", {"block": "all", "k": 1, "words": ["time"]})
        self.assertEqual(st, 200, doc)
        self.assertEqual([b["block"] for b in doc["blocks"]], list(range(L)))
        st, doc = self.d.post_json("/probe", {"block": 2, "k": 1, "words": ["time"]})
        self.assertEqual((st, doc["block"]), (200, 2))  # one block: the one-block answer

    def test_csv_rows_carry_their_block(self):
        st, h, body = self.d.get("/probe", block="1-2", k=2, words="time,year", format="csv")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/csv"))
        rows = list(csv.reader(io.StringIO(body.decode())))
        _, single = self.one("/probe", 1, k=2, words="time,year", format="csv")
        head = list(csv.reader(io.StringIO(single.decode())))
        self.assertEqual(head[0][0], "block")  # the one-block table's first column already
        self.assertEqual(rows[0], head[0])
        for b in (1, 2):
            _, single = self.one("/probe", b, k=2, words="time,year", format="csv")
            mine = [r for r in rows[1:] if r[0] == str(b)]
            self.assertEqual(mine, list(csv.reader(io.StringIO(single.decode())))[1:])
        self.assertEqual(len(rows) - 1, sum(1 for r in rows[1:] if r[0] in ("1", "2")))

    def test_metrics_and_openapi(self):
        st, h, body = self.d.get("/metrics")
        text = body.decode()
        for line in ('twd_sweeps_running{model="small"} 0', 'twd_sweep_blocks{model="small",state="done"} 0',
                     'twd_sweep_blocks{model="small",state="total"} 0'):
            self.assertIn(line, text)
        st, doc = self.d.get_json("/openapi.json")
        params = {p["name"]: p for p in doc["paths"]["/svd"]["get"]["parameters"]}
        alts = params["block"]["schema"]["oneOf"]
        self.assertEqual(alts[0]["maximum"], L - 1)
        self.assertIn("all", alts[1]["pattern"])
        self.assertIn("A-B", params["block"]["description"])

    def test_bad_blocks(self):
        for spec, words in (("3-1", ("'block'", "reversed", "1-3")),
                            ("0-4", ("'block'", "outside", "0..3")),
                            ("4", ("'block'", "0..3")),
                            ("-1", ("'block'", "0..3")),
                            ("x", ("'block'", "integer", "all")),
                            ("1-", ("'block'", "range")),
                            ("-1-2", ("'block'", "range")),
                            ("1--2", ("'block'", "range")),
                            ("1-2-3", ("'block'", "range")),
                            ("all-3", ("'block'",)),
                            ("ALL", ("'block'",)),
                            ("all%20", ("'block'",)),
                            ("+1-2", ("'block'",)),
                            ("", ("'block'",))):
            for path in ("/svd", "/svd/bias", "/probe"):
                error_at(self, self.d, "%s?block=%s" % (path, spec), 400, *words)
        for body in (b'{"block": "3"}', b'{"block": [1, 2]}', b'{"block": 1.5}', b'{"block": "2-1"}',
                     b'{"block": null}'):
            error_at(self, self.d, "/probe", 400, "'block'", method="POST", body=body)

    def wait_job(self, job):
        for _ in range(600):
            st, doc = self.d.get_json("/sweep/job/status", id=job)
            self.assertEqual(st, 200, doc)
            if doc["state"] != "running":
                return doc
            time.sleep(0.05)
        self.fail("sweep job %d did not finish" % job)

    def test_sweep_job(self):
        st, job = self.d.post_json("/sweep/job", {"path": "/svd", "query": "block=1-3&top=1&k=2"})
        self.assertEqual(st, 200, job)
        self.assertEqual((job["path"], job["status"], job["result"]),
                         ("/svd", "/sweep/job/status?id=%d" % job["job"], "/sweep/job/result?id=%d" % job["job"]))
        self.assertIn(job["state"], ("running", "done"))
        doc = self.wait_job(job["job"])
        self.assertEqual((doc["state"], doc["stage"], doc["done"], doc["total"], doc["progress"]),
                         ("done", "blocks", 3, 3, 1))
        st, got = self.d.get_json("/sweep/job/result", id=job["job"], wait=5)
        self.assertEqual(st, 200, got)
        st, h, body = self.d.get("/svd", block="1-3", top=1, k=2)
        self.assertEqual(json.loads(body), got)
        self.assertEqual(h.get("x-twd-cache"), "hit", "the finished sweep is kept as its request's answer")
        for b in (1, 2, 3):
            h, body = self.one("/svd", b, top=1, k=2)
            self.assertEqual(h.get("x-twd-cache"), "hit")
            self.assertEqual(json.loads(body), got["blocks"][b - 1])
        # CSV, by its query's format, through a GET-style encoded query
        st, job = self.d.post_json("/sweep/job", {"path": "/probe", "query": "block=all&k=1&words=time%2Cyear&"
                                                                             "format=csv"})
        self.assertEqual(st, 200, job)
        self.wait_job(job["job"])
        st, h, body = self.d.get("/sweep/job/result", id=job["job"], wait=5)
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/csv"))
        self.assertEqual(body, self.d.get("/probe", block="all", k=1, words="time,year", format="csv")[2])

    def test_sweep_job_errors(self):
        for obj, words in (({"path": "/svd", "query": "block=2"}, ("'query'", "all")),
                           ({"path": "/svd", "query": "block=all&top=x"}, ("'top'",)),
                           ({"path": "/svd", "query": "block=all&nope=1"}, ("nope",)),
                           ({"path": "/svd", "query": "block=all&k=%zz"}, ("'query'", "percent")),
                           ({"path": "/tokenize", "query": "block=all"}, ("'path'", "/svd")),
                           ({"query": "block=all"}, ("'path'", "required"))):
            error_at(self, self.d, "/sweep/job", 400, *words, method="POST", body=json.dumps(obj).encode())
        # a sweep the size limit refuses fails as a job with that 400 as its answer
        st, job = self.d.post_json("/sweep/job", {"path": "/svd/bias", "query": "block=all&k=2000"})
        if st == 200:
            doc = self.wait_job(job["job"])
            self.assertEqual(doc["state"], "failed")
            self.assertIn("error", doc)
            error_at(self, self.d, "/sweep/job/result?id=%d" % job["job"], 400)
        else:
            self.assertEqual(st, 400)
        error_at(self, self.d, "/sweep/job/status?id=999999", 400, "'id'", "no job")
        error_at(self, self.d, "/sweep/job/result?id=999999", 400, "'id'", "no job")
        error_at(self, self.d, "/sweep/job/cancel?id=999999", 400, "'id'", "no job", method="POST")
        error_at(self, self.d, "/sweep/job/cancel?id=x", 400, "'id'", method="POST")
        error_at(self, self.d, "/trajectory/stats/job/cancel?id=999999", 400, "'id'", "no job", method="POST")

    def test_cancel_of_an_ended_job(self):
        # cancelling is best effort: a job that has ended stays as it ended
        st, job = self.d.post_json("/sweep/job", {"path": "/svd", "query": "block=0-1&top=1&k=1"})
        self.assertEqual(st, 200, job)
        self.wait_job(job["job"])
        st, doc = self.d.post_json("/sweep/job/cancel", {"id": job["job"]})
        self.assertEqual((st, doc["state"], doc["done"]), (200, "done", 2), doc)
        st, got = self.d.get_json("/sweep/job/result", id=job["job"])
        self.assertEqual((st, got["n_blocks"]), (200, 2))
        st, job = self.d.post_json("/trajectory/stats/job", {"texts": ["a b c"], "k": 1})
        self.assertEqual(st, 200, job)
        st, doc = self.d.get_json("/trajectory/stats/job/result", id=job["job"], wait=30)
        self.assertEqual(st, 200, doc)
        st, h, body = self.d.request("POST", "/trajectory/stats/job/cancel?id=%d" % job["job"])
        self.assertEqual((st, json.loads(body)["state"]), (200, "done"))

    def test_answer_limit_covers_the_sweep(self):
        # 4 heads x 4 lists x k: k = 1500 is 24,000 per block (over the limit
        # alone); k = 400 is 6,400 per block and 25,600 for the 4 blocks
        with Daemon("--set", "max_answer_tokens=20000", "--set", "max_k=2000", model=MODEL) as d:
            st, _, _ = d.get("/svd/bias", block=0, k=400)
            self.assertEqual(st, 200)
            error_at(self, d, "/svd/bias?block=all&k=400", 400, "max_answer_tokens", "fewer blocks")
            st, _, _ = d.get("/svd/bias", block="0-2", k=400)
            self.assertEqual(st, 200)


class CancelTest(unittest.TestCase):
    """POST /sweep/job/cancel stops a running sweep at its next check: the
    job ends "cancelled" with blocks left undone, its result answers 410,
    and the one worker is free for the next request."""

    def test_running_sweep_is_cancelled(self):
        # some 500 probe words with k=100 on 16,384 tokens and 12 heads, for
        # each of the 12 blocks: minutes of work on any machine
        wide = make_checkpoint(os.path.join(TMP, "wide"), "demo", "--vocab", "16384")
        with open(os.path.join(wide, "vocab.json")) as f:
            words = [w for w in json.load(f) if w.isalpha()][:1000]
        with Daemon("--set", "workers=1", "--set", "max_answer_tokens=100000000", "--set", "max_k=100",
                    model=wide) as d:
            query = "block=all&k=100&words=" + "%2C".join(words)
            while len(query.encode()) > 4000:  # the limit of a query= string (bytes)
                words.pop()
                query = "block=all&k=100&words=" + "%2C".join(words)
            self.assertGreater(len(words), 300)
            st, job = d.post_json("/sweep/job", {"path": "/probe", "query": query})
            self.assertEqual(st, 200, job)
            self.assertEqual(job["state"], "running")
            st, doc = d.post_json("/sweep/job/cancel", {"id": job["job"]})
            self.assertEqual((st, doc["job"]), (200, job["job"]), doc)
            self.assertIn(doc["state"], ("running", "cancelled"))
            for _ in range(1200):
                st, doc = d.get_json("/sweep/job/status", id=job["job"])
                if doc["state"] != "running":
                    break
                time.sleep(0.05)
            self.assertEqual(doc["state"], "cancelled", doc)
            self.assertLess(doc["done"], doc["total"])
            error_at(self, d, "/sweep/job/result?id=%d" % job["job"], 410, "cancelled")
            st, doc = d.post_json("/sweep/job/cancel", {"id": job["job"]})
            self.assertEqual((st, doc["state"]), (200, "cancelled"))
            # the worker is free: a cheap computation answers
            st, h, body = d.get("/svd", block=0, top=1, k=1)
            self.assertEqual((st, h.get("x-twd-cache")), (200, "miss"), body[:300])
            self.assertIn('twd_sweeps_running{model="wide"} 0', d.get("/metrics")[2].decode())


if __name__ == "__main__":
    unittest.main()
