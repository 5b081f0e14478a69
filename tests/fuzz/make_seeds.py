#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets under tests/fuzz/corpus/<target>/.

    tests/fuzz/make_seeds.py BUILD   (BUILD: a build folder with tools/twd-synth
                                      and tools/twd-tokenize, e.g. build)

Seeds are small valid inputs of each format (every one under 200 KB); the
fuzzers find the invalid ones. Deterministic: the same tools write the same
files. The pickle and zip corpora are not made here (they come from torch;
see tests/ref/torch_ckpt_ref.py).
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 200 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def split(a, b):
    """[u32 little-endian len(a)][a][b]: the two-file inputs."""
    return struct.pack("<I", len(a)) + a + b


def safetensors(entries, metadata=None):
    """A safetensors file of (name, dtype, shape, bytes) entries."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    synth = os.path.join(build, "tools", "twd-synth")
    tokenize = os.path.join(build, "tools", "twd-tokenize")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    tmp = tempfile.mkdtemp(prefix="twd-seeds-")

    def model(name, *args):
        out = os.path.join(tmp, name)
        subprocess.run([synth, "--out", out, "-q", *args], check=True, env=env)
        return out

    tiny = model("tiny", "--shape", "tiny", "--no-attn-bias", "--no-tokenizer")
    tiny16 = model("tiny16", "--shape", "tiny", "--dtype", "f16", "--no-tokenizer")
    mini = model("mini", "--layers", "1", "--heads", "1", "--embd", "4", "--vocab", "8", "--ctx", "4",
                 "--no-tokenizer")
    mini2 = model("mini2", "--layers", "2", "--heads", "2", "--embd", "4", "--vocab", "6", "--ctx", "3",
                  "--dtype", "bf16", "--prefix", "--no-tokenizer", "--seed", "7")
    mini3 = model("mini3", "--layers", "1", "--heads", "2", "--embd", "2", "--vocab", "3", "--ctx", "2",
                  "--dtype", "f16", "--no-attn-bias", "--no-tokenizer")

    # ---- safetensors
    for name, d in [("tiny_f32", tiny), ("tiny_f16", tiny16), ("mini_f32", mini), ("mini_bf16_prefix", mini2),
                    ("mini_f16", mini3)]:
        put("safetensors", name + ".safetensors", read(os.path.join(d, "model.safetensors")))
    every = [(dt, n) for dt, n in [("BOOL", 1), ("U8", 1), ("I8", 1), ("I16", 2), ("U16", 2), ("F16", 2),
                                     ("BF16", 2), ("I32", 4), ("U32", 4), ("F32", 4), ("F64", 8), ("I64", 8),
                                     ("U64", 8), ("F8_E4M3", 1), ("F8_E5M2", 1)]]
    put("safetensors", "every_dtype.safetensors",
        safetensors([("t_" + dt.lower(), dt, [2, 3], bytes(range(6 * n))) for dt, n in every],
                    metadata={"format": "pt"}))
    put("safetensors", "scalar_and_empty.safetensors",
        safetensors([("scalar", "F32", [], struct.pack("<f", 1.5)), ("empty", "F16", [0, 4], b""),
                     ("vec", "BF16", [3], b"\x80\x3f\x00\x40\x40\x40")]))
    put("safetensors", "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")

    # ---- config.json + model.safetensors
    for name, d in [("mini", mini), ("mini_bf16_prefix", mini2), ("mini_f16", mini3), ("tiny_f16", tiny16)]:
        put("gpt2", name, split(read(os.path.join(d, "config.json")), read(os.path.join(d, "model.safetensors"))))
    hf = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
          "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
          "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
          "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "vocab_size": 50257}
    put("gpt2", "config_gpt2", split(json.dumps(hf, indent=2).encode(), b""))
    put("gpt2", "config_n_ctx_only",
        split(b'{"n_layer": 1, "n_head": 1, "n_embd": 4, "n_ctx": 4, "vocab_size": 8, "n_inner": 16,'
              b' "layer_norm_epsilon": null}', read(os.path.join(mini, "model.safetensors"))))
    put("gpt2", "config_synthetic",
        split(b'{"n_layer":2,"n_head":2,"n_embd":4,"n_positions":3,"vocab_size":6,"twd_synthetic":true,'
              b'"twd_seed":7,"layer_norm_epsilon":0.001}', b""))

    # ---- vocab.json + merges.txt
    for n in (257, 300):
        d = os.path.join(tmp, "tok%d" % n)
        subprocess.run([tokenize, "--synthetic", str(n), "0", d], check=True, env=env)
        put("tokenizer_load", "synthetic_%d" % n,
            split(read(os.path.join(d, "vocab.json")), read(os.path.join(d, "merges.txt"))))
    # the 256 byte tokens alone, no merges, no header line
    d = os.path.join(tmp, "tok257")
    v = json.loads(read(os.path.join(d, "vocab.json")))
    bytes_only = {k: i for k, i in v.items() if i < 256}
    put("tokenizer_load", "bytes_only", split(json.dumps(bytes_only).encode(), b""))

    # ---- texts to encode
    texts = {
        "english": "The quick brown fox jumps over the lazy dog. It's 12:30, isn't it?",
        "contractions": "I'm sure they'll say we'd've won; you're right, it's theirs.",
        "whitespace": "a  b\t\tc\n\n\nd   \r\n e\u00a0f\u3000g   ",
        "unicode": "na\u00efve caf\u00e9 \u65e5\u672c\u8a9e \u0645\u0631\u062d\u0628\u0627 \U0001f600\U0001f44d\u200d \u0663\u0664",
        "special": "<|endoftext|>Hello<|endoftext|><|endoftext|> world<|endoftext",
        "numbers": "3.14159 1,000,000 \u0661\u0662\u0663 \u2160\u2161 0x1F",
        "code": "int main(void) { return a[i++] != b->c ? -1 : 0; } // \"quoted\" 'x'",
    }
    for name, t in texts.items():
        put("tokenize", name, t)
    put("tokenize", "invalid_utf8", b"ab\xc3(\xff\xfe\xed\xa0\x80 \xf0\x9f\x98 \xe2\x82\xac\xc0\xaf\x00z")

    # ---- configuration files (and argv after a NUL)
    put("config", "twd.conf", read(os.path.join(ROOT, "config", "twd.conf")))
    put("config", "small.conf", "# a comment\n\nport = 8181  # trailing\nlisten=\"::1\"\nworkers = 3\n"
                                "max_body = 2m\naccess_log = off\ncors_origin = http://localhost:3000\n")
    put("config", "sizes.conf", "cache_mb = 1g\nanswer_cache_mb=0\nmax_url = 64k\nmax_text=1K\n"
                                "umap = no\numap_seed = 9223372036854775807\n")
    put("config", "args", "model = /models/gpt2\n\0--port\n9000\n--set\nmax_k=7\n--config\nX\n--no-fetch\n"
                          "--listen\n::1\n--workers\n4\n--set\numap=false")
    put("config", "help", "\0--help")
    put("config", "print", "\0--print-config\n--set\nthreads=2")

    # ---- request targets
    targets = [
        "/health", "/model", "/metrics", "/openapi.json", "/umap",
        "/tokenize?text=hello%20world+%E2%82%AC",
        "/embeddings?scheme=norm&k=3&format=csv",
        "/embeddings?scheme=all&k=2",
        "/embeddings/normalization?format=csv",
        "/probe?block=1&words=cat,dog,the&k=3",
        "/probe?block=0&format=csv",
        "/svd?block=0&k=5",
        "/svd?block=1&matrix=qk&top=2&k=2&head=1&format=latex",
        "/svd?block=0&matrix=vo&top=0&format=csv",
        "/svd/bias?block=1&k=2&format=csv",
        "/trajectory?text=The+cat+sat&projection=pca&k=2&gelu=erf",
        "/trajectory?text=a",
        "/attention?text=The%20cat&block=0&head=1",
        "/attention?text=x+y+z&gelu=erf",
        "/umap/layout?projection=pca&limit=10",
        # optional parameters without a default, given as 0 and absent (and
        # the same requests above): once one cache entry
        "/svd?block=0&k=5&head=0",
        "/attention?text=x+y+z&gelu=erf&block=0",
    ]
    for i, t in enumerate(targets):
        put("target", "t%02d" % i, t)

    # ---- method, route, query, body
    routes = re.findall(r'\.path = "([^"]+)"', read(os.path.join(ROOT, "api", "routes.c")).decode())
    GET, POST, HEAD, OTHER = 0, 1, 2, 3
    calls = [
        (GET, "/health", "", None), (HEAD, "/model", "", None), (OTHER, "/svd", "block=0", None),
        (POST, "/tokenize", "", '{"text": "hello \\u00e9 <|endoftext|>"}'),
        (POST, "/probe", "", '{"block": 1, "words": ["cat", "dog"], "k": 2, "format": "csv"}'),
        (POST, "/trajectory", "k=1", '{"text": "The cat", "projection": "pca", "gelu": "tanh"}'),
        (POST, "/attention", "", '{"text": "a b c", "block": 1, "head": 0}'),
        (GET, "/svd", "block=1&matrix=both&top=3&k=2", None),
        (GET, "/svd/bias", "block=0&k=1", None),
        (GET, "/embeddings", "scheme=scaled_bias&k=4&format=json", None),
        (GET, "/umap/layout", "projection=umap", None),
        (GET, "/metrics", "", None), (GET, "/openapi.json", "", None), (GET, "/umap", "", None),
        (GET, "/embeddings/normalization", "format=json", None),
    ]
    # the same calls under the smallest (bits 2-3: 1) and largest (2) limits
    big = [(GET, "/probe", "block=0&k=100&words=" + ",".join(["the", "cat", "of", "and"] * 2), None),
           (POST, "/attention", "", '{"text": "%s", "block": 1, "head": 0}' % ("the cat sat on the mat " * 5)),
           (GET, "/svd", "block=1&top=16&k=64&head=1", None)]
    for i, (m, path, q, body) in enumerate(calls + big):
        data = bytes([m, routes.index(path)]) + q.encode()
        if body is not None:
            data += b"\n" + body.encode()
        for limits in (0, 1, 2):
            if limits and not (path in ("/probe", "/svd", "/trajectory", "/attention", "/tokenize")):
                continue
            put("api", "c%02d%s" % (i, ["", "_small", "_large"][limits]), bytes([data[0] | limits << 2]) + data[1:])
    subprocess.run(["rm", "-rf", tmp], check=True)


if __name__ == "__main__":
    main()
