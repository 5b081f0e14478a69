#!/usr/bin/python3
"""Trains twd's offline demo model: a small GPT-2-architecture model on the
King James Bible, with the real GPT-2 tokenizer and vocabulary.

    /usr/bin/python3 tools/demo-model/train.py            # the committed run
    /usr/bin/python3 tools/demo-model/train.py --out DIR --set train.steps=200 ...
    /usr/bin/python3 tools/demo-model/train.py --eval-only [--out DIR]

Everything the run depends on is in settings.json beside this file (or the
file given with --settings); --set KEY.PATH=JSON overrides one entry, for
pilot runs. The run

  1. reads the KJV text with Debian's `bible` reader (package bible-kjv, text
     from bible-kjv-text), strips the verse references, and joins the verses
     of each chapter into one paragraph;
  2. holds out every heldout_every-th chapter (counted from Genesis 1 over
     the whole Bible, starting at heldout_offset) for evaluation; the model
     never trains on them;
  3. encodes both parts with GPT-2's byte-level BPE (bpe.py, over the
     encoder.json and vocab.bpe of the artifact folder);
  4. trains GPT-2 (model class below) from scratch on CPU, logging the
     training loss and the held-out loss;
  5. writes the artifact folder (config.json, model.safetensors in F16 with
     Hugging Face names and Conv1D orientation), train_log.json and eval.json.

Run under `nice -n 10`: the machine's two cores are shared.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import platform
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import kjv  # noqa: E402

ARTIFACT = os.path.join(HERE, "twd-demo")
WORK = os.path.join(HERE, ".work")
CORPUS_NAME = "King James Bible (Debian bible-kjv-text)"


# --------------------------------------------------------------- settings

def load_settings(path, overrides):
    with open(path) as f:
        s = json.load(f)
    for item in overrides:
        key, _, value = item.partition("=")
        node = s
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        if parts[-1] not in node:
            raise SystemExit("--set %s: no such setting" % key)
        node[parts[-1]] = json.loads(value)
    return s


# ----------------------------------------------------------------- corpus


def split_corpus(settings):
    """(train_text, heldout_text, heldout_refs) of the KJV."""
    c = settings["corpus"]
    chapters = kjv.chapters()
    train, held, refs = [], [], []
    for i, (book, num, verses) in enumerate(chapters):
        text = c["verse_separator"].join(verses)
        if i % c["heldout_every"] == c["heldout_offset"]:
            held.append(text)
            refs.append("%s %d" % (book, num))
        else:
            train.append(text)
    sep = c["chapter_separator"]
    return sep.join(train) + sep, sep.join(held) + sep, refs


def tokenized_corpus(settings):
    """(train_ids, heldout_ids, heldout_refs, corpus_stats); cached in .work/."""
    enc_json = os.path.join(ARTIFACT, "encoder.json")
    vocab_bpe = os.path.join(ARTIFACT, "vocab.bpe")
    train_text, held_text, refs = split_corpus(settings)
    h = hashlib.sha256()
    for part in (train_text, held_text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    for p in (enc_json, vocab_bpe):
        with open(p, "rb") as f:
            h.update(f.read())
    key = h.hexdigest()[:16]
    cache = os.path.join(WORK, "corpus-%s.npz" % key)
    if os.path.exists(cache):
        z = np.load(cache)
        train_ids, held_ids = z["train"], z["heldout"]
    else:
        enc = bpe.Encoder(enc_json, vocab_bpe)
        train_ids = np.array(enc.encode(train_text), dtype=np.int32)
        held_ids = np.array(enc.encode(held_text), dtype=np.int32)
        os.makedirs(WORK, exist_ok=True)
        np.savez(cache, train=train_ids, heldout=held_ids)
    stats = {
        "train_chapters": 1189 - len(refs),
        "heldout_chapters": len(refs),
        "train_bytes": len(train_text.encode("utf-8")),
        "heldout_bytes": len(held_text.encode("utf-8")),
        "train_tokens": int(train_ids.size),
        "heldout_tokens": int(held_ids.size),
        "distinct_train_tokens": int(np.unique(train_ids).size),
        "sha256_prefix": key,
    }
    return train_ids, held_ids, refs, stats


# ------------------------------------------------------------------ model

def gelu_tanh(x):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class Attention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d, 3 * d)   # stored (out, in); exported transposed
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.n_head
        q, k, v = self.c_attn(x).split(D, dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)
        scores = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(hd))
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        y = scores.softmax(dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(gelu_tanh(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d, n_head, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, n_head)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2: token + learned position embeddings, pre-LN blocks, final
    LayerNorm, and logits against the token embedding itself (tied head)."""

    def __init__(self, m):
        super().__init__()
        d = m["n_embd"]
        self.wte = nn.Embedding(m["vocab_size"], d)
        self.wpe = nn.Embedding(m["n_ctx"], d)
        self.h = nn.ModuleList(Block(d, m["n_head"], m["layer_norm_epsilon"])
                               for _ in range(m["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=m["layer_norm_epsilon"])
        self.reset(m)

    def reset(self, m):
        std = m["init_std"]
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            elif name == "wpe.weight":
                nn.init.normal_(p, 0.0, m["init_std_wpe"])
            elif name.endswith("c_proj.weight"):   # residual outputs, as GPT-2
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * m["n_layer"]))
            else:
                nn.init.normal_(p, 0.0, std)

    def residuals(self, idx, wte=None):
        """[x_0, x_1, ..., x_L]: the residual stream before and after each block.
        wte: the token embedding table to look idx up in (default self.wte)."""
        T = idx.shape[1]
        table = self.wte.weight if wte is None else wte
        x = F.embedding(idx, table) + self.wpe(torch.arange(T, device=idx.device))
        out = [x]
        for block in self.h:
            x = block(x)
            out.append(x)
        return out

    def lens(self, x):
        """Logit lens: LN_f(x) E^T."""
        return self.ln_f(x) @ self.wte.weight.t()

    def forward(self, idx):
        return self.lens(self.residuals(idx)[-1])


class SplitVocab(nn.Module):
    """The training-time form of the tied embedding when train.softmax is
    "split". The loss is still the cross-entropy of the full softmax over all
    vocab_size tokens; only its cost changes.

    Of GPT-2's 50,257 tokens, the KJV training text uses under 10,000. The
    rows of the others are never looked up as inputs and never a target; in
    the full softmax they only add exp(h . e_u) to the partition function.
    Here each such row is e_u = n_u + shift: n_u its independent random
    initial value (kept fixed, no weight decay) and shift a vector shared by
    all of them, zero and fixed when unused_rows is "frozen" (the committed
    setting: such tokens keep their small random initial embeddings, as
    plain SGD would leave them), trained when it is "shift" (what Adam does
    to them in a full-softmax run: it moves all of them together, far along
    one direction, and they then crowd every dot-product ranking of the
    vocabulary). Because the n_u are K independent Gaussian draws never
    fitted to anything, their log-partition has a closed form, exact up to a
    relative error of about sqrt((exp(h'Sh) - 1) / K) (~1e-3 here):

        log sum_u exp(h . e_u) = log K + h . (mean(n) + shift) + h' S h / 2,

    S the covariance of the n_u. The used rows get the ordinary exact
    logits. write_back() puts the rows in place in the model's wte, so the
    exported model and every evaluation are a plain GPT-2 with its full
    softmax."""

    def __init__(self, model, used_ids, unused_rows="frozen"):
        super().__init__()
        if unused_rows not in ("frozen", "shift"):
            raise SystemExit("train.unused_rows must be \"frozen\" or \"shift\"")
        w = model.wte.weight.detach()
        V, d = w.shape
        used = torch.as_tensor(np.unique(used_ids), dtype=torch.long)
        free = torch.ones(V, dtype=torch.bool)
        free[used] = False
        unused = free.nonzero().squeeze(1)
        compact = torch.full((V,), -1, dtype=torch.long)
        compact[used] = torch.arange(used.numel())
        noise = w[unused].clone()
        mu = noise.mean(0)
        centred = noise - mu
        self.register_buffer("used", used)
        self.register_buffer("unused", unused)
        self.register_buffer("compact", compact)
        self.register_buffer("noise", noise)
        self.register_buffer("mu", mu)
        self.register_buffer("cov", centred.t() @ centred / unused.numel())
        self.log_k = math.log(unused.numel())
        self.wte_used = nn.Parameter(w[used].clone())
        self.shift = nn.Parameter(torch.zeros(d), requires_grad=unused_rows == "shift")

    def loss(self, model, x, y):
        """Mean full-softmax cross-entropy of next tokens y after inputs x
        (both GPT-2 ids, all of them used ones)."""
        xc, yc = self.compact[x], self.compact[y]
        hf = model.ln_f(model.residuals(xc, wte=self.wte_used)[-1]).flatten(0, 1)
        logits = hf @ self.wte_used.t()
        log_z_unused = (self.log_k + hf @ (self.mu + self.shift)
                        + 0.5 * ((hf @ self.cov) * hf).sum(-1))
        return F.cross_entropy(torch.cat([logits, log_z_unused[:, None]], 1), yc.flatten())

    @torch.no_grad()
    def write_back(self, model):
        model.wte.weight[self.used] = self.wte_used
        model.wte.weight[self.unused] = self.noise + self.shift


def param_count(model):
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------- evaluation

def windows(ids, T):
    """Non-overlapping (input, target) windows of length T covering ids."""
    n = (ids.size - 1) // T
    x = torch.from_numpy(ids[:n * T].astype(np.int64)).view(n, T)
    y = torch.from_numpy(ids[1:n * T + 1].astype(np.int64)).view(n, T)
    return x, y


@torch.no_grad()
def heldout_loss(model, ids, T, batch):
    model.eval()
    x, y = windows(ids, T)
    total, count = 0.0, 0
    for i in range(0, x.shape[0], batch):
        logits = model(x[i:i + batch])
        total += F.cross_entropy(logits.flatten(0, 1), y[i:i + batch].flatten(),
                                 reduction="sum").item()
        count += y[i:i + batch].numel()
    model.train()
    return total / count


@torch.no_grad()
def full_eval(model, ids, T, batch, unigram_top):
    """Loss and top-1/top-5 accuracy of the logit lens of every layer."""
    model.eval()
    x, y = windows(ids, T)
    L = len(model.h)
    loss = [0.0] * (L + 1)
    top1 = [0] * (L + 1)
    top5 = [0] * (L + 1)
    count = 0
    uni1 = uni5 = 0
    for i in range(0, x.shape[0], batch):
        xs, ys = x[i:i + batch], y[i:i + batch].flatten()
        for layer, res in enumerate(model.residuals(xs)):
            logits = model.lens(res).flatten(0, 1)
            loss[layer] += F.cross_entropy(logits, ys, reduction="sum").item()
            best = logits.topk(5, dim=-1).indices
            top1[layer] += (best[:, 0] == ys).sum().item()
            top5[layer] += (best == ys[:, None]).any(dim=1).sum().item()
        count += ys.numel()
        uni1 += (ys == unigram_top[0]).sum().item()
        uni5 += torch.isin(ys, torch.tensor(unigram_top[:5])).sum().item()
    model.train()
    per_layer = [{"layer": layer, "loss": loss[layer] / count,
                  "top1": top1[layer] / count, "top5": top5[layer] / count}
                 for layer in range(L + 1)]
    return count, per_layer, uni1 / count, uni5 / count


def unigram(train_ids, vocab_size):
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
    order = np.argsort(-counts, kind="stable")
    return counts, [int(t) for t in order[:5]]


def unigram_loss(counts, held_ids):
    """Held-out cross-entropy of the add-one-smoothed training unigram."""
    p = (counts + 1.0) / (counts.sum() + counts.size)
    return float(-np.log(p[held_ids[1:]]).mean())


# ----------------------------------------------------------------- export

def hf_tensors(model):
    """HF GPT-2 names -> float32 numpy arrays in Conv1D (in, out) layout."""
    out = {}
    for name, p in model.state_dict().items():
        a = p.detach().cpu().float().numpy()
        if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name):
            a = a.T     # nn.Linear (out, in) -> Conv1D (in, out)
        out[name] = np.ascontiguousarray(a)
    return out


def write_safetensors(path, tensors, dtype="F16"):
    """safetensors: u64 LE header length, JSON header (padded with spaces to
    a multiple of 8), then the tensors' little-endian bytes back to back."""
    np_type = {"F16": "<f2", "F32": "<f4"}[dtype]
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if dtype == "F16" and np.abs(a).max() >= 65504:
            raise SystemExit("%s: value out of F16 range" % name)
        b = a.astype(np_type).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """name -> float32 numpy array (F16 and F32 only)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = {"F16": "<f2", "F32": "<f4"}[info["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=t).astype(np.float32) \
            .reshape(info["shape"])
    return out


def load_artifact(folder, m):
    """A GPT2 module with the weights of an artifact folder."""
    model = GPT2(m)
    state = {}
    for name, a in read_safetensors(os.path.join(folder, "model.safetensors")).items():
        if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name):
            a = a.T
        state[name] = torch.from_numpy(np.ascontiguousarray(a))
    model.load_state_dict(state, strict=True)
    return model


def write_config(folder, s):
    m = s["model"]
    cfg = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": m["n_layer"],
        "n_head": m["n_head"],
        "n_embd": m["n_embd"],
        "n_positions": m["n_ctx"],
        "n_ctx": m["n_ctx"],
        "n_inner": None,
        "vocab_size": m["vocab_size"],
        "layer_norm_epsilon": m["layer_norm_epsilon"],
        "activation_function": "gelu_new",
        "initializer_range": m["init_std"],
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
        "torch_dtype": "float16",
        "twd_demo": True,
        "twd_corpus": CORPUS_NAME,
        "twd_default_phrase": s["export"]["default_phrase"],
        "twd_trained_by": "tools/demo-model/train.py",
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------- training

def progress(step, elapsed, t):
    """How far the run is, 0..1: by steps, or by wall time when schedule_by
    is "time" (the machine is shared, so its speed varies: the run then
    takes time_budget_minutes, with as many steps as fit, at most steps)."""
    p = step / t["steps"]
    if t["schedule_by"] == "time":
        p = max(p, elapsed / (60.0 * t["time_budget_minutes"]))
    return min(1.0, p)


def lr_at(step, p, p_warm, t):
    """Linear warm-up to lr over warmup_steps, then cosine down to min_lr at
    progress 1 (p_warm: the progress when the warm-up ended)."""
    if step < t["warmup_steps"]:
        return t["lr"] * (step + 1) / t["warmup_steps"]
    frac = (p - p_warm) / max(1e-9, 1.0 - p_warm)
    return t["min_lr"] + 0.5 * (t["lr"] - t["min_lr"]) * (1.0 + math.cos(math.pi * min(1.0, frac)))


def make_optimizer(model, t, split=None):
    params = [p for n, p in model.named_parameters() if split is None or n != "wte.weight"]
    if split is not None:
        params += [p for p in (split.wte_used, split.shift) if p.requires_grad]
    decay = [p for p in params if p.dim() == 2]
    keep = [p for p in params if p.dim() != 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                              {"params": keep, "weight_decay": 0.0}],
                             lr=t["lr"], betas=tuple(t["betas"]), eps=t["eps"])


def predict_after(model, enc, phrase, k=5):
    ids = enc.encode(phrase)
    with torch.no_grad():
        model.eval()
        logits = model(torch.tensor([ids]))[0, -1]
        model.train()
    p = logits.softmax(-1)
    top = p.topk(k)
    return [{"id": int(i), "token": enc.decode([int(i)]), "p": round(float(v), 4)}
            for v, i in zip(top.values, top.indices)]


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def train(s, out, log_path, eval_path):
    t = s["train"]
    m = s["model"]
    torch.manual_seed(s["seed"])
    rng = np.random.default_rng(s["seed"])
    train_ids, held_ids, refs, stats = tokenized_corpus(s)
    print("corpus: %(train_tokens)d train tokens in %(train_chapters)d chapters, "
          "%(heldout_tokens)d held-out tokens in %(heldout_chapters)d chapters" % stats,
          flush=True)

    model = GPT2(m)
    split = None
    if t["softmax"] == "split":
        split = SplitVocab(model, train_ids, t["unused_rows"])
    elif t["softmax"] != "full":
        raise SystemExit("train.softmax must be \"full\" or \"split\"")
    opt = make_optimizer(model, t, split)
    B, T = t["batch_size"], t["seq_len"]
    if T > m["n_ctx"]:
        raise SystemExit("seq_len %d > n_ctx %d" % (T, m["n_ctx"]))
    print("model: %d layers, %d heads, width %d, context %d: %d parameters"
          % (m["n_layer"], m["n_head"], m["n_embd"], m["n_ctx"], param_count(model)),
          flush=True)

    log = {"settings": s, "corpus": stats, "heldout_chapters": refs, "points": []}
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.time()
    run_loss, run_n, stopped_early, step_time = 0.0, 0, False, 0.0
    loss0 = heldout_loss(model, held_ids, T, 16)
    log["points"].append({"step": 0, "tokens": 0, "elapsed_s": 0.0, "lr": 0.0,
                          "train_loss": None, "heldout_loss": round(loss0, 4)})
    high = train_ids.size - T - 1
    if t["schedule_by"] not in ("steps", "time"):
        raise SystemExit("train.schedule_by must be \"steps\" or \"time\"")
    p_warm, p = None, 0.0
    for step in range(t["steps"]):
        p = progress(step, time.time() - t0, t)
        if p >= 1.0:
            break
        if step == t["warmup_steps"]:
            p_warm = p
        lr = lr_at(step, p, p_warm, t)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, high + 1, size=B)
        x = torch.from_numpy(np.stack([train_ids[a:a + T] for a in starts]).astype(np.int64))
        y = torch.from_numpy(np.stack([train_ids[a + 1:a + T + 1] for a in starts])
                             .astype(np.int64))
        ts = time.time()
        if split is None:
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        else:
            loss = split.loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                       t["grad_clip"])
        opt.step()
        step_time += time.time() - ts
        run_loss += loss.item()
        run_n += 1
        done = step + 1
        elapsed = time.time() - t0
        over_time = elapsed > 60 * t["max_minutes"]
        last = done == t["steps"] or over_time or progress(done, elapsed, t) >= 1.0
        if done % t["log_every"] == 0 or last:
            point = {"step": done, "tokens": done * B * T, "elapsed_s": round(elapsed, 1),
                     "lr": lr, "train_loss": round(run_loss / run_n, 4), "heldout_loss": None}
            if done % t["eval_every"] == 0 or last:
                if split is not None:
                    split.write_back(model)
                point["heldout_loss"] = round(heldout_loss(model, held_ids, T, 16), 4)
            log["points"].append(point)
            print("step %5d  lr %.2e  train %.4f  held-out %s  %.0f tok/s  %.1f min"
                  % (done, lr, point["train_loss"], point["heldout_loss"],
                     done * B * T / step_time, elapsed / 60), flush=True)
            run_loss, run_n = 0.0, 0
            with open(log_path, "w") as f:
                json.dump(log, f, indent=1)
        if over_time:
            stopped_early = True
            print("stopping: over max_minutes", flush=True)
            break
    if split is not None:
        split.write_back(model)
    wall = time.time() - t0
    log["wall_time_s"] = round(wall, 1)
    log["step_time_s"] = round(step_time, 1)
    log["steps_done"] = done
    log["stopped_early"] = stopped_early
    log["machine"] = machine()
    log["epochs"] = round(done * B * T / stats["train_tokens"], 3)
    with open(log_path, "w") as f:
        json.dump(log, f, indent=1)

    os.makedirs(out, exist_ok=True)
    tensors = hf_tensors(model)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors, s["export"]["dtype"])
    os.makedirs(WORK, exist_ok=True)   # the float32 weights, for verify.py (not committed)
    write_safetensors(os.path.join(WORK, os.path.basename(out) + "-fp32.safetensors"),
                      tensors, "F32")
    write_config(out, s)
    print("wrote %s in %.1f min" % (out, wall / 60), flush=True)
    evaluate(s, out, eval_path, log, model)


def evaluate(s, out, eval_path, log=None, fp32_model=None):
    """Evaluates the exported (F16) weights; writes eval_path."""
    m, t = s["model"], s["train"]
    train_ids, held_ids, refs, stats = tokenized_corpus(s)
    model = load_artifact(out, m)
    enc = bpe.Encoder(os.path.join(ARTIFACT, "encoder.json"), os.path.join(ARTIFACT, "vocab.bpe"))
    counts, top = unigram(train_ids, m["vocab_size"])
    n, layers, uni1, uni5 = full_eval(model, held_ids, t["seq_len"], 16, top)
    # the same amount of training text, for comparison (over-fitting check)
    train_sample = train_ids[:held_ids.size]
    train_sample_loss = heldout_loss(model, train_sample, t["seq_len"], 16)
    last = layers[-1]
    phrase = s["export"]["default_phrase"]
    res = {
        "weights": os.path.relpath(os.path.join(out, "model.safetensors"), HERE),
        "weights_dtype": s["export"]["dtype"],
        "parameters": param_count(model),
        "heldout": {
            "definition": "chapters i (0-based over the 1189 chapters, Genesis 1 = 0) "
                          "with i %% %d == %d" % (s["corpus"]["heldout_every"],
                                                 s["corpus"]["heldout_offset"]),
            "chapters": refs,
            "tokens_scored": n,
            "windows": "non-overlapping windows of %d tokens" % t["seq_len"],
        },
        "heldout_loss": round(last["loss"], 4),
        "heldout_perplexity": round(math.exp(last["loss"]), 2),
        "top1": round(last["top1"], 4),
        "top5": round(last["top5"], 4),
        "train_sample_loss": round(train_sample_loss, 4),
        "train_sample": "the first %d training tokens (Genesis 1 on), same windows" % held_ids.size,
        "baselines": {
            "chance_loss": round(math.log(m["vocab_size"]), 4),
            "chance_top1": 1.0 / m["vocab_size"],
            "chance_top5": 5.0 / m["vocab_size"],
            "unigram_loss": round(unigram_loss(counts, held_ids), 4),
            "unigram_top1": round(uni1, 4),
            "unigram_top5": round(uni5, 4),
            "unigram_top_tokens": [enc.decode([i]) for i in top],
        },
        "logit_lens_by_layer": [{k: (round(v, 4) if isinstance(v, float) else v)
                                 for k, v in d.items()} for d in layers],
        "default_phrase": phrase,
        "default_phrase_next": predict_after(model, enc, phrase),
    }
    if log is not None:
        res["wall_time_s"] = log["wall_time_s"]
        res["steps"] = log["steps_done"]
        res["epochs"] = log["epochs"]
        res["machine"] = log["machine"]
    if fp32_model is not None:
        res["heldout_loss_fp32_weights"] = round(
            heldout_loss(fp32_model, held_ids, t["seq_len"], 16), 4)
    elif os.path.exists(eval_path):
        with open(eval_path) as f:
            old = json.load(f)
        for k in ("wall_time_s", "steps", "epochs", "machine", "heldout_loss_fp32_weights",
                  "script_wall_time_s"):
            if k in old:
                res[k] = old[k]
    with open(eval_path, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(json.dumps({k: res[k] for k in ("heldout_loss", "heldout_perplexity", "top1", "top5",
                                          "train_sample_loss", "baselines",
                                          "default_phrase_next")}, indent=1), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=os.path.join(HERE, "settings.json"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override one setting, e.g. --set model.n_embd=192")
    ap.add_argument("--out", default=ARTIFACT, help="artifact folder (default twd-demo/)")
    ap.add_argument("--log", help="training log (default train_log.json beside train.py, "
                                  "or DIR/train_log.json with --out DIR)")
    ap.add_argument("--eval", help="evaluation output (default eval.json, as --log)")
    ap.add_argument("--eval-only", action="store_true",
                    help="evaluate the weights already in --out")
    a = ap.parse_args()
    s = load_settings(a.settings, a.set)
    torch.set_num_threads(s["threads"])
    out = os.path.abspath(a.out)
    base = HERE if out == ARTIFACT else out
    log_path = a.log or os.path.join(base, "train_log.json")
    eval_path = a.eval or os.path.join(base, "eval.json")
    t0 = time.time()
    if a.eval_only:
        write_config(out, s)   # config.json follows settings.json (e.g. the default phrase)
        evaluate(s, out, eval_path)
    else:
        train(s, out, log_path, eval_path)
        with open(eval_path) as f:
            res = json.load(f)
        res["script_wall_time_s"] = round(time.time() - t0, 1)
        with open(eval_path, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    print("done in %.1f min" % ((time.time() - t0) / 60))


if __name__ == "__main__":
    main()
