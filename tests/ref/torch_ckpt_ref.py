#!/usr/bin/python3
"""core/model/torch_ckpt against real torch (run with /usr/bin/python3).

  torch_ckpt_ref.py check --driver BUILD/tools/twd-ckpt [--keep DIR]
  torch_ckpt_ref.py corpus --out DIR       (small seed files for tests/fuzz)

check writes, with torch itself, nanoGPT-style checkpoints into a temporary
folder (a small GPT with bias=True and bias=False, with and without the
torch.compile "_orig_mod." prefix, vocab 65 and 65 padded to 128, a trained
AdamW state with real tensors, best_val_loss a 0-dim tensor, saved to a path
(record folder = the file's stem) and to a file object (folder "archive")),
plus one with unusual tensors (a transposed view sharing wte's storage, a
slice with a storage offset, a stride-0 expand, F16/BF16/F64/int/bool
tensors, a 0-dim and an empty one, an nn.Parameter) and nanoGPT's meta.pkl.
It runs the C driver (twd-ckpt --verify --values) on each and compares every
tensor's name, order, dtype, shape, stride, storage offset, contiguity and
every value with torch.load, and model_args, config.dataset, iter_num and
best_val_loss.

Then hostile files, each of which must be refused (exit 1, one line
"<path>: ...", the expected words): pickles that call os.system through
GLOBAL (a __reduce__, as torch.save writes it) and STACK_GLOBAL (protocol
4), builtins.eval, a REDUCE of a storage class, INST, a meta.pkl calling
os.system; the legacy (non-zip) torch.save format; truncations of a valid
checkpoint; a flipped byte inside a storage (loads, but --verify fails).
Nothing is executed: the marker file the os.system pickles would create must
not exist at the end.

Exit 0 on success, 1 on a mismatch, 77 (skipped) when torch is not
importable.
"""
import argparse
import collections
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print(f"skip: torch is not importable ({e})")
    sys.exit(77)

# the 65 characters of nanoGPT's shakespeare_char data set
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
    torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


# ------------------------------------------------------------ a nanoGPT-shaped model
# Module and parameter names as in nanoGPT's model.py, so that state_dict()
# has the same keys and layouts (Linear weights (out, in); wte tied to
# lm_head; under torch < 2.0 the causal mask buffer attn.bias).

class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.n_head = a["n_head"]
        self.c_attn = nn.Linear(a["n_embd"], 3 * a["n_embd"], bias=a["bias"])
        self.c_proj = nn.Linear(a["n_embd"], a["n_embd"], bias=a["bias"])
        self.flash = hasattr(F, "scaled_dot_product_attention")
        if not self.flash:
            bs = a["block_size"]
            self.register_buffer("bias", torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (k.size(-1) ** 0.5)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.c_fc = nn.Linear(a["n_embd"], 4 * a["n_embd"], bias=a["bias"])
        self.c_proj = nn.Linear(4 * a["n_embd"], a["n_embd"], bias=a["bias"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.ln_1 = LayerNorm(a["n_embd"], a["bias"])
        self.attn = Attention(a)
        self.ln_2 = LayerNorm(a["n_embd"], a["bias"])
        self.mlp = MLP(a)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(a["vocab_size"], a["n_embd"]),
            wpe=nn.Embedding(a["block_size"], a["n_embd"]),
            drop=nn.Dropout(a["dropout"]),
            h=nn.ModuleList([Block(a) for _ in range(a["n_layer"])]),
            ln_f=LayerNorm(a["n_embd"], a["bias"]),
        ))
        self.lm_head = nn.Linear(a["n_embd"], a["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t))
        for b in self.transformer.h:
            x = b(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class Compiled(nn.Module):
    """What torch.compile wraps a model in: its state_dict keys get '_orig_mod.'."""

    def __init__(self, m):
        super().__init__()
        self._orig_mod = m


def train_checkpoint(seed, bias, vocab_size, compiled, n_layer=2, n_head=2, n_embd=32,
                     block_size=64, steps=2):
    """A checkpoint dict as nanoGPT's train.py saves it."""
    torch.manual_seed(seed)
    a = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
             bias=bias, vocab_size=vocab_size, dropout=0.0)
    model = GPT(a)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    nodecay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    for _ in range(steps):
        idx = torch.randint(0, vocab_size, (2, min(16, block_size)))
        loss = model(idx, torch.roll(idx, -1, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        val = model(idx, torch.roll(idx, -1, 1))
    raw = Compiled(model) if compiled else model
    config = dict(out_dir="out-shakespeare-char", eval_interval=250, dataset="shakespeare_char",
                  gradient_accumulation_steps=1, batch_size=64, block_size=block_size,
                  learning_rate=1e-3, max_iters=5000, dtype="bfloat16", compile=compiled)
    return {
        "model": raw.state_dict(),
        "optimizer": opt.state_dict(),
        "model_args": a,
        "iter_num": 250 * seed,
        "best_val_loss": val.detach(),      # a 0-dim tensor, as estimate_loss() gives
        "config": config,
    }


def odd_checkpoint():
    """Tensors of every layout the reader has to get right."""
    torch.manual_seed(7)
    ck = train_checkpoint(3, True, 65, False, n_layer=1, steps=1)
    sd = ck["model"]
    wte = sd["transformer.wte.weight"]
    sd["extra.wte_t"] = wte.t()                       # transposed view, same storage
    sd["extra.slice"] = wte[2:5, 1:7]                 # offset and row stride
    sd["extra.expand"] = torch.arange(4.0).view(1, 4).expand(3, 4)   # stride 0
    sd["extra.f16"] = torch.randn(3, 5).half()
    sd["extra.bf16"] = torch.randn(2, 3).bfloat16()
    sd["extra.f64"] = torch.randn(4).double()
    sd["extra.i64"] = torch.arange(-3, 9).view(3, 4)
    sd["extra.i32"] = torch.arange(6, dtype=torch.int32) - 2
    sd["extra.i16"] = torch.tensor([-300, 7, 300], dtype=torch.int16)
    sd["extra.i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["extra.u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["extra.bool"] = torch.tensor([True, False, True])
    sd["extra.scalar"] = torch.tensor(2.5)
    sd["extra.empty"] = torch.zeros(0, 3)
    sd["extra.special"] = torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0, 1e-45])
    sd["extra.param"] = nn.Parameter(torch.randn(2, 2))   # _rebuild_parameter
    sd["extra.nc4d"] = torch.randn(2, 3, 4, 5).permute(3, 1, 0, 2)
    return ck


def meta_dict(chars=SHAKESPEARE_CHARS):
    """As nanoGPT's data/shakespeare_char/prepare.py builds it."""
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    return {"vocab_size": len(chars), "itos": itos, "stoi": stoi}


# ------------------------------------------------------------ hostile files

class CallsSystem:
    """Pickles as os.system(cmd). Pickling only records the call; nothing runs."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def zip_with_pickle(path, data_pkl, prefix=None):
    """A torch-like archive around a hand-made data.pkl (stored entries)."""
    prefix = prefix or os.path.splitext(os.path.basename(path))[0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data_pkl)
        z.writestr(f"{prefix}/version", "3\n")


# ------------------------------------------------------------ comparison

def run(driver, *args):
    p = subprocess.run([driver, *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def same_value(a, b):
    """JSON value from the driver vs python value from torch."""
    if isinstance(b, bool):
        return a is b
    if isinstance(b, float):
        if b != b:
            return a == "nan"
        if b in (float("inf"), float("-inf")):
            return a == ("inf" if b > 0 else "-inf")
        return isinstance(a, float) and a == b and (str(a)[0] == "-") == (str(b)[0] == "-")
    return a == b


def compare_ckpt(driver, path, ck):
    rc, out, err = run(driver, "--verify", "--values", path)
    if rc != 0:
        fail(f"{path}: driver exit {rc}: {err.strip()}")
        return None
    j = json.loads(out)
    loaded = torch.load(path)
    sd = loaded["model"]
    names = []
    compiled = False
    for k in sd:
        if k.startswith("_orig_mod."):
            compiled = True
            k = k[len("_orig_mod."):]
        names.append(k)
    got_names = [t["name"] for t in j["tensors"]]
    if got_names != names:
        fail(f"{path}: tensor names/order differ: {got_names[:5]}... vs {names[:5]}...")
        return j
    if j["compiled"] != compiled:
        fail(f"{path}: compiled flag {j['compiled']} vs {compiled}")
    by_ptr = {}
    for t, (key, tt) in zip(j["tensors"], sd.items()):
        n = t["name"]
        want = dict(dtype=DTYPES[tt.dtype], shape=list(tt.shape), stride=list(tt.stride()),
                    storage_offset=tt.storage_offset(), contiguous=tt.is_contiguous(),
                    numel=tt.numel(), requires_grad=tt.requires_grad)
        for f, w in want.items():
            if t[f] != w:
                fail(f"{path}: {n}: {f} is {t[f]}, torch says {w}")
        vals = tt.detach()
        if vals.dtype in (torch.float16, torch.bfloat16):
            vals = vals.float()
        vals = vals.flatten().tolist()
        if len(vals) != len(t["values"]):
            fail(f"{path}: {n}: {len(t['values'])} values, torch has {len(vals)}")
            continue
        bad = [i for i, (a, b) in enumerate(zip(t["values"], vals)) if not same_value(a, b)]
        if bad:
            i = bad[0]
            fail(f"{path}: {n}: {len(bad)} values differ, "
                 f"first at {i}: {t['values'][i]} vs {vals[i]}")
        # tensors sharing a storage in torch share a storage key in C
        ptr = tt.storage().data_ptr()
        by_ptr.setdefault(ptr, set()).add(t["storage"])
    for ptr, keys in by_ptr.items():
        if len(keys) != 1:
            fail(f"{path}: one torch storage maps to storage keys {sorted(keys)}")
    if len(by_ptr) != j["n_storages"]:
        fail(f"{path}: {j['n_storages']} storages, torch has {len(by_ptr)}")
    # the rest of nanoGPT's checkpoint
    want_args = loaded.get("model_args", {})
    if j["model_args"] != want_args:
        fail(f"{path}: model_args {j['model_args']} vs {want_args}")
    if j["dataset"] != loaded.get("config", {}).get("dataset"):
        fail(f"{path}: dataset {j['dataset']!r}")
    if j["iter_num"] != loaded.get("iter_num"):
        fail(f"{path}: iter_num {j['iter_num']} vs {loaded.get('iter_num')}")
    bvl = loaded.get("best_val_loss")
    if bvl is not None and j["best_val_loss"] != float(bvl):
        fail(f"{path}: best_val_loss {j['best_val_loss']} vs {float(bvl)}")
    if j.get("crc") != "ok":
        fail(f"{path}: --verify did not report the CRCs ok")
    return j


def expect_refused(driver, path, words, *args):
    """The driver must exit 1 with one line '<path>: ...' containing words."""
    rc, out, err = run(driver, *args, path)
    line = err.rstrip("\n")
    ok = (rc == 1 and "\n" not in line and line.startswith(path + ": ")
          and all(w in line for w in words) and out == "")
    if not ok:
        fail(f"{os.path.basename(path)}: expected refusal with {words}, got exit {rc}: {err!r}")
    else:
        print(f"refused as expected: {line[len(os.path.dirname(path)) + 1:]}")
    return line


def entry_data_offset(path, name):
    """Absolute offset of a stored entry's data, from its local header."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        h = f.read(30)
    nlen = int.from_bytes(h[26:28], "little")
    elen = int.from_bytes(h[28:30], "little")
    return info.header_offset + 30 + nlen + elen, info.file_size


def save_as(ck, path, how):
    """torch.save to a path ("path": the record folder is named after the
    file) or to an open file ("fileobj": the folder is "archive")."""
    if how == "path":
        torch.save(ck, path)
    else:
        with open(path, "wb") as f:
            torch.save(ck, f)


def check(args):
    driver = os.path.abspath(args.driver)
    tmp = args.keep or tempfile.mkdtemp(prefix="twd-ckpt-ref-")
    os.makedirs(tmp, exist_ok=True)
    marker = os.path.join(tmp, "PWNED")
    try:
        # ---- valid checkpoints
        cases = {
            "bias.pt": (train_checkpoint(1, True, 65, False), "path"),
            "nobias_compiled.pt": (train_checkpoint(2, False, 128, True), "fileobj"),
            "bias_padded_compiled.pt": (train_checkpoint(4, True, 128, True), "path"),
            "odd.pt": (odd_checkpoint(), "fileobj"),
        }
        for name, (ck, how) in cases.items():
            p = os.path.join(tmp, name)
            save_as(ck, p, how)
            j = compare_ckpt(driver, p, ck)
            if j is not None:
                want_prefix = os.path.splitext(name)[0] if how == "path" else "archive"
                if j["prefix"] != want_prefix:
                    fail(f"{name}: record folder {j['prefix']!r}, expected {want_prefix!r}")
                print(f"{name}: {len(j['tensors'])} tensors, {j['n_storages']} storages, "
                      f"folder {j['prefix']!r}, version {j['format_version']}: same as torch.load")
        # a bare state dict saved on its own
        p = os.path.join(tmp, "state_dict.pt")
        torch.save(GPT(dict(n_layer=1, n_head=2, n_embd=8, block_size=8, bias=True,
                            vocab_size=16, dropout=0.0)).state_dict(), p)
        rc, out, err = run(driver, "--verify", p)
        if rc != 0 or not json.loads(out)["bare_state_dict"]:
            fail(f"state_dict.pt: exit {rc} {err.strip()}")

        # ---- meta.pkl
        mp = os.path.join(tmp, "meta.pkl")
        with open(mp, "wb") as f:
            pickle.dump(meta_dict(), f)
        rc, out, err = run(driver, "--meta", mp)
        if rc != 0:
            fail(f"meta.pkl: exit {rc}: {err.strip()}")
        else:
            j = json.loads(out)
            if j["vocab_size"] != 65 or j["itos"] != list(SHAKESPEARE_CHARS) or not j["lookup_ok"]:
                fail(f"meta.pkl: dump differs: {j}")
            else:
                print("meta.pkl: vocab 65, itos and stoi as pickle wrote them")
        for proto in (0, 2, 5):
            mp2 = os.path.join(tmp, f"meta_p{proto}.pkl")
            with open(mp2, "wb") as f:
                pickle.dump(meta_dict("abc\u00e9\u4e2d"), f, protocol=proto)
            rc, out, err = run(driver, "--meta", mp2)
            if proto == 0:
                # protocol 0 writes text opcodes (UNICODE), which are refused
                if rc != 1 or "not supported" not in err:
                    fail(f"meta protocol 0: exit {rc}: {err.strip()}")
            elif rc != 0 or json.loads(out)["itos"] != list("abc\u00e9\u4e2d"):
                fail(f"meta protocol {proto}: exit {rc}: {err.strip()} {out[:200]}")

        # ---- hostile files: nothing may run
        evil = CallsSystem(f"touch {marker}")
        p = os.path.join(tmp, "evil_reduce.pt")
        torch.save({"model": {"x": evil}}, p)       # GLOBAL 'posix system' + REDUCE
        expect_refused(driver, p, ["pickle: global 'posix.system' is not allowed", "GLOBAL"])
        p = os.path.join(tmp, "evil_stack_global.pt")
        zip_with_pickle(p, pickle.dumps({"model": evil}, protocol=4))
        expect_refused(driver, p, ["pickle: global 'posix.system' is not allowed", "STACK_GLOBAL"])
        for name, pkl, msg in (
                ("evil_eval.pt", b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.",
                 "pickle: global 'builtins.eval' is not allowed"),
                ("evil_os.pt", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.",
                 "pickle: global 'os.system' is not allowed"),
                ("evil_inst.pt", b"(X\x04\x00\x00\x00trueios\nsystem\n.", "INST of 'os.system' is not allowed"),
                ("reduce_storage.pt", b"\x80\x02ctorch\nFloatStorage\n)R.",
                 "calling 'torch.FloatStorage' is not allowed")):
            p = os.path.join(tmp, name)
            zip_with_pickle(p, pkl)
            expect_refused(driver, p, [msg])
        p = os.path.join(tmp, "evil_meta.pkl")
        with open(p, "wb") as f:
            pickle.dump({"vocab_size": 1, "itos": {0: evil}, "stoi": {}}, f)
        expect_refused(driver, p, ["global 'posix.system' is not allowed"], "--meta")
        p = os.path.join(tmp, "torch_in_meta.pkl")
        with open(p, "wb") as f:
            f.write(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.")
        expect_refused(driver, p, ["global 'torch._utils._rebuild_tensor_v2' is not allowed"],
                       "--meta")

        # ---- the legacy format, truncations, a flipped byte
        p = os.path.join(tmp, "legacy.pt")
        torch.save({"model": {"w": torch.ones(2)}}, p, _use_new_zipfile_serialization=False)
        expect_refused(driver, p, ["legacy torch.save format"])
        good = os.path.join(tmp, "bias.pt")
        data = open(good, "rb").read()
        for cut in sorted({1, 21, len(data) // 3, len(data) // 2, len(data) - 23, len(data) - 1}):
            p = os.path.join(tmp, f"truncated_{cut}.pt")
            with open(p, "wb") as f:
                f.write(data[:cut])
            expect_refused(driver, p, [])
        p = os.path.join(tmp, "empty.pt")
        open(p, "wb").close()
        expect_refused(driver, p, ["empty"])
        # a byte flipped inside the storage of transformer.h.0.attn.c_attn.weight
        rc, out, _ = run(driver, good)
        key = {t["name"]: t["storage"] for t in json.loads(out)["tensors"]}
        target = "transformer.h.0.attn.c_attn.weight"
        off, size = entry_data_offset(good, f"bias/data/{key[target]}")
        flipped = bytearray(data)
        flipped[off + size // 2] ^= 0x40
        p = os.path.join(tmp, "flipped.pt")
        with open(p, "wb") as f:
            f.write(flipped)
        rc, out, err = run(driver, p)
        if rc != 0:
            fail(f"flipped.pt must load without --verify: {err.strip()}")
        expect_refused(driver, p, [f"tensor '{target}'", "CRC-32"], "--verify")
        # a directory and a FIFO are refused without blocking
        expect_refused(driver, tmp, ["not a regular file"])
        fifo = os.path.join(tmp, "fifo.pt")
        os.mkfifo(fifo)
        expect_refused(driver, fifo, ["not a regular file"])

        if os.path.exists(marker):
            fail("the os.system pickle ran: the marker file exists")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    n_fail = len(failures)
    print(f"{'FAILED' if n_fail else 'OK'}: {n_fail} failure(s)")
    return 1 if n_fail else 0


def corpus(args):
    """Small valid files for the fuzzers' seed corpora."""
    zdir = os.path.join(args.out, "zip")
    pdir = os.path.join(args.out, "pickle")
    os.makedirs(zdir, exist_ok=True)
    os.makedirs(pdir, exist_ok=True)
    ck = train_checkpoint(5, True, 8, False, n_layer=1, n_head=1, n_embd=4, block_size=4, steps=1)
    ck2 = train_checkpoint(6, False, 8, True, n_layer=1, n_head=1, n_embd=4, block_size=4, steps=1)
    for name, c, how in (("tiny_bias.pt", ck, "path"), ("tiny_compiled.pt", ck2, "fileobj")):
        p = os.path.join(zdir, name)
        save_as(c, p, how)
        with zipfile.ZipFile(p) as z:
            pk = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            with open(os.path.join(pdir, name.replace(".pt", "_data.pkl")), "wb") as f:
                f.write(z.read(pk))
    with open(os.path.join(pdir, "meta.pkl"), "wb") as f:
        pickle.dump(meta_dict(), f)
    with open(os.path.join(pdir, "meta_small_p2.pkl"), "wb") as f:
        pickle.dump(meta_dict("ab\n"), f, protocol=2)
    with open(os.path.join(pdir, "odict_p5.pkl"), "wb") as f:
        pickle.dump(collections.OrderedDict(a=[1, 2.5, None, True], b=(b"x", -2**40, "\u00e9")),
                    f, protocol=5)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--driver", required=True)
    c.add_argument("--keep", help="write the files into DIR and keep them")
    k = sub.add_parser("corpus")
    k.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.exit(check(args) if args.cmd == "check" else corpus(args))


if __name__ == "__main__":
    main()
