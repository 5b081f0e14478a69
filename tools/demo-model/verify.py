#!/usr/bin/python3
"""Checks the demo artifact against twd's own C code.

    /usr/bin/python3 tools/demo-model/verify.py [--build build] [--model DIR]

1. Tokenizer: encodes a held-out sentence (and the whole held-out text) with
   bpe.py and with build/tools/twd-tokenize; the ids must be identical.
2. Forward pass: runs build/tools/twd-forward --logits all --json on the
   sentence and compares its logits with the torch model of train.py
   loaded from the same model.safetensors (F16 weights, float32 maths):
   the top-1 token at every position must agree and the largest logit
   difference must be below 1e-3. When the float32 weights of the run are
   in .work/ (train.py leaves them there), also reports how far the F16
   export moved the logits.
Writes the figures to tools/demo-model/verify.json; exit 1 on a failure.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import train  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=train.ARTIFACT)
    ap.add_argument("--settings", default=os.path.join(HERE, "settings.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "verify.json"))
    a = ap.parse_args()
    s = train.load_settings(a.settings, [])
    torch.set_num_threads(s["threads"])
    model_dir = os.path.abspath(a.model)
    enc = bpe.Encoder(os.path.join(model_dir, "encoder.json"), os.path.join(model_dir, "vocab.bpe"))
    _, held_text, refs = train.split_corpus(s)
    # the first sentence of the first held-out chapter
    sentence = held_text.split("\n")[0].split(". ")[0] + "."
    ids = enc.encode(sentence)
    fails = []

    tok = subprocess.run([os.path.join(a.build, "tools", "twd-tokenize"), model_dir],
                         input=held_text, capture_output=True, text=True, check=True)
    c_ids = [int(t) for t in tok.stdout.split()]
    if c_ids != enc.encode(held_text):
        fails.append("twd-tokenize and bpe.py disagree on the held-out text")

    fwd = subprocess.run([os.path.join(a.build, "tools", "twd-forward"), "--model", model_dir,
                          "--tokens", ",".join(map(str, ids)), "--logits", "all", "--json"],
                         capture_output=True, text=True)
    if fwd.returncode != 0:
        raise SystemExit("twd-forward failed: %s" % fwd.stderr)
    d = json.loads(fwd.stdout)
    c_logits = np.array(d["logits"], dtype=np.float64).reshape(d["shapes"]["logits"])

    model = train.load_artifact(model_dir, s["model"])
    model.eval()
    with torch.no_grad():
        t_logits = model(torch.tensor([ids]))[0].double().numpy()
    diff = float(np.abs(c_logits - t_logits).max())
    scale = float(np.abs(t_logits).max())
    top_c, top_t = c_logits.argmax(-1), t_logits.argmax(-1)
    if diff >= 1e-3:
        fails.append("logits differ by %.3g (>= 1e-3)" % diff)
    if not (top_c == top_t).all():
        fails.append("top-1 tokens differ at %d positions" % int((top_c != top_t).sum()))
    if d["top5"] != [int(i) for i in np.argsort(-t_logits[-1], kind="stable")[:5]]:
        fails.append("twd-forward's top-5 after the sentence differs from torch's")

    res = {
        "sentence": sentence,
        "sentence_from": refs[0] + " (held out)",
        "tokens": ids,
        "tokenizer_identical_on_heldout_text": c_ids == enc.encode(held_text),
        "heldout_tokens_compared": len(c_ids),
        "max_abs_logit_diff_twd_vs_torch_f16_weights": diff,
        "logit_scale": scale,
        "top1_agree_positions": int((top_c == top_t).sum()),
        "positions": len(ids),
        "twd_top5_after_sentence": [enc.decode([i]) for i in d["top5"]],
        "top1_per_position": [enc.decode([int(i)]) for i in top_c],
    }
    fp32 = os.path.join(train.WORK, os.path.basename(model_dir) + "-fp32.safetensors")
    if os.path.exists(fp32):
        m32 = train.GPT2(s["model"])
        state = {}
        for name, arr in train.read_safetensors(fp32).items():
            if train.re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name):
                arr = arr.T
            state[name] = torch.from_numpy(np.ascontiguousarray(arr))
        m32.load_state_dict(state)
        m32.eval()
        with torch.no_grad():
            l32 = m32(torch.tensor([ids]))[0].double().numpy()
        res["max_abs_logit_diff_twd_vs_torch_fp32_weights"] = float(np.abs(c_logits - l32).max())
        res["top1_agree_positions_fp32_weights"] = int((c_logits.argmax(-1) == l32.argmax(-1)).sum())
    res["failures"] = fails
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(json.dumps(res, indent=1))
    print("FAIL" if fails else "OK: twd-tokenize and twd-forward agree with train.py")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
