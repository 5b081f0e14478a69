#!/usr/bin/python3
"""Writes config/corpus/kjv-heldout.txt: 200 sentences of the King James Bible
from the chapters the demo model was NOT trained on, one per line.

Source: Debian's bible-kjv (the `bible` program) reading bible-kjv-text,
    bible -f Gen1:1-Rev22:21
one verse per line ("Ge1:1 In the beginning ..."). Chapters are numbered
0..1188 in canonical order (Genesis 1 is 0); the demo model's settings
(tools/demo-model/settings.json, "corpus") hold out every chapter i with
i % heldout_every == heldout_offset (25 and 24: chapters 24, 49, 74, ...),
read from that file when it is there, else these values.

Sentences: a held-out chapter's verses joined by single spaces, split after
'.', '?' or '!' followed by a space (or at the chapter's end); kept when they
have 8 to 40 words (split on white space) and were not seen before. Of the
kept sentences, in canonical order, 200 evenly spaced ones are written: the
i-th is candidate floor(i * n / 200). No randomness: the same package gives
the same file.

    tools/demo-model/corpus_sentences.py [--out config/corpus/kjv-heldout.txt] [--check]

--check compares with the existing file instead of writing it (exit 1 when
they differ).
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kjv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
N_SENTENCES = 200
MIN_WORDS, MAX_WORDS = 8, 40
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def held_out_rule():
    every, offset = 25, 24
    path = os.path.join(HERE, "settings.json")
    if os.path.exists(path):
        with open(path) as f:
            c = json.load(f)["corpus"]
        every, offset = c["heldout_every"], c["heldout_offset"]
    return every, offset


def sentences():
    every, offset = held_out_rule()
    seen, cand = set(), []
    for i, (book, num, vs) in enumerate(kjv.chapters()):
        if i % every != offset:
            continue
        text = " ".join(vs)
        for s in SENTENCE_END.split(text):
            s = " ".join(s.split())
            if MIN_WORDS <= len(s.split()) <= MAX_WORDS and s not in seen:
                seen.add(s)
                cand.append(s)
    if len(cand) < N_SENTENCES:
        raise SystemExit("only %d candidate sentences" % len(cand))
    return [cand[i * len(cand) // N_SENTENCES] for i in range(N_SENTENCES)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "config", "corpus", "kjv-heldout.txt"))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    text = "".join(s + "\n" for s in sentences())
    if a.check:
        with open(a.out) as f:
            same = f.read() == text
        print("%s: %s" % (a.out, "up to date" if same else "DIFFERS from the extraction"))
        return 0 if same else 1
    with open(a.out, "w") as f:
        f.write(text)
    print("wrote %d sentences to %s" % (N_SENTENCES, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
