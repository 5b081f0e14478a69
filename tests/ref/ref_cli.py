"""What the numpy reference scripts' command lines share: the parser, the
`check` sub-command's common options, and the two twd-synth checkpoints a
check runs on when no --model is given."""
import argparse
import os
import shutil
import subprocess
import tempfile

# (name, twd-synth options) of the checkpoints `check` generates
SYNTH_CASES = (
    ("tiny f32", ["--shape", "tiny", "--seed", "7"]),
    ("small bf16 prefixed", ["--layers", "2", "--heads", "4", "--embd", "64", "--vocab", "1000", "--ctx", "16",
                             "--dtype", "bf16", "--prefix", "--seed", "3"]),
)


def parse_ints(s):
    """'1,2,3' -> [1, 2, 3]; None or '' -> None."""
    return [int(x) for x in s.split(",") if x != ""] if s else None


def new_parser(doc):
    """(parser, sub-parsers) of a reference script whose help is its docstring."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return ap, ap.add_subparsers(dest="cmd", required=True)


def add_check(sub, top, analyses=True):
    """The `check` sub-command: --driver, --synth; with analyses also --model,
    --blocks, --ids, --k, --top (default top), --near-tie and --keep."""
    k = sub.add_parser("check")
    k.add_argument("--driver", required=True)
    k.add_argument("--synth")
    if analyses:
        k.add_argument("--model")
        k.add_argument("--blocks")
        k.add_argument("--ids")
        k.add_argument("--k", type=int, default=5)
        k.add_argument("--top", type=int, default=top)
        k.add_argument("--near-tie", type=float, default=0.0)
        k.add_argument("--keep")
    return k


def run_cases(a, prefix, check_one, synth_cases=SYNTH_CASES):
    """Calls check_one(name, folder) on --model, or else on each of
    synth_cases (name, twd-synth options) written by --synth into a
    temporary folder; returns the OR of the statuses it returns."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    status = 0
    try:
        if a.model:
            cases = [("given", a.model)]
        else:
            cases = []
            for name, extra in synth_cases:
                d = os.path.join(tmp, name.replace(" ", "_"))
                subprocess.run([a.synth, "--out", d, "--no-tokenizer", "-q"] + extra, check=True)
                cases.append((name, d))
        for name, d in cases:
            status |= check_one(name, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def keep_path(a, name):
    """The --keep file prefix of a case (the folder is made), or None."""
    if not a.keep:
        return None
    os.makedirs(a.keep, exist_ok=True)
    return os.path.join(a.keep, name.replace(" ", "_"))
