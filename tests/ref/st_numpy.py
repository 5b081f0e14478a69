"""An independent reader of Hugging Face GPT-2 snapshots for the numpy references.

Parses model.safetensors itself (8-byte little-endian header length, JSON
header, raw little-endian data) so that the references never rely on the
project's C loader.
"""
import json
import os
import struct

import numpy as np


def read_safetensors(path):
    """name -> float64 array; names without the "transformer." prefix; the
    h.N.attn.bias / masked_bias causal-mask buffers are skipped."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        if key.endswith(".attn.bias") or key.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers, not parameters
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(buf, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(buf, dtype="<f2")
        elif dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt == "F64":
            arr = np.frombuffer(buf, dtype="<f8")
        else:
            raise ValueError("%s: unsupported dtype %s" % (name, dt))
        if key in out:
            raise ValueError("tensor %s present twice" % key)
        out[key] = arr.astype(np.float64).reshape(info["shape"])
    return out


def load_model(folder):
    """(config dict, tensors) of a snapshot folder."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    return cfg, read_safetensors(os.path.join(folder, "model.safetensors"))
