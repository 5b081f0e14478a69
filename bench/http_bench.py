#!/usr/bin/env python3
"""End-to-end timings of twd over HTTP on the 124M-shaped checkpoint.

Prints numbers; asserts nothing (speed targets belong here, not in tests).
    /usr/bin/python3 bench/http_bench.py [--build build] [--model DIR]
Generates the 124M-shaped synthetic checkpoint (tools/twd-synth --shape 124M)
into $TWD_BENCH_DIR (default build/bench-models/124M) when --model is not given.
Each "cold" figure is the first request of its kind after a fresh start.
--only-npy: only a 1024-token /trajectory?vectors=true&format=npy against the
same request without vectors (JSON), each on a new text (--reps: how many).
--page: only the page's first requests (as static/js/app.js and trajectory.js
send them: /models with /openapi.json, /model, then the whole layout's cloud
in its compact form, /umap/layout?format=npy and /umap/layout/tokens, beside
the default phrase's POST /trajectory), on a daemon that reads
the UMAP layout from its disk cache (--page-cache; fitted there first if
absent, which takes minutes); the first trajectory is there when both answer.
"""
import argparse
import gzip
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twd_daemon import TwdDaemon  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Twd(TwdDaemon):
    def __init__(self, exe, model, extra):
        super().__init__(exe, model, extra, poll=0.005)



def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (/proc/PID/stat): under
    load the wall time of a request says more about the other processes."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phrase_of(d, n_tokens, salt):
    """A text of at most n_tokens tokens (as many as whole words allow) under
    the daemon's tokenizer; salt makes each text new, so that no answer comes
    from the answer cache."""
    def count(words):
        st, body = d.get("/tokenize?text=" + urllib.parse.quote(" ".join(words)))
        return len(json.loads(body)["tokens"])

    words = ["w%d" % salt, "word"]
    per_word = count(words + ["word"]) - count(words)
    words += ["word"] * max(0, (n_tokens - count(words)) // max(per_word, 1))
    while count(words) > n_tokens:
        words.pop()
    return " ".join(words)


def npy_rows(d, n_tokens=1024, reps=3):
    """A long phrase with every state's vectors as .npy against the same
    request without vectors (JSON): best of `reps`, each on a new text."""
    out, best = [], {}
    for rep in range(reps):
        for label, extra in (("JSON, no vectors", ""), ("vectors=true&format=npy", "&vectors=true&format=npy")):
            text = phrase_of(d, n_tokens, rep * 2 + (extra != ""))
            c0 = cpu_seconds(d.proc.pid)
            dt, body = d.timed("/trajectory?projection=pca&k=1&text=%s%s" % (urllib.parse.quote(text), extra))
            cpu = cpu_seconds(d.proc.pid) - c0
            if not extra:
                got = json.loads(body)["n_tokens"]
            if label not in best or dt < best[label][0]:
                best[label] = (dt, len(body), cpu)
    for label, (dt, size, cpu) in best.items():
        out.append(("/trajectory %s tokens, %s (%.1f MB), best of %d" % (got, label, size / 1e6, reps),
                    dt * 1e3, "ms"))
        out.append(("  CPU time of the daemon for it", cpu * 1e3, "ms"))
    ratio = best["vectors=true&format=npy"][0] / best["JSON, no vectors"][0]
    out.append(("  ratio npy with vectors / without vectors (target <= 2)", ratio, "x"))
    out.append(("  ratio JSON without vectors / npy, wall", 1 / ratio, "x"))
    out.append(("  ratio JSON without vectors / npy, CPU",
                best["JSON, no vectors"][2] / best["vectors=true&format=npy"][2], "x"))
    return out


def page_request(d, method, target, body=None):
    """(seconds, status, decoded bytes) of one request as a browser sends it
    (gzip accepted, JSON body)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=3600)
    headers = {"Accept-Encoding": "gzip"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    t = time.perf_counter()
    c.request(method, target, data, headers)
    r = c.getresponse()
    raw = r.read()
    dt = time.perf_counter() - t
    c.close()
    if r.getheader("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    if r.status != 200:
        raise RuntimeError("%s %s -> %d %s" % (method, target, r.status, raw[:300]))
    return dt, raw


def page_rows(exe, model, cache, extra):
    """The page's first requests, timed from the first one, with the UMAP
    layout read from the disk cache (fitted into it first when absent)."""
    args = extra + ["--set", "umap=true", "--cache-dir", cache]
    d = Twd(exe, model, args)
    t0 = time.time()
    while json.loads(d.get("/umap")[1])["state"] == "fitting":
        time.sleep(0.5)
    fitted = time.time() - t0
    d.stop()
    d = Twd(exe, model, args)
    out = [("ready, UMAP layout from the disk cache (fit first: %.0f s)" % fitted, d.ready * 1e3, "ms")]
    state = json.loads(d.get("/umap")[1])
    if state["state"] != "ready":
        raise RuntimeError("the layout was not read from the cache: %s" % state)
    t0 = time.perf_counter()
    got = {}

    def run(name, method, target, body=None):
        got[name] = page_request(d, method, target, body)

    ts = [threading.Thread(target=run, args=("/models", "GET", "/models")),
          threading.Thread(target=run, args=("/openapi.json", "GET", "/openapi.json"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    run("/model", "GET", "/model")
    phrase = json.loads(got["/model"][1]).get("default_phrase") or "To kill two birds with one stone"
    t1 = time.perf_counter()
    ts = [threading.Thread(target=run, args=("/umap/layout", "GET", "/umap/layout?projection=umap&limit=0&format=npy")),
          threading.Thread(target=run, args=("/umap/layout/tokens", "GET", "/umap/layout/tokens?projection=umap&limit=0")),
          threading.Thread(target=run, args=("/trajectory", "POST", "/trajectory",
                                             {"text": phrase, "projection": "umap", "gelu": "tanh", "k": 5}))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t2 = time.perf_counter()
    for name in ("/models", "/openapi.json", "/model"):
        out.append(("  %s" % name, got[name][0] * 1e3, "ms"))
    n = json.loads(got["/trajectory"][1])["n_tokens"]
    tok = json.loads(got["/umap/layout/tokens"][1])
    out.append(("  /umap/layout?format=npy (%d points, %.0f KB), beside" % (
        tok["n"], len(got["/umap/layout"][1]) / 1e3), got["/umap/layout"][0] * 1e3, "ms"))
    out.append(("  /umap/layout/tokens (%.0f KB), beside" % (len(got["/umap/layout/tokens"][1]) / 1e3),
                got["/umap/layout/tokens"][0] * 1e3, "ms"))
    out.append(("  POST /trajectory, default phrase (%d tokens), umap, k 5" % n, got["/trajectory"][0] * 1e3, "ms"))
    out.append(("  both answered, from the layout and trajectory requests", (t2 - t1) * 1e3, "ms"))
    out.append(("first trajectory's data at the page, from /models", (t2 - t0) * 1e3, "ms"))
    d.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--cache-mb", type=int, default=2048)
    ap.add_argument("--only-npy", action="store_true",
                    help="only the 1024-token /trajectory with and without vectors")
    ap.add_argument("--reps", type=int, default=3, help="--only-npy: requests of each kind (the best is shown)")
    ap.add_argument("--page", action="store_true", help="only the page's first requests")
    ap.add_argument("--page-cache", default=os.path.join(ROOT, "build", "bench-page-cache"),
                    help="--page: twd's cache folder (the UMAP layout is kept there)")
    a = ap.parse_args()
    exe = os.path.join(a.build, "server", "twd")
    model = a.model or os.environ.get("TWD_BENCH_DIR") or os.path.join(a.build, "bench-models", "124M")
    if not os.path.exists(os.path.join(model, "config.json")):
        print("generating the 124M-shaped checkpoint into", model, flush=True)
        subprocess.run([os.path.join(a.build, "tools", "twd-synth"), "--out", model, "--shape", "124M"], check=True)
    size_mb = os.path.getsize(os.path.join(model, "model.safetensors")) / 2**20
    # warm the page cache so that load time is the daemon's, not the disk's
    with open(os.path.join(model, "model.safetensors"), "rb") as f:
        while f.read(1 << 24):
            pass
    extra = ["--set", "cache_mb=%d" % a.cache_mb, "--set", "umap=false"]
    print("checkpoint %s (%.0f MiB), cache budget %d MiB, %d cores" % (model, size_mb, a.cache_mb, os.cpu_count()))

    rows = []
    if a.only_npy:
        d = Twd(exe, model, extra + ["--set", "answer_cache_mb=0", "--set", "max_request_seconds=3600"])
        rows = npy_rows(d, reps=a.reps)
        d.stop()
    if a.page:
        rows = page_rows(exe, model, a.page_cache, extra[:2])
    if rows:
        w = max(len(r[0]) for r in rows)
        for label, v, unit in rows:
            print("%-*s %10.1f %s" % (w, label, v, unit))
        print("load average (1, 5, 15 min): %.1f %.1f %.1f" % os.getloadavg())
        return 0
    d = Twd(exe, model, extra)
    rows.append(("ready after start (warm page cache)", d.ready * 1e3, "ms"))
    st, body = d.get("/model")
    rows.append(("load_seconds reported by /model", json.loads(body)["load_seconds"] * 1e3, "ms"))
    for label, target in (
        ("/embeddings?scheme=all cold", "/embeddings?scheme=all&k=5"),
        ("/embeddings/normalization cold", "/embeddings/normalization"),
        ("/svd?block=11 (both, top 20, k 5) cold", "/svd?block=11&matrix=both&top=20&k=5"),
        ("/probe 100 nouns block 0 cold", "/probe?block=0&k=5"),
        ("/svd/bias?block=5 cold", "/svd/bias?block=5&k=5"),
    ):
        dt, body = d.timed(target)
        rows.append((label, dt * 1e3, "ms"))
        reps = [d.timed(target)[0] for _ in range(a.repeat)]
        reps.sort()
        rows.append((label.replace("cold", "repeated (median)"), reps[len(reps) // 2] * 1e3, "ms"))
    dt, _ = d.timed("/probe?block=5&k=5")
    rows.append(("/probe 100 nouns block 5 cold (another block)", dt * 1e3, "ms"))
    rows.append(("resident size after these", rss_mb(d.proc.pid), "MiB"))
    rows.append(("checkpoint + cache budget", size_mb + a.cache_mb, "MiB"))
    d.stop()
    # a cold /svd on a fresh daemon, as the very first request
    d = Twd(exe, model, extra)
    dt, _ = d.timed("/svd?block=11&matrix=both&top=20&k=5")
    rows.append(("/svd?block=11 first request after start", dt * 1e3, "ms"))
    d.stop()
    # trajectories: a daemon that fits (or reloads) the UMAP layout of 10,000 rows
    cache = os.path.join(a.build, "bench-cache")
    shutil.rmtree(os.path.join(cache, "umap"), ignore_errors=True)
    d = Twd(exe, model, ["--set", "umap=true", "--cache-dir", cache])
    t0 = time.time()
    while json.loads(d.get("/umap")[1])["state"] == "fitting":
        time.sleep(0.05)
    status = json.loads(d.get("/umap")[1])
    rows.append(("UMAP fit of 10,000 rows in the daemon (%s)" % status["state"], time.time() - t0 + d.ready, "s"))
    phrase = "/trajectory?text=To%20kill%20two%20birds%20with%20one%20stone"
    for proj in ("umap", "pca"):
        dt, body = d.timed(phrase + "&projection=" + proj)
        rows.append(("/trajectory %s, 8-word phrase (%d tokens), cold" % (proj, json.loads(body)["n_tokens"]),
                     dt * 1e3, "ms"))
    long_text = "%20".join(["word"] * 200)
    dt, body = d.timed("/trajectory?projection=umap&k=1&text=" + long_text)
    rows.append(("/trajectory umap, %d tokens, cold" % json.loads(body)["n_tokens"], dt * 1e3, "ms"))
    rows += npy_rows(d)
    d.stop()
    d = Twd(exe, model, ["--set", "umap=true", "--cache-dir", cache])
    rows.append(("ready with the UMAP layout reloaded from disk", d.ready * 1e3, "ms"))
    rows.append(("  layout state right after start", 1.0 if json.loads(d.get("/umap")[1])["state"] == "ready" else 0.0,
                 "(1 = ready)"))
    d.stop()
    w = max(len(r[0]) for r in rows)
    for label, v, unit in rows:
        print("%-*s %10.1f %s" % (w, label, v, unit))


if __name__ == "__main__":
    sys.exit(main())
