#!/usr/bin/python3
"""Draws the loss curve of train_log.json as a plain SVG, and prints it as a
Markdown table (the one in docs/demo-model.md).

    /usr/bin/python3 tools/demo-model/plot.py [--log train_log.json] [--out docs/demo-model-loss.svg]
"""
import argparse
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 60


def nice_ticks(lo, hi, n=6):
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", default=os.path.join(HERE, "train_log.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "demo-model-loss.svg"))
    a = ap.parse_args()
    with open(a.log) as f:
        log = json.load(f)
    pts = log["points"]
    steps = [p["step"] for p in pts]
    x_max = max(steps)
    train = [(p["step"], p["train_loss"]) for p in pts if p["train_loss"] is not None]
    held = [(p["step"], p["heldout_loss"]) for p in pts if p["heldout_loss"] is not None]
    ys = [v for _, v in train + held]
    y_lo = math.floor(min(ys) * 2) / 2
    y_hi = math.ceil(max(ys))

    def X(s):
        return LEFT + (W - LEFT - RIGHT) * s / x_max

    def Y(v):
        return TOP + (H - TOP - BOTTOM) * (y_hi - v) / (y_hi - y_lo)

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="12">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="white"/>']
    m = log["settings"]["model"]
    title = ("twd demo model (%d layers, width %d, KJV Bible): loss per token (nats)"
             % (m["n_layer"], m["n_embd"]))
    o.append('<text x="%d" y="22" font-size="14">%s</text>' % (LEFT, title))
    for v in nice_ticks(y_lo, y_hi):
        y = Y(v)
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (LEFT, W - RIGHT, y, y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (LEFT - 6, y + 4, v))
    for s in nice_ticks(0, x_max):
        x = X(s)
        o.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>' % (x, x, TOP, H - BOTTOM))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (x, H - BOTTOM + 16, s))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>'
             % (LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM))
    o.append('<text x="%d" y="%d" text-anchor="middle">training step (batch of %d x %d tokens)</text>'
             % ((LEFT + W - RIGHT) // 2, H - 18, log["settings"]["train"]["batch_size"],
                log["settings"]["train"]["seq_len"]))
    o.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">'
             'cross-entropy (nats)</text>' % ((TOP + H - BOTTOM) // 2, (TOP + H - BOTTOM) // 2))
    for series, colour in ((train, "#1f77b4"), (held, "#d62728")):
        path = " ".join("%s%.1f,%.1f" % ("M" if i == 0 else "L", X(s), Y(v))
                        for i, (s, v) in enumerate(series))
        o.append('<path d="%s" fill="none" stroke="%s" stroke-width="2"/>' % (path, colour))
        for s, v in series:
            o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (X(s), Y(v), colour))
    ev = os.path.join(os.path.dirname(a.log), "eval.json")
    if os.path.exists(ev):
        with open(ev) as f:
            uni = json.load(f)["baselines"]["unigram_loss"]
        if y_lo <= uni <= y_hi:
            o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="6 4"/>'
                     % (LEFT, W - RIGHT, Y(uni), Y(uni)))
            o.append('<text x="%d" y="%.1f" fill="#555">unigram baseline, held-out: %.2f</text>'
                     % (W - RIGHT - 230, Y(uni) - 6, uni))
    ly = TOP + 18
    for colour, label in (("#1f77b4", "train (mean of the batches since the previous point)"),
                          ("#d62728", "held-out (every 25th chapter, never trained on)")):
        o.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>'
                 % (W - RIGHT - 330, W - RIGHT - 305, ly - 4, ly - 4, colour))
        o.append('<text x="%d" y="%d">%s</text>' % (W - RIGHT - 298, ly, label))
        ly += 18
    o.append("</svg>")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(o) + "\n")
    print("wrote", a.out)
    print()
    print("| step | tokens seen | minutes | learning rate | train loss | held-out loss |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in pts:
        print("| %d | %s | %.1f | %.2e | %s | %s |" % (
            p["step"], format(p["tokens"], ","), p["elapsed_s"] / 60, p["lr"],
            "-" if p["train_loss"] is None else "%.3f" % p["train_loss"],
            "-" if p["heldout_loss"] is None else "%.3f" % p["heldout_loss"]))


if __name__ == "__main__":
    main()
