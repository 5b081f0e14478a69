"""nanoGPT checkpoints written by real torch (issue 10): the same weights
saved as a Hugging Face snapshot and as nanoGPT's ckpt.pt (compiled and not,
vocabulary padded and not) give the same answers on every route, served side
by side by one daemon; a character-level bias=False model with its meta.pkl
answers every route in characters; corrupt archives stop start-up with one
line naming the file.

Needs Debian's python3-torch (scripts/deps.sh --test installs it).
"""
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import TWD, Daemon, stop_clean  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - the CI machine has it
    torch = None

TMP = tempfile.mkdtemp(prefix="twd-nanogpt-")
TOKENIZE = os.path.join(os.path.dirname(TWD), "..", "tools", "twd-tokenize")
L, H, C, T = 2, 2, 32, 64
V = 500          # the tokenizer's ids
V_PADDED = 512   # nanoGPT pads the vocabulary to a multiple of 64


def weights(vocab, bias=True, seed=7):
    """A GPT-2-architecture state dict in nanoGPT's names and layouts."""
    g = torch.Generator().manual_seed(seed)

    def n(*shape, sd=0.2, mean=0.0):
        return torch.randn(*shape, generator=g) * sd + mean

    sd = {"transformer.wte.weight": n(vocab, C), "transformer.wpe.weight": n(T, C, sd=0.1)}
    for i in range(L):
        p = "transformer.h.%d." % i
        sd[p + "ln_1.weight"] = n(C, mean=1.0)
        sd[p + "attn.c_attn.weight"] = n(3 * C, C)       # nn.Linear: (out, in)
        sd[p + "attn.c_proj.weight"] = n(C, C)
        sd[p + "ln_2.weight"] = n(C, mean=1.0)
        sd[p + "mlp.c_fc.weight"] = n(4 * C, C)
        sd[p + "mlp.c_proj.weight"] = n(C, 4 * C, sd=0.1)
        if bias:
            sd[p + "ln_1.bias"] = n(C, sd=0.1)
            sd[p + "attn.c_attn.bias"] = n(3 * C, sd=0.1)
            sd[p + "attn.c_proj.bias"] = n(C, sd=0.1)
            sd[p + "ln_2.bias"] = n(C, sd=0.1)
            sd[p + "mlp.c_fc.bias"] = n(4 * C, sd=0.1)
            sd[p + "mlp.c_proj.bias"] = n(C, sd=0.1)
        # the causal-mask buffer torch < 2.0 keeps
        sd[p + "attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    sd["transformer.ln_f.weight"] = n(C, mean=1.0)
    if bias:
        sd["transformer.ln_f.bias"] = n(C, sd=0.1)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: one storage
    return sd


def save_ckpt(path, sd, vocab, bias=True, compiled=False, dataset="synthetic"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model = {("_orig_mod." + k if compiled else k): v for k, v in sd.items()}
    # a real optimizer state, over copies (AdamW's weight decay would change the weights)
    params = [v.clone().requires_grad_() for k, v in sd.items() if not k.endswith(".attn.bias") and k != "lm_head.weight"]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.save({"model": model, "optimizer": opt.state_dict(),
                "model_args": dict(n_layer=L, n_head=H, n_embd=C, block_size=T, bias=bias, vocab_size=vocab,
                                   dropout=0.0),
                "iter_num": 1234, "best_val_loss": torch.tensor(2.5),
                "config": {"dataset": dataset, "batch_size": 8}}, path)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def save_hf(folder, sd, vocab):
    """The same weights as a Hugging Face snapshot: Conv1D (in, out) layout."""
    os.makedirs(folder, exist_ok=True)
    t = {}
    for k, v in sd.items():
        if k == "lm_head.weight" or k.endswith(".attn.bias"):
            continue
        k = k[len("transformer."):]
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        if k == "wte.weight":
            v = v[:vocab]
        t[k] = v
    write_safetensors(os.path.join(folder, "model.safetensors"), t)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2", "n_layer": L, "n_head": H, "n_embd": C, "n_positions": T,
                   "vocab_size": vocab, "layer_norm_epsilon": 1e-5}, f)


def synthetic_tokenizer(folder):
    subprocess.run([TOKENIZE, "--synthetic", str(V), "5", folder], check=True, stdout=subprocess.DEVNULL)


def close(test, a, b, path="$"):
    """Asserts two JSON answers equal: ids, texts and structure exactly, numbers
    to 1e-5 relative (the two layouts run different GEMM kernels)."""
    if isinstance(a, dict):
        test.assertEqual(sorted(a), sorted(b), path)
        for k in a:
            if k in ("model", "name", "source"):
                continue
            close(test, a[k], b[k], path + "." + k)
    elif isinstance(a, list):
        test.assertEqual(len(a), len(b), path)
        for i, (x, y) in enumerate(zip(a, b)):
            close(test, x, y, "%s[%d]" % (path, i))
    elif isinstance(a, float) or isinstance(b, float):
        test.assertLessEqual(abs(a - b), 1e-5 * (1 + abs(a)), path)
    else:
        test.assertEqual(a, b, path)


def setUpModule():
    if torch is None:
        return
    tok = os.path.join(TMP, "tok")
    synthetic_tokenizer(tok)
    sd = weights(V)
    save_hf(os.path.join(TMP, "hf"), sd, V)
    for d in ("hf",):
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tok, f), os.path.join(TMP, d, f))
    for name, compiled in (("nano", False), ("nano-compiled", True)):
        save_ckpt(os.path.join(TMP, name, "out", "ckpt.pt"), sd, V, compiled=compiled)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tok, f), os.path.join(TMP, name, "out", f))
    # the vocabulary padded to 512 rows: rows 500..511 are never tokens
    padded = weights(V_PADDED)
    for k in ("transformer.wte.weight",):
        padded[k][:V] = sd[k]
    for k in sd:
        if k != "transformer.wte.weight" and k != "lm_head.weight":
            padded[k] = sd[k]
    padded["lm_head.weight"] = padded["transformer.wte.weight"]
    save_ckpt(os.path.join(TMP, "nano-padded", "out", "ckpt.pt"), padded, V_PADDED)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tok, f), os.path.join(TMP, "nano-padded", "out", f))
    # a character-level bias=False model, its meta.pkl where nanoGPT puts it
    chars = sorted(set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    root = os.path.join(TMP, "nanogpt")
    save_ckpt(os.path.join(root, "out", "ckpt.pt"), weights(len(chars), bias=False, seed=9), len(chars),
              bias=False, dataset="shakespeare_char")
    os.makedirs(os.path.join(root, "data", "shakespeare_char"))
    with open(os.path.join(root, "data", "shakespeare_char", "meta.pkl"), "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                     "stoi": {c: i for i, c in enumerate(chars)}}, f)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


ROUTES = [
    "/embeddings?k=4",
    "/embeddings/normalization",
    "/probe?block=1&k=4&words=the,of,and,time",
    "/svd?block=0&top=3&k=3",
    "/svd?block=1&matrix=vo&top=2&k=3&head=1",
    "/svd/bias?block=1&k=3",
    "/trajectory?projection=pca&k=3&text=" + urllib.parse.quote("the time of the year"),
    "/attention?block=1&text=" + urllib.parse.quote("the time of the year"),
    "/tokenize?text=" + urllib.parse.quote("the people and the world"),
]


@unittest.skipUnless(torch, "python3-torch is not installed")
class SameWeightsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--model", os.path.join(TMP, "hf"), "--model", os.path.join(TMP, "nano"),
                       "--model", os.path.join(TMP, "nano-compiled", "out", "ckpt.pt"),
                       "--model", os.path.join(TMP, "nano-padded", "out")).start()

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.d)

    def test_models_listed(self):
        st, doc = self.d.get_json("/models")
        self.assertEqual(st, 200)
        names = [m["name"] for m in doc["models"]]
        self.assertEqual(names, ["hf", "nano", "nano-compiled", "nano-padded"])
        self.assertTrue(doc["models"][0]["default"])
        st, m = self.d.get_json("/model", model="nano-compiled")
        self.assertEqual((st, m["format"], m["nanogpt"]["compiled"], m["nanogpt"]["iter_num"]),
                         (200, "nanogpt", True, 1234))
        self.assertEqual(m["nanogpt"]["dataset"], "synthetic")
        st, m = self.d.get_json("/model", model="nano-padded")
        self.assertEqual((m["vocab_size"], m["vocab_rows"], m["padding_rows_excluded"]), (V, V_PADDED, 12))
        st, doc = self.d.get_json("/svd", model="gpt5", block=0)
        self.assertEqual(st, 400)
        self.assertIn("the models are: hf, nano, nano-compiled, nano-padded", doc["error"]["message"])

    def test_every_route_agrees(self):
        for route in ROUTES:
            answers = []
            for model in ("hf", "nano", "nano-compiled", "nano-padded"):
                sep = "&" if "?" in route else "?"
                st, _, body = self.d.request("GET", route + sep + "model=" + model)
                self.assertEqual(st, 200, (route, model, body[:300]))
                answers.append(json.loads(body))
            for other in answers[1:]:
                close(self, answers[0], other, route)

    def test_padding_rows_never_listed(self):
        st, doc = self.d.get_json("/embeddings", model="nano-padded", k=50)
        for scheme in doc["schemes"].values():
            for tok in scheme["top"] + scheme["bottom"]:
                self.assertLess(tok["id"], V)


@unittest.skipUnless(torch, "python3-torch is not installed")
class CharacterModelTest(unittest.TestCase):
    def test_every_route_in_characters(self):
        with Daemon("--model", os.path.join(TMP, "nanogpt", "out")) as d:
            st, m = d.get_json("/model")
            self.assertEqual((m["name"], m["tokenizer"], m["bias"]), ("nanogpt", "characters", False))
            st, doc = d.get_json("/tokenize", text="To be")
            self.assertEqual([t["text"] for t in doc["tokens"]], list("To be"))
            st, doc = d.get_json("/tokenize", text="To be #")
            self.assertEqual(st, 400)
            self.assertIn("'#'", doc["error"]["message"])
            st, doc = d.get_json("/probe", block=0, k=3)
            self.assertEqual(st, 200)
            self.assertGreater(len(doc["words"]), 40)  # the characters are the words
            self.assertTrue(all(len(w["word"]) == 1 for w in doc["words"]))
            for route in ROUTES[:8]:
                route = route.replace(urllib.parse.quote("the time of the year"), "To%20be%20or%20not")
                route = route.replace("words=the,of,and,time", "words=a,b,c,Z")
                st, _, body = d.request("GET", route)
                self.assertEqual(st, 200, (route, body[:300]))
            st, doc = d.get_json("/svd/bias", block=0, k=3)
            for h in doc["heads"]:
                self.assertTrue(all(t["score"] == 0 for t in h["a"]))  # no biases: a = 0


@unittest.skipUnless(torch, "python3-torch is not installed")
class CorruptArchiveTest(unittest.TestCase):
    def start_fails(self, path, *words):
        d = Daemon("--model", path, wait_ready=False).start()
        try:
            rc = d.proc.wait(60)
        finally:
            d.stop()
        self.assertEqual(rc, 1, d.stderr())
        lines = [l for l in d.stderr().splitlines() if "cannot load the model" in l]
        self.assertEqual(len(lines), 1, d.stderr())
        self.assertIn(path, lines[0])
        for w in words:
            self.assertIn(w, lines[0])

    def copy(self, name):
        src = os.path.join(TMP, "nano", "out", "ckpt.pt")
        dst = os.path.join(TMP, "bad", name, "ckpt.pt")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(src, dst)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(TMP, "nano", "out", f), os.path.dirname(dst))
        return dst

    def test_truncated(self):
        p = self.copy("truncated")
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) // 2)
        self.start_fails(p)

    def test_bad_crc(self):
        p = self.copy("crc")
        with open(p, "rb") as f:
            data = bytearray(f.read())
        i = data.find(b"data/0")  # the first storage's entry name; its bytes follow the local header
        data[i + 400] ^= 0xFF
        with open(p, "wb") as f:
            f.write(bytes(data))
        self.start_fails(p, "CRC")

    def test_pickle_that_runs_code_is_refused(self):
        import io
        import zipfile
        p = os.path.join(TMP, "bad", "evil", "ckpt.pt")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        marker = os.path.join(TMP, "bad", "evil", "pwned")
        evil = b"cposix\nsystem\n(V" + ("touch " + marker).encode() + b"\ntR."
        with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
            z.writestr("ckpt/data.pkl", evil)
            z.writestr("ckpt/version", "3\n")
        self.start_fails(p, "posix.system", "not allowed")
        self.assertFalse(os.path.exists(marker))


if __name__ == "__main__":
    unittest.main()
